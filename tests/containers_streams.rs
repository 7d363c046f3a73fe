//! The streamed and hijacked container endpoints with the real docker CLI:
//! attached `docker run` (with and without `-i`/`-t`), `docker logs` (tail,
//! timestamps, follow), `docker exec` (plain, `-i`, `-it`) and `docker
//! attach` with its detach keys. Terminal sessions run the CLI under a pty
//! made by python3's `pty` module. Needs root and runc; skipped with a
//! message otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::node::{Node, can_run_zones};
use common::{Ran, docker_command, http_unix, http_unix_with_body};

/// Drives a command under a pty: `argv[1]` is a JSON list of steps
/// (`["expect", text]` waits for text after the last match, `["send",
/// text]` types it), the rest is the command. Prints the whole transcript
/// and exits with the command's code; 99 (and the reason on stderr) when a
/// step times out.
const PTY_DRIVER: &str = r#"
import fcntl, json, os, pty, select, struct, subprocess, sys, termios, time
steps = json.loads(sys.argv[1])
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
def controlling():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling)
os.close(slave)
out = b""
mark = 0
def read(timeout):
    global out
    r, _, _ = select.select([master], [], [], timeout)
    if not r:
        return True
    try:
        data = os.read(master, 4096)
    except OSError:
        return False
    if not data:
        return False
    out += data
    return True
def fail(why):
    sys.stdout.write(out.decode(errors="replace"))
    sys.stderr.write(why + "\n")
    p.kill()
    sys.exit(99)
for kind, text in steps:
    if kind == "send":
        os.write(master, text.encode())
        continue
    end = time.time() + 20
    while text.encode() not in out[mark:]:
        if time.time() > end or not read(0.1) and text.encode() not in out[mark:]:
            fail("timed out waiting for %r" % text)
    mark = out.index(text.encode(), mark) + len(text)
end = time.time() + 20
while p.poll() is None:
    if time.time() > end:
        fail("the command did not exit")
    read(0.1)
while read(0.1):
    if time.time() > end + 2:
        break
sys.stdout.write(out.decode(errors="replace"))
sys.exit(p.returncode)
"#;

/// Runs `docker args` under a pty, taking `steps` (see [`PTY_DRIVER`]).
fn docker_in_pty(node: &Node, args: &[&str], steps: &[(&str, &str)]) -> Ran {
    docker_in_pty_at(node, &node.server.docker_host(), args, steps)
}

/// [`docker_in_pty`] with the CLI aimed at `host`.
fn docker_in_pty_at(node: &Node, host: &str, args: &[&str], steps: &[(&str, &str)]) -> Ran {
    let docker = docker_command(host, node.server.dir(), args);
    let steps: Vec<[&str; 2]> = steps.iter().map(|(k, t)| [*k, *t]).collect();
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(PTY_DRIVER)
        .arg(serde_json::to_string(&steps).expect("steps as JSON"))
        .arg(docker.get_program())
        .args(docker.get_args())
        .stdin(Stdio::null());
    for (key, value) in docker.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.output().expect("running python3").into()
}

/// Runs `docker args` in the background, its stdout lines sent on the
/// returned channel.
fn docker_lines(node: &Node, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = docker_command(&node.server.docker_host(), node.server.dir(), args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running the docker CLI");
    let stdout = child.stdout.take().expect("the CLI's stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (20 s at most) for a line equal to `want` on `lines`.
fn expect_line(lines: &mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line == want => return,
            Ok(_) => {}
            Err(e) => panic!("no line {want:?}: {e}"),
        }
    }
}

/// Runs `docker args` until its stdout is `want` (20 s at most): logs are
/// written by the zone's monitor as the output comes.
async fn until_stdout(node: &Node, args: &[&str], want: &str) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ran = node.docker(args);
        if ran.ok && ran.stdout == want {
            return ran;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?}: {ran:?}\n{}",
            node.server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn docker_run_prints_the_output_of_a_command_that_exits_at_once_every_time() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    for i in 0..20 {
        let ran = node.docker(&["run", "--rm", &node.image, "echo", "hi"]);
        assert!(ran.ok, "run {i}: {ran:?}\n{}", node.server.log());
        assert_eq!(ran.stdout, "hi\n", "run {i}: {ran:?}");
    }
}

