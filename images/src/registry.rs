//! A Registry v2 client: resolve a [`Reference`] to the image manifest for
//! one platform and stream blobs whose digest and size are checked as they
//! arrive (pull); check, mount and upload blobs and put manifests (push);
//! check credentials (`docker login`) and search a registry (`docker
//! search`).
//!
//! Built on reqwest with rustls (ring provider, no OpenSSL, no aws-lc C
//! build) rather than oci-client: the pull path needs the raw manifest bytes,
//! Docker's error wording, our own [`Digest`] type, and a body stream we hash
//! ourselves while reporting progress — a thin client over HTTP gives all of
//! that directly. Authentication follows the `WWW-Authenticate` challenge of
//! a `401`: `Bearer` (a token from the realm for the scope the operation
//! needs — `repository:<repo>:pull`, `…:pull,push`, `registry:catalog:*` —
//! cached per host and scope) or `Basic` (the caller's credentials for the
//! host). Loopback hosts and hosts named as insecure are spoken to in plain
//! HTTP, others in HTTPS.
//!
//! Blobs are uploaded in one `PUT` when small, else in chunks of
//! [`UPLOAD_CHUNK_BYTES`] (`PATCH` with `Content-Range`, then `PUT
//! ?digest=`), each chunk read from the file as it goes.
//!
//! Limits: Docker schema 1 manifests and v1 registries are refused, as the
//! project supports Registry v2 only (the one v1 call is Docker Hub's
//! `/v1/search`); an insecure registry is reached by HTTP only (Docker tries
//! HTTPS first); no retries — a failed request is the caller's to retry.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::io::AsyncReadExt;

use crate::reference::{Digest, Reference};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1 manifests, which we refuse.
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Largest manifest accepted (Docker's limit too): a manifest is read whole.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How long to wait for a TCP (and TLS) connection to a registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a response may stay silent before the pull is abandoned.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Blobs up to this size are uploaded in one `PUT`; larger ones in
/// `PATCH` chunks of this size (each read from disk as it is sent).
pub const UPLOAD_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// The most catalog pages [`Client::search`] reads on a registry without
/// a search API.
const MAX_CATALOG_PAGES: usize = 50;

/// Repositories asked for per catalog page.
const CATALOG_PAGE_SIZE: usize = 100;

/// Docker Hub's host, which serves `/v1/search`.
const DOCKER_HUB_INDEX_HOST: &str = "index.docker.io";

/// Why a pull step failed. `Display` is what a user should read (Docker's
/// wording where the CLI shows it).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry has no manifest for the tag or digest (`404`).
    #[error("manifest for {reference} not found: manifest unknown: manifest unknown")]
    ManifestUnknown {
        /// The reference as the user would write it.
        reference: String,
    },
    /// The registry has no blob with this digest in the repository.
    #[error("blob unknown to registry: {digest}")]
    BlobUnknown {
        /// The digest asked for.
        digest: Digest,
    },
    /// The registry (or its token service) refused our credentials, or we
    /// have none and it wants some.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The host that refused.
        host: String,
        /// The registry's reason, e.g. `authentication required`.
        message: String,
    },
    /// Content whose hash is not the digest it was asked for or announced
    /// under (a corrupted blob, a lying registry, a truncated download).
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being fetched (a manifest reference or `blob`).
        what: String,
        /// The digest asked for or announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob whose length differs from its descriptor's size.
    #[error("size mismatch for blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (so far, when too many).
        actual: u64,
    },
    /// A manifest of a media type we do not pull (schema 1 included).
    #[error("unsupported manifest media type {media_type}{hint}")]
    UnsupportedMediaType {
        /// The media type received.
        media_type: String,
        /// Extra explanation, empty or starting with `: `.
        hint: &'static str,
    },
    /// The host answered, but not as a Registry v2 does.
    #[error("{host} is not a Registry v2 (v1 registries are not supported)")]
    NotRegistryV2 {
        /// The host.
        host: String,
    },
    /// A multi-platform image has no entry for the platform asked.
    #[error("no matching manifest for {platform} in the manifest list entries")]
    NoMatchingPlatform {
        /// The platform asked for.
        platform: Platform,
    },
    /// The registry could not be reached, or the connection broke.
    #[error("registry {host} is unreachable: {source}")]
    Unreachable {
        /// The host, with its port.
        host: String,
        /// What the transport said.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered a status this client does not expect.
    #[error("registry {host} answered {status}: {message}")]
    Status {
        /// The host.
        host: String,
        /// The HTTP status.
        status: StatusCode,
        /// The registry's error message or body.
        message: String,
    },
    /// A manifest, config or token response that is not the JSON expected.
    #[error("invalid {what} from {host}: {source}")]
    InvalidJson {
        /// What was being parsed.
        what: &'static str,
        /// The host.
        host: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest larger than Docker's 4 MiB limit.
    #[error("manifest from {host} is larger than {MAX_MANIFEST_BYTES} bytes")]
    ManifestTooLarge {
        /// The host.
        host: String,
    },
    /// The HTTP client could not be built, or a challenge named a bad realm.
    #[error("registry client: {0}")]
    Client(String),
    /// `docker login` with credentials the registry refused (Docker's
    /// wording).
    #[error("login attempt to {url} failed with status: {status}")]
    LoginFailed {
        /// The `/v2/` URL tried.
        url: String,
        /// The status it answered (`401 Unauthorized`).
        status: StatusCode,
    },
    /// A blob to upload could not be read from disk.
    #[error("reading blob {}: {source}", path.display())]
    ReadBlob {
        /// The blob's file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The registry answered an upload without saying where to continue.
    #[error("registry {host} answered a blob upload without a Location")]
    NoUploadLocation {
        /// The host.
        host: String,
    },
    /// The registry has neither Docker's search API nor the v2 catalog.
    #[error("registry {host} does not support search")]
    SearchUnsupported {
        /// The host.
        host: String,
    },
}

/// An OS, architecture and optional variant, as `docker pull --platform`
/// writes it: `linux/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8`, `v7`, … when the architecture has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, what this engine runs.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`; `None` when it has another shape.
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        match parts[..] {
            [os, arch] => Some(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, variant] => Some(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(variant.to_ascii_lowercase()),
            }),
            _ => None,
        }
    }

    /// Whether an index entry for `entry` serves this platform. A variant
    /// left out on either side matches any, except that `arm64` means
    /// `arm64/v8` as in containerd's platform matcher.
    fn matches(&self, entry: &Platform) -> bool {
        if self.os != entry.os || self.architecture != entry.architecture {
            return false;
        }
        let normalise = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match (&self.variant, &entry.variant) {
            (None, _) => true,
            (Some(_), _) => normalise(self) == normalise(entry),
        }
    }
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::linux_amd64()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A reference to content by media type, digest and size (a manifest's
/// `config` and `layers`, an index's `manifests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is, e.g. a gzip layer.
    pub media_type: String,
    /// The content's digest.
    pub digest: Digest,
    /// The content's length in bytes.
    pub size: u64,
    /// In an index: the platform of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Other places to fetch it from (foreign layers); not used to fetch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The media type the registry served it as.
    #[serde(default)]
    pub media_type: String,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list, only as far as picking an entry.
#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

/// The first fields of any manifest, to tell the kinds apart.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestHead {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
}

