//! `docker events` against `sdc-docker serve` with real containers: a
//! replayed window, a live stream with a filter, and image events. Needs
//! root and runc; skipped with a message otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::docker_command;
use common::node::{Node, can_run_zones};

/// How long an expected event may take to show.
const DEADLINE: Duration = Duration::from_secs(30);

/// Now, as the CLI sends times: Unix seconds with nanoseconds.
fn unix_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// A `docker events` left running, its output lines arriving on a channel;
/// killed when dropped, even when the test failed.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Following {
    /// Starts `docker events ARGS` against `node`.
    fn start(node: &Node, args: &[&str]) -> Following {
        let mut all = vec!["events"];
        all.extend_from_slice(args);
        let mut child = docker_command(&node.server.docker_host(), node.server.dir(), &all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker events");
        let stdout = child.stdout.take().expect("the CLI's stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Following { child, lines }
    }

    /// The next line, within [`DEADLINE`]; panics saying what was awaited.
    fn next_line(&self, waiting_for: &str) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no event line ({e}) while waiting for {waiting_for}"))
    }

    /// Lines until one equal to `want`; every line read, that one last.
    fn until_line(&self, want: &str) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == want;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("{want:?} not seen ({e}); saw {seen:?}"),
            }
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_replayed_window_shows_a_run_as_create_start_die_destroy_in_order() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let since = unix_now();
    let ran = node.docker(&["run", "--rm", &node.image, "true"]);
    assert!(ran.ok, "{ran:?}");
    let until = unix_now();
    let events = node.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert!(events.ok, "{events:?}");
    let containers: Vec<&str> = events
        .stdout
        .lines()
        .filter(|l| l.starts_with("container "))
        .collect();
    assert_eq!(
        containers,
        [
            "container create",
            "container start",
            "container die",
            "container destroy"
        ],
        "{events:?}"
    );
}

#[tokio::test]
async fn a_live_stream_filtered_to_die_sees_a_container_exit_with_its_code() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let since = unix_now();
    let following = Following::start(
        &node,
        &[
            "--since",
            &since,
            "--filter",
            "event=die",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    );
    // The first exit may come replayed or live; once it has been printed
    // the stream is live, so the second can only come live.
    let first = node.docker(&["run", "--name", "first", &node.image, "true"]);
    assert!(first.ok, "{first:?}");
    assert_eq!(following.next_line("the first die"), "die first 0");
    let second = node.docker(&["run", "--name", "second", &node.image, "sh", "-c", "exit 3"]);
    assert_eq!(second.code, Some(3), "{second:?}");
    assert_eq!(following.next_line("the second die"), "die second 3");
    let removed = node.docker(&["rm", "first", "second"]);
    assert!(removed.ok, "{removed:?}");
}

#[tokio::test]
async fn image_events_show_an_image_removed_and_pulled_again() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let since = unix_now();
    let following = Following::start(
        &node,
        &[
            "--since",
            &since,
            "--filter",
            "type=image",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}}",
        ],
    );
    let removed = node.docker(&["rmi", &node.image]);
    assert!(removed.ok, "{removed:?}");
    let pulled = node.docker(&["pull", "-q", &node.image]);
    assert!(pulled.ok, "{pulled:?}");
    let seen = following.until_line(&format!("image pull {}", node.image));
    let actions: Vec<&str> = seen.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    // One `untag` per reference the image lost (its tag, its digest), then
    // `delete`, then the new `pull`.
    let untags = actions.iter().take_while(|a| **a == "untag").count();
    assert!(untags >= 1, "{seen:?}");
    assert_eq!(actions[untags..], ["delete", "pull"], "{seen:?}");
    assert!(seen.iter().all(|l| l.starts_with("image ")), "{seen:?}");
}

#[tokio::test]
async fn a_stop_is_a_kill_with_sigterm_then_die_then_stop_and_rm_is_destroy() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let since = unix_now();
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        &node.image,
        "sleep",
        "100",
    ]);
    assert!(ran.ok, "{ran:?}");
    let stopped = node.docker(&["stop", "-t", "1", "sleeper"]);
    assert!(stopped.ok, "{stopped:?}");
    let removed = node.docker(&["rm", "sleeper"]);
    assert!(removed.ok, "{removed:?}");
    let until = unix_now();
    let events = node.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=sleeper",
        "--format",
        "{{json .}}",
    ]);
    assert!(events.ok, "{events:?}");
    let events: Vec<serde_json::Value> = events
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["Action"].as_str()).collect();
    assert_eq!(
        actions,
        ["create", "start", "kill", "die", "stop", "destroy"],
        "{events:?}"
    );
    let attributes = |i: usize| &events[i]["Actor"]["Attributes"];
    assert_eq!(attributes(2)["signal"], "15");
    assert_eq!(attributes(3)["exitCode"], "137");
    assert!(
        events
            .iter()
            .all(|e| e["Actor"]["Attributes"]["name"] == "sleeper")
    );
    assert!(
        events
            .iter()
            .all(|e| e["Type"] == "container" && e["scope"] == "local")
    );
}
