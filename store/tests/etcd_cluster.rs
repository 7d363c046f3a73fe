//! The etcd backend against a real 3-member etcd cluster whose leader is
//! killed with SIGKILL in the middle of a stream of writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sdc_docker_store::{Error, EtcdStore, Store};
use sdc_docker_testkit::{EtcdCluster, wait_for};

const WRITERS: usize = 4;
const PREFIX: &str = "chaos/";

/// Acknowledged keys with the instant each acknowledgement arrived.
type Acks = Arc<Mutex<Vec<(String, Instant)>>>;

/// What one writer saw.
#[derive(Default, Debug)]
struct WriterStats {
    /// Transient failures retried.
    retries: usize,
    /// Retries that found the key already there: the failed attempt had
    /// landed after all.
    landed_unseen: usize,
}

/// Create `chaos/w<id>/<n>` for n = 0, 1, … until `stop`, retrying each key
/// on transient errors until it is acknowledged.
async fn writer(
    id: usize,
    store: Arc<EtcdStore>,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> WriterStats {
    let mut stats = WriterStats::default();
    let mut n = 0;
    'keys: while !stop.load(Ordering::Relaxed) {
        let key = format!("{PREFIX}w{id}/{n:06}");
        let mut retried = false;
        loop {
            match store
                .create(&key, key.as_bytes().to_vec(), None, None)
                .await
            {
                Ok(_) => break,
                // A retry finding the key: the earlier attempt landed.
                Err(Error::AlreadyExists { .. }) if retried => {
                    stats.landed_unseen += 1;
                    break;
                }
                Err(e) if e.is_transient() => {
                    retried = true;
                    stats.retries += 1;
                    if stop.load(Ordering::Relaxed) {
                        // Not acknowledged: abandoned, and not counted.
                        break 'keys;
                    }
                    // Back off a little so a leaderless cluster is not
                    // hammered.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("writer {id}: {key}: {e}"),
            }
        }
        acks.lock().unwrap().push((key, Instant::now()));
        n += 1;
    }
    stats
}

fn acked_since(acks: &Acks, since: Instant) -> usize {
    acks.lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > since)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_loses_no_acknowledged_write_and_the_client_carries_on() {
    let started = Instant::now();
    let mut cluster = EtcdCluster::start(3).await;
    let formed = started.elapsed();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;

    // The leader's endpoint first, so the client is talking to the very
    // member that dies: the kill tests its fail-over and etcd's election.
    let mut endpoints = vec![cluster.endpoint(leader)];
    endpoints.extend(
        (0..cluster.len())
            .filter(|i| *i != leader)
            .map(|i| cluster.endpoint(i)),
    );
    let store = Arc::new(
        EtcdStore::connect(&endpoints)
            .await
            .expect("connecting to the cluster"),
    );

    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(id, store.clone(), acks.clone(), stop.clone())))
        .collect();

    let begin = Instant::now();
    wait_for(
        Duration::from_secs(20),
        "100 acknowledged writes before the kill",
        || async { acks.lock().unwrap().len() >= 100 },
    )
    .await;
    let before = acks.lock().unwrap().len();

    // Whoever leads now (it may have changed meanwhile, though unlikely).
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill(leader);
    let killed_at = Instant::now();

    // The writers carry on: plenty of writes acknowledged after the kill.
    wait_for(
        Duration::from_secs(30),
        "200 acknowledged writes after the kill",
        || async { acked_since(&acks, killed_at) >= 200 },
    )
    .await;
    let recovered = acks
        .lock()
        .unwrap()
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > killed_at)
        .min()
        .map(|at| at - killed_at);
    stop.store(true, Ordering::Relaxed);
    let mut stats = Vec::new();
    for w in writers {
        stats.push(w.await.expect("writer task"));
    }
    let writing = begin.elapsed();

    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader, "the killed member cannot lead");

    // Every acknowledged key is on every surviving member (linearizable
    // reads, so each member answers with everything committed).
    let acked: BTreeSet<String> = acks
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    let total = acked.len();
    for i in (0..cluster.len()).filter(|i| cluster.is_running(*i)) {
        let member = EtcdStore::connect(&[cluster.endpoint(i)])
            .await
            .expect("connecting to a surviving member");
        let (kvs, _) = member
            .list(PREFIX)
            .await
            .expect("listing a surviving member");
        let present: BTreeMap<String, Vec<u8>> =
            kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let missing: Vec<&String> = acked.iter().filter(|k| !present.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "member {i} lacks {} of {total} acknowledged keys, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        for key in &acked {
            assert_eq!(present[key], key.as_bytes(), "value of {key} on member {i}");
        }
        let unacknowledged = present.len() - total;
        eprintln!(
            "member {i}: all {total} acknowledged keys present \
             ({unacknowledged} more landed unacknowledged)"
        );
    }

    let retries: usize = stats.iter().map(|s| s.retries).sum();
    let landed_unseen: usize = stats.iter().map(|s| s.landed_unseen).sum();
    eprintln!(
        "cluster formed in {formed:?}; {before} writes before the kill, {} after; \
         first acknowledgement {recovered:?} after the kill; {retries} transient errors retried, \
         {landed_unseen} of which had landed; writing took {writing:?}",
        total - before
    );
}