/// The outcome of [`Client::resolve`]: the image manifest for the platform,
/// verified against its digest.
#[derive(Debug, Clone)]
pub struct ResolvedManifest {
    /// The parsed image manifest.
    pub manifest: Manifest,
    /// The image manifest's digest (checked against its bytes).
    pub digest: Digest,
    /// The image manifest exactly as received.
    pub bytes: Bytes,
    /// The digest the reference itself resolved to: the index's for a
    /// multi-platform tag, else [`Self::digest`]. This is what `docker pull`
    /// prints as `Digest:`.
    pub reference_digest: Digest,
}

/// An image config (Docker's `image.json` / OCI's config), the fields an
/// engine uses; other fields are ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `amd64`, `arm64`, …
    #[serde(default)]
    pub architecture: String,
    /// `v8`, … when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// When the image was built (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// How a container of the image runs (`Env`, `Cmd`, …); kept as JSON so
    /// `docker inspect` can show every field the image has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The uncompressed layers' digests.
    pub rootfs: RootFs,
    /// How each layer was made, for `docker history`.
    #[serde(default)]
    pub history: Vec<History>,
}

/// The `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The digest of each layer's uncompressed tar, base first.
    pub diff_ids: Vec<Digest>,
}

/// One step of an image's history.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The build instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// A user name and password (or identity token as password) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl Credentials {
    /// Credentials of `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn basic(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        format!("Basic {token}")
    }
}

/// Passwords stay out of logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How a [`Client`] reaches registries.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Hosts (`host` or `host:port`) spoken to in plain HTTP, like
    /// dockerd's `--insecure-registry`. Loopback hosts always are.
    pub insecure_registries: Vec<String>,
    /// Credentials per registry host (`host:port` as in the reference, or
    /// `docker.io`, `registry-1.docker.io`).
    pub credentials: HashMap<String, Credentials>,
}

/// A Registry v2 client; cheap to clone, clones share connections and
/// tokens.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    /// `Authorization` values that worked, per (host, repository): a bearer
    /// token scoped to the repository, or the basic credentials.
    authorizations: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// reqwest with `rustls-no-provider` needs a process-wide provider; ring
