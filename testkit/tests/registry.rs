//! The registry and image fixtures against the real `docker-registry`:
//! what the builders report is what the registry serves.

use std::time::{Duration, Instant};

use http::StatusCode;
use sdc_docker_testkit::busybox;
use sdc_docker_testkit::image::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Layer, OCI_INDEX, OCI_MANIFEST, sha256_digest, tar_paths,
};
use sdc_docker_testkit::{Format, Image, Registry, wait_for};

/// Every manifest type a pull accepts, as Docker sends them.
const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// Fetch `repository`'s manifest `reference` with `accept`, and check the
/// registry serves exactly `expected_bytes` under `expected_type`.
async fn assert_manifest(
    registry: &Registry,
    repository: &str,
    reference: &str,
    accept: &str,
    expected_type: &str,
    expected_bytes: &[u8],
) {
    let path = format!("/v2/{repository}/manifests/{reference}");
    let response = registry.get(&path, &[("Accept", accept)]).await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::OK,
        "GET {path} (Accept: {accept})"
    );
    assert_eq!(response.header("content-type"), Some(expected_type));
    assert_eq!(&response.body[..], expected_bytes);
    assert_eq!(
        response.header("docker-content-digest"),
        Some(sha256_digest(expected_bytes).as_str())
    );
}

/// Fetch every blob of `image` and check its digest and size.
async fn assert_blobs(registry: &Registry, repository: &str, image: &Image) {
    for blob in image.blobs() {
        let response = registry
            .get(&format!("/v2/{repository}/blobs/{}", blob.digest), &[])
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "blob {}", blob.digest);
        assert_eq!(sha256_digest(&response.body), blob.digest);
        assert_eq!(response.body.len() as u64, blob.size());
    }
}

#[tokio::test]
async fn the_registry_answers_v2_with_200_and_stops_on_drop() {
    let started = Instant::now();
    let registry = Registry::start().await;
    eprintln!("registry ready in {:?}", started.elapsed());
    let response = registry.get("/v2/", &[]).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));

    let url = registry.url();
    let dir = registry.storage_dir().to_path_buf();
    drop(registry);
    assert!(!dir.exists(), "the storage directory is removed on drop");
    let request = http::Request::get(format!("{url}/v2/"))
        .body(bytes::Bytes::new())
        .unwrap();
    assert!(sdc_docker_testkit::http::send(request).await.is_err());
}

#[tokio::test]
async fn a_pushed_docker_image_is_served_with_the_digests_the_builder_reported() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    assert_eq!(image.layers.len(), 3);
    registry.push("library/busybox", "latest", &image).await;

    for accept in [DOCKER_MANIFEST, ACCEPT_ALL] {
        assert_manifest(
            &registry,
            "library/busybox",
            "latest",
            accept,
            DOCKER_MANIFEST,
            &image.manifest.bytes,
        )
        .await;
    }
    assert_manifest(
        &registry,
        "library/busybox",
        image.manifest_digest(),
        ACCEPT_ALL,
        DOCKER_MANIFEST,
        &image.manifest.bytes,
    )
    .await;
    assert_blobs(&registry, "library/busybox", &image).await;

    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    assert_eq!(manifest["config"]["digest"], image.id());
    let layer_digests: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layer_digests, image.layer_digests());

    let config = image.config_json();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(image.diff_ids())
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 3);
    for layer in &image.layers {
        assert_eq!(sha256_digest(&layer.tar()), layer.diff_id);
    }
    let paths = tar_paths(&image.layers[1].tar());
    assert!(
        paths.contains(&"bin/sh -> busybox".to_string()),
        "{paths:?}"
    );
    assert_eq!(tar_paths(&image.layers[2].tar())[0], "etc/motd");
}

#[tokio::test]
async fn an_oci_image_is_served_as_an_oci_manifest() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Oci);
    registry.push("library/busybox", "oci", &image).await;
    for accept in [OCI_MANIFEST, ACCEPT_ALL] {
        assert_manifest(
            &registry,
            "library/busybox",
            "oci",
            accept,
            OCI_MANIFEST,
            &image.manifest.bytes,
        )
        .await;
    }
    assert_blobs(&registry, "library/busybox", &image).await;
    // Same layers as the Docker image, other media types: same diff_ids.
    assert_eq!(
        image.diff_ids(),
        busybox::layered(Format::Docker).diff_ids()
    );
}

#[tokio::test]
async fn the_whiteout_image_deletes_motd_and_makes_a_dir_opaque_in_its_last_layer() {
    let registry = Registry::start().await;
    let image = busybox::with_whiteout(Format::Docker);
    assert_eq!(image.layers.len(), 4);
    registry.push("library/busybox", "whiteout", &image).await;
    assert_manifest(
        &registry,
        "library/busybox",
        "whiteout",
        ACCEPT_ALL,
        DOCKER_MANIFEST,
        &image.manifest.bytes,
    )
    .await;
    assert_blobs(&registry, "library/busybox", &image).await;

    let last = image.layers.last().unwrap();
    let served = registry
        .get(
            &format!("/v2/library/busybox/blobs/{}", last.blob.digest),
            &[],
        )
        .await
        .unwrap();
    let served = Layer {
        blob: sdc_docker_testkit::image::Blob::new(served.body),
        ..last.clone()
    };
    assert_eq!(
        tar_paths(&served.tar()),
        [
            "etc/.wh.motd",
            "var/data/",
            "var/data/.wh..wh..opq",
            "var/data/b"
        ]
    );
}

