//! `docker pull`, `images`, `inspect`, `history`, `tag` and `rmi` with the
//! real docker CLI against `sdc-docker serve`, pulling from a real
//! Registry v2 (Debian's `docker-registry`) that the test starts and fills
//! with images it builds itself.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Server, docker_command};
use sdc_docker_testkit::image::{Image, ImageBuilder, RawEntry, raw_layer};
use sdc_docker_testkit::{Format, Registry, busybox};

/// The images dir of a server's data dir.
fn images_dir(server: &Server) -> PathBuf {
    server.dir().join("data/images")
}

/// Names in `dir` that are not temp files.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn docker_pull_shows_progress_and_a_second_pull_says_up_to_date() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/library/busybox", registry.host());

    let out = server.docker(&["pull", &reference]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("Using default tag: latest"), "{out:?}");
    assert!(
        out.stdout.contains("latest: Pulling from library/busybox"),
        "{out:?}"
    );
    for layer in image.layer_digests() {
        let short: String = layer
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        assert!(
            out.stdout.contains(&format!("{short}: Pull complete")),
            "layer {short}: {out:?}"
        );
    }
    assert!(
        out.stdout
            .contains(&format!("Digest: {}", image.manifest_digest())),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!(
            "Status: Downloaded newer image for {reference}:latest"
        )),
        "{out:?}"
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some(&*format!("{reference}:latest"))
    );

    let again = server.docker(&["pull", &reference]);
    assert!(again.ok, "{again:?}");
    assert!(
        again.stdout.contains(&format!(
            "Status: Image is up to date for {reference}:latest"
        )),
        "{again:?}"
    );
    assert!(!again.stdout.contains("Pull complete"), "{again:?}");
}

#[tokio::test]
async fn images_inspect_history_tag_and_rmi_show_what_docker_shows() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Oci);
    registry.push("library/busybox", "1.36", &image).await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/library/busybox:1.36", registry.host());
    let short_id: String = image
        .id()
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect();

    let pulled = server.docker(&["pull", "-q", &reference]);
    assert!(pulled.ok, "{pulled:?}");
    assert_eq!(pulled.stdout.trim(), reference);

    let listed = server.docker(&["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]);
    assert!(listed.ok, "{listed:?}");
    assert_eq!(
        listed.stdout.trim(),
        format!("{}/library/busybox 1.36 {short_id}", registry.host())
    );

    let id = server.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}",
        &reference,
    ]);
    assert!(id.ok, "{id:?}");
    assert_eq!(
        id.stdout.trim(),
        format!("{} linux/amd64 {}", image.id(), image.diff_ids().len())
    );
    // By id prefix and by digest too.
    let by_prefix = server.docker(&["image", "inspect", "--format", "{{.Id}}", &short_id[..6]]);
    assert_eq!(by_prefix.stdout.trim(), image.id(), "{by_prefix:?}");
    let digested = format!(
        "{}/library/busybox@{}",
        registry.host(),
        image.manifest_digest()
    );
    let by_digest = server.docker(&["image", "inspect", "--format", "{{.Id}}", &digested]);
    assert_eq!(by_digest.stdout.trim(), image.id(), "{by_digest:?}");

    let history = server.docker(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}",
        &reference,
    ]);
    assert!(history.ok, "{history:?}");
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert_eq!(lines.len(), image.diff_ids().len(), "{history:?}");
    assert!(
        lines[0].starts_with(&format!("{}|", image.id())),
        "{history:?}"
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("<missing>|")),
        "{history:?}"
    );

    let tagged = server.docker(&["tag", &reference, "mine:v1"]);
    assert!(tagged.ok, "{tagged:?}");
    let both = server.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = both.stdout.lines().collect();
    names.sort();
    assert_eq!(names, [reference.as_str(), "mine:v1"], "{both:?}");
    let filtered = server.docker(&[
        "images",
        "--filter",
        "reference=mine",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(filtered.stdout.trim(), "mine:v1", "{filtered:?}");

    let untag = server.docker(&["rmi", "mine:v1"]);
    assert!(untag.ok, "{untag:?}");
    assert_eq!(untag.stdout.trim(), "Untagged: mine:v1");
    assert!(!entries(&images_dir(&server).join("layers")).is_empty());

    let missing = server.docker(&["rmi", "mine:v1"]);
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("Error response from daemon: No such image: mine:v1"),
        "{missing:?}"
    );

    let removed = server.docker(&["rmi", &reference]);
    assert!(removed.ok, "{removed:?}");
    assert!(
        removed.stdout.contains(&format!("Untagged: {reference}")),
        "{removed:?}"
    );
    assert!(
        removed.stdout.contains(&format!("Deleted: {}", image.id())),
        "{removed:?}"
    );
    for diff_id in image.diff_ids() {
        assert!(
            removed.stdout.contains(&format!("Deleted: {diff_id}")),
            "{removed:?}"
        );
    }
    let none = server.docker(&["images", "-q"]);
    assert_eq!(none.stdout.trim(), "", "{none:?}");
    assert_eq!(
        entries(&images_dir(&server).join("layers")),
        Vec::<String>::new(),
        "no layer left on disk"
    );
    assert_eq!(
        entries(&images_dir(&server).join("blobs/sha256")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn pulling_an_unknown_tag_prints_dockers_error_and_exits_1() {
    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::layered(Format::Docker),
        )
        .await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/library/busybox:nope", registry.host());
    let out = server.docker(&["pull", &reference]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "Error response from daemon: manifest for {reference} not found: manifest unknown"
        )),
        "{out:?}"
    );
    let bad = server.docker(&["pull", "Not/Valid"]);
    assert!(!bad.ok);
    assert!(bad.stderr.contains("invalid reference format"), "{bad:?}");
}

