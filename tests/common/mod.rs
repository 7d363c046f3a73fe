//! The harness of the end-to-end tests: the real `sdc-docker` binary
//! serving on a free loopback port and a unix admin socket in a temporary
//! directory, the operator CLI run as a user runs it, the real `docker`
//! CLI, and a raw HTTP/1.1 exchange for headers.
//!
//! Nothing here sleeps to let things settle: readiness and conditions are
//! polled with a deadline.

#![allow(dead_code)]

pub mod agent;
pub mod node;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sdc_docker_testkit::{free_port, wait_for};

/// The binary under test.
pub const SDC_DOCKER: &str = env!("CARGO_BIN_EXE_sdc-docker");

/// The docker CLI the tests drive: `/usr/local/bin/docker` (Docker's
/// static build), else `docker` on `PATH`.
pub fn docker_binary() -> PathBuf {
    let installed = Path::new("/usr/local/bin/docker");
    if installed.exists() {
        installed.to_path_buf()
    } else {
        PathBuf::from("docker")
    }
}

/// How long the server may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a condition written by the server may take to appear.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `sdc-docker serve`, stopped (SIGTERM) on drop.
pub struct Server {
    child: Child,
    /// The Docker API port on 127.0.0.1.
    pub port: u16,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// The Docker API unix socket.
    pub docker_socket: PathBuf,
    log: PathBuf,
    /// Everything after `sdc-docker`, to start it again the same way.
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// What a command printed, and whether it succeeded.
pub struct Ran {
    /// Exit status was 0.
    pub ok: bool,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Self {
        Ran {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {} (exit {:?})\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.code, self.stdout, self.stderr
        )
    }
}

impl Server {
    /// Start the server on `store` (`embedded` or `etcd://…`) and wait until
    /// both APIs answer.
    pub async fn start(store: &str) -> Server {
        Server::start_with(store, &[]).await
    }

