//! Containers as real processes: `sdc-docker apply -f` of a Container spec
//! runs it under runc through the monitor, on this machine as the only
//! node, with an image pulled from a real registry. Needs root and runc;
//! skipped with a message otherwise.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use common::agent::{Agent, cordon};
use common::node::{TURN, ZoneCleanup, can_run_zones};
use sdc_docker_testkit::{Format, Registry, busybox};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// A server with busybox pulled from a fresh registry; the image reference.
/// Bind the cleanup first (`let (_cleanup, server, …)`): bindings drop in
/// reverse order, so the server stops before its zones are taken down and
/// no restart policy brings them back meanwhile.
async fn node_with_busybox() -> (ZoneCleanup, Server, Registry, String) {
    node_with_busybox_and(&[]).await
}

/// [`node_with_busybox`] with more arguments for `serve`.
async fn node_with_busybox_and(extra: &[&str]) -> (ZoneCleanup, Server, Registry, String) {
    node_with_busybox_on("embedded", extra).await
}

/// [`node_with_busybox`] on `store`, with more arguments for `serve`.
async fn node_with_busybox_on(
    store: &str,
    extra: &[&str],
) -> (ZoneCleanup, Server, Registry, String) {
    let turn = TURN.clone().lock_owned().await;
    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::layered(Format::Docker),
        )
        .await;
    let server = Server::start_with(store, extra).await;
    let reference = format!("{}/library/busybox:latest", registry.host());
    let cleanup = ZoneCleanup::new(server.dir().join("data"), Some(turn));
    let pulled = server.docker(&["pull", "-q", &reference]);
    assert!(pulled.ok, "{pulled:?}");
    (cleanup, server, registry, reference)
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
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
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
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
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
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
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
            *gap >= delay && *gap < delay + 1500,
            "restart after {gap} ms where the policy says {delay} ms: {gaps:?}"
        );
    }

    // No fourth restart: the maximum is reached. Absence takes waiting
    // longer than the next delay (800 ms) would have been.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&server, "flaky")["restartCount"], 3);
    assert_eq!(line_times(&host_log(&server, "flaky"), "started").len(), 4);
}

#[tokio::test]
async fn containers_keep_running_through_a_kill_9_of_the_daemon_and_are_adopted_again() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, mut server, _registry, image) = node_with_busybox().await;
    let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let all: String = names
        .iter()
        .map(|n| {
            container_yaml(
                n,
                &image,
                &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
                "",
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    apply(&server, "all", &all);
    let mut pids = Vec::new();
    for name in &names {
        let s = wait_status(&server, name, "running", |s| s["state"] == "running").await;
        pids.push(s["pid"].as_i64().expect("a pid"));
    }

    server.kill9();
    for pid in &pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} died with the daemon"
        );
    }
    let lines_before = host_log(&server, "c0").lines().count();
    server.restart().await;
    for (name, pid) in names.iter().zip(&pids) {
        let s = wait_status(&server, name, "still running", |s| s["state"] == "running").await;
        assert_eq!(s["pid"].as_i64(), Some(*pid), "{name} was not restarted");
        assert_eq!(s["restartCount"].as_i64().unwrap_or(0), 0);
    }
    // The log went on while the daemon was away and goes on now.
    let start = Instant::now();
    while host_log(&server, "c0").lines().count() <= lines_before + 2 {
        assert!(start.elapsed() < DEADLINE, "the log stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_a_node_reboot_only_the_containers_the_seeds_name_come_back() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, mut server, _registry, image) = node_with_busybox().await;
    let data = server.dir().join("data");
    let cases = [
        ("always", "always"),
        ("unless", "unless-stopped"),
        ("failure", "on-failure"),
        ("never", "no"),
    ];
    for (name, policy) in cases {
        apply(
            &server,
            name,
            &container_yaml(
                name,
                &image,
                &["sleep", "1000"],
                &format!("  restartPolicy:\n    name: {policy}\n"),
            ),
        );
    }
    for (name, _) in cases {
        wait_status(&server, name, "running", |s| s["state"] == "running").await;
    }
    // A reboot: the daemon and every monitor and process gone at once.
    server.kill9();
    let zones = std::fs::read_dir(data.join("zones")).expect("zones");
    for entry in zones.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if let Ok(pid) = std::fs::read_to_string(entry.path().join("run/monitor.pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .output();
        }
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(data.join("runc"))
            .args(["kill", &id, "KILL"])
            .output();
        let _ = std::process::Command::new("umount")
            .arg(entry.path().join("rootfs"))
            .output();
    }
    server.restart().await;
    for name in ["always", "unless", "failure"] {
        let s = wait_status(&server, name, "running again", |s| {
            s["state"] == "running" && s["restartCount"] == 1
        })
        .await;
        assert!(s["pid"].as_i64().is_some_and(|p| p > 0), "{name}: {s:#}");
    }
    let never = wait_status(&server, "never", "exited", |s| s["state"] == "exited").await;
    assert_eq!(never["restartCount"].as_i64().unwrap_or(0), 0, "{never:#}");
}

#[tokio::test]
async fn the_host_log_rotates_at_max_size_keeping_max_file_files() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
    apply(
        &server,
        "chatty",
        &container_yaml(
            "chatty",
            &image,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done",
            ],
            "  logConfig:\n    type: json-file\n    config:\n      max-size: 10k\n      max-file: \"3\"\n",
        ),
    );
    wait_status(&server, "chatty", "exited", |s| s["state"] == "exited").await;
    let zones = server.dir().join("data/zones");
    let zone = std::fs::read_dir(&zones)
        .expect("zones")
        .flatten()
        .next()
        .expect("a zone");
    let mut files: Vec<String> = std::fs::read_dir(zone.path().join("logs"))
        .expect("logs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["container.log", "container.log.1", "container.log.2"]
    );
    for file in &files {
        let size = std::fs::metadata(zone.path().join("logs").join(file))
            .expect("size")
            .len();
        assert!(size <= 10 * 1024 + 200, "{file} is {size} bytes");
    }
    let newest = std::fs::read_to_string(zone.path().join("logs/container.log")).expect("log");
    assert!(
        newest.contains("line 2999"),
        "the newest lines are in the current file"
    );
}

