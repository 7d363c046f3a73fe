//! The SmartOS driver's streams end to end, against the stand-ins of the
//! platform's tools (`testkit/smartos/standin.py`): a busybox image
//! imported with `imgadm`, a zone made with `vmadm create` and started, then
//! its log, exec, attach and files through [`ZoneStreams`]. Needs root (the
//! stand-ins chroot and make namespaces), python3 and busybox; skips
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_docker_testkit::smartos::Standins;
use sdc_docker_zones::smartos::{Commands, SmartosConfig};
use sdc_docker_zones::streams::{
    AttachOptions, ChangeKind, ExecSpec, ExtractOptions, LogEntry, LogOptions, Output, StdStream,
};
use sdc_docker_zones::{SmartosDriver, ZoneDriver, ZoneError, ZoneState, ZoneStreams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for a zone to get somewhere.
const DEADLINE: Duration = Duration::from_secs(20);
const BUSYBOX: &str = "/bin/busybox";
const IMAGE: &str = "2f0e3b7a-9c1d-4c55-8a0e-6f1b2c3d4e5f";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "env", "ls", "sleep", "printf", "pwd", "stty", "tty", "touch", "rm",
    "mkdir", "true", "false", "id",
];

/// The stand-ins of the testkit (their processes are killed when it
/// drops), with a busybox image installed.
struct Stand {
    _standins: Standins,
    root: PathBuf,
    driver: Arc<SmartosDriver>,
}

impl Stand {
    /// `None` (and a note why) when this machine cannot run the stand-ins.
    fn new() -> Option<Stand> {
        let have_python = Command::new("python3").arg("--version").output().is_ok();
        if !rustix::process::geteuid().is_root() || !have_python || !Path::new(BUSYBOX).is_file() {
            eprintln!("skipping: needs root, python3 and busybox");
            return None;
        }
        let standins = Standins::new();
        let root = standins.root().to_path_buf();
        let bin = root.join("bin");
        let tool = |name: &str| vec![bin.join(name).display().to_string()];
        let driver = SmartosDriver::new(SmartosConfig {
            commands: Commands {
                vmadm: tool("vmadm"),
                imgadm: tool("imgadm"),
                zfs: tool("zfs"),
                zlogin: tool("zlogin"),
                sysinfo: tool("sysinfo"),
            },
            zones_root: root.join("zones"),
            imgadm_db: root.join("var/imgadm/images"),
            poll_interval: Duration::from_millis(100),
            ..SmartosConfig::default()
        });
        let stand = Stand {
            _standins: standins,
            root,
            driver,
        };
        stand.install_busybox_image();
        Some(stand)
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(self.root.join("bin").join(tool))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(pipe);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A busybox tree in the stand-in image source, imported with imgadm.
    fn install_busybox_image(&self) {
        let tree = self.root.join("imgapi").join(IMAGE);
        for d in ["bin", "etc", "tmp", "srv"] {
            std::fs::create_dir_all(tree.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, tree.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
        }
        std::fs::write(
            tree.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tree.join("etc/group"), "root:x:0:\nbob:x:1000:\n").unwrap();
        std::fs::write(tree.join("srv/motd"), "hello from the image\n").unwrap();
        let manifest = json!({
            "v": 2, "uuid": IMAGE, "name": "busybox", "version": "1.0",
            "type": "lx-dataset", "os": "linux", "state": "active",
        });
        std::fs::write(
            self.root.join("imgapi").join(format!("{IMAGE}.json")),
            manifest.to_string(),
        )
        .unwrap();
        self.run("imgadm", &["import", "-q", IMAGE], None);
    }

    /// A docker zone running `cmd`, started.
    async fn zone(&self, cmd: &[&str], metadata: serde_json::Value) -> String {
        let id = uuid();
        let mut internal = json!({
            "docker:cmd": serde_json::to_string(cmd).unwrap(),
            "docker:env": serde_json::to_string(&["PATH=/bin", "ZONE=yes", "A=1"]).unwrap(),
        });
        if let (Some(internal), Some(extra)) = (internal.as_object_mut(), metadata.as_object()) {
            internal.extend(extra.clone());
        }
        let payload = json!({
            "uuid": id, "brand": "lx", "kernel_version": "3.13.0", "image_uuid": IMAGE,
            "alias": "streams", "docker": true, "autoboot": false,
            "max_physical_memory": 256, "internal_metadata": internal,
        });
        self.run("vmadm", &["create"], Some(&payload.to_string()));
        let zone = self.driver.start(&id).await.unwrap();
        assert_eq!(zone.state, ZoneState::Running, "{zone:?}");
        id
    }

    async fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let zone = self.driver.get(id).await.unwrap().unwrap();
            if zone.state == ZoneState::Stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "zone {id} still {:?}",
                zone.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        // Take down what a failed test left running.
        let vmadm = self.root.join("bin/vmadm");
        if let Ok(out) = Command::new(&vmadm)
            .args(["list", "-H", "-o", "uuid"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new(&vmadm).args(["delete", id]).output();
            }
        }
    }
}

fn uuid() -> String {
    let bytes: [u8; 16] = rand_bytes();
    let hex = hex_string(&bytes);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let mut file = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut file, &mut bytes).unwrap();
    bytes
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

macro_rules! stand_or_skip {
    () => {
        match Stand::new() {
            Some(stand) => stand,
            None => return,
        }
    };
}

fn exec(args: &[&str]) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..ExecSpec::default()
    }
}

