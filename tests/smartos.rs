//! The SmartOS driver end to end: `sdc-docker serve --driver smartos` with
//! the stand-in `vmadm`, `zfs`, `imgadm`, `zlogin` and `sysinfo` of the
//! testkit, driven by the real docker CLI and by `sdc-docker apply`. The
//! stand-ins keep their state in a temp dir, check every payload against
//! vmadm's documented properties, really run each zone's command chrooted
//! in its root, and record every call, so what is asserted here is what the
//! agent asked the platform for and what a user sees. Needs root (chroot).

mod common;

use std::time::{Duration, Instant};

use common::node::Node;
use sdc_docker_testkit::smartos::{Call, Standins};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// A server whose node is a SmartOS compute node made of `standins`,
/// with busybox pulled.
async fn smartos_node(standins: &Standins) -> Option<Node> {
    smartos_node_with_vmadm(standins, &standins.bin("vmadm")).await
}

/// The same, running `vmadm` as the command line `vmadm` (a wrapper).
async fn smartos_node_with_vmadm(standins: &Standins, vmadm: &std::path::Path) -> Option<Node> {
    if !common::is_root() {
        eprintln!("skipped: the stand-in zones chroot, which needs root");
        return None;
    }
    let bin = |tool: &str| standins.bin(tool).display().to_string();
    let zones_root = standins.zones_root().display().to_string();
    let imgadm_db = standins.imgadm_db().display().to_string();
    let args = [
        "--driver".to_owned(),
        "smartos".to_owned(),
        "--vmadm".to_owned(),
        vmadm.display().to_string(),
        "--imgadm".to_owned(),
        bin("imgadm"),
        "--zfs".to_owned(),
        bin("zfs"),
        "--zlogin".to_owned(),
        bin("zlogin"),
        "--sysinfo".to_owned(),
        bin("sysinfo"),
        "--zones-root".to_owned(),
        zones_root,
        "--imgadm-db".to_owned(),
        imgadm_db,
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(Node::start_with("embedded", &args).await)
}

/// Calls of `tool` whose first argument is `sub`.
fn calls_of(standins: &Standins, tool: &str, sub: &str) -> Vec<Call> {
    standins
        .calls()
        .into_iter()
        .filter(|c| c.tool == tool && c.args.first().is_some_and(|a| a == sub))
        .collect()
}

/// The zone UUID of a container: its id's first 32 hex digits.
fn zone_uuid(node: &Node, name: &str) -> String {
    let id = node.docker(&["inspect", "-f", "{{.Id}}", name]);
    assert!(id.ok, "{id:?}");
    sdc_docker_zones::zone_id(id.stdout.trim()).expect("a Docker id")
}

async fn until(what: &str, node: &Node, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what} not reached in {DEADLINE:?}\n{}",
            node.server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn docker_run_makes_an_lx_zone_with_vmadm_and_logs_exec_stop_and_rm_work_on_it() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        &node.image,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exec sleep 10000000",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let uuid = zone_uuid(&node, "web");

    // The payload vmadm was given (and accepted: the stand-in checks it).
    let creates = calls_of(&standins, "vmadm", "create");
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(creates[0].exit, 0, "{creates:?}");
    let payload: Value =
        serde_json::from_str(creates[0].stdin.as_deref().expect("payload on stdin"))
            .expect("payload is JSON");
    assert_eq!(payload["uuid"], uuid.as_str());
    assert_eq!(payload["brand"], "lx");
    assert_eq!(payload["alias"], "web");
    assert_eq!(payload["docker"], true);
    assert_eq!(payload["autoboot"], false);
    assert_eq!(payload["firewall_enabled"], true);
    assert_eq!(payload["max_physical_memory"], 1024, "the 1 GiB package");
    assert_eq!(payload["tags"]["docker:label:tier"], "front");
    assert_eq!(
        payload["internal_metadata"]["docker:cmd"],
        r#"["sh","-c","echo hello; echo oops >&2; exec sleep 10000000"]"#
    );

    // The image became a chain of three datasets, the zone a clone of the top.
    let image_uuid = payload["image_uuid"].as_str().expect("image_uuid");
    let vm = standins.vm(&uuid).expect("the zone exists");
    assert_eq!(vm["image_uuid"], image_uuid);
    assert_eq!(
        calls_of(&standins, "zfs", "snapshot").len(),
        3,
        "one @final per layer"
    );
    assert!(
        standins
            .imgadm_db()
            .join(format!("zones-{image_uuid}.json"))
            .is_file()
    );

    assert_eq!(
        node.until_inspect("web", "{{.State.Status}}", |s| s == "running")
            .await,
        "running"
    );
    until("both lines in docker logs", &node, || {
        let logs = node.docker(&["logs", "web"]);
        logs.stdout == "hello\n" && logs.stderr == "oops\n"
    })
    .await;

    let exec = node.docker(&["exec", "web", "echo", "from", "zlogin"]);
    assert!(exec.ok, "{exec:?}\n{}", node.server.log());
    assert_eq!(exec.stdout, "from zlogin\n");
    assert!(
        standins
            .calls()
            .iter()
            .any(|c| c.tool == "zlogin" && c.args.contains(&uuid)),
        "exec went through zlogin into the zone"
    );

    let stop = node.docker(&["stop", "-t", "1", "web"]);
    assert!(stop.ok, "{stop:?}\n{}", node.server.log());
    let state = node
        .until_inspect("web", "{{.State.Status}} {{.State.ExitCode}}", |s| {
            s.starts_with("exited")
        })
        .await;
    assert_eq!(
        state, "exited 137",
        "sleep, the init, ignores SIGTERM: vmadm stop -t 1 kills it"
    );

    let rm = node.docker(&["rm", "web"]);
    assert!(rm.ok, "{rm:?}");
    until("the zone deleted", &node, || standins.vm(&uuid).is_none()).await;
    assert_eq!(calls_of(&standins, "vmadm", "delete").len(), 1);
}

