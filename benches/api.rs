//! The container API through the stock `docker` CLI: sdc-docker side by
//! side with the reference Docker Engine (Debian's `docker.io`, dockerd
//! 20.10), both running at once on this machine.
//!
//! A real registry (Debian's `docker-registry`) on loopback gets busybox
//! (`sdc_docker_testkit::busybox::layered`); a fresh `sdc-docker serve`
//! (embedded store) and a fresh dockerd of its own (socket, data root, exec
//! root, its containerd) each pull it through their unix socket before
//! anything is timed. dockerd's containers get `--network none` (a network
//! namespace with only `lo`, which is what each of our containers gets; we
//! refuse `--network none` itself). Then, in order:
//!
//! 1. **`docker run --rm REF true`**, `SDC_BENCH_RUNS` times on each
//!    (default 20), the two engines interleaved (ours first on even rounds,
//!    dockerd's on odd ones) after one warm-up run each that is not
//!    counted: the CLI's wall time, start to exit (the container has run
//!    and is removed then);
//! 2. **`docker run -d --name N REF sleep 1000`**, as many, interleaved the
//!    same way: the CLI call, start to exit (it exits once the container is
//!    started); then all of them removed (`docker rm -f`);
//! 3. **creates, raw API**: `SDC_BENCH_CONTAINERS` (default 1,000)
//!    `POST /v1.41/containers/create?name=…` (`{"Image": REF, "Cmd":
//!    ["true"]}`) from `SDC_BENCH_CLIENTS` (default 16) concurrent clients,
//!    each a keep-alive HTTP/1.1 connection on the unix socket (hyper),
//!    taking the next name as it finishes one: containers per second, and
//!    each request's latency. One engine after the other, not interleaved;
//! 4. once the daemon's CPU is quiet again (under 5 % for half a second,
//!    waited for up to a minute; the time it took is printed), with those
//!    containers stored: **`docker ps -a`**, **`docker ps -a --format
//!    '{{.ID}}'`** and the raw `GET /v1.41/containers/json?all=1`,
//!    `SDC_BENCH_PS` times each (default 10), interleaved; each answer is
//!    checked to list every container. And the daemon's `VmRSS` (for
//!    dockerd, its own and with its containerd), against the same figure
//!    taken before the creates;
//! 5. **creates, CLI**: `SDC_BENCH_CLI_CREATES` (default 200) more `docker
//!    create --name N REF true`, from as many parallel CLI processes as
//!    there are clients in 3: containers per second, the CLI's own start
//!    included (each `docker` process pings and negotiates the version
//!    first).
//!
//! Also the floor of any CLI call: `docker version` (one process, a ping
//! and `GET /version`), `SDC_BENCH_PS` times, interleaved.
//!
//! `cargo bench --bench api` prints a Markdown table for
//! docs/performance.md; `bash scripts/bench-api.sh` installs dockerd and
//! builds the static monitor serve.sh deploys (`SDC_BENCH_MONITOR`) first.
//! `SDC_BENCH_SERVER_LOG=FILE` keeps our server's log (its create and
//! start timings); `SDC_BENCH_LIST_DIR=DIR` keeps one answer of each to
//! `GET /containers/json?all=1` (`DIR/sdc-docker.json`, `DIR/dockerd.json`),
//! whose sizes the table shows. Skipped (exit 0) unless run as root with dockerd
//! installed. Under `cargo test` (no `--bench`): a few of each, as a smoke
//! test of the bench.
//!
//! Everything started is taken down on the way out, panics included:
//! dockerd's containers, shims and mounts (`Dockerd`'s drop), our server
//! (stopped first), then its zones and mounts.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Ran, Server, docker_at};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sdc_docker_testkit::{Format, Registry, busybox};
use serde_json::Value;
use support::{Dockerd, dockerd_binary, env_or, proc_kib, unmount_under};

/// The API version both engines speak (dockerd 20.10's newest).
const API: &str = "/v1.41";

/// How long the daemon's CPU may stay busy after the creates.
const QUIET_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- figures

