//! Best-effort OOM detection: the `oom_kill` counter of the container's
//! memory cgroup, found through `/proc/<init>/cgroup` while the init lives
//! (cgroup v1 `memory/<path>/memory.oom_control`, cgroup v2
//! `<path>/memory.events`, also under `unified/` on hybrid hosts). The
//! cgroup outlives the init until `runc delete`, so the counter can be read
//! after the exit. Limits: it assumes the usual mount points under
//! `/sys/fs/cgroup`, and an OOM kill of any process in the cgroup counts,
//! not only of the init (Docker reports it the same way).

use std::path::PathBuf;

use crate::cgroups::Cgroups;

/// The counters to compare at exit against their values at start.
pub(crate) struct OomWatch {
    counters: Vec<(PathBuf, u64)>,
}

impl OomWatch {
    /// Finds the memory cgroup files of `pid` and remembers their counters.
    pub(crate) fn of_process(pid: i32) -> Self {
        let groups = Cgroups::of_process(i64::from(pid));
        let candidates = [
            groups.v2_file("memory.events"),
            groups.v1_file("memory", "memory.oom_control"),
        ];
        let counters = candidates
            .into_iter()
            .flatten()
            .filter_map(|file| oom_kills(&file).map(|n| (file, n)))
            .collect();
        OomWatch { counters }
    }

    /// Whether any counter grew since the start.
    pub(crate) fn fired(&self) -> bool {
        self.counters
            .iter()
            .any(|(file, start)| oom_kills(file).is_some_and(|now| now > *start))
    }
}

/// The `oom_kill N` line of a cgroup file.
fn oom_kills(file: &PathBuf) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}
