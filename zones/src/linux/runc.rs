//! The OCI runtime's command line (`runc`, or any runtime that speaks it:
//! `crun`, `youki`): kill, pause, resume, delete and state of a container
//! the monitor created. Creating and starting go through the monitor, which
//! must be the runtime's parent to hold the container's stdio.
//!
//! Every call has a deadline, so a wedged runtime cannot hang a controller.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

/// How long one runtime command may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// The runtime binary could not be run.
    #[error("running {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime exited non-zero.
    #[error("{op}: {stderr}")]
    Failed {
        /// The subcommand (`kill`, `delete`, …).
        op: &'static str,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// The runtime did not finish within the deadline.
    #[error("{op} did not finish within {DEADLINE:?}")]
    Timeout {
        /// The subcommand.
        op: &'static str,
    },
    /// `state` printed something that is not the OCI state.
    #[error("state: {0}")]
    BadState(serde_json::Error),
}

impl RuncError {
    /// Whether the runtime said the container does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuncError::Failed { stderr, .. } if stderr.contains("does not exist"))
    }

    /// Whether the runtime said the container is not running (it exited
    /// between our look and our signal).
    pub fn is_not_running(&self) -> bool {
        matches!(self, RuncError::Failed { stderr, .. }
            if stderr.contains("not running") || stderr.contains("process already finished"))
    }
}

/// The OCI state a runtime prints.
#[derive(Clone, Debug, Deserialize)]
pub struct RuncState {
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The init pid (0 once stopped).
    #[serde(default)]
    pub pid: i64,
}

/// One OCI runtime binary with its state root.
#[derive(Clone, Debug)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    /// `binary --root root …`.
    pub fn new(binary: PathBuf, root: PathBuf) -> Runc {
        Runc { binary, root }
    }

    async fn run(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>, RuncError> {
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.root)
            .arg(op)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(DEADLINE, command.output())
            .await
            .map_err(|_| RuncError::Timeout { op })?
            .map_err(|source| RuncError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            tracing::debug!(op, ?args, %stderr, "runtime refused");
            Err(RuncError::Failed { op, stderr })
        }
    }

    /// Whether the runtime may hold state for container `id`: runc, crun
    /// and youki keep one directory per container under their root. Saves
    /// a process where the answer is no (a zone's first start).
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Sends signal number `signal` to the container's init.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), RuncError> {
        self.run("kill", &[id, &signal.to_string()]).await.map(drop)
    }

    /// Freezes the container.
    pub async fn pause(&self, id: &str) -> Result<(), RuncError> {
        self.run("pause", &[id]).await.map(drop)
    }

    /// Thaws the container.
    pub async fn resume(&self, id: &str) -> Result<(), RuncError> {
        self.run("resume", &[id]).await.map(drop)
    }

    /// Removes the container's runtime state (killing it first if it runs);
    /// a container the runtime does not know is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        match self.run("delete", &["--force", id]).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// The container's state, or `None` when the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<RuncState>, RuncError> {
        match self.run("state", &[id]).await {
            Ok(stdout) => serde_json::from_slice(&stdout)
                .map(Some)
                .map_err(RuncError::BadState),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