/// Times of one operation, sorted.
struct Times(Vec<Duration>);

impl Times {
    fn new(mut times: Vec<Duration>) -> Times {
        assert!(!times.is_empty(), "no times");
        times.sort();
        Times(times)
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        let rank = ((p * self.0.len() as f64).ceil() as usize).max(1);
        self.0[rank.min(self.0.len()) - 1]
    }

    fn p50(&self) -> Duration {
        self.percentile(0.50)
    }

    fn p90(&self) -> Duration {
        self.percentile(0.90)
    }

    fn list(&self) -> Vec<u128> {
        self.0.iter().map(|t| t.as_millis()).collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Sum of `VmRSS` over `pids`, KiB.
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|&pid| proc_kib(pid, "status", "VmRSS").unwrap_or(0))
        .sum()
}

/// CPU ticks (1/100 s) `pids` used so far.
fn ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|&pid| support::cpu_ticks(pid).unwrap_or(0))
        .sum()
}

/// Waits until `pids` use under 5 % of one CPU over half a second (work
/// the daemon does after answering: controllers, writes behind); returns
/// how long that took, or `None` if it never did within [`QUIET_TIMEOUT`].
fn wait_quiet(pids: &[u32]) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < QUIET_TIMEOUT {
        let before = ticks(pids);
        std::thread::sleep(Duration::from_millis(500));
        if ticks(pids) - before < 3 {
            return Some(started.elapsed());
        }
    }
    None
}

// ---------------------------------------------------------------- engines

/// One engine as the CLI and a raw client see it.
struct Engine {
    name: &'static str,
    /// `unix://…`, for the CLI.
    host: String,
    /// The socket, for raw HTTP.
    socket: PathBuf,
    /// Where the CLI's config dir goes.
    config: PathBuf,
    /// `HostConfig.NetworkMode` of every container.
    network_mode: &'static str,
}

impl Engine {
    fn docker(&self, args: &[&str]) -> Ran {
        docker_at(&self.host, &self.config, args)
    }

    /// `docker ARGS` with the engine's network option after the
    /// subcommand (`run`, `create`), checked and timed start to exit.
    fn timed(&self, subcommand: &str, args: &[&str]) -> Duration {
        let mut all = vec![subcommand];
        if self.network_mode != "default" {
            all.extend(["--network", self.network_mode]);
        }
        all.extend(args);
        let started = Instant::now();
        let ran = self.docker(&all);
        let time = started.elapsed();
        assert!(ran.ok, "{}: docker {}: {ran:?}", self.name, all.join(" "));
        time
    }

    /// `docker rm -f` of `names`, fifty at a time.
    fn remove(&self, names: &[String]) {
        for chunk in names.chunks(50) {
            let mut args = vec!["rm", "-f"];
            args.extend(chunk.iter().map(String::as_str));
            let ran = self.docker(&args);
            assert!(ran.ok, "{}: docker rm -f: {ran:?}", self.name);
        }
    }
}

/// Our server, then the cleanup of its zones: fields drop in order, so the
/// server is stopped before its zones are taken down (zones outlive their
/// server by design) and no controller brings one back meanwhile.
struct Ours {
    server: Server,
    _zones: ZoneCleanup,
}

/// Takes down every zone of a server's data dir, and anything still
/// mounted under it, when dropped.
struct ZoneCleanup(PathBuf);

impl Drop for ZoneCleanup {
    fn drop(&mut self) {
        common::remove_zones(&self.0);
        unmount_under(&self.0);
    }
}

/// A fresh server with `reference` pulled, running the monitor binary
/// `SDC_BENCH_MONITOR` names (bench-api.sh: the static one serve.sh
/// deploys), else the one beside the server's binary.
async fn ours_with(reference: &str) -> Ours {
    let server = match std::env::var("SDC_BENCH_MONITOR") {
        Ok(monitor) if !monitor.is_empty() => {
            Server::start_with("embedded", &["--monitor", &monitor]).await
        }
        _ => Server::start("embedded").await,
    };
    let zones = ZoneCleanup(server.dir().join("data"));
    let host = format!("unix://{}", server.docker_socket.display());
    let pulled = docker_at(&host, server.dir(), &["pull", "-q", reference]);
    assert!(pulled.ok, "pull through sdc-docker: {pulled:?}");
    Ours {
        server,
        _zones: zones,
    }
}

