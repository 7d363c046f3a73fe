//! The manager: runs a set of controllers, each on its own task, each with
//! its reflectors, its election (when cluster-scoped) and its runner; stops
//! them all on shutdown.
//!
//! A controller's life is a loop of terms. A cluster-scoped controller
//! campaigns; once elected, its runner reconciles until leadership is lost
//! (then in-flight reconciles are aborted at once and it campaigns again)
//! or shutdown (in-flight reconciles drain within a bound, then leadership
//! is resigned so another instance takes over without waiting for the
//! lease to expire). A node-scoped controller has a single term. The
//! reflectors run across terms, so a standby's caches are warm when it is
//! elected.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use sdc_docker_store::{Api, Resource, Store};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceBuilder;

use crate::controller::{Controller, Parts, ReadyFn, RelatedCaches, Scope, triggers_own};
use crate::error::Error;
use crate::layers::{CatchPanicLayer, TimeoutLayer, TraceLayer, panic_message};
use crate::leader;
use crate::metrics::{ControllerMetrics, Metrics};
use crate::reflector::{self, Cache};
use crate::runner::{self, Reason, RunnerOptions, Stop, Trigger};

/// How a manager runs.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// This instance's id, announced in every election it campaigns in.
    pub instance_id: String,
    /// TTL of the election leases (`--lease-ttl`): how long a dead leader
    /// holds its controllers before another instance takes over.
    pub lease_ttl: Duration,
    /// How often a leader renews its lease (`--lease-renew`); `None`: every
    /// third of the TTL.
    pub lease_renew: Option<Duration>,
    /// How long shutdown waits for in-flight reconciles before aborting them.
    pub drain_timeout: Duration,
}

impl Default for ManagerOptions {
    /// A fresh random instance id, a 10 s lease TTL, a 10 s drain bound.
    fn default() -> Self {
        ManagerOptions {
            instance_id: uuid::Uuid::new_v4().to_string(),
            lease_ttl: Duration::from_secs(10),
            lease_renew: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs a set of controllers against one store.
pub struct Manager {
    store: Arc<dyn Store>,
    options: ManagerOptions,
    metrics: Arc<Metrics>,
    controllers: Vec<Box<dyn Runnable>>,
}

/// What every controller's task is given.
struct Env {
    store: Arc<dyn Store>,
    options: ManagerOptions,
    metrics: Arc<ControllerMetrics>,
    shutdown: watch::Receiver<bool>,
}

/// A controller with its kind erased, so one manager holds many kinds.
trait Runnable: Send {
    fn name(&self) -> &str;
    fn run(self: Box<Self>, env: Env) -> BoxFuture<'static, ()>;
}

impl<K: Resource> Runnable for Controller<K> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, env: Env) -> BoxFuture<'static, ()> {
        run_controller(*self, env).boxed()
    }
}

impl Manager {
    /// A manager with no controllers yet.
    pub fn new(store: Arc<dyn Store>, options: ManagerOptions) -> Self {
        Manager {
            store,
            options,
            metrics: Arc::new(Metrics::new()),
            controllers: Vec::new(),
        }
    }

    /// The metrics of every controller, for `GET /metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The options the manager runs with.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// Add a controller. Its metrics are registered at once (leader 0).
    pub fn add<K: Resource>(&mut self, controller: Controller<K>) -> &mut Self {
        self.metrics.controller(&controller.name).set_leader(false);
        self.controllers.push(Box::new(controller));
        self
    }

    /// Run every controller until `shutdown` resolves; then drain in-flight
    /// reconciles (within [`ManagerOptions::drain_timeout`]), resign every
    /// leadership and return.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let Manager {
            store,
            options,
            metrics,
            controllers,
        } = self;
        async move {
            let mut names = std::collections::HashSet::new();
            for c in &controllers {
                if !names.insert(c.name().to_string()) {
                    return Err(Error::DuplicateController(c.name().to_string()));
                }
            }
            // Shutdown is a broadcast: every controller task watches it.
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut tasks = JoinSet::new();
            for c in controllers {
                let name = c.name().to_string();
                let env = Env {
                    store: store.clone(),
                    options: options.clone(),
                    metrics: metrics.controller(&name),
                    shutdown: stop_rx.clone(),
                };
                tasks.spawn(async move {
                    let outcome = std::panic::AssertUnwindSafe(c.run(env))
                        .catch_unwind()
                        .await;
                    (name, outcome.map_err(|p| panic_message(&*p)))
                });
            }
            let mut result = Ok(());
            tokio::pin!(shutdown);
            if tasks.is_empty() {
                shutdown.await;
                return result;
            }
            loop {
                tokio::select! {
                    () = &mut shutdown, if !*stop_tx.borrow() => {
                        tracing::info!("shutting down controllers");
                        stop_tx.send_replace(true);
                    }
                    done = tasks.join_next() => match done {
                        None => break,
                        Some(Ok((_, Ok(())))) => {}
                        Some(Ok((name, Err(message)))) => {
                            tracing::error!(controller = %name, message, "controller failed");
                            if result.is_ok() {
                                result = Err(Error::ControllerFailed { name, message });
                            }
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "controller task failed");
                        }
                    },
                }
            }
            result
        }
    }
}

