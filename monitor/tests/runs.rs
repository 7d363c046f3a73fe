//! A monitor running real containers under runc: exit records, logs,
//! rotation, and a monitor that outlives its spawner.

mod common;

use std::time::Duration;

use common::{Spec, fixture, spec, wait_until};
use sdc_docker_monitor::{MonitorConfig, MonitorError, spawn, state};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_container_that_prints_and_exits_3_leaves_its_lines_in_the_log_and_code_3_on_disk() {
    let Some(fx) = fixture(spec(&["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])) else {
        return;
    };
    let spawned = spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    assert!(spawned.monitor_pid > 0 && spawned.init_pid > 0);

    let st = fx.wait_for_exit(EXIT_TIMEOUT);
    let exit = st.exit.unwrap_or_else(|| panic!("no exit record"));
    assert_eq!(exit.exit_code, 3);
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    let started_at = st.started_at.unwrap_or_else(|| panic!("no started_at"));
    assert!(exit.finished_at >= started_at);
    assert_eq!(st.monitor_pid, Some(spawned.monitor_pid));
    assert_eq!(st.init_pid, Some(spawned.init_pid));

    let log = std::fs::read_to_string(fx.log_path()).unwrap_or_default();
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(entries.len(), 2, "{log}");
    let find = |stream: &str| {
        entries
            .iter()
            .find(|e| e["stream"] == stream)
            .unwrap_or_else(|| panic!("no {stream} entry in {log}"))
    };
    assert_eq!(find("stdout")["log"], "to-out\n");
    assert_eq!(find("stderr")["log"], "to-err\n");
    let time = find("stdout")["time"].as_str().unwrap_or_default();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
}

#[test]
fn a_container_killed_with_sigkill_exits_137_with_signal_9() {
    let Some(fx) = fixture(spec(&["sleep", "1000"])) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    assert!(fx.kill("KILL"), "runc kill failed");

    let exit = fx
        .wait_for_exit(EXIT_TIMEOUT)
        .exit
        .unwrap_or_else(|| panic!("no exit record"));
    assert_eq!(exit.exit_code, 137);
    assert_eq!(exit.signal, Some(9));
}

#[test]
fn a_bundle_whose_process_does_not_exist_fails_with_runcs_message_and_leaves_no_monitor() {
    let Some(fx) = fixture(spec(&["/nonexistent"])) else {
        return;
    };
    match spawn(&fx.config) {
        Err(MonitorError::RuntimeFailed { stderr }) => {
            assert!(stderr.contains("/nonexistent"), "{stderr}");
        }
        other => panic!("expected RuntimeFailed, got {other:?}"),
    }
    let gone = wait_until(Duration::from_secs(5), || {
        state(fx.state_dir()).is_ok_and(|s| !s.monitor_alive)
    });
    assert!(gone, "the monitor still runs");
    let runc_state = fx.runc(&["state"]);
    assert!(
        runc_state.is_ok_and(|out| !out.status.success()),
        "runc still knows the container"
    );
}

#[test]
fn the_log_rotates_into_max_files_files_each_within_max_size() {
    const MAX_SIZE: u64 = 10 * 1024;
    let Some(fx) = fixture(Spec {
        log: (MAX_SIZE, 3),
        ..spec(&["seq", "1", "5000"])
    }) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    let exit = fx.wait_for_exit(EXIT_TIMEOUT).exit;
    assert_eq!(exit.map(|e| e.exit_code), Some(0));

    let mut names: Vec<String> = std::fs::read_dir(fx.dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("container-json.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "container-json.log",
            "container-json.log.1",
            "container-json.log.2"
        ]
    );
    for name in &names {
        let size = std::fs::metadata(fx.dir.path().join(name))
            .map(|m| m.len())
            .unwrap_or(u64::MAX);
        assert!(size <= MAX_SIZE + 100, "{name} has {size} bytes");
    }
    let newest = std::fs::read_to_string(fx.log_path()).unwrap_or_default();
    assert!(
        newest
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"5000\\n\"")),
        "the newest file does not end with the last line"
    );
    let oldest =
        std::fs::read_to_string(fx.dir.path().join("container-json.log.2")).unwrap_or_default();
    assert!(!oldest.contains("\"1\\n\""), "the oldest lines were kept");
}

#[test]
fn a_container_killed_by_the_oom_killer_is_recorded_as_oom_killed() {
    let Some(fx) = fixture(Spec {
        memory_limit: Some(16 * 1024 * 1024),
        ..spec(&["sh", "-c", "x=$(yes | head -c 200000000); echo survived"])
    }) else {
        return;
    };
    spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    let exit = fx
        .wait_for_exit(EXIT_TIMEOUT)
        .exit
        .unwrap_or_else(|| panic!("no exit record"));
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.exit_code, 137);
}

#[test]
fn a_second_spawn_while_the_monitor_runs_is_refused() {
    let Some(fx) = fixture(spec(&["sleep", "1000"])) else {
        return;
    };
    let first = spawn(&fx.config).unwrap_or_else(|e| panic!("spawn: {e}"));
    match spawn(&fx.config) {
        Err(MonitorError::AlreadyRunning { pid }) => assert_eq!(pid, first.monitor_pid),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert!(fx.kill("KILL"), "runc kill failed");
    fx.wait_for_exit(EXIT_TIMEOUT);
}

/// Set to a config file to make [`spawner_child`] spawn from it.
const SPAWNER_ENV: &str = "SDC_DOCKER_MONITOR_TEST_SPAWNER";

/// When run as the spawner child of the next test, spawns the monitor,
/// says so on stdout and waits to be killed; otherwise does nothing.
#[test]
fn spawner_child_does_nothing_unless_asked_to_be_one() {
    let Some(path) = std::env::var_os(SPAWNER_ENV) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let config: MonitorConfig = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let spawned = spawn(&config).unwrap_or_else(|e| panic!("spawn: {e}"));
    std::fs::write(
        config.state_dir.join("spawned-by-test"),
        spawned.init_pid.to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn the_monitor_outlives_a_spawner_killed_with_sigkill() {
    let Some(fx) = fixture(spec(&["sleep", "1000"])) else {
        return;
    };
    let config_file = fx.dir.path().join("spawner-config.json");
    let json = serde_json::to_vec(&fx.config).unwrap_or_default();
    std::fs::write(&config_file, json).unwrap_or_else(|e| panic!("{e}"));
    let mut spawner = std::process::Command::new(std::env::current_exe().unwrap_or_default())
        .args([
            "--exact",
            "spawner_child_does_nothing_unless_asked_to_be_one",
            "--nocapture",
        ])
        .env(SPAWNER_ENV, &config_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let marker = fx.state_dir().join("spawned-by-test");
    let spawned = wait_until(EXIT_TIMEOUT, || marker.exists());
    let _ = spawner.kill();
    let _ = spawner.wait();
    assert!(spawned, "the spawner child did not spawn");

    let st = state(fx.state_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.monitor_alive, "{st:?}");
    assert!(st.exit.is_none());
    let running = fx
        .runc(&["state"])
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("\"running\""));
    assert!(matches!(running, Ok(true)), "{running:?}");

    assert!(fx.kill("KILL"), "runc kill failed");
    let exit = fx.wait_for_exit(EXIT_TIMEOUT).exit;
    assert_eq!(exit.map(|e| e.exit_code), Some(137));
}