#[tokio::test]
async fn the_node_is_registered_from_sysinfo() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let nodes = node.server.sdc(&["get", "nodes", "-o", "json"]);
    assert!(nodes.ok, "{nodes:?}");
    let sysinfo: Value = serde_json::from_str(
        &std::fs::read_to_string(standins.root().join("sysinfo.json")).expect("sysinfo.json"),
    )
    .expect("json");
    assert!(
        nodes
            .stdout
            .contains(sysinfo["UUID"].as_str().expect("UUID")),
        "{}",
        nodes.stdout
    );
    assert!(nodes.stdout.contains("\"smartos\""), "{}", nodes.stdout);
    let info = node.docker(&["info", "-f", "{{.NCPU}}"]);
    assert_eq!(
        info.stdout.trim(),
        sysinfo["CPU Total Cores"].to_string().trim_matches('"'),
        "{info:?}"
    );
}

#[tokio::test]
async fn the_platform_carries_the_restart_policy_and_inspect_shows_its_count() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &node.image,
        "sh",
        "-c",
        "exit 1",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let state = node
        .until_inspect(
            "flaky",
            "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
            |s| s == "exited 1 2",
        )
        .await;
    assert_eq!(state, "exited 1 2");
    let uuid = zone_uuid(&node, "flaky");
    let vm = standins.vm(&uuid).expect("zone");
    assert_eq!(
        vm["internal_metadata"]["docker:restartpolicy"],
        "on-failure:2"
    );
    assert_eq!(
        calls_of(&standins, "vmadm", "start").len(),
        1,
        "the platform restarted it, not the agent"
    );
}

#[tokio::test]
async fn a_failed_vmadm_create_is_on_the_status_and_retried_until_one_zone_exists() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    standins.fail_next_creates(2, "zone install failed: out of space");
    let created = node.docker(&["create", "--name", "late", &node.image, "true"]);
    assert!(created.ok, "{created:?}");
    until("the failure on the status", &node, || {
        let out = node.server.sdc(&["get", "container", "late", "-o", "json"]);
        out.stdout.contains("out of space")
    })
    .await;
    let uuid = zone_uuid(&node, "late");
    until("the zone made after the failures", &node, || {
        standins.vm(&uuid).is_some()
    })
    .await;
    until("the error cleared", &node, || {
        let out = node.server.sdc(&["get", "container", "late", "-o", "json"]);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        v["status"]["error"].as_str().unwrap_or_default().is_empty()
    })
    .await;
    let creates = calls_of(&standins, "vmadm", "create");
    assert_eq!(
        creates.iter().map(|c| c.exit).collect::<Vec<_>>(),
        vec![1, 1, 0],
        "two failures, then one zone"
    );
    let start = node.docker(&["start", "-a", "late"]);
    assert!(start.ok, "{start:?}\n{}", node.server.log());
}

