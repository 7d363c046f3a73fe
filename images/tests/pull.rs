//! `pull` against a real `docker-registry` started by the testkit, into an
//! image store in a temp dir and an embedded spec store.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use sdc_docker_images::pull::{PullEvent, pull};
use sdc_docker_images::reference::{Digest, Reference};
use sdc_docker_images::registry::{Client, ClientConfig, Platform};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::model::Image;
use sdc_docker_store::{Api, EmbeddedStore};
use sdc_docker_testkit::{Format, Registry, busybox};

struct Node {
    _dir: tempfile::TempDir,
    store: ImageStore,
    images: Api<Image>,
    client: Client,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let spec = EmbeddedStore::open(&dir.path().join("store.redb"), Default::default()).unwrap();
    Node {
        store,
        images: Api::default_account(std::sync::Arc::new(spec)),
        client: Client::new(ClientConfig::default()).unwrap(),
        _dir: dir,
    }
}

impl Node {
    async fn pull(&self, reference: &str) -> (Result<Image, String>, Vec<PullEvent>) {
        let mut events = Vec::new();
        let result = pull(
            &self.client,
            &self.store,
            &self.images,
            &Reference::parse_normalized(reference).unwrap(),
            &Platform::linux_amd64(),
            |e| events.push(e),
        )
        .await
        .map_err(|e| e.to_string());
        (result, events)
    }
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

fn statuses(events: &[PullEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            PullEvent::Layer { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

/// Nothing under `dir` but complete entries (no `.tmp-` left behind).
fn assert_no_temp(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with(".tmp-"),
            "{name:?} left in {dir:?}"
        );
    }
}

#[tokio::test]
async fn pulling_a_layered_busybox_records_the_image_and_unpacks_its_layers() {
    let registry = Registry::start().await;
    let image = busybox::with_whiteout(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let node = node();

    let (result, events) = node
        .pull(&format!("{}/library/busybox", registry.host()))
        .await;
    let pulled = result.unwrap();

    let tag = format!("{}/library/busybox:latest", registry.host());
    assert_eq!(
        pulled.metadata.name,
        image.id().strip_prefix("sha256:").unwrap()
    );
    let stored = node.images.get(&pulled.metadata.name).await.unwrap();
    assert_eq!(stored.spec.id, image.id());
    assert_eq!(stored.spec.repo_tags, vec![tag.clone()]);
    assert_eq!(
        stored.spec.repo_digests,
        vec![format!(
            "{}/library/busybox@{}",
            registry.host(),
            image.manifest_digest()
        )]
    );
    assert_eq!(stored.spec.diff_ids, image.diff_ids());
    assert_eq!(
        (stored.spec.os.as_str(), stored.spec.architecture.as_str()),
        ("linux", "amd64")
    );
    assert!(stored.spec.size > 0);

    let lower = node.store.lower_dirs(&stored);
    assert_eq!(lower.len(), 4);
    assert!(
        lower[3].join("bin/busybox").is_file(),
        "bottom layer holds busybox"
    );
    if rustix::process::geteuid().is_root() {
        let motd = std::fs::symlink_metadata(lower[0].join("etc/motd")).unwrap();
        assert!(
            motd.file_type().is_char_device(),
            "whiteout is a 0/0 char device"
        );
    }
    for layer in &image.layers {
        assert!(node.store.has_blob(&digest(&layer.blob.digest)));
    }

    assert_eq!(
        events.first(),
        Some(&PullEvent::PullingFrom {
            repo: "library/busybox".into(),
            tag: "latest".into()
        })
    );
    assert!(events.contains(&PullEvent::Digest(digest(image.manifest_digest()))));
    assert!(events.iter().any(
        |e| matches!(e, PullEvent::Layer { status, current: Some(c), total: Some(t), .. }
        if status == "Downloading" && c == t)
    ));
    assert_eq!(
        statuses(&events)
            .iter()
            .filter(|s| *s == "Pull complete")
            .count(),
        4
    );
    assert_eq!(
        events.last(),
        Some(&PullEvent::Status(format!(
            "Downloaded newer image for {tag}"
        )))
    );
}

#[tokio::test]
async fn zstd_uncompressed_and_gzip_layers_are_pulled_verified_and_unpacked_alike() {
    for format in [Format::Docker, Format::Oci] {
        let registry = Registry::start().await;
        let image = busybox::mixed_compression(format);
        assert_eq!(
            image.id(),
            busybox::layered(format).id(),
            "same tars, same image"
        );
        registry.push("library/busybox", "mixed", &image).await;
        let node = node();

        let (result, _) = node
            .pull(&registry.reference("library/busybox", "mixed"))
            .await;
        let pulled = result.unwrap_or_else(|e| panic!("{format:?}: {e}"));

        assert_eq!(pulled.spec.id, image.id());
        assert_eq!(pulled.spec.diff_ids, image.diff_ids());
        for layer in &image.layers {
            assert!(
                node.store.has_blob(&digest(&layer.blob.digest)),
                "{format:?}: the {:?} blob is stored under its own digest",
                layer.compression
            );
        }
        let lower = node.store.lower_dirs(&pulled);
        assert_eq!(lower.len(), 3);
        assert_eq!(
            std::fs::read(lower[2].join("bin/busybox")).unwrap(),
            std::fs::read(busybox::binary()).unwrap(),
            "{format:?}: the zstd layer unpacks the busybox binary byte for byte"
        );
        assert_eq!(
            std::fs::read_link(lower[1].join("bin/sh")).unwrap(),
            Path::new("busybox"),
            "{format:?}: the uncompressed layer unpacks its symlinks"
        );
        assert_eq!(
            std::fs::read_to_string(lower[0].join("etc/motd")).unwrap(),
            busybox::MOTD
        );
    }
}

#[tokio::test]
async fn pulling_again_reports_up_to_date_and_downloads_nothing() {
    let registry = Registry::start().await;
    registry
        .push("library/busybox", "latest", &busybox::layered(Format::Oci))
        .await;
    let node = node();
    let reference = registry.reference("library/busybox", "latest");
    node.pull(&reference).await.0.unwrap();

    let (result, events) = node.pull(&reference).await;
    result.unwrap();
    assert_eq!(statuses(&events), vec!["Already exists"; 3]);
    assert_eq!(
        events.last(),
        Some(&PullEvent::Status(format!(
            "Image is up to date for {reference}"
        )))
    );
    assert_eq!(node.images.list().await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn two_images_sharing_the_busybox_layer_store_it_once_and_a_tag_moves() {
    let registry = Registry::start().await;
    let layered = busybox::layered(Format::Docker);
    let whiteout = busybox::with_whiteout(Format::Docker);
    registry.push("library/busybox", "latest", &layered).await;
    registry
        .push("library/busybox", "whiteout", &whiteout)
        .await;
    let node = node();
    node.pull(&registry.reference("library/busybox", "latest"))
        .await
        .0
        .unwrap();

    let (result, events) = node
        .pull(&registry.reference("library/busybox", "whiteout"))
        .await;
    result.unwrap();
    assert_eq!(
        statuses(&events)
            .iter()
            .filter(|s| *s == "Already exists")
            .count(),
        3,
        "{events:?}"
    );
    let layers = std::fs::read_dir(node.store.root().join("layers"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count();
    assert_eq!(layers, 4);

    // Retagging `latest` to the whiteout image moves the tag off the first.
    registry.push("library/busybox", "latest", &whiteout).await;
    node.pull(&registry.reference("library/busybox", "latest"))
        .await
        .0
        .unwrap();
    let old = node
        .images
        .get(layered.id().strip_prefix("sha256:").unwrap())
        .await
        .unwrap();
    assert!(old.spec.repo_tags.is_empty(), "{:?}", old.spec.repo_tags);
    let new = node
        .images
        .get(whiteout.id().strip_prefix("sha256:").unwrap())
        .await
        .unwrap();
    assert_eq!(new.spec.repo_tags.len(), 2);
}

#[tokio::test]
async fn a_corrupted_blob_fails_the_pull_and_leaves_nothing_half_stored() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let top = image.layers.last().unwrap();
    let mut bytes = top.blob.bytes.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(registry.blob_path(&top.blob.digest), bytes).unwrap();
    let node = node();

    let (result, _) = node
        .pull(&registry.reference("library/busybox", "latest"))
        .await;
    let error = result.unwrap_err();
    assert!(error.contains("digest mismatch"), "{error}");
    assert!(node.images.list().await.unwrap().items.is_empty());
    assert!(!node.store.has_blob(&digest(&top.blob.digest)));
    assert!(!node.store.has_layer(&digest(&top.diff_id)));
    assert_no_temp(&node.store.root().join("blobs/sha256"));
    assert_no_temp(&node.store.root().join("layers"));
}

#[tokio::test]
async fn a_registry_killed_mid_pull_fails_it_without_an_image() {
    let mut registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let node = node();
    let reference =
        Reference::parse_normalized(&registry.reference("library/busybox", "latest")).unwrap();

    // Killed once the manifest and config are in, before any layer.
    let result = pull(
        &node.client,
        &node.store,
        &node.images,
        &reference,
        &Platform::linux_amd64(),
        |e| {
            if matches!(e, PullEvent::Layer { .. }) {
                registry.kill();
            }
        },
    )
    .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("unreachable"), "{error}");
    assert!(node.images.list().await.unwrap().items.is_empty());
    for layer in &image.layers {
        assert!(!node.store.has_layer(&digest(&layer.diff_id)));
    }
    assert_no_temp(&node.store.root().join("blobs/sha256"));
}