/// Aborts the reflector tasks when the controller ends.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn run_controller<K: Resource>(mut controller: Controller<K>, env: Env) {
    let Env {
        store,
        options,
        metrics,
        mut shutdown,
    } = env;
    let name = controller.name.clone();
    let every_change = controller.every_change;
    let (tx, mut triggers) = mpsc::unbounded_channel::<Trigger>();

    // The reflectors, running across terms.
    let cache = Cache::<K>::new();
    let own = tx.clone();
    let sink: reflector::Sink<K> = Arc::new(move |(key, old, new)| {
        if triggers_own(old.as_ref(), new.as_ref(), every_change) {
            let _ = own.send(Trigger {
                key,
                reason: Reason::Changed,
            });
        }
    });
    let mut reflectors = vec![tokio::spawn(reflector::reflect(
        store.clone(),
        cache.clone(),
        sink,
    ))];
    let mut related = RelatedCaches::default();
    let mut readies: Vec<ReadyFn> = Vec::new();
    for watch in &controller.watches {
        // Mapped keys of another kind are not ours to reconcile.
        let (mapped_tx, mut mapped_rx) = mpsc::unbounded_channel::<Trigger>();
        let forward = tx.clone();
        reflectors.push(tokio::spawn(async move {
            while let Some(t) = mapped_rx.recv().await {
                if t.key.kind == K::KIND {
                    let _ = forward.send(t);
                }
            }
        }));
        let (task, ready) = watch.start(store.clone(), mapped_tx, &mut related);
        reflectors.push(task);
        readies.push(ready);
    }
    for mut external in std::mem::take(&mut controller.external) {
        let forward = tx.clone();
        reflectors.push(tokio::spawn(async move {
            while let Some(key) = external.recv().await {
                if key.kind == K::KIND {
                    let _ = forward.send(Trigger {
                        key,
                        reason: Reason::Changed,
                    });
                }
            }
        }));
    }
    drop(tx);
    let _reflectors = AbortOnDrop(reflectors);

    let service = ServiceBuilder::new()
        .layer(TraceLayer::new(&name))
        .layer(TimeoutLayer::new(controller.timeout))
        .layer(CatchPanicLayer)
        .service(controller.service);
    let runner_options = RunnerOptions {
        concurrency: controller.concurrency,
        backoff: controller.backoff,
        resync: controller.resync,
    };

    loop {
        if *shutdown.borrow() {
            break;
        }
        let leadership = match controller.scope {
            Scope::Node => None,
            Scope::Cluster => {
                match leader::campaign(
                    &store,
                    &name,
                    &options.instance_id,
                    options.lease_ttl,
                    options.lease_renew,
                    &mut triggers,
                    &mut shutdown,
                )
                .await
                {
                    Some(l) => Some(l),
                    None => break,
                }
            }
        };
        metrics.set_leader(true);
        let fence = leadership.as_ref().map(|l| l.fence().clone());
        let lost = leadership.as_ref().map(|l| l.lost_signal());
        let stop = {
            let mut shutdown = shutdown.clone();
            let drain = options.drain_timeout;
            async move {
                let lost = async move {
                    match lost {
                        Some(mut lost) => {
                            let _ = lost.wait_for(|l| *l).await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = lost => Stop::Abort,
                    _ = shutdown.wait_for(|s| *s) => Stop::Drain(drain),
                }
            }
        };
        let api_store = store.clone();
        let request = |key: &crate::ObjectKey| {
            let api = Api::<K>::new(api_store.clone(), &key.account);
            Parts {
                key: key.clone(),
                cache: cache.clone(),
                api: match &fence {
                    Some(f) => api.fenced(f.clone()),
                    None => api,
                },
                fence: fence.clone(),
                related: related.clone(),
            }
        };
        let all_keys = || cache.keys();
        let ready = {
            let waits: Vec<_> = readies.iter().map(|r| r()).collect();
            let cache = cache.clone();
            async move {
                cache.ready().await;
                join_all(waits).await;
            }
        };
        let how = runner::run(
            service.clone(),
            request,
            all_keys,
            &mut triggers,
            ready,
            stop,
            &runner_options,
            &metrics,
        )
        .await;
        metrics.set_leader(false);
        match (how, leadership) {
            (Stop::Abort, leadership) => {
                tracing::warn!(controller = %name, "leadership lost; reconciles stopped, campaigning again");
                drop(leadership);
            }
            (Stop::Drain(_), Some(leadership)) => {
                if let Err(e) = leadership.resign().await {
                    tracing::warn!(controller = %name, error = %e, "resigning leadership");
                }
                break;
            }
            (Stop::Drain(_), None) => break,
        }
    }
    metrics.set_leader(false);
    tracing::info!(controller = %name, "controller stopped");
}