#[tokio::test]
async fn a_container_spec_applied_by_an_operator_becomes_a_zone_and_goes_when_deleted() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let yaml = format!(
        "kind: Container\nmetadata:\n  name: applied\nspec:\n  id: {}\n  image: {}\n  cmd: [sleep, '100000']\n  desiredState: running\n",
        "ab".repeat(32),
        node.image
    );
    let file = node.server.write_file("applied.yaml", &yaml);
    let out = node
        .server
        .sdc(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(out.ok, "{out:?}");
    let uuid = "abababab-abab-abab-abab-abababababab";
    until("the zone running", &node, || {
        standins.vm(uuid).is_some_and(|vm| vm["state"] == "running")
    })
    .await;
    node.until_inspect("applied", "{{.State.Status}}", |s| s == "running")
        .await;
    let ps = node.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.stdout.starts_with("applied Up"), "{ps:?}");

    let out = node.server.sdc(&["delete", "container", "applied"]);
    assert!(out.ok, "{out:?}");
    until("the zone deleted", &node, || standins.vm(uuid).is_none()).await;
}

#[tokio::test]
async fn a_second_image_sharing_layers_installs_only_its_own() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    node.registry
        .push(
            "library/busybox",
            "whiteout",
            &sdc_docker_testkit::busybox::with_whiteout(sdc_docker_testkit::Format::Docker),
        )
        .await;
    let whiteout = node.image.replace(":latest", ":whiteout");
    let pulled = node.docker(&["pull", "-q", &whiteout]);
    assert!(pulled.ok, "{pulled:?}");

    let first = node.docker(&["run", "--name", "a", &node.image, "cat", "/etc/motd"]);
    assert!(first.ok, "{first:?}\n{}", node.server.log());
    assert_eq!(calls_of(&standins, "zfs", "snapshot").len(), 3);

    let second = node.docker(&["run", "--name", "b", &whiteout, "ls", "/var/data"]);
    assert!(second.ok, "{second:?}\n{}", node.server.log());
    assert_eq!(second.stdout, "b\n", "the opaque directory holds only b");
    assert_eq!(
        calls_of(&standins, "zfs", "snapshot").len(),
        4,
        "only the whiteout layer was installed"
    );
    let motd = node.docker(&["run", "--rm", &whiteout, "cat", "/etc/motd"]);
    assert!(!motd.ok, "the whiteout deleted /etc/motd: {motd:?}");
}

#[tokio::test]
async fn a_server_killed_while_vmadm_create_runs_adopts_the_zone_after_restart_without_a_second() {
    let standins = Standins::new();
    // An operator's wrapper, as --vmadm allows: here one that answers a
    // create only 5 s after the zone exists, so the server can die between.
    let wrapper = standins.root().join("slow-vmadm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{} \"$@\"\nrc=$?\n[ \"$1\" = create ] && sleep 5\nexit $rc\n",
            standins.bin("vmadm").display()
        ),
    )
    .expect("writing the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let Some(mut node) = smartos_node_with_vmadm(&standins, &wrapper).await else {
        return;
    };
    let created = node.docker(&["create", "--name", "mid", &node.image, "echo", "once"]);
    assert!(created.ok, "{created:?}");
    let uuid = zone_uuid(&node, "mid");
    until("vmadm create made the zone", &node, || {
        standins.vm(&uuid).is_some()
    })
    .await;

    node.server.kill9();
    node.server.restart().await;

    let started = node.docker(&["start", "-a", "mid"]);
    assert!(started.ok, "{started:?}\n{}", node.server.log());
    assert_eq!(started.stdout, "once\n");
    let creates = calls_of(&standins, "vmadm", "create");
    assert_eq!(creates.len(), 1, "no second create: {creates:?}");
    assert_eq!(
        standins
            .vms()
            .iter()
            .filter(|vm| vm["uuid"] == uuid.as_str())
            .count(),
        1
    );
}

