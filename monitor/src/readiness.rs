//! The one message a monitor sends [`spawn`](crate::spawn) on its stdout
//! pipe before closing it: the container runs, or why it does not. One JSON
//! line, so a crash mid-way shows up as an unparsable or empty report.

use serde::{Deserialize, Serialize};

/// What the monitor reports to its spawner.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Readiness {
    /// `runc run` returned; the container's process runs.
    Running {
        /// The monitor's pid.
        monitor_pid: i32,
        /// The init's pid.
        init_pid: i32,
        /// RFC 3339 time `runc run` returned.
        started_at: String,
        /// How long `runc run` took, in microseconds (what of a start is
        /// the runtime's, for the daemon's log).
        #[serde(default)]
        runtime_micros: u64,
    },
    /// The runtime refused the container; its message.
    RuntimeFailed {
        /// The runtime's error text.
        stderr: String,
    },
    /// The monitor itself could not go on.
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl Readiness {
    /// The report as one line of JSON.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        // Serializing strings and integers cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}