/// avoids aws-lc's C build. Installing fails harmlessly when the binary
/// already chose one.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Result<Client, RegistryError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("sdc-docker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        Ok(Client {
            http,
            config: Arc::new(config),
            authorizations: Arc::default(),
        })
    }

    /// The image manifest `reference` names for `platform` (pass
    /// [`Platform::linux_amd64`] by default). By digest when the reference
    /// has one, else by tag (`latest` when it has neither). An index or
    /// manifest list is followed to the platform's entry.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedManifest, RegistryError> {
        let target = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => crate::reference::DEFAULT_TAG.to_owned(),
        };
        let (media_type, digest, bytes) = self
            .fetch_manifest(reference, &target, reference.digest())
            .await?;
        let host = reference.registry_host();
        if media_type == DOCKER_MANIFEST_LIST || media_type == OCI_INDEX {
            let index: Index = parse_json("manifest list", host, &bytes)?;
            let entry = index
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
                .ok_or_else(|| RegistryError::NoMatchingPlatform {
                    platform: platform.clone(),
                })?;
            let (child_type, child_digest, child_bytes) = self
                .fetch_manifest(reference, entry.digest.as_str(), Some(&entry.digest))
                .await?;
            if child_type != DOCKER_MANIFEST && child_type != OCI_MANIFEST {
                return Err(unsupported(&child_type));
            }
            let manifest = parse_manifest(host, &child_type, &child_bytes)?;
            return Ok(ResolvedManifest {
                manifest,
                digest: child_digest,
                bytes: child_bytes,
                reference_digest: digest,
            });
        }
        let manifest = parse_manifest(host, &media_type, &bytes)?;
        Ok(ResolvedManifest {
            manifest,
            digest: digest.clone(),
            bytes,
            reference_digest: digest,
        })
    }

    /// The blob `descriptor` names in `reference`'s repository, as a stream
    /// that checks size and digest; see [`BlobStream`].
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<BlobStream, RegistryError> {
        let host = reference.registry_host().to_owned();
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base_url(&host),
            reference.repository(),
            descriptor.digest
        );
        let response = self
            .send(reference, |http| http.get(&url))
            .await
            .map_err(|e| match e {
                RegistryError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                } => RegistryError::BlobUnknown {
                    digest: descriptor.digest.clone(),
                },
                e => e,
            })?;
        Ok(BlobStream {
            body: Box::pin(response.bytes_stream()),
            hasher: Hasher::new(&descriptor.digest),
            received: 0,
            descriptor: descriptor.clone(),
            host,
            progress: None,
            finished: false,
        })
    }

    /// The whole blob, verified, in memory: for configs and other small
    /// blobs.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Bytes, RegistryError> {
        self.fetch_blob(reference, descriptor)
            .await?
            .collect()
            .await
    }

    /// The image config `manifest` names, verified and parsed.
    pub async fn fetch_config(
        &self,
        reference: &Reference,
        manifest: &Manifest,
    ) -> Result<ImageConfig, RegistryError> {
        let bytes = self.fetch_blob_bytes(reference, &manifest.config).await?;
        parse_json("image config", reference.registry_host(), &bytes)
    }

    /// `GET` a manifest by tag or digest with every supported `Accept`;
    /// returns its media type, its verified digest and its bytes. `expected`
    /// is the digest it must have (when fetched by digest).
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        target: &str,
        expected: Option<&Digest>,
    ) -> Result<(String, Digest, Bytes), RegistryError> {
        let host = reference.registry_host();
        let url = format!(
            "{}/v2/{}/manifests/{target}",
            self.base_url(host),
            reference.repository()
        );
        let accept = [
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            OCI_INDEX,
        ]
        .join(", ");
        let response = self
            .send(reference, |http| http.get(&url).header(ACCEPT, &accept))
            .await
            .map_err(|e| match e {
                RegistryError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                } => RegistryError::ManifestUnknown {
                    reference: reference.familiar(),
                },
                e => e,
            })?;
        let headers = response.headers().clone();
        let bytes = read_limited(host, response).await?;
        let head: ManifestHead = parse_json("manifest", host, &bytes)?;
        let content_type = header_str(&headers, CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned());
        // The Content-Type is authoritative, except that some registries
        // answer a generic type; then the manifest's own field decides.
        let media_type = match content_type {
            Some(t) if !t.is_empty() && t != "application/json" && t != "text/plain" => t,
            _ => head.media_type.clone().unwrap_or_default(),
        };
        if head.schema_version == 1 || DOCKER_SCHEMA1.contains(&media_type.as_str()) {
            return Err(RegistryError::UnsupportedMediaType {
                media_type,
                hint: ": Docker schema 1 manifests are not supported, push the image again with a current docker",
            });
        }
        if ![
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            OCI_INDEX,
        ]
        .contains(&media_type.as_str())
        {
            return Err(unsupported(&media_type));
        }
        let what = format!("manifest {}", reference.familiar());
        let announced = header_str(&headers, "docker-content-digest")
            .map(|d| Digest::parse(d).map_err(|_| d.to_owned()));
        let digest = match (expected, announced) {
            (Some(expected), _) => expected.clone(),
            (None, Some(Ok(announced))) => announced,
            (None, Some(Err(bad))) => {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: bad,
                    actual: sha256_digest(&bytes),
                });
            }
            (None, None) => Digest::parse(&sha256_digest(&bytes))
                .expect("a sha256 digest we formatted is valid"),
        };
        let actual = Hasher::new(&digest).update(&bytes).finish();
        if actual != digest.as_str() {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        // When fetched by digest the registry's header must agree as well.
        if let (Some(expected), Some(announced)) = (
            expected,
            header_str(&headers, "docker-content-digest").and_then(|d| Digest::parse(d).ok()),
        ) && announced.algorithm() == expected.algorithm()
            && &announced != expected
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: expected.to_string(),
                actual: announced.to_string(),
            });
        }
        Ok((media_type, digest, bytes))
    }

    /// `http://host` for loopback and insecure registries, else
    /// `https://host`.
    fn base_url(&self, host: &str) -> String {
        let scheme = if is_loopback(host) || self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    fn is_insecure(&self, host: &str) -> bool {
        let bare = strip_port(host);
        self.config
            .insecure_registries
            .iter()
            .any(|r| r == host || r == bare)
    }

    /// The credentials for `host`; Docker Hub's are found under any of its
    /// names.
    fn credentials_for_host(&self, host: &str) -> Option<&Credentials> {
        let creds = &self.config.credentials;
        creds.get(host).or_else(|| {
            is_docker_hub(host)
                .then(|| DOCKER_HUB_NAMES.iter().find_map(|name| creds.get(*name)))
                .flatten()
        })
    }

    /// Send the request `build` makes with any authorization we hold for
    /// the repository, pull scope; see [`Self::send_scoped`].
    async fn send(
        &self,
        reference: &Reference,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let scopes = [pull_scope(reference.repository())];
        self.send_scoped(reference.registry_host(), &scopes, build)
            .await
    }

    /// Send the request `build` makes to `host` with any authorization we
    /// hold for `scopes`; on `401` answer the challenge once (a token for
    /// `scopes`, or the basic credentials) and send again. Any status other
    /// than 2xx becomes an error.
    async fn send_scoped(
        &self,
        host: &str,
        scopes: &[String],
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let response = self.send_unchecked(host, scopes, build).await?;
        check_status(host, response).await
    }

    /// [`Self::send_scoped`] returning the last response whatever its
    /// status (for callers that treat some errors, e.g. `404`, as answers).
    async fn send_unchecked(
        &self,
        host: &str,
        scopes: &[String],
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (host.to_owned(), scopes.join(" "));
        let cached = self.cached_authorization(&key);
        let mut request = build(&self.http);
        if let Some(auth) = &cached {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request.send().await.map_err(|e| unreachable(host, e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge =
            header_str(response.headers(), WWW_AUTHENTICATE.as_str()).and_then(Challenge::parse);
        let Some(challenge) = challenge else {
            return Ok(response);
        };
        let auth = match challenge.scheme.as_str() {
            "basic" => match self.credentials_for_host(host) {
                Some(credentials) => credentials.basic(),
                None => return Ok(response),
            },
            "bearer" => self.bearer_token(host, scopes, &challenge).await?,
            _ => return Ok(response),
        };
        let response = build(&self.http)
            .header(AUTHORIZATION, &auth)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        if response.status().is_success() || response.status().is_redirection() {
            self.authorizations
                .lock()
                .expect("authorization cache lock")
                .insert(key, auth);
        }
        Ok(response)
    }

    fn cached_authorization(&self, key: &(String, String)) -> Option<String> {
        self.authorizations
            .lock()
            .expect("authorization cache lock")
            .get(key)
            .cloned()
    }

    /// A `Bearer …` authorization from the challenge's token service for
    /// `scopes` (and the challenge's own scope, when it names another).
    async fn bearer_token(
        &self,
        host: &str,
        scopes: &[String],
        challenge: &Challenge,
    ) -> Result<String, RegistryError> {
        let realm = challenge.param("realm").ok_or_else(|| {
            RegistryError::Client(format!("{host}: bearer challenge has no realm"))
        })?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| RegistryError::Client(format!("{host}: bad token realm {realm}: {e}")))?;
        let credentials = self.credentials_for_host(host);
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
            if let Some(scope) = challenge.param("scope")
                && !scopes.iter().any(|s| s == scope)
            {
                query.append_pair("scope", scope);
            }
            if let Some(credentials) = credentials {
                query.append_pair("account", &credentials.username);
            }
        }
        let realm_host = url.host_str().unwrap_or(host).to_owned();
        let mut request = self.http.get(url);
        if let Some(credentials) = credentials {
            request = request.header(AUTHORIZATION, credentials.basic());
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&realm_host, e))?;
        let response = check_status(&realm_host, response).await?;
        let body = read_limited(&realm_host, response).await?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = parse_json("token response", &realm_host, &body)?;
        let token = token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                host: realm_host,
                message: "the token service gave no token".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }
}

