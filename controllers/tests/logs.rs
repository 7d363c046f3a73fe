//! Log forwarding against real local endpoints: a UDP socket for syslog and
//! GELF, TCP listeners for syslog over TCP and fluentd (decoded with a tiny
//! msgpack reader here). Host logs are written by hand in Docker's
//! json-file format and rotated as the monitor rotates them. Real time,
//! every wait a condition with a deadline.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sdc_docker_controllers::Manager;
use sdc_docker_controllers::logs::fluentd::{FluentdConfig, FluentdEndpoint};
use sdc_docker_controllers::logs::gelf::{CHUNK_SIZE, GelfConfig, GelfEndpoint};
use sdc_docker_controllers::logs::syslog::{SyslogConfig, SyslogEndpoint};
use sdc_docker_controllers::logs::{
    Checkpoint, ContainerInfo, Endpoint, ForwardOptions, ForwardStats, LogFollower,
    LogForwardingOptions, LogPaths, Mode, forward, log_forwarding_controller,
};
use sdc_docker_store::model::{Container, ContainerSpec, ContainerState, LogConfig};
use sdc_docker_store::{Api, Resource};
use sdc_docker_testkit::wait_for;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);

/// A json-file host log written the way the monitor writes it.
struct HostLog {
    path: PathBuf,
}

impl HostLog {
    fn new(dir: &Path) -> Self {
        HostLog {
            path: dir.join("c-json.log"),
        }
    }

    fn write(&self, stream: &str, text: &str) {
        let entry = serde_json::json!({
            "log": format!("{text}\n"),
            "stream": stream,
            "time": "2026-11-23T01:02:03.123456789Z",
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open the host log");
        writeln!(file, "{entry}").expect("append to the host log");
    }

    fn lines(&self, range: std::ops::Range<usize>) {
        for n in range {
            self.write("stdout", &format!("line {n}"));
        }
    }

    /// `path.n` → `path.n+1` for the kept files, then `path` → `path.1`;
    /// the next write creates a new `path`.
    fn rotate(&self, max_files: u32) {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..max_files - 1).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1)).expect("rotate");
    }
}

/// A forwarding loop on its own task.
struct Forwarding {
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
    stats: Arc<ForwardStats>,
}

impl Forwarding {
    async fn start(
        log: &HostLog,
        state: &Path,
        endpoint: Box<dyn Endpoint>,
        options: ForwardOptions,
    ) -> Forwarding {
        let checkpoint = Checkpoint::load(state).await;
        let follower = LogFollower::new(&log.path, checkpoint.position())
            .poll_interval(Duration::from_millis(20));
        let (mode, rx) = watch::channel(Mode::Follow);
        let stats = Arc::new(ForwardStats::default());
        let task = tokio::spawn({
            let stats = stats.clone();
            async move {
                forward(follower, checkpoint, endpoint, options, rx, stats)
                    .await
                    .expect("forwarding");
            }
        });
        Forwarding { mode, task, stats }
    }

    async fn stop(self) {
        self.mode.send_replace(Mode::Stop);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("forwarding stops in time")
            .expect("forwarding task");
    }
}

fn syslog(address: &str) -> SyslogConfig {
    let options: BTreeMap<String, String> = [("syslog-address".to_owned(), address.to_owned())]
        .into_iter()
        .collect();
    SyslogConfig::from_options(&options, "web".into()).expect("syslog config")
}

/// Every datagram arriving at a UDP socket, in order.
async fn udp_receiver() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let port = socket.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0; 65536];
        while let Ok(n) = socket.recv(&mut buf).await {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// Every newline-ended line arriving on any connection to a TCP listener.
fn tcp_line_receiver(listener: TcpListener) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("receiver closed waiting for {what}"))
}

/// The message part of a syslog line: what follows `tag[pid]: `.
fn syslog_text(line: &str) -> &str {
    line.split_once("]: ").map_or(line, |(_, text)| text)
}

async fn receive_syslog_texts(rx: &mut mpsc::UnboundedReceiver<String>, n: usize) -> Vec<String> {
    let mut texts = Vec::new();
    for i in 0..n {
        let line = recv(rx, &format!("syslog line #{i}")).await;
        texts.push(syslog_text(&line).to_owned());
    }
    texts
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("line {n}")).collect()
}

