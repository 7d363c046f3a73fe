//! Behaviour of the embedded backend beyond the shared conformance suite:
//! durability across `kill -9`, and watchers that fall behind the writer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sdc_docker_store::{EmbeddedOptions, EmbeddedStore, Store, WatchItem};

const CHILD_DIR: &str = "SDC_DOCKER_STORE_CHILD_DIR";

/// Not a test on its own: the body of the child process that
/// `reopened_after_kill_9_the_store_holds_every_acknowledged_write` starts
/// (this same test binary, run with the env var set). It writes from 16
/// tasks and prints `ack KEY` only after each write was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(
            &std::path::Path::new(&dir).join("store.redb"),
            Default::default(),
        )
        .expect("child opens the store"),
    );
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/k/{w:02}/{i:06}");
                store
                    .create(&key, key.as_bytes().to_vec(), None, None)
                    .await
                    .expect("write");
                // One line per write; stdout is line-buffered by the parent's pipe reader.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ack {key}");
                let _ = out.flush();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_after_kill_9_the_store_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 2000 {
        let line = lines
            .next()
            .expect("the child keeps writing")
            .expect("readable");
        if let Some(key) = line.strip_prefix("ack ") {
            acked.push(key.to_string());
        }
    }
    // SIGKILL mid-stream: no chance to flush or close anything.
    child.kill().unwrap();
    child.wait().unwrap();
    // Acks printed before the kill but not yet read are acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(key) = line.strip_prefix("ack ") {
            acked.push(key.to_string());
        }
    }

    let store = EmbeddedStore::open(&dir.path().join("store.redb"), Default::default())
        .expect("reopen after kill -9");
    let (items, revision) = store.list("/k/").await.unwrap();
    let present: std::collections::HashSet<_> = items.iter().map(|kv| kv.key.clone()).collect();
    let lost: Vec<_> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(revision >= acked.len() as i64);
    // The reopened store goes on writing after the highest revision.
    let r = store
        .create("/k/after", b"x".to_vec(), None, None)
        .await
        .unwrap();
    assert_eq!(r, revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_far_behind_catches_up_without_missing_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb"), Default::default()).unwrap();
    let mut w = store.watch("/k/", 0).await.unwrap();
    // Far more than a live watcher buffers, while nobody reads.
    let mut written = Vec::new();
    for i in 0..2500 {
        written.push(
            store
                .create(&format!("/k/{i}"), vec![1], None, None)
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(WatchItem::Event(e)))) => seen.push(e.revision()),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(seen, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_compacted_automatically_to_the_retained_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(
        &dir.path().join("s.redb"),
        EmbeddedOptions {
            retain_revisions: 100,
        },
    )
    .unwrap();
    let first = store.create("/k/a", vec![0], None, None).await.unwrap();
    let mut last = first;
    for i in 0..300 {
        last = store
            .update("/k/a", vec![i as u8], last, None)
            .await
            .unwrap();
    }
    let mut w = store.watch("/k/", first).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Ok(WatchItem::Compacted { compact_revision }))) => {
            assert!(
                compact_revision >= last - 110,
                "{compact_revision} vs {last}"
            );
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The last 100 revisions are still there to watch from.
    let mut w = store.watch("/k/", last - 99).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Ok(WatchItem::Event(e)))) => assert_eq!(e.revision(), last - 99),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_a_restart_and_expire_afterwards_if_not_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let lease = {
        let store = EmbeddedStore::open(&path, Default::default()).unwrap();
        let lease = store.lease_grant(Duration::from_secs(1)).await.unwrap();
        store
            .create("/k/leased", vec![1], Some(lease), None)
            .await
            .unwrap();
        lease
    };
    // Let the first instance's writer thread finish with the file.
    let store = loop {
        match EmbeddedStore::open(&path, Default::default()) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(
        store.get("/k/leased").await.unwrap().is_some(),
        "lease restored with a fresh TTL"
    );
    assert!(store.lease_keep_alive(lease).await.is_ok());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.get("/k/leased").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
