//! Nodes, packages and placement on the real embedded store: the placement
//! controller run by a manager, nodes registered under leases, packages
//! seeded by several instances at once. Real time, every wait a condition
//! with a deadline.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sdc_docker_controllers::Manager;
use sdc_docker_controllers::nodes::{NodeAgentOptions, NodeInfo, register_node};
use sdc_docker_controllers::packages::{
    GIB, MIB, PACKAGE_LABEL, default_packages, seed_default_packages,
};
use sdc_docker_controllers::placement::{PlacementOptions, SCHEDULED, add_controllers};
use sdc_docker_controllers::testing::Severable;
use sdc_docker_store::model::{Condition, Container, ContainerSpec, Node, NodeSpec, Package};
use sdc_docker_store::{Api, Fence, KeyValue, LeaseId, Resource, Store, WatchStream};
use sdc_docker_testkit::{wait_for, wait_for_value};
use support::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// A manager running placement and node allocation; unplaced containers are retried
/// after `retry` (long in tests that show a watch trigger does it).
fn start_placement(store: &Arc<dyn Store>, retry: Duration) -> Running {
    let mut manager = Manager::new(store.clone(), options("a", Duration::from_secs(10)));
    add_controllers(
        &mut manager,
        PlacementOptions {
            retry_unplaced: retry,
        },
    );
    Running::start(manager)
}

async fn add_node(store: &Arc<dyn Store>, name: &str, memory_bytes: i64, cordoned: bool) -> Node {
    Api::<Node>::default_account(store.clone())
        .create(&Node::new(
            name,
            NodeSpec {
                uuid: format!("uuid-{name}"),
                hostname: name.into(),
                driver: "linux".into(),
                memory_bytes,
                cpus: 4,
                disk_bytes: 100 * GIB,
                unschedulable: cordoned,
                ..Default::default()
            },
        ))
        .await
        .expect("create node")
}

async fn add_container(
    store: &Arc<dyn Store>,
    name: &str,
    memory: i64,
    package_label: Option<&str>,
) -> Container {
    let mut spec = ContainerSpec {
        image: "busybox".into(),
        memory,
        ..Default::default()
    };
    if let Some(value) = package_label {
        spec.labels.insert(PACKAGE_LABEL.into(), value.into());
    }
    Api::<Container>::default_account(store.clone())
        .create(&Container::new(name, spec))
        .await
        .expect("create container")
}

fn scheduled(c: &Container) -> Option<&Condition> {
    c.status.conditions.iter().find(|c| c.type_ == SCHEDULED)
}

/// Wait until container `name` has a `Scheduled` condition whose status is
/// `status` and whose message contains `message`; returns the container.
async fn wait_scheduled(
    store: &Arc<dyn Store>,
    name: &str,
    status: &str,
    message: &str,
) -> Container {
    let api = Api::<Container>::default_account(store.clone());
    wait_for_value(
        DEADLINE,
        format!("{name} Scheduled={status} with {message:?}"),
        || {
            let api = api.clone();
            async move {
                let c = api.get(name).await.ok()?;
                let cond = scheduled(&c)?;
                (cond.status == status && cond.message.contains(message)).then_some(c)
            }
        },
    )
    .await
}

