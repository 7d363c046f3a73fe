//! The SmartOS stand-ins driven directly, as the zone driver drives the
//! platform's tools: payload validation, datasets, images, zones that really
//! run (a busybox root), zlogin, logs, and the record of calls.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sdc_docker_testkit::Standins;
use serde_json::{Value, json};

/// What a stand-in printed and returned.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(s: &Standins, tool: &str, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = s.command(tool);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running a stand-in");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(s: &Standins, tool: &str, args: &[&str], stdin: Option<&str>) -> Out {
    let out = run(s, tool, args, stdin);
    assert_eq!(out.code, 0, "{tool} {args:?} failed: {out:?}");
    out
}

fn new_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string()
}

/// Installs a busybox image (`lx-dataset`) with `imgadm import`.
fn busybox_image(s: &Standins) -> String {
    let uuid = new_uuid();
    s.add_busybox_source_image(&uuid, "lx-dataset");
    ok(s, "imgadm", &["import", "-q", &uuid], None);
    uuid
}

/// A docker LX payload running `cmd`, not booted at create.
fn docker_payload(uuid: &str, image: &str, cmd: &[&str], extra_metadata: Value) -> Value {
    let mut metadata = json!({ "docker:cmd": serde_json::to_string(cmd).unwrap() });
    if let Value::Object(extra) = extra_metadata {
        for (k, v) in extra {
            metadata[k] = v;
        }
    }
    json!({
        "uuid": uuid,
        "brand": "lx",
        "kernel_version": "4.3.0",
        "image_uuid": image,
        "alias": "test",
        "hostname": "zone-host",
        "autoboot": false,
        "docker": true,
        "max_physical_memory": 512,
        "tags": { "sdc_docker": true },
        "internal_metadata": metadata,
    })
}

fn create(s: &Standins, payload: &Value) -> Out {
    run(s, "vmadm", &["create"], Some(&payload.to_string()))
}

fn create_ok(s: &Standins, payload: &Value) {
    let out = create(s, payload);
    assert_eq!(out.code, 0, "vmadm create failed: {out:?}");
}

fn stopped(vm: &Value) -> bool {
    vm["state"] == "stopped" && vm.get("exit_status").is_some()
}

fn lines(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_string(),
                e["log"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_payload_with_an_unknown_property_is_refused_and_nothing_is_created() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
    payload["no_such_property"] = json!(1);
    let out = create(&s, &payload);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no_such_property"), "{out:?}");
    assert!(s.vm(&uuid).is_none());
    assert!(!s.zones_root().join(&uuid).exists());

    // A property of another brand, or one not allowed in a nic, is refused
    // the same way.
    let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
    payload["nics"] = json!([{ "nic_tag": "admin", "ips": ["10.0.0.5/24"], "model": "virtio" }]);
    let out = create(&s, &payload);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("nics.0.model"), "{out:?}");
}

#[test]
fn a_payload_value_of_the_wrong_type_names_the_property_and_the_type() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    for (property, value, expected) in [
        ("max_physical_memory", json!("lots"), "integer"),
        ("autoboot", json!("maybe"), "boolean"),
        ("resolvers", json!({ "a": 1 }), "array"),
        (
            "internal_metadata",
            json!({ "docker:cmd": ["sh"] }),
            "object",
        ),
        ("nics", json!({ "nic_tag": "admin" }), "array of objects"),
        ("alias", json!(7), "string"),
    ] {
        let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
        payload[property] = value;
        let out = create(&s, &payload);
        assert_eq!(out.code, 1, "{property}: {out:?}");
        assert!(
            out.stderr.contains("Invalid value(s) for:") && out.stderr.contains(property),
            "{property}: {out:?}"
        );
        assert!(out.stderr.contains(expected), "{property}: {out:?}");
    }
    let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
    payload["nics"] = json!([{ "nic_tag": "admin", "vlan_id": 5000 }]);
    let out = create(&s, &payload);
    assert!(out.stderr.contains("nics.0.vlan_id"), "{out:?}");
    assert!(s.vm(&uuid).is_none());
}