#[tokio::test]
async fn a_smartos_image_is_imported_with_imgadm_and_runs_as_a_joyent_minimal_zone() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let uuid = "2a5b9c4e-9b3f-4f6c-8a3e-5d1c2b3a4f5e";
    standins.add_busybox_source_image(uuid, "zone-dataset");
    // An operator registers the SmartOS image (as it is in the data
    // center's image source) under a Docker name.
    let yaml = format!(
        "kind: Image\nmetadata:\n  name: {}\nspec:\n  id: {uuid}\n  repoTags: [docker.io/smartos/base:latest]\n  os: smartos\n  architecture: amd64\n",
        uuid.replace('-', "")
    );
    let file = node.server.write_file("image.yaml", &yaml);
    let out = node
        .server
        .sdc(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(out.ok, "{out:?}");

    let ran = node.docker(&["run", "--name", "native", "smartos/base", "echo", "native"]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    assert_eq!(ran.stdout, "native\n");
    let imports = calls_of(&standins, "imgadm", "import");
    assert_eq!(imports.len(), 1, "{imports:?}");
    let payload = calls_of(&standins, "vmadm", "create")[0]
        .payload()
        .expect("payload");
    assert_eq!(payload["brand"], "joyent-minimal");
    assert_eq!(payload["image_uuid"], uuid);
    assert_eq!(payload["init_name"], "/usr/vm/sbin/dockerinit");
    assert!(payload.get("kernel_version").is_none());
}

#[tokio::test]
async fn stop_start_and_kill_walk_the_zone_through_vmadm_as_docker_shows_them() {
    let standins = Standins::new();
    let Some(node) = smartos_node(&standins).await else {
        return;
    };
    let ran = node.docker(&[
        "run",
        "-d",
        "--name",
        "cycle",
        &node.image,
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; echo started; while true; do sleep 1; done",
    ]);
    assert!(ran.ok, "{ran:?}\n{}", node.server.log());
    let uuid = zone_uuid(&node, "cycle");
    until("the first start logged", &node, || {
        node.docker(&["logs", "cycle"]).stdout == "started\n"
    })
    .await;

    let usr1 = node.docker(&["kill", "-s", "USR1", "cycle"]);
    assert!(usr1.ok, "{usr1:?}");
    until("the trap ran", &node, || {
        node.docker(&["logs", "cycle"]).stdout.contains("got USR1")
    })
    .await;
    assert_eq!(
        node.until_inspect("cycle", "{{.State.Status}}", |_| true)
            .await,
        "running",
        "a signal the process handles leaves it running"
    );

    let stop = node.docker(&["stop", "-t", "1", "cycle"]);
    assert!(stop.ok, "{stop:?}");
    node.until_inspect("cycle", "{{.State.Status}}", |s| s == "exited")
        .await;
    let start = node.docker(&["start", "cycle"]);
    assert!(start.ok, "{start:?}\n{}", node.server.log());
    node.until_inspect("cycle", "{{.State.Status}}", |s| s == "running")
        .await;

    let kill = node.docker(&["kill", "cycle"]);
    assert!(kill.ok, "{kill:?}");
    let state = node
        .until_inspect("cycle", "{{.State.Status}} {{.State.ExitCode}}", |s| {
            s.starts_with("exited")
        })
        .await;
    assert_eq!(state, "exited 137");

    let vmadm: Vec<String> = standins
        .calls()
        .into_iter()
        .filter(|c| c.tool == "vmadm" && c.args.contains(&uuid))
        .map(|c| c.args.join(" "))
        .filter(|a| !a.starts_with("get ") && !a.starts_with("update "))
        .collect();
    assert_eq!(
        vmadm,
        vec![
            format!("start {uuid}"),
            format!("kill -s SIGUSR1 {uuid}"),
            format!("stop {uuid} -t 1"),
            format!("start {uuid}"),
            format!("kill -s SIGKILL {uuid}"),
        ],
        "what the agent asked vmadm for, in order"
    );
}
