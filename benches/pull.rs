//! `docker pull` through sdc-docker vs through the reference Docker Engine
//! (Debian's `docker.io`, dockerd 20.10), side by side in one run.
//!
//! A real registry (Debian's `docker-registry`) on loopback gets one
//! generated image: `SDC_BENCH_LAYERS` layers (default 5) of random,
//! incompressible data, `SDC_BENCH_MB` MiB in all (default 100). Then, for
//! `SDC_BENCH_RUNS` rounds (default 5) after one warm-up round, each engine
//! pulls it with the real `docker` CLI (`docker -H … pull REF`), the order
//! of the two engines alternating from round to round. Each pull starts
//! from a clean state: a fresh `sdc-docker serve` (embedded store, fresh
//! data dir) and a fresh dockerd (its own socket, data root, exec root and
//! the containerd it starts itself), both started and answering before the
//! timer starts. Measured: the CLI's wall time, start to exit; and the peak
//! resident memory of the daemon (`VmHWM`; for dockerd, its own plus its
//! containerd's). `cargo bench --bench pull` prints a Markdown table for
//! docs/performance.md; `bash scripts/bench-pull.sh` installs dockerd first.
//!
//! `SDC_BENCH_OURS=library` measures our side without the server and the
//! CLI: `sdc_docker_images::pull::pull` called in this process into a fresh
//! image store and embedded spec store per run (no peak RSS then: this
//! process also holds the generated image). The default, `cli`, falls back
//! to it, saying so, when the server has no pull endpoint (404).
//!
//! Skipped (exit 0) when dockerd is not installed or not run as root.
//! Under `cargo test` (no `--bench`): one round of a small image, as a smoke
//! test of the bench itself.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Ran, Server, docker_at};
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{Client, ClientConfig, Platform};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::{Api, EmbeddedStore};
use sdc_docker_testkit::{Image, Registry};
use support::{Dockerd, dockerd_binary, env_or, proc_kib};

/// Where the image lives in the registry.
const REPOSITORY: &str = "bench/big";

/// One timed pull: wall time of the CLI, and the daemon's peak RSS (KiB).
struct Sample {
    time: Duration,
    peak_kib: u64,
}

/// Pull `reference` with the CLI and check it got `image`.
fn timed_pull(pull: impl FnOnce() -> Ran, image: &Image, engine: &str) -> Duration {
    let started = Instant::now();
    let ran = pull();
    let time = started.elapsed();
    assert!(ran.ok, "pull through {engine} failed: {ran:?}");
    assert!(
        ran.stdout.contains(image.manifest_digest()),
        "pull through {engine} printed no `Digest: {}`: {ran:?}",
        image.manifest_digest()
    );
    time
}

async fn pull_ours(reference: &str, image: &Image) -> Sample {
    let server = Server::start("embedded").await;
    // Over the unix socket, as for dockerd.
    let host = format!("unix://{}", server.docker_socket.display());
    let time = timed_pull(
        || docker_at(&host, server.dir(), &["pull", reference]),
        image,
        "sdc-docker",
    );
    let peak_kib = proc_kib(server.pid(), "status", "VmHWM").unwrap_or(0);
    Sample { time, peak_kib }
}

async fn pull_sdc(library: bool, reference: &str, image: &Image) -> Sample {
    if library {
        pull_library(reference, image).await
    } else {
        pull_ours(reference, image).await
    }
}

/// Our pull without server or CLI: the library's `pull` into a fresh image
/// store and embedded spec store (opened before the timer starts).
async fn pull_library(reference: &str, image: &Image) -> Sample {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = ImageStore::open(dir.path().join("images")).expect("opening an image store");
    let spec = EmbeddedStore::open(&dir.path().join("store.redb"), Default::default())
        .expect("opening an embedded store");
    let images = Api::default_account(std::sync::Arc::new(spec));
    let client = Client::new(ClientConfig::default()).expect("a registry client");
    let parsed = Reference::parse_normalized(reference).expect("a valid reference");
    let started = Instant::now();
    let pulled = sdc_docker_images::pull::pull(
        &client,
        &store,
        &images,
        &parsed,
        &Platform::linux_amd64(),
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("library pull failed: {e}"));
    let time = started.elapsed();
    assert_eq!(
        pulled.spec.id,
        image.id(),
        "the library pulled another image"
    );
    Sample { time, peak_kib: 0 }
}

/// Whether a fresh server has the pull endpoint: `POST /images/create`
/// answers something else than 404 (for a reference it cannot pull).
async fn server_can_pull() -> bool {
    let server = Server::start("embedded").await;
    let reply = common::http_tcp(
        server.port,
        "POST",
        "/images/create?fromImage=127.0.0.1:1/none&tag=latest",
    );
    !matches!(reply, Some(r) if r.status == 404)
}

