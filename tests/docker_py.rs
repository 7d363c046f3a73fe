//! docker-py, the Python Docker SDK, against a real sdc-docker node: the
//! library most programs use besides the CLI, with its own decoding of
//! every answer (`tests/py/basics.py` says what is checked). `docker info`
//! is checked here too, as the CLI and the SDK both read it.
//!
//! The SDK lives in a virtualenv kept under `target/` and reused while it
//! imports `docker`, so a run installs it only the first time. A fresh one
//! is built beside it and renamed into place, so an interrupted install is
//! never mistaken for a finished one. The test skips, saying why, only
//! when the virtualenv cannot be made or pip cannot install the SDK.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;
use common::node::{Node, can_run_zones};

/// The SDK's version: the one the script was written against.
const DOCKER_PY: &str = "docker==7.1.0";

/// The script the test runs.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/basics.py")
}

/// Whether `venv`'s python imports the SDK.
fn has_sdk(venv: &Path) -> bool {
    Command::new(venv.join("bin/python"))
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run `command`; `Err` with what it printed when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let what = format!("{command:?}");
    let output = command.output().map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The virtualenv with docker-py, made if missing; `Err` says why it
/// could not be.
fn docker_py_venv() -> Result<PathBuf, String> {
    // The tests of this file run at once in one process: one makes the
    // virtualenv, the others wait for it (the temporary name is per process).
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = MAKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = target.join("docker-py-venv");
    if has_sdk(&venv) {
        return Ok(venv);
    }
    let fresh = target.join(format!("docker-py-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    run(Command::new("python3").arg("-m").arg("venv").arg(&fresh))?;
    let installed = run(Command::new(fresh.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        DOCKER_PY,
    ]));
    if let Err(why) = installed {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(why);
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&fresh, &venv).map_err(|e| format!("renaming the virtualenv: {e}"))?;
    Ok(venv)
}

#[tokio::test]
async fn docker_py_runs_lists_inspects_execs_stops_and_removes_containers() {
    if !can_run_zones() {
        return;
    }
    let venv = match docker_py_venv() {
        Ok(venv) => venv,
        Err(why) => {
            eprintln!("skipped: docker-py could not be installed: {why}");
            return;
        }
    };
    let node = Node::start().await;
    let output = Command::new(venv.join("bin/python"))
        .arg(script())
        .arg(format!("tcp://127.0.0.1:{}", node.server.port))
        .arg(&node.image)
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ok: all"),
        "docker-py failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        output.status,
        node.server.log()
    );
}

#[tokio::test]
async fn docker_info_prints_cleanly_and_docker_py_reads_the_same_host() {
    let venv = match docker_py_venv() {
        Ok(venv) => venv,
        Err(why) => {
            eprintln!("skipped: docker-py could not be installed: {why}");
            return;
        }
    };
    let server = Server::start("embedded").await;

    let printed = server.docker(&["info"]);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.stderr, "", "docker info warned: {printed:?}");
    for line in [
        " Storage Driver: sdc",
        "  SDCAccount: default",
        " Operating System: SmartDataCenter",
        " Swarm: inactive",
    ] {
        assert!(
            printed.stdout.contains(line),
            "{line:?} missing: {printed:?}"
        );
    }

    let json = server.docker(&["info", "--format", "{{json .}}"]);
    assert!(json.ok && json.stderr.is_empty(), "{json:?}");
    let cli: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert!(cli.get("ServerErrors").is_none(), "{cli}");

    let sdk = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import docker, json, sys; \
             print(json.dumps(docker.DockerClient(base_url=sys.argv[1]).info()))",
        ])
        .arg(format!("tcp://127.0.0.1:{}", server.port))
        .output()
        .expect("running python");
    assert!(sdk.status.success(), "{sdk:?}");
    let sdk: serde_json::Value = serde_json::from_slice(&sdk.stdout).expect("JSON");
    for field in ["ID", "Name", "Driver", "NCPU", "MemTotal", "ServerVersion"] {
        assert_eq!(sdk[field], cli[field], "{field}");
    }
    assert!(sdk["NCPU"].as_i64().is_some_and(|n| n >= 1), "{sdk}");
}
