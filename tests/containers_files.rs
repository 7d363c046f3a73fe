//! A container's files and resources with the real docker CLI: `docker cp`
//! both ways, `docker diff`, `docker export`, `docker pause`/`unpause`,
//! `docker update` and `docker stats`, and their errors as the CLI prints
//! them. Needs root and runc; skipped with a message otherwise.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::node::{Node, can_run_zones};

/// The container `name` as the admin API has it (spec and status).
fn stored(node: &Node, name: &str) -> serde_json::Value {
    let out = node.server.sdc(&["get", "container", name, "-o", "json"]);
    assert!(out.ok, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// Runs `docker args` until its output satisfies `want` (30 s at most); the
/// last output.
async fn until_docker(
    node: &Node,
    args: &[&str],
    want: impl Fn(&common::Ran) -> bool,
) -> common::Ran {
    let start = Instant::now();
    loop {
        let out = node.docker(args);
        if want(&out) {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "docker {args:?} never gave what was wanted: {out:?}\n{}",
            node.server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `sleep 1000` as `name`.
fn run_sleeper(node: &Node, name: &str) {
    let ran = node.docker(&["run", "-d", "--name", name, &node.image, "sleep", "1000"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
}

/// Runs the docker CLI with its standard output as raw bytes.
fn docker_bytes(node: &Node, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = common::docker_command(&node.server.docker_host(), node.server.dir(), args)
        .stdin(Stdio::null())
        .output()
        .expect("running docker");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names in the tar archive `tar`, as `tar t` lists them.
fn tar_names(dir: &Path, tar: &[u8]) -> Vec<String> {
    let file = dir.join("listing.tar");
    std::fs::write(&file, tar).expect("writing the archive");
    let out = std::process::Command::new("tar")
        .arg("tf")
        .arg(&file)
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_file_copied_into_a_running_container_can_be_copied_back_out() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "box");
    let host = node
        .server
        .write_file("greeting.txt", "hello from the host\n");
    let host = host.to_string_lossy().into_owned();
    let cp = node.docker(&["cp", &host, "box:/tmp/"]);
    assert!(cp.ok, "{cp:?}\n{}", node.server.log());

    // Out again, as a tar on standard output.
    let (ok, tar, stderr) = docker_bytes(&node, &["cp", "box:/tmp/greeting.txt", "-"]);
    assert!(ok, "{stderr}");
    assert_eq!(tar_names(node.server.dir(), &tar), ["greeting.txt"]);
    let needle = b"hello from the host\n";
    assert!(tar.windows(needle.len()).any(|w| w == needle));

    // And under a new name on the host.
    let back = node.server.dir().join("back.txt");
    let cp = node.docker(&["cp", "box:/tmp/greeting.txt", &back.to_string_lossy()]);
    assert!(cp.ok, "{cp:?}");
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied out"),
        "hello from the host\n"
    );
}

#[tokio::test]
async fn a_containers_hostname_file_copies_to_stdout_and_into_a_directory() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "named");
    let (ok, tar, stderr) = docker_bytes(&node, &["cp", "named:/etc/hostname", "-"]);
    assert!(ok, "{stderr}");
    assert_eq!(tar_names(node.server.dir(), &tar), ["hostname"]);

    let dir = node.server.dir().join("out");
    std::fs::create_dir(&dir).expect("a directory");
    let cp = node.docker(&["cp", "named:/etc/hostname", &dir.to_string_lossy()]);
    assert!(cp.ok, "{cp:?}");
    let id = node.docker(&["inspect", "-f", "{{.Id}}", "named"]);
    let hostname = std::fs::read_to_string(dir.join("hostname")).expect("copied");
    if id.ok {
        assert_eq!(hostname.trim(), &id.stdout.trim()[..12]);
    } else {
        assert_eq!(hostname.trim().len(), 12, "{hostname:?}");
    }
}

#[tokio::test]
async fn a_directory_copies_into_a_container_and_back_out_whole() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "tree");
    let src = node.server.dir().join("site");
    std::fs::create_dir_all(src.join("css")).expect("directories");
    std::fs::write(src.join("index.html"), "<p>hi</p>\n").expect("a file");
    std::fs::write(src.join("css/main.css"), "p {}\n").expect("a file");

    // /tmp/site does not exist: the directory lands under that name.
    let cp = node.docker(&["cp", &src.to_string_lossy(), "tree:/tmp/site"]);
    assert!(cp.ok, "{cp:?}\n{}", node.server.log());

    let out = node.server.dir().join("copied");
    let cp = node.docker(&["cp", "tree:/tmp/site", &out.to_string_lossy()]);
    assert!(cp.ok, "{cp:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("index.html")).expect("copied"),
        "<p>hi</p>\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("css/main.css")).expect("copied"),
        "p {}\n"
    );
}

#[tokio::test]
async fn copying_a_path_that_is_not_there_fails_with_dockers_message() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "empty");
    let cp = node.docker(&["cp", "empty:/no/such/file", "-"]);
    assert_eq!(cp.code, Some(1), "{cp:?}");
    assert!(
        cp.stderr
            .contains("Could not find the file /no/such/file in container empty"),
        "{cp:?}"
    );
    let host = node.server.write_file("x.txt", "x\n");
    let cp = node.docker(&["cp", &host.to_string_lossy(), "empty:/no/such/dir/"]);
    assert_eq!(cp.code, Some(1), "{cp:?}");
}

