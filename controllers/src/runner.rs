//! The runner: takes due keys from the [`Scheduler`] and reconciles them,
//! for one controller during one term (while it leads, or for a node-scoped
//! controller until shutdown).
//!
//! Its rules:
//! - **Per-key exclusion.** A key is either queued or running, never both,
//!   so two reconciles of one key never overlap. A key triggered while it
//!   runs is marked dirty and queued once more when the run ends (at the
//!   earliest deadline it was given, but not before its backoff).
//! - **Concurrency.** At most `concurrency` reconciles run at once; the rest
//!   wait in the queue.
//! - **Backoff.** A failed reconcile (transient, panic, timeout) holds its
//!   key back for the key's next backoff delay; triggers during the hold
//!   are deferred to its end, never earlier. Success clears the hold.
//! - **Terminal errors** park the key: resyncs pass it by; a change of the
//!   object (or of an object mapped to it) lets it run again.
//! - **Readiness.** Nothing runs before `ready` resolves (the caches are
//!   filled); then every key known is queued once.
//!
//! It owns no store, no cache and no leadership: requests are built by a
//! closure and the term ends when `stop` resolves, which is what lets the
//! rules above be tested on paused time with a plain service.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Service, ServiceExt};

use crate::backoff::BackoffPolicy;
use crate::controller::Action;
use crate::error::ReconcileError;
use crate::key::ObjectKey;
use crate::layers::panic_message;
use crate::metrics::{ControllerMetrics, ReconcileResult};
use crate::scheduler::Scheduler;

/// Why a key is to be reconciled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The object, or an object mapped to it, changed (or was deleted).
    Changed,
    /// The periodic resync, or the first pass after the caches filled.
    Resync,
}

/// A request to reconcile a key.
#[derive(Clone, Debug)]
pub(crate) struct Trigger {
    /// The key.
    pub key: ObjectKey,
    /// Why.
    pub reason: Reason,
}

/// How a term ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Leadership was lost: abort in-flight reconciles now.
    Abort,
    /// Shutdown: start nothing new, let in-flight reconciles finish within
    /// the bound, then abort the rest.
    Drain(Duration),
}

/// The tuning of a runner.
#[derive(Clone, Debug)]
pub(crate) struct RunnerOptions {
    pub concurrency: usize,
    pub backoff: BackoffPolicy,
    pub resync: Option<Duration>,
}

/// A key triggered while it was running.
#[derive(Clone, Copy, Debug)]
struct Dirty {
    /// The earliest instant it was asked for.
    at: Instant,
    /// Whether any of those triggers was a change (which unparks a key that
    /// then fails terminally).
    changed: bool,
}

/// The state of one term. Invariants: a key is in at most one of
/// `scheduler` and `running`; `dirty` keys are all `running`; `tasks` maps
/// the id of each in-flight task to its key, one to one with `running`.
struct State {
    scheduler: Scheduler<ObjectKey>,
    running: HashSet<ObjectKey>,
    tasks: HashMap<Id, ObjectKey>,
    dirty: HashMap<ObjectKey, Dirty>,
    /// Keys in backoff: consecutive failures and the end of the hold.
    holds: HashMap<ObjectKey, (u32, Instant)>,
    /// Keys whose last reconcile failed terminally.
    parked: HashSet<ObjectKey>,
}

impl State {
    fn new() -> Self {
        State {
            scheduler: Scheduler::new(),
            running: HashSet::new(),
            tasks: HashMap::new(),
            dirty: HashMap::new(),
            holds: HashMap::new(),
            parked: HashSet::new(),
        }
    }

    fn hold_end(&self, key: &ObjectKey) -> Option<Instant> {
        self.holds.get(key).map(|(_, until)| *until)
    }

