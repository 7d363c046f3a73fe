//! Several sdc-docker instances on one etcd cluster: what one writes, the
//! others see, and losing an etcd member does not stop them.

mod common;

use common::{CONDITION_TIMEOUT, Server, leader_gauge};
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

const CONTROLLERS: [&str; 6] = [
    "validate-containers",
    "validate-images",
    "validate-networks",
    "validate-volumes",
    "validate-nodes",
    "validate-packages",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_show_exactly_one_leader_per_controller_and_hand_over_when_the_leader_is_killed()
 {
    let etcd = sdc_docker_testkit::Etcd::start().await;
    let args = ["--lease-ttl", "2s"];
    let mut a = Server::start_with(&etcd.store_url(), &args).await;
    let mut b = Server::start_with(&etcd.store_url(), &args).await;

    // Each controller is led by exactly one of the two.
    wait_for(CONDITION_TIMEOUT, "one leader per controller", || {
        let (ma, mb) = (
            a.metrics().unwrap_or_default(),
            b.metrics().unwrap_or_default(),
        );
        let ok = CONTROLLERS
            .iter()
            .all(|c| leader_gauge(&ma, c).unwrap_or(0) + leader_gauge(&mb, c).unwrap_or(0) == 1);
        async move { ok }
    })
    .await;
    let ma = a.metrics().unwrap_or_default();
    let mb = b.metrics().unwrap_or_default();
    for c in CONTROLLERS {
        assert!(leader_gauge(&ma, c).is_some(), "{c} reported by a:\n{ma}");
        assert!(leader_gauge(&mb, c).is_some(), "{c} reported by b:\n{mb}");
    }

    // kill -9 whichever leads validate-containers: the survivor takes over
    // within the lease TTL (2 s) plus a second, and then leads everything.
    let a_leads = leader_gauge(&ma, "validate-containers") == Some(1);
    let (victim, survivor) = if a_leads { (&mut a, &b) } else { (&mut b, &a) };
    victim.kill9();
    let killed_at = std::time::Instant::now();
    wait_for(
        CONDITION_TIMEOUT,
        "the survivor to lead every controller",
        || {
            let m = survivor.metrics().unwrap_or_default();
            let ok = CONTROLLERS.iter().all(|c| leader_gauge(&m, c) == Some(1));
            async move { ok }
        },
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3) + std::time::Duration::from_millis(500),
        "handed over in {took:?}, more than TTL + 1 s"
    );

    // And it works: a malformed spec put straight into etcd is marked by
    // the new leader.
    let put = common::etcdctl(
        &etcd.endpoints(),
        &[
            "put",
            "/sdc-docker/v1/containers/default/bad",
            r#"{"metadata":{"name":"bad"},"spec":{"memory":"lots"}}"#,
        ],
    );
    assert!(put.ok, "{put:?}");
    let endpoints = etcd.endpoints();
    wait_for(
        CONDITION_TIMEOUT,
        "the Invalid condition on the bad spec",
        || {
            let out = common::etcdctl(
                &endpoints,
                &[
                    "get",
                    "/sdc-docker/v1/containers/default/bad",
                    "--print-value-only",
                ],
            );
            let ok = out.stdout.contains("\"reason\":\"MalformedSpec\"");
            async move { ok }
        },
    )
    .await;
}
