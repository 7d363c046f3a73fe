//! Looking at containers with the real docker CLI: `docker ps` and its
//! filters, `docker inspect`, `docker top` and `docker rename`, with their
//! errors as the CLI prints them. Needs root and runc; skipped with a
//! message otherwise.

mod common;

use common::http_tcp;
use common::node::{Node, can_run_zones};

/// The lines `docker ARGS` printed, after checking it succeeded.
fn lines(node: &Node, args: &[&str]) -> Vec<String> {
    let out = node.docker(args);
    assert!(out.ok, "docker {args:?}: {out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// The names `docker ps ARGS` lists, newest first.
fn ps_names(node: &Node, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ps", "--format", "{{.Names}}"];
    all.extend_from_slice(args);
    lines(node, &all)
}

/// Three containers, oldest first: `web` running (labelled), `three`
/// exited with 3, `fresh` created.
async fn three_containers(node: &Node) {
    let web = node.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        "--label",
        "team",
        &node.image,
        "sleep",
        "100",
    ]);
    assert!(web.ok, "{web:?}\n{}", node.server.log());
    let three = node.docker(&["run", "--name", "three", &node.image, "sh", "-c", "exit 3"]);
    assert_eq!(three.code, Some(3), "{three:?}");
    let fresh = node.docker(&["create", "--name", "fresh", &node.image, "true"]);
    assert!(fresh.ok, "{fresh:?}");
    node.until_inspect("web", "{{.State.Status}}", |s| s == "running")
        .await;
}

