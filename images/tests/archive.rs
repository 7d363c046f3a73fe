//! `save`, `load` and `import` against images built by the testkit, into
//! image stores in temp dirs and embedded spec stores.

use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Command;

use sdc_docker_images::archive::{
    ArchiveError, DOCKER_LAYER_GZIP, LoadEvent, Loaded, import, load, save,
};
use sdc_docker_images::reference::{Digest, Reference};
use sdc_docker_images::registry::Platform;
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::model::Image;
use sdc_docker_store::{Api, EmbeddedStore};
use sdc_docker_testkit::image::sha256_digest;
use sdc_docker_testkit::{Format, busybox};
use serde_json::Value;

struct Node {
    dir: tempfile::TempDir,
    store: ImageStore,
    images: Api<Image>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let spec = EmbeddedStore::open(&dir.path().join("store.redb"), Default::default()).unwrap();
    Node {
        store,
        images: Api::default_account(std::sync::Arc::new(spec)),
        dir,
    }
}

impl Node {
    async fn load(&self, archive: Vec<u8>) -> (Result<Vec<Loaded>, ArchiveError>, Vec<String>) {
        let mut messages = Vec::new();
        let result = load(
            &self.store,
            &self.images,
            Cursor::new(archive),
            &Platform::linux_amd64(),
            |e| {
                if let LoadEvent::Message(m) = e {
                    messages.push(m)
                }
            },
        )
        .await;
        (result, messages)
    }

    async fn all_images(&self) -> Vec<Image> {
        self.images.list().await.unwrap().items
    }

    /// `docker save` of the images named, into memory.
    async fn save(&self, names: &[&str]) -> Vec<u8> {
        let mut selected = Vec::new();
        for name in names {
            let (image, _) = sdc_docker_images::lookup::find(&self.images, name)
                .await
                .unwrap();
            let tag = Reference::parse_normalized(name)
                .unwrap()
                .with_default_tag()
                .to_string();
            selected.push((image, vec![tag]));
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || save(&store, &selected, Vec::new()))
            .await
            .unwrap()
            .unwrap()
    }
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// A tar of `(name, bytes)` members, in order.
fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        builder.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The members of a tar: name → bytes.
fn members(tar: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

/// A tar of the directory `dir`, as `tar -C dir -cf - .` would make it.
fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn loading_a_docker_archive_records_the_image_under_its_config_digest_with_its_tag() {
    let node = node();
    let image = busybox::layered(Format::Docker);
    let (result, messages) = node.load(image.docker_archive("busybox:latest")).await;
    let loaded = result.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].image.spec.id, image.id());
    assert_eq!(
        loaded[0].image.spec.repo_tags,
        vec!["docker.io/library/busybox:latest"]
    );
    assert_eq!(loaded[0].image.spec.diff_ids, image.diff_ids());
    assert_eq!(messages, vec!["Loaded image: busybox:latest"]);
    for diff_id in image.diff_ids() {
        let diff_id = digest(&diff_id);
        assert!(node.store.has_layer(&diff_id));
        let source = node.store.layer_source(&diff_id).unwrap();
        assert_eq!(source.media_type, DOCKER_LAYER_GZIP);
    }
    assert!(
        node.store
            .layer_dir(&digest(&image.diff_ids()[0]))
            .join("bin/busybox")
            .is_file()
    );
    assert!(node.store.has_blob(&digest(image.id())));
    let found = sdc_docker_images::lookup::find(&node.images, "busybox")
        .await
        .unwrap();
    assert_eq!(found.0.spec.id, image.id());
}

#[tokio::test]
async fn loading_a_second_image_under_the_same_tag_moves_the_tag_and_says_so() {
    let node = node();
    let first = busybox::layered(Format::Docker);
    let second = sdc_docker_testkit::image::Image::random(2, 4096, 7);
    node.load(first.docker_archive("app:v1")).await.0.unwrap();
    let (result, messages) = node.load(second.docker_archive("app:v1")).await;
    result.unwrap();
    assert_eq!(
        messages,
        vec![
            format!(
                "The image app:v1 already exists, renaming the old one with ID {} to empty string",
                first.id()
            ),
            "Loaded image: app:v1".to_owned(),
        ]
    );
    let all = node.all_images().await;
    let old = all.iter().find(|i| i.spec.id == first.id()).unwrap();
    assert!(old.spec.repo_tags.is_empty());
}

#[tokio::test]
async fn loading_an_oci_layout_tar_takes_the_name_from_its_ref_name_annotation() {
    let node = node();
    let image = busybox::with_whiteout(Format::Oci);
    let layout = tempfile::tempdir().unwrap();
    image.write_oci_layout(layout.path(), "localhost:5000/app:v1");
    let (result, messages) = node.load(tar_dir(layout.path())).await;
    let loaded = result.unwrap();
    assert_eq!(loaded[0].image.spec.id, image.id());
    assert_eq!(
        loaded[0].image.spec.repo_tags,
        vec!["localhost:5000/app:v1"]
    );
    assert_eq!(messages, vec!["Loaded image: localhost:5000/app:v1"]);
    // The gzip'd blobs are kept as they came.
    let source = node
        .store
        .layer_source(&digest(&image.diff_ids()[0]))
        .unwrap();
    assert_eq!(source.digest.as_str(), image.layer_digests()[0]);
}

