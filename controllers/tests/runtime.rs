//! The runtime on the real embedded store: readiness, relist after
//! compaction, the generation predicate, mappers, panics, resync. Real time,
//! with every wait a condition with a deadline.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sdc_docker_controllers::metrics::ReconcileResult;
use sdc_docker_controllers::{
    Action, Context, Controller, Manager, ObjectKey, ReconcileError, reconcile_fn,
};
use sdc_docker_store::model::{Container, ContainerSpec, Volume};
use sdc_docker_store::{Api, Resource, Store};
use sdc_docker_testkit::wait_for;
use support::*;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_reconcile_sees_the_whole_first_list() {
    let (store, _dir) = embedded();
    for i in 0..50 {
        create_volume(&store, &format!("v{i:02}")).await;
    }
    let recorder = Recorder::default();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager
        .add(recording("volumes", Probe::new("a", &recorder, Action::AwaitChange)).node_scoped());
    let running = Running::start(manager);
    wait_for(DEADLINE, "50 reconciles", || async {
        recorder.calls().len() == 50
    })
    .await;
    assert!(
        recorder.calls().iter().all(|c| c.cached == 50 && c.present),
        "every reconcile ran after the full list"
    );
    assert!(running.leads("volumes"), "node-scoped controllers report 1");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_compaction_the_reflector_relists_and_objects_deleted_meanwhile_disappear_and_are_triggered()
 {
    let (inner, _dir) = embedded();
    let gate = Gate::new(inner.clone());
    let store: Arc<dyn Store> = gate.clone();
    create_volume(&store, "kept").await;
    create_volume(&store, "doomed").await;
    let recorder = Recorder::default();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager
        .add(recording("volumes", Probe::new("a", &recorder, Action::AwaitChange)).node_scoped());
    let running = Running::start(manager);
    wait_for(DEADLINE, "both reconciled", || async {
        recorder.calls().len() == 2
    })
    .await;

    // Break the watch and hold its replacement back until history is gone.
    gate.close_and_break();
    wait_for(DEADLINE, "the reflector re-watching", || async {
        gate.waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    let lists_before = gate.lists.load(Ordering::SeqCst);
    Api::<Volume>::default_account(store.clone())
        .delete("doomed", None)
        .await
        .unwrap();
    create_volume(&store, "newcomer").await;
    let revision = store.revision().await.unwrap();
    store.compact(revision).await.unwrap();
    gate.open();

    wait_for(DEADLINE, "the deletion seen after the relist", || async {
        recorder
            .calls()
            .iter()
            .any(|c| c.key.name == "doomed" && !c.present)
    })
    .await;
    wait_for(DEADLINE, "the newcomer", || async {
        recorder.count("newcomer") == 1
    })
    .await;
    assert!(
        gate.lists.load(Ordering::SeqCst) > lists_before,
        "the compaction made the reflector list again"
    );
    let last = recorder.calls().into_iter().last().unwrap();
    assert_eq!(
        last.cached, 2,
        "kept and newcomer: doomed is gone from the cache"
    );
    assert_eq!(
        recorder.count("kept"),
        1,
        "an unchanged object is not triggered by a relist"
    );
    running.stop().await;
}

/// Writes a status that changes every time: without the generation
/// predicate this would loop forever.
async fn write_status(
    key: ObjectKey,
    ctx: Context<Volume, Probe>,
) -> Result<Action, ReconcileError> {
    let probe = ctx.data();
    let n = probe.runs.fetch_add(1, Ordering::SeqCst) + 1;
    probe.recorder.record(&probe.instance, &key, true, 0);
    let Some(volume) = ctx.get(&key) else {
        return Ok(Action::AwaitChange);
    };
    let mut next = (*volume).clone();
    next.status.state = format!("seen {n}");
    ctx.api().update_status(&next).await?;
    Ok(Action::AwaitChange)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_that_writes_status_each_time_runs_once_per_spec_change() {
    let (store, _dir) = embedded();
    let api = Api::<Volume>::default_account(store.clone());
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        Controller::<Volume>::new(
            "volumes",
            reconcile_fn(write_status),
            Probe::new("a", &recorder, Action::AwaitChange),
        )
        .node_scoped(),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "the first status", || async {
        api.get("v").await.unwrap().status.state == "seen 1"
    })
    .await;
    let mut changed = api.get("v").await.unwrap();
    changed.spec.size_mib = 10;
    api.replace(&changed).await.unwrap();
    wait_for(DEADLINE, "the second status", || async {
        api.get("v").await.unwrap().status.state == "seen 2"
    })
    .await;
    // A sentinel created after both status writes: once it has run, any
    // trigger from those writes would have run before it.
    create_volume(&store, "sentinel").await;
    wait_for(DEADLINE, "the sentinel", || async {
        recorder.count("sentinel") == 1
    })
    .await;
    assert_eq!(
        recorder.count("v"),
        2,
        "one run per spec change, none per status write"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reconcile_is_an_error_for_its_key_and_the_controller_goes_on() {
    let (store, _dir) = embedded();
    create_volume(&store, "bad").await;
    create_volume(&store, "good").await;
    let recorder = Recorder::default();
    async fn panics_once(
        key: ObjectKey,
        ctx: Context<Volume, Probe>,
    ) -> Result<Action, ReconcileError> {
        let probe = ctx.data();
        probe.recorder.record(&probe.instance, &key, true, 0);
        if key.name == "bad" && probe.recorder.count("bad") == 1 {
            panic!("reconciler bug on {key}");
        }
        Ok(Action::AwaitChange)
    }
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        Controller::<Volume>::new(
            "volumes",
            reconcile_fn(panics_once),
            Probe::new("a", &recorder, Action::AwaitChange),
        )
        .node_scoped(),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "the retry after the panic", || async {
        recorder.count("bad") == 2 && recorder.count("good") == 1
    })
    .await;
    let m = running.metrics.controller("volumes");
    assert_eq!(m.reconciles(ReconcileResult::Panic), 1);
    assert_eq!(m.backoffs(), 1);
    create_volume(&store, "later").await;
    wait_for(DEADLINE, "a later key", || async {
        recorder.count("later") == 1
    })
    .await;
    assert!(running.metrics.render().contains(
        "sdc_docker_controller_reconciles_total{controller=\"volumes\",result=\"panic\"} 1"
    ));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_a_related_kind_triggers_the_keys_its_mapper_returns() {
    let (store, _dir) = embedded();
    let containers = Api::<Container>::default_account(store.clone());
    containers
        .create(&Container::new("web", ContainerSpec::default()))
        .await
        .unwrap();
    let recorder = Recorder::default();
    async fn record_container(
        key: ObjectKey,
        ctx: Context<Container, Recorder>,
    ) -> Result<Action, ReconcileError> {
        let volumes = ctx.related::<Volume>().expect("the volume cache");
        ctx.data()
            .record("a", &key, ctx.get(&key).is_some(), volumes.len());
        Ok(Action::AwaitChange)
    }
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        Controller::<Container>::new(
            "containers",
            reconcile_fn(record_container),
            recorder.clone(),
        )
        .node_scoped()
        // A volume names the container that uses it in a label.
        .watches::<Volume>(|v: &Volume| {
            v.metadata
                .labels
                .get("container")
                .map(|c| ObjectKey::new(Container::KIND, v.metadata.account.clone(), c.clone()))
                .into_iter()
                .collect()
        }),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "the container", || async {
        recorder.count("web") == 1
    })
    .await;

    let volumes = Api::<Volume>::default_account(store.clone());
    let mut v = Volume::new("data", Default::default());
    v.metadata.labels.insert("container".into(), "web".into());
    let v = volumes.create(&v).await.unwrap();
    wait_for(DEADLINE, "the mapped trigger", || async {
        recorder.count("web") == 2
    })
    .await;
    // A status-only write of the related object is news too.
    let mut ready = v.clone();
    ready.status.state = "ready".into();
    volumes.update_status(&ready).await.unwrap();
    wait_for(DEADLINE, "the trigger from the status write", || async {
        recorder.count("web") == 3
    })
    .await;
    assert_eq!(
        recorder.calls().last().unwrap().cached,
        1,
        "the related cache holds the volume"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sent_from_outside_the_store_trigger_their_reconcile() {
    let (store, _dir) = embedded();
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    let (events, keys) = tokio::sync::mpsc::unbounded_channel();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        recording("volumes", Probe::new("a", &recorder, Action::AwaitChange))
            .node_scoped()
            .no_resync()
            .triggered_by(keys),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "the first pass", || async {
        recorder.count("v") == 1
    })
    .await;
    let key = ObjectKey::new(Volume::KIND, "default".to_owned(), "v".to_owned());
    events.send(key.clone()).unwrap();
    wait_for(DEADLINE, "the external trigger", || async {
        recorder.count("v") == 2
    })
    .await;
    // A key of another kind is not this controller's.
    events
        .send(ObjectKey::new(
            Container::KIND,
            "default".to_owned(),
            "v".to_owned(),
        ))
        .unwrap();
    events.send(key).unwrap();
    wait_for(DEADLINE, "the second external trigger", || async {
        recorder.count("v") == 3
    })
    .await;
    assert_eq!(recorder.count("v"), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_reconciled_again_at_each_resync() {
    let (store, _dir) = embedded();
    create_volume(&store, "v").await;
    let recorder = Recorder::default();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        recording("volumes", Probe::new("a", &recorder, Action::AwaitChange))
            .node_scoped()
            .resync(Duration::from_millis(200)),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "three resyncs", || async {
        recorder.count("v") >= 4
    })
    .await;
    let at: Vec<_> = recorder.calls().iter().map(|c| c.at).collect();
    for gap in at.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= Duration::from_millis(150), "resynced after {gap:?}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_are_kept_in_the_cache_and_trigger_their_key() {
    let (store, _dir) = embedded();
    let key = volume_key("broken");
    store
        .create(
            &key.store_key(),
            br#"{"metadata":{"name":"broken"},"spec":{"sizeMib":"big"}}"#.to_vec(),
            None,
            None,
        )
        .await
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    async fn report(
        key: ObjectKey,
        ctx: Context<Volume, Arc<std::sync::Mutex<Vec<String>>>>,
    ) -> Result<Action, ReconcileError> {
        if let Some(bad) = ctx.get_invalid(&key) {
            ctx.data().lock().unwrap().push(bad.message.clone());
        }
        Ok(Action::AwaitChange)
    }
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    manager.add(
        Controller::<Volume>::new("validate", reconcile_fn(report), seen.clone()).node_scoped(),
    );
    let running = Running::start(manager);
    wait_for(DEADLINE, "the invalid value reported", || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    assert!(
        seen.lock().unwrap()[0].starts_with("spec.sizeMib"),
        "{:?}",
        seen.lock().unwrap()
    );
    running.stop().await;
}
