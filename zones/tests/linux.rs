//! The linux driver against the real `runc` and the real monitor, as root.
//!
//! Each test builds an image by hand in a temp dir (a lower dir with Debian's
//! static busybox and its applets, a top one with `/etc/passwd`), creates a
//! driver rooted in that temp dir with its own `runc --root`, and checks what
//! happens on the machine. Tests skip with a message when not root, or when
//! runc, busybox or the monitor binary (`cargo build -p sdc-docker-monitor`)
//! is missing.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sdc_docker_zones::linux::layout::ZoneDir;
use sdc_docker_zones::linux::rootfs;
use sdc_docker_zones::{
    ImageLayers, LinuxConfig, LinuxDriver, LogSpec, ProcessSpec, ZoneDriver, ZoneError, ZoneEvent,
    ZoneInfo, ZoneSpec, ZoneState,
};
use support::{BUSYBOX, DEADLINE, Node, NodeBuilder, RUNC, monitor_binary, node_or_skip};

const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "id", "hostname", "ls", "pwd", "env", "true",
];
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1001::/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\nbob:x:1001:\nstaff:x:50:bob\n";

/// A node with an image made by hand: see [`layers`].
fn node() -> NodeBuilder {
    Node::layers(layers)
}

/// The image's layer dirs under `tmp`, top first: a base with busybox and
/// its applets, a top with `/etc/passwd`, `/etc/group` and `/etc/motd`.
fn layers(tmp: &Path) -> Vec<PathBuf> {
    let base = tmp.join("layers/base");
    let top = tmp.join("layers/top");
    for dir in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/bob",
    ] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    std::fs::copy(BUSYBOX, base.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", base.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(top.join("etc/group"), GROUP).unwrap();
    std::fs::write(top.join("etc/motd"), "from the image\n").unwrap();
    vec![top, base]
}

/// A spec running `sh -c script` on the node's image, with a fresh id.
fn script_spec(node: &Node, script: &str) -> ZoneSpec {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        u64::from(n) << 16 | u64::from(rand_suffix())
    );
    ZoneSpec {
        hostname: "box1".to_string(),
        process: ProcessSpec {
            args: vec!["sh".to_string(), "-c".to_string(), script.to_string()],
            env: vec!["PATH=/bin".to_string(), "HOSTNAME=box1".to_string()],
            cwd: "/".to_string(),
            ..Default::default()
        },
        image: ImageLayers {
            id: "sha256:test".to_string(),
            lower_dirs: node.lower_dirs.clone(),
        },
        labels: [("sdc-docker.name".to_string(), format!("test{n}"))].into(),
        log: LogSpec::default(),
        stop_signal: "SIGTERM".to_string(),
        id,
        ..Default::default()
    }
}

/// Runs `spec` to its end and returns its info and its output.
async fn run_to_end(node: &Node, spec: &ZoneSpec) -> (ZoneInfo, String) {
    node.start(spec).await;
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    (info, node.output(&spec.id))
}

fn rand_suffix() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 8) as u16
}

#[tokio::test]
async fn create_lays_out_an_installed_zone_with_its_rootfs_mounted() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "true");
    let info = node.driver.create(&spec).await.unwrap();
    assert_eq!(info.state, ZoneState::Installed);
    assert_eq!(info.labels, spec.labels);
    assert_eq!((info.pid, info.exit_code), (None, None));
    let dir = ZoneDir::new(&node.root(), &spec.id);
    assert!(dir.config().is_file());
    assert!(rootfs::is_mounted(&dir.rootfs()).unwrap());
    assert!(dir.rootfs().join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.rootfs().join("etc/motd")).unwrap(),
        "from the image\n"
    );
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn create_twice_returns_the_same_zone_unchanged() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "true");
    let first = node.driver.create(&spec).await.unwrap();
    let mut other = spec.clone();
    other.hostname = "changed".to_string();
    let second = node.driver.create(&other).await.unwrap();
    assert_eq!(first, second);
    let dir = ZoneDir::new(&node.root(), &spec.id);
    assert_eq!(
        std::fs::read_to_string(dir.hostname()).unwrap(),
        "box1\n",
        "the second create changed nothing"
    );
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_missing_lower_dir_is_a_clear_error_and_leaves_nothing() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(&node, "true");
    let gone = node.tmp.path().join("layers/gone");
    spec.image.lower_dirs.insert(0, gone.clone());
    let error = node.driver.create(&spec).await.unwrap_err();
    assert!(
        matches!(&error, ZoneError::ImageMissing { path } if Path::new(path) == gone),
        "{error}"
    );
    assert!(error.to_string().contains("layers/gone"), "{error}");
    assert_eq!(node.driver.get(&spec.id).await.unwrap(), None);
}

