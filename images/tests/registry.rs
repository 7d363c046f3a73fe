//! The Registry v2 client against a real `docker-registry` (Debian's
//! Distribution 2.8) started by the testkit, with images pushed there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{
    Client, ClientConfig, Credentials, DOCKER_MANIFEST, OCI_MANIFEST, Platform, RegistryError,
    ResolvedManifest,
};
use sdc_docker_testkit::busybox;
use sdc_docker_testkit::{Format, Image, Registry};

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

fn reference(s: &str) -> Reference {
    Reference::parse_normalized(s).unwrap()
}

/// The resolved manifest describes `image` exactly.
fn assert_is(resolved: &ResolvedManifest, image: &Image) {
    assert_eq!(resolved.digest.as_str(), image.manifest_digest());
    assert_eq!(resolved.bytes, image.manifest.bytes);
    assert_eq!(resolved.manifest.media_type, image.manifest_type());
    assert_eq!(
        resolved.manifest.config.digest.as_str(),
        image.config.digest
    );
    assert_eq!(resolved.manifest.config.size, image.config.size());
    let layers: Vec<&str> = resolved
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.as_str())
        .collect();
    assert_eq!(layers, image.layer_digests());
    for (descriptor, layer) in resolved.manifest.layers.iter().zip(&image.layers) {
        assert_eq!(descriptor.size, layer.blob.size());
        assert_eq!(
            descriptor.media_type,
            image.format.layer_type(layer.compression)
        );
    }
}

/// Resolve, then fetch the config and every layer, checking contents and
/// that progress reached the layer's size.
async fn pull_and_check(client: &Client, r: &Reference, image: &Image) {
    let resolved = client.resolve(r, &Platform::linux_amd64()).await.unwrap();
    assert_is(&resolved, image);
    let config = client.fetch_config(r, &resolved.manifest).await.unwrap();
    assert_eq!(config.os, "linux");
    assert_eq!(config.architecture, image.architecture);
    let diff_ids: Vec<String> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(diff_ids, image.diff_ids());
    assert_eq!(config.history.len(), image.layers.len());
    for (descriptor, layer) in resolved.manifest.layers.iter().zip(&image.layers) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let mut stream = client
            .fetch_blob(r, descriptor)
            .await
            .unwrap()
            .on_progress(move |done, total| recorder.lock().unwrap().push((done, total)));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(bytes, layer.blob.bytes);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.last(),
            Some(&(layer.blob.size(), layer.blob.size())),
            "progress ends at the layer's size"
        );
    }
}

#[tokio::test]
async fn a_layered_docker_image_is_pulled_by_tag_and_by_digest() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let client = client();

    let by_tag = reference(&registry.reference("library/busybox", "latest"));
    pull_and_check(&client, &by_tag, &image).await;
    assert_eq!(image.manifest_type(), DOCKER_MANIFEST);

    let by_digest = reference(&format!(
        "{}/library/busybox@{}",
        registry.host(),
        image.manifest_digest()
    ));
    pull_and_check(&client, &by_digest, &image).await;
}

#[tokio::test]
async fn an_oci_image_is_pulled() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Oci);
    registry.push("library/busybox", "oci", &image).await;
    assert_eq!(image.manifest_type(), OCI_MANIFEST);
    let r = reference(&registry.reference("library/busybox", "oci"));
    pull_and_check(&client(), &r, &image).await;
}

#[tokio::test]
async fn a_multi_arch_index_gives_amd64_by_default_and_arm64_when_asked() {
    for format in [Format::Docker, Format::Oci] {
        let registry = Registry::start().await;
        let index = busybox::multi_arch(format);
        registry
            .push_index("library/busybox", "multi", &index)
            .await;
        let r = reference(&registry.reference("library/busybox", "multi"));
        let client = client();

        let amd64 = client.resolve(&r, &Platform::linux_amd64()).await.unwrap();
        assert_is(&amd64, index.image("amd64"));
        assert_eq!(amd64.reference_digest.as_str(), index.digest());

        for asked in ["linux/arm64", "linux/arm64/v8"] {
            let platform = Platform::parse(asked).unwrap();
            let arm64 = client.resolve(&r, &platform).await.unwrap();
            assert_is(&arm64, index.image("arm64"));
            let config = client.fetch_config(&r, &arm64.manifest).await.unwrap();
            assert_eq!(config.architecture, "arm64");
        }

        let s390x = Platform::parse("linux/s390x").unwrap();
        let err = client.resolve(&r, &s390x).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::NoMatchingPlatform { .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries"
        );
    }
}

#[tokio::test]
async fn an_unknown_tag_is_manifest_unknown_in_dockers_words() {
    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::layered(Format::Docker),
        )
        .await;
    let name = registry.reference("library/busybox", "nope");
    let err = client()
        .resolve(&reference(&name), &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestUnknown { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("manifest for {name} not found: manifest unknown: manifest unknown")
    );
}

