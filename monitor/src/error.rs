//! The errors of the client API: each variant says when it happens, so the
//! zone driver can tell "the container's own configuration is wrong" (the
//! runtime refused it) from "the machine is in trouble".

use std::path::PathBuf;

/// Why starting or inspecting a monitor failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// `runc run` failed; `stderr` is the runtime's own
    /// message (what Docker shows after "OCI runtime create failed").
    /// No monitor is left running and the runtime holds no container.
    #[error("OCI runtime failed: {stderr}")]
    RuntimeFailed {
        /// The runtime's error text.
        stderr: String,
    },
    /// A monitor still runs for this state directory; starting a second one
    /// would take its sockets away.
    #[error("a monitor (pid {pid}) still runs for this container")]
    AlreadyRunning {
        /// The running monitor's pid.
        pid: i32,
    },
    /// The monitor binary could not be started at all.
    #[error("cannot run monitor {binary}: {source}")]
    MonitorExec {
        /// The binary that was tried.
        binary: PathBuf,
        /// Why exec failed.
        source: std::io::Error,
    },
    /// The monitor started but stopped before reporting whether the
    /// container runs; `detail` is what it said, or the end of its log.
    #[error("monitor failed before the container started: {detail}")]
    MonitorFailed {
        /// What went wrong, as far as it is known.
        detail: String,
    },
    /// A file of the state directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of the state directory exists but does not parse.
    #[error("{path}: malformed: {detail}")]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl MonitorError {
    /// An [`MonitorError::Io`] about `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MonitorError::Io {
            path: path.into(),
            source,
        }
    }
}
