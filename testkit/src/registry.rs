//! A real Registry v2 — Debian's `docker-registry` (CNCF Distribution 2.8)
//! — on a free loopback port, storing on the filesystem in its own
//! temporary directory, with a push of [`Image`]s and [`ImageIndex`]es.
//!
//! The fixture writes the registry's config itself (storage, `http.addr`,
//! deletes enabled, optionally `auth.htpasswd`), starts the binary, and waits
//! with a deadline until `GET /v2/` answers 200. Dropping the handle kills the
//! process and removes the directory; if the test is panicking, the tail of
//! the registry's log is printed first.
//!
//! Pushing is done here, with the Registry v2 protocol (monolithic blob
//! uploads, then `PUT` of the manifest), not with `skopeo`: the registry
//! then stores exactly the bytes [`Image`] describes, so the digests a test
//! asserts on are the digests served, and indexes, OCI and Docker manifests
//! all go the same way. The htpasswd file is written with the `bcrypt` crate
//! (cost 4, so authentication stays fast), needing no `apache2-utils`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use tokio::time::Instant;

use crate::free_port;
use crate::http::{Response, send};
use crate::image::{Blob, Image, ImageIndex};

/// How long the registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times to pick a new port when the registry could not bind its
/// own (another process took it after [`free_port`] released it).
const START_ATTEMPTS: usize = 3;

/// Realm of the basic-auth challenge of [`Registry::start_with_htpasswd`].
pub const REALM: &str = "sdc-docker-test-registry";

/// Path of Debian's `docker-registry`: on `PATH`, else
/// `/usr/bin/docker-registry`.
///
/// # Panics
/// When it is not installed, telling the reader how to install it.
pub fn registry_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("docker-registry");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let fallback = PathBuf::from("/usr/bin/docker-registry");
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "docker-registry is not installed: these tests start a real Registry v2. \
         Run `bash scripts/install-deps.sh` (it installs Debian's `docker-registry`, \
         which provides /usr/bin/docker-registry) and run the tests again."
    );
}

/// A running registry; see the module docs.
pub struct Registry {
    // Declared before `dir` so the process dies before its directory goes.
    child: Option<Child>,
    port: u16,
    credentials: Option<(String, String)>,
    log: PathBuf,
    storage: PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry that needs no authentication.
    ///
    /// # Panics
    /// When `docker-registry` is not installed or does not answer within
    /// 30 s.
    pub async fn start() -> Registry {
        Registry::start_with(None).await
    }

