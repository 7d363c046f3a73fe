//! Shared by the integration tests: a store on a temp dir, a recording
//! reconciler, a manager on its own task, and a store wrapper that can hold
//! watches back and break them.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sdc_docker_controllers::{
    Action, Context, Controller, Manager, ManagerOptions, ObjectKey, ReconcileError, reconcile_fn,
};
use sdc_docker_store::model::{Volume, VolumeSpec};
use sdc_docker_store::{
    Api, EmbeddedOptions, EmbeddedStore, Error, Fence, KeyValue, LeaseId, Resource, Result, Store,
    WatchStream,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The embedded store in a fresh temp dir (kept alive by the returned guard).
pub fn embedded() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
        .expect("open the embedded store");
    (Arc::new(store), dir)
}

/// Create volume `name` in the default account.
pub async fn create_volume(store: &Arc<dyn Store>, name: &str) -> Volume {
    Api::<Volume>::default_account(store.clone())
        .create(&Volume::new(name, VolumeSpec::default()))
        .await
        .expect("create volume")
}

/// One reconcile, as a [`Recorder`] saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub instance: String,
    pub key: ObjectKey,
    /// Whether the cache held the object.
    pub present: bool,
    /// How many entries the cache held.
    pub cached: usize,
    pub at: Instant,
}

/// Records every reconcile it is asked for; shared by every instance in a test.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    pub fn record(&self, instance: &str, key: &ObjectKey, present: bool, cached: usize) {
        self.calls.lock().unwrap().push(Call {
            instance: instance.to_string(),
            key: key.clone(),
            present,
            cached,
            at: Instant::now(),
        });
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn count(&self, name: &str) -> usize {
        self.calls().iter().filter(|c| c.key.name == name).count()
    }
    pub fn by(&self, instance: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.instance == instance)
            .collect()
    }
}

/// The shared value of the test reconcilers.
pub struct Probe {
    pub instance: String,
    pub recorder: Recorder,
    /// What the reconcile returns.
    pub action: Action,
    /// The `Api` of the last reconcile (fenced when cluster-scoped).
    pub last_api: Mutex<Option<Api<Volume>>>,
    /// The fence of the last reconcile.
    pub last_fence: Mutex<Option<Fence>>,
    pub runs: AtomicUsize,
}

impl Probe {
    pub fn new(instance: &str, recorder: &Recorder, action: Action) -> Self {
        Probe {
            instance: instance.to_string(),
            recorder: recorder.clone(),
            action,
            last_api: Mutex::new(None),
            last_fence: Mutex::new(None),
            runs: AtomicUsize::new(0),
        }
    }
}

/// Records the call, keeps the context's `Api`, returns the probe's action.
pub async fn record(key: ObjectKey, ctx: Context<Volume, Probe>) -> Result<Action, ReconcileError> {
    let probe = ctx.data();
    probe.runs.fetch_add(1, Ordering::SeqCst);
    probe.recorder.record(
        &probe.instance,
        &key,
        ctx.get(&key).is_some(),
        ctx.cache().len(),
    );
    *probe.last_api.lock().unwrap() = Some(ctx.api().clone());
    *probe.last_fence.lock().unwrap() = ctx.fence().cloned();
    Ok(probe.action)
}

/// A volume controller named `name` around [`record`].
pub fn recording(name: &str, probe: Probe) -> Controller<Volume> {
    Controller::<Volume>::new(name, reconcile_fn(record), probe)
}

/// A manager running on its own task; `stop` shuts it down gracefully.
pub struct Running {
    pub metrics: Arc<sdc_docker_controllers::Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::result::Result<(), sdc_docker_controllers::Error>>,
}

impl Running {
    pub fn start(manager: Manager) -> Running {
        let metrics = manager.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(manager.run(async move {
            let _ = rx.await;
        }));
        Running {
            metrics,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn leads(&self, controller: &str) -> bool {
        self.metrics.controller(controller).is_leader()
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("manager stops within 30 s")
            .expect("manager task")
            .expect("manager result");
    }
}

pub fn options(instance: &str, ttl: Duration) -> ManagerOptions {
    ManagerOptions {
        instance_id: instance.to_string(),
        lease_ttl: ttl,
        lease_renew: None,
        drain_timeout: Duration::from_secs(5),
    }
}

/// A store wrapper that can break every open watch and hold new watches
/// back until released.
pub struct Gate {
    inner: Arc<dyn Store>,
    /// Bumped to end every watch opened before.
    breaks: watch::Sender<u64>,
    /// While false, `watch` waits.
    open: watch::Sender<bool>,
    /// Watches waiting at the closed gate.
    pub waiting: AtomicUsize,
    pub lists: AtomicUsize,
}

impl Gate {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Gate> {
        Arc::new(Gate {
            inner,
            breaks: watch::channel(0).0,
            open: watch::channel(true).0,
            waiting: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
        })
    }
    /// Close the gate, then break every open watch.
    pub fn close_and_break(&self) {
        self.open.send_replace(false);
        self.breaks.send_modify(|n| *n += 1);
    }
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait::async_trait]
impl Store for Gate {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.inner.create(key, value, lease, fence).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.inner.update(key, value, expected, fence).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>, fence: Option<&Fence>) -> Result<i64> {
        self.inner.delete(key, expected, fence).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        use futures::StreamExt;
        let mut open = self.open.subscribe();
        if !*open.borrow() {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = open.wait_for(|o| *o).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let mut breaks = self.breaks.subscribe();
        breaks.mark_unchanged();
        let stream = self.inner.watch(prefix, from_revision).await?;
        let broken = async move {
            let _ = breaks.changed().await;
        };
        Ok(Box::pin(stream.take_until(broken).chain(
            futures::stream::once(async {
                Err(Error::Unavailable("watch broken by the test".into()))
            }),
        )))
    }
    async fn revision(&self) -> Result<i64> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        self.inner.lease_keep_alive(lease).await
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.inner.lease_revoke(lease).await
    }
}

/// The key of `name` as the runtime names it.
pub fn volume_key(name: &str) -> ObjectKey {
    ObjectKey::new(Volume::KIND, "default", name)
}