#[test]
fn a_payload_missing_brand_image_or_kernel_version_is_refused() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    for (missing, message) in [
        ("brand", "Missing required properties: brand"),
        ("image_uuid", "Missing required properties: image_uuid"),
        (
            "kernel_version",
            "Missing required properties: kernel_version",
        ),
    ] {
        let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
        payload.as_object_mut().unwrap().remove(missing);
        let out = create(&s, &payload);
        assert_eq!(out.code, 1, "{missing}: {out:?}");
        assert!(out.stderr.contains(message), "{missing}: {out:?}");
    }
    // joyent-minimal needs no kernel_version, but a zone-dataset image.
    let mut payload = docker_payload(&uuid, &image, &["true"], json!({}));
    payload["brand"] = json!("joyent-minimal");
    payload.as_object_mut().unwrap().remove("kernel_version");
    let out = create(&s, &payload);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("image_uuid") && out.stderr.contains("zone-dataset"),
        "{out:?}"
    );
    assert!(s.vm(&uuid).is_none());
}

#[test]
fn creating_from_an_image_not_installed_or_with_a_used_uuid_fails() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let out = create(
        &s,
        &docker_payload(&uuid, &new_uuid(), &["true"], json!({})),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("image_uuid") && out.stderr.contains("not installed"),
        "{out:?}"
    );

    create_ok(&s, &docker_payload(&uuid, &image, &["true"], json!({})));
    let out = create(&s, &docker_payload(&uuid, &image, &["true"], json!({})));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("VM with UUID {uuid} already exists")),
        "{out:?}"
    );
}

#[test]
fn a_created_vm_has_vmadm_fields_and_its_dataset_is_a_clone_of_the_image() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let out = create(&s, &docker_payload(&uuid, &image, &["true"], json!({})));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("Successfully created VM {uuid}")),
        "{out:?}"
    );
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["zone_state"], "installed");
    assert_eq!(vm["brand"], "lx");
    assert_eq!(vm["zonename"], uuid.as_str());
    assert_eq!(
        vm["zonepath"],
        s.zones_root().join(&uuid).display().to_string()
    );
    assert_eq!(vm["image_uuid"], image.as_str());
    assert_eq!(vm["max_physical_memory"], 512);
    assert_eq!(vm["autoboot"], false);
    assert_eq!(vm["restart_init"], false);
    assert_eq!(vm["server_uuid"], sdc_docker_testkit::smartos::SERVER_UUID);
    assert!(vm["create_timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        vm["internal_metadata"]["docker:id"].as_str().unwrap().len(),
        64
    );
    assert!(
        s.zones_root()
            .join(&uuid)
            .join("root/bin/busybox")
            .is_file()
    );

    let got = ok(&s, "vmadm", &["get", &uuid], None);
    let parsed: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(parsed, vm);
    let origin = ok(
        &s,
        "zfs",
        &[
            "get",
            "-H",
            "-o",
            "value",
            "origin",
            &format!("zones/{uuid}"),
        ],
        None,
    );
    assert_eq!(origin.stdout.trim(), format!("zones/{image}@final"));

    let missing = new_uuid();
    let out = run(&s, "vmadm", &["get", &missing], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("No such zone configured"), "{out:?}");
}

