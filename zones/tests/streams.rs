//! The process half of `ZoneStreams` on the linux driver, against the real
//! `runc`, the real monitor and real processes: attach, resize, exec and
//! logs. A busybox image is pushed to a real registry and pulled into an
//! `ImageStore`; containers are turned into zones by `zone_spec`. Needs
//! root, runc, busybox, `docker-registry` and the monitor binary (`cargo
//! build -p sdc-docker-monitor`); skips otherwise.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_docker_testkit::{Format, busybox};
use sdc_docker_zones::streams::{
    AttachOptions, ExecSpec, LogEntry, LogOptions, Output, OutputChunk, StdStream, ZoneStreams,
};
use sdc_docker_zones::{ZoneDriver, ZoneError, ZoneSpec, ZoneState};
use support::{DEADLINE, Node, NodeBuilder, node_or_skip};
use tokio::io::AsyncWriteExt;

/// A node with the layered busybox image.
fn node() -> NodeBuilder {
    Node::pulled(busybox::layered(Format::Docker))
}

/// A running zone that sleeps, with `env`.
async fn sleeper(node: &Node, env: &[&str]) -> ZoneSpec {
    node.zone("sleep 1000").env(env).start().await
}

/// Adds the chunk's text to `stdout` or `stderr`, as its stream says.
fn append(chunk: &OutputChunk, stdout: &mut String, stderr: &mut String) {
    let text = String::from_utf8_lossy(&chunk.data);
    match chunk.stream {
        StdStream::Stdout => stdout.push_str(&text),
        StdStream::Stderr => stderr.push_str(&text),
    }
}

/// Reads `output` until `done` says what was read so far is enough.
async fn read_until(
    output: &mut Output,
    mut done: impl FnMut(&str, &str) -> bool,
) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(&stdout, &stderr) {
        let chunk = tokio::time::timeout_at(deadline, output.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; so far {stdout:?} / {stderr:?}"));
        let Some(chunk) = chunk else {
            panic!("the output ended; so far {stdout:?} / {stderr:?}");
        };
        append(&chunk.unwrap(), &mut stdout, &mut stderr);
    }
    (stdout, stderr)
}

/// Everything left on `output`, by stream.
async fn read_to_end(output: &mut Output) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let all = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = output.next().await {
            append(&chunk.unwrap(), &mut stdout, &mut stderr);
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "the output did not end: {stdout:?} / {stderr:?}"
    );
    (stdout, stderr)
}

fn exec(args: &[&str]) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// Log options that select stdout.
fn stdout_only() -> LogOptions {
    LogOptions {
        stdout: true,
        ..Default::default()
    }
}

fn texts(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

#[tokio::test]
async fn attach_receives_stdout_and_stderr_apart_and_sends_stdin_the_process_echoes() {
    let node = node_or_skip!(node());
    let spec = node
        .zone("read x; echo \"out $x\"; echo \"err $x\" >&2; cat")
        .open_stdin()
        .start()
        .await;
    let session = node
        .driver
        .attach(
            &spec.id,
            AttachOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stdin_once: true,
            },
        )
        .await
        .unwrap();
    let mut input = session.input.expect("stdin was asked for");
    let mut output = session.output;
    input.write_all(b"hello\n").await.unwrap();
    let (stdout, stderr) = read_until(&mut output, |o, e| {
        o.contains("out hello\n") && e.contains("err hello\n")
    })
    .await;
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("out hello\n", "err hello\n")
    );

    input.write_all(b"echo me\n").await.unwrap();
    let (stdout, _) = read_until(&mut output, |o, _| o.contains("echo me\n")).await;
    assert_eq!(stdout, "echo me\n");

    // Closing the input closes cat's stdin: cat ends, so does the zone.
    input.shutdown().await.unwrap();
    let (rest, _) = read_to_end(&mut output).await;
    assert_eq!(rest, "");
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    assert_eq!(info.exit_code, Some(0));
    node.delete_all().await;
}

#[tokio::test]
async fn attach_to_a_stopped_zone_is_wrong_state_and_to_an_unknown_one_not_found() {
    let node = node_or_skip!(node());
    let spec = node.spec("true");
    node.start(&spec).await;
    node.wait_for(&spec.id, ZoneState::Stopped).await;
    let options = AttachOptions {
        stdout: true,
        ..Default::default()
    };
    let err = node.driver.attach(&spec.id, options).await.err().unwrap();
    assert!(
        matches!(err, ZoneError::WrongState { op: "attach", .. }),
        "{err:?}"
    );
    let err = node
        .driver
        .attach("nosuchzone", options)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ZoneError::NotFound { .. }), "{err:?}");
    let err = node.driver.resize(&spec.id, 10, 10).await.err().unwrap();
    assert!(matches!(err, ZoneError::WrongState { .. }), "{err:?}");
    let err = node
        .driver
        .exec(&spec.id, &exec(&["true"]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ZoneError::WrongState { .. }), "{err:?}");
    node.delete_all().await;
}

