//! `ZoneStreams` over the network: the linux driver behind a real
//! `remote::Server` on loopback, driven only through `RemoteStreams`, with
//! real `runc`, the real monitor and real processes. Each test compares
//! what crosses the wire with what the zone did. Needs root, runc, busybox,
//! `docker-registry` and the monitor binary; skips otherwise.

mod support;

use std::sync::Arc;

use futures::StreamExt;
use sdc_docker_testkit::{Format, busybox};
use sdc_docker_zones::remote::{RemoteStreams, Server, Token};
use sdc_docker_zones::streams::{
    AttachOptions, ByteStream, ChangeKind, ExecSpec, ExtractOptions, LogOptions, Output, StdStream,
    ZoneStreams,
};
use sdc_docker_zones::{LinuxConfig, LinuxDriver, ZoneError, ZoneState};
use support::{DEADLINE, Node, NodeBuilder, RUNC, monitor_binary, node_or_skip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn node() -> NodeBuilder {
    Node::pulled(busybox::layered(Format::Docker))
}

/// A server for a second driver on the node's root (as a node serves its
/// own driver), and the client that reaches it with its token.
async fn served(node: &Node) -> (Server, RemoteStreams) {
    let driver = LinuxDriver::new(LinuxConfig {
        root: node.root(),
        runtime: RUNC.into(),
        runtime_root: node.tmp.path().join("runc"),
        monitor_binary: monitor_binary(),
    })
    .unwrap();
    let token = Token::generate();
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(driver),
        token.clone(),
    )
    .await
    .unwrap();
    let remote = RemoteStreams::new(server.address().to_string(), token);
    (server, remote)
}

/// Everything left on `output`, by stream.
async fn read_to_end(output: &mut Output) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let all = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = output.next().await {
            let chunk = chunk.unwrap();
            let text = String::from_utf8_lossy(&chunk.data);
            match chunk.stream {
                StdStream::Stdout => stdout.push_str(&text),
                StdStream::Stderr => stderr.push_str(&text),
            }
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

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    bytes
}