#[test]
fn zfs_creates_snapshots_clones_lists_gets_and_destroys_like_zfs() {
    let s = Standins::new();
    let out = run(&s, "zfs", &["list", "-H", "-o", "name", "zones/a"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "cannot open 'zones/a': dataset does not exist"
    );

    ok(&s, "zfs", &["create", "zones/a"], None);
    let out = run(&s, "zfs", &["create", "zones/a"], None);
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "cannot create 'zones/a': dataset already exists")
    );
    let out = run(&s, "zfs", &["create", "zones/x/y"], None);
    assert_eq!(
        (out.code, out.stderr.trim()),
        (1, "cannot create 'zones/x/y': parent does not exist")
    );
    ok(
        &s,
        "zfs",
        &["create", "-p", "-o", "quota=10g", "zones/x/y"],
        None,
    );

    let mountpoint = ok(
        &s,
        "zfs",
        &["get", "-H", "-o", "value", "mountpoint", "zones/a"],
        None,
    );
    let mountpoint = std::path::PathBuf::from(mountpoint.stdout.trim());
    assert_eq!(mountpoint, s.zones_root().join("a"));
    std::fs::create_dir(mountpoint.join("root")).unwrap();
    std::fs::write(mountpoint.join("root/file"), "one").unwrap();
    std::os::unix::fs::symlink("file", mountpoint.join("root/link")).unwrap();
    ok(&s, "zfs", &["snapshot", "zones/a@final"], None);
    std::fs::write(mountpoint.join("root/file"), "changed").unwrap();
    ok(&s, "zfs", &["clone", "zones/a@final", "zones/b"], None);
    let b = s.zones_root().join("b/root");
    assert_eq!(std::fs::read_to_string(b.join("file")).unwrap(), "one");
    assert_eq!(
        std::fs::read_link(b.join("link")).unwrap(),
        std::path::Path::new("file")
    );

    let all = ok(&s, "zfs", &["list", "-H", "-o", "name", "-t", "all"], None);
    let names: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(
        names,
        [
            "zones",
            "zones/a",
            "zones/a@final",
            "zones/b",
            "zones/x",
            "zones/x/y"
        ]
    );
    let snaps = ok(
        &s,
        "zfs",
        &["list", "-H", "-o", "name", "-t", "snapshot"],
        None,
    );
    assert_eq!(snaps.stdout, "zones/a@final\n");
    let got = ok(
        &s,
        "zfs",
        &["get", "-H", "-o", "value", "origin,quota", "zones/b"],
        None,
    );
    assert_eq!(got.stdout, "zones/a@final\nnone\n");
    let quota = ok(
        &s,
        "zfs",
        &["get", "-Hp", "-o", "value", "quota", "zones/x/y"],
        None,
    );
    assert_eq!(quota.stdout.trim(), "10737418240");
    let quota = ok(
        &s,
        "zfs",
        &["get", "-H", "-o", "value", "quota", "zones/x/y"],
        None,
    );
    assert_eq!(quota.stdout.trim(), "10G");

    // Refused as zfs refuses: children without -r, clones without -R.
    let out = run(&s, "zfs", &["destroy", "zones/a"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("cannot destroy 'zones/a': filesystem has children"),
        "{out:?}"
    );
    let out = run(&s, "zfs", &["destroy", "-r", "zones/a"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "filesystem has dependent clones\nuse '-R' to destroy the following datasets:\nzones/b"
        ),
        "{out:?}"
    );
    let out = run(&s, "zfs", &["destroy", "zones/a@final"], None);
    assert!(
        out.stderr.contains("snapshot has dependent clones"),
        "{out:?}"
    );
    ok(&s, "zfs", &["destroy", "zones/b"], None);
    ok(&s, "zfs", &["destroy", "-r", "zones/a"], None);
    assert!(!s.zones_root().join("a").exists());
    let out = run(&s, "zfs", &["list", "-H", "zones/a@final"], None);
    assert_eq!(out.code, 1);
    let left = ok(&s, "zfs", &["list", "-H", "-o", "name"], None);
    assert_eq!(left.stdout, "zones\nzones/x\nzones/x/y\n");
}

#[test]
fn imgadm_imports_from_the_local_source_and_reports_installed_images() {
    let s = Standins::new();
    let uuid = new_uuid();
    let out = run(&s, "imgadm", &["get", "-P", "zones", &uuid], None);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "imgadm: error (ImageNotInstalled): image \"{uuid}\" was not found on zpool \"zones\""
        )
    );
    let out = run(&s, "imgadm", &["import", &uuid], None);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("ActiveImageNotFound"), "{out:?}");

    let manifest = s.add_busybox_source_image(&uuid, "lx-dataset");
    let out = ok(&s, "imgadm", &["import", &uuid], None);
    assert!(
        out.stdout.contains(&format!("Imported image {uuid}")),
        "{out:?}"
    );
    let got = ok(&s, "imgadm", &["get", "-P", "zones", &uuid], None);
    let got: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(got["manifest"], manifest);
    assert_eq!(got["zpool"], "zones");
    assert!(s.imgadm_db().join(format!("zones-{uuid}.json")).is_file());
    assert!(
        s.zones_root()
            .join(&uuid)
            .join("root/bin/busybox")
            .is_file()
    );
    let snap = ok(
        &s,
        "zfs",
        &["list", "-H", "-o", "name", &format!("zones/{uuid}@final")],
        None,
    );
    assert_eq!(snap.stdout.trim(), format!("zones/{uuid}@final"));

    let out = ok(&s, "imgadm", &["import", &uuid], None);
    assert!(
        out.stdout.contains("is already installed, skipping"),
        "{out:?}"
    );
    let list = ok(&s, "imgadm", &["list", "-j"], None);
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["manifest"]["uuid"], uuid.as_str());

    // An image whose origin is in the source brings its origin along.
    let child = new_uuid();
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/motd"), "child\n").unwrap();
    s.add_source_image(
        &child,
        json!({ "v": 2, "name": "child", "version": "1", "type": "lx-dataset", "os": "linux", "origin": uuid }),
        tree.path(),
    );
    ok(&s, "imgadm", &["import", &child], None);
    let root = s.zones_root().join(&child).join("root");
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "child\n"
    );
}