#[tokio::test]
async fn an_oci_layout_whose_ref_name_is_a_bare_tag_loads_untagged() {
    let node = node();
    let image = busybox::layered(Format::Oci);
    let layout = tempfile::tempdir().unwrap();
    image.write_oci_layout(layout.path(), "latest");
    let (result, messages) = node.load(tar_dir(layout.path())).await;
    let loaded = result.unwrap();
    assert!(loaded[0].image.spec.repo_tags.is_empty());
    assert_eq!(messages, vec![format!("Loaded image ID: {}", image.id())]);
}

#[tokio::test]
async fn a_saved_archive_loads_into_a_fresh_store_as_the_same_image() {
    let node_a = node();
    let image = busybox::with_whiteout(Format::Docker);
    node_a
        .load(image.docker_archive("busybox:latest"))
        .await
        .0
        .unwrap();
    let archive = node_a.save(&["busybox"]).await;

    let files = members(&archive);
    for name in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(files.contains_key(name), "{name} missing");
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", image.config.hex())
    );
    for (layer, name) in image
        .layers
        .iter()
        .zip(manifest[0]["Layers"].as_array().unwrap())
    {
        let tar = &files[name.as_str().unwrap()];
        assert_eq!(
            sha256_digest(tar),
            layer.diff_id,
            "layer {name} is its uncompressed tar"
        );
    }
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );

    let node_b = node();
    let (result, messages) = node_b.load(archive).await;
    let loaded = result.unwrap();
    assert_eq!(loaded[0].image.spec.id, image.id());
    assert_eq!(loaded[0].image.spec.diff_ids, image.diff_ids());
    assert_eq!(messages, vec!["Loaded image: busybox:latest"]);
}

#[tokio::test]
async fn a_saved_archive_is_read_by_skopeo_with_the_right_layers() {
    let Ok(output) = Command::new("skopeo").arg("--version").output() else {
        eprintln!("skopeo is not installed (bash scripts/install-deps.sh installs it): skipped");
        return;
    };
    assert!(output.status.success());
    let node = node();
    let image = busybox::layered(Format::Docker);
    node.load(image.docker_archive("busybox:latest"))
        .await
        .0
        .unwrap();
    let archive = node.save(&["busybox:latest"]).await;
    let path = node.dir.path().join("saved.tar");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&archive)
        .unwrap();
    for transport in ["docker-archive", "oci-archive"] {
        let output = Command::new("skopeo")
            .args(["inspect", &format!("{transport}:{}", path.display())])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo inspect {transport}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let inspect: Value = serde_json::from_slice(&output.stdout).unwrap();
        let layers: Vec<String> = inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(layers, image.diff_ids(), "{transport}");
        assert_eq!(inspect["Architecture"], "amd64");
    }
}

#[tokio::test]
async fn a_truncated_or_garbled_archive_is_refused_and_records_no_image() {
    let node = node();
    let archive = busybox::layered(Format::Docker).docker_archive("busybox:latest");
    let truncated = archive[..archive.len() / 2].to_vec();
    let (result, _) = node.load(truncated).await;
    assert!(
        matches!(result, Err(ArchiveError::Invalid(_))),
        "{result:?}"
    );

    let mut garbled = archive.clone();
    for b in &mut garbled[..1024] {
        *b = b.wrapping_add(0x55);
    }
    let (result, _) = node.load(garbled).await;
    let err = result.unwrap_err();
    assert!(err.is_client_error(), "{err}");

    let (result, _) = node.load(b"not a tar at all".repeat(100)).await;
    assert!(result.is_err());
    assert!(node.all_images().await.is_empty());
}

#[tokio::test]
async fn an_archive_missing_a_layer_or_with_a_wrong_diff_id_records_no_image() {
    let node = node();
    let image = sdc_docker_testkit::image::Image::random(2, 4096, 1);
    let other = sdc_docker_testkit::image::Image::random(2, 4096, 2);
    let manifest = |layers: &[&str]| {
        serde_json::to_vec(&serde_json::json!([{
            "Config": "config.json",
            "RepoTags": ["bad:1"],
            "Layers": layers,
        }]))
        .unwrap()
    };

    let missing = tar_of(&[
        ("config.json", image.config.bytes.to_vec()),
        ("a/layer.tar", image.layers[0].tar()),
        ("manifest.json", manifest(&["a/layer.tar", "b/layer.tar"])),
    ]);
    let err = node.load(missing).await.0.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid archive: b/layer.tar is not in the archive"
    );

    let wrong = tar_of(&[
        ("config.json", image.config.bytes.to_vec()),
        ("a/layer.tar", image.layers[0].tar()),
        ("b/layer.tar", other.layers[1].tar()),
        ("manifest.json", manifest(&["a/layer.tar", "b/layer.tar"])),
    ]);
    let err = node.load(wrong).await.0.unwrap_err();
    assert!(err.to_string().contains("DiffID mismatch"), "{err}");
    assert!(err.is_client_error());

    // The same with the wrong layer gzip'd: found while unpacking.
    let gz = other.layers[1].blob.bytes.to_vec();
    let wrong_gz = tar_of(&[
        ("config.json", image.config.bytes.to_vec()),
        ("a/layer.tar", image.layers[0].tar()),
        ("b/layer.tar.gz", gz),
        (
            "manifest.json",
            manifest(&["a/layer.tar", "b/layer.tar.gz"]),
        ),
    ]);
    let err = node.load(wrong_gz).await.0.unwrap_err();
    assert!(err.to_string().contains("DiffID mismatch"), "{err}");
    assert!(node.all_images().await.is_empty());
}