#[tokio::test]
async fn syslog_over_udp_sends_each_line_as_one_datagram_in_mobys_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    log.write("stdout", "hello");
    log.write("stderr", "oops");
    let (port, mut rx) = udp_receiver().await;
    let endpoint = SyslogEndpoint::new(syslog(&format!("udp://127.0.0.1:{port}")));
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(endpoint),
        ForwardOptions::default(),
    )
    .await;

    let pid = std::process::id();
    let first = String::from_utf8(recv(&mut rx, "the first datagram").await).expect("utf-8");
    assert_eq!(first, format!("<30>Nov 23 01:02:03 web[{pid}]: hello\n"));
    let second = String::from_utf8(recv(&mut rx, "the second datagram").await).expect("utf-8");
    assert_eq!(second, format!("<27>Nov 23 01:02:03 web[{pid}]: oops\n"));
    forwarding.stop().await;
}

#[tokio::test]
async fn syslog_over_tcp_sends_newline_ended_lines_and_survives_rotations_without_loss_or_duplicates()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut rx = tcp_line_receiver(listener);
    log.lines(0..5);
    let endpoint = SyslogEndpoint::new(syslog(&format!("tcp://127.0.0.1:{port}")));
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(endpoint),
        ForwardOptions::default(),
    )
    .await;
    assert_eq!(receive_syslog_texts(&mut rx, 5).await, expected(0..5));

    // Six rotations faster than the follower polls: it finds its file
    // renamed to `path.6` and reads the five newer ones after it.
    for batch in 0..6 {
        let start = 5 + batch * 10;
        log.lines(start..start + 5);
        log.rotate(10);
        log.lines(start + 5..start + 10);
    }
    assert_eq!(receive_syslog_texts(&mut rx, 60).await, expected(5..65));
    log.lines(65..66);
    assert_eq!(receive_syslog_texts(&mut rx, 1).await, expected(65..66));
    forwarding.stop().await;
}

#[tokio::test]
async fn when_rotations_drop_files_before_they_are_read_the_forwarder_goes_on_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut rx = tcp_line_receiver(listener);
    log.lines(0..5);
    let endpoint = SyslogEndpoint::new(syslog(&format!("tcp://127.0.0.1:{port}")));
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(endpoint),
        ForwardOptions::default(),
    )
    .await;
    assert_eq!(receive_syslog_texts(&mut rx, 5).await, expected(0..5));

    // Only three files are kept: most of these are gone before the
    // follower looks.
    for batch in 0..6 {
        let start = 5 + batch * 10;
        log.lines(start..start + 5);
        log.rotate(3);
        log.lines(start + 5..start + 10);
    }
    log.lines(65..66);
    let mut seen: Vec<usize> = Vec::new();
    while seen.last() != Some(&65) {
        let line = recv(&mut rx, "line 65").await;
        let n = syslog_text(&line)
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .expect("a numbered line");
        seen.push(n);
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated: {seen:?}"
    );
    assert!(seen.len() >= 21, "the three kept files were read: {seen:?}");
    forwarding.stop().await;
}

#[tokio::test]
async fn a_restarted_forwarder_resumes_after_its_saved_position_across_a_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let log = HostLog::new(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut rx = tcp_line_receiver(listener);
    let address = format!("tcp://127.0.0.1:{port}");
    log.lines(0..10);
    let first = Forwarding::start(
        &log,
        &state,
        Box::new(SyslogEndpoint::new(syslog(&address))),
        ForwardOptions::default(),
    )
    .await;
    assert_eq!(receive_syslog_texts(&mut rx, 10).await, expected(0..10));
    first.stop().await;

    // While no forwarder runs: more lines, a rotation, more lines.
    log.lines(10..15);
    log.rotate(3);
    log.lines(15..20);
    let second = Forwarding::start(
        &log,
        &state,
        Box::new(SyslogEndpoint::new(syslog(&address))),
        ForwardOptions::default(),
    )
    .await;
    // TCP keeps order: a duplicate would come before line 10.
    assert_eq!(receive_syslog_texts(&mut rx, 10).await, expected(10..20));
    log.lines(20..21);
    assert_eq!(receive_syslog_texts(&mut rx, 1).await, expected(20..21));
    second.stop().await;
}