#[tokio::test]
async fn memory_asked_with_m_picks_the_smallest_package_large_enough() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
    apply(
        &server,
        "sized",
        &container_yaml("sized", &image, &["sleep", "1000"], "  memory: 300000000\n"),
    );
    let s = wait_status(&server, "sized", "running", |s| s["state"] == "running").await;
    assert_eq!(s["package"], "sample-512M", "{s:#}");
    let pid = s["pid"].as_i64().expect("pid");
    let limit = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let memory = limit
        .lines()
        .find_map(|l| {
            l.split(':')
                .nth(2)
                .filter(|_| l.contains(":memory:"))
                .map(str::to_owned)
        })
        .expect("a memory cgroup");
    let bytes = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
    ))
    .expect("the limit");
    assert_eq!(bytes.trim(), (512u64 * 1024 * 1024).to_string());
}

#[tokio::test]
async fn stopping_a_container_that_ignores_sigterm_escalates_to_sigkill_after_its_timeout() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
    let stubborn = |state: &str| {
        container_yaml(
            "stubborn",
            &image,
            &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
            "  stopTimeout: 1\n  restartPolicy:\n    name: always\n",
        )
        .replace("desiredState: running", &format!("desiredState: {state}"))
    };
    apply(&server, "stubborn", &stubborn("running"));
    wait_status(&server, "stubborn", "running", |s| s["state"] == "running").await;
    let asked = Instant::now();
    apply(&server, "stubborn", &stubborn("stopped"));
    let stopped = wait_status(&server, "stubborn", "exited", |s| s["state"] == "exited").await;
    let took = asked.elapsed();
    assert_eq!(stopped["exitCode"], 137, "killed by SIGKILL: {stopped:#}");
    assert!(
        took >= Duration::from_secs(1),
        "SIGKILL only after the 1 s timeout: {took:?}"
    );
    // A stop the user asked for is not undone by `always`.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = status(&server, "stubborn");
    assert_eq!(
        (
            later["state"].as_str(),
            later["restartCount"].as_i64().unwrap_or(0)
        ),
        (Some("exited"), 0)
    );
}

