//! The etcd backend against a real etcd (Debian's etcd-server 3.4): the
//! semantics the `Store` trait documents, and how the client behaves when
//! members die or freeze.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_docker_store::{Election, Error, EtcdStore, EventKind, Fence, Store, WatchItem, keys};
use sdc_docker_testkit::{Etcd, EtcdCluster, free_port, wait_for};

async fn store(etcd: &Etcd) -> EtcdStore {
    EtcdStore::connect(&etcd.endpoints())
        .await
        .expect("connecting to the test etcd")
}

/// The next watch item, failing the test if none comes within 10 s.
async fn next_item(stream: &mut sdc_docker_store::WatchStream) -> Option<WatchItem> {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(item))) => Some(item),
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no watch item within 10 s"),
    }
}

fn event(item: Option<WatchItem>) -> sdc_docker_store::Event {
    match item {
        Some(WatchItem::Event(ev)) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn create_is_create_if_absent_and_writes_compare_the_revision() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;

    let r1 = store
        .create("t/a", b"1".to_vec(), None, None)
        .await
        .unwrap();
    let kv = store.get("t/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.lease),
        (r1, r1, None)
    );
    assert_eq!(kv.value, b"1");
    assert!(matches!(
        store.create("t/a", b"2".to_vec(), None, None).await,
        Err(Error::AlreadyExists { key }) if key == "t/a"
    ));

    let r2 = store.update("t/a", b"2".to_vec(), r1, None).await.unwrap();
    assert!(r2 > r1);
    match store.update("t/a", b"3".to_vec(), r1, None).await {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!((key.as_str(), expected, actual), ("t/a", r1, r2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("t/missing", b"x".to_vec(), r1, None).await,
        Err(Error::NotFound { .. })
    ));
    // Expecting revision 0 of an absent key is not a create.
    assert!(matches!(
        store.update("t/missing", b"x".to_vec(), 0, None).await,
        Err(Error::NotFound { .. })
    ));

    assert!(matches!(
        store.delete("t/a", Some(r1), None).await,
        Err(Error::Conflict { actual, .. }) if actual == r2
    ));
    let r3 = store.delete("t/a", Some(r2), None).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(store.revision().await.unwrap(), r3);
    assert!(store.get("t/a").await.unwrap().is_none());
    assert!(matches!(
        store.delete("t/a", None, None).await,
        Err(Error::NotFound { .. })
    ));
    // Re-created: a new create revision.
    let r4 = store
        .create("t/a", b"again".to_vec(), None, None)
        .await
        .unwrap();
    assert_eq!(store.get("t/a").await.unwrap().unwrap().create_revision, r4);
    let r5 = store.delete("t/a", None, None).await.unwrap();
    assert_eq!(r5, r4 + 1);

    // Values over etcd's request limit (1.5 MiB) are refused for good, by
    // etcd or (larger still) by its gRPC server.
    for size in [1_700_000, 3_000_000] {
        match store.create("t/big", vec![b'x'; size], None, None).await {
            Err(Error::Invalid { key, message }) => {
                assert_eq!(key, "t/big");
                eprintln!("{size} bytes: {message}");
            }
            other => panic!("expected Invalid for {size} bytes, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn list_is_one_snapshot_in_key_order_across_pages() {
    let etcd = Etcd::start().await;
    let mut options = EtcdStore::default_options();
    options.list_page_size = 3;
    let store = EtcdStore::connect_with(&etcd.endpoints(), options)
        .await
        .unwrap();
    for i in (0..10).rev() {
        store
            .create(&format!("l/{i:02}"), vec![i], None, None)
            .await
            .unwrap();
    }
    store
        .create("l0", b"outside".to_vec(), None, None)
        .await
        .unwrap();
    store
        .create("k/1", b"outside".to_vec(), None, None)
        .await
        .unwrap();
    let (kvs, revision) = store.list("l/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("l/{i:02}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(revision, store.revision().await.unwrap());
    let (all, _) = store.list("").await.unwrap();
    assert_eq!(all.len(), 12);
    let (none, _) = store.list("nothing/").await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn update_keeps_the_lease_and_revoking_deletes_the_key() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    let r1 = store
        .create("lk/a", b"1".to_vec(), Some(lease), None)
        .await
        .unwrap();
    let r2 = store.update("lk/a", b"2".to_vec(), r1, None).await.unwrap();
    let kv = store.get("lk/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.lease, kv.mod_revision, kv.value.as_slice()),
        (Some(lease), r2, &b"2"[..])
    );

    let ttl = store.lease_keep_alive(lease).await.unwrap();
    assert_eq!(ttl, Duration::from_secs(30));

    store.lease_revoke(lease).await.unwrap();
    assert!(store.get("lk/a").await.unwrap().is_none());
    assert!(matches!(
        store.lease_keep_alive(lease).await,
        Err(Error::LeaseNotFound(id)) if id == lease
    ));
    assert!(matches!(
        store.lease_revoke(lease).await,
        Err(Error::LeaseNotFound(id)) if id == lease
    ));
    assert!(matches!(
        store.create("lk/b", b"x".to_vec(), Some(lease), None).await,
        Err(Error::LeaseNotFound(id)) if id == lease
    ));
}

#[tokio::test]
async fn watch_replays_history_in_order_with_previous_values() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let r1 = store
        .create("w/a", b"a1".to_vec(), None, None)
        .await
        .unwrap();
    let r2 = store.update("w/a", b"a2".to_vec(), r1, None).await.unwrap();
    let r3 = store
        .create("w/b", b"b1".to_vec(), None, None)
        .await
        .unwrap();
    store
        .create("other/x", b"x".to_vec(), None, None)
        .await
        .unwrap();
    let r4 = store.delete("w/a", None, None).await.unwrap();

    let mut stream = store.watch("w/", r1).await.unwrap();
    let e1 = event(next_item(&mut stream).await);
    assert_eq!(
        (
            e1.kind,
            e1.kv.key.as_str(),
            e1.revision(),
            e1.prev.is_none()
        ),
        (EventKind::Put, "w/a", r1, true)
    );
    let e2 = event(next_item(&mut stream).await);
    assert_eq!(
        (e2.kind, e2.revision(), e2.kv.value.as_slice()),
        (EventKind::Put, r2, &b"a2"[..])
    );
    assert_eq!(
        e2.prev.as_ref().map(|p| p.value.as_slice()),
        Some(&b"a1"[..])
    );
    let e3 = event(next_item(&mut stream).await);
    assert_eq!((e3.kv.key.as_str(), e3.revision()), ("w/b", r3));
    let e4 = event(next_item(&mut stream).await);
    assert_eq!(e4.kind, EventKind::Delete);
    assert_eq!((e4.kv.key.as_str(), e4.kv.mod_revision), ("w/a", r4));
    assert!(e4.kv.value.is_empty());
    let prev = e4.prev.expect("a delete carries the previous value");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"a2"[..], r2));

    // Then live changes.
    let r5 = store
        .create("w/c", b"c".to_vec(), None, None)
        .await
        .unwrap();
    let e5 = event(next_item(&mut stream).await);
    assert_eq!((e5.kv.key.as_str(), e5.revision()), ("w/c", r5));

    // From 0: only what happens after the watch is established.
    let mut now = store.watch("w/", 0).await.unwrap();
    let r6 = store
        .create("w/d", b"d".to_vec(), None, None)
        .await
        .unwrap();
    let e6 = event(next_item(&mut now).await);
    assert_eq!((e6.kv.key.as_str(), e6.revision()), ("w/d", r6));
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_reports_compaction_and_ends() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let r1 = store
        .create("c/a", b"1".to_vec(), None, None)
        .await
        .unwrap();
    let mut rev = r1;
    for i in 0..5 {
        rev = store.update("c/a", vec![i], rev, None).await.unwrap();
    }
    store.compact(rev).await.unwrap();
    // Compacting again at or below is a no-op.
    store.compact(rev).await.unwrap();
    store.compact(r1).await.unwrap();
    assert!(matches!(
        store.compact(rev + 100).await,
        Err(Error::Rejected(_))
    ));

    let mut stream = store.watch("c/", r1).await.unwrap();
    assert_eq!(
        next_item(&mut stream).await,
        Some(WatchItem::Compacted {
            compact_revision: rev
        })
    );
    assert_eq!(next_item(&mut stream).await, None);

    // From the compaction revision on, history is still there.
    let mut stream = store.watch("c/", rev).await.unwrap();
    let ev = event(next_item(&mut stream).await);
    assert_eq!(ev.revision(), rev);
    let (kvs, _) = store.list("c/").await.unwrap();
    assert_eq!(kvs.len(), 1);
}

#[tokio::test]
async fn lease_expiry_deletes_attached_keys_as_delete_events() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let lease = store.lease_grant(Duration::from_secs(1)).await.unwrap();
    let created = store
        .create("e/a", b"1".to_vec(), Some(lease), None)
        .await
        .unwrap();
    let mut stream = store.watch("e/", created + 1).await.unwrap();
    let started = Instant::now();
    // etcd's minimum TTL with a 1 s election timeout is 2 s; expiry is
    // checked every 500 ms.
    let ev = match tokio::time::timeout(Duration::from_secs(15), stream.next()).await {
        Ok(Some(Ok(WatchItem::Event(ev)))) => ev,
        other => panic!("expected the expiry's delete event, got {other:?}"),
    };
    assert_eq!((ev.kind, ev.kv.key.as_str()), (EventKind::Delete, "e/a"));
    assert_eq!(ev.prev.map(|p| p.lease), Some(Some(lease)));
    eprintln!("lease of 1 s expired after {:?}", started.elapsed());
    assert!(store.get("e/a").await.unwrap().is_none());
    assert!(matches!(
        store.lease_keep_alive(lease).await,
        Err(Error::LeaseNotFound(_))
    ));
}

#[tokio::test]
async fn fenced_writes_are_rejected_once_the_fence_key_is_gone() {
    let etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let token = store
        .create("elections/x/1", b"me".to_vec(), None, None)
        .await
        .unwrap();
    let fence = Fence {
        key: "elections/x/1".into(),
        token,
    };
    let r1 = store
        .create("f/a", b"1".to_vec(), None, Some(&fence))
        .await
        .unwrap();
    let r2 = store
        .update("f/a", b"2".to_vec(), r1, Some(&fence))
        .await
        .unwrap();
    // A wrong token is a broken fence, too.
    let stale = Fence {
        key: fence.key.clone(),
        token: token - 1,
    };
    assert!(matches!(
        store.update("f/a", b"x".to_vec(), r2, Some(&stale)).await,
        Err(Error::Fenced { .. })
    ));

    store.delete("elections/x/1", None, None).await.unwrap();
    // Even a write that would otherwise conflict or find the key present
    // reports the fence first.
    for result in [
        store.create("f/b", b"1".to_vec(), None, Some(&fence)).await,
        store.create("f/a", b"1".to_vec(), None, Some(&fence)).await,
        store.update("f/a", b"3".to_vec(), r2, Some(&fence)).await,
        store.update("f/a", b"3".to_vec(), r1, Some(&fence)).await,
        store.delete("f/a", Some(r2), Some(&fence)).await,
        store.delete("f/a", None, Some(&fence)).await,
    ] {
        match result {
            Err(Error::Fenced {
                fence_key,
                token: t,
            }) => {
                assert_eq!((fence_key.as_str(), t), ("elections/x/1", token));
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
    assert_eq!(store.get("f/a").await.unwrap().unwrap().mod_revision, r2);
    assert!(store.get("f/b").await.unwrap().is_none());

    // Re-created under the same name: a new token, the old fence still fails.
    store
        .create("elections/x/1", b"me".to_vec(), None, None)
        .await
        .unwrap();
    assert!(matches!(
        store.delete("f/a", None, Some(&fence)).await,
        Err(Error::Fenced { .. })
    ));
}

#[tokio::test]
async fn the_shared_election_elects_one_leader_and_fences_a_resigned_one() {
    let etcd = Etcd::start().await;
    let store: Arc<dyn Store> = Arc::new(store(&etcd).await);
    let election = Election::new(store.clone(), "controller", Duration::from_secs(2));
    let first = election.campaign("one").await.unwrap();
    let leader = election.leader().await.unwrap().unwrap();
    assert_eq!(
        (leader.value.as_str(), leader.token),
        ("one", first.fence().token)
    );

    let other = election.clone();
    let second = tokio::spawn(async move { other.campaign("two").await });
    // The second candidate waits while the first leads (keep-alives renew the
    // 2 s lease meanwhile).
    wait_for(
        Duration::from_secs(10),
        "the second candidate's key",
        || async {
            store
                .list(&keys::election("controller"))
                .await
                .map(|(kvs, _)| kvs.len() == 2)
                .unwrap_or(false)
        },
    )
    .await;
    assert!(!second.is_finished());
    let fence = first.fence().clone();
    first.resign().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second candidate is elected")
        .unwrap()
        .unwrap();
    assert!(second.fence().token > fence.token);
    assert!(matches!(
        store.create("fenced/x", vec![], None, Some(&fence)).await,
        Err(Error::Fenced { .. })
    ));
    store
        .create("fenced/x", vec![], None, Some(second.fence()))
        .await
        .unwrap();
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast_with_unavailable() {
    let endpoints = vec![
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", free_port()),
    ];
    let started = Instant::now();
    match EtcdStore::connect(&endpoints).await {
        Err(Error::Unavailable(msg)) => eprintln!("connect error: {msg}"),
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_watch_on_a_killed_server_ends_with_unavailable() {
    let mut etcd = Etcd::start().await;
    let store = store(&etcd).await;
    let mut stream = store.watch("k/", 0).await.unwrap();
    etcd.kill();
    match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        Ok(Some(Err(Error::Unavailable(msg)))) => eprintln!("watch error: {msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await,
        Ok(None)
    ));
    let started = Instant::now();
    assert!(matches!(store.get("k/a").await, Err(Error::Unavailable(_))));
    assert!(matches!(
        store.create("k/a", vec![], None, None).await,
        Err(Error::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The endpoints with a follower first, and that follower's index.
async fn follower_first(cluster: &EtcdCluster) -> (Vec<String>, usize) {
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % cluster.len();
    let mut endpoints = vec![cluster.endpoint(follower)];
    endpoints.extend(
        (0..cluster.len())
            .filter(|i| *i != follower)
            .map(|i| cluster.endpoint(i)),
    );
    (endpoints, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_over_from_a_killed_member_without_errors() {
    let mut cluster = EtcdCluster::start(3).await;
    let (endpoints, follower) = follower_first(&cluster).await;
    let store = EtcdStore::connect(&endpoints).await.unwrap();
    let lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    let mut watch = store.watch("fo/", 0).await.unwrap();
    store.create("fo/before", vec![], None, None).await.unwrap();
    assert!(matches!(watch.next().await, Some(Ok(WatchItem::Event(_)))));

    cluster.kill(follower);
    let started = Instant::now();
    // Writes and reads alike go on, without a single error: the dead member
    // refuses connections, so nothing was sent to it.
    for i in 0..20 {
        let key = format!("fo/{i}");
        let rev = store
            .create(&key, vec![i], Some(lease), None)
            .await
            .unwrap();
        let kv = store.get(&key).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, rev);
        store.update(&key, vec![i, i], rev, None).await.unwrap();
        store.lease_keep_alive(lease).await.unwrap();
    }
    let (kvs, _) = store.list("fo/").await.unwrap();
    assert_eq!(kvs.len(), 21);
    eprintln!("80 requests after the kill took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));

    // The watch was on the dead member: it ends with an error, and watching
    // again from the next revision lands on a live member and replays.
    let mut last = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(WatchItem::Event(ev)))) => last = ev.revision(),
            Ok(Some(Err(Error::Unavailable(_)))) => break,
            other => panic!("expected events then Unavailable, got {other:?}"),
        }
    }
    let mut again = store.watch("fo/", last + 1).await.unwrap();
    let ev = event(next_item(&mut again).await);
    assert!(ev.revision() > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_costs_one_deadline_then_requests_go_elsewhere() {
    let cluster = EtcdCluster::start(3).await;
    let (endpoints, follower) = follower_first(&cluster).await;
    let mut options = EtcdStore::default_options();
    options.request_timeout = Duration::from_millis(1500);
    let store = EtcdStore::connect_with(&endpoints, options).await.unwrap();
    store
        .create("fz/a", b"1".to_vec(), None, None)
        .await
        .unwrap();

    cluster.pause(follower);
    // A read is retried on the next member after the deadline.
    let started = Instant::now();
    let kv = store.get("fz/a").await.unwrap();
    assert!(kv.is_some());
    let first = started.elapsed();
    assert!(first < Duration::from_secs(3), "{first:?}");
    // Then requests go to a live member directly.
    let started = Instant::now();
    for i in 0..10 {
        store
            .create(&format!("fz/{i}"), vec![], None, None)
            .await
            .unwrap();
    }
    let rest = started.elapsed();
    eprintln!("first read after the freeze: {first:?}; 10 writes then: {rest:?}");
    assert!(rest < Duration::from_secs(2), "{rest:?}");
    cluster.resume(follower);
}