/// A msgpack value of the kinds the Forward protocol messages use.
#[derive(Debug, PartialEq)]
enum Msgpack {
    Uint(u64),
    Str(String),
    Array(Vec<Msgpack>),
    Map(Vec<(Msgpack, Msgpack)>),
}

/// Reads one msgpack value of the kinds above.
async fn read_msgpack(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Msgpack> {
    let tag = r.read_u8().await?;
    Ok(match tag {
        0x00..=0x7f => Msgpack::Uint(u64::from(tag)),
        0xcc => Msgpack::Uint(u64::from(r.read_u8().await?)),
        0xcd => Msgpack::Uint(u64::from(r.read_u16().await?)),
        0xce => Msgpack::Uint(u64::from(r.read_u32().await?)),
        0xcf => Msgpack::Uint(r.read_u64().await?),
        0xa0..=0xbf | 0xd9 | 0xda | 0xdb => {
            let len = match tag {
                0xd9 => usize::from(r.read_u8().await?),
                0xda => usize::from(r.read_u16().await?),
                0xdb => r.read_u32().await? as usize,
                _ => usize::from(tag & 0x1f),
            };
            let mut bytes = vec![0; len];
            r.read_exact(&mut bytes).await?;
            Msgpack::Str(String::from_utf8(bytes).expect("utf-8 string"))
        }
        0x90..=0x9f => {
            let mut items = Vec::new();
            for _ in 0..(tag & 0x0f) {
                items.push(Box::pin(read_msgpack(r)).await?);
            }
            Msgpack::Array(items)
        }
        0x80..=0x8f => {
            let mut entries = Vec::new();
            for _ in 0..(tag & 0x0f) {
                let key = Box::pin(read_msgpack(r)).await?;
                let value = Box::pin(read_msgpack(r)).await?;
                entries.push((key, value));
            }
            Msgpack::Map(entries)
        }
        other => panic!("unexpected msgpack tag {other:#x}"),
    })
}

fn str(s: &str) -> Msgpack {
    Msgpack::Str(s.to_owned())
}

#[tokio::test]
async fn fluentd_lines_written_while_the_server_is_down_arrive_once_it_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    // A free port, closed until the "server" starts.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let info = ContainerInfo {
        id: "f".repeat(64),
        name: "web".into(),
        ..Default::default()
    };
    let config = FluentdConfig::new(&format!("127.0.0.1:{port}"), "docker.web".into(), &info)
        .expect("fluentd config");
    let options = ForwardOptions {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        ..ForwardOptions::default()
    };
    log.write("stdout", "one");
    log.write("stderr", "two");
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(FluentdEndpoint::new(config)),
        options,
    )
    .await;
    let stats = forwarding.stats.clone();
    wait_for(DEADLINE, "a failed send to the absent server", || {
        let stats = stats.clone();
        async move { stats.failures.load(std::sync::atomic::Ordering::Relaxed) > 0 }
    })
    .await;

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the fluentd port");
    let (mut stream, _): (TcpStream, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("the forwarder reconnects")
        .expect("accept");
    for (source, text) in [("stdout", "one"), ("stderr", "two")] {
        let message = tokio::time::timeout(DEADLINE, read_msgpack(&mut stream))
            .await
            .expect("a message in time")
            .expect("a msgpack message");
        let Msgpack::Array(items) = message else {
            panic!("not an array: {message:?}");
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], str("docker.web"));
        assert!(matches!(items[1], Msgpack::Uint(t) if t == 1_795_395_723));
        assert_eq!(
            items[2],
            Msgpack::Map(vec![
                (str("container_id"), str(&"f".repeat(64))),
                (str("container_name"), str("/web")),
                (str("source"), str(source)),
                (str("log"), str(text)),
            ])
        );
    }
    forwarding.stop().await;
}

