//! Container start: a Container spec written to sdc-docker until its process
//! runs, side by side with `docker run -d` on the reference Docker Engine
//! (Debian's `docker.io`, dockerd 20.10) and with bare `runc run -d`.
//!
//! A real registry (Debian's `docker-registry`) on loopback gets busybox
//! (`sdc_docker_testkit::busybox::layered`); both engines pull it through
//! their own socket before anything is timed. Then, for
//! `SDC_BENCH_CONTAINERS` containers (default 100), each running
//! `sleep 1000`:
//!
//! - **bare runc, minimal config**: one prepared bundle (the static
//!   busybox, the namespaces our zones get, nothing else), `runc run -d`
//!   one after another (each call timed), then all at once from as many
//!   threads (total time);
//! - **sdc-docker**: a fresh `sdc-docker serve` (embedded store). One after
//!   another, one spec written with the admin API's `POST /v1/apply` over
//!   its unix socket, then `GET /v1/containers/NAME` every 2 ms until
//!   `status.state` is `running`: that time, per container;
//! - **bare runc, our zones' config**: the OCI config the driver wrote for
//!   the first zone (Docker's capabilities, masked paths, device rules,
//!   cgroup mounts, the package's limits; its cgroup path made unique),
//!   each container on a fresh overlay of that zone's image layers
//!   (mounted before its timed run): one `runc run -d` just before each of our
//!   starts from the second on, so both sides see the same machine, then
//!   as many at once. The goal (spec→running within 1.5× of bare runc) is
//!   judged against this one: the same container, with and without us.
//!   With all of ours running, the resident memory of the daemon and of
//!   every `sdc-docker-monitor` (`VmRSS`, and `Pss` from `smaps_rollup`).
//!   Then, on a second fresh server, all the specs in one multi-document
//!   apply, and the time until the list shows every one running;
//! - **dockerd**: a fresh dockerd of its own (socket, data root, exec root,
//!   its containerd), `docker run -d --network none REF sleep 1000` one
//!   after another (each CLI call timed, start to exit); the memory of
//!   dockerd, containerd and every `containerd-shim-runc-v2`; then, on a
//!   second fresh dockerd, as many `docker run -d` from as many threads at
//!   once (total time).
//!
//! `cargo bench --bench zones` prints a Markdown table for
//! docs/performance.md; `bash scripts/bench-zones.sh` installs dockerd
//! and builds the static monitor serve.sh deploys (`SDC_BENCH_MONITOR`)
//! first. Skipped (exit 0) unless run as root with runc and dockerd. Under
//! `cargo test` (no `--bench`): 2 containers, as a smoke test of the bench.
//!
//! Everything started is taken down on the way out, panics included: the
//! runc containers (`runc delete --force`), zone rootfs mounts, dockerd's
//! containers, shims and overlay mounts.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, docker_at};
use sdc_docker_testkit::{Format, Registry, busybox};
use sdc_docker_zones::linux::rootfs;
use serde_json::Value;
use support::{Dockerd, dockerd_binary, env_or, on_path, proc_kib, processes, unmount_under};

/// How long containers may take to run, in all.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Every container's memory limit, the same on all three: 128 MiB, which
/// on our side picks the smallest package, `sample-128M` (with the default
/// 1 GiB, 100 containers do not fit this machine's node).
const MEMORY: u64 = 128 << 20;

/// How long one container may take to run.
const ONE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often our side's status is polled.
const POLL: Duration = Duration::from_millis(2);