#[tokio::test]
async fn ps_lists_running_containers_and_ps_a_lists_all_newest_first() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    three_containers(&node).await;

    assert_eq!(ps_names(&node, &[]), ["web"]);
    assert_eq!(ps_names(&node, &["-a"]), ["fresh", "three", "web"]);
    let quiet = lines(&node, &["ps", "-q"]);
    assert_eq!(quiet.len(), 1);
    assert_eq!(quiet[0].len(), 12, "{quiet:?}");
    let long = lines(&node, &["ps", "-q", "--no-trunc"]);
    assert_eq!(long[0].len(), 64, "{long:?}");
    assert!(long[0].starts_with(&quiet[0]));
    // -n and --last show the newest whatever their state; -l the newest.
    assert_eq!(ps_names(&node, &["-n", "1"]), ["fresh"]);
    assert_eq!(ps_names(&node, &["--last", "2"]), ["fresh", "three"]);
    assert_eq!(ps_names(&node, &["-l"]), ["fresh"]);

    // Docker's table: the command, the human status, the image.
    let table = lines(
        &node,
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}}|{{.Command}}|{{.Status}}|{{.Image}}",
        ],
    );
    assert_eq!(table.len(), 3, "{table:?}");
    assert_eq!(table[0], format!("fresh|\"true\"|Created|{}", node.image));
    assert!(
        table[1].starts_with("three|\"sh -c 'exit 3'\"|Exited (3) "),
        "{table:?}"
    );
    assert!(
        table[1].ends_with(&format!(" ago|{}", node.image)),
        "{table:?}"
    );
    assert!(table[2].starts_with("web|\"sleep 100\"|Up "), "{table:?}");

    // -s adds the SIZE column: the layer and, virtually, the image.
    let sized = lines(&node, &["ps", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert_eq!(sized.len(), 1);
    assert!(
        sized[0].starts_with("web ") && sized[0].contains("(virtual "),
        "{sized:?}"
    );

    // The standard table prints too.
    let table = lines(&node, &["ps", "-a"]);
    assert!(table[0].starts_with("CONTAINER ID"), "{table:?}");
    assert_eq!(table.len(), 4, "{table:?}");
}

#[tokio::test]
async fn ps_filters_choose_containers_as_docker_does() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    three_containers(&node).await;

    assert_eq!(ps_names(&node, &["--filter", "status=exited"]), ["three"]);
    assert_eq!(ps_names(&node, &["-f", "status=created"]), ["fresh"]);
    assert_eq!(
        ps_names(&node, &["-f", "status=created", "-f", "status=running"]),
        ["fresh", "web"]
    );
    assert_eq!(
        ps_names(&node, &["-a", "--filter", "label=tier=front"]),
        ["web"]
    );
    assert_eq!(ps_names(&node, &["-a", "-f", "label=team"]), ["web"]);
    assert!(ps_names(&node, &["-a", "-f", "label=tier=back"]).is_empty());
    assert_eq!(ps_names(&node, &["-a", "--filter", "name=thr"]), ["three"]);
    assert_eq!(ps_names(&node, &["-a", "--filter", "name=^/w"]), ["web"]);
    let id = lines(&node, &["inspect", "-f", "{{.Id}}", "three"]);
    assert_eq!(
        ps_names(&node, &["-a", "--filter", &format!("id={}", &id[0][..6])]),
        ["three"]
    );
    assert_eq!(
        ps_names(
            &node,
            &["-a", "--filter", &format!("ancestor={}", node.image)]
        ),
        ["fresh", "three", "web"]
    );
    assert!(ps_names(&node, &["-a", "--filter", "ancestor=nosuchimage"]).is_empty());
    assert_eq!(ps_names(&node, &["-a", "--filter", "exited=3"]), ["three"]);
    assert!(ps_names(&node, &["-a", "--filter", "exited=0"]).is_empty());
    assert_eq!(
        ps_names(&node, &["-a", "--filter", "before=three"]),
        ["web"]
    );
    assert_eq!(
        ps_names(&node, &["-a", "--filter", "since=web"]),
        ["fresh", "three"]
    );
    assert_eq!(
        ps_names(&node, &["--filter", "since=web"]),
        Vec::<String>::new()
    );

    // The older map encoding of the filters, as the API takes it.
    let port: u16 = node
        .server
        .docker_host()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let reply = http_tcp(
        port,
        "GET",
        "/v1.45/containers/json?all=1&filters=%7B%22status%22%3A%7B%22exited%22%3Atrue%7D%7D",
    )
    .expect("reply");
    assert_eq!(reply.status, 200, "{reply:?}");
    let rows: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    assert_eq!(rows[0]["Names"][0], "/three", "{rows}");
    assert_eq!(rows[0]["State"], "exited");

    // Docker's refusals.
    let bad = node.docker(&["ps", "--filter", "status=sleeping"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(
        bad.stderr.contains("invalid filter 'status=sleeping'"),
        "{bad:?}"
    );
    let unknown = node.docker(&["ps", "--filter", "colour=red"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown.stderr.contains("invalid filter 'colour'"),
        "{unknown:?}"
    );
    let missing = node.docker(&["ps", "--filter", "before=nope"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("No such container: nope"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn inspect_shows_dockers_fields() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let run = node.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--restart",
        "on-failure:2",
        &node.image,
        "sleep",
        "100",
    ]);
    assert!(run.ok, "{run:?}\n{}", node.server.log());
    let id = run.stdout.trim().to_owned();
    node.until_inspect("web", "{{.State.Status}}", |s| s == "running")
        .await;
    let fields = lines(
        &node,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}} {{json .Config.Cmd}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.Name}} {{len .Id}} {{.HostConfig.LogConfig.Type}} {{.Config.Image}}",
            "web",
        ],
    );
    assert_eq!(
        fields,
        [format!(
            "running 0 true [\"sleep\",\"100\"] on-failure 2 /web 64 json-file {}",
            node.image
        )]
    );
    // The image's environment is in the merged config; the pid is set.
    let env = lines(
        &node,
        &[
            "inspect",
            "-f",
            "{{json .Config.Env}} {{.State.Pid}}",
            "web",
        ],
    );
    assert!(env[0].contains("PATH="), "{env:?}");
    assert!(!env[0].ends_with(" 0"), "{env:?}");
    // By id prefix, with --type, and as `docker container inspect`.
    let typed = lines(
        &node,
        &[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{.Name}}",
            &id[..8],
        ],
    );
    assert_eq!(typed, ["/web"]);
    let whole = node.docker(&["container", "inspect", "web"]);
    assert!(whole.ok, "{whole:?}");
    let parsed: serde_json::Value = serde_json::from_str(&whole.stdout).expect("json");
    assert_eq!(parsed[0]["Id"], id.as_str());
    assert_eq!(parsed[0]["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(parsed[0]["Driver"], "sdc");

    let missing = node.docker(&["container", "inspect", "nope"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("No such container: nope"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn top_shows_the_containers_processes() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let run = node.docker(&["run", "-d", "--name", "web", &node.image, "sleep", "4242"]);
    assert!(run.ok, "{run:?}\n{}", node.server.log());
    node.until_inspect("web", "{{.State.Status}}", |s| s == "running")
        .await;
    let top = lines(&node, &["top", "web"]);
    assert!(top[0].starts_with("UID"), "{top:?}");
    assert_eq!(top.len(), 2, "only the container's process: {top:?}");
    assert!(top[1].ends_with("sleep 4242"), "{top:?}");
    let pid = lines(&node, &["inspect", "-f", "{{.State.Pid}}", "web"]);
    let custom = lines(&node, &["top", "web", "-o", "pid,comm"]);
    assert_eq!(
        custom[0].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(
        custom[1].split_whitespace().collect::<Vec<_>>(),
        [pid[0].as_str(), "sleep"]
    );
    let bad = node.docker(&["top", "web", "--no-such-option"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("ps: "), "{bad:?}");

    let stopped = node.docker(&["create", "--name", "idle", &node.image, "true"]);
    assert!(stopped.ok, "{stopped:?}");
    let not_running = node.docker(&["top", "idle"]);
    assert_eq!(not_running.code, Some(1), "{not_running:?}");
    assert!(
        not_running.stderr.contains("is not running"),
        "{not_running:?}"
    );
}

#[tokio::test]
async fn a_renamed_container_keeps_running_and_its_exit_is_still_seen() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    let run = node.docker(&[
        "run",
        "-d",
        "--name",
        "old",
        &node.image,
        "sh",
        "-c",
        "sleep 3; exit 7",
    ]);
    assert!(run.ok, "{run:?}\n{}", node.server.log());
    let id = run.stdout.trim().to_owned();
    node.until_inspect("old", "{{.State.Status}}", |s| s == "running")
        .await;
    let created = lines(&node, &["inspect", "-f", "{{.Created}}", "old"]);

    let renamed = node.docker(&["rename", "old", "new"]);
    assert!(renamed.ok, "{renamed:?}\n{}", node.server.log());
    assert_eq!(ps_names(&node, &[]), ["new"]);
    let same = lines(
        &node,
        &[
            "inspect",
            "-f",
            "{{.Id}} {{.State.Status}} {{.Created}}",
            "new",
        ],
    );
    assert_eq!(same, [format!("{id} running {}", created[0])]);
    let gone = node.docker(&["inspect", "old"]);
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(
        gone.stderr.contains("No such object: old")
            || gone.stderr.contains("No such container: old"),
        "{gone:?}"
    );

    // The zone is the same one: its exit reaches the new name.
    let ended = node
        .until_inspect("new", "{{.State.Status}} {{.State.ExitCode}}", |s| {
            s.starts_with("exited")
        })
        .await;
    assert_eq!(ended, "exited 7");
}

#[tokio::test]
async fn rename_refuses_taken_invalid_and_unchanged_names_as_docker_does() {
    if !can_run_zones() {
        return;
    }
    let node = Node::start().await;
    for name in ["one", "two"] {
        let created = node.docker(&["create", "--name", name, &node.image, "true"]);
        assert!(created.ok, "{created:?}\n{}", node.server.log());
    }
    let two = lines(&node, &["inspect", "-f", "{{.Id}}", "two"]);

    let taken = node.docker(&["rename", "one", "two"]);
    assert_eq!(taken.code, Some(1), "{taken:?}");
    assert!(
        taken.stderr.contains(&format!(
            "Conflict. The container name \"/two\" is already in use by container \"{}\"",
            two[0]
        )),
        "{taken:?}"
    );
    assert!(
        taken
            .stderr
            .contains("failed to rename container named one"),
        "{taken:?}"
    );

    let invalid = node.docker(&["rename", "one", "bad name!"]);
    assert_eq!(invalid.code, Some(1), "{invalid:?}");
    assert!(
        invalid.stderr.contains(
            "Invalid container name (/bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ),
        "{invalid:?}"
    );

    let unchanged = node.docker(&["rename", "one", "one"]);
    assert_eq!(unchanged.code, Some(1), "{unchanged:?}");
    assert!(
        unchanged
            .stderr
            .contains("Renaming a container with the same name as its current name"),
        "{unchanged:?}"
    );

    let missing = node.docker(&["rename", "nope", "three"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("No such container: nope"),
        "{missing:?}"
    );

    // Nothing moved.
    assert_eq!(ps_names(&node, &["-a"]), ["two", "one"]);
}
