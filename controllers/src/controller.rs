//! What a controller is: a reconciler (a tower service), the context it is
//! handed, what it returns, and the builder that says how it runs.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sdc_docker_store::{Api, Fence, Kind, Resource, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

use crate::backoff::BackoffPolicy;
use crate::error::ReconcileError;
use crate::key::ObjectKey;
use crate::layers::Keyed;
use crate::reflector::{self, Cache, CacheEntry, InvalidObject};
use crate::runner::{Reason, Trigger};

/// What to do with a key after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object (or an object mapped to it) changes, or the
    /// next resync.
    AwaitChange,
    /// Reconcile again after this delay, even if nothing changes (polling
    /// something the store does not know about, such as a zone).
    RequeueAfter(Duration),
}

impl Action {
    /// [`Action::RequeueAfter`].
    pub fn requeue(after: Duration) -> Self {
        Action::RequeueAfter(after)
    }

    /// [`Action::AwaitChange`].
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// Whether a controller runs under leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One instance in the cluster runs it: the leader of its election.
    Cluster,
    /// Every instance runs it, for the zones on its own node.
    Node,
}

/// The caches of the related kinds a controller watches, by kind.
#[derive(Clone, Default)]
pub(crate) struct RelatedCaches(HashMap<Kind, Arc<dyn Any + Send + Sync>>);

/// What a reconcile is handed besides its key: the cache, store access for
/// the key's account (fenced when the controller is cluster-scoped), and the
/// controller's own shared value.
pub struct Context<K, C> {
    cache: Cache<K>,
    api: Api<K>,
    fence: Option<Fence>,
    related: RelatedCaches,
    data: Arc<C>,
}

impl<K, C> Clone for Context<K, C> {
    fn clone(&self) -> Self {
        Context {
            cache: self.cache.clone(),
            api: self.api.clone(),
            fence: self.fence.clone(),
            related: self.related.clone(),
            data: self.data.clone(),
        }
    }
}

impl<K: Resource, C> Context<K, C> {
    /// The cache of `K` (every account).
    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    /// The object at `key` in the cache, when present and well-formed.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.cache.get(key)
    }

    /// The value at `key` when it is stored but does not decode.
    pub fn get_invalid(&self, key: &ObjectKey) -> Option<Arc<InvalidObject>> {
        self.cache.get_invalid(key)
    }

    /// Typed store access to `K` in the key's account; every write carries
    /// the leader's fence when the controller is cluster-scoped, so it fails
    /// with `Error::Fenced` once this instance no longer leads.
    pub fn api(&self) -> &Api<K> {
        &self.api
    }

    /// Typed access to another kind in `account`, fenced like [`Self::api`].
    pub fn api_for<R: Resource>(&self, account: &str) -> Api<R> {
        let api = Api::new(self.api.store().clone(), account);
        match &self.fence {
            Some(fence) => api.fenced(fence.clone()),
            None => api,
        }
    }

    /// The fence of the leadership this reconcile runs under (`None` for a
    /// node-scoped controller).
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// The cache of a related kind this controller [watches](Controller::watches).
    pub fn related<R: Resource>(&self) -> Option<Cache<R>> {
        self.related
            .0
            .get(&R::KIND)
            .and_then(|c| c.clone().downcast::<Cache<R>>().ok())
            .map(|c| (*c).clone())
    }

    /// The controller's shared value.
    pub fn data(&self) -> &Arc<C> {
        &self.data
    }
}

/// What the reconcile service is called with.
pub struct ReconcileRequest<K, C> {
    /// The key to reconcile.
    pub key: ObjectKey,
    /// Cache, store access and shared value.
    pub ctx: Context<K, C>,
}