    fn trigger(&mut self, trigger: Trigger, now: Instant) {
        let Trigger { key, reason } = trigger;
        match reason {
            Reason::Resync if self.parked.contains(&key) => return,
            Reason::Resync => {}
            Reason::Changed => {
                self.parked.remove(&key);
            }
        }
        let at = self.hold_end(&key).map_or(now, |end| end.max(now));
        if self.running.contains(&key) {
            let dirty = self
                .dirty
                .entry(key)
                .or_insert(Dirty { at, changed: false });
            dirty.at = dirty.at.min(at);
            dirty.changed |= reason == Reason::Changed;
        } else {
            self.scheduler.schedule(key, at);
        }
    }

    /// Record the end of `key`'s reconcile and queue what comes next.
    fn finish(
        &mut self,
        key: ObjectKey,
        result: Result<Action, ReconcileError>,
        took: Duration,
        options: &RunnerOptions,
        metrics: &ControllerMetrics,
    ) {
        self.running.remove(&key);
        let now = Instant::now();
        let mut next = None;
        match result {
            Ok(action) => {
                metrics.observe(ReconcileResult::Success, took);
                self.holds.remove(&key);
                if let Action::RequeueAfter(delay) = action {
                    next = Some(now + delay);
                }
            }
            Err(e @ ReconcileError::Terminal(_)) => {
                metrics.observe(ReconcileResult::Terminal, took);
                tracing::error!(key = %key, error = %e, "terminal reconcile error; not retried until the object changes");
                self.holds.remove(&key);
                self.parked.insert(key.clone());
            }
            Err(e) => {
                let result = match e {
                    ReconcileError::Panicked(_) => ReconcileResult::Panic,
                    ReconcileError::Timeout(_) => ReconcileResult::Timeout,
                    _ => ReconcileResult::Error,
                };
                metrics.observe(result, took);
                metrics.backoff();
                let failures = self.holds.get(&key).map_or(0, |(n, _)| *n) + 1;
                let delay = options.backoff.delay(failures);
                let until = now + delay;
                tracing::warn!(key = %key, error = %e, failures, retry_in = ?delay, "reconcile failed; backing off");
                self.holds.insert(key.clone(), (failures, until));
                next = Some(until);
            }
        }
        if let Some(dirty) = self.dirty.remove(&key) {
            let parked = self.parked.contains(&key);
            if !parked || dirty.changed {
                self.parked.remove(&key);
                let at = self
                    .hold_end(&key)
                    .map_or(dirty.at, |end| end.max(dirty.at));
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        if let Some(at) = next {
            self.scheduler.schedule(key, at);
        }
    }
}

/// Run one term: reconcile triggered keys with `service` until `stop`
/// resolves, and return how it ended.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<Req, S, F, A>(
    service: S,
    make_request: F,
    all_keys: A,
    triggers: &mut mpsc::UnboundedReceiver<Trigger>,
    ready: impl Future<Output = ()>,
    stop: impl Future<Output = Stop>,
    options: &RunnerOptions,
    metrics: &ControllerMetrics,
) -> Stop
where
    Req: Send + 'static,
    S: Service<Req, Response = Action, Error = ReconcileError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Fn(&ObjectKey) -> Req,
    A: Fn() -> Vec<ObjectKey>,
{
    let mut state = State::new();
    let mut inflight: JoinSet<(Result<Action, ReconcileError>, Duration)> = JoinSet::new();
    let concurrency = options.concurrency.max(1);
    let mut is_ready = false;
    let mut resync = options.resync.map(|period| {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    tokio::pin!(ready, stop);
    let how = loop {
        if is_ready {
            let now = Instant::now();
            while state.running.len() < concurrency {
                let Some(key) = state.scheduler.pop_due(now) else {
                    break;
                };
                let request = make_request(&key);
                let service = service.clone();
                let handle = inflight.spawn(async move {
                    let started = Instant::now();
                    let result = service.oneshot(request).await;
                    (result, started.elapsed())
                });
                state.tasks.insert(handle.id(), key.clone());
                state.running.insert(key);
            }
        }
        metrics.set_queue_depth(state.scheduler.len());
        let wake = if is_ready && state.running.len() < concurrency {
            state.scheduler.next_deadline()
        } else {
            None
        };
        tokio::select! {
            biased;
            how = &mut stop => break how,
            () = &mut ready, if !is_ready => {
                is_ready = true;
                let now = Instant::now();
                // The reflectors sent the first list's triggers before they
                // became ready: take them now, so a key does not start and
                // then find its own first trigger waiting as a re-run.
                while let Ok(trigger) = triggers.try_recv() {
                    state.trigger(trigger, now);
                }
                for key in all_keys() {
                    state.trigger(Trigger { key, reason: Reason::Resync }, now);
                }
            }
            Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                finish(&mut state, done, options, metrics);
            }
            Some(trigger) = triggers.recv() => {
                let now = Instant::now();
                state.trigger(trigger, now);
                // Take what else is waiting in one go: a relist can send
                // thousands of triggers at once.
                for _ in 0..1024 {
                    let Ok(trigger) = triggers.try_recv() else { break };
                    state.trigger(trigger, now);
                }
            }
            () = sleep_until(wake), if wake.is_some() => {}
            _ = tick(&mut resync), if is_ready && resync.is_some() => {
                let now = Instant::now();
                for key in all_keys() {
                    state.trigger(Trigger { key, reason: Reason::Resync }, now);
                }
            }
        }
    };
    if let Stop::Drain(bound) = how {
        let deadline = Instant::now() + bound;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next_with_id()).await {
                Ok(Some(done)) => finish(&mut state, done, options, metrics),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = inflight.len(),
                        "drain bound passed; aborting reconciles"
                    );
                    break;
                }
            }
        }
    }
    // Abort whatever still runs and wait until it is gone, so no reconcile
    // of this term outlives it.
    inflight.shutdown().await;
    metrics.set_queue_depth(0);
    how
}