#[tokio::test]
async fn resizing_a_running_zone_without_a_tty_is_a_bad_request() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let err = node.driver.resize(&spec.id, 40, 100).await.err().unwrap();
    assert!(
        matches!(&err, ZoneError::BadRequest(m) if m.contains("no tty")),
        "{err:?}"
    );
    node.delete_all().await;
}

#[tokio::test]
async fn a_tty_zones_pty_takes_the_size_resize_sets() {
    let node = node_or_skip!(node());
    let spec = node
        .zone("read x; busybox stty size; sleep 1000")
        .tty()
        .open_stdin()
        .start()
        .await;
    node.driver.resize(&spec.id, 33, 77).await.unwrap();
    let session = node
        .driver
        .attach(
            &spec.id,
            AttachOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stdin_once: false,
            },
        )
        .await
        .unwrap();
    let mut output = session.output;
    let mut input = session.input.unwrap();
    input.write_all(b"\n").await.unwrap();
    let (stdout, stderr) = read_until(&mut output, |o, _| o.contains("33 77")).await;
    assert!(stdout.contains("33 77"), "{stdout:?}");
    assert_eq!(stderr, "", "a tty has one stream");
    node.delete_all().await;
}

#[tokio::test]
async fn exec_splits_the_output_by_stream_and_reports_the_exit_code() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let mut process = node
        .driver
        .exec(
            &spec.id,
            &exec(&["sh", "-c", "echo hi; echo err >&2; exit 3"]),
        )
        .await
        .unwrap();
    assert!(process.pid.is_some_and(|p| p > 0));
    assert!(process.session.input.is_none());
    assert!(process.resize.is_none());
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hi\n", "err\n"));
    assert_eq!(process.exit.await.unwrap(), 3);

    // A signal death is 128 + N.
    let process = node
        .driver
        .exec(&spec.id, &exec(&["sh", "-c", "kill -9 $$"]))
        .await
        .unwrap();
    assert_eq!(process.exit.await.unwrap(), 137);
    node.delete_all().await;
}

#[tokio::test]
async fn exec_of_a_missing_binary_exits_127_with_runcs_message_on_stderr() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let mut process = node.driver.exec(&spec.id, &exec(&["nope"])).await.unwrap();
    assert_eq!(process.pid, None);
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("executable file not found in $PATH"),
        "{stderr:?}"
    );
    assert_eq!(process.exit.await.unwrap(), 127);

    // Not executable: 126; and with a tty the message is on stderr too.
    let mut not_executable = exec(&["/etc"]);
    not_executable.tty = true;
    let mut process = node.driver.exec(&spec.id, &not_executable).await.unwrap();
    let (_, stderr) = read_to_end(&mut process.session.output).await;
    assert!(stderr.contains("permission denied"), "{stderr:?}");
    assert_eq!(process.exit.await.unwrap(), 126);
    node.delete_all().await;
}

#[tokio::test]
async fn exec_with_a_tty_gets_a_pty_that_resize_sizes() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    // A resize reaches the zone's pty asynchronously (runc applies it on
    // SIGWINCH, as Docker's does): the script waits for it to show.
    let mut shell = exec(&[
        "sh",
        "-c",
        "busybox tty; read x; \
         until [ \"$(busybox stty size)\" = '40 100' ]; do sleep 0.05; done; \
         busybox stty size; echo $TERM",
    ]);
    shell.tty = true;
    shell.stdin = true;
    let mut process = node.driver.exec(&spec.id, &shell).await.unwrap();
    let (stdout, _) = read_until(&mut process.session.output, |o, _| o.contains('\n')).await;
    assert!(stdout.starts_with("/dev/pts/"), "{stdout:?}");
    let resize = process.resize.as_ref().expect("a tty can be resized");
    resize(40, 100).unwrap();
    let mut input = process.session.input.take().unwrap();
    input.write_all(b"go\n").await.unwrap();
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert!(stdout.contains("40 100"), "{stdout:?}");
    assert!(stdout.contains("xterm"), "{stdout:?}");
    assert_eq!(stderr, "");
    assert_eq!(process.exit.await.unwrap(), 0);
    node.delete_all().await;
}

