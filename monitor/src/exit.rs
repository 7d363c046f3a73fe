//! How a container's init ended, as the monitor records it in `exit.json`:
//! `{"exit_code":137,"signal":9,"finished_at":"2026-…Z","oom_killed":false}`.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{MonitorError, timefmt};

/// How the container's init process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal number when a signal killed it
    /// (as Docker reports it).
    pub exit_code: i32,
    /// The signal that killed the init, if one did.
    pub signal: Option<i32>,
    /// When the monitor reaped the init.
    pub finished_at: SystemTime,
    /// Whether the kernel's OOM killer fired in the container's memory cgroup
    /// (best effort: the `oom_kill` counter of cgroup v1
    /// `memory.oom_control` or v2 `memory.events`; false when neither is
    /// found).
    pub oom_killed: bool,
}

/// `exit.json` on disk.
#[derive(Serialize, Deserialize)]
struct ExitJson {
    exit_code: i32,
    signal: Option<i32>,
    finished_at: String,
    oom_killed: bool,
}

impl ExitRecord {
    /// The record as the JSON of `exit.json`.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let json = ExitJson {
            exit_code: self.exit_code,
            signal: self.signal,
            finished_at: timefmt::format(self.finished_at),
            oom_killed: self.oom_killed,
        };
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// Parses `exit.json` read from `path`.
    pub(crate) fn from_json(path: &Path, bytes: &[u8]) -> Result<Self, MonitorError> {
        let malformed = |detail: String| MonitorError::Malformed {
            path: path.to_path_buf(),
            detail,
        };
        let json: ExitJson = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let finished_at = timefmt::parse(&json.finished_at)
            .ok_or_else(|| malformed(format!("bad time {:?}", json.finished_at)))?;
        Ok(ExitRecord {
            exit_code: json.exit_code,
            signal: json.signal,
            finished_at,
            oom_killed: json.oom_killed,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn an_exit_record_round_trips_through_its_json() {
        let record = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            finished_at: UNIX_EPOCH + Duration::new(1_795_000_000, 5),
            oom_killed: true,
        };
        let back = ExitRecord::from_json(Path::new("exit.json"), &record.to_json());
        assert_eq!(back.ok(), Some(record));
    }
}