#[tokio::test]
async fn a_remote_exec_splits_its_output_by_stream_and_reports_the_exit_code() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node.zone("sleep 1000").start().await;
    let mut process = remote
        .exec(
            &spec.id,
            &exec(&["sh", "-c", "echo hi; echo err >&2; exit 3"]),
        )
        .await
        .unwrap();
    assert!(process.pid.is_some_and(|p| p > 0), "{:?}", process.pid);
    assert!(process.session.input.is_none());
    assert!(process.resize.is_none());
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert_eq!((stdout.as_str(), stderr.as_str()), ("hi\n", "err\n"));
    assert_eq!(process.exit.await.unwrap(), 3);
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn a_remote_execs_stdin_reaches_the_process_and_closing_it_ends_the_process() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node.zone("sleep 1000").start().await;
    let mut cat = exec(&["cat"]);
    cat.stdin = true;
    let mut process = remote.exec(&spec.id, &cat).await.unwrap();
    let mut input = process.session.input.take().expect("stdin was asked for");
    input.write_all(b"through the wire\n").await.unwrap();
    input.shutdown().await.unwrap();
    let output = read_to_end(&mut process.session.output).await;
    assert_eq!(output, ("through the wire\n".into(), String::new()));
    assert_eq!(process.exit.await.unwrap(), 0);
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn a_remote_attach_receives_the_zones_output_and_sends_it_stdin() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node
        .zone("read x; echo \"out $x\"; echo \"err $x\" >&2")
        .open_stdin()
        .start()
        .await;
    let session = remote
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
    // The zone's process exits after its two lines: the output ends.
    let (stdout, stderr) = read_to_end(&mut output).await;
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("out hello\n", "err hello\n")
    );
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    assert_eq!(info.exit_code, Some(0));
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn remote_logs_are_the_zones_log_with_its_streams_and_times() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let id = node.run("echo one; echo two >&2; echo three").await;
    node.wait_for(&id, ZoneState::Stopped).await;
    let options = LogOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let local = node.logs(&id, options.clone()).await;
    let entries = remote.logs(&id, options).await.unwrap();
    let remote_entries: Vec<_> = tokio::time::timeout(DEADLINE, entries.collect::<Vec<_>>())
        .await
        .expect("the log ends")
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(local.len(), 3);
    assert_eq!(remote_entries, local);

    let tail = LogOptions {
        stdout: true,
        tail: Some(1),
        ..Default::default()
    };
    let last: Vec<_> = remote.logs(&id, tail).await.unwrap().collect().await;
    assert_eq!(last.len(), 1);
    assert_eq!(&last[0].as_ref().unwrap().data[..], b"three\n");
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn files_copied_in_through_the_wire_come_back_out_and_show_as_changes() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node.zone("sleep 1000").start().await;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "greeting.txt", &b"hello\n"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    remote
        .extract(
            &spec.id,
            "/tmp",
            Box::pin(std::io::Cursor::new(tar)),
            ExtractOptions::default(),
        )
        .await
        .unwrap();

    let stat = remote
        .stat_path(&spec.id, "/tmp/greeting.txt")
        .await
        .unwrap();
    assert_eq!((stat.name.as_str(), stat.size), ("greeting.txt", 6));
    let (stat, tar) = remote.archive(&spec.id, "/tmp/greeting.txt").await.unwrap();
    assert_eq!(stat.size, 6);
    let bytes = read_all(tar).await;
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut entries = archive.entries().unwrap();
    let mut entry = entries.next().expect("one entry").unwrap();
    assert_eq!(&*entry.path_bytes(), b"greeting.txt");
    let mut contents = String::new();
    std::io::Read::read_to_string(&mut entry, &mut contents).unwrap();
    assert_eq!(contents, "hello\n");

    let changes = remote.changes(&spec.id).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.path == "/tmp/greeting.txt" && c.kind == ChangeKind::Added),
        "{changes:?}"
    );
    let export = read_all(remote.export(&spec.id).await.unwrap()).await;
    let mut exported = tar::Archive::new(&export[..]);
    assert!(
        exported
            .entries()
            .unwrap()
            .any(|e| e.unwrap().path_bytes().ends_with(b"tmp/greeting.txt")),
        "the export holds the copied file"
    );
    let stats = remote.stats(&spec.id).await.unwrap();
    assert!(stats.pids_current >= 1, "{stats:?}");
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn the_drivers_errors_cross_the_wire_as_the_same_variants() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let err = remote.stats("nosuchzone").await.unwrap_err();
    assert!(
        matches!(&err, ZoneError::NotFound { id } if id == "nosuchzone"),
        "{err:?}"
    );
    let err = remote
        .attach("nosuchzone", AttachOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ZoneError::NotFound { .. }), "{err:?}");

    let spec = node.zone("sleep 1000").start().await;
    let err = remote.stat_path(&spec.id, "/nope").await.unwrap_err();
    assert!(
        matches!(&err, ZoneError::NoSuchPath { path, .. } if path == "/nope"),
        "{err:?}"
    );
    let err = remote.resize(&spec.id, 10, 10).await.unwrap_err();
    assert!(
        matches!(&err, ZoneError::BadRequest(m) if m.contains("no tty")),
        "{err:?}"
    );

    let stopped = node.run("true").await;
    node.wait_for(&stopped, ZoneState::Stopped).await;
    let err = remote.exec(&stopped, &exec(&["true"])).await.err().unwrap();
    assert!(
        matches!(
            err,
            ZoneError::WrongState {
                op: "exec",
                state: ZoneState::Stopped,
                ..
            }
        ),
        "{err:?}"
    );
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn a_request_without_the_nodes_token_is_refused() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node.zone("sleep 1000").start().await;
    let stranger = RemoteStreams::new(remote.address(), Token::generate());
    let err = stranger.stats(&spec.id).await.unwrap_err();
    assert!(
        matches!(&err, ZoneError::Runtime { op, message } if op.contains("authenticating") && message.contains("token")),
        "{err:?}"
    );
    let err = stranger
        .exec(&spec.id, &exec(&["touch", "/tmp/should-not-exist"]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ZoneError::Runtime { .. }), "{err:?}");
    let err = remote
        .stat_path(&spec.id, "/tmp/should-not-exist")
        .await
        .unwrap_err();
    assert!(matches!(err, ZoneError::NoSuchPath { .. }), "{err:?}");
    // The right token still works.
    assert!(remote.stats(&spec.id).await.is_ok());
    server.stop().await;
    node.delete_all().await;
}

#[tokio::test]
async fn a_remote_tty_exec_takes_the_size_its_resize_sets() {
    let node = node_or_skip!(node());
    let (server, remote) = served(&node).await;
    let spec = node.zone("sleep 1000").start().await;
    // A resize reaches the pty asynchronously (runc applies it on
    // SIGWINCH): the script waits for it to show, and times out otherwise.
    let mut shell = exec(&[
        "sh",
        "-c",
        "read x; i=0; \
         until [ \"$(busybox stty size)\" = '33 77' ] || [ $i = 200 ]; do sleep 0.05; i=$((i+1)); done; \
         busybox stty size",
    ]);
    shell.tty = true;
    shell.stdin = true;
    let mut process = remote.exec(&spec.id, &shell).await.unwrap();
    let resize = process.resize.take().expect("a tty exec resizes");
    resize(33, 77).unwrap();
    let mut input = process.session.input.take().expect("stdin was asked for");
    input.write_all(b"go\n").await.unwrap();
    let (stdout, _) = read_to_end(&mut process.session.output).await;
    assert!(stdout.contains("33 77"), "{stdout:?}");
    assert_eq!(process.exit.await.unwrap(), 0);
    server.stop().await;
    node.delete_all().await;
}