#[test]
fn a_zone_runs_its_command_and_logs_stdout_and_stderr_with_the_exit_status() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &[
                "sh",
                "-c",
                "echo out; echo err >&2; echo $FOO $HOSTNAME $(pwd); exit 3",
            ],
            json!({
                "docker:env": serde_json::to_string(&["FOO=bar"]).unwrap(),
                "docker:workdir": "/work/dir",
            }),
        ),
    );
    let out = ok(&s, "vmadm", &["start", &uuid], None);
    assert!(
        out.stderr
            .contains(&format!("Successfully started VM {uuid}"))
    );
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(10), "stopped", stopped);
    assert_eq!(vm["exit_status"], 3);
    assert_eq!(vm["zone_state"], "installed");
    assert_eq!(vm["autoboot"], true);
    assert!(vm.get("pid").is_none());
    assert!(vm["exit_timestamp"].as_str().unwrap().ends_with('Z'));
    let logged = lines(&s.log_entries(&uuid));
    assert!(
        logged.contains(&("stdout".into(), "out\n".into())),
        "{logged:?}"
    );
    assert!(
        logged.contains(&("stderr".into(), "err\n".into())),
        "{logged:?}"
    );
    assert!(
        logged.contains(&("stdout".into(), "bar zone-host /work/dir\n".into())),
        "{logged:?}"
    );
    for entry in s.log_entries(&uuid) {
        let time = entry["time"].as_str().unwrap();
        assert_eq!(time.len(), "2024-01-01T00:00:00.000000000Z".len(), "{time}");
        assert!(time.ends_with('Z'));
    }

    // A command that cannot be found fails as dockerinit does.
    let missing = new_uuid();
    create_ok(
        &s,
        &docker_payload(&missing, &image, &["no-such-command"], json!({})),
    );
    ok(&s, "vmadm", &["start", &missing], None);
    let vm = s.wait_for_vm(&missing, Duration::from_secs(10), "stopped", stopped);
    assert_eq!(vm["exit_status"], 17);
    let logged = lines(&s.log_entries(&missing));
    assert!(
        logged[0].1.contains("'no-such-command' not found in PATH"),
        "{logged:?}"
    );
}

#[test]
fn an_on_failure_restart_policy_restarts_until_its_limit() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &["sh", "-c", "echo run; exit 1"],
            json!({ "docker:restartpolicy": "on-failure:2" }),
        ),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(15), "restarted twice", |vm| {
        stopped(vm) && vm["internal_metadata"]["docker:restartcount"] == 2
    });
    assert_eq!(vm["exit_status"], 1);
    // No third restart: the count stays, and the runs logged are three.
    std::thread::sleep(Duration::from_millis(800));
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["internal_metadata"]["docker:restartcount"], 2);
    assert_eq!(vm["state"], "stopped");
    let runs = lines(&s.log_entries(&uuid))
        .iter()
        .filter(|(_, l)| l == "run\n")
        .count();
    assert_eq!(runs, 3);

    // A start by hand begins a new count, as in vmadm.
    ok(&s, "vmadm", &["start", &uuid], None);
    s.wait_for_vm(
        &uuid,
        Duration::from_secs(15),
        "restarted twice again",
        |vm| stopped(vm) && vm["internal_metadata"]["docker:restartcount"] == 2,
    );
}

