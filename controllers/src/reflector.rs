//! The reflector: one kind, every account, listed and then watched into a
//! shared in-memory [`Cache`].
//!
//! It lists the kind's prefix at one revision, swaps the result into the
//! cache in one step, then watches from the next revision and applies each
//! event. When the watch reports [`WatchItem::Compacted`], breaks or fails,
//! it lists again (after a backoff that grows while failures repeat) and
//! swaps again, so objects deleted while it was not watching disappear.
//! Every difference it applies — from an event or from comparing a relist
//! with the cache — is handed to a sink as `(key, old, new)`; the controller
//! turns those into triggers.
//!
//! Values that do not decode are kept as [`InvalidObject`]s (key, message,
//! raw bytes, revision) rather than dropped: the controller that reports
//! malformed specs needs to see them, and their key is triggered like any
//! other. Limits: the cache holds every object of the kind in memory, and
//! one reflector serves one controller (two controllers of one kind each
//! keep a copy).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt;
use sdc_docker_store::{Decoded, KeyValue, Resource, Store, WatchItem, decode, keys};
use tokio::sync::watch;

use crate::backoff::BackoffPolicy;
use crate::key::ObjectKey;

/// A stored value that does not decode as its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidObject {
    /// Which object it is.
    pub key: ObjectKey,
    /// What the decoder said.
    pub message: String,
    /// The stored bytes.
    pub raw: Vec<u8>,
    /// The revision of its last write.
    pub resource_version: i64,
}

/// One entry of a [`Cache`]: an object, or a value that does not decode.
#[derive(Debug)]
pub enum CacheEntry<K> {
    /// A well-formed object.
    Valid(Arc<K>),
    /// A value that does not decode.
    Invalid(Arc<InvalidObject>),
}

impl<K> Clone for CacheEntry<K> {
    fn clone(&self) -> Self {
        match self {
            CacheEntry::Valid(obj) => CacheEntry::Valid(obj.clone()),
            CacheEntry::Invalid(bad) => CacheEntry::Invalid(bad.clone()),
        }
    }
}

impl<K: Resource> CacheEntry<K> {
    /// The revision of the entry's last write.
    pub fn resource_version(&self) -> i64 {
        match self {
            CacheEntry::Valid(obj) => obj.metadata().resource_version,
            CacheEntry::Invalid(bad) => bad.resource_version,
        }
    }

    /// The object, when it is well-formed.
    pub fn valid(&self) -> Option<&Arc<K>> {
        match self {
            CacheEntry::Valid(obj) => Some(obj),
            CacheEntry::Invalid(_) => None,
        }
    }
}

/// The objects of one kind as last seen, shared by the reflector that fills
/// it and every reconcile that reads it. Cloning shares it.
pub struct Cache<K> {
    inner: Arc<CacheInner<K>>,
}

