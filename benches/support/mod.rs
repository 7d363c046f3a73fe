//! What the benches that compare with dockerd share: a dockerd of their
//! own, and reading processes and their memory from `/proc`. Included by
//! each bench with `#[path]`, beside `tests/common`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sdc_docker_testkit::wait_for;

use crate::common::{Ran, docker_at};

/// How long dockerd may take to answer, or to stop.
pub const DOCKERD_TIMEOUT: Duration = Duration::from_secs(60);

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `dockerd` on `PATH`, else Debian's `/usr/sbin/dockerd`.
pub fn dockerd_binary() -> Option<PathBuf> {
    on_path("dockerd").or_else(|| Some(PathBuf::from("/usr/sbin/dockerd")).filter(|p| p.is_file()))
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A `KEY: N kB` field of a `/proc/PID/…` file, in KiB.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU time (user + system) process `pid` used so far, in clock ticks
/// (`/proc/<pid>/stat` fields 14 and 15; 100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose program is named `program` and whose command line
/// mentions `mentions` (the bench's temporary directory of that engine).
pub fn processes(program: &str, mentions: &Path) -> Vec<u32> {
    let mentions = mentions.display().to_string();
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let args = cmdline(pid);
            args.first()
                .is_some_and(|a0| Path::new(a0).file_name() == Some(program.as_ref()))
                && args.iter().any(|a| a.contains(&mentions))
        })
        .collect()
}

/// Direct children of `pid` (dockerd's containerd).
pub fn children(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                // `pid (comm) state ppid …`; comm may hold spaces.
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Unmount every mount point under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(point).output();
    }
}

/// A dockerd of its own: socket, data root and exec root in a temporary
/// directory; the containerd it starts keeps its state under those too.
/// On drop, panics included: its containers removed (`docker rm -f`), then
/// SIGTERM (waited for), then any shim left killed and any mount under its
/// directory unmounted.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dockerd {
    pub async fn start(binary: &Path) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("sdc-bench-dockerd-")
            .tempdir()
            .expect("temporary directory");
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log file");
        let child = Command::new(binary)
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--storage-driver",
                "overlay2",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let mut dockerd = Dockerd { child, dir };
        let host = dockerd.host();
        let config = dockerd.dir.path().to_path_buf();
        let child = &mut dockerd.child;
        wait_for(
            DOCKERD_TIMEOUT,
            "dockerd to answer `docker version`",
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("dockerd exited with {status} before answering");
                }
                let ok = docker_at(&host, &config, &["version"]).ok;
                async move { ok }
            },
        )
        .await;
        dockerd
    }

    /// A fresh dockerd with `reference` pulled.
    pub async fn with(binary: &Path, reference: &str) -> Dockerd {
        let dockerd = Dockerd::start(binary).await;
        let pulled = dockerd.docker(&["pull", "-q", reference]);
        assert!(pulled.ok, "pull through dockerd: {pulled:?}");
        dockerd
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    pub fn docker(&self, args: &[&str]) -> Ran {
        docker_at(&self.host(), self.dir.path(), args)
    }

    /// The unix socket of its API (for raw HTTP clients).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The temporary directory holding everything of it (the CLI's config
    /// dir too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// dockerd's own process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// dockerd and its containerd.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        std::iter::once(pid).chain(children(pid)).collect()
    }

    pub fn shims(&self) -> Vec<u32> {
        processes("containerd-shim-runc-v2", self.dir.path())
    }

    pub fn remove_containers(&self) {
        let listed = self.docker(&["ps", "-aq"]);
        let ids: Vec<&str> = listed.stdout.split_whitespace().collect();
        for chunk in ids.chunks(50) {
            let mut args = vec!["rm", "-f"];
            args.extend(chunk);
            let _ = self.docker(&args);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- dockerd log (tail)");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Ok(None) = self.child.try_wait() {
            self.remove_containers();
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + DOCKERD_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for pid in self.shims() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        unmount_under(self.dir.path());
    }
}
