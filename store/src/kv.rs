//! The raw, revisioned key-value interface both backends implement.
//!
//! The semantics are etcd's, because etcd is the backend for HA and the
//! embedded store must behave the same way: one global revision counter
//! bumped by every write; each key remembers the revision that created it and
//! the one that last modified it; guarded writes compare the latter; watches
//! start from any revision still in history and report compaction otherwise.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

use crate::Result;

/// Identifier of a lease (etcd's lease id; the embedded store issues its own).
pub type LeaseId = i64;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The stored bytes (JSON for objects).
    pub value: Vec<u8>,
    /// The revision at which the key was created (last time it went from
    /// absent to present).
    pub create_revision: i64,
    /// The revision of the last write to the key.
    pub mod_revision: i64,
    /// The lease the key is attached to, if any: the key is deleted when the
    /// lease ends.
    pub lease: Option<LeaseId>,
}

/// Whether an event put or deleted its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or overwritten.
    Put,
    /// The key was deleted (explicitly, or because its lease ended).
    Delete,
}

/// One change, as a watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new key-value; for a delete, the key with an empty
    /// value and `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The key-value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

/// What a watch yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A change, in revision order.
    Event(Event),
    /// The revision the watch asked for is no longer in history: the watcher
    /// must relist (at a revision ≥ `compact_revision`) and watch again. The
    /// stream ends after this item.
    Compacted {
        /// The oldest revision still in history minus one (etcd's
        /// `compact_revision`).
        compact_revision: i64,
    },
}

/// A stream of watch items; it ends only when the store closes, after a
/// [`WatchItem::Compacted`], or with an error (the caller re-watches from the
/// revision after the last event it saw).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem>> + Send>>;

/// A leader's fencing token: a guarded write that carries it succeeds only
/// while the election key `key` still exists with create revision `token`.
/// A deposed leader's key is gone (its lease ended, or it resigned), so its
/// writes fail with [`crate::Error::Fenced`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The leader's election key.
    pub key: String,
    /// Its create revision when leadership was won.
    pub token: i64,
}

/// A revisioned key-value store with compare-and-swap, watches and leases.
///
/// Every write returns the revision it was committed at. Guarded writes take
/// the `mod_revision` the caller last read (`expected`) and optionally a
/// [`Fence`]; a mismatch of either changes nothing.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if present.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Every key under `prefix` in key order, and the revision the list was
    /// read at (a consistent snapshot: watch from `revision + 1` to follow).
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)>;

    /// Create `key` (attached to `lease` when given); fails with
    /// `AlreadyExists` if it is present, or `Fenced` if the fence no longer
    /// holds.
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> Result<i64>;

    /// Overwrite `key` if its `mod_revision` is `expected` (and the fence, if
    /// given, still holds). Fails with `NotFound`, `Conflict` or `Fenced`.
    /// The key keeps its lease.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> Result<i64>;

    /// Delete `key`, if its `mod_revision` is `expected` when given (and the
    /// fence holds). Returns the revision of the delete; `NotFound` when
    /// absent.
    async fn delete(&self, key: &str, expected: Option<i64>, fence: Option<&Fence>) -> Result<i64>;

    /// Follow changes under `prefix` starting at `from_revision` (inclusive).
    /// Changes still in history are replayed in order first; a revision
    /// older than history yields [`WatchItem::Compacted`]. `from_revision`
    /// 0 means "from now on".
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream>;

    /// The current revision of the store.
    async fn revision(&self) -> Result<i64>;

    /// Drop history before `revision`; watches from older revisions then
    /// report [`WatchItem::Compacted`].
    async fn compact(&self, revision: i64) -> Result<()>;

    /// Grant a lease that lives `ttl` unless kept alive.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renew a lease for its full TTL; returns the TTL granted.
    /// `LeaseNotFound` when it already ended.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration>;

    /// End a lease now, deleting every key attached to it.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()>;
}
