//! The controller runtime of sdc-docker: watch → cache → de-duplicated work
//! queue → reconcile → requeue or backoff, with leader election, on tokio
//! and tower. Taking kube-runtime's ideas, not its code.
//!
//! **The reconcile contract.** A reconciler is a
//! `tower::Service<`[`ReconcileRequest`]`>` (an async fn plugs in through
//! [`reconcile_fn`]). It is handed an [`ObjectKey`] (kind, account, name) and
//! a [`Context`] — the [`Cache`] of its kind, an `Api<K>` for the key's
//! account (whose writes carry the leader's fence when the controller is
//! cluster-scoped), the caches of related kinds and the controller's shared
//! value — never the event. It reads the current object, compares with the
//! world, acts on the difference and returns [`Action::AwaitChange`] or
//! [`Action::RequeueAfter`]: level-triggered and idempotent. A
//! [`ReconcileError::Transient`] error (and a panic or a timeout, which the
//! runtime's layers turn into errors) holds the key back with per-key
//! exponential backoff with jitter, 100 ms doubling to 5 min, reset on
//! success; a trigger during the hold does not shorten it. A
//! [`ReconcileError::Terminal`] error is logged and counted, and the key is
//! left alone until its object (or an object mapped to it) changes.
//!
//! **What triggers a key.** The object's own changes — only those that
//! change `metadata.generation` (or uid or deletion timestamp), so a status
//! write does not come back as work, unless the controller asks for
//! [`Controller::every_change`] — and its deletion; changes of related kinds
//! through mapper functions ([`Controller::watches`]); values that do not
//! decode (kept in the cache as [`InvalidObject`]s); a periodic resync of
//! every key (default 5 min); and its own requeues and retries. The work
//! queue holds one entry per key (earliest deadline wins), never runs two
//! reconciles of one key at once (a key triggered while it runs runs once
//! more afterwards), and runs at most [`Controller::concurrency`] at a time.
//! Nothing runs before the caches hold their first full list.
//!
//! **Where it runs.** A [`Manager`] runs a set of controllers. A
//! cluster-scoped controller runs only while this instance leads the
//! controller's own election (named after it, announcing the instance id),
//! so N instances spread the controllers; when leadership is lost its
//! reconciles are aborted at once and it campaigns again, and a deposed
//! leader's fenced writes fail with `Error::Fenced`. Node-scoped
//! controllers run everywhere, without election. On shutdown, in-flight
//! reconciles drain within a bound and leaderships are resigned, so another
//! instance takes over at once. [`Metrics`] renders the per-controller
//! Prometheus metrics.
//!
//! **The controllers and agents built on it.**
//! - [`nodes`]: a compute node's agent registers its `Node` (capacity read
//!   from the machine) under a lease, so it disappears when the agent stops.
//! - [`packages`]: the default packages seeded on first start, and the
//!   choice of a package from `-m` or the `com.joyent.package` label.
//! - [`placement`]: the cluster-scoped controller that gives each new
//!   container a package and a node with enough free memory.
//! - [`logs`]: the node-scoped controller that forwards host logs to the
//!   `syslog`, `gelf` and `fluentd` log drivers' endpoints.
//! - [`zones`]: the node-scoped provisioning and restart-policy controllers
//!   that turn placed Container specs into zones through the node's driver.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sdc_docker_controllers::{
//!     Action, Context, Controller, Manager, ManagerOptions, ObjectKey, ReconcileError, reconcile_fn,
//! };
//! use sdc_docker_store::model::Volume;
//!
//! async fn reconcile(key: ObjectKey, ctx: Context<Volume, ()>) -> Result<Action, ReconcileError> {
//!     let Some(volume) = ctx.get(&key) else { return Ok(Action::AwaitChange) };
//!     let _ = volume; // compare with the world, act, write status through ctx.api()
//!     Ok(Action::AwaitChange)
//! }
//!
//! # async fn run(store: Arc<dyn sdc_docker_store::Store>) {
//! let mut manager = Manager::new(store, ManagerOptions::default());
//! manager.add(Controller::<Volume>::new("volumes", reconcile_fn(reconcile), ()).concurrency(4));
//! let metrics = manager.metrics(); // serve metrics.render() at GET /metrics
//! manager.run(async { let _ = tokio::signal::ctrl_c().await; }).await.unwrap();
//! # let _ = metrics;
//! # }
//! ```

#![warn(missing_docs)]

mod backoff;
mod controller;
mod error;
mod key;
mod layers;
mod leader;
pub mod logs;
mod manager;
pub mod metrics;
pub mod nodes;
pub mod packages;
pub mod placement;
mod reflector;
mod runner;
pub mod scheduler;
pub mod testing;
pub mod zones;

pub use backoff::BackoffPolicy;
pub use controller::{Action, Context, Controller, ReconcileRequest, Scope, reconcile_fn};
pub use error::{BoxError, Error, ReconcileError};
pub use key::ObjectKey;
pub use layers::{CatchPanic, CatchPanicLayer, Keyed, Timeout, TimeoutLayer, Trace, TraceLayer};
pub use manager::{Manager, ManagerOptions};
pub use metrics::Metrics;
pub use reflector::{Cache, CacheEntry, InvalidObject};