#[tokio::test]
async fn a_registry_stopped_mid_pull_fails_the_pull_clearly_and_leaves_no_image() {
    let mut registry = Registry::start().await;
    // Big enough that the pull is still downloading when the registry dies.
    let image = Image::random(4, 48 * 1024 * 1024, 7);
    registry.push("big/image", "latest", &image).await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/big/image", registry.host());

    let mut child = docker_command(&server.docker_host(), server.dir(), &["pull", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker pull");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        seen.push_str(&line);
        seen.push('\n');
        // The CLI prints no `Downloading` lines when not on a terminal; the
        // first layer done is the cue. Reading goes on to the end, so the
        // CLI never dies of a closed pipe.
        if line.contains("Download complete") && registry.is_running() {
            registry.kill();
        }
    }
    let out = child.wait_with_output().expect("docker pull ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{seen}{stderr}");
    assert!(
        stderr.contains("connection refused")
            || stderr.contains("error sending request")
            || stderr.contains("reading")
            || stderr.contains("registry"),
        "a clear error: {seen}{stderr}"
    );
    let none = server.docker(&["images", "-q", "-a"]);
    assert_eq!(none.stdout.trim(), "", "no image recorded: {none:?}");
    let blobs = entries(&images_dir(&server).join("blobs/sha256"));
    assert!(
        blobs.iter().all(|b| !b.starts_with(".tmp-")),
        "no temp file left: {blobs:?}"
    );
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_fails_the_pull_and_is_not_stored() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let last = image.layer_digests().last().cloned().expect("a layer");
    let path = registry.blob_path(&last);
    let size = std::fs::metadata(&path).expect("the stored blob").len() as usize;
    std::fs::write(&path, vec![b'x'; size]).expect("corrupting the blob");
    let server = Server::start("embedded").await;

    let out = server.docker(&["pull", &format!("{}/library/busybox", registry.host())]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains("digest mismatch for blob") || out.stdout.contains("digest mismatch"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&last),
        "the error names the blob: {out:?}"
    );
    let blobs = entries(&images_dir(&server).join("blobs/sha256"));
    assert!(
        !blobs.contains(&last.trim_start_matches("sha256:").to_owned()),
        "{blobs:?}"
    );
    let none = server.docker(&["images", "-q"]);
    assert_eq!(none.stdout.trim(), "", "{none:?}");
}

#[tokio::test]
async fn a_hostile_layer_never_writes_outside_the_image_store() {
    let registry = Registry::start().await;
    let server = Server::start("embedded").await;
    let data = server.dir().join("data");
    let layer = raw_layer(
        "ADD hostile",
        &[
            RawEntry::file("../../../escaped-dotdot", b"pwned"),
            RawEntry::symlink("link", "../../../.."),
            RawEntry::file("link/escaped-through-link", b"pwned"),
            RawEntry::file("ok", b"fine"),
        ],
    );
    let image = ImageBuilder::new().layer(layer).build(Format::Docker);
    registry.push("evil/image", "latest", &image).await;

    let out = server.docker(&["pull", &format!("{}/evil/image", registry.host())]);
    // Either refused with a clear error, or unpacked safely inside its dir.
    if !out.ok {
        assert!(
            out.stderr.contains("escaped-dotdot") || out.stderr.contains("outside"),
            "{out:?}"
        );
    }
    for dir in [
        server.dir().to_path_buf(),
        data.clone(),
        images_dir(&server),
    ] {
        for name in entries(&dir) {
            assert!(!name.starts_with("escaped"), "{} has {name}", dir.display());
        }
    }
    let escaped_anywhere = Command::new("find")
        .args([
            server.dir().parent().expect("tmp").to_str().expect("utf-8"),
            "-maxdepth",
            "3",
            "-name",
            "escaped-*",
        ])
        .output()
        .expect("find");
    assert_eq!(String::from_utf8_lossy(&escaped_anywhere.stdout).trim(), "");
}

#[tokio::test]
async fn an_authenticated_registry_needs_docker_login_before_a_pull() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret").await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let server = Server::start("embedded").await;
    let reference = format!("{}/library/busybox", registry.host());

    let denied = server.docker(&["pull", &reference]);
    assert!(!denied.ok, "{denied:?}");
    assert!(
        denied.stderr.contains("pull access denied for"),
        "{denied:?}"
    );

    let wrong = server.docker_with_stdin(
        &["login", &registry.host(), "-u", "alice", "--password-stdin"],
        b"wrong\n",
    );
    assert!(!wrong.ok, "{wrong:?}");
    assert!(
        wrong.stderr.contains(&format!(
            "login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
            registry.host()
        )),
        "{wrong:?}"
    );

    let login = server.docker_with_stdin(
        &["login", &registry.host(), "-u", "alice", "--password-stdin"],
        b"s3cret\n",
    );
    assert!(login.ok, "{login:?}");
    assert!(login.stdout.contains("Login Succeeded"), "{login:?}");

    let pulled = server.docker(&["pull", &reference]);
    assert!(pulled.ok, "{pulled:?}");
    assert!(
        pulled
            .stdout
            .contains(&format!("Digest: {}", image.manifest_digest())),
        "{pulled:?}"
    );
}

