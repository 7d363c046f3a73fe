//! The embedded backend: etcd's semantics in-process, durable in one redb file.
//!
//! The way k3s's kine puts etcd's API over SQLite, this keeps a revision log
//! in [redb](https://docs.rs/redb): table `kv` holds each live key with its
//! create and modify revisions and lease; table `log` holds, per revision,
//! the events of that revision (with previous values), which watches replay
//! from; `leases` holds granted leases. Unlike kine there is no polling:
//!
//! - **One writer.** Every mutation goes to a single writer thread as a
//!   request. The writer takes every request waiting, applies them in order
//!   inside one redb write transaction (each one its own revision, each
//!   guarded on its own), commits with an fsync, and only then acknowledges
//!   them. This is group commit: an acknowledged write survives `kill -9`,
//!   and many writers share one fsync.
//! - **Watches fed by the writer.** After a commit the writer hands the new
//!   events to every live watcher whose prefix matches. A watcher that falls
//!   behind (its buffer full) is dropped from the live set and catches up by
//!   reading the log itself, then rejoins, so a slow reader never blocks the
//!   writer and never misses an event.
//! - **Real leases.** Lease deadlines live in memory (after a restart every
//!   lease gets its full TTL again, as etcd does on leader change); a purge
//!   task sleeps until the earliest deadline and revokes expired leases,
//!   which deletes their keys as ordinary delete events.
//! - **Bounded history.** The log keeps the last `retain_revisions`
//!   revisions; older ones are compacted away (and watches from before that
//!   report `Compacted`).
//!
//! Limits: one process owns the file (redb locks it); reads run on the
//! caller's thread and are short.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::kv::{Event, EventKind, Fence, KeyValue, LeaseId, Store, WatchItem, WatchStream};
use crate::{Error, Result};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compact_revision";
const META_NEXT_LEASE: &str = "next_lease";

/// How many requests one write transaction takes at most.
const MAX_BATCH: usize = 512;
/// Events buffered per live watcher before it is dropped to catch up.
const WATCHER_BUFFER: usize = 1024;

/// Tuning of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions of history kept for watches (default 10,000).
    pub retain_revisions: i64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            retain_revisions: 10_000,
        }
    }
}

/// The embedded backend. Cheap to share behind an `Arc`; dropping the last
/// handle stops the writer and the lease purge task.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
}

/// State shared by the writer, the watchers and the readers.
struct Shared {
    db: Database,
    hub: Mutex<Hub>,
    leases: Mutex<HashMap<LeaseId, LeaseState>>,
    /// Wakes the purge task when a lease deadline moved earlier.
    lease_changed: Notify,
    /// Turns `true` when the store is dropped, to stop the purge task.
    closing: tokio::sync::watch::Sender<bool>,
}

/// The live watchers and the last committed revision. The writer updates
/// both under this one lock after each commit, which is what lets a new
/// watcher know exactly which revisions it must read from the log and which
/// will arrive live.
struct Hub {
    revision: i64,
    compact_revision: i64,
    watchers: Vec<LiveWatcher>,
    closed: bool,
}

struct LiveWatcher {
    prefix: String,
    tx: mpsc::Sender<Arc<Event>>,
}

#[derive(Clone, Copy)]
struct LeaseState {
    ttl: Duration,
    deadline: Instant,
}

