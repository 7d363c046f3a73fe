//! The OCI runtime spec (`config.json`) of a zone: a pure function of the
//! [`ZoneSpec`], the zone's paths and its resolved user.
//!
//! It follows Docker's defaults: namespaces mount, pid, ipc, uts and network;
//! Docker's mounts, capability set, masked and read-only paths and device
//! rules; `RLIMIT_NOFILE` 1048576 as containerd sets it. The network
//! namespace is new and holds only `lo` until the networking controller
//! configures interfaces. Not applied (yet): seccomp and AppArmor profiles,
//! swap limits (Debian boots without swap accounting), user namespaces.

use serde_json::{Value, json};

use super::layout::ZoneDir;
use super::user::ExecUser;
use crate::spec::ZoneSpec;

/// Docker's default capabilities.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The open-files limit of the init process (soft and hard), when the node
/// allows it: see [`nofile_limit`].
pub const NOFILE: u64 = 1_048_576;

/// [`NOFILE`], or the daemon's own hard limit when that is lower: raising a
/// hard limit takes `CAP_SYS_RESOURCE`, which a daemon in a container may
/// lack, and runc then fails with "error setting rlimits".
pub fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or(NOFILE, |hard| hard.min(NOFILE))
}

/// The cgroup of zone `id` (cgroupfs layout, under every v1 controller or
/// the unified hierarchy).
pub fn cgroups_path(id: &str) -> String {
    format!("/sdc-docker/{id}")
}

/// An OCI `process`: the zone's init (in [`runtime_config`]) or a process
/// exec'd into it, run as `user` with capabilities `caps` and at most
/// `nofile` open files.
pub fn process(
    tty: bool,
    user: &ExecUser,
    args: &[String],
    env: &[String],
    cwd: &str,
    caps: &[&str],
    nofile: u64,
) -> Value {
    let mut process = json!({
        "terminal": tty,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
        },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": false,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    process
}

/// The `config.json` of `spec` whose files are in `dir`, run as `user`
/// with at most `nofile` open files.
pub fn runtime_config(spec: &ZoneSpec, dir: &ZoneDir, user: &ExecUser, nofile: u64) -> Value {
    let process = process(
        spec.process.tty,
        user,
        &spec.process.args,
        &spec.process.env,
        &spec.process.cwd,
        CAPABILITIES,
        nofile,
    );

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    for (destination, source) in [
        ("/etc/resolv.conf", dir.resolv_conf()),
        ("/etc/hostname", dir.hostname()),
        ("/etc/hosts", dir.hosts()),
    ] {
        mounts.push(json!({"destination": destination, "type": "bind",
                           "source": source, "options": ["rbind", "rprivate"]}));
    }
    for bind in &spec.mounts {
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": bind.target, "type": "bind",
                           "source": bind.source, "options": ["rbind", mode, "rprivate"]}));
    }

    let mut resources = json!({
        "devices": devices(),
    });
    if spec.memory_bytes > 0 {
        resources["memory"] = json!({"limit": spec.memory_bytes});
    }
    if spec.cpu_shares > 0 {
        resources["cpu"] = json!({"shares": spec.cpu_shares});
    }

    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": dir.rootfs(), "readonly": false},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "mount"}, {"type": "network"}, {"type": "uts"},
                {"type": "pid"}, {"type": "ipc"},
            ],
            "cgroupsPath": cgroups_path(&spec.id),
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    if !spec.domainname.is_empty() {
        config["domainname"] = json!(spec.domainname);
    }
    config
}