#[test]
fn an_always_restart_policy_ends_with_vmadm_stop() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &["sh", "-c", "exit 0"],
            json!({ "docker:restartpolicy": "always" }),
        ),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    s.wait_for_vm(&uuid, Duration::from_secs(15), "restarted", |vm| {
        vm["internal_metadata"]["docker:restartcount"]
            .as_i64()
            .unwrap_or(0)
            >= 2
    });
    ok(&s, "vmadm", &["stop", &uuid], None);
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["autoboot"], false);
    let count = vm["internal_metadata"]["docker:restartcount"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["internal_metadata"]["docker:restartcount"], count);
}

#[test]
fn stop_kills_an_init_that_ignores_sigterm_after_the_timeout() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(&uuid, &image, &["sleep", "100000"], json!({})),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["zone_state"], "running");
    let pid = vm["pid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(vm["boot_timestamp"].as_str().unwrap().ends_with('Z'));

    // Starting a running VM is a no-op, as in vmadm.
    let again = ok(&s, "vmadm", &["start", &uuid], None);
    assert!(again.stderr.contains("is already 'running'"), "{again:?}");

    // sleep, PID 1 of its namespace, has no SIGTERM handler: only the
    // SIGKILL after -t ends it.
    let started = Instant::now();
    let out = ok(&s, "vmadm", &["stop", &uuid, "-t", "1"], None);
    let took = started.elapsed();
    assert!(
        out.stderr.contains("Successfully completed stop"),
        "{out:?}"
    );
    assert!(took >= Duration::from_millis(900), "stopped after {took:?}");
    assert!(took < Duration::from_secs(8), "stopped after {took:?}");
    let vm = s.vm(&uuid).unwrap();
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["exit_status"], 137);
    assert!(vm.get("pid").is_none());

    // Stopping a stopped VM is a no-op, as in vmadm.
    let out = ok(&s, "vmadm", &["stop", &uuid], None);
    assert!(out.stderr.contains("is already not 'running'"), "{out:?}");
}

#[test]
fn kill_sends_a_signal_to_the_init() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &[
                "sh",
                "-c",
                "trap 'echo got USR1; exit 5' USR1; while true; do sleep 0.05; done",
            ],
            json!({}),
        ),
    );
    let out = run(&s, "vmadm", &["kill", &uuid], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("Cannot find running init PID for VM {uuid}")),
        "{out:?}"
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    // Let the shell set its trap.
    std::thread::sleep(Duration::from_millis(300));
    let out = ok(&s, "vmadm", &["kill", "-s", "USR1", &uuid], None);
    assert!(out.stderr.contains("Sent signal"), "{out:?}");
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(10), "stopped", stopped);
    assert_eq!(vm["exit_status"], 5);
    assert!(lines(&s.log_entries(&uuid)).contains(&("stdout".into(), "got USR1\n".into())));

    // By number, and SIGKILL's status.
    ok(&s, "vmadm", &["start", &uuid], None);
    ok(&s, "vmadm", &["kill", "-s", "9", &uuid], None);
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(10), "killed", |vm| {
        stopped(vm) && vm["exit_status"] == 137
    });
    assert_eq!(vm["exit_status"], 137);
    let out = run(&s, "vmadm", &["kill", "-s", "SIGNOPE", &uuid], None);
    assert_eq!(out.code, 1);
}