async fn pull_dockerd(binary: &Path, reference: &str, image: &Image) -> Sample {
    let dockerd = Dockerd::start(binary).await;
    let time = timed_pull(|| dockerd.docker(&["pull", reference]), image, "dockerd");
    let inspect = dockerd.docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    assert_eq!(
        inspect.stdout.trim(),
        image.id(),
        "dockerd has another image: {inspect:?}"
    );
    // Peak RSS of dockerd and its containerd.
    let peak_kib = dockerd
        .daemon_pids()
        .into_iter()
        .filter_map(|pid| proc_kib(pid, "status", "VmHWM"))
        .sum();
    Sample { time, peak_kib }
}

fn summary(samples: &[Sample]) -> (Duration, Duration, Duration, u64) {
    let mut times: Vec<Duration> = samples.iter().map(|s| s.time).collect();
    times.sort();
    let mut peaks: Vec<u64> = samples.iter().map(|s| s.peak_kib).collect();
    peaks.sort();
    (
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        peaks[peaks.len() / 2],
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let Some(dockerd) = dockerd_binary() else {
        println!(
            "pull bench skipped: dockerd is not installed (bash scripts/bench-pull.sh installs Debian's docker.io)"
        );
        return;
    };
    if !common::is_root() {
        println!("pull bench skipped: dockerd needs root");
        return;
    }
    let (runs, mib, layers) = if benching {
        (
            env_or("SDC_BENCH_RUNS", 5).max(1),
            env_or("SDC_BENCH_MB", 100),
            env_or("SDC_BENCH_LAYERS", 5),
        )
    } else {
        (1, 4, 2)
    };

    let registry = Registry::start().await;
    let image = Image::random(layers, mib << 20, 1);
    registry.push(REPOSITORY, "latest", &image).await;
    let reference = registry.reference(REPOSITORY, "latest");
    eprintln!(
        "image {reference}: {layers} layers, {:.1} MiB compressed, {:.1} MiB unpacked",
        image.compressed_size() as f64 / 1048576.0,
        image.unpacked_size() as f64 / 1048576.0
    );

    let library = match std::env::var("SDC_BENCH_OURS").as_deref() {
        Ok("library") => true,
        Ok("cli") | Err(_) => {
            let can = server_can_pull().await;
            if !can {
                eprintln!(
                    "sdc-docker serve has no POST /images/create yet (404): \
                     measuring our side through sdc_docker_images::pull::pull instead"
                );
            }
            !can
        }
        Ok(other) => panic!("SDC_BENCH_OURS is `cli` or `library`, not `{other}`"),
    };

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    // Round 0 warms caches (binaries, the registry's files) and is not counted.
    let rounds = if benching { runs + 1 } else { runs };
    for round in 0..rounds {
        let counted = !benching || round > 0;
        let (a, b) = if round % 2 == 0 {
            let b = pull_dockerd(&dockerd, &reference, &image).await;
            let a = pull_sdc(library, &reference, &image).await;
            (a, b)
        } else {
            let a = pull_sdc(library, &reference, &image).await;
            let b = pull_dockerd(&dockerd, &reference, &image).await;
            (a, b)
        };
        eprintln!(
            "round {round}{}: sdc-docker {:.2} s ({} MiB), dockerd {:.2} s ({} MiB)",
            if counted { "" } else { " (warm-up)" },
            a.time.as_secs_f64(),
            a.peak_kib / 1024,
            b.time.as_secs_f64(),
            b.peak_kib / 1024
        );
        if counted {
            ours.push(a);
            theirs.push(b);
        }
    }

    let (o_med, o_min, o_max, o_peak) = summary(&ours);
    let (t_med, t_min, t_max, t_peak) = summary(&theirs);
    let secs = |d: Duration| d.as_secs_f64();
    let ours_name = if library {
        "sdc-docker (library `pull`)"
    } else {
        "sdc-docker"
    };
    println!(
        "| `docker pull`, {layers} layers, {mib} MiB, {runs} runs | {ours_name} | dockerd 20.10 | sdc-docker / dockerd |"
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| wall time, median | {:.2} s | {:.2} s | {:.2}× |",
        secs(o_med),
        secs(t_med),
        secs(o_med) / secs(t_med)
    );
    println!(
        "| wall time, range | {:.2}–{:.2} s | {:.2}–{:.2} s | |",
        secs(o_min),
        secs(o_max),
        secs(t_min),
        secs(t_max)
    );
    println!(
        "| throughput, median | {:.0} MiB/s | {:.0} MiB/s | |",
        mib as f64 / secs(o_med),
        mib as f64 / secs(t_med)
    );
    if library {
        println!(
            "| daemon peak RSS, median | n/a (in the bench's process) | {:.1} MiB | |",
            t_peak as f64 / 1024.0
        );
    } else {
        println!(
            "| daemon peak RSS, median | {:.1} MiB | {:.1} MiB | {:.2}× |",
            o_peak as f64 / 1024.0,
            t_peak as f64 / 1024.0,
            o_peak as f64 / t_peak as f64
        );
    }
}
