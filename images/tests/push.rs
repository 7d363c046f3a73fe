//! `push`, `login` and `search` against real `docker-registry`s started by
//! the testkit: images are pulled from one registry into an image store in
//! a temp dir (with an embedded spec store), tagged, pushed to another and
//! pulled back.

use std::collections::HashMap;

use sdc_docker_images::pull::pull;
use sdc_docker_images::push::{PushEvent, PushResult, push};
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{
    Client, ClientConfig, Credentials, DOCKER_MANIFEST, OCI_MANIFEST, Platform, RegistryError,
};
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

fn new_node() -> Node {
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

fn reference(s: &str) -> Reference {
    Reference::parse_normalized(s).unwrap()
}

impl Node {
    async fn pull(&self, name: &str) -> Image {
        pull(
            &self.client,
            &self.store,
            &self.images,
            &reference(name),
            &Platform::linux_amd64(),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("pulling {name}: {e}"))
    }

    /// `docker tag`: adds the normalised `tag` to `image`.
    async fn tag(&self, image: &Image, tag: &str) {
        let mut current = self.images.get(&image.metadata.name).await.unwrap();
        current
            .spec
            .repo_tags
            .push(reference(tag).with_default_tag().to_string());
        self.images.replace(&current).await.unwrap();
    }

    async fn push_with(
        &self,
        client: &Client,
        name: &str,
    ) -> (Result<PushResult, String>, Vec<PushEvent>) {
        let mut events = Vec::new();
        let result = push(client, &self.store, &self.images, &reference(name), |e| {
            events.push(e)
        })
        .await
        .map_err(|e| e.to_string());
        (result, events)
    }

    async fn push(&self, name: &str) -> (Result<PushResult, String>, Vec<PushEvent>) {
        self.push_with(&self.client, name).await
    }
}

/// The final status of each layer, in order.
fn layer_outcomes(events: &[PushEvent]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, String> = HashMap::new();
    for event in events {
        if let PushEvent::Layer { id, status, .. } = event {
            if !order.contains(id) {
                order.push(id.clone());
            }
            last.insert(id.clone(), status.clone());
        }
    }
    order.iter().map(|id| last[id].clone()).collect()
}

/// A node that pulled the layered busybox from a fresh registry `source`.
async fn node_with_busybox(format: Format) -> (Registry, Node, Image) {
    let source = Registry::start().await;
    source
        .push("library/busybox", "latest", &busybox::layered(format))
        .await;
    let node = new_node();
    let image = node
        .pull(&source.reference("library/busybox", "latest"))
        .await;
    (source, node, image)
}

#[tokio::test]
async fn a_pulled_image_pushed_to_another_registry_pulls_back_with_the_same_digest_and_id() {
    let (_source, node, image) = node_with_busybox(Format::Docker).await;
    let target = Registry::start().await;
    let name = target.reference("app", "v1");
    node.tag(&image, &name).await;

    let (result, events) = node.push(&name).await;
    let result = result.unwrap();
    assert_eq!(result.tags.len(), 1);
    let pushed = &result.tags[0];
    assert_eq!(pushed.tag, "v1");

    assert_eq!(
        events.first(),
        Some(&PushEvent::Status(format!(
            "The push refers to repository [{}/app]",
            target.host()
        )))
    );
    let short_diff_ids: Vec<String> = image
        .spec
        .diff_ids
        .iter()
        .map(|d| d.trim_start_matches("sha256:")[..12].to_owned())
        .collect();
    let mut seen = Vec::new();
    for event in &events {
        if let PushEvent::Layer { id, .. } = event
            && !seen.contains(id)
        {
            seen.push(id.clone());
        }
    }
    assert_eq!(seen, short_diff_ids, "layers are named by short DiffID");
    assert!(
        layer_outcomes(&events).iter().all(|s| s == "Pushed"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(e,
        PushEvent::Layer { status, current: Some(c), total: Some(t), .. } if status == "Pushing" && c == t)));
    assert!(events.contains(&PushEvent::Status(format!(
        "v1: digest: {} size: {}",
        pushed.digest, pushed.size
    ))));
    assert_eq!(events.last(), Some(&PushEvent::Pushed(pushed.clone())));

    // The registry serves what was pushed, as a Docker schema 2 manifest.
    let manifest = target
        .get(
            "/v2/app/manifests/v1",
            &[("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)],
        )
        .await
        .unwrap();
    assert_eq!(manifest.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(pushed.digest.as_str())
    );
    assert_eq!(manifest.body.len() as u64, pushed.size);

    // The push is recorded on the image.
    let stored = node.images.get(&image.metadata.name).await.unwrap();
    assert!(
        stored
            .spec
            .repo_digests
            .contains(&format!("{}/app@{}", target.host(), pushed.digest)),
        "{:?}",
        stored.spec.repo_digests
    );

    // Another node pulls it back: same manifest digest, same image id.
    let other = new_node();
    let mut digests = Vec::new();
    let pulled = pull(
        &other.client,
        &other.store,
        &other.images,
        &reference(&name),
        &Platform::linux_amd64(),
        |e| {
            if let sdc_docker_images::pull::PullEvent::Digest(d) = e {
                digests.push(d)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(digests, vec![pushed.digest.clone()]);
    assert_eq!(pulled.spec.id, image.spec.id);
    assert_eq!(pulled.spec.diff_ids, image.spec.diff_ids);
}

#[tokio::test]
async fn pushing_an_image_twice_says_layer_already_exists() {
    let (_source, node, image) = node_with_busybox(Format::Docker).await;
    let target = Registry::start().await;
    let name = target.reference("app", "v1");
    node.tag(&image, &name).await;

    let (first, _) = node.push(&name).await;
    let (second, events) = node.push(&name).await;
    assert_eq!(first.unwrap(), second.unwrap(), "the same manifest again");
    let outcomes = layer_outcomes(&events);
    assert_eq!(outcomes.len(), image.spec.diff_ids.len());
    assert!(
        outcomes.iter().all(|s| s == "Layer already exists"),
        "{outcomes:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, PushEvent::Layer { status, .. } if status == "Pushing")),
        "nothing uploaded again"
    );
}

#[tokio::test]
async fn pushing_to_another_repository_of_the_same_registry_mounts_the_layers() {
    let (source, node, image) = node_with_busybox(Format::Docker).await;
    let name = source.reference("copies/busybox", "mine");
    node.tag(&image, &name).await;

    let (result, events) = node.push(&name).await;
    result.unwrap();
    let outcomes = layer_outcomes(&events);
    assert!(
        outcomes.iter().all(|s| s == "Mounted from library/busybox"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_oci_image_is_pushed_with_an_oci_manifest() {
    let (_source, node, image) = node_with_busybox(Format::Oci).await;
    let target = Registry::start().await;
    let name = target.reference("oci/app", "1");
    node.tag(&image, &name).await;

    let pushed = node.push(&name).await.0.unwrap();
    let manifest = target
        .get("/v2/oci/app/manifests/1", &[("Accept", OCI_MANIFEST)])
        .await
        .unwrap();
    assert_eq!(manifest.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(pushed.tags[0].digest.as_str())
    );
    let other = new_node();
    assert_eq!(other.pull(&name).await.spec.id, image.spec.id);
}

#[tokio::test]
async fn a_layer_larger_than_an_upload_chunk_is_sent_in_chunks_with_progress() {
    let source = Registry::start().await;
    let big = sdc_docker_testkit::Image::random(1, 20 * 1024 * 1024, 7);
    source.push("big", "latest", &big).await;
    let node = new_node();
    let image = node.pull(&source.reference("big", "latest")).await;
    let target = Registry::start().await;
    let name = target.reference("big", "latest");
    node.tag(&image, &name).await;

    let (result, events) = node.push(&name).await;
    result.unwrap();
    let pushing: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            PushEvent::Layer {
                status,
                current: Some(c),
                ..
            } if status == "Pushing" => Some(*c),
            _ => None,
        })
        .collect();
    assert!(pushing.len() >= 3, "progress per chunk: {pushing:?}");
    assert!(pushing.windows(2).all(|w| w[0] <= w[1]), "{pushing:?}");
    assert_eq!(pushing.last(), Some(&big.compressed_size()));
    assert_eq!(
        node_pull_id(&name).await,
        image.spec.id,
        "the chunked upload is whole"
    );
}

async fn node_pull_id(name: &str) -> String {
    new_node().pull(name).await.spec.id
}

#[tokio::test]
async fn pushing_a_repository_without_a_tag_pushes_every_tag() {
    let (_source, node, image) = node_with_busybox(Format::Docker).await;
    let target = Registry::start().await;
    node.tag(&image, &target.reference("app", "a")).await;
    node.tag(&image, &target.reference("app", "b")).await;

    let (result, _) = node.push(&format!("{}/app", target.host())).await;
    let tags: Vec<String> = result.unwrap().tags.into_iter().map(|t| t.tag).collect();
    assert_eq!(tags, vec!["a", "b"]);
    for tag in ["a", "b"] {
        let response = target
            .get(
                &format!("/v2/app/manifests/{tag}"),
                &[("Accept", DOCKER_MANIFEST)],
            )
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{tag}");
    }
}

#[tokio::test]
async fn pushing_a_tag_that_does_not_exist_fails_in_dockers_words() {
    let (source, node, _image) = node_with_busybox(Format::Docker).await;
    let host = source.host();

    let (result, events) = node.push(&format!("{host}/library/busybox:nope")).await;
    assert_eq!(
        result.unwrap_err(),
        format!("tag does not exist: {host}/library/busybox:nope")
    );
    assert!(events.is_empty(), "nothing reported: {events:?}");

    let (result, _) = node.push(&format!("{host}/nothing:latest")).await;
    assert_eq!(
        result.unwrap_err(),
        format!("An image does not exist locally with the tag: {host}/nothing")
    );
}

#[tokio::test]
async fn pushing_to_an_htpasswd_registry_needs_its_credentials() {
    let (_source, node, image) = node_with_busybox(Format::Docker).await;
    let target = Registry::start_with_htpasswd("alice", "s3cret").await;
    let name = target.reference("app", "v1");
    node.tag(&image, &name).await;

    let (result, _) = node.push(&name).await;
    let err = result.unwrap_err();
    assert!(err.starts_with("unauthorized: "), "{err}");

    let wrong = node
        .client
        .with_credentials(&target.host(), Some(Credentials::new("alice", "nope")));
    let err = node.push_with(&wrong, &name).await.0.unwrap_err();
    assert!(err.starts_with("unauthorized: "), "{err}");

    let right = node
        .client
        .with_credentials(&target.host(), Some(Credentials::new("alice", "s3cret")));
    let pushed = node.push_with(&right, &name).await.0.unwrap();
    assert_eq!(pushed.tags.len(), 1);

    // The shared client still has no credentials.
    let err = node.push(&name).await.0.unwrap_err();
    assert!(err.starts_with("unauthorized: "), "{err}");
}

#[tokio::test]
async fn login_accepts_the_right_password_and_refuses_a_wrong_one_in_dockers_words() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret").await;
    let client = Client::new(ClientConfig::default()).unwrap();
    let host = registry.host();

    client
        .login(&host, &Credentials::new("alice", "s3cret"))
        .await
        .unwrap();
    let err = client
        .login(&host, &Credentials::new("alice", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::LoginFailed { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("login attempt to http://{host}/v2/ failed with status: 401 Unauthorized")
    );

    let open = Registry::start().await;
    client
        .login(&open.host(), &Credentials::new("anyone", "anything"))
        .await
        .unwrap();
}

#[tokio::test]
async fn search_finds_repositories_through_the_catalog_and_nothing_for_an_unknown_term() {
    let registry = Registry::start().await;
    let image = busybox::layered(Format::Docker);
    for repository in ["library/busybox", "tools/busybox-extras", "other/app"] {
        registry.push(repository, "latest", &image).await;
    }
    let client = Client::new(ClientConfig::default()).unwrap();
    let host = registry.host();

    let found = client.search(&host, "busy", 25).await.unwrap();
    let names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            format!("{host}/library/busybox"),
            format!("{host}/tools/busybox-extras")
        ]
    );
    assert!(found.iter().all(|r| r.star_count == 0 && !r.is_official));

    assert_eq!(client.search(&host, "busy", 1).await.unwrap().len(), 1);
    assert!(
        client
            .search(&host, "nomatch", 25)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn search_on_something_that_is_not_a_registry_says_it_does_not_support_search() {
    // A port nothing but a plain 404 answers on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let client = Client::new(ClientConfig::default()).unwrap();
    let err = client.search(&host, "x", 25).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("registry {host} does not support search")
    );
}

/// A stand-in registry with token auth: `/token` hands out `good-token`
/// for alice's basic credentials and records each query; every other path
/// wants `Bearer good-token` and then answers `404` (nothing stored) or,
/// for `/v2/`, `200`.
async fn bearer_registry() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let token_requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (realm, requests) = (format!("http://{host}/token"), token_requests.clone());
    let alice = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap_or(0);
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
            let (status, extra, body): (&str, String, &[u8]) = if target.starts_with("/token") {
                requests.lock().unwrap().push(target.clone());
                if auth == alice {
                    ("200 OK", String::new(), br#"{"token":"good-token"}"#)
                } else {
                    (
                        "401 Unauthorized",
                        String::new(),
                        br#"{"details":"incorrect username or password"}"#,
                    )
                }
            } else if auth == "Bearer good-token" {
                if target == "/v2/" {
                    ("200 OK", String::new(), b"{}")
                } else {
                    ("404 Not Found", String::new(), b"")
                }
            } else {
                (
                    "401 Unauthorized",
                    format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n"),
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\n{extra}\r\n",
                body.len()
            );
            let mut bytes = response.into_bytes();
            bytes.extend_from_slice(body);
            let _ = socket.write_all(&bytes).await;
        }
    });
    (host, token_requests)
}

#[tokio::test]
async fn a_push_asks_the_token_service_for_pull_and_push_access() {
    let (host, token_requests) = bearer_registry().await;
    let client = Client::new(ClientConfig::default())
        .unwrap()
        .with_credentials(&host, Some(Credentials::new("alice", "pw")));
    let digest =
        sdc_docker_images::reference::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();

    let exists = client
        .blob_exists(&reference(&format!("{host}/team/app:v1")), &digest)
        .await
        .unwrap();
    assert_eq!(exists, None);
    let requests = token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
            && requests[0].contains("service=test")
            && requests[0].contains("account=alice"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn login_on_a_token_registry_asks_the_token_service_with_the_credentials() {
    let (host, _) = bearer_registry().await;
    let client = Client::new(ClientConfig::default()).unwrap();
    client
        .login(&host, &Credentials::new("alice", "pw"))
        .await
        .unwrap();
    let err = client
        .login(&host, &Credentials::new("alice", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "unauthorized: incorrect username or password"
    );
}