async fn placed(store: &Arc<dyn Store>, name: &str) -> (String, String) {
    let c = wait_scheduled(store, name, "True", "placed on").await;
    (c.status.node, c.status.package)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_node_every_container_goes_there_with_the_package_its_memory_asks_for() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "cn1", 64 * GIB, false).await;
    add_container(&store, "default-size", 0, None).await;
    let running = start_placement(&store, Duration::from_secs(30));
    add_container(&store, "small", 200 * MIB, None).await;
    add_container(&store, "large", 3 * GIB, None).await;

    assert_eq!(
        placed(&store, "default-size").await,
        ("cn1".into(), "sample-1G".into())
    );
    assert_eq!(
        placed(&store, "small").await,
        ("cn1".into(), "sample-256M".into())
    );
    assert_eq!(
        placed(&store, "large").await,
        ("cn1".into(), "sample-4G".into())
    );
    let c = Api::<Container>::default_account(store.clone())
        .get("large")
        .await
        .unwrap();
    let cond = scheduled(&c).unwrap();
    assert_eq!(cond.reason, "Placed");
    assert_eq!(
        cond.message,
        "placed on node cn1 with package sample-4G (4 GiB)"
    );
    assert_eq!(c.metadata.generation, 1, "placement writes status only");

    // The node goes away (its agent restarting, say): its containers stay
    // placed there, and new ones go to the node that is left.
    Api::<Node>::default_account(store.clone())
        .delete("cn1", None)
        .await
        .unwrap();
    add_node(&store, "cn2", 8 * GIB, false).await;
    add_container(&store, "later", GIB, None).await;
    assert_eq!(placed(&store, "later").await.0, "cn2");
    assert_eq!(placed(&store, "large").await.0, "cn1", "never moved");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_nodes_containers_go_where_most_memory_is_free_until_none_fits() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "a", 4 * GIB, false).await;
    add_node(&store, "b", 3 * GIB, false).await;
    for i in 0..6 {
        add_container(&store, &format!("c{i}"), GIB, None).await;
    }
    let running = start_placement(&store, Duration::from_secs(3600));
    let mut on = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        *on.entry(placed(&store, &format!("c{i}")).await.0)
            .or_default() += 1;
    }
    // Free (a, b): 4,3 → a; 3,3 → a (name); 2,3 → b; 2,2 → a; 1,2 → b; 1,1 → a.
    assert_eq!(on.get("a"), Some(&4));
    assert_eq!(on.get("b"), Some(&2));

    add_container(&store, "big", 2 * GIB, None).await;
    let c = wait_scheduled(
        &store,
        "big",
        "False",
        "no node has 2 GiB free (largest free: 1 GiB on node b)",
    )
    .await;
    assert_eq!(scheduled(&c).unwrap().reason, "Unschedulable");
    assert!(c.status.node.is_empty() && c.status.package.is_empty());

    // Removing two containers of `a` frees room there.
    let api = Api::<Container>::default_account(store.clone());
    let on_a: Vec<String> = api
        .list()
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.status.node == "a")
        .map(|c| c.metadata.name)
        .take(2)
        .collect();
    for name in &on_a {
        api.delete(name, None).await.unwrap();
    }
    // Nothing watched changed: the periodic retry is an hour away, so
    // nudge it the way a new node would (an unrelated, cordoned one).
    add_node(&store, "z-cordoned", 64 * GIB, true).await;
    assert_eq!(
        placed(&store, "big").await,
        ("a".into(), "sample-2G".into())
    );
    // The nodes' status tells operators what is placed on them.
    let nodes = Api::<Node>::default_account(store.clone());
    for (name, bytes, count) in [("a", 4 * GIB, 3), ("b", 2 * GIB, 2), ("z-cordoned", 0, 0)] {
        wait_for(DEADLINE, format!("node {name} allocation"), || async {
            nodes.get(name).await.is_ok_and(|n| {
                n.status.allocated_memory_bytes == bytes && n.status.containers == count
            })
        })
        .await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_label_chooses_by_name_uuid_or_short_uuid() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "cn1", 64 * GIB, false).await;
    let uuid_8g = default_packages()
        .into_iter()
        .find(|p| p.metadata.name == "sample-8G")
        .unwrap()
        .spec
        .uuid;
    let running = start_placement(&store, Duration::from_secs(30));
    add_container(&store, "by-name", 0, Some("sample-2G")).await;
    add_container(&store, "by-uuid", 0, Some(&uuid_8g)).await;
    add_container(&store, "by-short", 0, Some(&uuid_8g[..8])).await;
    // The label wins over -m.
    add_container(&store, "label-and-m", 16 * GIB, Some("sample-512M")).await;
    add_container(&store, "unknown", 0, Some("sample-3G")).await;

    assert_eq!(placed(&store, "by-name").await.1, "sample-2G");
    assert_eq!(placed(&store, "by-uuid").await.1, "sample-8G");
    assert_eq!(placed(&store, "by-short").await.1, "sample-8G");
    assert_eq!(placed(&store, "label-and-m").await.1, "sample-512M");
    let c = wait_scheduled(&store, "unknown", "False", "sample-3G").await;
    assert_eq!(scheduled(&c).unwrap().reason, "PackageNotFound");
    assert!(c.status.node.is_empty());

    // The operator creates the package: the waiting container gets it.
    Api::<Package>::default_account(store.clone())
        .create(&Package::new(
            "sample-3G",
            sdc_docker_store::model::PackageSpec {
                memory_mib: 3072,
                active: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(placed(&store, "unknown").await.1, "sample-3G");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_too_big_for_any_package_or_node_is_not_scheduled_and_says_why() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "cn1", 2 * GIB, false).await;
    let running = start_placement(&store, Duration::from_secs(30));
    add_container(&store, "huge", 100 * GIB, None).await;
    add_container(&store, "wide", 4 * GIB, None).await;

    let c = wait_scheduled(
        &store,
        "huge",
        "False",
        "no package large enough for -m 100 GiB (the largest is sample-64G with 64 GiB)",
    )
    .await;
    assert_eq!(scheduled(&c).unwrap().reason, "NoPackageLargeEnough");
    assert!(c.status.node.is_empty());
    let c = wait_scheduled(
        &store,
        "wide",
        "False",
        "no node has 4 GiB free (largest free: 2 GiB on node cn1)",
    )
    .await;
    assert!(c.status.node.is_empty() && c.status.package.is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_later_gets_the_container_that_was_waiting() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    // An hour between retries: only the Node watch can place it in time.
    let running = start_placement(&store, Duration::from_secs(3600));
    add_container(&store, "web", 512 * MIB, None).await;
    let c = wait_scheduled(
        &store,
        "web",
        "False",
        "no node is available: none is registered",
    )
    .await;
    assert_eq!(scheduled(&c).unwrap().reason, "NoNodes");

    add_node(&store, "cn1", 4 * GIB, false).await;
    assert_eq!(
        placed(&store, "web").await,
        ("cn1".into(), "sample-512M".into())
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_node_is_skipped_however_much_room_it_has() {
    let (store, _dir) = embedded();
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "cordoned", 64 * GIB, true).await;
    add_node(&store, "small", 2 * GIB, false).await;
    let running = start_placement(&store, Duration::from_secs(3600));
    add_container(&store, "fits", GIB, None).await;
    assert_eq!(placed(&store, "fits").await.0, "small");
    add_container(&store, "waits", 2 * GIB, None).await;
    wait_scheduled(
        &store,
        "waits",
        "False",
        "no node has 2 GiB free (largest free: 1 GiB on node small)",
    )
    .await;

    // Uncordoning is a Node change: the waiting container is placed.
    let nodes = Api::<Node>::default_account(store.clone());
    let mut n = nodes.get("cordoned").await.unwrap();
    n.spec.unschedulable = false;
    nodes.replace(&n).await.unwrap();
    assert_eq!(placed(&store, "waits").await.0, "cordoned");
    running.stop().await;
}

fn info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        uuid: format!("00000000-0000-0000-0000-{:0>12}", name.len()),
        hostname: name.into(),
        driver: "linux".into(),
        memory_bytes: 8 * GIB,
        cpus: 2,
        disk_bytes: 50 * GIB,
        ..Default::default()
    }
}

fn fast_lease() -> NodeAgentOptions {
    NodeAgentOptions {
        ttl: Duration::from_secs(1),
        renew: Some(Duration::from_millis(100)),
        heartbeat: Duration::from_millis(300),
    }
}

async fn node_exists(store: &Arc<dyn Store>, name: &str) -> bool {
    Api::<Node>::default_account(store.clone())
        .get(name)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_node_lives_under_a_lease_comes_back_when_deleted_and_goes_when_renewal_stops()
{
    let (store, _dir) = embedded();
    let severable = Severable::new(store.clone());
    let agent = register_node(severable.clone(), info("cn1"), fast_lease())
        .await
        .expect("register");
    let nodes = Api::<Node>::default_account(store.clone());
    let node = nodes.get("cn1").await.expect("registered at once");
    assert_eq!((node.spec.memory_bytes, node.spec.cpus), (8 * GIB, 2));
    let kv = store.get(&nodes.key("cn1")).await.unwrap().unwrap();
    assert!(kv.lease.is_some(), "the Node is attached to a lease");
    let first_beat = node.status.heartbeat.expect("a heartbeat");
    wait_for(DEADLINE, "a later heartbeat", || async {
        nodes
            .get("cn1")
            .await
            .ok()
            .and_then(|n| n.status.heartbeat)
            .is_some_and(|t| t > first_beat)
    })
    .await;

    // An operator cordons it: the agent keeps that.
    let mut cordoned = nodes.get("cn1").await.unwrap();
    cordoned.spec.unschedulable = true;
    let cordoned = nodes.replace(&cordoned).await.unwrap();
    let beat = cordoned.status.heartbeat.expect("a heartbeat");
    wait_for(DEADLINE, "a heartbeat after the cordon", || async {
        nodes
            .get("cn1")
            .await
            .ok()
            .and_then(|n| n.status.heartbeat)
            .is_some_and(|t| t > beat)
    })
    .await;
    // An operator deletes it: the agent writes it again.
    nodes.delete("cn1", None).await.unwrap();
    wait_for(DEADLINE, "the node re-created", || {
        node_exists(&store, "cn1")
    })
    .await;
    assert!(
        nodes.get("cn1").await.unwrap().spec.unschedulable,
        "still cordoned"
    );

    // The agent can no longer reach the store: the lease runs out and the
    // Node disappears.
    severable.sever();
    wait_for(DEADLINE, "the node gone with its lease", || async {
        !node_exists(&store, "cn1").await
    })
    .await;
    drop(agent);

    // Registered again (the agent restarted): back, and a clean stop
    // removes it at once.
    let agent = register_node(store.clone(), info("cn1"), fast_lease())
        .await
        .expect("register again");
    assert!(node_exists(&store, "cn1").await);
    agent.stop().await;
    assert!(!node_exists(&store, "cn1").await, "stop revokes the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_name_held_by_another_node_is_refused() {
    let (store, _dir) = embedded();
    let first = register_node(store.clone(), info("cn1"), fast_lease())
        .await
        .expect("register");
    let mut other = info("cn1");
    other.uuid = "11111111-0000-0000-0000-000000000000".into();
    let e = register_node(store.clone(), other, fast_lease())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("is held by node"), "{e}");
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_from_two_instances_at_once_gives_one_set_and_keeps_an_operators_edit() {
    let (store, _dir) = embedded();
    let (a, b) = tokio::join!(
        seed_default_packages(store.clone()),
        seed_default_packages(store.clone())
    );
    let created = a.expect("seed a") + b.expect("seed b");
    assert_eq!(created, 10, "each package created once");
    let api = Api::<Package>::default_account(store.clone());
    let list = api.list().await.unwrap();
    assert_eq!(list.items.len(), 10);
    assert!(list.items.iter().all(|p| p.metadata.generation == 1));

    let mut edited = api.get("sample-1G").await.unwrap();
    edited.spec.cpu_shares = 7;
    api.replace(&edited).await.unwrap();
    api.delete("sample-64G", None).await.unwrap();
    assert_eq!(
        seed_default_packages(store.clone())
            .await
            .expect("seed again"),
        0
    );
    assert_eq!(
        api.get("sample-1G").await.unwrap().spec.cpu_shares,
        7,
        "the edit stands"
    );
    assert!(
        api.get("sample-64G").await.is_err(),
        "a deleted default stays deleted"
    );
}

/// A store whose watches deliver every event `lag` late, so the caches
/// trail the store as they would behind a slow link.
struct LaggingWatches {
    inner: Arc<dyn Store>,
    lag: Duration,
}

#[async_trait::async_trait]
impl Store for LaggingWatches {
    async fn get(&self, key: &str) -> sdc_docker_store::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> sdc_docker_store::Result<(Vec<KeyValue>, i64)> {
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> sdc_docker_store::Result<i64> {
        self.inner.create(key, value, lease, fence).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> sdc_docker_store::Result<i64> {
        self.inner.update(key, value, expected, fence).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
        fence: Option<&Fence>,
    ) -> sdc_docker_store::Result<i64> {
        self.inner.delete(key, expected, fence).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> sdc_docker_store::Result<WatchStream> {
        use futures::StreamExt;
        let lag = self.lag;
        let stream = self.inner.watch(prefix, from_revision).await?;
        // Each item held `lag` from when it arrived, order kept.
        Ok(Box::pin(
            stream
                .map(move |item| async move {
                    tokio::time::sleep(lag).await;
                    item
                })
                .buffered(10_000),
        ))
    }
    async fn revision(&self) -> sdc_docker_store::Result<i64> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: i64) -> sdc_docker_store::Result<()> {
        self.inner.compact(revision).await
    }
    async fn lease_grant(&self, ttl: Duration) -> sdc_docker_store::Result<LeaseId> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> sdc_docker_store::Result<Duration> {
        self.inner.lease_keep_alive(lease).await
    }
    async fn lease_revoke(&self, lease: LeaseId) -> sdc_docker_store::Result<()> {
        self.inner.lease_revoke(lease).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_containers_created_at_once_never_overcommit_a_node_even_when_the_cache_lags() {
    let (inner, _dir) = embedded();
    // The placements written lag behind in the cache by far more than a
    // decision takes: only what placement remembers keeps the count right.
    let store: Arc<dyn Store> = Arc::new(LaggingWatches {
        inner,
        lag: Duration::from_millis(300),
    });
    seed_default_packages(store.clone()).await.expect("seed");
    add_node(&store, "cn1", 4 * GIB, false).await;
    let running = start_placement(&store, Duration::from_secs(3600));
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    futures::future::join_all(names.iter().map(|n| add_container(&store, n, GIB, None))).await;
    let api = Api::<Container>::default_account(store.clone());
    let decided = wait_for_value(DEADLINE, "every container decided", || {
        let api = api.clone();
        async move {
            let items = api.list().await.ok()?.items;
            (items.len() == 10 && items.iter().all(|c| scheduled(c).is_some())).then_some(items)
        }
    })
    .await;
    let placed = decided.iter().filter(|c| c.status.node == "cn1").count();
    assert_eq!(placed, 4, "4 GiB holds four 1 GiB containers, no more");
    for c in decided.iter().filter(|c| c.status.node.is_empty()) {
        assert_eq!(
            scheduled(c).unwrap().message,
            "no node has 1 GiB free (largest free: 0 bytes on node cn1)"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_within_the_ttl_keeps_its_node_when_the_old_lease_ends() {
    let (store, _dir) = embedded();
    let severable = Severable::new(store.clone());
    let old = register_node(severable.clone(), info("cn1"), fast_lease())
        .await
        .expect("register");
    let nodes = Api::<Node>::default_account(store.clone());
    let key = nodes.key("cn1");
    let old_lease = store.get(&key).await.unwrap().unwrap().lease;
    // Killed: it neither renews nor revokes.
    severable.sever();
    drop(old);
    let new = register_node(store.clone(), info("cn1"), fast_lease())
        .await
        .expect("register again");
    let new_lease = store.get(&key).await.unwrap().unwrap().lease;
    assert_ne!(new_lease, old_lease, "moved to the new agent's lease");
    // A probe on the old lease shows when it ends: the node stays.
    store
        .create("/probe-old-lease", Vec::new(), old_lease, None)
        .await
        .expect("probe on the old lease");
    wait_for(DEADLINE, "the old lease to end", || async {
        store
            .get("/probe-old-lease")
            .await
            .is_ok_and(|kv| kv.is_none())
    })
    .await;
    assert!(node_exists(&store, "cn1").await);
    new.stop().await;
}