#[test]
fn zlogin_runs_commands_inside_the_running_zone_only() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("data"), "from the host\n").unwrap();
    let mut payload = docker_payload(&uuid, &image, &["sleep", "100000"], json!({}));
    payload["filesystems"] = json!([{
        "type": "lofs",
        "source": volume.path().display().to_string(),
        "target": "/data",
        "options": ["ro"],
    }]);
    create_ok(&s, &payload);

    let out = run(&s, "zlogin", &["-Q", &uuid, "echo", "hi"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("login allowed only to running zones"),
        "{out:?}"
    );
    let out = run(&s, "zlogin", &["-Q", &new_uuid(), "true"], None);
    assert!(out.stderr.contains("unknown"), "{out:?}");

    ok(&s, "vmadm", &["start", &uuid], None);
    let out = ok(&s, "zlogin", &["-Q", &uuid, "echo", "hi"], None);
    assert_eq!(out.stdout, "hi\n");
    let out = ok(
        &s,
        "zlogin",
        &[
            "-Q",
            &uuid,
            "sh",
            "-c",
            "hostname; pwd; cat /data/data; ls /bin/busybox",
        ],
        None,
    );
    assert_eq!(out.stdout, "zone-host\n/\nfrom the host\n/bin/busybox\n");
    // The init is PID 1 of the zone.
    let out = ok(&s, "zlogin", &["-Q", &uuid, "cat", "/proc/1/cmdline"], None);
    assert_eq!(out.stdout, "sleep\x00100000\x00");
    let out = run(&s, "zlogin", &["-Q", &uuid, "sh", "-c", "exit 42"], None);
    assert_eq!(out.code, 42);
    let out = run(&s, "zlogin", &["-Q", &uuid, "no-such-command"], None);
    assert_eq!(out.code, 127, "{out:?}");
    let out = run(
        &s,
        "zlogin",
        &["-Q", &uuid, "sh", "-c", "echo x > /data/new"],
        None,
    );
    assert_ne!(out.code, 0, "the volume is read-only: {out:?}");
    // stdin reaches the command.
    let out = ok(&s, "zlogin", &["-Q", &uuid, "cat"], Some("piped\n"));
    assert_eq!(out.stdout, "piped\n");
    // A pty when asked for one.
    let out = ok(&s, "zlogin", &["-Q", "-t", &uuid, "tty"], None);
    assert!(out.stdout.starts_with("/dev/pts/"), "{out:?}");

    // kill -1 in the zone reaches the zone's processes only (but its init
    // and the caller): the background sleep dies; the init, and this test,
    // live on.
    let out = ok(
        &s,
        "zlogin",
        &[
            "-Q",
            &uuid,
            "sh",
            "-c",
            "sleep 200000 & sleep 0.2; kill -9 -1; sleep 0.1; ps -o pid,args",
        ],
        None,
    );
    let sleeps: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("sleep"))
        .collect();
    assert_eq!(sleeps, ["    1 sleep 100000"], "{out:?}");
    assert_eq!(s.vm(&uuid).unwrap()["state"], "running");
}

#[test]
fn zlogin_attach_feeds_the_init_stdin_and_streams_its_output() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &["sh", "-c", "echo ready; cat; echo done >&2"],
            json!({ "docker:open_stdin": true }),
        ),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    let mut attach = Command::new(s.bin("zlogin"))
        .args(["-Q", "-I", &uuid])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").unwrap();
    drop(stdin);
    let mut stdout = String::new();
    attach
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    attach
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = attach.wait().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stdout.ends_with("hello\nworld\n"), "{stdout:?}");
    assert_eq!(stderr, "done\n");
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(10), "stopped", stopped);
    assert_eq!(vm["exit_status"], 0);
    let logged = lines(&s.log_entries(&uuid));
    assert!(
        logged.contains(&("stdout".into(), "hello\n".into())),
        "{logged:?}"
    );

    // A zone that is not running cannot be attached to.
    let out = run(&s, "zlogin", &["-Q", "-I", &uuid], None);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn an_init_waits_for_attach_until_the_key_is_removed() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let deadline = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    create_ok(
        &s,
        &docker_payload(
            &uuid,
            &image,
            &["echo", "attached"],
            json!({ "docker:wait_for_attach": deadline }),
        ),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    s.wait_for_vm(&uuid, Duration::from_secs(10), "waiting for attach", |vm| {
        vm["state"] == "running"
            && vm["customer_metadata"]["__dockerinit_waiting_for_attach"] == deadline.as_str()
    });
    let attach = Command::new(s.bin("zlogin"))
        .args(["-Q", "-I", &uuid])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(s.log_entries(&uuid).is_empty());
    ok(
        &s,
        "vmadm",
        &["update", &uuid],
        Some(r#"{"remove_internal_metadata": ["docker:wait_for_attach"]}"#),
    );
    let out = attach.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "attached\n");
    let vm = s.wait_for_vm(&uuid, Duration::from_secs(10), "stopped", stopped);
    assert_eq!(vm["exit_status"], 0);
    assert!(
        vm["customer_metadata"]
            .get("__dockerinit_waiting_for_attach")
            .is_none()
    );
}

