//! The monitor's own log, `state_dir/monitor.log`: one short line per
//! problem, with a timestamp. Nothing else sees the monitor's troubles (its
//! stdio is gone once the spawner has its answer), so this is where an
//! operator looks. Failing to write it is ignored: there is nowhere else.

use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::{layout, timefmt};

/// An append-only plain-text log of the monitor's problems.
pub(crate) struct Journal {
    file: Option<File>,
}

impl Journal {
    /// Opens (creating) `state_dir/monitor.log` for appending.
    pub(crate) fn open(state_dir: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout::file(state_dir, layout::MONITOR_LOG))
            .ok();
        Journal { file }
    }

    /// Appends one line.
    pub(crate) fn note(&self, message: impl Display) {
        if let Some(mut file) = self.file.as_ref() {
            let line = format!("{} {message}\n", timefmt::format(SystemTime::now()));
            let _ = file.write_all(line.as_bytes());
        }
    }
}