#[tokio::test]
async fn a_zone_whose_spec_was_deleted_while_the_node_was_down_is_collected_after_the_grace() {
    if !can_run_zones() {
        return;
    }
    // On etcd, so the spec can be deleted while this node's daemon is down.
    let etcd = sdc_docker_testkit::Etcd::start().await;
    let (_cleanup, mut server, _registry, image) =
        node_with_busybox_on(&etcd.store_url(), &["--orphan-grace", "1s"]).await;
    apply(
        &server,
        "kept",
        &container_yaml("kept", &image, &["sleep", "1000"], ""),
    );
    apply(
        &server,
        "gone",
        &container_yaml("gone", &image, &["sleep", "1000"], ""),
    );
    let kept = wait_status(&server, "kept", "running", |s| s["state"] == "running").await;
    let gone = wait_status(&server, "gone", "running", |s| s["state"] == "running").await;
    let (kept_pid, gone_pid) = (
        kept["pid"].as_i64().expect("pid"),
        gone["pid"].as_i64().expect("pid"),
    );

    server.stop();
    let deleted = common::etcdctl(
        &etcd.endpoints(),
        &["del", "/sdc-docker/v1/containers/default/gone"],
    );
    assert!(deleted.ok && deleted.stdout.trim() == "1", "{deleted:?}");
    assert!(
        Path::new(&format!("/proc/{gone_pid}")).exists(),
        "zones outlive the daemon"
    );
    server.restart().await;
    let start = Instant::now();
    while Path::new(&format!("/proc/{gone_pid}")).exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "the orphaned zone was never collected\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        Path::new(&format!("/proc/{kept_pid}")).exists(),
        "a wanted zone is never collected"
    );
}

#[tokio::test]
async fn a_syslog_log_driver_forwards_each_line_and_the_host_log_keeps_them_too() {
    if !can_run_zones() {
        return;
    }
    let (_cleanup, server, _registry, image) = node_with_busybox().await;
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    receiver
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let port = receiver.local_addr().expect("address").port();
    apply(
        &server,
        "talker",
        &container_yaml(
            "talker",
            &image,
            &["sh", "-c", "echo hello; echo world >&2; sleep 1000"],
            &format!(
                "  logConfig:\n    type: syslog\n    config:\n      syslog-address: udp://127.0.0.1:{port}\n"
            ),
        ),
    );
    wait_status(&server, "talker", "running", |s| s["state"] == "running").await;
    let mut got = Vec::new();
    let mut buffer = [0u8; 2048];
    while got.len() < 2 {
        let n = receiver.recv(&mut buffer).expect("a syslog datagram");
        got.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    got.sort();
    // <PRI>: daemon (3) × 8 + info (6) for stdout, + err (3) for stderr.
    assert!(
        got.iter()
            .any(|m| m.starts_with("<30>") && m.trim_end().ends_with(": hello")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.starts_with("<27>") && m.trim_end().ends_with(": world")),
        "{got:?}"
    );
    let host = host_log(&server, "talker");
    assert!(host.contains("hello") && host.contains("world"), "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_placed_on_an_agent_node_runs_there_with_the_image_the_agent_pulled_itself() {
    if !can_run_zones() {
        return;
    }
    let etcd = sdc_docker_testkit::Etcd::start().await;
    // The server pulls busybox; the agent has never seen it.
    let (_cleanup, server, _registry, image) = node_with_busybox_on(&etcd.store_url(), &[]).await;
    let agent = Agent::start(&etcd.store_url(), "agent-node");
    let start = Instant::now();
    while !server.sdc(&["get", "node", "agent-node"]).ok {
        assert!(
            start.elapsed() < DEADLINE,
            "the agent's node never registered\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cordon(&server, &format!("node-{}", server.port));

    apply(
        &server,
        "far",
        &container_yaml("far", &image, &["sleep", "1000"], ""),
    );
    let now = wait_status(&server, "far", "running", |s| s["state"] == "running").await;
    assert_eq!(now["node"], "agent-node", "{now:#}");
    let pid = now["pid"].as_i64().expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the process runs");
    assert_eq!(cmdline, b"sleep\x001000\x00");
    assert!(
        agent.log().contains("pulling an image this node lacks"),
        "{}",
        agent.log()
    );
    // The layers are in the agent's own store now; the server's node ran
    // nothing.
    let layers = std::fs::read_dir(agent.data_dir().join("images"))
        .expect("the agent's image store")
        .count();
    assert!(layers > 0);
    let here = std::fs::read_dir(server.dir().join("data/zones"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(here, 0, "a zone on the cordoned server's node");
}