#[test]
fn the_log_rotates_when_it_would_exceed_zlog_max_size() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let mut payload = docker_payload(
        &uuid,
        &image,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do echo line-$i-0123456789abcdef; i=$((i+1)); done",
        ],
        json!({}),
    );
    payload["zlog_max_size"] = json!(400);
    create_ok(&s, &payload);
    ok(&s, "vmadm", &["start", &uuid], None);
    s.wait_for_vm(&uuid, Duration::from_secs(10), "stopped", stopped);
    let logs = s.zones_root().join(&uuid).join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "stdio.log")
        .collect();
    // Rotated logs sort by name in the order they were written; the current
    // one comes last.
    names.sort();
    names.push("stdio.log".into());
    assert!(names.len() >= 3, "{names:?}");
    let mut all = Vec::new();
    for name in &names {
        let path = logs.join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 400, "{name} is {size} bytes");
        if name != "stdio.log" {
            let suffix = name.strip_prefix("stdio.log.").unwrap();
            // YYYYMMDDTHHMMSSZ, with .NNNN when rotated twice in a second.
            assert_eq!(&suffix[8..9], "T", "{name}");
            assert_eq!(&suffix[15..16], "Z", "{name}");
            assert!(suffix.len() == 16 || suffix.len() == 21, "{name}");
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let entry: Value = serde_json::from_str(line).unwrap();
            all.push(entry["log"].as_str().unwrap().to_string());
        }
    }
    // Rotated files sort before the current one, oldest first: the lines
    // read back in order.
    let expected: Vec<String> = (0..20)
        .map(|i| format!("line-{i}-0123456789abcdef\n"))
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn calls_are_recorded_with_arguments_payload_and_exit_code() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    let payload = docker_payload(&uuid, &image, &["true"], json!({}));
    create_ok(&s, &payload);
    run(&s, "vmadm", &["get", &new_uuid()], None);
    ok(&s, "sysinfo", &[], None);
    let calls = s.calls();
    let tools: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.tool.as_str(), c.subcommand()))
        .collect();
    assert_eq!(
        tools,
        [
            ("imgadm", "import"),
            ("vmadm", "create"),
            ("vmadm", "get"),
            ("sysinfo", "")
        ]
    );
    assert_eq!(calls[1].payload(), Some(payload));
    assert_eq!(calls[1].exit, 0);
    assert_eq!(calls[2].exit, 1);
    assert_eq!(calls[2].stdin, None);
    assert_eq!(calls[0].args, ["import", "-q", image.as_str()]);
}

