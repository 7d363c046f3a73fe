//! A manager on a real 3-member etcd cluster whose etcd leader is killed
//! (SIGKILL) while reconciles run: reconciling goes on.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sdc_docker_controllers::{Action, Manager};
use sdc_docker_store::Resource;
use sdc_docker_store::model::Volume;
use sdc_docker_store::{EtcdStore, Store};
use sdc_docker_testkit::{EtcdCluster, wait_for};
use support::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_during_reconciliation_does_not_stop_reconciling() {
    let mut cluster = EtcdCluster::start(3).await;
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&cluster.endpoints()).await.unwrap());
    for i in 0..5 {
        create_volume(&store, &format!("v{i}")).await;
    }
    let recorder = Recorder::default();
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(5)));
    manager.add(
        recording(
            "volumes",
            Probe::new(
                "a",
                &recorder,
                Action::RequeueAfter(Duration::from_millis(50)),
            ),
        )
        .cluster_scoped(),
    );
    let running = Running::start(manager);
    wait_for(Duration::from_secs(15), "reconciling", || async {
        recorder.calls().len() >= 50
    })
    .await;

    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill(leader);
    let killed = Instant::now();
    // Requeued reconciles continue, and a new object is noticed through the
    // (re-established) watch.
    wait_for(
        Duration::from_secs(30),
        "reconciles after the kill",
        || async { recorder.calls().iter().filter(|c| c.at > killed).count() >= 50 },
    )
    .await;
    // A write during the etcd election may fail with an unknown outcome:
    // retry as any client would (AlreadyExists means it landed).
    let api = sdc_docker_store::Api::<Volume>::default_account(store.clone());
    wait_for(
        Duration::from_secs(30),
        "creating an object after the kill",
        || async {
            match api
                .create(&Volume::new("after-kill", Default::default()))
                .await
            {
                Ok(_) | Err(sdc_docker_store::Error::AlreadyExists { .. }) => true,
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    false
                }
            }
        },
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "the object created after the kill",
        || async { recorder.count("after-kill") >= 1 },
    )
    .await;
    assert!(running.leads("volumes"));
    running.stop().await;
}