impl<K, C> Keyed for ReconcileRequest<K, C> {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

/// The request before the controller's shared value is added: what the
/// runtime builds for each key, independent of the value's type.
pub(crate) struct Parts<K> {
    pub key: ObjectKey,
    pub cache: Cache<K>,
    pub api: Api<K>,
    pub fence: Option<Fence>,
    pub related: RelatedCaches,
}

impl<K> Keyed for Parts<K> {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

/// A reconciler with its shared value bound, typed by kind alone.
pub(crate) type ErasedService<K> = BoxCloneService<Parts<K>, crate::Action, ReconcileError>;

/// A reconciler written as an async function, as a service:
/// `reconcile_fn(reconcile)` for
/// `async fn reconcile(key: ObjectKey, ctx: Context<K, C>) -> Result<Action, ReconcileError>`.
pub fn reconcile_fn<K, C, F, Fut>(
    f: F,
) -> impl Service<ReconcileRequest<K, C>, Response = Action, Error = ReconcileError, Future = Fut>
+ Clone
+ Send
+ 'static
where
    F: Fn(ObjectKey, Context<K, C>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    tower::service_fn(move |req: ReconcileRequest<K, C>| f(req.key, req.ctx))
}

/// How a change of a related kind `R` maps to keys of the controller's kind.
pub(crate) trait RelatedWatch: Send + Sync {
    /// Start reflecting `R`: register its cache in `related` and send mapped
    /// triggers to `triggers`. Returns the reflector task and a way to wait
    /// until its cache is ready.
    fn start(
        &self,
        store: Arc<dyn Store>,
        triggers: mpsc::UnboundedSender<Trigger>,
        related: &mut RelatedCaches,
    ) -> (JoinHandle<()>, ReadyFn);
}

/// Resolves when a cache is ready; callable once per term.
pub(crate) type ReadyFn = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Mapped<R, M> {
    mapper: Arc<M>,
    _kind: PhantomData<fn() -> R>,
}

impl<R, M> RelatedWatch for Mapped<R, M>
where
    R: Resource,
    M: Fn(&R) -> Vec<ObjectKey> + Send + Sync + 'static,
{
    fn start(
        &self,
        store: Arc<dyn Store>,
        triggers: mpsc::UnboundedSender<Trigger>,
        related: &mut RelatedCaches,
    ) -> (JoinHandle<()>, ReadyFn) {
        let cache = Cache::<R>::new();
        related.0.insert(R::KIND, Arc::new(cache.clone()));
        let mapper = self.mapper.clone();
        // Related kinds trigger on every change, status included: a volume
        // becoming ready is news to the containers that wait for it.
        let sink: reflector::Sink<R> = Arc::new(move |(_, old, new)| {
            let mut keys: Vec<ObjectKey> = [old, new]
                .iter()
                .flatten()
                .filter_map(|e| e.valid().map(|obj| mapper(obj)))
                .flatten()
                .collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let _ = triggers.send(Trigger {
                    key,
                    reason: Reason::Changed,
                });
            }
        });
        let task = tokio::spawn(reflector::reflect(store, cache.clone(), sink));
        let ready: ReadyFn = Box::new(move || {
            let cache = cache.clone();
            Box::pin(async move { cache.ready().await })
        });
        (task, ready)
    }
}

/// Whether a change from `old` to `new` of the controller's own kind should
/// trigger its key. With the generation predicate (the default), a write
/// that keeps `metadata.generation` — a status write — does not, unless the
/// object was deleted and recreated (new uid) or its deletion was asked for.
pub(crate) fn triggers_own<K: Resource>(
    old: Option<&CacheEntry<K>>,
    new: Option<&CacheEntry<K>>,
    every_change: bool,
) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(CacheEntry::Valid(a)), Some(CacheEntry::Valid(b))) => {
            let (a, b) = (a.metadata(), b.metadata());
            if every_change {
                a.resource_version != b.resource_version
            } else {
                a.generation != b.generation
                    || a.uid != b.uid
                    || a.deletion_timestamp != b.deletion_timestamp
            }
        }
        (Some(a), Some(b)) => a.resource_version() != b.resource_version(),
        _ => true,
    }
}

/// A controller of kind `K`, ready to be [added](crate::Manager::add) to a
/// manager: its reconciler and how it runs.
pub struct Controller<K: Resource> {
    pub(crate) name: String,
    pub(crate) service: ErasedService<K>,
    pub(crate) scope: Scope,
    pub(crate) concurrency: usize,
    pub(crate) resync: Option<Duration>,
    pub(crate) every_change: bool,
    pub(crate) timeout: Duration,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) watches: Vec<Box<dyn RelatedWatch>>,
    /// Keys sent from outside the store (a zone that exited), taken once
    /// when the controller starts.
    pub(crate) external: Vec<tokio::sync::mpsc::UnboundedReceiver<ObjectKey>>,
}

