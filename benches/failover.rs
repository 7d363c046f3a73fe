//! Failover of a cluster-scoped controller between real processes.
//!
//! Two `sdc-docker serve` instances on one real etcd (`--lease-ttl 2s`);
//! the instance leading `validate-containers` is killed with `kill -9`;
//! right after, a malformed spec is put straight into etcd. Measured: the
//! time from the kill until the survivor (a) reports itself leader in
//! `/metrics` and (b) has reconciled the new spec (its `Invalid` condition
//! is in etcd) — the first reconcile by the new leader. Median of several
//! runs; `cargo bench --bench failover` prints a Markdown table for
//! docs/performance.md. Under `cargo test` (no `--bench`) one run only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Server, etcdctl};

fn leads(server: &Server, controller: &str) -> bool {
    server.leader_gauge(controller) == Some(1)
}

async fn one_run(round: usize) -> (Duration, Duration) {
    let etcd = sdc_docker_testkit::Etcd::start().await;
    let args = ["--lease-ttl", "2s"];
    let mut a = Server::start_with(&etcd.store_url(), &args).await;
    let mut b = Server::start_with(&etcd.store_url(), &args).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(leads(&a, "validate-containers") || leads(&b, "validate-containers")) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (victim, survivor) = if leads(&a, "validate-containers") {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    victim.kill9();
    let killed = Instant::now();
    let key = format!("/sdc-docker/v1/containers/default/bad-{round}");
    let put = etcdctl(
        &etcd.endpoints(),
        &["put", &key, r#"{"metadata":{},"spec":{"memory":"lots"}}"#],
    );
    assert!(put.ok, "{put:?}");
    let mut leader_at = None;
    loop {
        assert!(killed.elapsed() < Duration::from_secs(20), "no failover");
        if leader_at.is_none() && leads(survivor, "validate-containers") {
            leader_at = Some(killed.elapsed());
        }
        let got = etcdctl(&etcd.endpoints(), &["get", &key, "--print-value-only"]);
        if got.stdout.contains("MalformedSpec") {
            let reconciled = killed.elapsed();
            return (leader_at.unwrap_or(reconciled), reconciled);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let runs = if benching { 5 } else { 1 };
    let mut leader = Vec::new();
    let mut reconciled = Vec::new();
    for round in 0..runs {
        let (l, r) = one_run(round).await;
        leader.push(l);
        reconciled.push(r);
    }
    leader.sort();
    reconciled.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    let range = |v: &[Duration]| {
        format!(
            "{:.2}–{:.2} s",
            v[0].as_secs_f64(),
            v[v.len() - 1].as_secs_f64()
        )
    };
    println!(
        "| `kill -9` of the leading process, `--lease-ttl 2s`, {runs} runs | median | range |"
    );
    println!("| --- | ---: | ---: |");
    println!(
        "| survivor reports itself leader | {:.2} s | {} |",
        median(&leader).as_secs_f64(),
        range(&leader)
    );
    println!(
        "| first reconcile by the new leader | {:.2} s | {} |",
        median(&reconciled).as_secs_f64(),
        range(&reconciled)
    );
}