// ---------------------------------------------------------------- raw API

/// One keep-alive HTTP/1.1 connection to an engine's unix socket.
async fn connect(socket: &Path) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connecting to the engine's socket");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// One request on `sender`: status and body.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Bytes) {
    sender.ready().await.expect("the connection to stay open");
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "docker");
    let body = match body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let request = request.body(Full::new(body)).expect("a request");
    let response = sender
        .send_request(request)
        .await
        .expect("an answer from the engine");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    (status, body)
}

/// `n` creates named `PREFIXi` from `clients` concurrent connections: the
/// total time and each request's latency.
async fn api_creates(
    engine: &Engine,
    reference: &str,
    prefix: &str,
    n: usize,
    clients: usize,
) -> (Duration, Times) {
    let body = Arc::new(serde_json::json!({
        "Image": reference,
        "Cmd": ["true"],
        "HostConfig": { "NetworkMode": engine.network_mode },
    }));
    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        senders.push(connect(&engine.socket).await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let (next, body, prefix, name) =
                (next.clone(), body.clone(), prefix.to_owned(), engine.name);
            tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return times;
                    }
                    let path = format!("{API}/containers/create?name={prefix}{i}");
                    let sent = Instant::now();
                    let (status, reply) = exchange(&mut sender, "POST", &path, Some(&body)).await;
                    times.push(sent.elapsed());
                    assert_eq!(
                        status,
                        201,
                        "{name}: create {prefix}{i}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    for task in tasks {
        times.extend(task.await.expect("a create client"));
    }
    (started.elapsed(), Times::new(times))
}

/// `GET /containers/json?all=1`, timed, checked to list `expected`: the
/// time and the answer.
async fn api_list(engine: &Engine, expected: usize) -> (Duration, Bytes) {
    let mut sender = connect(&engine.socket).await;
    let started = Instant::now();
    let (status, body) = exchange(
        &mut sender,
        "GET",
        &format!("{API}/containers/json?all=1"),
        None,
    )
    .await;
    let time = started.elapsed();
    assert_eq!(status, 200, "{}: list", engine.name);
    let list: Value = serde_json::from_slice(&body).expect("a JSON list");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(expected),
        "{}: containers listed",
        engine.name
    );
    (time, body)
}

// ---------------------------------------------------------------- CLI

/// `n` `docker create --name PREFIXi REF true` from `clients` parallel
/// CLI processes at a time: the total time.
fn cli_creates(
    engine: &Engine,
    reference: &str,
    prefix: &str,
    n: usize,
    clients: usize,
) -> Duration {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let name = format!("{prefix}{i}");
                    engine.timed("create", &["--name", &name, reference, "true"]);
                }
            });
        }
    });
    started.elapsed()
}

/// `docker ps -a [--format …]`, timed, checked to list `expected`.
fn ps(engine: &Engine, ids_only: bool, expected: usize) -> Duration {
    let args: &[&str] = if ids_only {
        &["ps", "-a", "--format", "{{.ID}}"]
    } else {
        &["ps", "-a"]
    };
    let started = Instant::now();
    let ran = engine.docker(args);
    let time = started.elapsed();
    assert!(ran.ok, "{}: docker ps -a: {ran:?}", engine.name);
    let header = usize::from(!ids_only);
    assert_eq!(
        ran.stdout.lines().count(),
        expected + header,
        "{}: lines of docker {}",
        engine.name,
        args.join(" ")
    );
    time
}