#[test]
fn injected_create_failures_fail_the_next_creates_then_stop() {
    let s = Standins::new();
    let image = busybox_image(&s);
    s.fail_next_creates(2, "provisioning timed out");
    for _ in 0..2 {
        let uuid = new_uuid();
        let out = create(&s, &docker_payload(&uuid, &image, &["true"], json!({})));
        assert_eq!(out.code, 1);
        assert_eq!(out.stderr.trim(), "provisioning timed out");
        assert!(s.vm(&uuid).is_none());
    }
    let uuid = new_uuid();
    create_ok(&s, &docker_payload(&uuid, &image, &["true"], json!({})));

    // A create cut short leaves the VM failed; vmadm delete removes it.
    s.fail_next_creates_leaving_vm(1, "zone failed to boot");
    let failed = new_uuid();
    let out = create(&s, &docker_payload(&failed, &image, &["true"], json!({})));
    assert_eq!(out.code, 1);
    assert_eq!(s.vm(&failed).unwrap()["state"], "failed");
    let out = run(&s, "vmadm", &["start", &failed], None);
    assert_eq!(out.code, 1, "{out:?}");
    ok(&s, "vmadm", &["delete", &failed], None);
    assert!(s.vm(&failed).is_none());
    assert!(!s.zones_root().join(&failed).exists());
    let out = run(&s, "vmadm", &["delete", &failed], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not found"), "{out:?}");
}

#[test]
fn lookup_list_and_update_report_and_change_vms() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let a = new_uuid();
    let b = new_uuid();
    create_ok(
        &s,
        &docker_payload(&a, &image, &["sleep", "100000"], json!({ "x": "1" })),
    );
    let mut other = docker_payload(&b, &image, &["true"], json!({}));
    other["tags"] = json!({ "sdc_docker": false });
    create_ok(&s, &other);
    ok(&s, "vmadm", &["start", &a], None);

    let out = ok(
        &s,
        "vmadm",
        &[
            "lookup",
            "-j",
            "-o",
            "uuid,state,internal_metadata",
            "tags.sdc_docker=true",
        ],
        None,
    );
    let found: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["uuid"], a.as_str());
    assert_eq!(found[0]["state"], "running");
    assert_eq!(found[0].as_object().unwrap().len(), 3);
    let out = ok(&s, "vmadm", &["lookup", "internal_metadata.x=1"], None);
    assert_eq!(out.stdout.trim(), a);
    let out = ok(&s, "vmadm", &["lookup", "-1", "state=stopped"], None);
    assert_eq!(out.stdout.trim(), b);
    let out = run(&s, "vmadm", &["lookup", "-1", "brand=lx"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("found 2 results"), "{out:?}");
    let out = run(&s, "vmadm", &["lookup", "bogus=1"], None);
    assert_eq!(out.code, 1);

    let out = ok(
        &s,
        "vmadm",
        &["list", "-p", "-H", "-o", "uuid,state,pid", "-s", "uuid"],
        None,
    );
    let pid = s.vm(&a).unwrap()["pid"].as_i64().unwrap();
    let mut expected = vec![format!("{a}:running:{pid}"), format!("{b}:stopped:")];
    expected.sort();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);

    ok(
        &s,
        "vmadm",
        &["update", &b],
        Some(
            r#"{"set_internal_metadata": {"docker:restartcount": 0, "y": "2"},
                "remove_internal_metadata": ["x"], "set_tags": {"t": "v"},
                "max_physical_memory": 1024, "alias": "renamed"}"#,
        ),
    );
    let vm = s.vm(&b).unwrap();
    assert_eq!(vm["internal_metadata"]["y"], "2");
    assert_eq!(vm["internal_metadata"]["docker:restartcount"], 0);
    assert_eq!(vm["tags"]["t"], "v");
    assert_eq!(vm["max_physical_memory"], 1024);
    assert_eq!(vm["alias"], "renamed");
    ok(&s, "vmadm", &["update", &b, "alias=again"], None);
    assert_eq!(s.vm(&b).unwrap()["alias"], "again");
    let out = run(&s, "vmadm", &["update", &b], Some(r#"{"brand": "joyent"}"#));
    assert_eq!(out.code, 1, "{out:?}");

    // delete kills the running zone and destroys its dataset.
    ok(&s, "vmadm", &["delete", &a], None);
    assert!(s.vm(&a).is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    let out = run(&s, "zfs", &["list", &format!("zones/{a}")], None);
    assert_eq!(out.code, 1);
}

#[test]
fn sysinfo_prints_the_node_with_this_machines_memory_and_cores() {
    let s = Standins::new();
    let out = ok(&s, "sysinfo", &[], None);
    let info: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(info["UUID"], sdc_docker_testkit::smartos::SERVER_UUID);
    assert_eq!(info["Hostname"], sdc_docker_testkit::smartos::HOSTNAME);
    assert_eq!(
        info["Datacenter Name"],
        sdc_docker_testkit::smartos::DATACENTER
    );
    assert_eq!(info["System Type"], "SunOS");
    let mib: u64 = info["MiB of Memory"].as_str().unwrap().parse().unwrap();
    assert!(mib > 0);
    assert_eq!(
        info["CPU Total Cores"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
}

#[test]
fn dropping_the_standins_kills_their_zones_and_removes_their_state() {
    let s = Standins::new();
    let image = busybox_image(&s);
    let uuid = new_uuid();
    create_ok(
        &s,
        &docker_payload(&uuid, &image, &["sleep", "100000"], json!({})),
    );
    ok(&s, "vmadm", &["start", &uuid], None);
    let pid = s.vm(&uuid).unwrap()["pid"].as_i64().unwrap();
    assert!(!s.processes().is_empty());
    let root = s.root().to_path_buf();
    drop(s);
    assert!(!root.exists());
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "the zone's init {pid} outlived the stand-ins");
    let marker = format!("SDC_STANDIN_ROOT={}", root.display());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            assert!(
                !env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()),
                "process {:?} outlived the stand-ins",
                entry.file_name()
            );
        }
    }
}