#[tokio::test]
async fn a_member_named_outside_the_archive_is_never_written_there() {
    let node = node();
    let image = busybox::layered(Format::Docker);
    let escape = node.dir.path().join("escaped");
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(3);
    // `append_data` refuses `..`; write the name into the header by hand.
    let name = format!("../../../../../../../..{}", escape.display());
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_cksum();
    archive.append(&header, &b"bad"[..]).unwrap();
    let mut bytes = archive.into_inner().unwrap();
    bytes.truncate(bytes.len() - 1024);
    bytes.extend(image.docker_archive("busybox:latest"));
    node.load(bytes).await.0.unwrap();
    assert!(!escape.exists());
}

#[tokio::test]
async fn importing_a_tarball_makes_a_one_layer_image_with_the_changes_applied() {
    let node = node();
    let busybox = busybox::layered(Format::Docker);
    let tar = busybox.layers[0].tar();
    let image = import(
        &node.store,
        &node.images,
        Cursor::new(tar.clone()),
        Some(Reference::parse_normalized("imported").unwrap()),
        &[r#"CMD ["sh"]"#.to_owned(), "ENV A=b".to_owned()],
        None,
        &Platform::linux_amd64(),
    )
    .await
    .unwrap();
    assert_eq!(image.spec.diff_ids, vec![sha256_digest(&tar)]);
    assert_eq!(
        image.spec.repo_tags,
        vec!["docker.io/library/imported:latest"]
    );
    assert_eq!(
        image.spec.config["config"]["Cmd"],
        serde_json::json!(["sh"])
    );
    assert_eq!(
        image.spec.config["config"]["Env"],
        serde_json::json!(["A=b"])
    );
    assert_eq!(image.spec.config["architecture"], "amd64");
    assert_eq!(image.spec.config["os"], "linux");
    assert_eq!(
        image.spec.config["history"][0]["comment"],
        "Imported from -"
    );
    let config = std::fs::read(node.store.blob_path(&digest(&image.spec.id))).unwrap();
    assert_eq!(sha256_digest(&config), image.spec.id);
    let diff_id = digest(&sha256_digest(&tar));
    assert!(node.store.layer_dir(&diff_id).join("bin/busybox").is_file());
    assert_eq!(
        node.store.layer_source(&diff_id).unwrap().media_type,
        DOCKER_LAYER_GZIP
    );

    // The same tarball gzip'd gives the same layer.
    let gz = import(
        &node.store,
        &node.images,
        Cursor::new(busybox.layers[0].blob.bytes.to_vec()),
        None,
        &[],
        Some("from gzip".into()),
        &Platform::linux_amd64(),
    )
    .await
    .unwrap();
    assert_eq!(gz.spec.diff_ids, vec![sha256_digest(&tar)]);
    assert!(gz.spec.repo_tags.is_empty());
    assert_eq!(gz.spec.config["comment"], "from gzip");
}

#[tokio::test]
async fn an_import_with_an_unknown_change_is_refused_before_anything_is_stored() {
    let node = node();
    let err = import(
        &node.store,
        &node.images,
        Cursor::new(Vec::new()),
        None,
        &["FROM scratch".to_owned()],
        None,
        &Platform::linux_amd64(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "from is not a valid change command");
    assert!(node.all_images().await.is_empty());
}

#[tokio::test]
async fn an_imported_image_saves_and_loads_again() {
    let node_a = node();
    let tar = busybox::layered(Format::Docker).layers[2].tar();
    let image = import(
        &node_a.store,
        &node_a.images,
        Cursor::new(tar),
        Some(Reference::parse_normalized("motd:1").unwrap()),
        &[],
        None,
        &Platform::linux_amd64(),
    )
    .await
    .unwrap();
    let archive = node_a.save(&["motd:1"]).await;
    let node_b = node();
    let loaded = node_b.load(archive).await.0.unwrap();
    assert_eq!(loaded[0].image.spec.id, image.spec.id);
    assert_eq!(loaded[0].tags, vec!["motd:1"]);
}