#[tokio::test]
async fn exec_honours_env_user_and_workdir_over_the_zones() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &["X=zone", "Y=kept"]).await;
    let mut spec_exec = exec(&["sh", "-c", "id -u; id -g; pwd; echo $X $Y $Z"]);
    spec_exec.env = vec!["X=exec".to_string(), "Z=added".to_string()];
    spec_exec.user = "1000:1001".to_string();
    spec_exec.workdir = "/tmp".to_string();
    let mut process = node.driver.exec(&spec.id, &spec_exec).await.unwrap();
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "1000\n1001\n/tmp\nexec kept added\n", "{stderr}");
    assert_eq!(process.exit.await.unwrap(), 0);

    // Without them: the zone's user (root), cwd and environment.
    let mut process = node
        .driver
        .exec(&spec.id, &exec(&["sh", "-c", "id -u; pwd; echo $X"]))
        .await
        .unwrap();
    let (stdout, _) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "0\n/\nzone\n");
    process.exit.await.unwrap();
    node.delete_all().await;
}

#[tokio::test]
async fn exec_stdin_reaches_the_process_and_closing_it_ends_the_process() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let mut cat = exec(&["cat"]);
    cat.stdin = true;
    let mut process = node.driver.exec(&spec.id, &cat).await.unwrap();
    let mut input = process.session.input.take().expect("stdin was asked for");
    input.write_all(b"through cat\n").await.unwrap();
    let (stdout, _) = read_until(&mut process.session.output, |o, _| o.contains('\n')).await;
    assert_eq!(stdout, "through cat\n");
    input.shutdown().await.unwrap();
    let rest = read_to_end(&mut process.session.output).await;
    assert_eq!(rest, (String::new(), String::new()));
    assert_eq!(process.exit.await.unwrap(), 0);
    node.delete_all().await;
}

#[tokio::test]
async fn exec_privileged_gets_every_capability() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let caps = ["busybox", "grep", "CapEff", "/proc/self/status"];
    let mut plain = node.driver.exec(&spec.id, &exec(&caps)).await.unwrap();
    let (plain_caps, _) = read_to_end(&mut plain.session.output).await;
    let mut privileged = exec(&caps);
    privileged.privileged = true;
    let mut privileged = node.driver.exec(&spec.id, &privileged).await.unwrap();
    let (all_caps, said) = read_to_end(&mut privileged.session.output).await;
    assert_eq!(privileged.exit.await.unwrap(), 0, "{said}");
    assert_eq!(plain_caps.trim(), "CapEff:\t00000000a80425fb");
    // Every capability the daemon itself may have.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap();
    assert_eq!(all_caps.trim(), format!("CapEff:\t{}", bounding.trim()));
    node.delete_all().await;
}

