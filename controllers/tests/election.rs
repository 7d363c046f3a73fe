//! Two managers on one store — the embedded store and a real etcd — with a
//! cluster-scoped controller: exactly one reconciles; revoking the leader's
//! lease hands the controller to the other within TTL + 1 s, the old one
//! stops reconciling, and its fenced writes fail.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sdc_docker_controllers::{Action, Manager};
use sdc_docker_store::model::Volume;
use sdc_docker_store::{Election, Error, EtcdStore, Store};
use sdc_docker_testkit::{Etcd, wait_for, wait_for_value};
use support::*;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(15);

async fn one_leader_then_failover(store: Arc<dyn Store>) {
    for i in 0..5 {
        create_volume(&store, &format!("v{i}")).await;
    }
    let recorder = Recorder::default();
    let mut running = Vec::new();
    for instance in ["a", "b"] {
        let mut manager = Manager::new(store.clone(), options(instance, TTL));
        // Requeue constantly, so "still reconciling" is visible.
        let probe = Probe::new(
            instance,
            &recorder,
            Action::RequeueAfter(Duration::from_millis(20)),
        );
        let controller = recording("volumes", probe).cluster_scoped();
        manager.add(controller);
        running.push(Running::start(manager));
    }
    wait_for(DEADLINE, "100 reconciles", || async {
        recorder.calls().len() >= 100
    })
    .await;
    let leader = recorder.calls()[0].instance.clone();
    let (old, new) = if leader == "a" { (0, 1) } else { (1, 0) };
    let new_name = if leader == "a" { "b" } else { "a" };
    assert!(
        recorder.calls().iter().all(|c| c.instance == leader),
        "only the leader reconciles"
    );
    assert!(running[old].leads("volumes") && !running[new].leads("volumes"));

    // Revoke the leader's lease, as an expiry would.
    let election = Election::new(store.clone(), "volumes", TTL);
    let current = election.leader().await.unwrap().expect("a leader");
    assert_eq!(
        current.value, leader,
        "the election announces the instance id"
    );
    let lease = i64::from_str_radix(current.key.rsplit('/').next().unwrap(), 16).unwrap();
    let revoked = Instant::now();
    store.lease_revoke(lease).await.unwrap();

    let first = wait_for_value(
        TTL + Duration::from_secs(1),
        "the new leader's first reconcile",
        || {
            let calls = recorder.by(new_name);
            async move { calls.first().map(|c| c.at) }
        },
    )
    .await;
    assert!(first - revoked <= TTL + Duration::from_secs(1));
    assert!(running[new].leads("volumes"));
    // Let the new leader work a while; the old one must stay silent.
    let seen = recorder.by(new_name).len();
    wait_for(DEADLINE, "the new leader reconciling on", || async {
        recorder.by(new_name).len() >= seen + 50
    })
    .await;
    assert!(!running[old].leads("volumes"));
    assert!(
        recorder.by(&leader).iter().all(|c| c.at <= first),
        "the old leader stopped reconciling when it lost the lease"
    );
    running.into_iter().for_each(|r| r.task.abort());
}