type Done = Result<(Id, (Result<Action, ReconcileError>, Duration)), tokio::task::JoinError>;

fn finish(state: &mut State, done: Done, options: &RunnerOptions, metrics: &ControllerMetrics) {
    let (id, result, took) = match done {
        Ok((id, (result, took))) => (id, result, took),
        // Without the panic layer a panic surfaces here; with it, only
        // cancellation does, and that happens only when the term ends.
        Err(e) if e.is_panic() => {
            let id = e.id();
            let message = panic_message(&*e.into_panic());
            (id, Err(ReconcileError::Panicked(message)), Duration::ZERO)
        }
        Err(e) => {
            if let Some(key) = state.tasks.remove(&e.id()) {
                state.running.remove(&key);
                state.dirty.remove(&key);
            }
            return;
        }
    };
    if let Some(key) = state.tasks.remove(&id) {
        state.finish(key, result, took, options, metrics);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Shared by tests: a runner over a recording service.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use sdc_docker_store::Kind;
    use tokio::sync::{Notify, oneshot};
    use tower::service_fn;

    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Container, "default", name)
    }

    type Script = Arc<dyn Fn(&ObjectKey, usize) -> Result<Action, ReconcileError> + Send + Sync>;

    /// A runner on its own task, driven by a test.
    struct Harness {
        triggers: mpsc::UnboundedSender<Trigger>,
        /// (key, start instant) of every reconcile, in start order.
        calls: Arc<Mutex<Vec<(ObjectKey, Instant)>>>,
        active: Arc<AtomicUsize>,
        max_active: Arc<AtomicUsize>,
        metrics: Arc<ControllerMetrics>,
        ready: Option<oneshot::Sender<()>>,
        stop: Option<oneshot::Sender<Stop>>,
        done: tokio::task::JoinHandle<Stop>,
        release: Arc<Notify>,
    }

    struct Setup {
        keys: Vec<ObjectKey>,
        concurrency: usize,
        resync: Option<Duration>,
        /// How long each reconcile takes (paused time).
        work: Duration,
        /// Reconciles block until `release` is notified.
        gated: bool,
        script: Script,
    }

    impl Default for Setup {
        fn default() -> Self {
            Setup {
                keys: vec![],
                concurrency: 4,
                resync: None,
                work: Duration::ZERO,
                gated: false,
                script: Arc::new(|_, _| Ok(Action::AwaitChange)),
            }
        }
    }

    fn start(setup: Setup) -> Harness {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let metrics = Arc::new(ControllerMetrics::default());
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
        let service = {
            let (calls, active, max_active, release) = (
                calls.clone(),
                active.clone(),
                max_active.clone(),
                release.clone(),
            );
            let script = setup.script.clone();
            let (work, gated) = (setup.work, setup.gated);
            service_fn(move |key: ObjectKey| {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    calls.push((key.clone(), Instant::now()));
                    calls.iter().filter(|(k, _)| *k == key).count()
                };
                let (active, max_active, release, script) = (
                    active.clone(),
                    max_active.clone(),
                    release.clone(),
                    script.clone(),
                );
                async move {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    max_active.fetch_max(now, Ordering::SeqCst);
                    if gated {
                        release.notified().await;
                    }
                    tokio::time::sleep(work).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    script(&key, n)
                }
            })
        };
        let options = RunnerOptions {
            concurrency: setup.concurrency,
            backoff: BackoffPolicy {
                jitter: 0.0,
                ..BackoffPolicy::default()
            },
            resync: setup.resync,
        };
        let keys = setup.keys.clone();
        let m = metrics.clone();
        let done = tokio::spawn(async move {
            run(
                service,
                |k: &ObjectKey| k.clone(),
                move || keys.clone(),
                &mut rx,
                async {
                    let _ = ready_rx.await;
                },
                async { stop_rx.await.unwrap_or(Stop::Abort) },
                &options,
                &m,
            )
            .await
        });
        Harness {
            triggers: tx,
            calls,
            active,
            max_active,
            metrics,
            ready: Some(ready_tx),
            stop: Some(stop_tx),
            done,
            release,
        }
    }

    impl Harness {
        fn ready(&mut self) {
            let _ = self.ready.take().unwrap().send(());
        }
        fn change(&self, name: &str) {
            self.triggers
                .send(Trigger {
                    key: key(name),
                    reason: Reason::Changed,
                })
                .unwrap();
        }
        fn resync(&self, name: &str) {
            self.triggers
                .send(Trigger {
                    key: key(name),
                    reason: Reason::Resync,
                })
                .unwrap();
        }
        fn calls_of(&self, name: &str) -> Vec<Instant> {
            let calls = self.calls.lock().unwrap();
            calls
                .iter()
                .filter(|(k, _)| k.name == name)
                .map(|(_, t)| *t)
                .collect()
        }
        fn total(&self) -> usize {
            self.calls.lock().unwrap().len()
        }
        async fn stop(mut self, how: Stop) -> Stop {
            let _ = self.stop.take().unwrap().send(how);
            self.done.await.unwrap()
        }
    }

    /// Let every task run until all are idle (paused time: nothing sleeps
    /// for real; time advances only when everything waits on a timer).
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    /// Wait (on paused time) until `cond` holds, at most `within`.
    async fn until(within: Duration, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_triggered_many_times_while_queued_is_reconciled_once() {
        let mut h = start(Setup::default());
        for _ in 0..100 {
            h.change("a");
        }
        h.change("b");
        settle().await;
        assert_eq!(h.total(), 0, "nothing runs before the caches are ready");
        h.ready();
        until(Duration::from_secs(1), "both keys", || h.total() == 2).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(h.calls_of("a").len(), 1);
        assert_eq!(h.calls_of("b").len(), 1);
        assert_eq!(h.metrics.reconciles(ReconcileResult::Success), 2);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_reconciles_before_ready_then_every_known_key_runs_once() {
        let mut h = start(Setup {
            keys: vec![key("a"), key("b"), key("c")],
            ..Setup::default()
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.total(), 0);
        h.ready();
        until(Duration::from_secs(1), "three keys", || h.total() == 3).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.total(), 3);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_never_runs_twice_at_once_and_a_trigger_during_a_run_runs_it_once_more() {
        let mut h = start(Setup {
            gated: true,
            ..Setup::default()
        });
        h.ready();
        h.change("a");
        until(Duration::from_secs(1), "first run", || {
            h.active.load(Ordering::SeqCst) == 1
        })
        .await;
        for _ in 0..10 {
            h.change("a");
        }
        settle().await;
        assert_eq!(
            h.calls_of("a").len(),
            1,
            "no second run while the first is in flight"
        );
        h.release.notify_one();
        until(Duration::from_secs(1), "the dirty re-run", || {
            h.calls_of("a").len() == 2
        })
        .await;
        assert_eq!(h.max_active.load(Ordering::SeqCst), 1);
        h.release.notify_one();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            h.calls_of("a").len(),
            2,
            "ten triggers during the run make one re-run"
        );
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_concurrency_limit_runs_at_once() {
        let mut h = start(Setup {
            keys: (0..20).map(|i| key(&format!("k{i}"))).collect(),
            concurrency: 3,
            work: Duration::from_millis(100),
            ..Setup::default()
        });
        h.ready();
        until(Duration::from_secs(5), "twenty keys", || h.total() == 20).await;
        assert_eq!(h.max_active.load(Ordering::SeqCst), 3);
        h.stop(Stop::Drain(Duration::from_secs(1))).await;
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_from_100_ms_to_the_5_minute_cap_and_success_resets() {
        // Fails 14 times, then succeeds once, then fails again.
        let mut h = start(Setup {
            script: Arc::new(|_, n| {
                if n <= 14 || n == 16 {
                    Err(ReconcileError::transient("not yet"))
                } else if n == 15 {
                    Ok(Action::RequeueAfter(Duration::from_secs(1)))
                } else {
                    Ok(Action::AwaitChange)
                }
            }),
            ..Setup::default()
        });
        h.ready();
        h.change("a");
        until(Duration::from_secs(3600), "17 runs", || {
            h.calls_of("a").len() == 17
        })
        .await;
        let t = h.calls_of("a");
        let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            &gaps[..14],
            &[
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(12800),
                ms(25600),
                ms(51200),
                ms(102400),
                ms(204800),
                ms(300_000),
                ms(300_000)
            ]
        );
        assert_eq!(
            gaps[14],
            Duration::from_secs(1),
            "the requeue after success"
        );
        assert_eq!(gaps[15], ms(100), "success reset the backoff");
        assert_eq!(h.metrics.backoffs(), 15);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_backoff_does_not_shorten_it() {
        let mut h = start(Setup {
            script: Arc::new(|_, n| {
                if n <= 3 {
                    Err(ReconcileError::transient("not yet"))
                } else {
                    Ok(Action::AwaitChange)
                }
            }),
            ..Setup::default()
        });
        h.ready();
        h.change("a");
        // Three failures: the third holds the key for 400 ms.
        until(Duration::from_secs(5), "three runs", || {
            h.calls_of("a").len() == 3
        })
        .await;
        let third = h.calls_of("a")[2];
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.change("a");
        h.resync("a");
        until(Duration::from_secs(5), "the fourth run", || {
            h.calls_of("a").len() == 4
        })
        .await;
        assert_eq!(h.calls_of("a")[3] - third, Duration::from_millis(400));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.calls_of("a").len(), 4);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_runs_the_key_again_after_the_delay() {
        let mut h = start(Setup {
            script: Arc::new(|_, n| {
                Ok(if n < 3 {
                    Action::RequeueAfter(Duration::from_secs(7))
                } else {
                    Action::AwaitChange
                })
            }),
            ..Setup::default()
        });
        h.ready();
        h.change("a");
        until(Duration::from_secs(60), "three runs", || {
            h.calls_of("a").len() == 3
        })
        .await;
        let t = h.calls_of("a");
        assert_eq!(t[1] - t[0], Duration::from_secs(7));
        assert_eq!(t[2] - t[1], Duration::from_secs(7));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.calls_of("a").len(), 3);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminal_error_is_not_retried_nor_resynced_until_the_object_changes() {
        let mut h = start(Setup {
            keys: vec![key("a")],
            resync: Some(Duration::from_secs(60)),
            script: Arc::new(|_, n| {
                if n == 1 {
                    Err(ReconcileError::terminal("bad spec"))
                } else {
                    Ok(Action::AwaitChange)
                }
            }),
            ..Setup::default()
        });
        h.ready();
        until(Duration::from_secs(1), "first run", || {
            h.calls_of("a").len() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        h.resync("a");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            h.calls_of("a").len(),
            1,
            "neither retries nor resyncs run it"
        );
        assert_eq!(h.metrics.reconciles(ReconcileResult::Terminal), 1);
        assert_eq!(h.metrics.backoffs(), 0);
        h.change("a");
        until(Duration::from_secs(1), "run after the change", || {
            h.calls_of("a").len() == 2
        })
        .await;
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn every_key_is_resynced_each_period() {
        let mut h = start(Setup {
            keys: vec![key("a"), key("b")],
            resync: Some(Duration::from_secs(300)),
            ..Setup::default()
        });
        h.ready();
        until(Duration::from_secs(1), "first pass", || h.total() == 2).await;
        let start = h.calls_of("a")[0];
        until(Duration::from_secs(1000), "three passes", || h.total() == 6).await;
        let t = h.calls_of("a");
        assert_eq!(t[1] - start, Duration::from_secs(300));
        assert_eq!(t[2] - start, Duration::from_secs(600));
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_an_error_for_its_key_and_the_others_go_on() {
        // No panic layer here: the runner's own net catches it too.
        let mut h = start(Setup {
            keys: vec![key("bad"), key("good")],
            script: Arc::new(|k, n| {
                if k.name == "bad" && n == 1 {
                    panic!("reconciler bug")
                }
                Ok(Action::AwaitChange)
            }),
            ..Setup::default()
        });
        h.ready();
        until(
            Duration::from_secs(1),
            "the retry of the panicked key",
            || h.calls_of("bad").len() == 2 && h.calls_of("good").len() == 1,
        )
        .await;
        assert_eq!(h.metrics.reconciles(ReconcileResult::Panic), 1);
        h.stop(Stop::Abort).await;
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_with_abort_cancels_in_flight_reconciles_and_drain_lets_them_finish() {
        let mut h = start(Setup {
            keys: vec![key("a")],
            work: Duration::from_secs(5),
            ..Setup::default()
        });
        h.ready();
        until(Duration::from_secs(1), "run", || {
            h.active.load(Ordering::SeqCst) == 1
        })
        .await;
        let active = h.active.clone();
        let metrics = h.metrics.clone();
        assert_eq!(h.stop(Stop::Abort).await, Stop::Abort);
        assert_eq!(
            metrics.reconciles(ReconcileResult::Success),
            0,
            "aborted, not finished"
        );
        // The aborted future never decremented `active`: it was dropped mid-sleep.
        assert_eq!(active.load(Ordering::SeqCst), 1);

        let mut h = start(Setup {
            keys: vec![key("a")],
            work: Duration::from_secs(5),
            ..Setup::default()
        });
        h.ready();
        until(Duration::from_secs(1), "run", || {
            h.active.load(Ordering::SeqCst) == 1
        })
        .await;
        let metrics = h.metrics.clone();
        let began = Instant::now();
        h.stop(Stop::Drain(Duration::from_secs(30))).await;
        assert!(
            began.elapsed() <= Duration::from_secs(5),
            "returned when the reconcile ended"
        );
        assert_eq!(
            metrics.reconciles(ReconcileResult::Success),
            1,
            "drained to the end"
        );
    }
}