/// Reads `output` to its end (within the deadline): (stdout, stderr).
async fn read_to_end(output: &mut Output) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = output.next().await {
            let chunk = chunk.unwrap();
            let text = String::from_utf8_lossy(&chunk.data);
            match chunk.stream {
                StdStream::Stdout => stdout.push_str(&text),
                StdStream::Stderr => stderr.push_str(&text),
            }
        }
    })
    .await
    .expect("output did not end in time");
    (stdout, stderr)
}

/// Reads `output` until `stdout` holds `want` (within the deadline).
async fn read_until(output: &mut Output, want: &str) -> String {
    let mut seen = String::new();
    tokio::time::timeout(DEADLINE, async {
        while !seen.contains(want) {
            match output.next().await {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().data)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} in time; saw {seen:?}"));
    assert!(
        seen.contains(want),
        "output ended without {want:?}: {seen:?}"
    );
    seen
}

fn texts(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).trim_end().to_string())
        .collect()
}

async fn all_logs(stand: &Stand, id: &str, options: LogOptions) -> Vec<LogEntry> {
    let stream = stand.driver.logs(id, options).await.unwrap();
    tokio::time::timeout(DEADLINE, stream.map(|e| e.unwrap()).collect::<Vec<_>>())
        .await
        .expect("the log did not end in time")
}

fn both() -> LogOptions {
    LogOptions {
        stdout: true,
        stderr: true,
        ..LogOptions::default()
    }
}

#[tokio::test]
async fn logs_give_both_streams_apart_honour_tail_and_follow_until_the_zone_exits() {
    let stand = stand_or_skip!();
    let id = stand
        .zone(
            &[
                "sh",
                "-c",
                "echo out1; echo err1 >&2; echo out2; sleep 1; echo late; sleep 1; echo last",
            ],
            json!({}),
        )
        .await;

    // Following from the start sees everything, and ends with the zone.
    let mut follow = stand
        .driver
        .logs(
            &id,
            LogOptions {
                follow: true,
                ..both()
            },
        )
        .await
        .unwrap();
    let mut followed = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(entry) = follow.next().await {
            followed.push(entry.unwrap());
        }
    })
    .await
    .expect("following did not end with the zone");
    // Each stream in its order (zoneadmd reads the two apart).
    let of = |stream| {
        let entries: Vec<LogEntry> = followed
            .iter()
            .filter(|e| e.stream == stream)
            .cloned()
            .collect();
        texts(&entries)
    };
    assert_eq!(of(StdStream::Stdout), ["out1", "out2", "late", "last"]);
    assert_eq!(of(StdStream::Stderr), ["err1"]);
    stand.wait_stopped(&id).await;

    let stderr_only = LogOptions {
        stderr: true,
        ..LogOptions::default()
    };
    assert_eq!(texts(&all_logs(&stand, &id, stderr_only).await), ["err1"]);
    let tail = LogOptions {
        tail: Some(2),
        ..both()
    };
    assert_eq!(texts(&all_logs(&stand, &id, tail).await), ["late", "last"]);

    let unknown = stand.driver.logs(&uuid(), both()).await;
    assert!(matches!(unknown, Err(ZoneError::NotFound { .. })));
}