#[tokio::test]
async fn a_stopped_container_can_still_be_copied_from_and_into() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "--name",
        "done",
        &node.image,
        "sh",
        "-c",
        "echo kept > /kept",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let (ok, tar, stderr) = docker_bytes(&node, &["cp", "done:/kept", "-"]);
    assert!(ok, "{stderr}");
    assert!(tar.windows(5).any(|w| w == b"kept\n"));
    let host = node.server.write_file("late.txt", "late\n");
    let cp = node.docker(&["cp", &host.to_string_lossy(), "done:/"]);
    assert!(cp.ok, "{cp:?}");
    let (ok, tar, stderr) = docker_bytes(&node, &["cp", "done:/late.txt", "-"]);
    assert!(ok, "{stderr}");
    assert!(tar.windows(5).any(|w| w == b"late\n"));
}

#[tokio::test]
async fn diff_shows_what_the_container_added_and_changed() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "writer",
        &node.image,
        "sh",
        "-c",
        "mkdir /data && echo hi > /data/newfile && echo extra >> /etc/motd && sleep 1000",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let diff = until_docker(&node, &["diff", "writer"], |out| {
        out.ok && out.stdout.contains("C /etc/motd")
    })
    .await;
    let lines: Vec<&str> = diff.stdout.lines().collect();
    for want in ["A /data", "A /data/newfile", "C /etc", "C /etc/motd"] {
        assert!(lines.contains(&want), "{want} missing: {diff:?}");
    }
    assert!(!diff.stdout.contains("/bin/busybox"), "{diff:?}");
}

#[tokio::test]
async fn export_is_a_tar_of_the_whole_file_system() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "whole");
    let (ok, tar, stderr) = docker_bytes(&node, &["export", "whole"]);
    assert!(ok, "{stderr}");
    let names = tar_names(node.server.dir(), &tar);
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    // The runtime's mounts are not the zone's: /proc is there, empty.
    assert!(names.iter().any(|n| n == "proc/"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n != "proc/"),
        "{names:?}"
    );
}

#[tokio::test]
async fn pause_freezes_a_running_container_and_unpause_thaws_it() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "frozen");
    let paused = node.docker(&["pause", "frozen"]);
    assert!(paused.ok, "{paused:?}\n{}", node.server.log());
    assert_eq!(paused.stdout.trim(), "frozen");
    assert_eq!(stored(&node, "frozen")["status"]["state"], "paused");

    let again = node.docker(&["pause", "frozen"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("is already paused"), "{again:?}");

    let unpaused = node.docker(&["unpause", "frozen"]);
    assert!(unpaused.ok, "{unpaused:?}\n{}", node.server.log());
    assert_eq!(stored(&node, "frozen")["status"]["state"], "running");

    let again = node.docker(&["unpause", "frozen"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("is not paused"), "{again:?}");
}

#[tokio::test]
async fn a_container_that_is_not_running_cannot_be_paused() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--name", "over", &node.image, "true"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let paused = node.docker(&["pause", "over"]);
    assert_eq!(paused.code, Some(1), "{paused:?}");
    assert!(paused.stderr.contains("is not running"), "{paused:?}");
    let missing = node.docker(&["pause", "nobody"]);
    assert!(
        missing.stderr.contains("No such container: nobody"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn update_changes_the_restart_policy_and_refuses_what_it_cannot_change() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "kept");
    let updated = node.docker(&["update", "--restart", "always", "kept"]);
    assert!(updated.ok, "{updated:?}\n{}", node.server.log());
    assert_eq!(updated.stdout.trim(), "kept");
    assert_eq!(
        stored(&node, "kept")["spec"]["restartPolicy"]["name"],
        "always"
    );

    let updated = node.docker(&["update", "--restart", "on-failure:3", "kept"]);
    assert!(updated.ok, "{updated:?}");
    let policy = &stored(&node, "kept")["spec"]["restartPolicy"];
    assert_eq!(policy["name"], "on-failure");
    assert_eq!(policy["maximumRetryCount"], 3);

    // Its package, chosen when it was placed, decides its memory.
    let memory = node.docker(&["update", "--memory", "256m", "kept"]);
    assert_eq!(memory.code, Some(1), "{memory:?}");
    assert!(
        memory.stderr.contains("does not resize a placed container"),
        "{memory:?}"
    );
    let cpus = node.docker(&["update", "--cpus", "2", "kept"]);
    assert_eq!(cpus.code, Some(1), "{cpus:?}");
    assert!(
        cpus.stderr
            .contains("sdc-docker does not support updating NanoCpus"),
        "{cpus:?}"
    );
    // Nothing refused was written.
    assert_eq!(
        stored(&node, "kept")["spec"]["restartPolicy"]["name"],
        "on-failure"
    );
}

#[tokio::test]
async fn an_auto_remove_container_cannot_be_given_a_restart_policy() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        &node.image,
        "sleep",
        "1000",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let updated = node.docker(&["update", "--restart", "always", "brief"]);
    assert_eq!(updated.code, Some(1), "{updated:?}");
    assert!(
        updated
            .stderr
            .contains("Restart policy cannot be updated because AutoRemove is enabled"),
        "{updated:?}"
    );
}

