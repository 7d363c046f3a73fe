//! One conformance suite for the `Store` trait, run against both backends:
//! `embedded` on a temp dir, and `etcd` against a real etcd server (Debian's
//! `etcd-server`) started on free loopback ports for each test.
//!
//! Each behaviour is an `async fn` in `suite` taking a fresh store; the
//! `conformance!` macro instantiates every one of them once per backend.
//! Waiting is always for a condition with a deadline, never a blind sleep.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sdc_docker_store::model::{Container, ContainerSpec, DesiredState};
use sdc_docker_store::{
    Api, Decoded, Election, Error, EventKind, ObjectEvent, Resource, Store, WatchItem, WatchStream,
    keys,
};

/// A store under test plus whatever keeps it alive (temp dir, etcd process).
struct Harness {
    store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        sdc_docker_store::EmbeddedStore::open(&dir.path().join("store.redb"), Default::default())
            .expect("open embedded store");
    Harness {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

async fn etcd() -> Harness {
    let etcd = sdc_docker_testkit::Etcd::start().await;
    let store = sdc_docker_store::EtcdStore::connect(&etcd.endpoints())
        .await
        .expect("connect to etcd");
    Harness {
        store: Arc::new(store),
        _guard: Box::new(etcd),
    }
}

/// Next item of a watch, failing the test after `secs`.
async fn next_item(w: &mut WatchStream, secs: u64) -> WatchItem {
    tokio::time::timeout(Duration::from_secs(secs), w.next())
        .await
        .expect("watch item within the deadline")
        .expect("watch stream still open")
        .expect("watch item, not an error")
}

/// Next event of a watch (failing on anything else).
async fn next_event(w: &mut WatchStream) -> sdc_docker_store::Event {
    match next_item(w, 10).await {
        WatchItem::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

mod suite {
    use super::*;

    pub async fn create_fails_when_the_key_already_exists(s: Arc<dyn Store>) {
        let rev = s.create("/t/a", b"1".to_vec(), None, None).await.unwrap();
        assert!(rev > 0);
        let err = s
            .create("/t/a", b"2".to_vec(), None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        let kv = s.get("/t/a").await.unwrap().unwrap();
        assert_eq!(kv.value, b"1");
        assert_eq!(kv.create_revision, rev);
        assert_eq!(kv.mod_revision, rev);
    }

    pub async fn a_guarded_update_with_a_stale_revision_is_a_conflict_and_changes_nothing(
        s: Arc<dyn Store>,
    ) {
        let r1 = s.create("/t/a", b"1".to_vec(), None, None).await.unwrap();
        let r2 = s.update("/t/a", b"2".to_vec(), r1, None).await.unwrap();
        assert!(r2 > r1);
        let err = s.update("/t/a", b"3".to_vec(), r1, None).await.unwrap_err();
        match err {
            Error::Conflict {
                expected, actual, ..
            } => {
                assert_eq!(expected, r1);
                assert_eq!(actual, r2);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let kv = s.get("/t/a").await.unwrap().unwrap();
        assert_eq!(kv.value, b"2");
        assert_eq!(kv.create_revision, r1);
        assert_eq!(kv.mod_revision, r2);
    }

    pub async fn a_guarded_delete_with_a_stale_revision_is_a_conflict(s: Arc<dyn Store>) {
        let r1 = s.create("/t/a", b"1".to_vec(), None, None).await.unwrap();
        s.update("/t/a", b"2".to_vec(), r1, None).await.unwrap();
        let err = s.delete("/t/a", Some(r1), None).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
        assert!(s.get("/t/a").await.unwrap().is_some());
        s.delete("/t/a", None, None).await.unwrap();
        assert!(s.get("/t/a").await.unwrap().is_none());
    }

    pub async fn update_and_delete_of_a_missing_key_are_not_found(s: Arc<dyn Store>) {
        let err = s
            .update("/t/nope", b"x".to_vec(), 1, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let err = s.delete("/t/nope", None, None).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    }

    pub async fn list_returns_the_keys_under_a_prefix_in_order_at_one_revision(s: Arc<dyn Store>) {
        for k in ["/t/b", "/t/a", "/t/c", "/u/a", "/t"] {
            s.create(k, k.as_bytes().to_vec(), None, None)
                .await
                .unwrap();
        }
        let (items, rev) = s.list("/t/").await.unwrap();
        let keys: Vec<_> = items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/t/a", "/t/b", "/t/c"]);
        assert_eq!(rev, s.revision().await.unwrap());
    }

    pub async fn a_watch_from_an_old_revision_replays_history_in_order_with_previous_values(
        s: Arc<dyn Store>,
    ) {
        let r1 = s.create("/t/a", b"1".to_vec(), None, None).await.unwrap();
        let r2 = s.update("/t/a", b"2".to_vec(), r1, None).await.unwrap();
        let r3 = s.create("/t/b", b"x".to_vec(), None, None).await.unwrap();
        let r4 = s.delete("/t/a", None, None).await.unwrap();
        s.create("/other/z", b"z".to_vec(), None, None)
            .await
            .unwrap();

        let mut w = s.watch("/t/", r1).await.unwrap();
        let e = next_event(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.revision()),
            (EventKind::Put, "/t/a", r1)
        );
        assert!(e.prev.is_none());
        let e = next_event(&mut w).await;
        assert_eq!((e.kind, e.revision()), (EventKind::Put, r2));
        assert_eq!(e.kv.value, b"2");
        assert_eq!(
            e.prev.as_ref().map(|p| p.value.clone()),
            Some(b"1".to_vec())
        );
        let e = next_event(&mut w).await;
        assert_eq!((e.kv.key.as_str(), e.revision()), ("/t/b", r3));
        let e = next_event(&mut w).await;
        assert_eq!(
            (e.kind, e.kv.key.as_str(), e.revision()),
            (EventKind::Delete, "/t/a", r4)
        );
        assert_eq!(
            e.prev.as_ref().map(|p| p.value.clone()),
            Some(b"2".to_vec())
        );

        // And it carries on live.
        let r5 = s.create("/t/c", b"c".to_vec(), None, None).await.unwrap();
        let e = next_event(&mut w).await;
        assert_eq!((e.kv.key.as_str(), e.revision()), ("/t/c", r5));
    }

    pub async fn a_watch_interrupted_and_resumed_misses_nothing(s: Arc<dyn Store>) {
        let start = s.revision().await.unwrap() + 1;
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..200 {
                    revs.push(
                        s.create(&format!("/t/{i:04}"), vec![b'x'], None, None)
                            .await
                            .unwrap(),
                    );
                }
                revs
            })
        };
        let mut seen = Vec::new();
        let mut from = start;
        // Read a few events at a time, drop the watch, resume after the last.
        while seen.len() < 200 {
            let mut w = s.watch("/t/", from).await.unwrap();
            for _ in 0..17 {
                if seen.len() == 200 {
                    break;
                }
                let e = next_event(&mut w).await;
                from = e.revision() + 1;
                seen.push(e.revision());
            }
        }
        let written = writer.await.unwrap();
        assert_eq!(seen, written, "every write seen once, in order");
    }

    pub async fn a_watch_from_a_compacted_revision_reports_compacted(s: Arc<dyn Store>) {
        let r1 = s.create("/t/a", b"1".to_vec(), None, None).await.unwrap();
        let mut last = r1;
        for i in 0..5 {
            last = s.update("/t/a", vec![b'0' + i], last, None).await.unwrap();
        }
        s.compact(last - 1).await.unwrap();
        // At or below an earlier compaction is a no-op; the future is refused.
        s.compact(r1).await.unwrap();
        let err = s.compact(last + 100).await.unwrap_err();
        assert!(matches!(err, Error::Rejected(_)), "{err:?}");
        let mut w = s.watch("/t/", r1).await.unwrap();
        match next_item(&mut w, 10).await {
            WatchItem::Compacted { compact_revision } => assert!(compact_revision >= last - 1),
            other => panic!("expected Compacted, got {other:?}"),
        }
        // A watch from after the compaction point still works.
        let mut w = s.watch("/t/", last).await.unwrap();
        assert_eq!(next_event(&mut w).await.revision(), last);
    }

    pub async fn lease_expiry_deletes_attached_keys_and_emits_delete_events(s: Arc<dyn Store>) {
        let lease = s.lease_grant(Duration::from_secs(2)).await.unwrap();
        let from = s
            .create("/t/leased", b"x".to_vec(), Some(lease), None)
            .await
            .unwrap();
        s.create("/t/kept", b"y".to_vec(), None, None)
            .await
            .unwrap();
        assert_eq!(
            s.get("/t/leased").await.unwrap().unwrap().lease,
            Some(lease)
        );
        let mut w = s.watch("/t/", from + 1).await.unwrap();
        let _kept = next_event(&mut w).await;
        // No keep-alive: the lease ends within TTL (+ etcd's check interval).
        let e = match next_item(&mut w, 8).await {
            WatchItem::Event(e) => e,
            other => panic!("expected the delete, got {other:?}"),
        };
        assert_eq!(
            (e.kind, e.kv.key.as_str()),
            (EventKind::Delete, "/t/leased")
        );
        assert!(s.get("/t/leased").await.unwrap().is_none());
        assert!(s.get("/t/kept").await.unwrap().is_some());
        let err = s.lease_keep_alive(lease).await.unwrap_err();
        assert!(matches!(err, Error::LeaseNotFound(_)), "{err:?}");
    }

    pub async fn keep_alive_holds_a_lease_past_its_ttl_and_revoke_ends_it(s: Arc<dyn Store>) {
        let lease = s.lease_grant(Duration::from_secs(2)).await.unwrap();
        s.create("/t/leased", b"x".to_vec(), Some(lease), None)
            .await
            .unwrap();
        let until = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < until {
            let ttl = s.lease_keep_alive(lease).await.unwrap();
            assert!(ttl >= Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            s.get("/t/leased").await.unwrap().is_some(),
            "kept alive past its TTL"
        );
        s.lease_revoke(lease).await.unwrap();
        assert!(s.get("/t/leased").await.unwrap().is_none());
        assert!(matches!(
            s.lease_keep_alive(lease).await,
            Err(Error::LeaseNotFound(_))
        ));
    }

    pub async fn an_update_keeps_the_lease_of_its_key(s: Arc<dyn Store>) {
        let lease = s.lease_grant(Duration::from_secs(30)).await.unwrap();
        let r = s
            .create("/t/a", b"1".to_vec(), Some(lease), None)
            .await
            .unwrap();
        s.update("/t/a", b"2".to_vec(), r, None).await.unwrap();
        assert_eq!(s.get("/t/a").await.unwrap().unwrap().lease, Some(lease));
        s.lease_revoke(lease).await.unwrap();
        assert!(s.get("/t/a").await.unwrap().is_none());
    }

    pub async fn when_the_leader_s_lease_is_revoked_the_other_candidate_leads_within_ttl_plus_one_second(
        s: Arc<dyn Store>,
    ) {
        let ttl = Duration::from_secs(2);
        let election = Election::new(s.clone(), "provision", ttl);
        let a = election.campaign("a").await.unwrap();
        assert_eq!(election.leader().await.unwrap().unwrap().value, "a");
        let b = {
            let election = election.clone();
            tokio::spawn(async move { election.campaign("b").await })
        };
        // B is queued behind A, not leading.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!b.is_finished(), "b must wait while a leads");

        let revoked_at = tokio::time::Instant::now();
        s.lease_revoke(a.lease()).await.unwrap();
        let b = tokio::time::timeout(ttl + Duration::from_secs(1), b)
            .await
            .expect("b leads within TTL + 1 s")
            .unwrap()
            .unwrap();
        assert!(revoked_at.elapsed() < ttl + Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(3), a.lost())
            .await
            .expect("a is told it lost leadership");
        assert_eq!(election.leader().await.unwrap().unwrap().value, "b");
        assert!(b.fence().token > a.fence().token);
        b.resign().await.unwrap();
        assert!(election.leader().await.unwrap().is_none());
    }

    pub async fn a_crashed_leader_is_replaced_within_ttl_plus_one_second(s: Arc<dyn Store>) {
        // A crashed leader is a candidate key whose lease nobody renews.
        let ttl = Duration::from_secs(2);
        let lease = s.lease_grant(ttl).await.unwrap();
        let crashed = format!("{}{lease:016x}", keys::election("volumes"));
        s.create(&crashed, b"crashed".to_vec(), Some(lease), None)
            .await
            .unwrap();
        let election = Election::new(s.clone(), "volumes", ttl);
        assert_eq!(election.leader().await.unwrap().unwrap().value, "crashed");
        let started = tokio::time::Instant::now();
        let b = tokio::time::timeout(ttl + Duration::from_secs(2), election.campaign("b"))
            .await
            .expect("b leads once the crashed leader's lease ends")
            .unwrap();
        // etcd checks expiry every 500 ms on top of the TTL.
        assert!(started.elapsed() < ttl + Duration::from_secs(2));
        assert_eq!(election.leader().await.unwrap().unwrap().value, "b");
        drop(b);
    }

    pub async fn a_deposed_leader_s_fenced_write_is_rejected(s: Arc<dyn Store>) {
        let election = Election::new(s.clone(), "network", Duration::from_secs(5));
        let a = election.campaign("a").await.unwrap();
        let r = s
            .create("/t/spec", b"by a".to_vec(), None, Some(a.fence()))
            .await
            .unwrap();
        let r = s
            .update("/t/spec", b"by a again".to_vec(), r, Some(a.fence()))
            .await
            .unwrap();
        let fence_a = a.fence().clone();
        s.lease_revoke(a.lease()).await.unwrap();
        let b = election.campaign("b").await.unwrap();

        let err = s
            .update("/t/spec", b"late write by a".to_vec(), r, Some(&fence_a))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
        let err = s
            .create("/t/other", b"late".to_vec(), None, Some(&fence_a))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
        let err = s.delete("/t/spec", None, Some(&fence_a)).await.unwrap_err();
        assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
        assert_eq!(
            s.get("/t/spec").await.unwrap().unwrap().value,
            b"by a again"
        );

        s.update("/t/spec", b"by b".to_vec(), r, Some(b.fence()))
            .await
            .unwrap();
        assert_eq!(s.get("/t/spec").await.unwrap().unwrap().value, b"by b");
    }

    pub async fn typed_writes_keep_generation_for_status_and_bump_it_for_spec(s: Arc<dyn Store>) {
        let api: Api<Container> = Api::default_account(s.clone());
        let spec = ContainerSpec {
            image: "busybox".into(),
            cmd: vec!["echo".into(), "hi".into()],
            ..Default::default()
        };
        let created = api.create(&Container::new("web", spec)).await.unwrap();
        assert_eq!(created.metadata.generation, 1);
        assert!(!created.metadata.uid.is_empty());
        assert!(created.metadata.creation_timestamp.is_some());
        assert!(matches!(
            api.create(&Container::new("web", ContainerSpec::default()))
                .await,
            Err(Error::AlreadyExists { .. })
        ));

        let mut with_status = created.clone();
        with_status.status.node = "node-1".into();
        let after_status = api.update_status(&with_status).await.unwrap();
        assert_eq!(after_status.metadata.generation, 1);
        assert!(after_status.metadata.resource_version > created.metadata.resource_version);

        // A status write never changes the spec, even if the caller's copy differs.
        let mut sneaky = after_status.clone();
        sneaky.spec.image = "evil".into();
        sneaky.status.pid = 42;
        let after = api.update_status(&sneaky).await.unwrap();
        assert_eq!(after.spec.image, "busybox");
        assert_eq!(after.status.pid, 42);

        let mut changed = after.clone();
        changed.spec.desired_state = DesiredState::Running;
        let replaced = api.replace(&changed).await.unwrap();
        assert_eq!(replaced.metadata.generation, 2);
        assert_eq!(replaced.status.node, "node-1", "replace keeps status");

        // Replacing from a stale copy is a conflict.
        let err = api.replace(&changed).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
        assert_eq!(api.get("web").await.unwrap().metadata.generation, 2);
    }

    pub async fn a_malformed_value_is_reported_and_stops_neither_list_nor_watch(s: Arc<dyn Store>) {
        let api: Api<Container> = Api::default_account(s.clone());
        let from = s.revision().await.unwrap() + 1;
        let mut w = Box::pin(api.watch(from).await.unwrap());
        api.create(&Container::new("good", ContainerSpec::default()))
            .await
            .unwrap();
        s.create(
            &api.key("bad"),
            br#"{"metadata":{"name":"bad"},"spec":{"image":42}}"#.to_vec(),
            None,
            None,
        )
        .await
        .unwrap();
        s.create(&api.key("worse"), b"not json {".to_vec(), None, None)
            .await
            .unwrap();
        api.create(&Container::new("after", ContainerSpec::default()))
            .await
            .unwrap();

        let list = api.list().await.unwrap();
        let names: Vec<_> = list
            .items
            .iter()
            .map(|c| c.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["after", "good"]);
        assert_eq!(list.invalid.len(), 2);
        match &list.invalid[0] {
            Decoded::Invalid { name, message, .. } => {
                assert_eq!(name, "bad");
                assert!(message.contains("line 1 column"), "{message}");
            }
            Decoded::Valid(_) => panic!("expected invalid"),
        }

        let mut seen = Vec::new();
        for _ in 0..4 {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.push(match ev {
                ObjectEvent::Applied(Decoded::Valid(c)) => format!("ok {}", c.metadata.name),
                ObjectEvent::Applied(Decoded::Invalid { name, .. }) => format!("bad {name}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(seen, ["ok good", "bad bad", "bad worse", "ok after"]);
    }

    pub async fn a_typed_delete_is_seen_by_a_watch_with_the_last_value(s: Arc<dyn Store>) {
        let api: Api<Container> = Api::default_account(s.clone());
        let c = api
            .create(&Container::new("gone", ContainerSpec::default()))
            .await
            .unwrap();
        let mut w = Box::pin(api.watch(c.metadata.resource_version + 1).await.unwrap());
        api.delete("gone", Some(c.metadata.resource_version))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(ObjectEvent::Deleted { name, last, .. }))) => {
                assert_eq!(name, "gone");
                assert_eq!(last.map(|c| c.metadata.uid), Some(c.metadata.uid));
            }
            other => panic!("expected a delete, got {other:?}"),
        }
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod embedded_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let h = embedded().await;
                    suite::$test(h.store.clone()).await;
                }
            )*
        }
        mod etcd_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let h = etcd().await;
                    suite::$test(h.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    create_fails_when_the_key_already_exists,
    a_guarded_update_with_a_stale_revision_is_a_conflict_and_changes_nothing,
    a_guarded_delete_with_a_stale_revision_is_a_conflict,
    update_and_delete_of_a_missing_key_are_not_found,
    list_returns_the_keys_under_a_prefix_in_order_at_one_revision,
    a_watch_from_an_old_revision_replays_history_in_order_with_previous_values,
    a_watch_interrupted_and_resumed_misses_nothing,
    a_watch_from_a_compacted_revision_reports_compacted,
    lease_expiry_deletes_attached_keys_and_emits_delete_events,
    keep_alive_holds_a_lease_past_its_ttl_and_revoke_ends_it,
    an_update_keeps_the_lease_of_its_key,
    when_the_leader_s_lease_is_revoked_the_other_candidate_leads_within_ttl_plus_one_second,
    a_crashed_leader_is_replaced_within_ttl_plus_one_second,
    a_deposed_leader_s_fenced_write_is_rejected,
    typed_writes_keep_generation_for_status_and_bump_it_for_spec,
    a_malformed_value_is_reported_and_stops_neither_list_nor_watch,
    a_typed_delete_is_seen_by_a_watch_with_the_last_value,
);
