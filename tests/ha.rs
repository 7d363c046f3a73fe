//! Several sdc-docker instances on one etcd cluster: what one writes, the
//! others see, and losing an etcd member does not stop them.

mod common;

use common::{CONDITION_TIMEOUT, Server};
use sdc_docker_testkit::{EtcdCluster, wait_for};

fn container(name: &str, image: &str) -> String {
    format!("kind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_etcd_cluster_see_each_other_s_writes_and_survive_a_member_loss() {
    let mut cluster = EtcdCluster::start(3).await;
    let a = Server::start(&cluster.store_url()).await;
    let b = Server::start(&cluster.store_url()).await;

    let file = a.write_file("one.yaml", &container("one", "busybox"));
    let out = a.sdc(&["apply", "-f", file.to_str().expect("UTF-8 path")]);
    assert_eq!(out.stdout, "container/one created\n", "{out:?}");
    let seen = b.sdc(&["get", "container", "one", "-o", "json"]);
    assert!(seen.ok, "{seen:?}");
    assert!(seen.stdout.contains("\"image\": \"busybox\""), "{seen:?}");

    // An edit through one instance guarded by the revision read through the
    // other: the two instances share one history, so the guard holds.
    let read = b.sdc(&["get", "container", "one", "-o", "yaml"]);
    assert!(read.ok, "{read:?}");
    let changed = a.write_file("one-v2.yaml", &container("one", "busybox:1.36"));
    assert_eq!(
        a.sdc(&["apply", "-f", changed.to_str().expect("UTF-8 path")])
            .stdout,
        "container/one configured\n"
    );
    let stale = b.write_file("stale.yaml", &read.stdout.replace("busybox", "alpine"));
    let out = b.sdc(&["apply", "-f", stale.to_str().expect("UTF-8 path")]);
    assert!(!out.ok, "a write from a stale read is refused: {out:?}");
    assert!(
        out.stderr.contains("was modified since you read it"),
        "{out:?}"
    );

    // Kill the etcd leader: both instances carry on with the survivors.
    let leader = cluster.wait_for_leader(CONDITION_TIMEOUT).await;
    cluster.kill(leader);
    let two = b.write_file("two.yaml", &container("two", "redis"));
    let two = two.to_str().expect("UTF-8 path").to_string();
    wait_for(
        CONDITION_TIMEOUT,
        "instance b to write after the etcd leader died",
        || {
            let ok = b.sdc(&["apply", "-f", &two]).ok;
            async move { ok }
        },
    )
    .await;
    wait_for(CONDITION_TIMEOUT, "instance a to list what b wrote", || {
        let out = a.sdc(&["get", "containers"]);
        let ok = out.ok && out.stdout.contains("two") && out.stdout.contains("one");
        async move { ok }
    })
    .await;
}