#[tokio::test]
async fn a_corrupted_blob_ends_its_stream_with_a_digest_mismatch() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let layer = &image.layers[2].blob;
    // Same length, other bytes: only the digest can tell.
    let mut corrupt = layer.bytes.to_vec();
    corrupt[0] ^= 0xff;
    std::fs::write(registry.blob_path(&layer.digest), &corrupt).unwrap();

    let client = client();
    let r = reference(&registry.reference("library/busybox", "latest"));
    let resolved = client.resolve(&r, &Platform::linux_amd64()).await.unwrap();
    let err = client
        .fetch_blob_bytes(&r, &resolved.manifest.layers[2])
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &layer.digest);
            assert_ne!(actual, &layer.digest);
            assert!(err.to_string().contains(&layer.digest), "{err}");
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
}

#[tokio::test]
async fn an_htpasswd_registry_refuses_anonymous_and_wrong_passwords_and_serves_the_right_one() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret").await;
    let image = busybox::layered(Format::Docker);
    registry.push("library/busybox", "latest", &image).await;
    let r = reference(&registry.reference("library/busybox", "latest"));

    let err = client()
        .resolve(&r, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().starts_with("unauthorized: "), "{err}");

    let with = |password: &str| {
        Client::new(ClientConfig {
            credentials: HashMap::from([(registry.host(), Credentials::new("alice", password))]),
            ..ClientConfig::default()
        })
        .unwrap()
    };
    let err = with("wrong")
        .resolve(&r, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    pull_and_check(&with("s3cret"), &r, &image).await;
}

#[tokio::test]
async fn a_killed_registry_is_unreachable_naming_its_host() {
    let mut registry = Registry::start().await;
    let host = registry.host();
    registry.kill();
    let r = reference(&registry.reference("library/busybox", "latest"));
    let err = client()
        .resolve(&r, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&host), "{err}");
}

/// A stand-in registry with token auth (Distribution's token mode needs a
/// signing certificate and a token server; this speaks just enough HTTP):
/// `/v2/…/manifests/latest` wants `Bearer good-token`, `/token` hands it out
/// for alice's basic credentials and counts how often it is asked.
async fn bearer_registry(manifest: Image) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let token_requests = Arc::new(Mutex::new(Vec::new()));
    let (realm, requests) = (format!("http://{host}/token"), token_requests.clone());
    let alice = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
    );
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let auth = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_default();
            let (status, headers, body): (&str, Vec<String>, Vec<u8>) = if target
                .starts_with("/token")
            {
                requests.lock().unwrap().push(target.clone());
                if auth == alice {
                    ("200 OK", vec![], br#"{"token":"good-token"}"#.to_vec())
                } else {
                    ("401 Unauthorized", vec![], b"{}".to_vec())
                }
            } else if auth == "Bearer good-token" {
                (
                    "200 OK",
                    vec![
                        format!("Content-Type: {}", manifest.manifest_type()),
                        format!("Docker-Content-Digest: {}", manifest.manifest_digest()),
                    ],
                    manifest.manifest.bytes.to_vec(),
                )
            } else {
                (
                    "401 Unauthorized",
                    vec![format!(
                        r#"WWW-Authenticate: Bearer realm="{realm}",service="test",scope="repository:library/busybox:pull""#
                    )],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
                )
            };
            let mut response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for header in headers {
                response.push_str(&header);
                response.push_str("\r\n");
            }
            response.push_str("\r\n");
            let mut bytes = response.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = socket.write_all(&bytes).await;
        }
    });
    (host, token_requests)
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_fetched_once_per_repository() {
    let image = busybox::layered(Format::Docker);
    let (host, token_requests) = bearer_registry(image.clone()).await;
    let r = reference(&format!("{host}/library/busybox:latest"));

    let anonymous = client()
        .resolve(&r, &Platform::linux_amd64())
        .await
        .unwrap_err();
    assert!(
        matches!(anonymous, RegistryError::Unauthorized { .. }),
        "{anonymous}"
    );

    let client = Client::new(ClientConfig {
        credentials: HashMap::from([(host.clone(), Credentials::new("alice", "pw"))]),
        ..ClientConfig::default()
    })
    .unwrap();
    token_requests.lock().unwrap().clear();
    for _ in 0..2 {
        let resolved = client.resolve(&r, &Platform::linux_amd64()).await.unwrap();
        assert_eq!(resolved.digest.as_str(), image.manifest_digest());
    }
    let requests = token_requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "the token is cached: {requests:?}");
    assert!(
        requests[0].contains("service=test")
            && requests[0].contains("scope=repository%3Alibrary%2Fbusybox%3Apull"),
        "{requests:?}"
    );
}