impl<K: Resource> fmt::Debug for Controller<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("name", &self.name)
            .field("kind", &K::KIND)
            .field("scope", &self.scope)
            .field("concurrency", &self.concurrency)
            .field("resync", &self.resync)
            .field("every_change", &self.every_change)
            .field("timeout", &self.timeout)
            .field("watches", &self.watches.len())
            .finish()
    }
}

impl<K: Resource> Controller<K> {
    /// A controller called `name` (its election and metrics are named after
    /// it) reconciling `K` with `reconciler`, which is handed `data` in
    /// every [`Context`]. Defaults: cluster-scoped, 16 concurrent
    /// reconciles, resync every 5 min, the generation predicate, a 5 min
    /// reconcile timeout.
    pub fn new<S, C>(name: &str, reconciler: S, data: C) -> Self
    where
        S: Service<ReconcileRequest<K, C>, Response = Action, Error = ReconcileError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        C: Send + Sync + 'static,
    {
        let data = Arc::new(data);
        let service = reconciler.map_request(move |parts: Parts<K>| ReconcileRequest {
            key: parts.key,
            ctx: Context {
                cache: parts.cache,
                api: parts.api,
                fence: parts.fence,
                related: parts.related,
                data: data.clone(),
            },
        });
        Controller {
            name: name.to_string(),
            service: BoxCloneService::new(service),
            scope: Scope::Cluster,
            concurrency: 16,
            resync: Some(Duration::from_secs(300)),
            every_change: false,
            timeout: Duration::from_secs(300),
            backoff: BackoffPolicy::default(),
            watches: Vec::new(),
            external: Vec::new(),
        }
    }

    /// Run only while this instance leads the controller's election (the
    /// default).
    pub fn cluster_scoped(mut self) -> Self {
        self.scope = Scope::Cluster;
        self
    }

    /// Run on every instance, without election.
    pub fn node_scoped(mut self) -> Self {
        self.scope = Scope::Node;
        self
    }

    /// At most `n` (≥ 1) reconciles at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Reconcile every key every `period`.
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    /// Never resync; only changes and requeues trigger.
    pub fn no_resync(mut self) -> Self {
        self.resync = None;
        self
    }

    /// Give up on a reconcile after `timeout` (an error, retried with
    /// backoff).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Use `policy` for the per-key backoff instead of 100 ms doubling to
    /// 5 min.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Trigger on every write of the object, status included, instead of
    /// only when `metadata.generation` changes.
    pub fn every_change(mut self) -> Self {
        self.every_change = true;
        self
    }

    /// Also watch kind `R`: every change of an `R` (status included)
    /// triggers the keys `mapper` returns for its old and new value. Keys of
    /// another kind than `K` are ignored.
    pub fn watches<R: Resource>(
        mut self,
        mapper: impl Fn(&R) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        self.watches.push(Box::new(Mapped::<R, _> {
            mapper: Arc::new(mapper),
            _kind: PhantomData,
        }));
        self
    }

    /// Also trigger the keys sent on `keys`: events from outside the store,
    /// such as a zone driver reporting that a process exited, so the
    /// reconcile runs at once instead of at the next resync. Keys of another
    /// kind than `K` are ignored; the stream ending is not an error.
    pub fn triggered_by(mut self, keys: tokio::sync::mpsc::UnboundedReceiver<ObjectKey>) -> Self {
        self.external.push(keys);
        self
    }

    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it runs under election.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::model::Volume;

    use super::*;

    fn entry(generation: i64, rv: i64) -> CacheEntry<Volume> {
        let mut v = Volume::new("v", Default::default());
        v.metadata.generation = generation;
        v.metadata.resource_version = rv;
        CacheEntry::Valid(Arc::new(v))
    }

    #[test]
    fn a_status_write_passes_the_generation_predicate_only_for_every_change_controllers() {
        let (a, b) = (entry(1, 5), entry(1, 6));
        assert!(!triggers_own(Some(&a), Some(&b), false));
        assert!(triggers_own(Some(&a), Some(&b), true));
        assert!(triggers_own(Some(&a), Some(&entry(2, 7)), false));
        assert!(triggers_own(None, Some(&a), false), "created");
        assert!(triggers_own(Some(&a), None, false), "deleted");
    }
}