#[tokio::test]
async fn start_runs_the_zone_with_a_pid_and_start_again_changes_nothing() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 1000");
    node.driver.create(&spec).await.unwrap();
    let info = node.driver.start(&spec.id).await.unwrap();
    assert_eq!(info.state, ZoneState::Running);
    let pid = info.pid.expect("a running zone has a pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(info.started_at.is_some());
    let again = node.driver.start(&spec.id).await.unwrap();
    assert_eq!((again.state, again.pid), (ZoneState::Running, Some(pid)));
    node.driver.delete(&spec.id).await.unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[tokio::test]
async fn a_process_exiting_3_leaves_the_zone_stopped_with_exit_code_3() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "echo bye; exit 3");
    let (info, output) = run_to_end(&node, &spec).await;
    assert_eq!(info.exit_code, Some(3));
    assert!(info.finished_at >= info.started_at && info.finished_at.is_some());
    assert!(!info.oom_killed);
    assert_eq!(info.pid, None);
    assert_eq!(output, "bye\n");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_zones_exit_is_reported_as_an_event_once_its_status_is_recorded() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 0.3; exit 4");
    let mut events = node.driver.events();
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(ZoneEvent::Exited { id }) if id == spec.id => return id,
                Ok(_) => {}
                Err(e) => panic!("the event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("an exit event");
    // The event comes after the record: the exit code is there at once.
    let info = node.get(&event).await;
    assert_eq!((info.state, info.exit_code), (ZoneState::Stopped, Some(4)));
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_stopped_zone_starts_again_and_records_its_new_exit() {
    let node = node_or_skip!(node());
    let spec = script_spec(
        &node,
        "echo run >> /runs; n=$(cat /runs | wc -l 2>/dev/null); exit 4",
    );
    let (first, _) = run_to_end(&node, &spec).await;
    assert_eq!(first.exit_code, Some(4));
    let info = node.driver.start(&spec.id).await.unwrap();
    assert!(info.started_at > first.started_at);
    let second = node.wait_for(&spec.id, ZoneState::Stopped).await;
    assert_eq!(second.exit_code, Some(4));
    assert!(second.finished_at > first.finished_at);
    let upper = ZoneDir::new(&node.root(), &spec.id).upper();
    assert_eq!(
        std::fs::read_to_string(upper.join("runs")).unwrap(),
        "run\nrun\n",
        "the file system is kept across runs"
    );
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_the_zone_ignores_sigterm() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "trap '' TERM; sleep 1000");
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let began = Instant::now();
    let info = node
        .driver
        .stop(&spec.id, "", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(began.elapsed() >= Duration::from_secs(1));
    assert_eq!(info.state, ZoneState::Stopped);
    assert_eq!(info.exit_code, Some(137));
    let again = node
        .driver
        .stop(&spec.id, "", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(again, info, "stopping a stopped zone changes nothing");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn stop_returns_as_soon_as_the_zone_exits_on_its_stop_signal() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(&node, "trap 'exit 0' USR1; while true; do sleep 0.1; done");
    spec.stop_signal = "USR1".to_string();
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let began = Instant::now();
    let info = node
        .driver
        .stop(&spec.id, "", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!((info.state, info.exit_code), (ZoneState::Stopped, Some(0)));
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn kill_accepts_dockers_signal_spellings_and_refuses_others() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "trap 'exit 7' HUP; while true; do sleep 0.1; done");
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let error = node.driver.kill(&spec.id, "FOO").await.unwrap_err();
    assert_eq!(error.to_string(), "Invalid signal: FOO");
    node.driver.kill(&spec.id, "hup").await.unwrap();
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    assert_eq!(info.exit_code, Some(7));
    assert!(matches!(
        node.driver.kill(&spec.id, "SIGKILL").await,
        Err(ZoneError::WrongState { .. })
    ));
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn pause_freezes_the_zone_and_unpause_thaws_it() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 1000");
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    node.driver.pause(&spec.id).await.unwrap();
    assert_eq!(node.get(&spec.id).await.state, ZoneState::Paused);
    node.driver.pause(&spec.id).await.unwrap();
    node.driver.unpause(&spec.id).await.unwrap();
    assert_eq!(node.get(&spec.id).await.state, ZoneState::Running);
    node.driver.pause(&spec.id).await.unwrap();
    node.driver.delete(&spec.id).await.unwrap();
    assert_eq!(node.driver.get(&spec.id).await.unwrap(), None);
}

#[tokio::test]
async fn hostname_and_etc_files_inside_are_the_specs() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(
        &node,
        "hostname; cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf",
    );
    spec.extra_hosts = vec![("db".to_string(), "10.9.8.7".to_string())];
    spec.dns = vec!["10.0.0.53".to_string()];
    let (info, output) = run_to_end(&node, &spec).await;
    assert_eq!(info.exit_code, Some(0), "{output}");
    let mut lines = output.lines();
    assert_eq!(lines.next(), Some("box1"));
    assert_eq!(lines.next(), Some("box1"));
    assert!(output.contains("127.0.0.1\tlocalhost\n"), "{output}");
    assert!(output.contains("127.0.0.1\tbox1\n"), "{output}");
    assert!(output.contains("10.9.8.7\tdb\n"), "{output}");
    assert!(output.contains("nameserver 10.0.0.53\n"), "{output}");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn env_cwd_and_a_user_named_in_the_images_passwd_are_applied() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(&node, "id -u; id -g; id -G; pwd; echo $GREETING");
    spec.process.user = "bob".to_string();
    spec.process.cwd = "/tmp".to_string();
    spec.process.env.push("GREETING=hello".to_string());
    let (info, output) = run_to_end(&node, &spec).await;
    assert_eq!(info.exit_code, Some(0), "{output}");
    assert_eq!(output, "1000\n1001\n1001 50\n/tmp\nhello\n");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn numeric_users_need_no_passwd_entry_and_unknown_names_are_refused() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(&node, "id -u; id -g");
    spec.process.user = "4242:4343".to_string();
    let (info, output) = run_to_end(&node, &spec).await;
    assert_eq!((info.exit_code, output.as_str()), (Some(0), "4242\n4343\n"));
    node.driver.delete(&spec.id).await.unwrap();

    let mut spec = script_spec(&node, "true");
    spec.process.user = "nobody".to_string();
    let error = node.driver.create(&spec).await.unwrap_err();
    assert!(
        error.to_string().contains("unable to find user nobody"),
        "{error}"
    );
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn the_memory_limit_is_set_on_the_zones_cgroup() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(
        &node,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 1000",
    );
    spec.memory_bytes = 64 << 20;
    spec.cpu_shares = 256;
    node.driver.create(&spec).await.unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let host = |controller: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}/sdc-docker/{}/{file}",
            spec.id
        ))
        .unwrap_or_default()
    };
    assert_eq!(host("memory", "memory.limit_in_bytes"), "67108864\n");
    assert_eq!(host("cpu", "cpu.shares"), "256\n");
    let deadline = Instant::now() + DEADLINE;
    while node.output(&spec.id).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.output(&spec.id), "67108864\n", "seen from inside");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn writes_go_to_the_zones_upper_dir_never_to_the_image() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "echo mine > /etc/motd; echo new > /new");
    let (info, output) = run_to_end(&node, &spec).await;
    assert_eq!(info.exit_code, Some(0), "{output}");
    let upper = ZoneDir::new(&node.root(), &spec.id).upper();
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "new\n");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(node.lower_dirs[0].join("etc/motd")).unwrap(),
        "from the image\n"
    );
    assert!(!node.lower_dirs[0].join("new").exists());
    assert!(!node.lower_dirs[1].join("new").exists());
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn delete_kills_unmounts_and_removes_everything_and_twice_is_fine() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 1000");
    node.driver.create(&spec).await.unwrap();
    let info = node.driver.start(&spec.id).await.unwrap();
    let pid = info.pid.unwrap();
    let dir = ZoneDir::new(&node.root(), &spec.id);
    node.driver.delete(&spec.id).await.unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!rootfs::is_mounted(&dir.rootfs()).unwrap());
    assert!(!dir.path().exists());
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/sdc-docker/{}", spec.id)).exists());
    assert!(
        node.lower_dirs[1].join("bin/busybox").is_file(),
        "the image is intact"
    );
    node.driver.delete(&spec.id).await.unwrap();
    assert_eq!(node.driver.get(&spec.id).await.unwrap(), None);
    assert!(node.driver.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_half_deleted_zone_is_still_listed_and_delete_finishes_it() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "true");
    node.driver.create(&spec).await.unwrap();
    let dir = ZoneDir::new(&node.root(), &spec.id);
    // As if the daemon died in the middle of removing the files.
    std::fs::remove_file(dir.config()).unwrap();
    let listed = node.driver.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ZoneState::Configured);
    node.driver.delete(&spec.id).await.unwrap();
    assert!(!dir.path().exists());
}