/// Runs `each` for both engines `rounds` times, ours first on even rounds:
/// ours' times, then dockerd's.
fn interleaved(
    ours: &Engine,
    theirs: &Engine,
    rounds: usize,
    mut each: impl FnMut(&Engine, usize) -> Duration,
) -> (Times, Times) {
    let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for i in 0..rounds {
        if i % 2 == 0 {
            a.push(each(ours, i));
            b.push(each(theirs, i));
        } else {
            b.push(each(theirs, i));
            a.push(each(ours, i));
        }
    }
    (Times::new(a), Times::new(b))
}

// ---------------------------------------------------------------- main

/// What one engine's creates and storage gave.
struct Stored {
    api_total: Duration,
    api_each: Times,
    quiet_after: Option<Duration>,
    rss_idle_kib: u64,
    rss_stored_kib: u64,
    cli_total: Duration,
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let Some(dockerd_path) = dockerd_binary() else {
        println!(
            "api bench skipped: dockerd is not installed (bash scripts/bench-api.sh installs Debian's docker.io)"
        );
        return;
    };
    if !common::is_root() {
        println!("api bench skipped: containers need root");
        return;
    }
    let (runs, n, clients, cli_n, ps_runs) = if benching {
        (
            env_or("SDC_BENCH_RUNS", 20).max(1),
            env_or("SDC_BENCH_CONTAINERS", 1000).max(1),
            env_or("SDC_BENCH_CLIENTS", 16).max(1),
            env_or("SDC_BENCH_CLI_CREATES", 200),
            env_or("SDC_BENCH_PS", 10).max(1),
        )
    } else {
        (2, 20, 4, 8, 2)
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

    let dockerd = Dockerd::with(&dockerd_path, &reference).await;
    let sdc = ours_with(&reference).await;
    let ours = Engine {
        name: "sdc-docker",
        host: format!("unix://{}", sdc.server.docker_socket.display()),
        socket: sdc.server.docker_socket.clone(),
        config: sdc.server.dir().to_path_buf(),
        network_mode: "default",
    };
    let theirs = Engine {
        name: "dockerd",
        host: dockerd.host(),
        socket: dockerd.socket(),
        config: dockerd.dir().to_path_buf(),
        network_mode: "none",
    };
    let our_pids = [sdc.server.pid()];
    let their_pids = dockerd.daemon_pids();

    // The floor of any CLI call.
    let (version_ours, version_theirs) = interleaved(&ours, &theirs, ps_runs, |e, _| {
        let started = Instant::now();
        let ran = e.docker(&["version"]);
        assert!(ran.ok, "{}: docker version: {ran:?}", e.name);
        started.elapsed()
    });

    // 1. docker run --rm, after one warm-up run each.
    for e in [&ours, &theirs] {
        e.timed("run", &["--rm", &reference, "true"]);
    }
    let (rm_ours, rm_theirs) = interleaved(&ours, &theirs, runs, |e, _| {
        e.timed("run", &["--rm", &reference, "true"])
    });
    eprintln!(
        "docker run --rm, in order of size (ms): sdc-docker {:?}; dockerd {:?}",
        rm_ours.list(),
        rm_theirs.list()
    );

    // 2. docker run -d, then all removed.
    let names: Vec<String> = (0..runs).map(|i| format!("bench-d{i}")).collect();
    let (d_ours, d_theirs) = interleaved(&ours, &theirs, runs, |e, i| {
        e.timed(
            "run",
            &["-d", "--name", &names[i], &reference, "sleep", "1000"],
        )
    });
    eprintln!(
        "docker run -d, in order of size (ms): sdc-docker {:?}; dockerd {:?}",
        d_ours.list(),
        d_theirs.list()
    );
    ours.remove(&names);
    theirs.remove(&names);

    // 3.–5. Creates, the list with them stored, memory, CLI creates.
    let mut stored = Vec::new();
    for (e, pids) in [(&ours, &our_pids[..]), (&theirs, &their_pids[..])] {
        let rss_idle_kib = rss_kib(pids);
        let (api_total, api_each) = api_creates(e, &reference, "bench-c", n, clients).await;
        eprintln!(
            "{}: {n} creates from {clients} API clients in {:.2} s ({:.0}/s), each p50 {:.1} ms p90 {:.1} ms max {:.1} ms",
            e.name,
            api_total.as_secs_f64(),
            per_second(n, api_total),
            ms(api_each.p50()),
            ms(api_each.p90()),
            ms(api_each.percentile(1.0))
        );
        let quiet_after = wait_quiet(pids);
        eprintln!("{}: CPU quiet again after {quiet_after:?}", e.name);
        let rss_stored_kib = rss_kib(pids);
        stored.push(Stored {
            api_total,
            api_each,
            quiet_after,
            rss_idle_kib,
            rss_stored_kib,
            cli_total: Duration::ZERO,
        });
    }
    let (ps_ours, ps_theirs) = interleaved(&ours, &theirs, ps_runs, |e, _| ps(e, false, n));
    let (ids_ours, ids_theirs) = interleaved(&ours, &theirs, ps_runs, |e, _| ps(e, true, n));
    let (mut raw_ours, mut raw_theirs) = (Vec::new(), Vec::new());
    let (mut list_ours, mut list_theirs) = (Bytes::new(), Bytes::new());
    for i in 0..ps_runs {
        let order = if i % 2 == 0 {
            [
                (&ours, &mut raw_ours, &mut list_ours),
                (&theirs, &mut raw_theirs, &mut list_theirs),
            ]
        } else {
            [
                (&theirs, &mut raw_theirs, &mut list_theirs),
                (&ours, &mut raw_ours, &mut list_ours),
            ]
        };
        for (e, times, list) in order {
            let (time, body) = api_list(e, n).await;
            times.push(time);
            *list = body;
        }
    }
    let (raw_ours, raw_theirs) = (Times::new(raw_ours), Times::new(raw_theirs));
    if let Ok(dir) = std::env::var("SDC_BENCH_LIST_DIR") {
        for (e, list) in [(&ours, &list_ours), (&theirs, &list_theirs)] {
            let _ = std::fs::write(Path::new(&dir).join(format!("{}.json", e.name)), list);
        }
    }
    let dockerd_alone_kib = rss_kib(&[dockerd.pid()]);
    if cli_n > 0 {
        for (i, e) in [&ours, &theirs].into_iter().enumerate() {
            stored[i].cli_total = cli_creates(e, &reference, "bench-cli", cli_n, clients);
            eprintln!(
                "{}: {cli_n} creates from {clients} parallel CLIs in {:.2} s ({:.0}/s)",
                e.name,
                stored[i].cli_total.as_secs_f64(),
                per_second(cli_n, stored[i].cli_total)
            );
        }
    }
    if let Ok(path) = std::env::var("SDC_BENCH_SERVER_LOG") {
        let _ = std::fs::write(path, sdc.server.log());
    }

    // The table.
    let ratio = |a: f64, b: f64| format!("{:.2}×", a / b);
    println!(
        "| container API, docker CLI 28 | sdc-docker | dockerd 20.10 | sdc-docker / dockerd |"
    );
    println!("| --- | ---: | ---: | ---: |");
    let timed_rows: [(String, &Times, &Times); 5] = [
        (
            "`docker version` (the CLI's floor)".into(),
            &version_ours,
            &version_theirs,
        ),
        (
            format!("`docker run --rm REF true` ({runs} runs)"),
            &rm_ours,
            &rm_theirs,
        ),
        (
            format!("`docker run -d REF sleep 1000` ({runs} runs)"),
            &d_ours,
            &d_theirs,
        ),
        (
            format!("`docker ps -a`, {n} containers ({ps_runs} calls)"),
            &ps_ours,
            &ps_theirs,
        ),
        (
            format!("`docker ps -a --format '{{{{.ID}}}}'`, {n} containers"),
            &ids_ours,
            &ids_theirs,
        ),
    ];
    for (what, a, b) in timed_rows
        .iter()
        .map(|(w, a, b)| (w.as_str(), *a, *b))
        .chain([(
            "`GET /containers/json?all=1` (raw API)",
            &raw_ours,
            &raw_theirs,
        )])
    {
        for (p, f) in [
            ("median", Times::p50 as fn(&Times) -> Duration),
            ("p90", Times::p90),
        ] {
            println!(
                "| {what}, {p} | {:.1} ms | {:.1} ms | {} |",
                ms(f(a)),
                ms(f(b)),
                ratio(ms(f(a)), ms(f(b)))
            );
        }
    }
    println!(
        "| `GET /containers/json?all=1`, answer size | {:.0} KiB | {:.0} KiB | {} |",
        list_ours.len() as f64 / 1024.0,
        list_theirs.len() as f64 / 1024.0,
        ratio(list_ours.len() as f64, list_theirs.len() as f64)
    );
    let (a, b) = (&stored[0], &stored[1]);
    println!(
        "| {n} creates, {clients} raw API clients | {:.0} /s | {:.0} /s | {} |",
        per_second(n, a.api_total),
        per_second(n, b.api_total),
        ratio(per_second(n, a.api_total), per_second(n, b.api_total))
    );
    for (p, f) in [
        ("median", Times::p50 as fn(&Times) -> Duration),
        ("p90", Times::p90),
    ] {
        println!(
            "| one create among {clients}, {p} | {:.1} ms | {:.1} ms | {} |",
            ms(f(&a.api_each)),
            ms(f(&b.api_each)),
            ratio(ms(f(&a.api_each)), ms(f(&b.api_each)))
        );
    }
    if cli_n > 0 {
        println!(
            "| {cli_n} more creates, {clients} parallel `docker create` | {:.0} /s | {:.0} /s | {} |",
            per_second(cli_n, a.cli_total),
            per_second(cli_n, b.cli_total),
            ratio(
                per_second(cli_n, a.cli_total),
                per_second(cli_n, b.cli_total)
            )
        );
    }
    let quiet = |q: Option<Duration>| match q {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!("> {} s", QUIET_TIMEOUT.as_secs()),
    };
    println!(
        "| CPU quiet again after the creates | {} | {} | |",
        quiet(a.quiet_after),
        quiet(b.quiet_after)
    );
    println!(
        "| daemon VmRSS, before the creates (dockerd + containerd) | {:.1} MiB | {:.1} MiB | {} |",
        mib(a.rss_idle_kib),
        mib(b.rss_idle_kib),
        ratio(a.rss_idle_kib as f64, b.rss_idle_kib as f64)
    );
    println!(
        "| daemon VmRSS, {n} containers stored (dockerd + containerd) | {:.1} MiB | {:.1} MiB | {} |",
        mib(a.rss_stored_kib),
        mib(b.rss_stored_kib),
        ratio(a.rss_stored_kib as f64, b.rss_stored_kib as f64)
    );
    println!(
        "| daemon VmRSS, {n} containers stored (dockerd alone) | {:.1} MiB | {:.1} MiB | {} |",
        mib(a.rss_stored_kib),
        mib(dockerd_alone_kib),
        ratio(a.rss_stored_kib as f64, dockerd_alone_kib as f64)
    );
    println!();
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let run_rm = ms(rm_ours.p50()) / ms(rm_theirs.p50());
    let run_d = ms(d_ours.p50()) / ms(d_theirs.p50());
    let ps_ratio = ms(ps_ours.p50()) / ms(ps_theirs.p50());
    let create = per_second(n, a.api_total) / per_second(n, b.api_total);
    println!(
        "goals: run ≤ 0.8× dockerd: --rm {run_rm:.2}× ({}), -d {run_d:.2}× ({}); ps -a ≤ 0.5×: {ps_ratio:.2}× ({}); create throughput ≥ 2×: {create:.2}× ({})",
        verdict(run_rm <= 0.8),
        verdict(run_d <= 0.8),
        verdict(ps_ratio <= 0.5),
        verdict(create >= 2.0)
    );
}
