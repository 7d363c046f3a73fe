//! Streams of a container that runs on another node: etcd, a server (with
//! busybox pulled, its own node cordoned) and an `sdc-docker agent` sharing
//! the store, so every container is placed on the agent's node, and the
//! stock docker CLI talks only to the server. `docker run` attached,
//! `docker logs` and `docker exec` reach the agent's zones through its
//! streams server (the address and token its Node publishes).

mod common;

use std::time::{Duration, Instant};

use common::agent::{Agent, cordon};
use common::node::{Node, can_run_zones};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// Field order is drop order: the agent and the server stop before etcd.
struct Cluster {
    agent: Agent,
    node: Node,
    _etcd: sdc_docker_testkit::Etcd,
}

impl Cluster {
    /// etcd, a server whose own node is cordoned, and the agent's node
    /// `agent-node` registered with its streams address.
    async fn start() -> Cluster {
        let etcd = sdc_docker_testkit::Etcd::start().await;
        let node = Node::start_with(&etcd.store_url(), &[]).await;
        let agent = Agent::start(&etcd.store_url(), "agent-node");
        let start = Instant::now();
        loop {
            let got = node
                .server
                .sdc(&["get", "node", "agent-node", "-o", "json"]);
            if got.ok {
                let object: Value = serde_json::from_str(&got.stdout).expect("json");
                assert!(
                    object["spec"]["address"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("127.0.0.1:")),
                    "the agent publishes its streams address: {object:#}"
                );
                assert!(
                    object["spec"]["streamsToken"]
                        .as_str()
                        .is_some_and(|t| t.len() == 64),
                    "and its token: {object:#}"
                );
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the agent's node never registered\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cordon(&node.server, &format!("node-{}", node.server.port));
        Cluster {
            agent,
            node,
            _etcd: etcd,
        }
    }

    /// The node a container was placed on.
    fn placed_on(&self, name: &str) -> String {
        let out = self
            .node
            .server
            .sdc(&["get", "container", name, "-o", "json"]);
        assert!(out.ok, "{out:?}");
        let object: Value = serde_json::from_str(&out.stdout).expect("json");
        object["status"]["node"].as_str().unwrap_or("").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_run_attached_with_stdin_and_docker_logs_reach_a_container_on_an_agent_node() {
    if !can_run_zones() {
        return;
    }
    let cluster = Cluster::start().await;
    let node = &cluster.node;
    let ran = node.docker(&[
        "run",
        "--name",
        "far",
        &node.image,
        "sh",
        "-c",
        "echo hello from the agent; echo to stderr >&2; exit 3",
    ]);
    assert_eq!(cluster.placed_on("far"), "agent-node");
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (Some(3), "hello from the agent\n", "to stderr\n"),
        "{ran:?}\n--- agent\n{}",
        cluster.agent.log()
    );

    // `-i`: the CLI's stdin reaches the process, and its end closes it.
    let fed = node.server.docker_with_stdin(
        &[
            "run",
            "-i",
            "--rm",
            &node.image,
            "sh",
            "-c",
            "read x; echo got $x; cat; echo done",
        ],
        b"one\ntwo\n",
    );
    assert_eq!(
        (fed.code, fed.stdout.as_str()),
        (Some(0), "got one\ntwo\ndone\n"),
        "{fed:?}"
    );

    let logs = node.docker(&["logs", "far"]);
    assert!(logs.ok, "{logs:?}");
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("hello from the agent\n", "to stderr\n")
    );
    let tail = node.docker(&["logs", "--tail", "1", "--timestamps", "far"]);
    assert!(tail.ok, "{tail:?}");
    assert!(tail.stdout.is_empty() || tail.stderr.is_empty(), "{tail:?}");
    assert_eq!(
        tail.stdout.lines().count() + tail.stderr.lines().count(),
        1,
        "{tail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exec_and_cp_reach_a_container_on_an_agent_node_with_exit_codes_stdin_and_files() {
    if !can_run_zones() {
        return;
    }
    let cluster = Cluster::start().await;
    let node = &cluster.node;
    let started = node.docker(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        &node.image,
        "sleep",
        "1000",
    ]);
    assert!(
        started.ok,
        "{started:?}\n--- agent\n{}",
        cluster.agent.log()
    );
    assert_eq!(cluster.placed_on("sleeper"), "agent-node");

    let exec = node.docker(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "echo $((6 * 7)); echo oops >&2; exit 5",
    ]);
    assert_eq!(
        (exec.code, exec.stdout.as_str(), exec.stderr.as_str()),
        (Some(5), "42\n", "oops\n"),
        "{exec:?}"
    );

    let piped = node
        .server
        .docker_with_stdin(&["exec", "-i", "sleeper", "cat"], b"across nodes\n");
    assert!(piped.ok, "{piped:?}");
    assert_eq!(piped.stdout, "across nodes\n");

    let file = node.server.write_file("note.txt", "carried across\n");
    let copied_in = node.docker(&["cp", file.to_str().expect("utf-8"), "sleeper:/tmp/note.txt"]);
    assert!(copied_in.ok, "{copied_in:?}");
    let read = node.docker(&["exec", "sleeper", "cat", "/tmp/note.txt"]);
    assert_eq!(read.stdout, "carried across\n", "{read:?}");
    let back = node.server.dir().join("back.txt");
    let copied_out = node.docker(&["cp", "sleeper:/tmp/note.txt", back.to_str().expect("utf-8")]);
    assert!(copied_out.ok, "{copied_out:?}");
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied out"),
        "carried across\n"
    );
    let diff = node.docker(&["diff", "sleeper"]);
    assert!(
        diff.stdout.lines().any(|l| l == "A /tmp/note.txt"),
        "{diff:?}"
    );

    let removed = node.docker(&["rm", "-f", "sleeper"]);
    assert!(removed.ok, "{removed:?}");
}