/// What [`Client::push_blob`] did with a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it already (`Layer already exists`).
    Exists,
    /// The registry mounted it from this repository of the same registry
    /// (`Mounted from …`).
    Mounted(String),
    /// Its bytes were uploaded (`Pushed`).
    Uploaded,
}

/// One repository found by [`Client::search`], in Docker's JSON field
/// names (`GET /images/search`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchResult {
    /// The repository: `busybox`, `user/app` on Docker Hub; `host/repo`
    /// on another registry.
    pub name: String,
    /// Its description (empty when the registry has none).
    #[serde(default)]
    pub description: String,
    /// Its stars (0 when the registry has none).
    #[serde(default)]
    pub star_count: u64,
    /// Whether it is an official image.
    #[serde(default)]
    pub is_official: bool,
    /// Whether it is built automatically (deprecated by Docker, always
    /// false on current registries).
    #[serde(default)]
    pub is_automated: bool,
}

/// Push, login and search.
impl Client {
    /// A client sharing this one's connections and configuration but using
    /// `credentials` for `host` (none: anonymous), with its own cache of
    /// authorizations: for credentials that come with one request (Docker's
    /// `X-Registry-Auth`).
    pub fn with_credentials(&self, host: &str, credentials: Option<Credentials>) -> Client {
        let mut config = (*self.config).clone();
        config.credentials.remove(host);
        if is_docker_hub(host) {
            for name in DOCKER_HUB_NAMES {
                config.credentials.remove(*name);
            }
        }
        if let Some(credentials) = credentials {
            config.credentials.insert(host.to_owned(), credentials);
        }
        Client {
            http: self.http.clone(),
            config: Arc::new(config),
            authorizations: Arc::default(),
        }
    }

