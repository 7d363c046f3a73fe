//! Errors of the runtime: what a reconcile may return, and what stops a
//! [`Manager`](crate::Manager).

use std::time::Duration;

/// A boxed error from a reconciler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a reconcile failed; the variant decides what the runtime does next.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Something that may succeed later (the store unreachable, a write
    /// conflict, a zone not ready): retried after the key's exponential
    /// backoff (100 ms doubling to 5 min, with jitter).
    #[error("{0}")]
    Transient(#[source] BoxError),
    /// Retrying will not help until the object (or an object mapped to it)
    /// changes — a spec that can never be realised, say. Logged and counted
    /// as `result="terminal"`, then left alone until a change triggers it.
    #[error("terminal: {0}")]
    Terminal(#[source] BoxError),
    /// The reconcile panicked; the [`CatchPanicLayer`](crate::CatchPanicLayer)
    /// turned the panic into this error for its key. Retried with backoff.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
    /// The reconcile did not finish within the
    /// [`TimeoutLayer`](crate::TimeoutLayer)'s bound and was dropped.
    /// Retried with backoff.
    #[error("reconcile timed out after {0:?}")]
    Timeout(Duration),
}

impl ReconcileError {
    /// A transient error from anything that is an error.
    pub fn transient(e: impl Into<BoxError>) -> Self {
        ReconcileError::Transient(e.into())
    }

    /// A terminal error from anything that is an error.
    pub fn terminal(e: impl Into<BoxError>) -> Self {
        ReconcileError::Terminal(e.into())
    }

    /// Whether the runtime retries this error on its own (everything but
    /// [`ReconcileError::Terminal`]).
    pub fn is_retried(&self) -> bool {
        !matches!(self, ReconcileError::Terminal(_))
    }
}

/// Store errors in a reconcile: a malformed object or a request the store
/// rejects for good is terminal; everything else (unreachable, a conflict
/// with a concurrent writer, a key that went away, a fence that no longer
/// holds) is transient — the next attempt reads afresh.
impl From<sdc_docker_store::Error> for ReconcileError {
    fn from(e: sdc_docker_store::Error) -> Self {
        use sdc_docker_store::Error as E;
        match e {
            E::Invalid { .. } | E::Rejected(_) => ReconcileError::Terminal(Box::new(e)),
            other => ReconcileError::Transient(Box::new(other)),
        }
    }
}

/// Why a [`Manager`](crate::Manager) could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two controllers were added under one name; names must be unique
    /// because each names its own election and metrics.
    #[error("two controllers are named {0:?}")]
    DuplicateController(String),
    /// A controller's task panicked (a bug in the runtime, not in a
    /// reconciler: reconcile panics are caught per key).
    #[error("controller {name} failed: {message}")]
    ControllerFailed {
        /// The controller.
        name: String,
        /// What the panic said.
        message: String,
    },
}
