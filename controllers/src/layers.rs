//! The tower layers every reconcile runs inside: a tracing span carrying the
//! controller and the key, a timeout, and panic capture.
//!
//! The runtime stacks them as trace → timeout → catch-panic → reconciler, so
//! a timeout or a panic is still logged inside the key's span. They are
//! public so a reconciler can be tested with the same stack, and they work
//! on any request that names its key ([`Keyed`]).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::controller::Action;
use crate::error::ReconcileError;
use crate::key::ObjectKey;

/// A request that names the key it is about.
pub trait Keyed {
    /// The key being reconciled.
    fn key(&self) -> &ObjectKey;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs each reconcile inside a `reconcile` span with `controller` and `key`
/// fields, so every line it logs names both, and logs how it ended.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    controller: Arc<str>,
}

impl TraceLayer {
    /// Spans naming `controller`.
    pub fn new(controller: &str) -> Self {
        TraceLayer {
            controller: controller.into(),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            controller: self.controller.clone(),
        }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    controller: Arc<str>,
}

impl<S, Req> Service<Req> for Trace<S>
where
    Req: Keyed,
    S: Service<Req, Response = Action, Error = ReconcileError>,
    S::Future: Send + 'static,
{
    type Response = Action;
    type Error = ReconcileError;
    type Future = BoxFuture<Result<Action, ReconcileError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ReconcileError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let span = tracing::info_span!(
            "reconcile",
            controller = %self.controller,
            key = %req.key()
        );
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let result = fut.await;
                match &result {
                    Ok(action) => tracing::debug!(?action, "reconciled"),
                    Err(e @ ReconcileError::Terminal(_)) => {
                        tracing::error!(error = %e, "reconcile failed for good; waiting for a change")
                    }
                    Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Fails a reconcile with [`ReconcileError::Timeout`] when it runs longer
/// than a bound (the future is dropped, cancelling it at its next await).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Reconciles may run up to `timeout`.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req, Response = Action, Error = ReconcileError>,
    S::Future: Send + 'static,
{
    type Response = Action;
    type Error = ReconcileError;
    type Future = BoxFuture<Result<Action, ReconcileError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ReconcileError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let timeout = self.timeout;
        let fut = self.inner.call(req);
        Box::pin(async move {
            tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or(Err(ReconcileError::Timeout(timeout)))
        })
    }
}

/// Turns a panic of the reconcile (while it is called or while its future
/// runs) into [`ReconcileError::Panicked`] for that key, so the controller
/// goes on with the other keys and retries this one with backoff.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;
    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service [`CatchPanicLayer`] makes.
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, Req> Service<Req> for CatchPanic<S>
where
    S: Service<Req, Response = Action, Error = ReconcileError>,
    S::Future: Send + 'static,
{
    type Response = Action;
    type Error = ReconcileError;
    type Future = BoxFuture<Result<Action, ReconcileError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ReconcileError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The reconciler's state is its own and is rebuilt from the store on
        // the next attempt, so observing it after a panic is harmless.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => Box::pin(async move {
                match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => Err(ReconcileError::Panicked(panic_message(&*panic))),
                }
            }),
            Err(panic) => {
                let message = panic_message(&*panic);
                Box::pin(async move { Err(ReconcileError::Panicked(message)) })
            }
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Kind;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    struct Req(ObjectKey);
    impl Keyed for Req {
        fn key(&self) -> &ObjectKey {
            &self.0
        }
    }

    fn req() -> Req {
        Req(ObjectKey::new(Kind::Container, "default", "web"))
    }

    #[tokio::test]
    async fn a_panic_in_the_future_or_the_call_becomes_an_error_for_the_key() {
        let svc = ServiceBuilder::new()
            .layer(CatchPanicLayer)
            .service_fn(|_: Req| async { panic!("boom") });
        let err = svc.oneshot(req()).await.unwrap_err();
        assert!(
            matches!(&err, ReconcileError::Panicked(m) if m == "boom"),
            "{err}"
        );

        #[derive(Clone)]
        struct PanicsOnCall;
        impl Service<Req> for PanicsOnCall {
            type Response = Action;
            type Error = ReconcileError;
            type Future = std::future::Ready<Result<Action, ReconcileError>>;
            fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), ReconcileError>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Req) -> Self::Future {
                panic!("in call {}", 7)
            }
        }
        let err = CatchPanicLayer
            .layer(PanicsOnCall)
            .oneshot(req())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReconcileError::Panicked(m) if m == "in call 7"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_runs_too_long_times_out() {
        let svc = ServiceBuilder::new()
            .layer(TraceLayer::new("test"))
            .layer(TimeoutLayer::new(Duration::from_secs(2)))
            .service_fn(|_: Req| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, ReconcileError>(Action::AwaitChange)
            });
        let started = tokio::time::Instant::now();
        let err = svc.oneshot(req()).await.unwrap_err();
        assert!(matches!(err, ReconcileError::Timeout(d) if d == Duration::from_secs(2)));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