struct CacheInner<K> {
    /// Every object of the kind, valid or not. Replaced whole on a relist.
    entries: RwLock<HashMap<ObjectKey, CacheEntry<K>>>,
    /// Turns `true` after the first full list and stays so.
    ready: watch::Sender<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Resource> Default for Cache<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource> Cache<K> {
    /// An empty cache, not ready.
    pub fn new() -> Self {
        Cache {
            inner: Arc::new(CacheInner {
                entries: RwLock::new(HashMap::new()),
                ready: watch::channel(false).0,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<ObjectKey, CacheEntry<K>>> {
        // Writers only swap or insert whole entries: a panic cannot leave
        // the map half-changed, so a poisoned lock is still good to read.
        self.inner.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<ObjectKey, CacheEntry<K>>> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The object at `key`, when present and well-formed.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        match self.read().get(key)? {
            CacheEntry::Valid(obj) => Some(obj.clone()),
            CacheEntry::Invalid(_) => None,
        }
    }

    /// The value at `key` when present but not decodable as `K`.
    pub fn get_invalid(&self, key: &ObjectKey) -> Option<Arc<InvalidObject>> {
        match self.read().get(key)? {
            CacheEntry::Invalid(bad) => Some(bad.clone()),
            CacheEntry::Valid(_) => None,
        }
    }

    /// Whatever is at `key`, valid or not.
    pub fn entry(&self, key: &ObjectKey) -> Option<CacheEntry<K>> {
        self.read().get(key).cloned()
    }

    /// Every well-formed object (in no particular order).
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read()
            .values()
            .filter_map(|e| e.valid().cloned())
            .collect()
    }

    /// Every value that does not decode.
    pub fn list_invalid(&self) -> Vec<Arc<InvalidObject>> {
        self.read()
            .values()
            .filter_map(|e| match e {
                CacheEntry::Invalid(bad) => Some(bad.clone()),
                CacheEntry::Valid(_) => None,
            })
            .collect()
    }

    /// The key of every entry, valid or not.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().keys().cloned().collect()
    }

    /// How many entries (valid or not) the cache holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the first full list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Resolves once the first full list has been applied.
    pub async fn ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Replace everything with `fresh` in one step; returns what changed
    /// as `(key, old, new)`.
    pub(crate) fn replace(&self, fresh: HashMap<ObjectKey, CacheEntry<K>>) -> Vec<Diff<K>> {
        let old = std::mem::replace(&mut *self.write(), fresh);
        let now = self.read();
        let mut diffs = Vec::new();
        for (key, new) in now.iter() {
            let before = old.get(key);
            if before.map(CacheEntry::resource_version) != Some(new.resource_version()) {
                diffs.push((key.clone(), before.cloned(), Some(new.clone())));
            }
        }
        for (key, before) in old {
            if !now.contains_key(&key) {
                diffs.push((key, Some(before), None));
            }
        }
        diffs
    }

    /// Mark the cache ready (after the first list's changes were reported,
    /// so whoever waits for readiness finds their triggers already sent).
    pub(crate) fn set_ready(&self) {
        self.inner.ready.send_replace(true);
    }

    /// Put `entry` at `key` (or remove it when `None`); returns the old one.
    pub(crate) fn apply(
        &self,
        key: &ObjectKey,
        entry: Option<CacheEntry<K>>,
    ) -> Option<CacheEntry<K>> {
        let mut map = self.write();
        match entry {
            Some(entry) => map.insert(key.clone(), entry),
            None => map.remove(key),
        }
    }
}

/// One change the reflector applied: the key, its old entry and its new one
/// (`None` for absent).
pub(crate) type Diff<K> = (ObjectKey, Option<CacheEntry<K>>, Option<CacheEntry<K>>);

/// Where the reflector reports changes.
pub(crate) type Sink<K> = Arc<dyn Fn(Diff<K>) + Send + Sync>;

/// The cache entry for a stored key-value, or `None` when the key is not an
/// object key.
fn entry_of<K: Resource>(kv: &KeyValue) -> Option<(ObjectKey, CacheEntry<K>)> {
    let key = ObjectKey::parse(&kv.key).filter(|k| k.kind == K::KIND)?;
    let entry = match decode::<K>(kv) {
        Decoded::Valid(obj) => CacheEntry::Valid(Arc::new(obj)),
        Decoded::Invalid {
            message,
            resource_version,
            raw,
            ..
        } => CacheEntry::Invalid(Arc::new(InvalidObject {
            key: key.clone(),
            message,
            raw,
            resource_version,
        })),
    };
    Some((key, entry))
}

/// List and watch `K` into `cache` forever, reporting every change to
/// `sink`. Runs until the task is aborted.
pub(crate) async fn reflect<K: Resource>(store: Arc<dyn Store>, cache: Cache<K>, sink: Sink<K>) {
    let prefix = keys::prefix(K::KIND.plural(), None);
    let policy = BackoffPolicy {
        initial: std::time::Duration::from_millis(100),
        max: std::time::Duration::from_secs(30),
        jitter: 0.1,
    };
    let mut failures = 0u32;
    loop {
        match list_and_watch(&*store, &prefix, &cache, &sink, &mut failures).await {
            Ok(()) => tracing::debug!(kind = %K::KIND, "watch ended; relisting"),
            Err(e) => {
                tracing::warn!(kind = %K::KIND, error = %e, "list or watch failed; relisting")
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(policy.delay(failures)).await;
    }
}

/// One list (swapped into the cache) and the watch that follows it, until
/// the watch ends. `failures` is reset once the watch delivers an event.
async fn list_and_watch<K: Resource>(
    store: &dyn Store,
    prefix: &str,
    cache: &Cache<K>,
    sink: &Sink<K>,
    failures: &mut u32,
) -> sdc_docker_store::Result<()> {
    let (kvs, revision) = store.list(prefix).await?;
    let fresh: HashMap<_, _> = kvs.iter().filter_map(entry_of::<K>).collect();
    let diffs = cache.replace(fresh);
    tracing::debug!(kind = %K::KIND, revision, objects = cache.len(), changed = diffs.len(), "listed");
    for diff in diffs {
        sink(diff);
    }
    cache.set_ready();
    let mut events = store.watch(prefix, revision + 1).await?;
    while let Some(item) = events.next().await {
        match item? {
            WatchItem::Compacted { compact_revision } => {
                tracing::info!(kind = %K::KIND, compact_revision, "watch compacted; relisting");
                return Ok(());
            }
            WatchItem::Event(ev) => {
                *failures = 0;
                let change = match ev.kind {
                    sdc_docker_store::EventKind::Put => {
                        entry_of::<K>(&ev.kv).map(|(k, e)| (k, Some(e)))
                    }
                    sdc_docker_store::EventKind::Delete => ObjectKey::parse(&ev.kv.key)
                        .filter(|k| k.kind == K::KIND)
                        .map(|k| (k, None)),
                };
                if let Some((key, new)) = change {
                    let old = cache.apply(&key, new.clone());
                    sink((key, old, new));
                }
            }
        }
    }
    Ok(())
}