#[tokio::test]
async fn lines_beyond_the_buffer_are_dropped_and_counted_while_the_endpoint_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let config = FluentdConfig::new(
        &format!("127.0.0.1:{port}"),
        "t".into(),
        &ContainerInfo::default(),
    )
    .expect("fluentd config");
    let options = ForwardOptions {
        buffer_lines: 2,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
    };
    log.lines(0..10);
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(FluentdEndpoint::new(config)),
        options,
    )
    .await;
    let stats = forwarding.stats.clone();
    // One line held by the sender, two buffered, the rest dropped.
    wait_for(DEADLINE, "seven or eight dropped lines", || {
        let stats = stats.clone();
        async move { stats.dropped.load(std::sync::atomic::Ordering::Relaxed) >= 7 }
    })
    .await;
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed) as usize;
    assert!(dropped <= 8, "{dropped} dropped");

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the fluentd port");
    let (mut stream, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("the forwarder reconnects")
        .expect("accept");
    let mut texts = Vec::new();
    for _ in 0..10 - dropped {
        let message = tokio::time::timeout(DEADLINE, read_msgpack(&mut stream))
            .await
            .expect("a message in time")
            .expect("a msgpack message");
        let Msgpack::Array(items) = message else {
            panic!("not an array: {message:?}");
        };
        let Some(Msgpack::Map(record)) = items.get(2) else {
            panic!("no record: {items:?}");
        };
        texts.push(
            record
                .iter()
                .find(|(k, _)| *k == str("log"))
                .map(|(_, v)| format!("{v:?}"))
                .expect("a log field"),
        );
    }
    assert_eq!(texts[0], format!("{:?}", str("line 0")));
    forwarding.stop().await;
}

/// GELF datagrams reassembled into messages (chunks by message id).
fn reassemble(datagrams: &[Vec<u8>]) -> Vec<serde_json::Value> {
    // Message id → (sequence number, chunk body).
    let mut chunks: BTreeMap<[u8; 8], Vec<(u8, Vec<u8>)>> = BTreeMap::new();
    let mut messages = Vec::new();
    let gunzip = |bytes: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gzip");
        serde_json::from_slice::<serde_json::Value>(&out).expect("GELF JSON")
    };
    for d in datagrams {
        assert!(d.len() <= CHUNK_SIZE, "a datagram of {} bytes", d.len());
        if d.starts_with(&[0x1e, 0x0f]) {
            let id: [u8; 8] = d[2..10].try_into().expect("id");
            let entry = chunks.entry(id).or_default();
            entry.push((d[10], d[12..].to_vec()));
            if entry.len() == usize::from(d[11]) {
                entry.sort_by_key(|(seq, _)| *seq);
                let whole: Vec<u8> = entry.iter().flat_map(|(_, b)| b.clone()).collect();
                messages.push(gunzip(&whole));
            }
        } else {
            messages.push(gunzip(d));
        }
    }
    messages
}

#[tokio::test]
async fn gelf_messages_carry_mobys_fields_and_a_large_one_arrives_chunked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = HostLog::new(dir.path());
    // Random text compresses poorly: well over one datagram.
    let large: String = (0..4000)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    log.write("stderr", "small");
    log.write("stdout", &large);
    let (port, mut rx) = udp_receiver().await;
    let info = ContainerInfo {
        id: "a".repeat(64),
        name: "web".into(),
        image_id: "sha256:1234".into(),
        image_name: "busybox".into(),
        command: "sh -c date".into(),
        created: None,
    };
    let config = GelfConfig::new(
        &format!("udp://127.0.0.1:{port}"),
        "cn1".into(),
        "aaaaaaaaaaaa".into(),
        info,
    )
    .expect("gelf config");
    let forwarding = Forwarding::start(
        &log,
        &dir.path().join("state.json"),
        Box::new(GelfEndpoint::new(config)),
        ForwardOptions::default(),
    )
    .await;
    let mut datagrams = Vec::new();
    let messages = loop {
        datagrams.push(recv(&mut rx, "GELF datagrams").await);
        let messages = reassemble(&datagrams);
        if messages.len() == 2 {
            break messages;
        }
    };
    assert!(datagrams.len() > 2, "the large message was chunked");
    let small = &messages[0];
    assert_eq!(small["version"], "1.1");
    assert_eq!(small["host"], "cn1");
    assert_eq!(small["short_message"], "small");
    assert_eq!(small["level"], 3);
    assert_eq!(small["timestamp"], 1_795_395_723.123);
    assert_eq!(small["_container_id"], "a".repeat(64));
    assert_eq!(small["_container_name"], "web");
    assert_eq!(small["_image_id"], "sha256:1234");
    assert_eq!(small["_image_name"], "busybox");
    assert_eq!(small["_command"], "sh -c date");
    assert_eq!(small["_tag"], "aaaaaaaaaaaa");
    assert_eq!(messages[1]["short_message"], large.as_str());
    assert_eq!(messages[1]["level"], 6);
    forwarding.stop().await;
}