#[tokio::test]
async fn logs_select_by_stream_tail_since_and_until() {
    let node = node_or_skip!(node());
    let spec =
        node.spec("echo o1; echo e1 >&2; sleep 1; echo o2; echo e2 >&2; echo o3; echo -n partial");
    node.start(&spec).await;
    node.wait_for(&spec.id, ZoneState::Stopped).await;
    let stdout = stdout_only();
    let all = node.logs(&spec.id, stdout.clone()).await;
    assert_eq!(texts(&all), ["o1\n", "o2\n", "o3\n", "partial"]);
    assert!(all.iter().all(|e| e.stream == StdStream::Stdout));
    let stderr = node
        .logs(
            &spec.id,
            LogOptions {
                stderr: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(texts(&stderr), ["e1\n", "e2\n"]);
    assert!(stderr.iter().all(|e| e.stream == StdStream::Stderr));
    let both = node
        .logs(
            &spec.id,
            LogOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(both.len(), 6);

    let tail = LogOptions {
        tail: Some(2),
        ..stdout.clone()
    };
    assert_eq!(texts(&node.logs(&spec.id, tail).await), ["o3\n", "partial"]);
    let none = LogOptions {
        tail: Some(0),
        ..stdout.clone()
    };
    assert!(node.logs(&spec.id, none).await.is_empty());

    let o2 = all[1].time;
    let since = LogOptions {
        since: Some(o2),
        ..stdout.clone()
    };
    assert_eq!(
        texts(&node.logs(&spec.id, since).await),
        ["o2\n", "o3\n", "partial"]
    );
    let until = LogOptions {
        until: Some(o2),
        ..stdout.clone()
    };
    assert_eq!(texts(&node.logs(&spec.id, until).await), ["o1\n"]);
    // Follow on a stopped zone: what is there, then the end.
    let follow = LogOptions {
        follow: true,
        tail: Some(1),
        ..stdout
    };
    assert_eq!(texts(&node.logs(&spec.id, follow).await), ["partial"]);
    node.delete_all().await;
}

#[tokio::test]
async fn logs_follow_sees_lines_appended_later_and_ends_when_the_zone_exits() {
    let node = node_or_skip!(node());
    let spec = node.spec("echo first; sleep 2; echo second; echo third >&2");
    node.start(&spec).await;
    let mut stream = node
        .driver
        .logs(
            &spec.id,
            LogOptions {
                stdout: true,
                stderr: true,
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(entry) = stream.next().await {
            let entry = entry.unwrap();
            if seen.is_empty() {
                // The zone still runs when the first line is read.
                let info = node.driver.get(&spec.id).await.unwrap().unwrap();
                assert_eq!(info.state, ZoneState::Running);
            }
            seen.push(String::from_utf8_lossy(&entry.data).into_owned());
        }
    })
    .await;
    assert!(ended.is_ok(), "the follow did not end: {seen:?}");
    assert_eq!(seen, ["first\n", "second\n", "third\n"]);
    let info = node.driver.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(info.state, ZoneState::Stopped);

    // Deleting a zone ends its followers.
    let spec = sleeper(&node, &[]).await;
    let follow = LogOptions {
        follow: true,
        ..stdout_only()
    };
    let stream = node.driver.logs(&spec.id, follow).await.unwrap();
    node.driver.delete(&spec.id).await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, stream.collect::<Vec<_>>()).await;
    assert!(ended.is_ok(), "a deleted zone's log did not end");
    node.delete_all().await;
}

#[tokio::test]
async fn logs_read_across_rotated_files_in_order_also_while_following() {
    let node = node_or_skip!(node());
    let lines: Vec<String> = (1..=30).map(|i| format!("line{i}")).collect();
    let script = format!("sleep 1; for i in {}; do echo $i; done", lines.join(" "));
    let spec = node.zone(&script).log_max_size(300, 30).start().await;
    let follow = LogOptions {
        follow: true,
        ..stdout_only()
    };
    let followed = node.logs(&spec.id, follow).await;
    let want: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(texts(&followed), want);
    node.wait_for(&spec.id, ZoneState::Stopped).await;

    let log = node.driver.log_file(&spec.id).unwrap();
    let mut rotated = PathBuf::from(log.as_os_str().to_owned());
    rotated.as_mut_os_string().push(".3");
    assert!(rotated.exists(), "the log rotated at least three times");
    let options = stdout_only();
    assert_eq!(texts(&node.logs(&spec.id, options.clone()).await), want);
    let tail = LogOptions {
        tail: Some(4),
        ..options
    };
    assert_eq!(texts(&node.logs(&spec.id, tail).await), want[26..]);
    node.delete_all().await;
}

#[tokio::test]
async fn logs_of_a_zone_whose_log_driver_is_none_cannot_be_read() {
    let node = node_or_skip!(node());
    let spec = node.zone("true").log_driver("none").spec();
    node.driver.create(&spec).await.unwrap();
    let err = node
        .driver
        .logs(&spec.id, stdout_only())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ZoneError::BadRequest(m) if m == "configured logging driver does not support reading"),
        "{err:?}"
    );
    let err = node
        .driver
        .logs("nosuchzone", LogOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ZoneError::NotFound { .. }), "{err:?}");
    node.delete_all().await;
}

/// The zombie children of this process, by pid.
fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            zombies.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    zombies
}

#[tokio::test]
async fn a_dropped_exec_is_reaped_and_leaves_no_files_behind() {
    let node = node_or_skip!(node());
    let spec = sleeper(&node, &[]).await;
    let mut pids = Vec::new();
    for tty in [false, true] {
        let mut short = exec(&["sleep", "1"]);
        short.tty = tty;
        short.stdin = true;
        let process = node.driver.exec(&spec.id, &short).await.unwrap();
        pids.push(process.pid.unwrap());
        drop(process);
    }
    let exec_dir = node.tmp.path().join("zones").join(&spec.id).join("exec");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let running = pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists());
        let files = std::fs::read_dir(&exec_dir).map_or(0, |d| d.count());
        let zombies = zombie_children();
        if !running && files == 0 && zombies.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "running {running}, {files} exec dirs, zombies {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.delete_all().await;
}