    /// Like [`Server::start`], with more arguments for `serve`.
    pub async fn start_with(store: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let admin_socket = dir.path().join("admin.sock");
        let docker_socket = dir.path().join("docker.sock");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--store".into(),
            store.into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "-H".into(),
            format!("tcp://127.0.0.1:{port}"),
            "-H".into(),
            format!("unix://{}", docker_socket.display()),
            "--admin-host".into(),
            format!("unix://{}", admin_socket.display()),
            // Several servers of one test share a store (and a hostname):
            // each is its own node.
            "--node-name".into(),
            format!("node-{port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = Command::new(SDC_DOCKER)
            .args(&args)
            .env("RUST_LOG", "info,sdc_docker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting sdc-docker serve");
        let mut server = Server {
            child,
            port,
            admin_socket,
            docker_socket,
            log,
            args,
            dir,
        };
        let what = format!("sdc-docker serve on port {port} to answer");
        let admin = server.admin_socket.clone();
        let child = &mut server.child;
        wait_for(START_TIMEOUT, what, || {
            // The log is printed when `server` is dropped by this panic.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sdc-docker serve exited with {status} before answering");
            }
            let ready = http_tcp(port, "GET", "/_ping").is_some_and(|r| r.status == 200)
                && http_unix(&admin, "GET", "/v1/containers").is_some_and(|r| r.status == 200);
            async move { ready }
        })
        .await;
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The temporary directory of this server (for files the test writes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin address, as `SDC_DOCKER_ADMIN_HOST` takes it.
    pub fn admin_host(&self) -> String {
        format!("unix://{}", self.admin_socket.display())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run `sdc-docker ARGS` as an operator would, against this server.
    pub fn sdc(&self, args: &[&str]) -> Ran {
        self.sdc_with(args, &[], None)
    }

    /// Run `sdc-docker ARGS` with extra environment and standard input.
    pub fn sdc_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Ran {
        let mut command = Command::new(SDC_DOCKER);
        command
            .args(args)
            .env("SDC_DOCKER_ADMIN_HOST", self.admin_host())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("running sdc-docker");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("writing stdin");
        }
        child
            .wait_with_output()
            .expect("waiting for sdc-docker")
            .into()
    }

    /// Run the real `docker` CLI against this server's TCP address.
    pub fn docker(&self, args: &[&str]) -> Ran {
        docker_at(&self.docker_host(), self.dir(), args)
    }

    /// Run the real `docker` CLI with `input` on its standard input.
    pub fn docker_with_stdin(&self, args: &[&str], input: &[u8]) -> Ran {
        docker_at_with_stdin(&self.docker_host(), self.dir(), args, input)
    }

    /// Write `text` to a file in the server's directory; its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// Write an executable shell script; its path.
    pub fn write_script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write_file(name, &format!("#!/bin/sh\nset -e\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("making a script executable");
        path
    }

    /// `kill -9`: no chance to resign or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again, with the same arguments and data dir (after
    /// [`Server::kill9`] or [`Server::stop`]), and waits until it answers.
    pub async fn restart(&mut self) {
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.child = Command::new(SDC_DOCKER)
            .args(&self.args)
            .env("RUST_LOG", "info,sdc_docker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting sdc-docker serve again");
        let (port, admin) = (self.port, self.admin_socket.clone());
        wait_for(START_TIMEOUT, "sdc-docker serve to answer again", || {
            let ready = http_tcp(port, "GET", "/_ping").is_some_and(|r| r.status == 200)
                && http_unix(&admin, "GET", "/v1/containers").is_some_and(|r| r.status == 200);
            async move { ready }
        })
        .await;
    }

    /// The admin API's `GET /metrics` text, if it answers.
    pub fn metrics(&self) -> Option<String> {
        http_unix(&self.admin_socket, "GET", "/metrics")
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    }

    /// `sdc_docker_controller_leader{controller="NAME"}` as this server's
    /// `/metrics` reports it (`None`: no answer, or no such line).
    pub fn leader_gauge(&self, controller: &str) -> Option<u8> {
        leader_gauge(&self.metrics()?, controller)
    }

    /// Send SIGTERM and wait for the process to end; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- sdc-docker serve log\n{}", self.log());
        }
        // Zones outlive their server by design; they must go before the
        // temporary directory does, or its removal would take runc's state
        // (leaving the zones' cgroups behind) and walk into mounted rootfs.
        remove_zones(&self.dir().join("data"));
    }
}

/// `sdc_docker_controller_leader{controller="NAME"}` in a `/metrics` text.
pub fn leader_gauge(metrics: &str, controller: &str) -> Option<u8> {
    let prefix = format!("sdc_docker_controller_leader{{controller=\"{controller}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Run the real `docker` CLI against `host`, with a config directory of
/// its own so the machine's contexts and credentials play no part.
pub fn docker_at(host: &str, config_dir: &Path, args: &[&str]) -> Ran {
    docker_command(host, config_dir, args)
        .stdin(Stdio::null())
        .output()
        .expect("running the docker CLI (/usr/local/bin/docker or docker on PATH)")
        .into()
}

/// Like [`docker_at`], feeding `input` to the CLI's standard input.
pub fn docker_at_with_stdin(host: &str, config_dir: &Path, args: &[&str], input: &[u8]) -> Ran {
    let mut child = docker_command(host, config_dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the docker CLI (/usr/local/bin/docker or docker on PATH)");
    let mut pipe = child.stdin.take().expect("the CLI's stdin");
    let input = input.to_vec();
    // Written from a thread, so a CLI that answers before reading all of
    // it cannot deadlock the test.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .expect("waiting for the docker CLI");
    let _ = writer.join();
    out.into()
}

/// The docker CLI aimed at `host`, with its own config dir under `config_dir`.
pub fn docker_command(host: &str, config_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(docker_binary());
    command
        .arg("-H")
        .arg(host)
        .args(args)
        .env("DOCKER_CONFIG", config_dir.join("docker-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    command
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpReply {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over TCP, as curl would send it.
pub fn http_tcp(port: u16, method: &str, path: &str) -> Option<HttpReply> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    exchange(stream, method, path)
}

/// One HTTP/1.1 request over a unix socket.
pub fn http_unix(socket: &Path, method: &str, path: &str) -> Option<HttpReply> {
    let stream = UnixStream::connect(socket).ok()?;
    exchange(stream, method, path)
}

/// One HTTP/1.1 request with a YAML (or JSON) body over a unix socket (the
/// admin API's `POST /v1/apply`).
pub fn http_unix_with_body(
    socket: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Option<HttpReply> {
    let stream = UnixStream::connect(socket).ok()?;
    exchange_with_body(stream, method, path, Some(body))
}

fn exchange<S: Read + Write>(stream: S, method: &str, path: &str) -> Option<HttpReply> {
    exchange_with_body(stream, method, path, None)
}

fn exchange_with_body<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<HttpReply> {
    let request = match body {
        None => format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        Some(body) => format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/yaml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    };
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some(HttpReply {
        status,
        headers,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

/// The body of a chunked reply, its chunks joined.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Whether this process runs as root (zones need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Takes down every zone under a server's `data` dir, the server being
/// stopped: zones outlive their server by design, so tests and benches take
/// their own down. Each zone's init is killed (PID 1 of its namespace: every
/// process of the zone goes with it, then its monitor), its monitor is
/// waited for (killed after 10 s), runc forgets it (removing its cgroups)
/// and its rootfs is unmounted.
pub fn remove_zones(data: &Path) {
    let Ok(entries) = std::fs::read_dir(data.join("zones")) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let run = entry.path().join("run");
        if let Ok(pid) = std::fs::read_to_string(run.join("init.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).output();
        }
        if let Ok(pid) = std::fs::read_to_string(run.join("monitor.pid")) {
            let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            // Only while it is still this zone's monitor (pids are reused).
            let ours = || {
                std::fs::read(proc.join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*run.to_string_lossy()))
            };
            while ours() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if ours() {
                let _ = Command::new("kill").args(["-9", pid.trim()]).output();
            }
        }
        // Once the monitor is gone nothing of the zone is left running:
        // runc can remove its state and cgroups.
        let _ = Command::new("runc")
            .arg("--root")
            .arg(data.join("runc"))
            .args(["delete", "--force", &id])
            .output();
        // The killed process may hold the mount a moment longer.
        let rootfs = entry.path().join("rootfs");
        for _ in 0..50 {
            let mounted = std::fs::read_to_string("/proc/self/mounts")
                .map(|m| m.contains(&format!(" {} ", rootfs.display())))
                .unwrap_or(false);
            if !mounted {
                break;
            }
            let _ = Command::new("umount").arg(&rootfs).output();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Run `etcdctl` (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &[String], args: &[&str]) -> Ran {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running etcdctl (Debian's etcd-client)")
        .into()
}