#[tokio::test]
async fn logs_of_a_zone_whose_log_driver_is_none_cannot_be_read() {
    let stand = stand_or_skip!();
    let id = stand
        .zone(&["sleep", "1000"], json!({ "docker:logdriver": "none" }))
        .await;
    let error = stand.driver.logs(&id, both()).await.err();
    assert!(
        matches!(&error, Some(ZoneError::BadRequest(m)) if m == "configured logging driver does not support reading"),
        "{error:?}"
    );
}

#[tokio::test]
async fn exec_runs_in_the_zones_environment_splits_the_streams_and_reports_the_exit_code() {
    let stand = stand_or_skip!();
    let id = stand.zone(&["sleep", "1000"], json!({})).await;

    let mut spec = exec(&[
        "sh",
        "-c",
        "echo \"$ZONE $A $PWD\" \"$1\"; echo oops >&2; exit 3",
        "sh",
        "it's a 'word'",
    ]);
    spec.env = vec!["A=2".to_string()];
    spec.workdir = "/tmp".to_string();
    let mut process = stand.driver.exec(&id, &spec).await.unwrap();
    let (stdout, stderr) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "yes 2 /tmp it's a 'word'\n");
    assert_eq!(stderr, "oops\n");
    assert_eq!(process.exit.await.unwrap(), 3);

    // Another user, by name.
    let mut spec = exec(&["id", "-u"]);
    spec.user = "bob".to_string();
    let mut process = stand.driver.exec(&id, &spec).await;
    // The stand-in image has no su: zlogin could not switch users.
    assert!(
        matches!(process, Err(ZoneError::BadRequest(_))),
        "{:?}",
        process.as_ref().err()
    );
    // A missing command is the launcher's 127.
    process = stand.driver.exec(&id, &exec(&["no-such-command"])).await;
    let mut process = process.unwrap();
    let (_, stderr) = read_to_end(&mut process.session.output).await;
    assert!(!stderr.is_empty());
    assert_eq!(process.exit.await.unwrap(), 127);

    stand
        .driver
        .stop(&id, "SIGKILL", Duration::from_secs(5))
        .await
        .unwrap();
    let stopped = stand.driver.exec(&id, &exec(&["true"])).await;
    assert!(matches!(stopped, Err(ZoneError::WrongState { .. })));
}

#[tokio::test]
async fn exec_stdin_reaches_the_process_and_a_tty_exec_has_a_pty_that_resize_sizes() {
    let stand = stand_or_skip!();
    let id = stand.zone(&["sleep", "1000"], json!({})).await;

    let mut spec = exec(&["cat"]);
    spec.stdin = true;
    let mut process = stand.driver.exec(&id, &spec).await.unwrap();
    let mut input = process.session.input.take().unwrap();
    input.write_all(b"through stdin\n").await.unwrap();
    input.shutdown().await.unwrap();
    let (stdout, _) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "through stdin\n");
    assert_eq!(process.exit.await.unwrap(), 0);

    let mut spec = exec(&[
        "sh",
        "-c",
        "tty; echo \"TERM=$TERM\"; read go; stty size; exit 5",
    ]);
    spec.tty = true;
    spec.stdin = true;
    let mut process = stand.driver.exec(&id, &spec).await.unwrap();
    let resize = process.resize.take().expect("a tty exec can be resized");
    let mut input = process.session.input.take().unwrap();
    let seen = read_until(&mut process.session.output, "TERM=xterm").await;
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    // zlogin copies its terminal's size to the zone's pty on SIGWINCH.
    resize(30, 100).unwrap();
    input.write_all(b"go\n").await.unwrap();
    read_until(&mut process.session.output, "30 100").await;
    read_to_end(&mut process.session.output).await;
    assert_eq!(process.exit.await.unwrap(), 5);
}