/// Host logs under a temp dir, one folder per container name.
struct TestPaths(PathBuf);

impl LogPaths for TestPaths {
    fn host_log(&self, container: &Container) -> Option<PathBuf> {
        Some(self.0.join(&container.metadata.name).join("c-json.log"))
    }
    fn state_dir(&self, container: &Container) -> Option<PathBuf> {
        Some(self.0.join(&container.metadata.name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_forwards_a_syslog_container_on_its_node_and_stops_when_it_is_deleted() {
    let (store, _store_dir) = embedded();
    let logs = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(logs.path().join("web")).expect("mkdir");
    let log = HostLog::new(&logs.path().join("web"));
    let (port, mut rx) = udp_receiver().await;

    let mut options = LogForwardingOptions::new("cn1", "cn1.example.com");
    options.poll = Duration::from_millis(20);
    let forwarders = options.forwarders.clone();
    let mut manager = Manager::new(store.clone(), support::options("a", DEADLINE));
    manager.add(log_forwarding_controller(
        Arc::new(TestPaths(logs.path().to_path_buf())),
        options,
    ));
    let running = Running::start(manager);

    let api = Api::<Container>::default_account(store.clone());
    let spec = ContainerSpec {
        id: "b".repeat(64),
        image: "busybox".into(),
        log_config: LogConfig {
            type_: "syslog".into(),
            config: [
                (
                    "syslog-address".to_owned(),
                    format!("udp://127.0.0.1:{port}"),
                ),
                ("syslog-tag".to_owned(), "{{.Name}}".to_owned()),
            ]
            .into_iter()
            .collect(),
        },
        ..Default::default()
    };
    let mut container = api
        .create(&Container::new("web", spec))
        .await
        .expect("create");
    log.write("stdout", "before placement");
    container.status.node = "cn1".into();
    container.status.state = ContainerState::Running;
    api.update_status(&container).await.expect("place and run");

    let first = String::from_utf8(recv(&mut rx, "the first line").await).expect("utf-8");
    assert!(
        first.ends_with(&format!("web[{}]: before placement\n", std::process::id())),
        "{first:?}"
    );
    log.write("stdout", "while running");
    let second = String::from_utf8(recv(&mut rx, "the second line").await).expect("utf-8");
    assert!(second.ends_with("]: while running\n"), "{second:?}");

    // A new tag: the task restarts from its saved position, and each line
    // still arrives exactly once, in order.
    let mut container = api.get("web").await.expect("get");
    container
        .spec
        .log_config
        .config
        .insert("syslog-tag".into(), "changed".into());
    api.replace(&container).await.expect("change the tag");
    let mut texts = Vec::new();
    for n in 0.. {
        log.write("stdout", &format!("probe {n}"));
        let line = String::from_utf8(recv(&mut rx, "a probe line").await).expect("utf-8");
        texts.push(syslog_text(&line).trim_end().to_owned());
        if line.contains(" changed[") {
            break;
        }
    }
    let probes: Vec<String> = (0..texts.len()).map(|n| format!("probe {n}")).collect();
    assert_eq!(texts, probes);

    api.delete("web", None).await.expect("delete");
    wait_for(DEADLINE, "forwarding to stop", || {
        let forwarders = forwarders.clone();
        async move { forwarders.active().is_empty() }
    })
    .await;
    log.write("stdout", "after deletion");
    // The task has ended (stopping waits for it): nothing more is sent.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "a line was forwarded after the container was deleted"
    );
    running.stop().await;
}
