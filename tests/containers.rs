//! The container lifecycle with the real docker CLI: create, start, stop,
//! kill, restart, wait, rm and `--rm`, and their errors as the CLI prints
//! them. Needs root and runc; skipped with a message otherwise.

mod common;

use std::time::{Duration, Instant};

use common::node::{Node, can_run_zones};

#[tokio::test]
async fn docker_run_rm_prints_the_output_and_leaves_no_container() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--rm", &node.image, "echo", "hi"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    assert_eq!(ran.stdout, "hi\n");
    let ps = node.docker(&["ps", "-aq"]);
    assert!(ps.ok, "{ps:?}");
    assert_eq!(ps.stdout.trim(), "", "the --rm container is gone");
}

#[tokio::test]
async fn docker_run_exits_with_the_containers_exit_code() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--name", "three", &node.image, "sh", "-c", "exit 3"]);
    assert_eq!(ran.code, Some(3), "{ran:?}\n{}", node.server.log());
    let state = node.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "three",
    ]);
    assert_eq!(state.stdout.trim(), "exited 3", "{state:?}");
}

#[tokio::test]
async fn a_command_that_does_not_exist_fails_with_127_and_the_runtimes_message() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", &node.image, "no-such-command"]);
    assert_eq!(ran.code, Some(127), "{ran:?}");
    assert!(ran.stderr.contains("no-such-command"), "{ran:?}");
}

#[tokio::test]
async fn create_then_start_then_stop_walks_the_states_docker_shows() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let created = node.docker(&["create", "--name", "web", &node.image, "sleep", "1000"]);
    assert!(created.ok, "{created:?}");
    let id = created.stdout.trim().to_owned();
    assert_eq!(id.len(), 64, "{created:?}");
    assert_eq!(
        node.until_inspect("web", "{{.State.Status}}", |_| true)
            .await,
        "created"
    );
    let started = node.docker(&["start", "web"]);
    assert!(started.ok, "{started:?}");
    assert_eq!(started.stdout.trim(), "web");
    let status = node.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        &id[..12],
    ]);
    assert_eq!(status.stdout.trim(), "running true", "{status:?}");
    let stopped = node.docker(&["stop", "-t", "1", "web"]);
    assert!(stopped.ok, "{stopped:?}");
    let status = node.docker(&["inspect", "-f", "{{.State.Status}}", "web"]);
    assert_eq!(status.stdout.trim(), "exited", "{status:?}");
    // Starting again runs the same container.
    let again = node.docker(&["start", "web"]);
    assert!(again.ok, "{again:?}");
    let removed = node.docker(&["rm", "-f", "web"]);
    assert!(removed.ok, "{removed:?}");
    let gone = node.docker(&["inspect", "web"]);
    assert!(!gone.ok);
    assert!(
        gone.stderr.contains("No such container: web")
            || gone.stderr.contains("No such object: web"),
        "{gone:?}"
    );
}

#[tokio::test]
async fn stop_with_a_timeout_kills_a_process_that_ignores_sigterm() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        &node.image,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(ran.ok, "{ran:?}");
    let begun = Instant::now();
    let stopped = node.docker(&["stop", "-t", "1", "stubborn"]);
    assert!(stopped.ok, "{stopped:?}");
    assert!(
        begun.elapsed() >= Duration::from_secs(1),
        "waited the timeout first"
    );
    let code = node.docker(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]);
    assert_eq!(code.stdout.trim(), "137", "{code:?}");
}

#[tokio::test]
async fn kill_sends_the_named_signal_and_a_trapped_hup_keeps_the_container_running() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "hup",
        &node.image,
        "sh",
        "-c",
        "trap 'echo got-hup' HUP; while true; do sleep 0.1; done",
    ]);
    assert!(ran.ok, "{ran:?}");
    let killed = node.docker(&["kill", "-s", "HUP", "hup"]);
    assert!(killed.ok, "{killed:?}");
    let start = Instant::now();
    loop {
        let logs = node.docker(&["logs", "hup"]);
        if logs.stdout.contains("got-hup") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no got-hup: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = node.docker(&["inspect", "-f", "{{.State.Status}}", "hup"]);
    assert_eq!(state.stdout.trim(), "running");
    let killed = node.docker(&["kill", "hup"]);
    assert!(killed.ok, "{killed:?}");
    assert_eq!(
        node.until_inspect("hup", "{{.State.Status}} {{.State.ExitCode}}", |s| s
            .starts_with("exited"))
            .await,
        "exited 137"
    );
    let bad = node.docker(&["kill", "-s", "NOPE", "hup"]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("Invalid signal: NOPE") || bad.stderr.contains("invalid signal"),
        "{bad:?}"
    );
    let not_running = node.docker(&["kill", "hup"]);
    assert!(!not_running.ok);
    assert!(
        not_running.stderr.contains("is not running"),
        "{not_running:?}"
    );
}