/// Docker's device cgroup rules: deny all, then `mknod` of anything and the
/// usual character devices.
fn devices() -> Value {
    let allow = |kind: &str, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut rule = json!({"allow": true, "type": kind, "access": access});
        if let Some(major) = major {
            rule["major"] = json!(major);
        }
        if let Some(minor) = minor {
            rule["minor"] = json!(minor);
        }
        rule
    };
    json!([
        {"allow": false, "access": "rwm"},
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", Some(1), Some(3), "rwm"),
        allow("c", Some(1), Some(5), "rwm"),
        allow("c", Some(1), Some(7), "rwm"),
        allow("c", Some(1), Some(8), "rwm"),
        allow("c", Some(1), Some(9), "rwm"),
        allow("c", Some(5), Some(0), "rwm"),
        allow("c", Some(5), Some(1), "rwm"),
        allow("c", Some(5), Some(2), "rwm"),
        allow("c", Some(136), None, "rwm"),
        allow("c", Some(10), Some(200), "rwm"),
    ])
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::spec::{BindMount, ProcessSpec};

    fn spec() -> ZoneSpec {
        ZoneSpec {
            id: "z1".to_string(),
            hostname: "web1".to_string(),
            process: ProcessSpec {
                args: vec!["sh".to_string(), "-c".to_string(), "true".to_string()],
                env: vec!["PATH=/bin".to_string()],
                cwd: "/srv".to_string(),
                tty: true,
                ..Default::default()
            },
            memory_bytes: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        }
    }

    fn config(spec: &ZoneSpec, user: &ExecUser) -> Value {
        runtime_config(
            spec,
            &ZoneDir::new(Path::new("/zones"), &spec.id),
            user,
            NOFILE,
        )
    }

    fn destinations(config: &Value) -> Vec<&str> {
        config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_process_is_the_specs_with_dockers_capabilities_and_nofile() {
        let user = ExecUser {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10],
        };
        let c = config(&spec(), &user);
        let p = &c["process"];
        assert_eq!(p["args"], json!(["sh", "-c", "true"]));
        assert_eq!(p["env"], json!(["PATH=/bin"]));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 100, "additionalGids": [10]})
        );
        assert_eq!(p["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(
            p["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": NOFILE, "soft": NOFILE}])
        );
        assert_eq!(p["noNewPrivileges"], false);
        assert_eq!(
            config(&spec(), &ExecUser::default())["process"]["user"],
            json!({"uid": 0, "gid": 0})
        );
    }

    #[test]
    fn root_hostname_namespaces_and_limits_come_from_the_spec() {
        let c = config(&spec(), &ExecUser::default());
        assert_eq!(c["root"]["path"], "/zones/z1/rootfs");
        assert_eq!(c["hostname"], "web1");
        assert!(c.get("domainname").is_none());
        let namespaces: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["mount", "network", "uts", "pid", "ipc"]);
        assert_eq!(c["linux"]["cgroupsPath"], "/sdc-docker/z1");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(c["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
        assert_eq!(c["linux"]["readonlyPaths"][3], "/proc/sys");
    }

    #[test]
    fn no_limits_are_written_when_the_spec_sets_none() {
        let mut s = spec();
        s.memory_bytes = 0;
        s.cpu_shares = 0;
        s.domainname = "example.com".to_string();
        let c = config(&s, &ExecUser::default());
        assert!(c["linux"]["resources"].get("memory").is_none());
        assert!(c["linux"]["resources"].get("cpu").is_none());
        assert_eq!(c["domainname"], "example.com");
    }

    #[test]
    fn mounts_are_dockers_then_the_etc_files_then_the_specs_binds() {
        let mut s = spec();
        s.mounts = vec![BindMount {
            source: PathBuf::from("/srv/data"),
            target: "/data".to_string(),
            read_only: true,
        }];
        let c = config(&s, &ExecUser::default());
        assert_eq!(
            destinations(&c),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/etc/hosts",
                "/data"
            ]
        );
        let mounts = c["mounts"].as_array().unwrap();
        assert_eq!(mounts[9]["source"], "/zones/z1/hosts");
        assert_eq!(mounts[10]["source"], "/srv/data");
        assert_eq!(mounts[10]["options"], json!(["rbind", "ro", "rprivate"]));
        assert_eq!(mounts[3]["options"][3], "ro");
    }
}
