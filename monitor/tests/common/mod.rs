//! Shared fixture of the monitor's tests: a busybox bundle in a temp dir,
//! a unique runc root per test, and waiting for conditions with a deadline.
//! The tests need root and runc; without them they say so and pass.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sdc_docker_monitor::{LogConfig, MonitorConfig, MonitorState};
use tempfile::TempDir;

/// The runtime the tests use.
pub const RUNC: &str = "/usr/bin/runc";

/// A bundle, a state dir and a runc root in one temp dir; the container is
/// force-deleted when dropped.
pub struct Fixture {
    /// Holds everything.
    pub dir: TempDir,
    /// The monitor configuration for the bundle.
    pub config: MonitorConfig,
}

/// How to build a fixture.
pub struct Spec<'a> {
    /// The container's command.
    pub args: &'a [&'a str],
    /// `process.terminal` and the monitor's `tty`.
    pub tty: bool,
    /// The monitor's `open_stdin`.
    pub open_stdin: bool,
    /// `(max_size, max_files)` of the json-file log.
    pub log: (u64, u32),
    /// The memory cgroup limit, in bytes.
    pub memory_limit: Option<u64>,
}

/// A fixture, or `None` (after saying why) when the machine cannot run
/// containers.
pub fn fixture(spec: Spec<'_>) -> Option<Fixture> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: the monitor tests need root");
        return None;
    }
    if !Path::new(RUNC).exists() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: the monitor tests need {RUNC} and /bin/busybox");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).ok()?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).ok()?;
    for applet in [
        "sh", "sleep", "echo", "cat", "stty", "seq", "yes", "head", "true",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).ok()?;
    }
    std::fs::write(
        bundle.join("config.json"),
        oci_config(&rootfs, &spec).to_string(),
    )
    .ok()?;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let id = format!(
        "monitor-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let config = MonitorConfig {
        id,
        bundle,
        state_dir: dir.path().join("state"),
        runtime: PathBuf::from(RUNC),
        runtime_root: Some(dir.path().join("runc-root")),
        tty: spec.tty,
        open_stdin: spec.open_stdin,
        log: Some(LogConfig {
            path: dir.path().join("container-json.log"),
            max_size: spec.log.0,
            max_files: spec.log.1,
        }),
        monitor_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_sdc-docker-monitor"))),
    };
    Some(Fixture { dir, config })
}

/// The default spec for `args`: pipes, no stdin, an unlimited log.
pub fn spec<'a>(args: &'a [&'a str]) -> Spec<'a> {
    Spec {
        args,
        tty: false,
        open_stdin: false,
        log: (0, 1),
        memory_limit: None,
    }
}

/// A minimal OCI config: busybox, host network, the usual mounts.
fn oci_config(rootfs: &Path, spec: &Spec<'_>) -> serde_json::Value {
    let mut config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            "user": { "uid": 0, "gid": 0 },
            "args": spec.args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": false },
        "hostname": "monitor-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }
            ]
        }
    });
    if let Some(limit) = spec.memory_limit {
        config["linux"]["resources"] = serde_json::json!({ "memory": { "limit": limit } });
    }
    config
}

impl Fixture {
    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// The current log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("container-json.log")
    }

    /// `runc --root R <args> ID`.
    pub fn runc(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let mut command = Command::new(RUNC);
        if let Some(root) = &self.config.runtime_root {
            command.arg("--root").arg(root);
        }
        command.args(args).arg(&self.config.id).output()
    }

    /// The monitor state once the container exited (and the monitor with
    /// it), or a panic after `timeout`.
    pub fn wait_for_exit(&self, timeout: Duration) -> MonitorState {
        let mut last = None;
        let done = wait_until(timeout, || {
            let state = sdc_docker_monitor::state(self.state_dir()).ok();
            let done = state
                .as_ref()
                .is_some_and(|s| s.exit.is_some() && !s.monitor_alive);
            last = state;
            done
        });
        assert!(done, "the container did not exit in {timeout:?}: {last:?}");
        last.unwrap_or_else(|| panic!("no state"))
    }
}

impl Fixture {
    /// `runc kill ID SIGNAL`; whether runc succeeded.
    pub fn kill(&self, signal: &str) -> bool {
        let mut command = Command::new(RUNC);
        if let Some(root) = &self.config.runtime_root {
            command.arg("--root").arg(root);
        }
        command
            .args(["kill", &self.config.id, signal])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force"]);
    }
}

/// Polls `condition` until it holds or `timeout` passed; whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
