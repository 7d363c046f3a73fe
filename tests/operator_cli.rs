//! The operators' commands (`sdc-docker apply/get/edit/delete`) against a
//! running server, on both store backends, and specs written straight into
//! etcd with `etcdctl`.

mod common;

use common::{CONDITION_TIMEOUT, SDC_DOCKER, Server, etcdctl};
use sdc_docker_testkit::{Etcd, wait_for, wait_for_value};
use serde_json::Value;

const WEB: &str = "\
apiVersion: sdc-docker/v1
kind: Container
metadata:
  name: web
  labels:
    team: edge
spec:
  image: nginx
  cmd: [nginx, -g, daemon off;]
  desiredState: running
";

const DB: &str = "\
kind: container
metadata:
  name: db
spec:
  image: postgres:16
  env: [POSTGRES_PASSWORD=secret]
";

/// `get KIND NAME -o json`, parsed.
fn get_json(server: &Server, kind: &str, name: &str) -> Value {
    let out = server.sdc(&["get", kind, name, "-o", "json"]);
    assert!(out.ok, "{out:?}");
    serde_json::from_str(&out.stdout).expect("get -o json prints JSON")
}

/// Waits until placement and provisioning have both written the status
/// of container `name`.
fn settled(server: &Server, name: &str) {
    let deadline = std::time::Instant::now() + CONDITION_TIMEOUT;
    loop {
        let object = get_json(server, "container", name);
        let types: Vec<&str> = object["status"]["conditions"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["type"].as_str()).collect())
            .unwrap_or_default();
        if types.contains(&"Scheduled") && types.contains(&"Provisioned") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: status never settled: {object}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// apply, get, edit, apply again, delete: what an operator does with a
/// Container spec, checked the way the operator sees it.
fn round_trip(server: &Server) {
    let file = server.write_file("web.yaml", &format!("{WEB}---\n{DB}"));
    let file = file.to_str().expect("UTF-8 path");

    let applied = server.sdc(&["apply", "-f", file]);
    assert!(applied.ok, "{applied:?}");
    assert_eq!(
        applied.stdout,
        "container/web created\ncontainer/db created\n"
    );

    let table = server.sdc(&["get", "containers"]);
    assert!(table.ok, "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table:?}");
    assert!(
        lines[0].contains("IMAGE") && lines[0].contains("GENERATION") && lines[0].contains("AGE")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web ") && l.contains("nginx") && l.contains("running")),
        "{table:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("db ") && l.contains("postgres:16")),
        "{table:?}"
    );

    // Placement and provisioning write their status (this machine is the
    // only node; the images are not there): once both have, the objects
    // stay as they are, and what `get` shows can be applied back.
    for name in ["web", "db"] {
        settled(server, name);
    }
    let yaml = server.sdc(&["get", "container", "web", "-o", "yaml"]);
    assert!(yaml.ok, "{yaml:?}");
    assert!(yaml.stdout.contains("kind: Container"), "{yaml:?}");
    assert!(yaml.stdout.contains("image: nginx"), "{yaml:?}");
    assert!(yaml.stdout.contains("team: edge"), "{yaml:?}");
    // What `get -o yaml` prints (status, uid, resourceVersion and all) is
    // taken back by `apply` as it is.
    let shown = server.write_file("web-as-shown.yaml", &yaml.stdout);
    let shown = server.sdc(&["apply", "-f", shown.to_str().expect("UTF-8 path")]);
    assert!(shown.ok, "{shown:?}");
    assert_eq!(shown.stdout, "container/web unchanged\n");

    let again = server.sdc(&["apply", "-f", file]);
    assert_eq!(
        again.stdout, "container/web unchanged\ncontainer/db unchanged\n",
        "{again:?}"
    );

    // Edit through $EDITOR: a script that changes the image.
    let editor = server.write_script(
        "edit-image.sh",
        r#"sed -i 's/^  image: nginx$/  image: nginx:1.27/' "$1""#,
    );
    let edited = server.sdc_with(
        &["edit", "container", "web"],
        &[("EDITOR", editor.to_str().expect("UTF-8 path"))],
        None,
    );
    assert!(edited.ok, "{edited:?}");
    assert_eq!(edited.stdout, "container/web edited\n");
    let web = get_json(server, "containers", "web");
    assert_eq!(web["spec"]["image"], "nginx:1.27");
    assert_eq!(
        web["metadata"]["generation"], 2,
        "a spec change bumps the generation"
    );
    assert_eq!(web["metadata"]["labels"]["team"], "edge");

    // An editor that changes nothing.
    let unchanged = server.sdc_with(&["edit", "container", "web"], &[("EDITOR", "true")], None);
    assert!(unchanged.ok, "{unchanged:?}");
    assert_eq!(unchanged.stdout, "Edit cancelled, no changes made.\n");

    // Applying the file again puts the file's spec back.
    let reapplied = server.sdc(&["apply", "-f", file]);
    assert_eq!(
        reapplied.stdout, "container/web configured\ncontainer/db unchanged\n",
        "{reapplied:?}"
    );
    assert_eq!(
        get_json(server, "container", "web")["metadata"]["generation"],
        3
    );

    let deleted = server.sdc(&["delete", "container", "web"]);
    assert!(deleted.ok, "{deleted:?}");
    assert_eq!(deleted.stdout, "container/web deleted\n");
    let gone = server.sdc(&["get", "container", "web"]);
    assert!(!gone.ok, "{gone:?}");
    assert_eq!(gone.stderr, "error: container \"web\" not found\n");
    let gone = server.sdc(&["delete", "container", "web"]);
    assert!(!gone.ok);
    assert_eq!(gone.stderr, "error: container \"web\" not found\n");
}

#[tokio::test]
async fn apply_get_edit_delete_round_trip_a_container_on_the_embedded_store() {
    let server = Server::start("embedded").await;
    round_trip(&server);
}

#[tokio::test]
async fn apply_get_edit_delete_round_trip_a_container_on_etcd() {
    let etcd = Etcd::start().await;
    let server = Server::start(&etcd.store_url()).await;
    round_trip(&server);
}

#[tokio::test]
async fn an_edit_of_an_object_changed_meanwhile_is_a_conflict_and_the_edit_is_kept() {
    let server = Server::start("embedded").await;
    let web = server.write_file("web.yaml", WEB);
    assert!(
        server
            .sdc(&["apply", "-f", web.to_str().expect("UTF-8")])
            .ok
    );
    let theirs = server.write_file(
        "theirs.yaml",
        &WEB.replace("image: nginx", "image: nginx:theirs"),
    );
    // While "the editor is open", someone else applies a change.
    let editor = server.write_script(
        "racing-editor.sh",
        &format!(
            "\"{SDC_DOCKER}\" apply -f \"{}\" >/dev/null\nsed -i 's/^  image: nginx$/  image: nginx:mine/' \"$1\"",
            theirs.display()
        ),
    );
    let out = server.sdc_with(
        &["edit", "container", "web"],
        &[("EDITOR", editor.to_str().expect("UTF-8"))],
        None,
    );
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr
            .contains("container \"web\" was modified since you read it"),
        "{out:?}"
    );
    let kept = out
        .stderr
        .split_whitespace()
        .find(|w| w.contains("sdc-docker-edit-"))
        .expect("the message names the kept file");
    let kept_text = std::fs::read_to_string(kept).expect("the edited file is kept");
    assert!(kept_text.contains("image: nginx:mine"), "{kept_text}");
    let _ = std::fs::remove_file(kept);

    let web = get_json(&server, "container", "web");
    assert_eq!(
        web["spec"]["image"], "nginx:theirs",
        "the other change was not overwritten"
    );
}