    /// Whether `reference`'s repository has blob `digest`: its size when it
    /// does (`HEAD /v2/<repo>/blobs/<digest>`), with push access asked.
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let host = reference.registry_host();
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(host),
            reference.repository()
        );
        let scopes = [push_scope(reference.repository())];
        let response = self
            .send_unchecked(host, &scopes, |http| http.head(&url))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = check_status(host, response).await?;
        Ok(Some(
            header_str(response.headers(), CONTENT_LENGTH.as_str())
                .and_then(|l| l.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// Pushes the blob `descriptor` names, read from `path`, to
    /// `reference`'s repository, unless it is there already; when
    /// `mount_from` names another repository of the same registry, asks the
    /// registry to mount it from there first. `progress(sent, total)` is
    /// called as bytes go out.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        path: &Path,
        mount_from: Option<&str>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<BlobPush, RegistryError> {
        if self
            .blob_exists(reference, &descriptor.digest)
            .await?
            .is_some()
        {
            return Ok(BlobPush::Exists);
        }
        let host = reference.registry_host();
        let repository = reference.repository();
        let base = self.base_url(host);
        let mut scopes = vec![push_scope(repository)];
        let mut start = format!("{base}/v2/{repository}/blobs/uploads/");
        if let Some(from) = mount_from.filter(|f| *f != repository) {
            scopes.push(pull_scope(from));
            let query: String = reqwest::Url::parse_with_params(
                "http://x/",
                &[("mount", descriptor.digest.as_str()), ("from", from)],
            )
            .map(|u| u.query().unwrap_or_default().to_owned())
            .unwrap_or_default();
            start = format!("{start}?{query}");
        }
        let response = self
            .send_scoped(host, &scopes, |http| {
                http.post(&start).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() == StatusCode::CREATED
            && let Some(from) = mount_from
        {
            tracing::debug!(%host, %repository, digest = %descriptor.digest, from, "blob mounted");
            return Ok(BlobPush::Mounted(from.to_owned()));
        }
        let auth = self.cached_authorization(&(host.to_owned(), scopes.join(" ")));
        let mut location = upload_location(host, &base, &response)?;
        let mut file =
            tokio::fs::File::open(path)
                .await
                .map_err(|source| RegistryError::ReadBlob {
                    path: path.to_owned(),
                    source,
                })?;
        let total = descriptor.size;
        let read_error = |source| RegistryError::ReadBlob {
            path: path.to_owned(),
            source,
        };
        let authorized = |request: reqwest::RequestBuilder, url: &reqwest::Url| match &auth {
            // The token is for the registry, not for a storage backend an
            // upload may be sent to.
            Some(auth) if url_host(url) == host => request.header(AUTHORIZATION, auth),
            _ => request,
        };
        let mut sent = 0u64;
        let final_body = if total <= UPLOAD_CHUNK_BYTES {
            let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            file.read_to_end(&mut bytes).await.map_err(read_error)?;
            Bytes::from(bytes)
        } else {
            while sent < total {
                let len = (total - sent).min(UPLOAD_CHUNK_BYTES);
                let mut chunk = vec![0u8; usize::try_from(len).unwrap_or(0)];
                file.read_exact(&mut chunk).await.map_err(read_error)?;
                let request = self
                    .http
                    .patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", format!("{sent}-{}", sent + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .body(chunk);
                let response = authorized(request, &location)
                    .send()
                    .await
                    .map_err(|e| unreachable(host, e))?;
                let response = check_status(host, response).await?;
                location = upload_location(host, &base, &response)?;
                sent += len;
                progress(sent, total);
            }
            Bytes::new()
        };
        let body_len = final_body.len() as u64;
        location
            .query_pairs_mut()
            .append_pair("digest", descriptor.digest.as_str());
        let request = self
            .http
            .put(location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body_len)
            .body(final_body);
        let response = authorized(request, &location)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        check_status(host, response).await?;
        progress(total, total);
        Ok(BlobPush::Uploaded)
    }

    /// Puts `bytes`, a manifest of `media_type`, as `reference`'s tag (its
    /// digest when it has no tag); returns the digest the registry stored
    /// it under, which must be the bytes' sha256.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let host = reference.registry_host();
        let ours =
            Digest::parse(&sha256_digest(&bytes)).expect("a sha256 digest we formatted is valid");
        let target = reference
            .tag()
            .map(str::to_owned)
            .unwrap_or_else(|| ours.to_string());
        let url = format!(
            "{}/v2/{}/manifests/{target}",
            self.base_url(host),
            reference.repository()
        );
        let scopes = [push_scope(reference.repository())];
        let response = self
            .send_scoped(host, &scopes, |http| {
                http.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        match header_str(response.headers(), "docker-content-digest") {
            Some(theirs) if theirs != ours.as_str() => Err(RegistryError::DigestMismatch {
                what: format!("manifest {}", reference.familiar()),
                expected: ours.to_string(),
                actual: theirs.to_owned(),
            }),
            _ => Ok(ours),
        }
    }

    /// Checks `credentials` on `host` as `docker login` does: `GET /v2/`,
    /// answering a Basic challenge with them or a Bearer one by asking the
    /// token service with them. A registry that wants no credentials
    /// accepts any.
    pub async fn login(&self, host: &str, credentials: &Credentials) -> Result<(), RegistryError> {
        let client = self.with_credentials(host, Some(credentials.clone()));
        let url = format!("{}/v2/", client.base_url(host));
        let response = client
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            check_status(host, response).await?;
            return Ok(());
        }
        let challenge =
            header_str(response.headers(), WWW_AUTHENTICATE.as_str()).and_then(Challenge::parse);
        let auth = match challenge {
            Some(challenge) if challenge.scheme == "bearer" => {
                client.bearer_token(host, &[], &challenge).await?
            }
            _ => credentials.basic(),
        };
        let response = client
            .http
            .get(&url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|e| unreachable(host, e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::LoginFailed { url, status });
        }
        check_status(host, response).await?;
        Ok(())
    }

    /// Repositories on `host` matching `term`, at most `limit`: Docker's
    /// search API (`GET /v1/search`, Docker Hub's) when the registry has it,
    /// else the Registry v2 catalog (`GET /v2/_catalog`, paginated, at most
    /// [`MAX_CATALOG_PAGES`] pages) filtered by substring.
    pub async fn search(
        &self,
        host: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>, RegistryError> {
        let search_host = if is_docker_hub(host) {
            DOCKER_HUB_INDEX_HOST
        } else {
            host
        };
        let limit_text = limit.to_string();
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/search", self.base_url(search_host)),
            &[("q", term), ("n", limit_text.as_str())],
        )
        .map_err(|e| RegistryError::Client(format!("{host}: bad search URL: {e}")))?;
        let response = self
            .send_unchecked(search_host, &[], |http| http.get(url.clone()))
            .await?;
        if response.status() != StatusCode::NOT_FOUND {
            let response = check_status(search_host, response).await?;
            let body = read_limited(search_host, response).await?;
            #[derive(Deserialize)]
            struct Answer {
                #[serde(default)]
                results: Vec<SearchResult>,
            }
            if let Ok(answer) = serde_json::from_slice::<Answer>(&body) {
                let mut results = answer.results;
                results.truncate(limit);
                return Ok(results);
            }
            tracing::debug!(%host, "the /v1/search answer is not a search result; trying the catalog");
        }
        let needle = term.to_ascii_lowercase();
        let base = self.base_url(host);
        let mut next = Some(format!("{base}/v2/_catalog?n={CATALOG_PAGE_SIZE}"));
        let mut results = Vec::new();
        let scopes = ["registry:catalog:*".to_owned()];
        for page in 0..MAX_CATALOG_PAGES {
            let Some(url) = next.take() else { break };
            let response = self
                .send_unchecked(host, &scopes, |http| http.get(&url))
                .await?;
            if page == 0 && response.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::SearchUnsupported {
                    host: host.to_owned(),
                });
            }
            let response = check_status(host, response).await?;
            next = header_str(response.headers(), "link")
                .and_then(next_link)
                .and_then(|link| reqwest::Url::parse(&base).ok()?.join(&link).ok())
                .map(|u| u.to_string());
            let body = read_limited(host, response).await?;
            #[derive(Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let catalog: Catalog = parse_json("catalog", host, &body)?;
            for repository in catalog.repositories {
                if repository.to_ascii_lowercase().contains(&needle) && results.len() < limit {
                    results.push(SearchResult {
                        name: format!("{host}/{repository}"),
                        ..SearchResult::default()
                    });
                }
            }
            if results.len() >= limit {
                break;
            }
        }
        Ok(results)
    }
}

/// Where an upload continues: the response's `Location`, absolute or
/// relative to the registry, its query (the upload state) kept.
fn upload_location(
    host: &str,
    base: &str,
    response: &reqwest::Response,
) -> Result<reqwest::Url, RegistryError> {
    let location = header_str(response.headers(), LOCATION.as_str()).ok_or_else(|| {
        RegistryError::NoUploadLocation {
            host: host.to_owned(),
        }
    })?;
    reqwest::Url::parse(base)
        .and_then(|b| b.join(location))
        .map_err(|e| RegistryError::Client(format!("{host}: bad upload location {location}: {e}")))
}

/// `host[:port]` of a URL, as references write it.
fn url_host(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// The names Docker Hub's credentials may be stored under.
const DOCKER_HUB_NAMES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "https://index.docker.io/v1/",
];

/// Whether `host` is one of Docker Hub's names.
fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_NAMES.contains(&host)
}

/// The token scope for pulling `repository`.
fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The token scope for pushing to `repository`.
fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// A blob body being received: yields the bytes as they come, hashing and
/// counting them, and reports progress. The stream's last item is an error
/// when the blob has more or fewer bytes than its descriptor says or hashes
/// to another digest: a consumer must read to the end and keep what it
/// wrote only when the stream ended without an error.
pub struct BlobStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Hasher,
    received: u64,
    descriptor: Descriptor,
    host: String,
    progress: Option<Box<dyn FnMut(u64, u64) + Send>>,
    finished: bool,
}

