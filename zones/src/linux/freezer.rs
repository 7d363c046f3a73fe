//! Whether a zone is paused, read from its freezer cgroup the way the
//! runtime itself decides it (`runc state` reads the same file), without
//! running the runtime: cgroup v1 `freezer/<path>/freezer.state` (`FROZEN`,
//! or `FREEZING` on the way there), cgroup v2 `<path>/cgroup.freeze`.
//! The cgroup is found through `/proc/<pid>/cgroup` of the zone's init;
//! mount points are the usual ones under `/sys/fs/cgroup`.

use std::path::Path;

use sdc_docker_monitor::cgroups::{Cgroups, ROOT};

/// `Some(true)` when the cgroup of `pid` is frozen, `Some(false)` when it
/// is not, `None` when that cannot be told (the process is gone, or its
/// cgroup is not where we look).
pub fn frozen(pid: i64) -> Option<bool> {
    let listing = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    frozen_in(Path::new(ROOT), &listing)
}

/// [`frozen`] for the `/proc/<pid>/cgroup` text `listing`, with the cgroup
/// file systems under `root`.
fn frozen_in(root: &Path, listing: &str) -> Option<bool> {
    let groups = Cgroups::parse(listing, root);
    let read = |path| std::fs::read_to_string(path).ok();
    // A v1 freezer, on a v1 or hybrid host, is the one runc uses.
    if let Some(state) = groups.v1_file("freezer", "freezer.state").and_then(read) {
        return Some(matches!(state.trim(), "FROZEN" | "FREEZING"));
    }
    let freeze = groups.v2_file("cgroup.freeze").and_then(read)?;
    Some(freeze.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_v1_freezer_that_is_frozen_or_freezing_means_paused_and_thawed_means_not() {
        let root = tempfile::tempdir().unwrap();
        let listing = "6:freezer:/sdc-docker/z1\n4:memory:/sdc-docker/z1\n0::/\n";
        write(
            root.path(),
            "freezer/sdc-docker/z1/freezer.state",
            "FROZEN\n",
        );
        assert_eq!(frozen_in(root.path(), listing), Some(true));
        write(
            root.path(),
            "freezer/sdc-docker/z1/freezer.state",
            "FREEZING\n",
        );
        assert_eq!(frozen_in(root.path(), listing), Some(true));
        write(
            root.path(),
            "freezer/sdc-docker/z1/freezer.state",
            "THAWED\n",
        );
        assert_eq!(frozen_in(root.path(), listing), Some(false));
    }

    #[test]
    fn a_v2_cgroup_is_paused_when_cgroup_freeze_is_1_at_the_root_or_under_unified() {
        let root = tempfile::tempdir().unwrap();
        let listing = "0::/sdc-docker/z2\n";
        assert_eq!(frozen_in(root.path(), listing), None);
        write(root.path(), "unified/sdc-docker/z2/cgroup.freeze", "1\n");
        assert_eq!(frozen_in(root.path(), listing), Some(true));
        write(root.path(), "sdc-docker/z2/cgroup.freeze", "0\n");
        assert_eq!(frozen_in(root.path(), listing), Some(false));
    }

    #[test]
    fn a_process_that_does_not_exist_cannot_tell() {
        assert_eq!(frozen(i64::from(i32::MAX)), None);
    }
}