#[tokio::test]
async fn a_typo_made_in_edit_is_named_at_its_line_in_the_edited_file_and_nothing_changes() {
    let server = Server::start("embedded").await;
    let web = server.write_file("web.yaml", WEB);
    assert!(
        server
            .sdc(&["apply", "-f", web.to_str().expect("UTF-8")])
            .ok
    );
    let editor = server.write_script(
        "typo-editor.sh",
        r#"sed -i 's/^  image: nginx$/  imgae: nginx:typo/' "$1""#,
    );
    let out = server.sdc_with(
        &["edit", "container", "web"],
        &[("EDITOR", editor.to_str().expect("UTF-8"))],
        None,
    );
    assert!(!out.ok, "{out:?}");
    let kept = out
        .stderr
        .split_whitespace()
        .find(|w| w.contains("sdc-docker-edit-"))
        .expect("the message names the kept file");
    let kept_text = std::fs::read_to_string(kept).expect("the edited file is kept");
    let line = kept_text
        .lines()
        .position(|l| l.starts_with("  imgae:"))
        .expect("the typo is in the kept file")
        + 1;
    assert!(
        out.stderr.contains(&format!(
            "unknown field spec.imgae at line {line}, column 3"
        )),
        "the error points into the edited file: {out:?}"
    );
    let _ = std::fs::remove_file(kept);
    let stored = get_json(&server, "container", "web");
    assert_eq!(stored["spec"]["image"], "nginx");
    assert_eq!(stored["metadata"]["generation"], 1);
}

