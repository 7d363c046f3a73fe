//! Containers as real processes: `sdc-docker apply -f` of a Container spec
//! runs it under runc through the monitor, on this machine as the only
//! node, with an image pulled from a real registry. Needs root and runc;
//! skipped with a message otherwise.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use sdc_docker_testkit::{Format, Registry, busybox};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn can_run_zones() -> bool {
    let root = rustix_is_root();
    let runc = Path::new("/usr/bin/runc").exists() || Path::new("/usr/sbin/runc").exists();
    if !(root && runc) {
        eprintln!("skipped: running zones needs root and runc (scripts/install-deps.sh)");
    }
    root && runc
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A server with busybox pulled from a fresh registry; the image reference.
async fn node_with_busybox() -> (Server, Registry, String) {
    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::layered(Format::Docker),
        )
        .await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/library/busybox:latest", registry.host());
    let pulled = server.docker(&["pull", "-q", &reference]);
    assert!(pulled.ok, "{pulled:?}");
    (server, registry, reference)
}

fn container_yaml(name: &str, image: &str, cmd: &[&str], extra: &str) -> String {
    let cmd = cmd
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "kind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  cmd: [{cmd}]\n  desiredState: running\n{extra}"
    )
}

fn apply(server: &Server, name: &str, yaml: &str) {
    let file = server.write_file(&format!("{name}.yaml"), yaml);
    let out = server.sdc(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(out.ok, "{out:?}");
}

fn status(server: &Server, name: &str) -> Value {
    let out = server.sdc(&["get", "container", name, "-o", "json"]);
    assert!(out.ok, "{out:?}");
    let object: Value = serde_json::from_str(&out.stdout).expect("json");
    object["status"].clone()
}

/// Waits until the container's status satisfies `done`; its status then.
async fn wait_status(
    server: &Server,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let now = status(server, name);
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{name}: {what} not reached in {DEADLINE:?}; status: {now:#}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_applied_container_spec_runs_as_a_real_process_and_its_exit_code_is_recorded() {
    if !can_run_zones() {
        return;
    }
    let (server, _registry, image) = node_with_busybox().await;
    apply(
        &server,
        "web",
        &container_yaml("web", &image, &["sleep", "1000"], ""),
    );
    let running = wait_status(&server, "web", "running", |s| s["state"] == "running").await;
    let pid = running["pid"].as_i64().expect("a pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "{running:#}");
    assert_eq!(running["node"].as_str().map(|n| !n.is_empty()), Some(true));
    assert!(
        running["package"]
            .as_str()
            .is_some_and(|p| p.starts_with("sample-")),
        "{running:#}"
    );

    apply(
        &server,
        "job",
        &container_yaml("job", &image, &["sh", "-c", "echo hi; exit 3"], ""),
    );
    let exited = wait_status(&server, "job", "exited", |s| s["state"] == "exited").await;
    assert_eq!(exited["exitCode"], 3, "{exited:#}");
    assert!(exited["finishedAt"].is_string(), "{exited:#}");
    assert_eq!(exited["restartCount"].as_i64().unwrap_or(0), 0);

    let deleted = server.sdc(&["delete", "container", "web"]);
    assert!(deleted.ok, "{deleted:?}");
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "the process of a deleted container still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_spec_whose_image_is_missing_gets_a_clear_error_and_others_still_run() {
    if !can_run_zones() {
        return;
    }
    let (server, _registry, image) = node_with_busybox().await;
    apply(
        &server,
        "ghost",
        &container_yaml("ghost", "nothere:1", &["true"], ""),
    );
    apply(
        &server,
        "fine",
        &container_yaml("fine", &image, &["sleep", "1000"], ""),
    );
    let ghost = wait_status(&server, "ghost", "an error", |s| {
        s["error"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(ghost["error"], "No such image: nothere:1", "{ghost:#}");
    wait_status(&server, "fine", "running", |s| s["state"] == "running").await;
}

/// The host log of the zone of container `name` (the only zone whose spec
/// names it), as the monitor wrote it.
fn host_log(server: &Server, name: &str) -> String {
    let zones = server.dir().join("data/zones");
    for entry in std::fs::read_dir(&zones).expect("the zones dir").flatten() {
        let spec = std::fs::read_to_string(entry.path().join("spec.json")).unwrap_or_default();
        let spec: Value = serde_json::from_str(&spec).unwrap_or_default();
        if spec["labels"]["sdc-docker.name"] == name {
            return std::fs::read_to_string(entry.path().join("logs/container.log"))
                .unwrap_or_default();
        }
    }
    panic!("no zone for {name} under {}", zones.display());
}

/// The times of the log lines whose text is `text`.
fn line_times(log: &str, text: &str) -> Vec<time::OffsetDateTime> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["log"] == format!("{text}\n"))
        .filter_map(|entry| {
            let time = entry["time"].as_str()?.to_owned();
            time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339).ok()
        })
        .collect()
}

#[tokio::test]
async fn on_failure_restarts_with_the_doubling_delay_up_to_its_maximum() {
    if !can_run_zones() {
        return;
    }
    let (server, _registry, image) = node_with_busybox().await;
    apply(
        &server,
        "flaky",
        &container_yaml(
            "flaky",
            &image,
            &["sh", "-c", "echo started; exit 2"],
            "  restartPolicy:\n    name: on-failure\n    maximumRetryCount: 3\n",
        ),
    );
    let done = wait_status(&server, "flaky", "three restarts", |s| {
        s["restartCount"] == 3 && s["state"] == "exited"
    })
    .await;
    assert_eq!(done["exitCode"], 2, "{done:#}");

    // The monitor stamps each line: the starts are 100, 200, 400 ms apart
    // plus what a start itself takes.
    let starts = line_times(&host_log(&server, "flaky"), "started");
    assert_eq!(starts.len(), 4, "one run and three restarts: {starts:?}");
    let gaps: Vec<i128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).whole_milliseconds())
        .collect();
    eprintln!("gaps between starts: {gaps:?} ms");
    for (gap, delay) in gaps.iter().zip([100, 200, 400]) {
        assert!(
            *gap >= delay && *gap < delay + 700,
            "restart after {gap} ms where the policy says {delay} ms: {gaps:?}"
        );
    }

    // No fourth restart: the maximum is reached. Absence takes waiting
    // longer than the next delay (800 ms) would have been.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&server, "flaky")["restartCount"], 3);
    assert_eq!(line_times(&host_log(&server, "flaky"), "started").len(), 4);
}