/// `runc` on `PATH`, else `/usr/sbin/runc` or `/usr/bin/runc`.
fn runc_binary() -> Option<PathBuf> {
    on_path("runc").or_else(|| {
        ["/usr/sbin/runc", "/usr/bin/runc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

// ---------------------------------------------------------------- processes

/// Resident memory of some processes, KiB.
#[derive(Clone, Copy, Default)]
struct Memory {
    processes: usize,
    rss_kib: u64,
    pss_kib: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, o: Memory) -> Memory {
        Memory {
            processes: self.processes + o.processes,
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
        }
    }
}

/// `VmRSS` and `Pss` (`smaps_rollup`) summed over `pids`.
fn memory(pids: &[u32]) -> Memory {
    pids.iter().fold(Memory::default(), |m, &pid| Memory {
        processes: m.processes + 1,
        rss_kib: m.rss_kib + proc_kib(pid, "status", "VmRSS").unwrap_or(0),
        pss_kib: m.pss_kib + proc_kib(pid, "smaps_rollup", "Pss").unwrap_or(0),
    })
}

// ---------------------------------------------------------------- timing

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Per-container times, sorted.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut times: Vec<Duration>) -> Latencies {
        times.sort();
        Latencies(times)
    }
    fn p50(&self) -> Duration {
        percentile(&self.0, 0.50)
    }
    fn p99(&self) -> Duration {
        percentile(&self.0, 0.99)
    }
    fn max(&self) -> Duration {
        self.0[self.0.len() - 1]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------- bare runc

/// One busybox bundle and a runc root in a temporary directory; every
/// container started in it is force-deleted on drop.
struct RuncBaseline {
    runc: PathBuf,
    dir: tempfile::TempDir,
    /// The OCI config every container gets (its `cgroupsPath`, if any,
    /// made unique per container).
    config: Value,
    /// When not empty, each container gets a fresh overlay of these image
    /// layers as its rootfs (mounted before its timed run), as each zone
    /// does; otherwise the config's own root.
    lower_dirs: Vec<PathBuf>,
    ids: Vec<String>,
}

impl RuncBaseline {
    fn with_config(runc: PathBuf, config: Value) -> RuncBaseline {
        let dir = tempfile::Builder::new()
            .prefix("sdc-bench-runc-")
            .tempdir()
            .expect("temporary directory");
        RuncBaseline {
            runc,
            dir,
            config,
            lower_dirs: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// A minimal bundle: the static busybox, the namespaces our zones get,
    /// the mounts the monitor's tests use, no cgroup path, capabilities,
    /// masked paths or device rules of its own.
    fn minimal(runc: PathBuf) -> RuncBaseline {
        let mut baseline = RuncBaseline::with_config(runc, Value::Null);
        let rootfs = baseline.dir.path().join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs dirs");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("copying /bin/busybox (Debian's busybox-static)");
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
        baseline.config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": ["sleep", "1000"],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "root": { "path": rootfs, "readonly": false },
            "hostname": "bench",
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
                "resources": { "memory": { "limit": MEMORY } },
                "namespaces": [
                    { "type": "mount" }, { "type": "network" }, { "type": "uts" },
                    { "type": "pid" }, { "type": "ipc" }
                ]
            }
        });
        baseline
    }

    /// Writes the bundle of container `id` (not timed).
    fn bundle(&self, id: &str) -> PathBuf {
        let bundle = self.dir.path().join("bundles").join(id);
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        let mut config = self.config.clone();
        if config["linux"].get("cgroupsPath").is_some() {
            config["linux"]["cgroupsPath"] = Value::from(format!("/sdc-bench/{id}"));
        }
        if !self.lower_dirs.is_empty() {
            let [upper, work, rootfs] = ["upper", "work", "rootfs"].map(|d| bundle.join(d));
            for d in [&upper, &work, &rootfs] {
                std::fs::create_dir_all(d).expect("overlay dirs");
            }
            rootfs::mount(&self.lower_dirs, &upper, &work, &rootfs).expect("the overlay rootfs");
            config["root"]["path"] = Value::from(rootfs.display().to_string());
        }
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
        bundle
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.runc);
        command.arg("--root").arg(self.dir.path().join("root"));
        command
    }

    /// `runc run -d ID`, timed start to exit. The container inherits
    /// runc's stdio, so its stderr goes to a file: a pipe would never close.
    fn run(&self, id: &str) -> Duration {
        let bundle = self.bundle(id);
        let errors = self.dir.path().join(format!("{id}.err"));
        let file = std::fs::File::create(&errors).expect("an error file");
        let started = Instant::now();
        let status = self
            .command()
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .expect("running runc");
        let time = started.elapsed();
        assert!(
            status.success(),
            "runc run -d {id}: {}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
        time
    }

    /// Force-delete every container started so far.
    fn delete_all(&mut self) {
        for id in self.ids.drain(..) {
            let _ = Command::new(&self.runc)
                .arg("--root")
                .arg(self.dir.path().join("root"))
                .args(["delete", "--force", &id])
                .output();
            let rootfs = self.dir.path().join("bundles").join(&id).join("rootfs");
            if !self.lower_dirs.is_empty() {
                let _ = rootfs::unmount(&rootfs);
            }
        }
    }
}

impl Drop for RuncBaseline {
    fn drop(&mut self) {
        self.delete_all();
    }
}

struct RuncFigures {
    each: Latencies,
    concurrent: Duration,
}

fn bench_runc(mut baseline: RuncBaseline, n: usize) -> RuncFigures {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-seq-{i}");
        baseline.ids.push(id.clone());
        times.push(baseline.run(&id));
    }
    baseline.delete_all();
    let ids: Vec<String> = (0..n).map(|i| format!("bench-par-{i}")).collect();
    baseline.ids.extend(ids.iter().cloned());
    let started = Instant::now();
    std::thread::scope(|s| {
        for id in &ids {
            let baseline = &baseline;
            s.spawn(move || baseline.run(id));
        }
    });
    let concurrent = started.elapsed();
    RuncFigures {
        each: Latencies::new(times),
        concurrent,
    }
}

// ---------------------------------------------------------------- sdc-docker

/// Stops and removes every zone of a server's data dir when dropped, as the
/// zone tests do (zones outlive their server by design): `runc delete
/// --force` kills the process, the monitor then exits; the rootfs is
/// unmounted. Declared after its [`Server`], so dropped before it.
struct ZoneCleanup(PathBuf);

impl Drop for ZoneCleanup {
    fn drop(&mut self) {
        common::remove_zones(&self.0);
        // Anything still mounted under the server's data dir.
        unmount_under(&self.0);
    }
}

/// One admin API exchange over its unix socket: status and body.
fn admin(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let reply = common::http_unix_with_body(socket, method, path, body)
        .expect("an answer from the admin socket");
    (reply.status, reply.body)
}

fn container_yaml(name: &str, image: &str) -> String {
    format!(
        "kind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  cmd: [\"sleep\", \"1000\"]\n  memory: {MEMORY}\n  desiredState: running\n"
    )
}

fn apply(server: &Server, yaml: &str) {
    let (status, body) = admin(&server.admin_socket, "POST", "/v1/apply", yaml);
    assert_eq!(status, 200, "apply: {body}");
}

/// `status.state` of one container; panics on a status error.
fn state(server: &Server, name: &str) -> Option<String> {
    let (status, body) = admin(
        &server.admin_socket,
        "GET",
        &format!("/v1/containers/{name}"),
        "",
    );
    assert_eq!(status, 200, "GET {name}: {body}");
    let object: Value = serde_json::from_str(&body).expect("a JSON object");
    check_error(&object);
    object["status"]["state"].as_str().map(str::to_owned)
}

fn check_error(object: &Value) {
    if let Some(error) = object["status"]["error"].as_str().filter(|e| !e.is_empty()) {
        panic!(
            "container {} failed: {error}",
            object["metadata"]["name"].as_str().unwrap_or("?")
        );
    }
}

/// How many containers the list shows running.
fn running_count(server: &Server) -> usize {
    let (status, body) = admin(&server.admin_socket, "GET", "/v1/containers", "");
    assert_eq!(status, 200, "GET /v1/containers: {body}");
    let list: Value = serde_json::from_str(&body).expect("a JSON list");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().for_each(check_error);
    items
        .iter()
        .filter(|o| o["status"]["state"] == "running")
        .count()
}

/// A fresh server with `reference` pulled through its unix socket.
/// A fresh server with `reference` pulled, running the monitor binary
/// `SDC_BENCH_MONITOR` names (bench-zones.sh: the static one serve.sh
/// deploys), else the one beside the server's binary.
async fn server_with(reference: &str) -> Server {
    let server = match std::env::var("SDC_BENCH_MONITOR") {
        Ok(monitor) if !monitor.is_empty() => {
            Server::start_with("embedded", &["--monitor", &monitor]).await
        }
        _ => Server::start("embedded").await,
    };
    let host = format!("unix://{}", server.docker_socket.display());
    let pulled = docker_at(&host, server.dir(), &["pull", "-q", reference]);
    assert!(pulled.ok, "pull through sdc-docker: {pulled:?}");
    server
}

struct Figures {
    each: Latencies,
    concurrent: Duration,
    daemon: Memory,
    per_container: Memory,
}

/// A bare-runc baseline on the OCI config the driver wrote for one of the
/// server's zones, each container on a fresh overlay of that zone's image
/// layers.
fn zone_baseline(server: &Server, runc: &Path) -> RuncBaseline {
    let zones = server.dir().join("data/zones");
    let entries = std::fs::read_dir(&zones).expect("the zones directory");
    for entry in entries.flatten() {
        let (Ok(config), Ok(spec)) = (
            std::fs::read(entry.path().join("bundle/config.json")),
            std::fs::read(entry.path().join("spec.json")),
        ) else {
            continue;
        };
        let config = serde_json::from_slice(&config).expect("a zone's config.json");
        let spec: Value = serde_json::from_slice(&spec).expect("a zone's spec.json");
        let mut baseline = RuncBaseline::with_config(runc.to_path_buf(), config);
        baseline.lower_dirs = spec["image"]["lower_dirs"]
            .as_array()
            .expect("the zone's image layers")
            .iter()
            .filter_map(|d| d.as_str().map(PathBuf::from))
            .collect();
        return baseline;
    }
    panic!("no zone bundle under {}", zones.display());
}

/// Our figures, and bare runc's on the OCI config our zones get (measured
/// while the server's zones run, their rootfs and files in place).
async fn bench_ours(reference: &str, n: usize, runc: &Path) -> (Figures, RuncFigures) {
    let (each, daemon, per_container, same_config) = {
        let server = server_with(reference).await;
        let _cleanup = ZoneCleanup(server.dir().join("data"));
        let mut times = Vec::with_capacity(n);
        // Bare runc on our zones' own config, one run before each of ours
        // from the second on, so both see the same machine (the page
        // cache, the cgroup tree, the zones already running).
        let mut same: Option<RuncBaseline> = None;
        let mut same_times = Vec::with_capacity(n);
        let ticks_before = support::cpu_ticks(server.pid()).unwrap_or(0);
        for i in 0..n {
            if i == 1 {
                same = Some(zone_baseline(&server, runc));
            }
            if let Some(same) = &mut same {
                let id = format!("bench-same-seq-{i}");
                same.ids.push(id.clone());
                same_times.push(same.run(&id));
            }
            let name = format!("seq{i}");
            let yaml = container_yaml(&name, reference);
            let started = Instant::now();
            apply(&server, &yaml);
            while state(&server, &name).as_deref() != Some("running") {
                assert!(
                    started.elapsed() < ONE_TIMEOUT,
                    "{name} not running in {ONE_TIMEOUT:?}"
                );
                std::thread::sleep(POLL);
            }
            times.push(started.elapsed());
        }
        eprintln!(
            "sdc-docker, one at a time, in order (ms): {:?}",
            times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
        );
        let ticks = support::cpu_ticks(server.pid()).unwrap_or(0) - ticks_before;
        eprintln!(
            "daemon CPU per start (its own threads, runc's time not counted): {:.1} ms",
            ticks as f64 * 10.0 / n as f64
        );
        eprintln!(
            "runc on our zones' config, in between (ms): {:?}",
            same_times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
        );
        if let Ok(path) = std::env::var("SDC_BENCH_SERVER_LOG") {
            let _ = std::fs::write(path, server.log());
        }
        let daemon = memory(&[server.pid()]);
        let monitors = memory(&processes("sdc-docker-monitor", server.dir()));
        assert_eq!(monitors.processes, n, "one monitor per container");
        // Then as many at once, on the same config (the first zone's
        // rootfs and files; the cgroup path made unique per container).
        let mut same = same.unwrap_or_else(|| zone_baseline(&server, runc));
        same.delete_all();
        let ids: Vec<String> = (0..n).map(|i| format!("bench-same-par-{i}")).collect();
        same.ids.extend(ids.iter().cloned());
        let started = Instant::now();
        std::thread::scope(|s| {
            for id in &ids {
                let same = &same;
                s.spawn(move || same.run(id));
            }
        });
        let same_config = RuncFigures {
            // With one container there is nothing in between: time one.
            each: Latencies::new(if same_times.is_empty() {
                vec![started.elapsed()]
            } else {
                same_times
            }),
            concurrent: started.elapsed(),
        };
        drop(same);
        (Latencies::new(times), daemon, monitors, same_config)
    };
    let concurrent = {
        let server = server_with(reference).await;
        let _cleanup = ZoneCleanup(server.dir().join("data"));
        let all: Vec<String> = (0..n)
            .map(|i| container_yaml(&format!("par{i}"), reference))
            .collect();
        let all = all.join("---\n");
        let started = Instant::now();
        apply(&server, &all);
        while running_count(&server) < n {
            assert!(
                started.elapsed() < RUN_TIMEOUT,
                "not all running in {RUN_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        started.elapsed()
    };
    let figures = Figures {
        each,
        concurrent,
        daemon,
        per_container,
    };
    (figures, same_config)
}

// ---------------------------------------------------------------- dockerd

/// `docker run -d --network none REF sleep 1000` on `dockerd`, timed start
/// to exit.
fn docker_run(dockerd: &Dockerd, name: &str, reference: &str) -> Duration {
    let started = Instant::now();
    let ran = dockerd.docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        &MEMORY.to_string(),
        "--name",
        name,
        reference,
        "sleep",
        "1000",
    ]);
    let time = started.elapsed();
    assert!(ran.ok, "docker run {name}: {ran:?}");
    time
}

async fn bench_dockerd(binary: &Path, reference: &str, n: usize) -> Figures {
    let (each, daemon, per_container) = {
        let dockerd = Dockerd::with(binary, reference).await;
        let times: Vec<Duration> = (0..n)
            .map(|i| docker_run(&dockerd, &format!("seq{i}"), reference))
            .collect();
        let daemon = memory(&dockerd.daemon_pids());
        let shims = memory(&dockerd.shims());
        assert_eq!(shims.processes, n, "one shim per container");
        (Latencies::new(times), daemon, shims)
    };
    let concurrent = {
        let dockerd = Dockerd::with(binary, reference).await;
        let started = Instant::now();
        std::thread::scope(|s| {
            for i in 0..n {
                let dockerd = &dockerd;
                s.spawn(move || docker_run(dockerd, &format!("par{i}"), reference));
            }
        });
        started.elapsed()
    };
    Figures {
        each,
        concurrent,
        daemon,
        per_container,
    }
}

// ---------------------------------------------------------------- main

/// One figure of a [`Memory`].
type MemoryField = fn(&Memory) -> u64;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let Some(dockerd) = dockerd_binary() else {
        println!(
            "zones bench skipped: dockerd is not installed (bash scripts/bench-zones.sh installs Debian's docker.io)"
        );
        return;
    };
    let Some(runc) = runc_binary() else {
        println!("zones bench skipped: runc is not installed (scripts/install-deps.sh)");
        return;
    };
    if !common::is_root() {
        println!("zones bench skipped: containers need root");
        return;
    }
    if !Path::new("/bin/busybox").is_file() {
        println!("zones bench skipped: /bin/busybox (busybox-static) is missing");
        return;
    }
    let n = if benching {
        env_or("SDC_BENCH_CONTAINERS", 100).max(1)
    } else {
        2
    };

    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::layered(Format::Docker),
        )
        .await;
    let reference = format!("{}/library/busybox:latest", registry.host());

    let bare = bench_runc(RuncBaseline::minimal(runc.clone()), n);
    eprintln!(
        "bare runc, minimal config: p50 {:.1} ms, p99 {:.1} ms, {n} concurrent {:.2} s",
        ms(bare.each.p50()),
        ms(bare.each.p99()),
        bare.concurrent.as_secs_f64()
    );
    let (ours, same) = bench_ours(&reference, n, &runc).await;
    eprintln!(
        "bare runc, our zones' config: p50 {:.1} ms, p99 {:.1} ms, {n} concurrent {:.2} s",
        ms(same.each.p50()),
        ms(same.each.p99()),
        same.concurrent.as_secs_f64()
    );
    eprintln!(
        "sdc-docker: p50 {:.1} ms, p99 {:.1} ms (max {:.1}), {n} concurrent {:.2} s",
        ms(ours.each.p50()),
        ms(ours.each.p99()),
        ms(ours.each.max()),
        ours.concurrent.as_secs_f64()
    );
    let theirs = bench_dockerd(&dockerd, &reference, n).await;
    eprintln!(
        "dockerd: p50 {:.1} ms, p99 {:.1} ms (max {:.1}), {n} concurrent {:.2} s",
        ms(theirs.each.p50()),
        ms(theirs.each.p99()),
        ms(theirs.each.max()),
        theirs.concurrent.as_secs_f64()
    );

    println!(
        "| {n} containers `sleep 1000` (busybox) | `runc run -d`, minimal config | `runc run -d`, our zones' config | sdc-docker | dockerd 20.10 | sdc-docker / runc, same config | sdc-docker / dockerd |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (what, f) in [
        ("p50", Latencies::p50 as fn(&Latencies) -> Duration),
        ("p99", Latencies::p99),
        ("max", Latencies::max),
    ] {
        println!(
            "| one at a time, {what} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
            ms(f(&bare.each)),
            ms(f(&same.each)),
            ms(f(&ours.each)),
            ms(f(&theirs.each)),
            ratio(ms(f(&ours.each)), ms(f(&same.each))),
            ratio(ms(f(&ours.each)), ms(f(&theirs.each)))
        );
    }
    println!(
        "| {n} at once, until all run | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {} | {} |",
        bare.concurrent.as_secs_f64(),
        same.concurrent.as_secs_f64(),
        ours.concurrent.as_secs_f64(),
        theirs.concurrent.as_secs_f64(),
        ratio(ours.concurrent.as_secs_f64(), same.concurrent.as_secs_f64()),
        ratio(
            ours.concurrent.as_secs_f64(),
            theirs.concurrent.as_secs_f64()
        )
    );
    println!();
    println!("| {n} containers, memory | sdc-docker | dockerd 20.10 | sdc-docker / dockerd |");
    println!("| --- | ---: | ---: | ---: |");
    let rows: [(&str, MemoryField); 2] = [("VmRSS", |m| m.rss_kib), ("PSS", |m| m.pss_kib)];
    for (what, field) in rows {
        println!(
            "| per-container processes, {what} ({} monitors / {} shims) | {:.1} MiB | {:.1} MiB | {} |",
            ours.per_container.processes,
            theirs.per_container.processes,
            mib(field(&ours.per_container)),
            mib(field(&theirs.per_container)),
            ratio(
                field(&ours.per_container) as f64,
                field(&theirs.per_container) as f64
            )
        );
        println!(
            "| daemons, {what} (sdc-docker / dockerd + containerd) | {:.1} MiB | {:.1} MiB | {} |",
            mib(field(&ours.daemon)),
            mib(field(&theirs.daemon)),
            ratio(field(&ours.daemon) as f64, field(&theirs.daemon) as f64)
        );
        let a = ours.daemon + ours.per_container;
        let b = theirs.daemon + theirs.per_container;
        println!(
            "| all, {what} | {:.1} MiB | {:.1} MiB | {} |",
            mib(field(&a)),
            mib(field(&b)),
            ratio(field(&a) as f64, field(&b) as f64)
        );
    }
    println!();
    println!(
        "goal spec→running p50 ≤ 1.5× bare runc on the same config: {:.2}× ({}; {:.2}× runc on a minimal config); goal monitors ≤ 0.25× shims: VmRSS {:.2}×, PSS {:.2}× ({})",
        ms(ours.each.p50()) / ms(same.each.p50()),
        if ms(ours.each.p50()) <= 1.5 * ms(same.each.p50()) {
            "met"
        } else {
            "not met"
        },
        ms(ours.each.p50()) / ms(bare.each.p50()),
        ours.per_container.rss_kib as f64 / theirs.per_container.rss_kib as f64,
        ours.per_container.pss_kib as f64 / theirs.per_container.pss_kib as f64,
        if ours.per_container.pss_kib * 4 <= theirs.per_container.pss_kib
            && ours.per_container.rss_kib * 4 <= theirs.per_container.rss_kib
        {
            "met"
        } else {
            "not met on both"
        }
    );
}