#[tokio::test]
async fn a_multi_arch_index_is_served_as_a_manifest_list_or_an_oci_index() {
    let registry = Registry::start().await;
    for (format, tag, index_type) in [
        (Format::Docker, "multi", DOCKER_MANIFEST_LIST),
        (Format::Oci, "multi-oci", OCI_INDEX),
    ] {
        let index = busybox::multi_arch(format);
        registry.push_index("library/busybox", tag, &index).await;
        for accept in [index_type, ACCEPT_ALL] {
            assert_manifest(
                &registry,
                "library/busybox",
                tag,
                accept,
                index_type,
                &index.manifest.bytes,
            )
            .await;
        }
        let list: serde_json::Value = serde_json::from_slice(&index.manifest.bytes).unwrap();
        let platforms: Vec<String> = list["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        for image in &index.images {
            assert_manifest(
                &registry,
                "library/busybox",
                image.manifest_digest(),
                ACCEPT_ALL,
                format.manifest_type(),
                &image.manifest.bytes,
            )
            .await;
            assert_blobs(&registry, "library/busybox", image).await;
        }
        let (amd64, arm64) = (index.image("amd64"), index.image("arm64"));
        assert_eq!(arm64.config_json()["architecture"], "arm64");
        assert_eq!(arm64.config_json()["variant"], "v8");
        assert_eq!(amd64.layer_digests(), arm64.layer_digests());
        assert_ne!(amd64.id(), arm64.id());
    }
}

#[tokio::test]
async fn the_htpasswd_registry_challenges_without_credentials_and_answers_with_them() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret").await;
    assert_eq!(registry.credentials(), Some(("alice", "s3cret")));

    let anonymous = http::Request::get(format!("{}/v2/", registry.url()))
        .body(bytes::Bytes::new())
        .unwrap();
    let anonymous = sdc_docker_testkit::http::send(anonymous).await.unwrap();
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let challenge = anonymous.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert!(challenge.contains(sdc_docker_testkit::REALM), "{challenge}");

    let wrong = registry
        .get("/v2/", &[("Authorization", "Basic YWxpY2U6d3Jvbmc=")])
        .await
        .unwrap();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let authenticated = registry.get("/v2/", &[]).await.unwrap();
    assert_eq!(authenticated.status, StatusCode::OK);

    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    assert_manifest(
        &registry,
        "library/busybox",
        "latest",
        ACCEPT_ALL,
        DOCKER_MANIFEST,
        &image.manifest.bytes,
    )
    .await;
}

#[tokio::test]
async fn a_random_image_has_the_layers_and_size_asked_for_and_pushes() {
    let started = Instant::now();
    let image = Image::random(5, 5 * 1024 * 1024, 7);
    eprintln!("5 MB random image built in {:?}", started.elapsed());
    assert_eq!(image.layers.len(), 5);
    let unpacked = image.unpacked_size();
    assert!((5 * 1024 * 1024..5 * 1024 * 1024 + 64 * 1024).contains(&unpacked));
    // Random data does not compress.
    assert!(image.compressed_size() >= 5 * 1024 * 1024);
    assert_eq!(image.id(), Image::random(5, 5 * 1024 * 1024, 7).id());
    assert_ne!(image.id(), Image::random(5, 5 * 1024 * 1024, 8).id());

    let registry = Registry::start().await;
    registry.push("bench/random", "latest", &image).await;
    assert_blobs(&registry, "bench/random", &image).await;
}

#[tokio::test]
async fn a_killed_registry_stops_answering_and_a_blob_can_be_corrupted_on_disk() {
    let mut registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;

    let blob = &image.layers[2].blob;
    let path = registry.blob_path(&blob.digest);
    assert_eq!(std::fs::read(&path).unwrap(), &blob.bytes[..]);
    std::fs::write(&path, b"not the layer").unwrap();
    let served = registry
        .get(&format!("/v2/library/busybox/blobs/{}", blob.digest), &[])
        .await
        .unwrap();
    assert_ne!(sha256_digest(&served.body), blob.digest);

    assert!(registry.is_running());
    registry.kill();
    assert!(!registry.is_running());
    wait_for(
        Duration::from_secs(5),
        "the killed registry to refuse",
        || async { registry.get("/v2/", &[]).await.is_err() },
    )
    .await;
}

#[tokio::test]
async fn the_oci_layout_and_the_docker_archive_are_read_by_skopeo() {
    let image = busybox::layered(Format::Oci);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "latest");
    let archive = dir.path().join("busybox.tar");
    std::fs::write(&archive, image.docker_archive("busybox:latest")).unwrap();

    for source in [
        format!("oci:{}:latest", layout.display()),
        format!("docker-archive:{}", archive.display()),
    ] {
        let output = std::process::Command::new("skopeo")
            .args(["inspect", "--config", &source])
            .output()
            .expect("running skopeo (install it with `bash scripts/install-deps.sh`)");
        assert!(
            output.status.success(),
            "skopeo inspect {source}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!(image.diff_ids())
        );
        assert_eq!(config["architecture"], "amd64");
    }
}