/// One mutation for the writer, with the channel its result goes back on.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<i64>>,
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<Fence>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
        fence: Option<Fence>,
    },
    Delete {
        key: String,
        expected: Option<i64>,
        fence: Option<Fence>,
    },
    Compact {
        revision: i64,
    },
    LeaseGrant {
        ttl: Duration,
    },
    LeaseRevoke {
        lease: LeaseId,
    },
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind,
    // never a half-applied transaction (that lives in redb), so go on.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmbeddedStore {
    /// Open (or create) the store file at `path`. Must be called inside a
    /// tokio runtime: it starts the lease purge task there.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| unavailable(format!("opening {}: {e}", path.display())))?;
        let (revision, compact_revision, next_lease, leases) = {
            let txn = db.begin_write().map_err(unavailable)?;
            let state = {
                txn.open_table(KV).map_err(unavailable)?;
                txn.open_table(LOG).map_err(unavailable)?;
                let meta = txn.open_table(META).map_err(unavailable)?;
                let leases_table = txn.open_table(LEASES).map_err(unavailable)?;
                let get = |k: &str| -> Result<i64> {
                    Ok(meta
                        .get(k)
                        .map_err(unavailable)?
                        .map(|v| v.value())
                        .unwrap_or(0))
                };
                let mut leases = HashMap::new();
                let now = Instant::now();
                for entry in leases_table.iter().map_err(unavailable)? {
                    let (id, ttl_ms) = entry.map_err(unavailable)?;
                    let ttl = Duration::from_millis(ttl_ms.value().max(0) as u64);
                    leases.insert(
                        id.value(),
                        LeaseState {
                            ttl,
                            deadline: now + ttl,
                        },
                    );
                }
                (
                    get(META_REVISION)?,
                    get(META_COMPACTED)?,
                    get(META_NEXT_LEASE)?,
                    leases,
                )
            };
            txn.commit().map_err(unavailable)?;
            state
        };
        tracing::info!(path = %path.display(), revision, leases = leases.len(), "embedded store opened");
        let shared = Arc::new(Shared {
            db,
            hub: Mutex::new(Hub {
                revision,
                compact_revision,
                watchers: Vec::new(),
                closed: false,
            }),
            leases: Mutex::new(leases),
            lease_changed: Notify::new(),
            closing: tokio::sync::watch::channel(false).0,
        });
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let writer = Writer {
            shared: shared.clone(),
            revision,
            compact_revision,
            next_lease: next_lease.max(1),
            retain: options.retain_revisions.max(1),
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| unavailable(format!("starting the writer: {e}")))?;
        tokio::spawn(purge_expired_leases(shared.clone(), tx.downgrade()));
        Ok(EmbeddedStore { shared, writer: tx })
    }

    async fn write(&self, op: Op) -> Result<i64> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Request { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn read_kv(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.shared.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(KV).map_err(unavailable)?;
        let value = table.get(key).map_err(unavailable)?;
        Ok(value.map(|v| decode_record(key, v.value())))
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.shared.closing.send_replace(true);
        let mut hub = lock(&self.shared.hub);
        hub.closed = true;
        hub.watchers.clear();
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.read_kv(key)
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let txn = self.shared.db.begin_read().map_err(unavailable)?;
        let meta = txn.open_table(META).map_err(unavailable)?;
        let revision = meta
            .get(META_REVISION)
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0);
        let table = txn.open_table(KV).map_err(unavailable)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(unavailable)? {
            let (k, v) = entry.map_err(unavailable)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(decode_record(key, v.value()));
        }
        Ok((out, revision))
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.write(Op::Create {
            key: key.to_string(),
            value,
            lease,
            fence: fence.cloned(),
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.write(Op::Update {
            key: key.to_string(),
            value,
            expected,
            fence: fence.cloned(),
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<i64>, fence: Option<&Fence>) -> Result<i64> {
        self.write(Op::Delete {
            key: key.to_string(),
            expected,
            fence: fence.cloned(),
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(256);
        let shared = self.shared.clone();
        let start = if from_revision > 0 {
            from_revision
        } else {
            lock(&shared.hub).revision + 1
        };
        tokio::spawn(run_watch(shared, prefix.to_string(), start, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn revision(&self) -> Result<i64> {
        Ok(lock(&self.shared.hub).revision)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.write(Op::LeaseGrant { ttl }).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let mut leases = lock(&self.shared.leases);
        let state = leases.get_mut(&lease).ok_or(Error::LeaseNotFound(lease))?;
        let now = Instant::now();
        if state.deadline <= now {
            // Expired; the purge task is about to revoke it.
            return Err(Error::LeaseNotFound(lease));
        }
        state.deadline = now + state.ttl;
        Ok(state.ttl)
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.write(Op::LeaseRevoke { lease }).await.map(|_| ())
    }
}

/// Feed one watch: replay the log from `next`, then follow live events;
/// when dropped from the live set for lagging, catch up from the log again.
async fn run_watch(
    shared: Arc<Shared>,
    prefix: String,
    mut next: i64,
    out: mpsc::Sender<Result<WatchItem>>,
) {
    loop {
        let (live_tx, mut live_rx) = mpsc::channel(WATCHER_BUFFER);
        let (registered_at, compacted) = {
            let mut hub = lock(&shared.hub);
            if hub.closed {
                return;
            }
            hub.watchers.push(LiveWatcher {
                prefix: prefix.clone(),
                tx: live_tx,
            });
            (hub.revision, hub.compact_revision)
        };
        if next <= compacted {
            let _ = out
                .send(Ok(WatchItem::Compacted {
                    compact_revision: compacted,
                }))
                .await;
            return;
        }
        if next <= registered_at {
            let history = match read_log(&shared, &prefix, next, registered_at) {
                Ok(history) => history,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            for event in history {
                if out.send(Ok(WatchItem::Event(event))).await.is_err() {
                    return;
                }
            }
            next = registered_at + 1;
        }
        let mut current = None;
        while let Some(event) = live_rx.recv().await {
            let revision = event.revision();
            if revision < next && current != Some(revision) {
                continue;
            }
            if out
                .send(Ok(WatchItem::Event(event.as_ref().clone())))
                .await
                .is_err()
            {
                return;
            }
            // Every event of one revision is handed over together (see
            // `Writer::publish`), so once one arrived the revision is ours
            // whole; the next one we need is the one after.
            current = Some(revision);
            next = revision + 1;
        }
        // The writer dropped us: we lagged (catch up from the log) or the
        // store closed (noticed at the top of the loop).
        if out.is_closed() {
            return;
        }
    }
}

/// Events under `prefix` with revisions in `from..=to`, from the log.
fn read_log(shared: &Shared, prefix: &str, from: i64, to: i64) -> Result<Vec<Event>> {
    let txn = shared.db.begin_read().map_err(unavailable)?;
    let log = txn.open_table(LOG).map_err(unavailable)?;
    let mut out = Vec::new();
    for entry in log
        .range(from.max(0) as u64..=to.max(0) as u64)
        .map_err(unavailable)?
    {
        let (_, v) = entry.map_err(unavailable)?;
        for event in decode_events(v.value())? {
            if event.kv.key.starts_with(prefix) {
                out.push(event);
            }
        }
    }
    Ok(out)
}

/// Sleep until the earliest lease deadline (or until told a deadline
/// changed), then revoke every expired lease through the writer.
async fn purge_expired_leases(shared: Arc<Shared>, writer: mpsc::WeakSender<Request>) {
    let mut closing = shared.closing.subscribe();
    loop {
        if *closing.borrow() {
            return;
        }
        let now = Instant::now();
        let (expired, next_deadline): (Vec<LeaseId>, Option<Instant>) = {
            let leases = lock(&shared.leases);
            let expired = leases
                .iter()
                .filter(|(_, st)| st.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            let next = leases
                .values()
                .map(|st| st.deadline)
                .filter(|d| *d > now)
                .min();
            (expired, next)
        };
        if !expired.is_empty() {
            let Some(tx) = writer.upgrade() else { return };
            for lease in expired {
                tracing::debug!(lease = format!("{lease:x}"), "lease expired");
                let (reply, rx) = oneshot::channel();
                let request = Request {
                    op: Op::LeaseRevoke { lease },
                    reply,
                };
                if tx.send(request).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(Ok(_)) | Ok(Err(Error::LeaseNotFound(_))) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "revoking an expired lease"),
                    Err(_) => return,
                }
            }
            continue;
        }
        // A far-off default wake-up when no lease exists; a new lease or the
        // store closing wakes us sooner.
        let deadline = next_deadline.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shared.lease_changed.notified() => {}
            _ = closing.changed() => return,
        }
    }
}

/// The single writer. Owns the revision counter; runs on its own thread.
struct Writer {
    shared: Arc<Shared>,
    revision: i64,
    compact_revision: i64,
    next_lease: i64,
    retain: i64,
}

/// What one applied request left behind until the commit succeeds.
struct Applied {
    reply: oneshot::Sender<Result<i64>>,
    result: Result<i64>,
    events: Vec<Event>,
    lease_granted: Option<(LeaseId, Duration)>,
    lease_revoked: Option<LeaseId>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        let mut hub = lock(&self.shared.hub);
        hub.closed = true;
        hub.watchers.clear();
        tracing::debug!("store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        let start = (self.revision, self.compact_revision, self.next_lease);
        let outcome = self.apply_batch(batch);
        match outcome {
            Ok(applied) => self.publish(applied),
            Err((e, replies)) => {
                tracing::error!(error = %e, "store commit failed");
                (self.revision, self.compact_revision, self.next_lease) = start;
                for reply in replies {
                    let _ = reply.send(Err(unavailable(&e)));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn apply_batch(
        &mut self,
        batch: Vec<Request>,
    ) -> std::result::Result<Vec<Applied>, (String, Vec<oneshot::Sender<Result<i64>>>)> {
        let txn = match self.shared.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return Err((e.to_string(), batch.into_iter().map(|r| r.reply).collect())),
        };
        let mut applied = Vec::with_capacity(batch.len());
        let result = (|| -> std::result::Result<(), String> {
            let mut kv = txn.open_table(KV).map_err(|e| e.to_string())?;
            let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            let mut leases = txn.open_table(LEASES).map_err(|e| e.to_string())?;
            let mut tables = Tables {
                kv: &mut kv,
                log: &mut log,
                leases: &mut leases,
            };
            for req in batch {
                let mut out = Applied {
                    reply: req.reply,
                    result: Ok(0),
                    events: Vec::new(),
                    lease_granted: None,
                    lease_revoked: None,
                };
                out.result = self.apply(&mut tables, req.op, &mut out);
                applied.push(out);
            }
            // Keep history bounded: drop whole revisions older than the
            // retained window, in one go once it overflows by a tenth.
            if self.revision - self.compact_revision > self.retain + self.retain / 10 {
                let target = self.revision - self.retain;
                compact_log(tables.log, target).map_err(|e| e.to_string())?;
                self.compact_revision = target;
            }
            meta.insert(META_REVISION, self.revision)
                .map_err(|e| e.to_string())?;
            meta.insert(META_COMPACTED, self.compact_revision)
                .map_err(|e| e.to_string())?;
            meta.insert(META_NEXT_LEASE, self.next_lease)
                .map_err(|e| e.to_string())?;
            Ok(())
        })();
        let result = result.and_then(|()| txn.commit().map_err(|e| e.to_string()));
        match result {
            Ok(()) => Ok(applied),
            Err(e) => Err((e, applied.into_iter().map(|a| a.reply).collect())),
        }
    }

    fn apply(&mut self, t: &mut Tables<'_, '_>, op: Op, out: &mut Applied) -> Result<i64> {
        match op {
            Op::Create {
                key,
                value,
                lease,
                fence,
            } => {
                check_fence(t, fence.as_ref())?;
                if read_record(t.kv, &key)?.is_some() {
                    return Err(Error::AlreadyExists { key });
                }
                if let Some(lease) = lease
                    && t.leases.get(lease).map_err(unavailable)?.is_none()
                {
                    return Err(Error::LeaseNotFound(lease));
                }
                let rev = self.revision + 1;
                let new = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                    lease,
                };
                self.put(t, new, None, out)?;
                Ok(rev)
            }
            Op::Update {
                key,
                value,
                expected,
                fence,
            } => {
                check_fence(t, fence.as_ref())?;
                let Some(prev) = read_record(t.kv, &key)? else {
                    return Err(Error::NotFound { key });
                };
                if prev.mod_revision != expected {
                    return Err(Error::Conflict {
                        key,
                        expected,
                        actual: prev.mod_revision,
                    });
                }
                let rev = self.revision + 1;
                let new = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: rev,
                    lease: prev.lease,
                };
                self.put(t, new, Some(prev), out)?;
                Ok(rev)
            }
            Op::Delete {
                key,
                expected,
                fence,
            } => {
                check_fence(t, fence.as_ref())?;
                let Some(prev) = read_record(t.kv, &key)? else {
                    return Err(Error::NotFound { key });
                };
                if let Some(expected) = expected
                    && prev.mod_revision != expected
                {
                    return Err(Error::Conflict {
                        key,
                        expected,
                        actual: prev.mod_revision,
                    });
                }
                let rev = self.revision + 1;
                self.delete_keys(t, vec![prev], rev, out)?;
                Ok(rev)
            }
            Op::Compact { revision } => {
                if revision > self.revision {
                    return Err(Error::Rejected(format!(
                        "cannot compact to revision {revision}: the current revision is {}",
                        self.revision
                    )));
                }
                if revision > self.compact_revision {
                    compact_log(t.log, revision).map_err(unavailable)?;
                    self.compact_revision = revision;
                }
                Ok(self.revision)
            }
            Op::LeaseGrant { ttl } => {
                let id = self.next_lease;
                self.next_lease += 1;
                let ttl = ttl.max(Duration::from_millis(1));
                t.leases
                    .insert(id, ttl.as_millis().min(i64::MAX as u128) as i64)
                    .map_err(unavailable)?;
                out.lease_granted = Some((id, ttl));
                Ok(id)
            }
            Op::LeaseRevoke { lease } => {
                if t.leases.remove(lease).map_err(unavailable)?.is_none() {
                    return Err(Error::LeaseNotFound(lease));
                }
                out.lease_revoked = Some(lease);
                // Keys on the lease: a scan, since leases hold few keys and
                // revocations are rare next to reads and writes.
                let mut attached = Vec::new();
                for entry in t.kv.iter().map_err(unavailable)? {
                    let (k, v) = entry.map_err(unavailable)?;
                    let record = decode_record(k.value(), v.value());
                    if record.lease == Some(lease) {
                        attached.push(record);
                    }
                }
                if attached.is_empty() {
                    return Ok(self.revision);
                }
                let rev = self.revision + 1;
                self.delete_keys(t, attached, rev, out)?;
                Ok(rev)
            }
        }
    }

    fn put(
        &mut self,
        t: &mut Tables<'_, '_>,
        new: KeyValue,
        prev: Option<KeyValue>,
        out: &mut Applied,
    ) -> Result<()> {
        let rev = new.mod_revision;
        t.kv.insert(new.key.as_str(), encode_record(&new).as_slice())
            .map_err(unavailable)?;
        let event = Event {
            kind: EventKind::Put,
            kv: new,
            prev,
        };
        t.log
            .insert(
                rev as u64,
                encode_events(std::slice::from_ref(&event)).as_slice(),
            )
            .map_err(unavailable)?;
        self.revision = rev;
        out.events.push(event);
        Ok(())
    }

    fn delete_keys(
        &mut self,
        t: &mut Tables<'_, '_>,
        prevs: Vec<KeyValue>,
        rev: i64,
        out: &mut Applied,
    ) -> Result<()> {
        let mut events = Vec::with_capacity(prevs.len());
        for prev in prevs {
            t.kv.remove(prev.key.as_str()).map_err(unavailable)?;
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: prev.key.clone(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    lease: None,
                },
                prev: Some(prev),
            });
        }
        t.log
            .insert(rev as u64, encode_events(&events).as_slice())
            .map_err(unavailable)?;
        self.revision = rev;
        out.events.extend(events);
        Ok(())
    }

    /// After a commit: update lease deadlines, hand events to watchers
    /// (under the hub lock, with the new revision, so a watcher registering
    /// concurrently sees either "before" or "after", never half), then
    /// acknowledge every request.
    fn publish(&mut self, applied: Vec<Applied>) {
        {
            let mut leases = lock(&self.shared.leases);
            let now = Instant::now();
            for a in &applied {
                if let Some((id, ttl)) = a.lease_granted {
                    leases.insert(
                        id,
                        LeaseState {
                            ttl,
                            deadline: now + ttl,
                        },
                    );
                }
                if let Some(id) = a.lease_revoked {
                    leases.remove(&id);
                }
            }
        }
        if applied.iter().any(|a| a.lease_granted.is_some()) {
            self.shared.lease_changed.notify_one();
        }
        {
            let mut hub = lock(&self.shared.hub);
            hub.revision = self.revision;
            hub.compact_revision = self.compact_revision;
            for a in &applied {
                if a.events.is_empty() {
                    continue;
                }
                // All events of one revision go to a watcher, or none: a
                // watcher dropped half-way would skip the rest on catch-up.
                let events: Vec<Arc<Event>> = a.events.iter().cloned().map(Arc::new).collect();
                hub.watchers.retain(|w| {
                    let matching: Vec<&Arc<Event>> = events
                        .iter()
                        .filter(|e| e.kv.key.starts_with(&w.prefix))
                        .collect();
                    if matching.is_empty() {
                        return !w.tx.is_closed();
                    }
                    if w.tx.capacity() < matching.len() {
                        return false;
                    }
                    matching
                        .into_iter()
                        .all(|e| w.tx.try_send(e.clone()).is_ok())
                });
            }
        }
        for a in applied {
            let _ = a.reply.send(a.result);
        }
    }
}

struct Tables<'a, 't> {
    kv: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
    log: &'a mut redb::Table<'t, u64, &'static [u8]>,
    leases: &'a mut redb::Table<'t, i64, i64>,
}

fn check_fence(t: &Tables<'_, '_>, fence: Option<&Fence>) -> Result<()> {
    let Some(fence) = fence else { return Ok(()) };
    match read_record(t.kv, &fence.key)? {
        Some(kv) if kv.create_revision == fence.token => Ok(()),
        _ => Err(Error::Fenced {
            fence_key: fence.key.clone(),
            token: fence.token,
        }),
    }
}

fn read_record(
    kv: &redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>> {
    Ok(kv
        .get(key)
        .map_err(unavailable)?
        .map(|v| decode_record(key, v.value())))
}

fn compact_log(
    log: &mut redb::Table<'_, u64, &'static [u8]>,
    through: i64,
) -> std::result::Result<(), redb::StorageError> {
    log.retain_in(..=(through.max(0) as u64), |_, _| false)
}

// Binary encodings. A record is `create_revision, mod_revision, lease (0 =
// none)` as little-endian i64, then the value. A log entry is a sequence of
// events: kind byte, key, has-prev byte, prev record, new record, each
// variable part prefixed with its u32 length.

fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: &str, bytes: &[u8]) -> KeyValue {
    let int = |i: usize| {
        bytes
            .get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0)
    };
    let lease = int(2);
    KeyValue {
        key: key.to_string(),
        value: bytes.get(24..).unwrap_or_default().to_vec(),
        create_revision: int(0),
        mod_revision: int(1),
        lease: (lease != 0).then_some(lease),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.push(match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_bytes(&mut out, e.kv.key.as_bytes());
        match &e.prev {
            Some(prev) => {
                out.push(1);
                put_bytes(&mut out, &encode_record(prev));
            }
            None => out.push(0),
        }
        put_bytes(&mut out, &encode_record(&e.kv));
    }
    out
}

fn decode_events(mut bytes: &[u8]) -> Result<Vec<Event>> {
    fn corrupt() -> Error {
        unavailable("corrupt log entry")
    }
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if bytes.len() < n {
            return Err(corrupt());
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    fn take_var<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
        let len = take(bytes, 4)?;
        let len = u32::from_le_bytes(len.try_into().map_err(|_| corrupt())?) as usize;
        take(bytes, len)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let kind = match take(&mut bytes, 1)?[0] {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(corrupt()),
        };
        let key = String::from_utf8(take_var(&mut bytes)?.to_vec()).map_err(|_| corrupt())?;
        let prev = match take(&mut bytes, 1)?[0] {
            1 => Some(decode_record(&key, take_var(&mut bytes)?)),
            _ => None,
        };
        let kv = decode_record(&key, take_var(&mut bytes)?);
        out.push(Event { kind, kv, prev });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip_through_the_binary_encoding() {
        let events = vec![
            Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: "/a".into(),
                    value: b"one".to_vec(),
                    create_revision: 3,
                    mod_revision: 5,
                    lease: Some(7),
                },
                prev: Some(KeyValue {
                    key: "/a".into(),
                    value: b"zero".to_vec(),
                    create_revision: 3,
                    mod_revision: 3,
                    lease: None,
                }),
            },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: "/b".into(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 5,
                    lease: None,
                },
                prev: None,
            },
        ];
        let decoded = decode_events(&encode_events(&events)).expect("decodes");
        assert_eq!(decoded, events);
    }

    #[test]
    fn a_truncated_log_entry_is_reported_as_corrupt_not_a_panic() {
        let events = vec![Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: "/a".into(),
                value: b"x".to_vec(),
                create_revision: 1,
                mod_revision: 1,
                lease: None,
            },
            prev: None,
        }];
        let bytes = encode_events(&events);
        assert!(decode_events(&bytes[..bytes.len() - 3]).is_err());
    }
}