#[tokio::test]
async fn docker_run_keeps_stdout_and_stderr_apart_and_exits_with_the_code() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "--name",
        "apart",
        &node.image,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(ran.code, Some(3), "{ran:?}\n{}", node.server.log());
    assert_eq!(ran.stdout, "out\n", "{ran:?}");
    assert_eq!(ran.stderr, "err\n", "{ran:?}");

    // An old client's attach (no upgrade) to the log so far: 200 and the
    // output in the body, each line in its stdcopy frame.
    let reply = http_unix(
        &node.server.docker_socket,
        "POST",
        "/v1.45/containers/apart/attach?logs=1&stream=0&stdout=1&stderr=1",
    )
    .expect("an answer");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    assert!(
        reply.body.contains("\u{1}\0\0\0\0\0\0\u{4}out\n"),
        "{reply:?}"
    );
    assert!(
        reply.body.contains("\u{2}\0\0\0\0\0\0\u{4}err\n"),
        "{reply:?}"
    );
    let logs = http_unix(
        &node.server.docker_socket,
        "GET",
        "/v1.41/containers/apart/logs?stderr=1",
    )
    .expect("an answer");
    assert_eq!(logs.status, 200, "{logs:?}");
    assert_eq!(
        logs.header("content-type"),
        Some("application/vnd.docker.raw-stream"),
        "before 1.42 every stream says raw"
    );
    assert_eq!(logs.body, "\u{2}\0\0\0\0\0\0\u{4}err\n");
}

#[tokio::test]
async fn docker_run_t_prints_the_whole_output_of_a_short_command() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    for i in 0..5 {
        let ran = node.docker(&[
            "run",
            "--rm",
            "-t",
            &node.image,
            "sh",
            "-c",
            "echo one; echo two",
        ]);
        assert!(ran.ok, "run {i}: {ran:?}\n{}", node.server.log());
        assert_eq!(ran.stdout, "one\r\ntwo\r\n", "run {i}: {ran:?}");
    }
}

#[tokio::test]
async fn docker_run_i_feeds_its_stdin_to_the_container() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node
        .server
        .docker_with_stdin(&["run", "-i", "--rm", &node.image, "cat"], b"hello\n");
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    assert_eq!(ran.stdout, "hello\n");
}

#[tokio::test]
async fn docker_run_it_echoes_typed_input_and_exits_on_exit() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = docker_in_pty(
        &node,
        &["run", "-it", "--rm", &node.image, "sh"],
        &[
            ("send", "echo typed-$((40+2))\r"),
            ("expect", "typed-42"),
            ("send", "exit\r"),
        ],
    );
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
}