    /// Start a registry that needs HTTP basic authentication as `user` /
    /// `password` (an htpasswd file with a bcrypt hash). Without credentials
    /// it answers 401 with `WWW-Authenticate: Basic realm="…"`; the fixture's
    /// own requests ([`Self::get`], the pushes) send the credentials.
    ///
    /// # Panics
    /// As [`Self::start`].
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user.into(), password.into()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> Registry {
        let binary = registry_binary();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("sdc-docker-registry-")
                .tempdir()
                .expect("creating a temporary directory for the registry");
            let storage = dir.path().join("storage");
            std::fs::create_dir(&storage).expect("creating the registry's storage directory");
            let mut registry = Registry {
                child: None,
                port: free_port(),
                credentials: credentials.clone(),
                log: dir.path().join("registry.log"),
                storage,
                dir,
            };
            let config = registry.write_config();
            registry.spawn(&binary, &config);
            if registry.wait_until_serving().await {
                return registry;
            }
        }
        panic!("docker-registry could not bind a port in {START_ATTEMPTS} attempts");
    }

    /// Write `config.yml` (and `htpasswd`) in the directory; returns the
    /// config's path.
    fn write_config(&self) -> PathBuf {
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage = self.storage.display(),
            port = self.port,
        );
        if let Some((user, password)) = &self.credentials {
            let hash = bcrypt::hash(password, 4).expect("bcrypt-hashing a password");
            let htpasswd = self.dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))
                .expect("writing the htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let path = self.dir.path().join("config.yml");
        std::fs::write(&path, config).expect("writing the registry config");
        path
    }

    fn spawn(&mut self, binary: &Path, config: &Path) {
        let log = File::create(&self.log).expect("creating the registry log file");
        let log_err = log.try_clone().expect("cloning the registry log handle");
        let mut cmd = Command::new(binary);
        // REGISTRY_* variables override the config file: a developer's
        // environment must not reconfigure the test registry.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        self.child = Some(child);
    }

    /// Poll `GET /v2/` until 200; false when the registry exited because
    /// its port was taken (the caller retries), panics on anything else.
    async fn wait_until_serving(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                if self.log_text().contains("address already in use") {
                    return false;
                }
                panic!(
                    "docker-registry exited ({status}) while starting; its log ends with:\n{}",
                    self.log_tail(30)
                );
            }
            if let Ok(response) = self.get("/v2/", &[]).await
                && response.status == StatusCode::OK
            {
                return true;
            }
            if Instant::now() >= deadline {
                panic!(
                    "docker-registry did not answer /v2/ within {START_TIMEOUT:?}; its log ends with:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The full reference of `repository:tag` here:
    /// `127.0.0.1:PORT/library/busybox:latest`.
    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.host())
    }

    /// The user and password of a registry started with
    /// [`Self::start_with_htpasswd`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The `Authorization: Basic …` value for the credentials, if any.
    pub fn basic_auth(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        })
    }

    /// The directory the registry stores blobs and manifests in.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// Where the registry keeps the bytes of blob `digest` (`sha256:…`):
    /// overwrite it to serve a blob whose content does not match its digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process is still running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill the registry (`SIGKILL`) now, to test a registry that goes away
    /// (mid-pull, say); its storage stays until drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send `method path` (`/v2/…`) with `headers` and `body`, adding the
    /// credentials if the registry has some and the request carries no
    /// `Authorization`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> std::io::Result<Response> {
        let url = if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("{}{path}", self.url())
        };
        let mut builder = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let has_auth = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if !has_auth && let Some(auth) = self.basic_auth() {
            builder = builder.header("Authorization", auth);
        }
        let request = builder
            .body(body)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        send(request).await
    }

    /// `GET path` with `headers` (e.g. `Accept`), with the credentials.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    /// Upload `blob` to `repository` (a monolithic upload: `POST` then `PUT
    /// ?digest=`), unless the registry already has it there.
    ///
    /// # Panics
    /// When the registry refuses.
    pub async fn push_blob(&self, repository: &str, blob: &Blob) {
        let path = format!("/v2/{repository}/blobs/{}", blob.digest);
        let head = self.must(Method::HEAD, &path, &[], Bytes::new()).await;
        if head.status == StatusCode::OK {
            return;
        }
        let start = self
            .must(
                Method::POST,
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                Bytes::new(),
            )
            .await;
        expect_status(&start, StatusCode::ACCEPTED, "starting a blob upload");
        let location = start
            .header("location")
            .expect("an upload answer names its Location")
            .to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={}", blob.digest);
        let length = blob.bytes.len().to_string();
        let done = self
            .must(
                Method::PUT,
                &put,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Length", &length),
                ],
                blob.bytes.clone(),
            )
            .await;
        expect_status(
            &done,
            StatusCode::CREATED,
            &format!("uploading {}", blob.digest),
        );
    }

    /// `PUT` `manifest` (an image manifest or an index) of `media_type` as
    /// `repository:reference` (a tag or its digest), checking the registry
    /// computed the digest we did.
    ///
    /// # Panics
    /// When the registry refuses (e.g. a blob it references is missing).
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: &Blob,
    ) {
        let response = self
            .must(
                Method::PUT,
                &format!("/v2/{repository}/manifests/{reference}"),
                &[("Content-Type", media_type)],
                manifest.bytes.clone(),
            )
            .await;
        expect_status(
            &response,
            StatusCode::CREATED,
            &format!("putting manifest {repository}:{reference}"),
        );
        assert_eq!(
            response.header("docker-content-digest"),
            Some(manifest.digest.as_str()),
            "the registry computed another digest for {repository}:{reference}"
        );
    }

    /// Push `image`'s blobs and manifest as `repository:tag`
    /// (`library/busybox`, `latest`).
    ///
    /// # Panics
    /// When the registry refuses.
    pub async fn push(&self, repository: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.push_blob(repository, blob).await;
        }
        self.push_manifest(repository, tag, image.manifest_type(), &image.manifest)
            .await;
    }

    /// Push every image of `index` (by digest), then the index as
    /// `repository:tag`.
    ///
    /// # Panics
    /// When the registry refuses.
    pub async fn push_index(&self, repository: &str, tag: &str, index: &ImageIndex) {
        for image in &index.images {
            for blob in image.blobs() {
                self.push_blob(repository, blob).await;
            }
            self.push_manifest(
                repository,
                image.manifest_digest(),
                image.manifest_type(),
                &image.manifest,
            )
            .await;
        }
        self.push_manifest(repository, tag, index.media_type(), &index.manifest)
            .await;
    }

    async fn must(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Response {
        let what = format!("{method} {path}");
        self.request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{what} on the test registry failed: {e}; its log ends with:\n{}",
                    self.log_tail(20)
                )
            })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn expect_status(response: &Response, expected: StatusCode, what: &str) {
    assert_eq!(
        response.status,
        expected,
        "{what}: the registry answered {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.child.is_some() && std::thread::panicking() {
            eprintln!(
                "--- last lines of docker-registry on {} ({}) ---\n{}\n---",
                self.host(),
                self.log.display(),
                self.log_tail(15)
            );
        }
        self.kill();
    }
}