impl BlobStream {
    /// Call `progress(bytes_so_far, total)` after every chunk received
    /// (for Docker's `Downloading` progress bars).
    pub fn on_progress(mut self, progress: impl FnMut(u64, u64) + Send + 'static) -> BlobStream {
        self.progress = Some(Box::new(progress));
        self
    }

    /// The descriptor of the blob.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// Read the whole blob into memory, verified.
    pub async fn collect(mut self) -> Result<Bytes, RegistryError> {
        let mut out = BytesMut::with_capacity(usize::try_from(self.descriptor.size).unwrap_or(0));
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }

    fn fail(&mut self, error: RegistryError) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.finished = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.body.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                let error = unreachable(&self.host, e);
                self.fail(error)
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let this = &mut *self;
                this.received += chunk.len() as u64;
                if this.received > this.descriptor.size {
                    let error = RegistryError::SizeMismatch {
                        digest: this.descriptor.digest.clone(),
                        expected: this.descriptor.size,
                        actual: this.received,
                    };
                    return this.fail(error);
                }
                this.hasher.update_mut(&chunk);
                if let Some(progress) = &mut this.progress {
                    progress(this.received, this.descriptor.size);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let this = &mut *self;
                this.finished = true;
                if this.received != this.descriptor.size {
                    return Poll::Ready(Some(Err(RegistryError::SizeMismatch {
                        digest: this.descriptor.digest.clone(),
                        expected: this.descriptor.size,
                        actual: this.received,
                    })));
                }
                let hasher = std::mem::replace(&mut this.hasher, Hasher::new_sha256());
                let actual = hasher.finish();
                if actual != this.descriptor.digest.as_str() {
                    return Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                        what: "blob".into(),
                        expected: this.descriptor.digest.to_string(),
                        actual,
                    })));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// A running hash in the algorithm of the digest it will be compared to.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(digest: &Digest) -> Hasher {
        match digest.algorithm() {
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::new_sha256(),
        }
    }

    fn new_sha256() -> Hasher {
        Hasher::Sha256(sha2::Sha256::new())
    }

    fn update(mut self, bytes: &[u8]) -> Hasher {
        self.update_mut(bytes);
        self
    }

    fn update_mut(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// `algorithm:hex`.
    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha384(h) => format!("sha384:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    Hasher::new_sha256().update(bytes).finish()
}

/// A parsed `WWW-Authenticate` value: the scheme (lowercased) and its
/// parameters (`realm`, `service`, `scope`).
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses `Scheme k="v",k2=v2`; quoted values may hold commas (scopes
    /// like `repository:a:pull,push`) and `\"`.
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.trim().is_empty() {
                break;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.peek() {
                    if *c == ',' {
                        break;
                    }
                    value.push(*c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
            params.push((key.trim().to_ascii_lowercase(), value));
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The registry's error body, `{"errors":[{"code","message"}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    message: String,
}

/// A token service's error body, `{"details": "…"}`.
#[derive(Deserialize)]
struct TokenErrorBody {
    details: Option<String>,
}

/// The response when it is 2xx; otherwise the error it stands for.
async fn check_status(
    host: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, RegistryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let is_v2 = header_str(response.headers(), "docker-distribution-api-version").is_some();
    let body = response.bytes().await.unwrap_or_default();
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let message = match &parsed {
        Some(errors) if !errors.errors.is_empty() => errors
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        // Token services (Docker Hub's) answer `{"details": "…"}`.
        _ => match serde_json::from_slice::<TokenErrorBody>(&body) {
            Ok(TokenErrorBody {
                details: Some(details),
            }) if !details.is_empty() => details,
            _ => String::from_utf8_lossy(&body[..body.len().min(512)])
                .trim()
                .to_owned(),
        },
    };
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let message = if message.is_empty() {
            "authentication required".to_owned()
        } else {
            message
        };
        return Err(RegistryError::Unauthorized {
            host: host.to_owned(),
            message,
        });
    }
    // A Registry v2 marks its answers with this header or an error body; a
    // 404 with neither comes from something else (a v1 registry, a web
    // server).
    if status == StatusCode::NOT_FOUND && !is_v2 && parsed.is_none() {
        return Err(RegistryError::NotRegistryV2 {
            host: host.to_owned(),
        });
    }
    Err(RegistryError::Status {
        host: host.to_owned(),
        status,
        message,
    })
}

/// The body, refusing more than [`MAX_MANIFEST_BYTES`].
async fn read_limited(host: &str, response: reqwest::Response) -> Result<Bytes, RegistryError> {
    let mut body = Box::pin(response.bytes_stream());
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| unreachable(host, e))?;
        if out.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                host: host.to_owned(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

fn parse_manifest(host: &str, media_type: &str, bytes: &[u8]) -> Result<Manifest, RegistryError> {
    let mut manifest: Manifest = parse_json("manifest", host, bytes)?;
    manifest.media_type = media_type.to_owned();
    Ok(manifest)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    host: &str,
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::InvalidJson {
        what,
        host: host.to_owned(),
        source,
    })
}

fn unsupported(media_type: &str) -> RegistryError {
    RegistryError::UnsupportedMediaType {
        media_type: media_type.to_owned(),
        hint: "",
    }
}

fn unreachable(host: &str, source: reqwest::Error) -> RegistryError {
    RegistryError::Unreachable {
        host: host.to_owned(),
        source,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `host` without `:port` (and without the brackets of an IPv6 literal).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((bare, port)) if port.bytes().all(|b| b.is_ascii_digit()) => bare,
        _ => host,
    }
}

/// Whether `host` (with or without port) is this machine.
fn is_loopback(host: &str) -> bool {
    let bare = strip_port(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_with_a_comma_in_its_scope_is_parsed_whole() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(challenge.scheme, "bearer");
        assert_eq!(
            challenge.param("realm"),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(challenge.param("service"), Some("registry.docker.io"));
        assert_eq!(
            challenge.param("scope"),
            Some("repository:library/busybox:pull,push")
        );
    }

    #[test]
    fn a_basic_challenge_is_parsed() {
        let challenge = Challenge::parse(r#"Basic realm="test""#).unwrap();
        assert_eq!(challenge.scheme, "basic");
        assert_eq!(challenge.param("realm"), Some("test"));
    }

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry-1.docker.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn insecure_registries_use_http_and_others_https() {
        let client = Client::new(ClientConfig {
            insecure_registries: vec!["myreg.local".into()],
            ..ClientConfig::default()
        })
        .unwrap();
        assert_eq!(
            client.base_url("myreg.local:5000"),
            "http://myreg.local:5000"
        );
        assert_eq!(client.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(
            client.base_url("registry-1.docker.io"),
            "https://registry-1.docker.io"
        );
    }

    #[test]
    fn platforms_match_like_containerd() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let arm64_v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(arm64.matches(&arm64_v8));
        assert!(arm64_v8.matches(&arm64));
        assert!(!Platform::linux_amd64().matches(&arm64));
        assert!(
            !Platform::parse("linux/arm/v7")
                .unwrap()
                .matches(&Platform::parse("linux/arm/v6").unwrap())
        );
        assert_eq!(arm64_v8.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux"), None);
    }
}