#[tokio::test]
async fn docker_logs_reads_tails_timestamps_and_follows_until_the_container_stops() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let script = "echo one; echo two; echo three >&2; \
                  while [ ! -e /tmp/go ]; do sleep 0.1; done; echo four; sleep 100";
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        &node.image,
        "sh",
        "-c",
        script,
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());

    let all = until_stdout(&node, &["logs", "--tail", "all", "talker"], "one\ntwo\n").await;
    assert_eq!(all.stderr, "three\n", "stderr stays apart: {all:?}");
    let tail = node.docker(&["logs", "--tail", "2", "talker"]);
    assert_eq!(
        (tail.stdout.as_str(), tail.stderr.as_str()),
        ("two\n", "three\n"),
        "{tail:?}"
    );
    let stamped = node.docker(&["logs", "-t", "talker"]);
    let lines: Vec<&str> = stamped.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped:?}");
    for (line, text) in lines.iter().zip(["one", "two"]) {
        let (stamp, rest) = line
            .split_once(' ')
            .expect("a timestamp, a space, the line");
        assert_eq!(rest, text);
        assert_eq!(
            stamp.len(),
            "2006-01-02T15:04:05.000000000Z".len(),
            "{stamp}"
        );
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
    }

    let (mut follower, lines) = docker_lines(&node, &["logs", "-f", "talker"]);
    expect_line(&lines, "one");
    expect_line(&lines, "two");
    let touched = node.docker(&["exec", "talker", "touch", "/tmp/go"]);
    assert!(touched.ok, "{touched:?}");
    expect_line(&lines, "four");
    let killed = node.docker(&["kill", "talker"]);
    assert!(killed.ok, "{killed:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follower.try_wait().expect("waiting for logs -f") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = follower.kill();
            panic!("logs -f went on after the container stopped");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn docker_logs_of_a_missing_container_or_no_stream_is_an_error() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["logs", "nope"]);
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("No such container: nope"), "{ran:?}");
    let reply = http_unix(
        &node.server.docker_socket,
        "GET",
        "/v1.45/containers/nope/logs?stdout=0&stderr=0",
    )
    .expect("an answer");
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .contains("Bad parameters: you must choose at least one stream"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn docker_exec_runs_in_the_container_with_its_streams_and_exit_code() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "-d", "--name", "box", &node.image, "sleep", "100"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());

    let hi = node.docker(&["exec", "box", "sh", "-c", "echo hi; echo oops >&2"]);
    assert!(hi.ok, "{hi:?}\n{}", node.server.log());
    assert_eq!((hi.stdout.as_str(), hi.stderr.as_str()), ("hi\n", "oops\n"));
    let five = node.docker(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(five.code, Some(5), "{five:?}");
    let cat = node
        .server
        .docker_with_stdin(&["exec", "-i", "box", "cat"], b"through stdin\n");
    assert!(cat.ok, "{cat:?}");
    assert_eq!(cat.stdout, "through stdin\n");
    let detached = node.docker(&["exec", "-d", "box", "touch", "/tmp/detached"]);
    assert!(detached.ok, "{detached:?}");
    until_stdout(&node, &["exec", "box", "ls", "/tmp"], "detached\n").await;

    // An old client's exec (no upgrade): the output in the body, then the
    // exit code in its inspect.
    let socket = &node.server.docker_socket;
    let created = http_unix_with_body(
        socket,
        "POST",
        "/v1.45/containers/box/exec",
        r#"{"AttachStdout":true,"Cmd":["echo","plain"]}"#,
    )
    .expect("an answer");
    assert_eq!(created.status, 201, "{created:?}");
    let id: serde_json::Value = serde_json::from_str(&created.body).expect("JSON");
    let id = id["Id"].as_str().expect("an Id").to_owned();
    let started = http_unix_with_body(
        socket,
        "POST",
        &format!("/v1.45/exec/{id}/start"),
        r#"{"Detach":false}"#,
    )
    .expect("an answer");
    assert_eq!(started.status, 200, "{started:?}");
    assert_eq!(started.body, "\u{1}\0\0\0\0\0\0\u{6}plain\n");
    let inspect = http_unix(socket, "GET", &format!("/v1.45/exec/{id}/json")).expect("an answer");
    let inspect: serde_json::Value = serde_json::from_str(&inspect.body).expect("JSON");
    assert_eq!(inspect["ExitCode"], 0, "{inspect}");
    assert_eq!(inspect["Running"], false, "{inspect}");
    assert_eq!(inspect["ProcessConfig"]["entrypoint"], "echo", "{inspect}");
    let unknown = http_unix(socket, "GET", "/v1.45/exec/nope/json").expect("an answer");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(
        unknown.body.contains("No such exec instance: nope"),
        "{unknown:?}"
    );

    let tty = docker_in_pty(
        &node,
        &["exec", "-it", "box", "sh"],
        &[
            ("send", "tty; echo sum-$((2+3))\r"),
            ("expect", "/dev/pts/"),
            ("expect", "sum-5"),
            ("send", "exit 7\r"),
        ],
    );
    assert_eq!(tty.code, Some(7), "{tty:?}\n{}", node.server.log());
}

#[tokio::test]
async fn docker_exec_in_a_stopped_container_fails_with_dockers_message() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--name", "done", &node.image, "true"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let exec = node.docker(&["exec", "done", "echo", "hi"]);
    assert_eq!(exec.code, Some(1), "{exec:?}");
    assert!(exec.stderr.contains("is not running"), "{exec:?}");
    let missing = node.docker(&["exec", "nope", "echo", "hi"]);
    assert!(
        missing.stderr.contains("No such container: nope"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn docker_attach_sees_new_output_and_detaches_with_ctrl_p_ctrl_q() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "-dit", "--name", "shell", &node.image, "sh"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    // Over the unix socket: over TCP the CLI (28) does not recognise its own
    // detach (the escape error comes back wrapped by TCPConn.ReadFrom), ends
    // its input instead, and after the session's end waits for the
    // container's exit, as it does against Docker.
    let socket = format!("unix://{}", node.server.docker_socket.display());
    let attached = docker_in_pty_at(
        &node,
        &socket,
        &["attach", "shell"],
        &[
            ("send", "echo seen-$((6*7))\r"),
            ("expect", "seen-42"),
            ("send", "\u{10}\u{11}"),
        ],
    );
    // The CLI's own words and code for a detach.
    assert_eq!(
        attached.code,
        Some(1),
        "{attached:?}\n{}",
        node.server.log()
    );
    assert!(
        attached.stdout.contains("read escape sequence"),
        "{attached:?}"
    );
    let running = node.docker(&["inspect", "-f", "{{.State.Running}}", "shell"]);
    assert_eq!(
        running.stdout.trim(),
        "true",
        "detaching left it running: {running:?}"
    );

    // Without a tty: the output from now on, stdout and stderr.
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "ticker",
        &node.image,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
    ]);
    assert!(ran.ok, "{ran:?}");
    let (mut attach, lines) = docker_lines(&node, &["attach", "ticker"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ticks = 0;
    while ticks < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("ticks through attach");
        assert!(line.starts_with("tick-"), "{line}");
        ticks += 1;
    }
    let _ = attach.kill();
    let _ = attach.wait();
}