#[tokio::test]
async fn malformed_yaml_in_apply_names_line_and_column_and_stores_nothing() {
    let server = Server::start("embedded").await;
    let file = format!(
        "{WEB}---\n{}",
        DB.replace("image: postgres:16", "image: postgres:16\n  memory: lots")
    );
    // Standard input, as `apply -f -`.
    let out = server.sdc_with(&["apply", "-f", "-"], &[], Some(&file));
    assert!(!out.ok, "{out:?}");
    // WEB is 10 lines, `---` is line 11, DB starts on line 12, memory is on 17.
    assert!(
        out.stderr.starts_with("error: document 2 (line 12): "),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("spec.memory: invalid i64 at line 17, column 11"),
        "{out:?}"
    );

    let syntax = server.sdc_with(
        &["apply", "-f", "-"],
        &[],
        Some("kind: Container\nmetadata: {name: x\n"),
    );
    assert!(!syntax.ok);
    assert!(
        syntax.stderr.contains("line 3") || syntax.stderr.contains("line 2"),
        "{syntax:?}"
    );

    let listed = server.sdc(&["get", "containers"]);
    assert!(listed.ok, "{listed:?}");
    assert_eq!(listed.stdout, "", "nothing was stored: {listed:?}");
    assert_eq!(listed.stderr, "No containers found in account default.\n");
}

#[tokio::test]
async fn a_typo_in_a_field_name_in_apply_is_named_and_nothing_is_stored() {
    let server = Server::start("embedded").await;
    let file = server.write_file(
        "typo.yaml",
        &WEB.replace("  image: nginx", "  imgae: nginx"),
    );
    let out = server.sdc(&["apply", "-f", file.to_str().expect("UTF-8 path")]);
    assert!(!out.ok, "{out:?}");
    assert_eq!(
        out.stderr,
        "error: document 1 (line 1): unknown field spec.imgae at line 8, column 3\n"
    );
    let listed = server.sdc(&["get", "containers"]);
    assert!(listed.ok, "{listed:?}");
    assert_eq!(listed.stdout, "", "nothing was stored: {listed:?}");
}

#[tokio::test]
async fn a_spec_written_with_etcdctl_appears_in_get() {
    let etcd = Etcd::start().await;
    let server = Server::start(&etcd.store_url()).await;
    let put = etcdctl(
        &etcd.endpoints(),
        &[
            "put",
            "/sdc-docker/v1/containers/default/by-hand",
            // Any spelling of the kind `sdc-docker get` takes will do.
            r#"{"kind":"container","metadata":{"name":"by-hand"},"spec":{"image":"busybox","cmd":["sleep","1d"]}}"#,
        ],
    );
    assert!(put.ok, "{put:?}");

    let listed = server.sdc(&["get", "containers"]);
    assert!(listed.ok, "{listed:?}");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("by-hand ") && l.contains("busybox")),
        "{listed:?}"
    );
    // The server fills in what etcdctl left out.
    let object = wait_for_value(CONDITION_TIMEOUT, "uid and generation filled in", || {
        let object = get_json(&server, "container", "by-hand");
        let filled = object["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
            && object["metadata"]["generation"] == 1
            && object["metadata"]["creationTimestamp"].is_string();
        async move { filled.then_some(object) }
    })
    .await;
    assert_eq!(object["spec"]["cmd"], serde_json::json!(["sleep", "1d"]));
    assert_eq!(object["kind"], "Container");
    assert!(
        object["status"]["conditions"]
            .as_array()
            .is_none_or(|c| c.iter().all(|c| c["type"] != "Invalid")),
        "not marked invalid: {object}"
    );
}