#[tokio::test]
async fn attach_streams_the_inits_output_apart_and_feeds_its_stdin() {
    let stand = stand_or_skip!();
    let id = stand
        .zone(
            &[
                "sh",
                "-c",
                "while read line; do echo \"got $line\"; echo \"err $line\" >&2; done",
            ],
            json!({ "docker:open_stdin": true }),
        )
        .await;
    let options = AttachOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        stdin_once: true,
    };
    let mut session = stand.driver.attach(&id, options).await.unwrap();
    let mut input = session.input.take().unwrap();
    input.write_all(b"one\n").await.unwrap();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    tokio::time::timeout(DEADLINE, async {
        while !(stdout.contains("got one") && stderr.contains("err one")) {
            let chunk = session.output.next().await.expect("output ended").unwrap();
            let text = String::from_utf8_lossy(&chunk.data).into_owned();
            match chunk.stream {
                StdStream::Stdout => stdout.push_str(&text),
                StdStream::Stderr => stderr.push_str(&text),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no echo in time: {stdout:?} {stderr:?}"));
    assert!(!stdout.contains("err one") && !stderr.contains("got one"));

    // stdin_once: closing ours closes the init's, and the zone ends.
    input.shutdown().await.unwrap();
    read_to_end(&mut session.output).await;
    stand.wait_stopped(&id).await;
    stand.driver.resize(&id, 30, 100).await.unwrap_err();
    let stopped = stand.driver.attach(&id, options).await;
    assert!(matches!(stopped, Err(ZoneError::WrongState { .. })));
}

#[tokio::test]
async fn files_round_trip_through_archive_and_extract_and_show_in_changes() {
    let stand = stand_or_skip!();
    let id = stand.zone(&["sleep", "1000"], json!({})).await;

    let stat = stand.driver.stat_path(&id, "/srv/motd").await.unwrap();
    assert_eq!((stat.name.as_str(), stat.size), ("motd", 21));
    assert!(matches!(
        stand.driver.stat_path(&id, "/nope").await,
        Err(ZoneError::NoSuchPath { .. })
    ));

    let (stat, mut tar) = stand.driver.archive(&id, "/srv").await.unwrap();
    assert_eq!(stat.name, "srv");
    let mut bytes = Vec::new();
    tar.read_to_end(&mut bytes).await.unwrap();
    stand
        .driver
        .extract(
            &id,
            "/tmp",
            Box::pin(std::io::Cursor::new(bytes)),
            ExtractOptions::default(),
        )
        .await
        .unwrap();
    let mut process = stand
        .driver
        .exec(&id, &exec(&["cat", "/tmp/srv/motd"]))
        .await
        .unwrap();
    let (stdout, _) = read_to_end(&mut process.session.output).await;
    assert_eq!(stdout, "hello from the image\n");

    let mut process = stand
        .driver
        .exec(&id, &exec(&["rm", "/srv/motd"]))
        .await
        .unwrap();
    read_to_end(&mut process.session.output).await;
    assert_eq!(process.exit.await.unwrap(), 0);
    let changes: Vec<(String, ChangeKind)> = stand
        .driver
        .changes(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    assert_eq!(
        changes,
        [
            ("/srv".to_string(), ChangeKind::Modified),
            ("/srv/motd".to_string(), ChangeKind::Deleted),
            ("/tmp".to_string(), ChangeKind::Modified),
            ("/tmp/srv".to_string(), ChangeKind::Added),
            ("/tmp/srv/motd".to_string(), ChangeKind::Added),
        ]
    );

    let mut export = stand.driver.export(&id).await.unwrap();
    let mut bytes = Vec::new();
    export.read_to_end(&mut bytes).await.unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    // Nothing of what is mounted on /proc.
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n != "proc/"),
        "{names:?}"
    );
}