async fn deposed_leader_write_is_fenced(store: Arc<dyn Store>) {
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    let probe = Arc::new(Probe::new(
        "a",
        &recorder,
        Action::RequeueAfter(Duration::from_millis(20)),
    ));
    let mut manager = Manager::new(store.clone(), options("a", TTL));
    manager.add(sdc_docker_controllers::Controller::<Volume>::new(
        "volumes",
        sdc_docker_controllers::reconcile_fn(
            |key, ctx: sdc_docker_controllers::Context<Volume, Arc<Probe>>| async move {
                let probe = ctx.data().clone();
                *probe.last_api.lock().unwrap() = Some(ctx.api().clone());
                *probe.last_fence.lock().unwrap() = ctx.fence().cloned();
                probe.recorder.record("a", &key, true, 0);
                Ok(probe.action)
            },
        ),
        probe.clone(),
    ));
    let running = Running::start(manager);
    wait_for(DEADLINE, "a reconcile", || async {
        !recorder.calls().is_empty()
    })
    .await;
    let api = probe
        .last_api
        .lock()
        .unwrap()
        .clone()
        .expect("the fenced api");
    let fence = probe.last_fence.lock().unwrap().clone().expect("a fence");
    // While leading, the fenced write goes through.
    let mut v = api.get("v").await.unwrap();
    v.status.state = "leading".into();
    api.update_status(&v).await.expect("the leader may write");

    let lease = i64::from_str_radix(fence.key.rsplit('/').next().unwrap(), 16).unwrap();
    store.lease_revoke(lease).await.unwrap();
    // The only candidate is elected again at once, under a new token.
    wait_for(DEADLINE, "leadership lost and won again", || async {
        probe.last_fence.lock().unwrap().as_ref().map(|f| f.token) != Some(fence.token)
    })
    .await;
    let mut v = api.get("v").await.unwrap();
    v.status.state = "deposed".into();
    match api.update_status(&v).await {
        Err(Error::Fenced { token, .. }) => assert_eq!(token, fence.token),
        other => panic!("a deposed leader's write must be fenced, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_one_of_two_managers_leads_and_the_other_takes_over_when_its_lease_is_revoked()
 {
    let (store, _dir) = embedded();
    one_leader_then_failover(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_a_deposed_leaders_fenced_write_fails() {
    let (store, _dir) = embedded();
    deposed_leader_write_is_fenced(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_one_of_two_managers_leads_and_the_other_takes_over_when_its_lease_is_revoked() {
    let etcd = Etcd::start().await;
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap());
    one_leader_then_failover(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_a_deposed_leaders_fenced_write_fails() {
    let etcd = Etcd::start().await;
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap());
    deposed_leader_write_is_fenced(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_the_leader_resigns_and_the_other_takes_over_without_waiting_for_the_ttl() {
    let (store, _dir) = embedded();
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    let long_ttl = Duration::from_secs(60);
    let start = |instance: &str| {
        let mut manager = Manager::new(store.clone(), options(instance, long_ttl));
        manager.add(recording(
            "volumes",
            Probe::new(instance, &recorder, Action::AwaitChange),
        ));
        Running::start(manager)
    };
    let a = start("a");
    wait_for(DEADLINE, "a leads", || async { a.leads("volumes") }).await;
    let b = start("b");
    wait_for(DEADLINE, "a reconciled", || async {
        recorder.by("a").len() == 1
    })
    .await;
    a.stop().await;
    // Far less than the 60 s TTL: a resigned.
    wait_for(Duration::from_secs(5), "b takes over", || async {
        recorder.by("b").len() == 1
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_reach_the_store_stops_within_the_ttl_and_the_other_takes_over() {
    let (store, _dir) = embedded();
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    // a's view of the store can be cut, as a network partition would.
    let a_store = sdc_docker_controllers::testing::Severable::new(store.clone());
    let mut a = Manager::new(a_store.clone(), options("a", TTL));
    a.add(recording(
        "volumes",
        Probe::new(
            "a",
            &recorder,
            Action::RequeueAfter(Duration::from_millis(20)),
        ),
    ));
    let a = Running::start(a);
    wait_for(DEADLINE, "a leads and reconciles", || async {
        a.leads("volumes") && !recorder.by("a").is_empty()
    })
    .await;
    let mut b = Manager::new(store.clone(), options("b", TTL));
    b.add(recording(
        "volumes",
        Probe::new(
            "b",
            &recorder,
            Action::RequeueAfter(Duration::from_millis(20)),
        ),
    ));
    let b = Running::start(b);

    let cut = Instant::now();
    a_store.sever();
    // a cannot renew: it must stop by itself once a whole TTL passed
    // without a renewal, before anyone else may have been elected.
    wait_for(
        TTL + Duration::from_secs(1),
        "a to stop leading",
        || async { !a.leads("volumes") },
    )
    .await;
    let a_stopped = Instant::now();
    assert!(a_stopped - cut <= TTL + Duration::from_secs(1));
    let first_b = wait_for_value(TTL + Duration::from_secs(2), "b's first reconcile", || {
        let calls = recorder.by("b");
        async move { calls.first().map(|c| c.at) }
    })
    .await;
    assert!(
        recorder.by("a").iter().all(|c| c.at <= first_b),
        "a never reconciled once b led"
    );
    assert!(b.leads("volumes"));
    b.stop().await;
    a.task.abort();
}
