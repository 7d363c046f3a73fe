//! Store benchmark: both backends side by side in one run.
//!
//! - guarded (compare-and-swap) updates per second with 1 and 16 writers,
//!   each writer updating its own key with the revision it last wrote;
//! - watch delivery latency: the time from the start of a write to the
//!   arrival of its event at a watcher, p50 and p99, at a steady write rate.
//!
//! `cargo bench -p sdc-docker-store --bench store` prints a Markdown table
//! (copied into docs/performance.md). The etcd run starts a real etcd
//! (Debian's `etcd-server`) on loopback in a temp dir, as the tests do.
//! `SDC_BENCH_SECS` sets the length of each throughput run (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_docker_store::{EmbeddedStore, EtcdStore, Store, WatchItem};

struct Figures {
    updates_1: f64,
    updates_16: f64,
    p50: Duration,
    p99: Duration,
}

async fn cas_updates_per_second(store: Arc<dyn Store>, writers: usize, run: Duration) -> f64 {
    let mut tasks = Vec::new();
    let deadline = Instant::now() + run;
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/bench/cas/{writers}/{w}");
            let mut rev = store
                .create(&key, vec![0; 256], None, None)
                .await
                .expect("create");
            let mut n = 0u64;
            while Instant::now() < deadline {
                rev = store
                    .update(&key, vec![(n % 251) as u8; 256], rev, None)
                    .await
                    .expect("guarded update");
                n += 1;
            }
            n
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn watch_latency(store: Arc<dyn Store>, writes: usize) -> (Duration, Duration) {
    let from = store.revision().await.expect("revision") + 1;
    let mut watch = store.watch("/bench/watch/", from).await.expect("watch");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                let started = Instant::now();
                let rev = store
                    .create(&format!("/bench/watch/{i}"), vec![1; 256], None, None)
                    .await
                    .expect("create");
                let _ = tx.send((rev, started));
                // A steady rate, not a flood: latency, not throughput.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut arrivals = std::collections::HashMap::new();
    while arrivals.len() < writes {
        match watch.next().await {
            Some(Ok(WatchItem::Event(e))) => {
                arrivals.insert(e.revision(), Instant::now());
            }
            other => panic!("watch ended: {other:?}"),
        }
    }
    writer.await.expect("writer");
    let mut latencies = Vec::new();
    while let Ok((rev, started)) = rx.try_recv() {
        if let Some(arrived) = arrivals.get(&rev) {
            latencies.push(arrived.saturating_duration_since(started));
        }
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    (pick(0.50), pick(0.99))
}

async fn measure(store: Arc<dyn Store>, run: Duration) -> Figures {
    let updates_1 = cas_updates_per_second(store.clone(), 1, run).await;
    let updates_16 = cas_updates_per_second(store.clone(), 16, run).await;
    let (p50, p99) = watch_latency(store, 1000).await;
    Figures {
        updates_1,
        updates_16,
        p50,
        p99,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then this is only a smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: u64 = std::env::var("SDC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 5 } else { 1 });
    let run = Duration::from_secs(secs);

    let dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&dir.path().join("bench.redb"), Default::default())
            .expect("embedded store"),
    );
    let e = measure(embedded, run).await;

    let etcd = sdc_docker_testkit::Etcd::start().await;
    let client: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&etcd.endpoints())
            .await
            .expect("connect to etcd"),
    );
    let c = measure(client, run).await;

    let rows = [
        (
            "guarded updates/s, 1 writer",
            format!("{:.0}", e.updates_1),
            format!("{:.0}", c.updates_1),
            e.updates_1 / c.updates_1,
        ),
        (
            "guarded updates/s, 16 writers",
            format!("{:.0}", e.updates_16),
            format!("{:.0}", c.updates_16),
            e.updates_16 / c.updates_16,
        ),
        (
            "watch delivery p50",
            ms(e.p50),
            ms(c.p50),
            c.p50.as_secs_f64() / e.p50.as_secs_f64(),
        ),
        (
            "watch delivery p99",
            ms(e.p99),
            ms(c.p99),
            c.p99.as_secs_f64() / e.p99.as_secs_f64(),
        ),
    ];
    println!("| measure ({secs} s runs) | embedded | etcd 3.4 | embedded advantage |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, a, b, ratio) in rows {
        println!("| {name} | {a} | {b} | {ratio:.2}× |");
    }
}