#[tokio::test]
async fn a_configured_zone_is_completed_by_create_and_started_after_a_reboot_unmounted_it() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "cat /etc/motd");
    node.driver.create(&spec).await.unwrap();
    let dir = ZoneDir::new(&node.root(), &spec.id);
    std::fs::remove_file(dir.config()).unwrap();
    assert_eq!(
        node.driver.create(&spec).await.unwrap().state,
        ZoneState::Installed
    );
    rootfs::unmount(&dir.rootfs()).unwrap();
    node.driver.start(&spec.id).await.unwrap();
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    assert_eq!(info.exit_code, Some(0));
    assert_eq!(node.output(&spec.id), "from the image\n");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_new_driver_on_the_same_root_finds_running_zones_with_their_labels() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 1000");
    node.driver.create(&spec).await.unwrap();
    let running = node.driver.start(&spec.id).await.unwrap();
    let restarted = LinuxDriver::new(LinuxConfig {
        root: node.root(),
        runtime: PathBuf::from(RUNC),
        runtime_root: node.tmp.path().join("runc"),
        monitor_binary: monitor_binary(),
    })
    .unwrap();
    let listed = restarted.list().await.unwrap();
    assert_eq!(listed, vec![running.clone()]);
    assert_eq!(
        listed[0].labels["sdc-docker.name"],
        spec.labels["sdc-docker.name"]
    );
    let stopped = restarted
        .stop(&spec.id, "KILL", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stopped.exit_code, Some(137));
    restarted.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_command_the_runtime_cannot_run_fails_start_with_its_message() {
    let node = node_or_skip!(node());
    let mut spec = script_spec(&node, "");
    spec.process.args = vec!["/no/such/program".to_string()];
    node.driver.create(&spec).await.unwrap();
    let error = node.driver.start(&spec.id).await.unwrap_err();
    assert!(
        matches!(&error, ZoneError::Runtime { op, .. } if op == "start"),
        "{error}"
    );
    assert!(error.to_string().contains("no such file"), "{error}");
    node.driver.delete(&spec.id).await.unwrap();
}

#[tokio::test]
async fn a_zone_whose_monitor_died_is_still_seen_running_then_stopped_without_an_exit_code() {
    let node = node_or_skip!(node());
    let spec = script_spec(&node, "sleep 1000");
    node.driver.create(&spec).await.unwrap();
    let running = node.driver.start(&spec.id).await.unwrap();
    let run = node.driver.monitor_dir(&spec.id).unwrap();
    let monitor: i32 = std::fs::read_to_string(run.join("monitor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(monitor).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while Path::new(&format!("/proc/{monitor}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the monitor did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = node.get(&spec.id).await;
    assert_eq!((info.state, info.pid), (ZoneState::Running, running.pid));
    let stopped = node
        .driver
        .stop(&spec.id, "", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (stopped.state, stopped.exit_code),
        (ZoneState::Stopped, None)
    );
    node.driver.delete(&spec.id).await.unwrap();
    assert_eq!(node.driver.get(&spec.id).await.unwrap(), None);
}