#[tokio::test]
async fn docker_save_then_docker_load_on_another_server_gives_the_same_image() {
    let registry = Registry::start().await;
    let image = busybox::with_whiteout(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let first = Server::start("embedded").await;
    let reference = format!("{}/library/busybox:latest", registry.host());
    assert!(first.docker(&["pull", "-q", &reference]).ok);

    let saved = first.dir().join("busybox.tar");
    let save = first.docker(&["save", "-o", saved.to_str().expect("utf-8"), &reference]);
    assert!(save.ok, "{save:?}");
    let tar = std::fs::read(&saved).expect("the saved tar");

    let second = Server::start("embedded").await;
    let load = second.docker_with_stdin(&["load"], &tar);
    assert!(load.ok, "{load:?}");
    assert!(
        load.stdout.contains(&format!("Loaded image: {reference}")),
        "{load:?}"
    );
    let id = second.docker(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    assert_eq!(id.stdout.trim(), image.id(), "{id:?}");
    let layers = second.docker(&[
        "image",
        "inspect",
        "--format",
        "{{join .RootFS.Layers \",\"}}",
        &reference,
    ]);
    assert_eq!(
        layers.stdout.trim(),
        image.diff_ids().join(","),
        "{layers:?}"
    );

    let elsewhere = second.dir().join("nothere.tar");
    let unknown = second.docker(&["save", "-o", elsewhere.to_str().expect("utf-8"), "nothere"]);
    assert!(!unknown.ok);
    assert!(
        unknown.stderr.contains("No such image: nothere"),
        "{unknown:?}"
    );
    let garbage = second.docker_with_stdin(&["load"], &tar[..tar.len() / 3]);
    assert!(!garbage.ok, "{garbage:?}");
    let images = second.docker(&["images", "-q"]);
    assert_eq!(
        images.stdout.lines().count(),
        1,
        "nothing more recorded: {images:?}"
    );
}

#[tokio::test]
async fn docker_import_makes_a_one_layer_image_with_the_changes_asked_for() {
    let server = Server::start("embedded").await;
    let rootfs = busybox::layered(Format::Docker)
        .layers
        .first()
        .expect("a layer")
        .tar();
    let out = server.docker_with_stdin(
        &[
            "import",
            "--change",
            "CMD [\"sh\"]",
            "--change",
            "ENV FOO=bar",
            "-m",
            "my message",
            "-",
            "mybox:1",
        ],
        &rootfs,
    );
    assert!(out.ok, "{out:?}");
    let id = out.stdout.trim().to_owned();
    assert!(id.starts_with("sha256:"), "{out:?}");
    let inspect = server.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{json .Config.Env}} {{len .RootFS.Layers}}",
        "mybox:1",
    ]);
    assert_eq!(
        inspect.stdout.trim(),
        r#"["sh"] ["FOO=bar"] 1"#,
        "{inspect:?}"
    );
    let history = server.docker(&["history", "--format", "{{.Comment}}", "mybox:1"]);
    assert_eq!(history.stdout.trim(), "my message", "{history:?}");
    let bad = server.docker_with_stdin(&["import", "--change", "RUN true", "-", "bad:1"], &rootfs);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("run is not a valid change command"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn docker_push_sends_an_image_that_pulls_back_identical_and_search_finds_it() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let server = Server::start("embedded").await;
    let source = format!("{}/library/busybox", registry.host());
    let target = format!("{}/team/app:v1", registry.host());
    assert!(server.docker(&["pull", "-q", &source]).ok);
    assert!(server.docker(&["tag", &source, &target]).ok);

    let pushed = server.docker(&["push", &target]);
    assert!(pushed.ok, "{pushed:?}");
    assert!(
        pushed.stdout.contains(&format!(
            "The push refers to repository [{}/team/app]",
            registry.host()
        )),
        "{pushed:?}"
    );
    assert!(pushed.stdout.contains("v1: digest: sha256:"), "{pushed:?}");
    let again = server.docker(&["push", &target]);
    assert!(again.ok, "{again:?}");
    assert!(again.stdout.contains("Layer already exists"), "{again:?}");

    let elsewhere = Server::start("embedded").await;
    let pulled = elsewhere.docker(&["pull", "-q", &target]);
    assert!(pulled.ok, "{pulled:?}");
    let id = elsewhere.docker(&["image", "inspect", "--format", "{{.Id}}", &target]);
    assert_eq!(id.stdout.trim(), image.id(), "{id:?}");

    let missing = server.docker(&["push", &format!("{}/team/app:nope", registry.host())]);
    assert!(!missing.ok);
    assert!(missing.stderr.contains("tag does not exist"), "{missing:?}");

    let found = server.docker(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/app", registry.host()),
    ]);
    assert!(found.ok, "{found:?}");
    assert_eq!(
        found.stdout.trim(),
        format!("{}/team/app", registry.host()),
        "{found:?}"
    );
    let nothing = server.docker(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/zzz", registry.host()),
    ]);
    assert!(nothing.ok, "{nothing:?}");
    assert_eq!(nothing.stdout.trim(), "", "{nothing:?}");
}
