//! Runtime benchmark, embedded store and a real etcd side by side:
//!
//! - **start → all reconciled**: N volumes in the store; the time from
//!   starting a manager (one cluster-scoped controller with a no-op
//!   reconcile, so it includes winning the election and the first list) to
//!   every key reconciled once, as reconciles per second;
//! - **RSS growth**: the process's `VmRSS` after that minus before it;
//! - **failover**: two managers, the leader "killed", and the time until the
//!   new leader's first reconcile, median of several runs with a 2 s lease
//!   TTL. In-process, "killed" means: the leader's store handle is severed
//!   (every call fails, so it can neither renew nor revoke its lease) and its
//!   manager task is aborted; its lease then expires as a dead process's
//!   would.
//!
//! `cargo bench -p sdc-docker-controllers` runs 10,000 objects and 5
//! failovers per backend; without `--bench` (as `cargo test` runs it) it is
//! a smoke test with 1,000 objects and one failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sdc_docker_controllers::testing::Severable;
use sdc_docker_controllers::{
    Action, Context, Controller, Manager, ManagerOptions, ObjectKey, ReconcileError, reconcile_fn,
};
use sdc_docker_store::model::{Package, Volume, VolumeSpec};
use sdc_docker_store::{Api, EmbeddedOptions, EmbeddedStore, EtcdStore, Resource, Store};
use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn populate(store: &Arc<dyn Store>, prefix: &str, n: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, next, prefix) = (store.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let api = Api::<Volume>::new(store, "bench");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                api.create(&Volume::new(
                    &format!("{prefix}{i:06}"),
                    VolumeSpec::default(),
                ))
                .await
                .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn noop(
    _: ObjectKey,
    ctx: Context<Volume, Arc<AtomicUsize>>,
) -> Result<Action, ReconcileError> {
    ctx.data().fetch_add(1, Ordering::Relaxed);
    Ok(Action::AwaitChange)
}

fn options(instance: &str) -> ManagerOptions {
    ManagerOptions {
        instance_id: instance.into(),
        lease_ttl: TTL,
        lease_renew: None,
        drain_timeout: Duration::from_secs(5),
    }
}

/// Seconds from start to `n` reconciles, and the RSS growth in KiB.
async fn start_to_all_reconciled(store: Arc<dyn Store>, n: usize) -> (Duration, i64) {
    let count = Arc::new(AtomicUsize::new(0));
    let before = rss_kib();
    let started = Instant::now();
    let mut manager = Manager::new(store, options("bench"));
    manager
        .add(Controller::<Volume>::new("bench", reconcile_fn(noop), count.clone()).concurrency(32));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(manager.run(async move {
        let _ = stopped.await;
    }));
    while count.load(Ordering::Relaxed) < n {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not all reconciled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let grown = rss_kib() as i64 - before as i64;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    (took, grown)
}

/// One failover: time from the leader's kill to the new leader's first reconcile.
async fn failover(
    connect: &(dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Store>> + Sync),
) -> Duration {
    let first: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut handles = Vec::new();
    for instance in ["a", "b"] {
        let store = Severable::new(connect().await);
        let mut manager = Manager::new(store.clone(), options(instance));
        let log = first.clone();
        let name = instance.to_string();
        manager.add(
            Controller::<Package>::new(
                "failover",
                reconcile_fn(move |_key: ObjectKey, _ctx: Context<Package, ()>| {
                    let (log, name) = (log.clone(), name.clone());
                    async move {
                        log.lock().await.push((name, Instant::now()));
                        Ok(Action::RequeueAfter(Duration::from_millis(20)))
                    }
                }),
                (),
            )
            .concurrency(4),
        );
        let metrics = manager.metrics();
        let task = tokio::spawn(manager.run(std::future::pending()));
        handles.push((instance, store, metrics, task));
    }
    let leader = loop {
        let leading = handles
            .iter()
            .find(|h| h.2.controller("failover").is_leader())
            .map(|h| h.0);
        if let Some(leader) = leading
            && !first.lock().await.is_empty()
        {
            break leader;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (_, store, _, task) = handles.iter().find(|h| h.0 == leader).unwrap();
    store.sever();
    task.abort();
    let killed = Instant::now();
    let took = loop {
        if let Some((_, at)) = first
            .lock()
            .await
            .iter()
            .find(|(n, at)| n != leader && *at > killed)
        {
            break *at - killed;
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "no failover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for (_, _, _, task) in handles {
        task.abort();
    }
    took
}

struct Row {
    backend: &'static str,
    objects: usize,
    took: Duration,
    rss_kib: i64,
    failovers: Vec<Duration>,
}

async fn bench(
    backend: &'static str,
    connect: &(dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Store>> + Sync),
    n: usize,
    runs: usize,
) -> Row {
    let store = connect().await;
    populate(&store, "v", n).await;
    let (took, rss_kib) = start_to_all_reconciled(store.clone(), n).await;
    // Failover is measured on a few objects of another kind, so the
    // requeueing reconciles do not compete with the N volumes.
    let api = Api::<Package>::new(store.clone(), "bench");
    for i in 0..10 {
        api.create(&Package::new(&format!("p{i}"), Default::default()))
            .await
            .expect("create package");
    }
    let mut failovers = Vec::new();
    for _ in 0..runs {
        failovers.push(failover(connect).await);
    }
    failovers.sort();
    Row {
        backend,
        objects: n,
        took,
        rss_kib,
        failovers,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if full { (10_000, 5) } else { (1_000, 1) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let embedded: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default()).unwrap(),
        );
        let e = embedded.clone();
        let connect_embedded = move || {
            let e = e.clone();
            Box::pin(async move { e }) as futures::future::BoxFuture<'static, Arc<dyn Store>>
        };
        let mut rows = vec![bench("embedded", &connect_embedded, n, runs).await];

        let etcd = sdc_docker_testkit::Etcd::start().await;
        let endpoints = etcd.endpoints();
        let connect_etcd = move || {
            let endpoints = endpoints.clone();
            Box::pin(async move {
                Arc::new(EtcdStore::connect(&endpoints).await.unwrap()) as Arc<dyn Store>
            }) as futures::future::BoxFuture<'static, Arc<dyn Store>>
        };
        rows.push(bench("etcd", &connect_etcd, n, runs).await);
        drop(etcd);

        println!(
            "\n| backend | objects | start → all reconciled | no-op reconciles/s | RSS growth | failover, median of {runs} (min–max), TTL {TTL:?} |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for r in &rows {
            let median = r.failovers[r.failovers.len() / 2];
            println!(
                "| {} | {} | {:.0} ms | {:.0} | {:.1} MiB | {:.2} s ({:.2}–{:.2} s) |",
                r.backend,
                r.objects,
                r.took.as_secs_f64() * 1e3,
                r.objects as f64 / r.took.as_secs_f64(),
                r.rss_kib as f64 / 1024.0,
                median.as_secs_f64(),
                r.failovers[0].as_secs_f64(),
                r.failovers[r.failovers.len() - 1].as_secs_f64(),
            );
        }
        println!(
            "\nFailover: the leader is \"killed\" in-process — its store handle severed (no keep-alive, no revoke) and its manager task aborted — so its lease expires after the TTL as a `kill -9`ed process's would."
        );
    });
}