#[tokio::test]
async fn restart_runs_the_process_again() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "-d", "--name", "again", &node.image, "sleep", "1000"]);
    assert!(ran.ok, "{ran:?}");
    let before = node.docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}} {{.State.StartedAt}}",
        "again",
    ]);
    let restarted = node.docker(&["restart", "-t", "1", "again"]);
    assert!(restarted.ok, "{restarted:?}");
    let after = node.docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}} {{.State.StartedAt}}",
        "again",
    ]);
    assert_ne!(before.stdout, after.stdout, "a new process");
    let state = node.docker(&["inspect", "-f", "{{.State.Status}}", "again"]);
    assert_eq!(state.stdout.trim(), "running");
}

#[tokio::test]
async fn rm_of_a_running_container_needs_force_and_says_so() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "-d", "--name", "busy", &node.image, "sleep", "1000"]);
    assert!(ran.ok, "{ran:?}");
    let refused = node.docker(&["rm", "busy"]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("cannot remove container \"/busy\": container is running: stop the container before removing or force remove"),
        "{refused:?}"
    );
    let forced = node.docker(&["rm", "-f", "busy"]);
    assert!(forced.ok, "{forced:?}");
    assert_eq!(forced.stdout.trim(), "busy");
    let missing = node.docker(&["rm", "busy"]);
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("No such container: busy"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn wait_returns_the_exit_code_once_the_container_exits() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "w",
        &node.image,
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    assert!(ran.ok, "{ran:?}");
    let waited = node.docker(&["wait", "w"]);
    assert!(waited.ok, "{waited:?}");
    assert_eq!(waited.stdout.trim(), "7");
}

#[tokio::test]
async fn names_are_generated_unique_and_checked() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let created = node.docker(&["create", &node.image, "true"]);
    assert!(created.ok, "{created:?}");
    let name = node.docker(&["inspect", "-f", "{{.Name}}", created.stdout.trim()]);
    let name = name.stdout.trim().trim_start_matches('/').to_owned();
    let (adjective, surname) = name.split_once('_').expect("adjective_surname");
    assert!(!adjective.is_empty() && !surname.is_empty(), "{name}");
    let first = node.docker(&["create", "--name", "taken", &node.image, "true"]);
    assert!(first.ok, "{first:?}");
    let second = node.docker(&["create", "--name", "taken", &node.image, "true"]);
    assert!(!second.ok);
    assert!(
        second
            .stderr
            .contains("Conflict. The container name \"/taken\" is already in use by container"),
        "{second:?}"
    );
    let bad = node.docker(&["create", "--name", "-bad", &node.image, "true"]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("Invalid container name (-bad)"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn options_the_platform_lacks_are_refused_by_name_and_nothing_is_created() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let refused = node.docker(&["create", "--privileged", &node.image, "true"]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("--privileged is not supported"),
        "{refused:?}"
    );
    let refused = node.docker(&["run", "-v", "/etc:/host-etc", &node.image, "true"]);
    assert!(!refused.ok);
    assert!(refused.stderr.contains("http[s] URLs"), "{refused:?}");
    let refused = node.docker(&["run", "--restart", "always", "--rm", &node.image, "true"]);
    assert!(!refused.ok, "{refused:?}");
    let none = node.docker(&["ps", "-aq"]);
    assert_eq!(none.stdout.trim(), "", "{none:?}");
}

#[tokio::test]
async fn an_unknown_image_is_the_clis_no_such_image_error() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let missing = format!("{}/library/nothing:here", node.registry.host());
    let ran = node.docker(&["create", &missing, "true"]);
    assert!(!ran.ok);
    assert!(ran.stderr.contains("nothing"), "{ran:?}");
}

#[tokio::test]
async fn container_prune_removes_what_is_not_running_and_keeps_the_rest() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let created = node.docker(&["create", "--name", "idle", &node.image, "true"]);
    assert!(created.ok, "{created:?}");
    let exited = node.docker(&[
        "run",
        "--name",
        "done",
        "--label",
        "keep=yes",
        &node.image,
        "true",
    ]);
    assert!(exited.ok, "{exited:?}");
    let running = node.docker(&["run", "-d", "--name", "live", &node.image, "sleep", "1000"]);
    assert!(running.ok, "{running:?}");
    // A label filter spares what it excludes.
    let pruned = node.docker(&["container", "prune", "-f", "--filter", "label!=keep=yes"]);
    assert!(pruned.ok, "{pruned:?}");
    let left = node.docker(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = left.stdout.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["done", "live"], "{left:?}");
    let pruned = node.docker(&["container", "prune", "-f"]);
    assert!(pruned.ok, "{pruned:?}");
    assert!(pruned.stdout.contains("Deleted Containers:"), "{pruned:?}");
    let left = node.docker(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left.stdout.trim(), "live", "{left:?}");
}