#[tokio::test]
async fn a_malformed_spec_put_with_etcdctl_gets_an_invalid_condition_while_others_keep_working() {
    let etcd = Etcd::start().await;
    let server = Server::start(&etcd.store_url()).await;
    let endpoints = etcd.endpoints();
    let bad_key = "/sdc-docker/v1/containers/default/bad";
    let put = etcdctl(
        &endpoints,
        &[
            "put",
            bad_key,
            r#"{"metadata":{"name":"bad"},"spec":{"image":"busybox","memory":"lots"}}"#,
        ],
    );
    assert!(put.ok, "{put:?}");
    let garbage = etcdctl(
        &endpoints,
        &[
            "put",
            "/sdc-docker/v1/containers/default/garbage",
            "not json {",
        ],
    );
    assert!(garbage.ok, "{garbage:?}");

    let condition = wait_for_value(
        CONDITION_TIMEOUT,
        "the Invalid condition on the bad spec",
        || {
            let out = etcdctl(&endpoints, &["get", bad_key, "--print-value-only"]);
            let condition = serde_json::from_str::<Value>(out.stdout.trim())
                .ok()
                .and_then(|v| {
                    v.pointer("/status/conditions")?
                        .as_array()?
                        .iter()
                        .find(|c| c["type"] == "Invalid")
                        .cloned()
                });
            async move { condition }
        },
    )
    .await;
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "MalformedSpec");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("invalid type: string \"lots\""),
        "{message}"
    );
    assert!(message.contains("line 1 column"), "{message}");

    // Recording the condition is done once: the echo of that write changes nothing.
    let revision = |endpoints: &[String]| {
        let out = etcdctl(endpoints, &["get", bad_key, "-w", "json"]);
        serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.pointer("/kvs/0/mod_revision").and_then(Value::as_i64))
    };
    let recorded = revision(&endpoints);
    assert!(recorded.is_some());

    // Everything else still works.
    let web = server.write_file("web.yaml", WEB);
    let applied = server.sdc(&["apply", "-f", web.to_str().expect("UTF-8")]);
    assert!(applied.ok, "{applied:?}");
    assert_eq!(applied.stdout, "container/web created\n");
    let listed = server.sdc(&["get", "containers"]);
    assert!(listed.ok, "{listed:?}");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("nginx")),
        "{listed:?}"
    );
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("bad ") && l.contains("<invalid>")),
        "{listed:?}"
    );
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("garbage ") && l.contains("<invalid>")),
        "{listed:?}"
    );
    assert!(
        listed
            .stdout
            .contains("container/bad does not decode: spec.memory: invalid type: string \"lots\""),
        "{listed:?}"
    );
    assert_eq!(
        revision(&endpoints),
        recorded,
        "the bad spec was not rewritten again"
    );
    let one = server.sdc(&["get", "container", "bad", "-o", "yaml"]);
    assert!(!one.ok);
    assert!(one.stderr.contains("does not decode"), "{one:?}");

    // The operator fixes it in place, keeping the status: the condition goes.
    let fixed = r#"{"metadata":{"name":"bad"},"spec":{"image":"busybox","memory":268435456},"status":{"conditions":[{"type":"Invalid","status":"True","reason":"MalformedSpec","message":"old"}]}}"#;
    assert!(etcdctl(&endpoints, &["put", bad_key, fixed]).ok);
    wait_for(
        CONDITION_TIMEOUT,
        "the Invalid condition to be removed",
        || {
            let out = server.sdc(&["get", "container", "bad", "-o", "json"]);
            let clean = out.ok
                && serde_json::from_str::<Value>(&out.stdout).is_ok_and(|object| {
                    object["status"]["conditions"]
                        .as_array()
                        .is_none_or(|c| c.iter().all(|c| c["type"] != "Invalid"))
                        && object["spec"]["memory"] == 268435456
                });
            async move { clean }
        },
    )
    .await;
    wait_for(
        CONDITION_TIMEOUT,
        "the value that is not JSON to be logged",
        || {
            let logged = server.log().contains("stored value is not a JSON object");
            async move { logged }
        },
    )
    .await;
}