#[tokio::test]
async fn updating_an_exited_containers_restart_policy_does_not_start_it() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--name", "quiet", &node.image, "true"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let before = stored(&node, "quiet");
    assert_eq!(before["status"]["state"], "exited");
    let updated = node.docker(&["update", "--restart", "unless-stopped", "quiet"]);
    assert!(updated.ok, "{updated:?}");
    // The node has seen the new generation, and left the container as it was.
    let start = Instant::now();
    loop {
        let now = stored(&node, "quiet");
        if now["status"]["observedGeneration"] == now["metadata"]["generation"] {
            assert_eq!(now["status"]["state"], "exited", "{now}");
            assert_eq!(
                now["status"]["startedAt"], before["status"]["startedAt"],
                "{now}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stats_without_streaming_prints_the_containers_row() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "busy");
    let stats = node.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.ID}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "busy",
    ]);
    assert!(stats.ok, "{stats:?}\n{}", node.server.log());
    let row: Vec<&str> = stats.stdout.trim().split('|').collect();
    assert_eq!(row.len(), 5, "{stats:?}");
    assert_eq!(row[0], "busy");
    assert_eq!(row[1].len(), 12, "{stats:?}");
    let cpu: f64 = row[2]
        .trim_end_matches('%')
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {stats:?}"));
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "{stats:?}");
    let (used, limit) = row[3].split_once(" / ").expect("usage / limit");
    assert_ne!(used, "0B", "{stats:?}");
    assert_ne!(limit, "0B", "{stats:?}");
    assert_eq!(row[4], "1", "{stats:?}");

    // The plain table names it too.
    let table = node.docker(&["stats", "--no-stream", "busy"]);
    assert!(table.ok, "{table:?}");
    assert!(table.stdout.contains("MEM USAGE / LIMIT"), "{table:?}");
    assert!(table.stdout.contains("busy"), "{table:?}");
}

#[tokio::test]
async fn stats_of_a_stopped_container_are_zero() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let ran = node.docker(&["run", "--name", "idle", &node.image, "true"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let stats = node.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}",
        "idle",
    ]);
    assert!(stats.ok, "{stats:?}");
    assert_eq!(stats.stdout.trim(), "idle|0.00%|0B / 0B", "{stats:?}");
}

#[tokio::test]
async fn stats_answer_dockers_json_once_or_as_a_stream_a_second_apart() {
    use std::io::{Read, Write};
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    run_sleeper(&node, "watched");

    let once = common::http_tcp(
        node.server.port,
        "GET",
        "/containers/watched/stats?stream=false",
    )
    .expect("an answer");
    assert_eq!(once.status, 200, "{once:?}");
    let json: serde_json::Value =
        serde_json::from_str(once.body.trim()).unwrap_or_else(|e| panic!("{e}: {once:?}"));
    assert_eq!(json["name"], "/watched");
    assert_eq!(json["id"].as_str().map(str::len), Some(64), "{json}");
    // Two readings a second apart: the earlier one is the `pre` one.
    let system = |key: &str| json[key]["system_cpu_usage"].as_u64().unwrap_or(0);
    assert!(system("precpu_stats") > 0, "{json}");
    assert!(system("cpu_stats") > system("precpu_stats"), "{json}");
    assert_ne!(json["preread"], "0001-01-01T00:00:00Z", "{json}");
    assert!(
        json["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );

    let both = common::http_tcp(
        node.server.port,
        "GET",
        "/containers/watched/stats?stream=true&one-shot=true",
    )
    .expect("an answer");
    assert_eq!(both.status, 400, "{both:?}");

    // A stream sends a reading a second, as it goes, until the client leaves.
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", node.server.port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    stream
        .write_all(b"GET /containers/watched/stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("a request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let start = Instant::now();
    let needle = b"\"name\":\"/watched\"";
    while seen.windows(needle.len()).filter(|w| w == needle).count() < 3 {
        let n = stream.read(&mut buf).expect("the stream goes on");
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    // Three readings: the first at once, then one a second.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "{took:?}"
    );
}
