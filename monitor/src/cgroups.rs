//! The cgroups of a process, as `/proc/<pid>/cgroup` lists them: the
//! directory of each cgroup v1 controller and the cgroup v2 group (under
//! the v2 mount, or `unified/` on hybrid hosts). Shared by the monitor's
//! OOM watch and the zones' stats and pause state. Limits: the cgroup file
//! systems are assumed mounted where Debian, systemd and Docker put them,
//! under `/sys/fs/cgroup`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the cgroup file systems are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of one process.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// v1: controller name → its directory.
    pub v1: BTreeMap<String, PathBuf>,
    /// v2: the candidate directories (pure v2 mount, hybrid `unified/`).
    pub v2: Vec<PathBuf>,
}

impl Cgroups {
    /// From the text of `/proc/<pid>/cgroup`, with cgroup file systems
    /// mounted under `root`.
    pub fn parse(listing: &str, root: &Path) -> Cgroups {
        let mut groups = Cgroups::default();
        for line in listing.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = path.trim_start_matches('/');
            if controllers.is_empty() {
                groups.v2.push(root.join(path));
                groups.v2.push(root.join("unified").join(path));
            } else {
                for controller in controllers.split(',') {
                    // `name=systemd` and the like are no controllers.
                    if controller.contains('=') {
                        continue;
                    }
                    groups
                        .v1
                        .insert(controller.to_string(), root.join(controller).join(path));
                }
            }
        }
        groups
    }

    /// `file` of v1 `controller`, if it exists.
    pub fn v1_file(&self, controller: &str, file: &str) -> Option<PathBuf> {
        let path = self.v1.get(controller)?.join(file);
        path.exists().then_some(path)
    }

    /// `file` of the v2 cgroup, if it exists.
    pub fn v2_file(&self, file: &str) -> Option<PathBuf> {
        self.v2.iter().map(|d| d.join(file)).find(|p| p.exists())
    }
}

impl Cgroups {
    /// The cgroups of process `pid` (empty when it is gone).
    pub fn of_process(pid: i64) -> Cgroups {
        let listing = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        Cgroups::parse(&listing, Path::new(ROOT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_listings_map_v1_controllers_and_the_v2_group_to_directories() {
        let listing = "12:pids:/sdc-docker/z\n\
                       4:cpu,cpuacct:/sdc-docker/z\n\
                       1:name=systemd:/sdc-docker/z\n\
                       0::/sdc-docker/z\n";
        let groups = Cgroups::parse(listing, Path::new("/cg"));
        assert_eq!(groups.v1["pids"], PathBuf::from("/cg/pids/sdc-docker/z"));
        assert_eq!(groups.v1["cpu"], PathBuf::from("/cg/cpu/sdc-docker/z"));
        assert_eq!(
            groups.v1["cpuacct"],
            PathBuf::from("/cg/cpuacct/sdc-docker/z")
        );
        assert!(!groups.v1.keys().any(|k| k.contains("systemd")));
        assert_eq!(
            groups.v2,
            vec![
                PathBuf::from("/cg/sdc-docker/z"),
                PathBuf::from("/cg/unified/sdc-docker/z")
            ]
        );
    }

    #[test]
    fn files_are_taken_from_whichever_hierarchy_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("memory/z");
        let v2 = dir.path().join("unified/z");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 7\n").unwrap();
        let groups = Cgroups::parse("9:memory:/z\n0::/z\n", dir.path());
        assert_eq!(
            groups.v1_file("memory", "memory.usage_in_bytes"),
            Some(v1.join("memory.usage_in_bytes"))
        );
        assert_eq!(groups.v1_file("cpuacct", "cpuacct.usage"), None);
        assert_eq!(groups.v2_file("cpu.stat"), Some(v2.join("cpu.stat")));
        assert_eq!(groups.v2_file("memory.current"), None);
    }
}
