//! `docker save`, `docker load` and `docker import`: images to and from tar
//! archives.
//!
//! - [`save`] writes what Docker 25+ writes: an archive that is at once an
//!   OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…` with an
//!   OCI manifest per image) and a classic docker-archive (`manifest.json`,
//!   `repositories`). Layers are the uncompressed tars whose sha256 are the
//!   DiffIDs, decompressed from the stored blobs and verified on the way.
//!   [`SavePlan`] checks that everything is stored before the first byte,
//!   and [`SavePlan::into_stream`] streams the tar for an HTTP body.
//! - [`load`] reads docker-archives (classic and Docker 25), and OCI image
//!   layouts (tags from `io.containerd.image.name` or a full reference in
//!   `org.opencontainers.image.ref.name`), layers plain, gzip'd or zstd'd.
//!   The tar is read as a stream, its members spooled to a temp dir inside
//!   the store (nothing is ever written under a member's name), then every
//!   layer is stored as a blob (an uncompressed one gzip'd, so a later push
//!   has a gzip source), unpacked with its DiffID verified, and the Image
//!   objects are recorded last, so a bad archive leaves none.
//! - [`import`] makes a one-layer image from a rootfs tarball (plain, gzip
//!   or zstd), applying Docker's `--change` instructions ([`apply_changes`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use futures::Stream;
use sdc_docker_store::Api;
use sdc_docker_store::model::{Image, ImageSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use crate::layer::{Compression, LayerError};
use crate::pull::{self, PullError};
use crate::reference::{Digest, Reference};
use crate::registry::{ImageConfig, Platform};
use crate::store::{BlobWriter, ImageStore, LayerSource, StoreError};

/// Media type of an OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker manifest list.
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image config.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an uncompressed OCI layer (what Docker 25 saves).
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of a gzip'd Docker layer (what a loaded or imported layer is
/// stored as, unless it came zstd'd).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of a zstd'd OCI layer.
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The containerd annotation naming an image in full.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest (a tag, or a full reference).
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// JSON members of an archive larger than this are refused.
const MAX_JSON: u64 = 16 << 20;

/// Why a save, load or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive is not one this reads: malformed, a file missing, a
    /// digest that does not match. The message says which.
    #[error("invalid archive: {0}")]
    Invalid(String),
    /// A `--change` instruction that cannot be applied; the message is
    /// Docker's where Docker has one.
    #[error("{0}")]
    InvalidChange(String),
    /// An image to save has no stored config blob.
    #[error("image {0} has no stored config to save")]
    NoConfig(String),
    /// A layer to save was not pulled, loaded or imported here, so its
    /// exact tar cannot be written again.
    #[error("layer {diff_id} of image {image} has no stored blob to save it from")]
    NoLayerSource {
        /// The image id.
        image: String,
        /// The layer's DiffID.
        diff_id: String,
    },
    /// A stored layer blob decompresses to another DiffID than recorded.
    #[error("stored layer {expected} is corrupt: it decompresses to {actual}")]
    CorruptLayer {
        /// The DiffID recorded.
        expected: String,
        /// The sha256 of what the blob decompresses to.
        actual: String,
    },
    /// Reading the input or a file, or writing the output, failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// What went wrong.
        source: io::Error,
    },
    /// A layer could not be read (compression not supported, …).
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Storing a blob or unpacking a layer failed (a DiffID mismatch, …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recording the Image object failed.
    #[error(transparent)]
    Record(#[from] PullError),
}

impl ArchiveError {
    /// Whether the client sent something wrong (a bad archive, tarball or
    /// change) rather than the engine failing: a 400 for the API.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            ArchiveError::Invalid(_)
                | ArchiveError::InvalidChange(_)
                | ArchiveError::Layer(_)
                | ArchiveError::Store(StoreError::DiffIdMismatch { .. } | StoreError::Layer(_))
        )
    }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let op = op.into();
    move |source| ArchiveError::Io { op, source }
}

fn invalid(message: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(message.into())
}

fn join_error(e: tokio::task::JoinError) -> ArchiveError {
    ArchiveError::Io {
        op: "running a blocking task".into(),
        source: io::Error::other(e.to_string()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn digest_of_hex(hex: &str) -> Result<Digest, ArchiveError> {
    Digest::parse(&format!("sha256:{hex}")).map_err(|e| invalid(e.to_string()))
}

/// The first 12 hex digits of a digest, as Docker shows layers.
fn short(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

// ---------------------------------------------------------------------------
// Save
// ---------------------------------------------------------------------------

/// One image of a save: its id, config, layers and the tags to name it by.
#[derive(Debug, Clone)]
struct SaveImage {
    id: Digest,
    config_path: PathBuf,
    config_size: u64,
    /// DiffIDs, bottom first.
    layers: Vec<Digest>,
    /// Tagged references (`docker.io/library/busybox:latest`).
    tags: Vec<Reference>,
}

/// A layer to write: where its blob is and how it is compressed.
#[derive(Debug, Clone)]
struct SaveLayer {
    diff_id: Digest,
    blob: PathBuf,
    compression: Option<Compression>,
}

/// Everything a save writes, checked to be stored: made by [`plan_save`]
/// before any byte is written, so a missing image or layer is an error the
/// API can still answer with a status code.
#[derive(Debug, Clone)]
pub struct SavePlan {
    images: Vec<SaveImage>,
    /// Each distinct layer once, in first-use order.
    layers: Vec<SaveLayer>,
}

/// Checks that the configs and layer blobs of `images` are stored and
/// returns what [`SavePlan::write`] will write. Each image comes with the
/// names to write into `RepoTags` (normalised tags such as
/// `docker.io/library/busybox:latest`; names that are not tags, such as an
/// id or a digest, are skipped, as Docker does).
pub fn plan_save(
    store: &ImageStore,
    images: &[(Image, Vec<String>)],
) -> Result<SavePlan, ArchiveError> {
    let mut plan = SavePlan {
        images: Vec::new(),
        layers: Vec::new(),
    };
    for (image, names) in images {
        let id = Digest::parse(&image.spec.id)
            .map_err(|_| ArchiveError::NoConfig(image.spec.id.clone()))?;
        if !store.has_blob(&id) {
            return Err(ArchiveError::NoConfig(image.spec.id.clone()));
        }
        let config_path = store.blob_path(&id);
        let config_size = std::fs::metadata(&config_path)
            .map_err(io_err(format!("reading {}", config_path.display())))?
            .len();
        let mut layers = Vec::new();
        for diff_id in &image.spec.diff_ids {
            let no_source = || ArchiveError::NoLayerSource {
                image: image.spec.id.clone(),
                diff_id: diff_id.clone(),
            };
            let diff_id = Digest::parse(diff_id).map_err(|_| no_source())?;
            let source = store.layer_source(&diff_id).ok_or_else(no_source)?;
            if !plan.layers.iter().any(|l| l.diff_id == diff_id) {
                plan.layers.push(SaveLayer {
                    diff_id: diff_id.clone(),
                    blob: store.blob_path(&source.digest),
                    compression: Compression::from_media_type(&source.media_type),
                });
            }
            layers.push(diff_id);
        }
        let mut tags: Vec<Reference> = Vec::new();
        for name in names {
            match Reference::parse_normalized(name) {
                Ok(r) if r.tag().is_some() && r.digest().is_none() => {
                    if !tags.contains(&r) {
                        tags.push(r);
                    }
                }
                _ => debug!(name, "not a tag: not written into RepoTags"),
            }
        }
        if let Some(existing) = plan.images.iter_mut().find(|i| i.id == id) {
            for tag in tags {
                if !existing.tags.contains(&tag) {
                    existing.tags.push(tag);
                }
            }
            continue;
        }
        plan.images.push(SaveImage {
            id,
            config_path,
            config_size,
            layers,
            tags,
        });
    }
    Ok(plan)
}

/// Writes the docker-archive of `images` (see [`plan_save`]) to `writer`:
/// blocking, call it off the async runtime. Returns the writer.
pub fn save<W: Write>(
    store: &ImageStore,
    images: &[(Image, Vec<String>)],
    writer: W,
) -> Result<W, ArchiveError> {
    plan_save(store, images)?.write(writer)
}

/// The decoder for a stored layer blob.
fn layer_reader(
    path: &Path,
    compression: Option<Compression>,
) -> Result<Box<dyn Read>, ArchiveError> {
    let mut file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
    let compression = match compression {
        Some(c) => c,
        None => {
            let mut magic = [0u8; 6];
            let n = read_full(&mut file, &mut magic)
                .map_err(io_err(format!("reading {}", path.display())))?;
            let c = Compression::detect(&magic[..n])?;
            file = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
            c
        }
    };
    let file = BufReader::with_capacity(256 * 1024, file);
    Ok(match compression {
        Compression::Uncompressed => Box::new(file),
        Compression::Gzip => Box::new(MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(file)
                .map_err(io_err(format!("reading {}", path.display())))?,
        ),
    })
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut seen = 0;
    while seen < buf.len() {
        match reader.read(&mut buf[seen..]) {
            Ok(0) => break,
            Ok(n) => seen += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(seen)
}

/// Counts and hashes what is written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn tar_header(size: u64, directory: bool) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    if directory {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
    } else {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
    }
    header.set_size(size);
    header
}

impl SavePlan {
    /// The image ids saved, in order.
    pub fn image_ids(&self) -> Vec<String> {
        self.images.iter().map(|i| i.id.to_string()).collect()
    }

    /// Writes the archive to `writer` (blocking) and returns the writer.
    /// A layer blob that no longer decompresses to its DiffID stops the
    /// write with [`ArchiveError::CorruptLayer`] before that layer's entry.
    pub fn write<W: Write>(&self, writer: W) -> Result<W, ArchiveError> {
        let mut tar = tar::Builder::new(writer);
        let werr = |what: &str| io_err(format!("writing {what} to the archive"));
        for dir in ["blobs/", "blobs/sha256/"] {
            tar.append_data(&mut tar_header(0, true), dir, io::empty())
                .map_err(werr(dir))?;
        }
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for layer in &self.layers {
            // First pass: the size the tar header needs, and the check
            // that the blob still is this layer.
            let mut counter = Hashing {
                inner: io::sink(),
                hasher: Sha256::new(),
                len: 0,
            };
            io::copy(
                &mut layer_reader(&layer.blob, layer.compression)?,
                &mut counter,
            )
            .map_err(io_err(format!("reading {}", layer.blob.display())))?;
            let actual = hex::encode(counter.hasher.finalize());
            if actual != layer.diff_id.hex() {
                return Err(ArchiveError::CorruptLayer {
                    expected: layer.diff_id.to_string(),
                    actual: format!("sha256:{actual}"),
                });
            }
            let name = format!("blobs/sha256/{}", layer.diff_id.hex());
            tar.append_data(
                &mut tar_header(counter.len, false),
                &name,
                layer_reader(&layer.blob, layer.compression)?,
            )
            .map_err(werr(&name))?;
            sizes.insert(layer.diff_id.clone(), counter.len);
            debug!(diff_id = %layer.diff_id, size = counter.len, "saved layer");
        }

        let mut index_manifests = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for image in &self.images {
            let config_name = format!("blobs/sha256/{}", image.id.hex());
            let config = File::open(&image.config_path)
                .map_err(io_err(format!("opening {}", image.config_path.display())))?;
            tar.append_data(
                &mut tar_header(image.config_size, false),
                &config_name,
                config,
            )
            .map_err(werr(&config_name))?;
            let layers: Vec<Value> = image
                .layers
                .iter()
                .map(|d| {
                    json!({
                        "mediaType": OCI_LAYER_TAR,
                        "digest": d.as_str(),
                        "size": sizes.get(d).copied().unwrap_or_default(),
                    })
                })
                .collect();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": image.id.as_str(),
                    "size": image.config_size,
                },
                "layers": layers,
            });
            let manifest = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
            let manifest_hex = sha256_hex(&manifest);
            let manifest_name = format!("blobs/sha256/{manifest_hex}");
            tar.append_data(
                &mut tar_header(manifest.len() as u64, false),
                &manifest_name,
                &manifest[..],
            )
            .map_err(werr(&manifest_name))?;
            let descriptor = |annotations: Option<Value>| {
                let mut d = json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{manifest_hex}"),
                    "size": manifest.len(),
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if image.tags.is_empty() {
                index_manifests.push(descriptor(None));
            }
            for tag in &image.tags {
                index_manifests.push(descriptor(Some(json!({
                    CONTAINERD_NAME: tag.to_string(),
                    OCI_REF_NAME: tag.tag().unwrap_or("latest"),
                }))));
                if let Some(top) = image.layers.last() {
                    repositories.entry(tag.familiar_name()).or_default().insert(
                        tag.tag().unwrap_or("latest").to_owned(),
                        top.hex().to_owned(),
                    );
                }
            }
            docker_manifest.push(json!({
                "Config": config_name,
                "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
                "Layers": image
                    .layers
                    .iter()
                    .map(|d| format!("blobs/sha256/{}", d.hex()))
                    .collect::<Vec<_>>(),
            }));
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": index_manifests,
        });
        let files = [
            ("index.json", index),
            ("manifest.json", Value::Array(docker_manifest)),
            ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
        ];
        for (name, value) in files {
            let bytes = serde_json::to_vec(&value).map_err(|e| invalid(e.to_string()))?;
            tar.append_data(&mut tar_header(bytes.len() as u64, false), name, &bytes[..])
                .map_err(werr(name))?;
        }
        if !repositories.is_empty() {
            let bytes = serde_json::to_vec(&repositories).map_err(|e| invalid(e.to_string()))?;
            tar.append_data(
                &mut tar_header(bytes.len() as u64, false),
                "repositories",
                &bytes[..],
            )
            .map_err(werr("repositories"))?;
        }
        tar.into_inner().map_err(werr("the end of the archive"))
    }

    /// The archive as a stream of chunks for an HTTP body, written on a
    /// blocking thread. An error midway ends the stream with an error (the
    /// client sees a cut-off body); a client gone away stops the writing.
    pub fn into_stream(self) -> Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let result = self
                .write(writer)
                .and_then(|mut w| w.flush().map_err(io_err("sending the end of the archive")));
            if let Err(e) = result {
                warn!(error = %e, "docker save stopped");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// Bytes per chunk of a streamed save.
const CHUNK: usize = 256 * 1024;

/// A blocking writer sending chunks down a channel.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

// ---------------------------------------------------------------------------
// Bridges between the async body and the blocking tar and codec code
// ---------------------------------------------------------------------------

/// A blocking `Read` over an async reader, for a `spawn_blocking` thread.
struct SyncReader<R> {
    inner: R,
    handle: Handle,
}

impl<R: AsyncRead + Unpin> Read for SyncReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.block_on(self.inner.read(buf))
    }
}

/// A blocking `Write` into a [`BlobWriter`], for a `spawn_blocking` thread.
struct BlobSink {
    writer: BlobWriter,
    handle: Handle,
}

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle
            .block_on(self.writer.write(buf))
            .map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies what is read from `inner` into `copy` as well.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------

/// One step of a load, in Docker's JSONMessage terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// A layer is stored (`Loading layer`, id = 12 hex digits of its
    /// DiffID, with its size as current and total bytes).
    Layer {
        /// The first 12 hex digits of the DiffID.
        id: String,
        /// Docker's status text.
        status: String,
        /// Bytes loaded.
        current: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A line of Docker's output: `Loaded image: busybox:latest`, `Loaded
    /// image ID: sha256:…`, `The image … already exists, renaming …`.
    Message(String),
}

/// One image a load recorded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The Image object as recorded.
    pub image: Image,
    /// The tags the archive gave it, familiar (`busybox:latest`).
    pub tags: Vec<String>,
}

/// A member of the archive, spooled to a temp file.
#[derive(Debug, Clone)]
struct Member {
    path: PathBuf,
    /// sha256 of its bytes, hex.
    sha256: String,
    size: u64,
    /// Its first bytes, for detecting compression.
    magic: Vec<u8>,
}

/// The archive's regular files, spooled into a temp dir (removed on drop).
#[derive(Debug)]
struct Spool {
    dir: PathBuf,
    files: HashMap<String, Member>,
    /// Symlinks and hard links: name → target name.
    links: HashMap<String, String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A member name as a clean relative path: `./a//b` → `a/b`; `..` is kept
/// literally (so it never matches a member inside the archive).
fn clean_name(name: &str) -> String {
    name.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Spool {
    /// A temp dir inside the store's blob dir: on the same filesystem, and
    /// removed by [`ImageStore::open`] if a crash leaves it.
    fn new(store: &ImageStore) -> Result<Spool, ArchiveError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = store
            .root()
            .join("blobs/sha256")
            .join(format!(".tmp-load-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(Spool {
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        })
    }

    /// Reads the whole tar from `reader`, spooling every regular file.
    fn read_tar(&mut self, reader: impl Read) -> Result<(), ArchiveError> {
        let mut archive = tar::Archive::new(BufReader::with_capacity(256 * 1024, reader));
        let bad = |e: io::Error| invalid(format!("reading the tar: {e}"));
        let mut count = 0u64;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = clean_name(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = self.dir.join(count.to_string());
                    count += 1;
                    let file = File::create(&path)
                        .map_err(io_err(format!("creating {}", path.display())))?;
                    let mut hashing = Hashing {
                        inner: BufWriter::with_capacity(256 * 1024, file),
                        hasher: Sha256::new(),
                        len: 0,
                    };
                    let mut magic = vec![0u8; 8];
                    let n = read_full(&mut entry, &mut magic).map_err(bad)?;
                    magic.truncate(n);
                    hashing
                        .write_all(&magic)
                        .map_err(io_err(format!("writing {}", path.display())))?;
                    io::copy(&mut entry, &mut hashing).map_err(bad)?;
                    hashing
                        .flush()
                        .map_err(io_err(format!("writing {}", path.display())))?;
                    let member = Member {
                        path,
                        sha256: hex::encode(hashing.hasher.finalize()),
                        size: hashing.len,
                        magic,
                    };
                    self.links.remove(&name);
                    self.files.insert(name, member);
                }
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        let resolved = resolve_relative(parent, &target);
                        self.links.insert(name, resolved);
                    }
                }
                tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = clean_name(&String::from_utf8_lossy(&target));
                        self.links.insert(name, target);
                    }
                }
                _ => {}
            }
        }
        debug!(files = self.files.len(), "archive read");
        Ok(())
    }

    /// The member named `name`, following links (a few hops at most).
    fn get(&self, name: &str) -> Result<&Member, ArchiveError> {
        let mut current = clean_name(name);
        for _ in 0..8 {
            if let Some(member) = self.files.get(&current) {
                return Ok(member);
            }
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => break,
            }
        }
        Err(invalid(format!("{name} is not in the archive")))
    }

    /// The member that is blob `digest` (`blobs/<alg>/<hex>`), verified.
    fn blob(&self, digest: &str) -> Result<&Member, ArchiveError> {
        let parsed = Digest::parse(digest).map_err(|e| invalid(e.to_string()))?;
        let member = self.get(&format!("blobs/{}/{}", parsed.algorithm(), parsed.hex()))?;
        if parsed.algorithm() != "sha256" || member.sha256 != parsed.hex() {
            return Err(invalid(format!(
                "blob {digest} has digest sha256:{}",
                member.sha256
            )));
        }
        Ok(member)
    }

    /// A JSON member read into memory.
    fn json<T: for<'de> Deserialize<'de>>(
        &self,
        member: &Member,
        name: &str,
    ) -> Result<T, ArchiveError> {
        let bytes = self.bytes(member, name)?;
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{name}: {e}")))
    }

    fn bytes(&self, member: &Member, name: &str) -> Result<Vec<u8>, ArchiveError> {
        if member.size > MAX_JSON {
            return Err(invalid(format!(
                "{name} is {} bytes, too large",
                member.size
            )));
        }
        std::fs::read(&member.path).map_err(io_err(format!("reading {name}")))
    }
}

/// `target` of a symlink in directory `parent`, as a clean archive name.
fn resolve_relative(parent: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        parent.split('/').filter(|c| !c.is_empty()).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), None | Some(&"..")) {
                    parts.push("..");
                } else {
                    parts.pop();
                }
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `manifest.json`'s entries.
#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A descriptor of an OCI index or manifest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// Present when the blob is an index after all.
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// An image found in the archive, before it is stored.
#[derive(Debug)]
struct Candidate {
    config: Member,
    layers: Vec<Member>,
    tags: Vec<Reference>,
}

/// Parses a tag of an archive (`busybox:latest`) as Docker: a name with a
/// tag (`busybox` alone gets `latest`), no digest.
fn parse_tag(tag: &str) -> Result<Reference, ArchiveError> {
    let reference = Reference::parse_normalized(tag)
        .map_err(|e| invalid(format!("invalid tag {tag:?}: {e}")))?;
    if reference.digest().is_some() {
        return Err(invalid(format!("invalid tag {tag:?}")));
    }
    Ok(reference.with_default_tag())
}

/// The images named by a docker-archive's `manifest.json`.
fn docker_candidates(spool: &Spool, manifest: &Member) -> Result<Vec<Candidate>, ArchiveError> {
    let entries: Vec<DockerManifestEntry> = spool.json(manifest, "manifest.json")?;
    if entries.is_empty() {
        return Err(invalid("manifest.json lists no image"));
    }
    entries
        .iter()
        .map(|entry| {
            Ok(Candidate {
                config: spool.get(&entry.config)?.clone(),
                layers: entry
                    .layers
                    .iter()
                    .map(|l| spool.get(l).cloned())
                    .collect::<Result<_, _>>()?,
                tags: entry
                    .repo_tags
                    .iter()
                    .flatten()
                    .map(|t| parse_tag(t))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// The name an OCI index entry gives its image: containerd's annotation,
/// or a `ref.name` that is a full reference (a bare tag names no
/// repository, so it gives no name).
fn oci_tag(annotations: &HashMap<String, String>) -> Result<Option<Reference>, ArchiveError> {
    if let Some(name) = annotations.get(CONTAINERD_NAME) {
        return parse_tag(name).map(Some);
    }
    match annotations.get(OCI_REF_NAME) {
        Some(name) if name.contains('/') || name.contains(':') => parse_tag(name).map(Some),
        _ => Ok(None),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The images named by an OCI layout's `index.json`: per entry, its
/// manifest (or, for a nested index, the manifest for `platform`, else the
/// first).
fn oci_candidates(
    spool: &Spool,
    index: &Member,
    platform: &Platform,
) -> Result<Vec<Candidate>, ArchiveError> {
    let index: OciIndex = spool.json(index, "index.json")?;
    if index.manifests.is_empty() {
        return Err(invalid("index.json lists no manifest"));
    }
    let mut candidates: Vec<(String, Candidate)> = Vec::new();
    for descriptor in &index.manifests {
        let tag = oci_tag(&descriptor.annotations)?;
        let manifest_digest = resolve_manifest(spool, descriptor, platform, 0)?;
        if let Some((_, existing)) = candidates.iter_mut().find(|(d, _)| *d == manifest_digest) {
            existing.tags.extend(tag);
            continue;
        }
        let member = spool.blob(&manifest_digest)?;
        let manifest: OciManifest = spool.json(member, &manifest_digest)?;
        let candidate = Candidate {
            config: spool.blob(&manifest.config.digest)?.clone(),
            layers: manifest
                .layers
                .iter()
                .map(|l| spool.blob(&l.digest).cloned())
                .collect::<Result<_, _>>()?,
            tags: tag.into_iter().collect(),
        };
        candidates.push((manifest_digest, candidate));
    }
    Ok(candidates.into_iter().map(|(_, c)| c).collect())
}

/// The digest of the image manifest `descriptor` leads to.
fn resolve_manifest(
    spool: &Spool,
    descriptor: &Descriptor,
    platform: &Platform,
    depth: u32,
) -> Result<String, ArchiveError> {
    if depth > 4 {
        return Err(invalid("indexes nested too deep"));
    }
    let member = spool.blob(&descriptor.digest)?;
    let manifest: OciManifest = if is_index(&descriptor.media_type) {
        OciManifest {
            media_type: descriptor.media_type.clone(),
            config: Descriptor {
                media_type: String::new(),
                digest: String::new(),
                annotations: HashMap::new(),
                platform: None,
            },
            layers: Vec::new(),
            manifests: Some(
                spool
                    .json::<OciIndex>(member, &descriptor.digest)?
                    .manifests,
            ),
        }
    } else {
        match spool.json::<OciManifest>(member, &descriptor.digest) {
            Ok(m) => m,
            Err(_) => OciManifest {
                media_type: OCI_INDEX.into(),
                config: Descriptor {
                    media_type: String::new(),
                    digest: String::new(),
                    annotations: HashMap::new(),
                    platform: None,
                },
                layers: Vec::new(),
                manifests: Some(
                    spool
                        .json::<OciIndex>(member, &descriptor.digest)?
                        .manifests,
                ),
            },
        }
    };
    match manifest.manifests {
        Some(manifests) if is_index(&manifest.media_type) || manifest.config.digest.is_empty() => {
            let matches = |d: &&Descriptor| {
                d.platform.as_ref().is_some_and(|p| {
                    p.os == platform.os
                        && p.architecture == platform.architecture
                        && (platform.variant.is_none() || p.variant == platform.variant)
                })
            };
            let chosen = manifests
                .iter()
                .find(matches)
                .or_else(|| manifests.first())
                .ok_or_else(|| invalid(format!("index {} lists no manifest", descriptor.digest)))?;
            resolve_manifest(spool, chosen, platform, depth + 1)
        }
        _ => Ok(descriptor.digest.clone()),
    }
}

/// Loads the images of the tar read from `reader` (a docker-archive or an
/// OCI image layout; see the module docs) into `store` and records them in
/// `images`, calling `progress` with Docker's messages. For an OCI index of
/// several platforms, the manifest for `platform` is loaded.
pub async fn load<R>(
    store: &ImageStore,
    images: &Api<Image>,
    reader: R,
    platform: &Platform,
    mut progress: impl FnMut(LoadEvent),
) -> Result<Vec<Loaded>, ArchiveError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut spool = Spool::new(store)?;
    let handle = Handle::current();
    let spool = tokio::task::spawn_blocking(move || {
        spool
            .read_tar(SyncReader {
                inner: reader,
                handle,
            })
            .map(|()| spool)
    })
    .await
    .map_err(join_error)??;

    let candidates = if let Some(manifest) = spool.files.get("manifest.json") {
        docker_candidates(&spool, manifest)?
    } else if let Some(index) = spool.files.get("index.json") {
        if !spool.files.contains_key("oci-layout") {
            return Err(invalid("index.json without oci-layout"));
        }
        oci_candidates(&spool, index, platform)?
    } else {
        return Err(invalid(
            "neither manifest.json (docker save) nor index.json (OCI image layout) in it",
        ));
    };

    // Every image's layers are stored first; the Image objects are
    // recorded only once all of them are, so a bad archive records none.
    let mut specs = Vec::new();
    for candidate in &candidates {
        let config_bytes = spool.bytes(&candidate.config, "the image config")?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("the image config: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != candidate.layers.len() {
            return Err(invalid(format!(
                "the image has {} layers but its config {} diff_ids",
                candidate.layers.len(),
                diff_ids.len()
            )));
        }
        for (member, diff_id) in candidate.layers.iter().zip(diff_ids) {
            store_layer(store, member, diff_id).await?;
            progress(LoadEvent::Layer {
                id: short(diff_id),
                status: "Loading layer".into(),
                current: member.size,
                total: member.size,
            });
        }
        let id = digest_of_hex(&candidate.config.sha256)?;
        if !store.has_blob(&id) {
            store.put_blob(&id, &config_bytes).await?;
        }
        let spec = image_spec(store, &id, &config, &config_bytes, &candidate.tags)?;
        specs.push((spec, candidate.tags.clone()));
    }
    drop(spool);

    let mut loaded = Vec::new();
    for (spec, tags) in specs {
        let existing = images.list().await.map_err(PullError::from)?.items;
        for tag in &tags {
            let full = tag.to_string();
            if let Some(old) = existing
                .iter()
                .find(|i| i.spec.id != spec.id && i.spec.repo_tags.contains(&full))
            {
                progress(LoadEvent::Message(format!(
                    "The image {} already exists, renaming the old one with ID {} to empty string",
                    tag.familiar(),
                    old.spec.id
                )));
            }
        }
        let id = spec.id.clone();
        let (image, _) = pull::record(images, spec).await?;
        if tags.is_empty() {
            progress(LoadEvent::Message(format!("Loaded image ID: {id}")));
        }
        for tag in &tags {
            progress(LoadEvent::Message(format!(
                "Loaded image: {}",
                tag.familiar()
            )));
        }
        info!(id = %id, tags = tags.len(), "image loaded");
        loaded.push(Loaded {
            image,
            tags: tags.iter().map(|t| t.familiar()).collect(),
        });
    }
    Ok(loaded)
}

/// Stores one layer member: as a blob (gzip'd when it came uncompressed),
/// unpacked with `diff_id` verified, its source recorded. A layer already
/// stored with a source is left as it is.
async fn store_layer(
    store: &ImageStore,
    member: &Member,
    diff_id: &Digest,
) -> Result<(), ArchiveError> {
    if store.has_layer(diff_id) && store.layer_source(diff_id).is_some() {
        debug!(%diff_id, "layer already stored");
        return Ok(());
    }
    let compression = Compression::detect(&member.magic)?;
    let (blob, media_type, size) = match compression {
        Compression::Uncompressed => {
            // Its sha256 is its DiffID: checked before the work of gzip.
            if member.sha256 != diff_id.hex() {
                return Err(StoreError::DiffIdMismatch {
                    expected: diff_id.clone(),
                    actual: format!("sha256:{}", member.sha256),
                }
                .into());
            }
            let writer = store.new_blob().await?;
            let path = member.path.clone();
            let handle = Handle::current();
            let writer = tokio::task::spawn_blocking(move || -> io::Result<BlobWriter> {
                let mut sink = BlobSink { writer, handle };
                let mut gz = GzEncoder::new(
                    BufWriter::with_capacity(1 << 20, &mut sink),
                    flate2::Compression::fast(),
                );
                io::copy(&mut BufReader::new(File::open(&path)?), &mut gz)?;
                gz.finish()?.flush()?;
                Ok(sink.writer)
            })
            .await
            .map_err(join_error)?
            .map_err(io_err("compressing a layer"))?;
            let size = writer.written();
            (writer.commit().await?, DOCKER_LAYER_GZIP, size)
        }
        Compression::Gzip | Compression::Zstd => {
            let digest = digest_of_hex(&member.sha256)?;
            if !store.has_blob(&digest) {
                let mut writer = store.blob_writer(&digest).await?;
                let mut file = tokio::fs::File::open(&member.path)
                    .await
                    .map_err(io_err("reading a spooled layer"))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(io_err("reading a spooled layer"))?;
                    if n == 0 {
                        break;
                    }
                    writer.write(&buf[..n]).await?;
                }
                writer.commit().await?;
            }
            let media_type = if compression == Compression::Gzip {
                DOCKER_LAYER_GZIP
            } else {
                OCI_LAYER_ZSTD
            };
            (digest, media_type, member.size)
        }
    };
    store
        .unpack_layer(&blob, Some(compression_of(media_type)), diff_id)
        .await?;
    store.set_layer_source(
        diff_id,
        &LayerSource {
            digest: blob,
            media_type: media_type.to_owned(),
            size,
        },
    )?;
    Ok(())
}

fn compression_of(media_type: &str) -> Compression {
    Compression::from_media_type(media_type).unwrap_or(Compression::Gzip)
}

/// The spec of a loaded or imported image (no repo digests: it came from
/// no registry).
fn image_spec(
    store: &ImageStore,
    id: &Digest,
    config: &ImageConfig,
    config_bytes: &[u8],
    tags: &[Reference],
) -> Result<ImageSpec, ArchiveError> {
    let size = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| store.layer_size(d))
        .sum::<u64>();
    Ok(ImageSpec {
        id: id.to_string(),
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        repo_digests: Vec::new(),
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        diff_ids: config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.to_string())
            .collect(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        config: serde_json::from_slice(config_bytes)
            .map_err(|e| invalid(format!("the image config: {e}")))?,
        created: config
            .created
            .as_deref()
            .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok()),
    })
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// Makes a one-layer image of the rootfs tarball read from `reader` (plain,
/// gzip or zstd), as `docker import` (`POST /images/create?fromSrc=-`):
/// `changes` are Docker's `--change` instructions, `message` the commit
/// message (default `Imported from -`), `repo_tag` the name to tag it
/// with (`latest` when it has no tag). Returns the recorded Image object.
pub async fn import<R>(
    store: &ImageStore,
    images: &Api<Image>,
    reader: R,
    repo_tag: Option<Reference>,
    changes: &[String],
    message: Option<String>,
    platform: &Platform,
) -> Result<Image, ArchiveError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    // The changes are checked before the body is read.
    let mut container_config = Map::new();
    apply_changes(&mut container_config, changes)?;
    let tag = match repo_tag {
        Some(r) if r.digest().is_some() => {
            return Err(ArchiveError::InvalidChange(format!(
                "invalid reference: {} has a digest",
                r.familiar()
            )));
        }
        Some(r) => Some(r.with_default_tag()),
        None => None,
    };

    let writer = store.new_blob().await?;
    let handle = Handle::current();
    let (writer, diff_hex, compression) = tokio::task::spawn_blocking(move || {
        import_blob(
            SyncReader {
                inner: reader,
                handle: handle.clone(),
            },
            BlobSink { writer, handle },
        )
    })
    .await
    .map_err(join_error)??;
    let size = writer.written();
    let blob = writer.commit().await?;
    let diff_id = digest_of_hex(&diff_hex)?;
    let media_type = if compression == Compression::Zstd {
        OCI_LAYER_ZSTD
    } else {
        DOCKER_LAYER_GZIP
    };
    if !(store.has_layer(&diff_id) && store.layer_source(&diff_id).is_some()) {
        store
            .unpack_layer(&blob, Some(compression_of(media_type)), &diff_id)
            .await?;
        store.set_layer_source(
            &diff_id,
            &LayerSource {
                digest: blob,
                media_type: media_type.to_owned(),
                size,
            },
        )?;
    }

    let created = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(|e| invalid(e.to_string()))?;
    let comment = message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "Imported from -".to_owned());
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "comment": comment,
        "config": container_config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.as_str()] },
        "history": [{ "created": created, "comment": comment }],
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    let id = digest_of_hex(&sha256_hex(&config_bytes))?;
    store.put_blob(&id, &config_bytes).await?;
    let parsed: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| invalid(e.to_string()))?;
    let tags: Vec<Reference> = tag.into_iter().collect();
    let spec = image_spec(store, &id, &parsed, &config_bytes, &tags)?;
    let (image, _) = pull::record(images, spec).await?;
    info!(%id, "image imported");
    Ok(image)
}

/// Stores the tarball as a blob (gzip'd when it is plain) and returns the
/// writer, the DiffID's hex and the blob's compression.
fn import_blob(
    mut reader: impl Read,
    sink: BlobSink,
) -> Result<(BlobWriter, String, Compression), ArchiveError> {
    let rerr = |e: io::Error| invalid(format!("reading the tarball: {e}"));
    let mut magic = [0u8; 6];
    let n = read_full(&mut reader, &mut magic).map_err(rerr)?;
    if n == 0 {
        return Err(invalid("the tarball is empty"));
    }
    let compression = Compression::detect(&magic[..n])?;
    let stream = Read::chain(io::Cursor::new(magic[..n].to_vec()), reader);
    let mut hasher = Sha256::new();
    let mut sink = sink;
    match compression {
        Compression::Uncompressed => {
            let mut hashing = Hashing {
                inner: stream,
                hasher: Sha256::new(),
                len: 0,
            };
            let mut gz = GzEncoder::new(
                BufWriter::with_capacity(1 << 20, &mut sink),
                flate2::Compression::fast(),
            );
            io::copy(&mut hashing, &mut gz).map_err(rerr)?;
            gz.finish()
                .and_then(|mut w| w.flush())
                .map_err(io_err("storing the layer"))?;
            hasher = hashing.hasher;
        }
        Compression::Gzip | Compression::Zstd => {
            let mut tee = Tee {
                inner: stream,
                copy: BufWriter::with_capacity(1 << 20, &mut sink),
            };
            {
                let mut decoded: Box<dyn Read + '_> = if compression == Compression::Gzip {
                    Box::new(MultiGzDecoder::new(&mut tee))
                } else {
                    Box::new(zstd::Decoder::new(&mut tee).map_err(rerr)?)
                };
                let mut hashing = Hashing {
                    inner: io::sink(),
                    hasher: Sha256::new(),
                    len: 0,
                };
                io::copy(&mut decoded, &mut hashing).map_err(rerr)?;
                std::mem::swap(&mut hasher, &mut hashing.hasher);
            }
            // Whatever follows the compressed stream is stored too, so the
            // blob is the body as sent.
            io::copy(&mut tee, &mut io::sink()).map_err(rerr)?;
            tee.copy.flush().map_err(io_err("storing the layer"))?;
        }
    }
    Ok((sink.writer, hex::encode(hasher.finalize()), compression))
}

// ---------------------------------------------------------------------------
// --change
// ---------------------------------------------------------------------------

/// Applies Docker's `--change` instructions (Dockerfile syntax, one or more
/// per string) to a container config (`Cmd`, `Env`, … as in an image
/// config's `config`): `CMD`, `ENTRYPOINT` (JSON array or shell form),
/// `ENV`, `LABEL` (`k=v …` or the legacy `k v`), `WORKDIR`, `USER`,
/// `EXPOSE`, `VOLUME`, `STOPSIGNAL`, `ONBUILD` and `HEALTHCHECK NONE|CMD`.
/// Anything else is refused with Docker's `… is not a valid change
/// command`.
pub fn apply_changes(
    config: &mut Map<String, Value>,
    changes: &[String],
) -> Result<(), ArchiveError> {
    let mut cmd_set = false;
    for line in changes.iter().flat_map(|c| c.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instruction, rest) = match line.split_once(char::is_whitespace) {
            Some((i, r)) => (i.to_ascii_lowercase(), r.trim()),
            None => (line.to_ascii_lowercase(), ""),
        };
        let needs_args = || {
            ArchiveError::InvalidChange(format!(
                "{} requires at least one argument",
                instruction.to_ascii_uppercase()
            ))
        };
        match instruction.as_str() {
            "cmd" => {
                config.insert("Cmd".into(), json!(exec_or_shell(rest)));
                cmd_set = true;
            }
            "entrypoint" => {
                config.insert("Entrypoint".into(), json!(exec_or_shell(rest)));
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            "env" => {
                let pairs = key_values(rest, "ENV")?;
                let env = config.entry("Env").or_insert_with(|| json!([]));
                let mut list: Vec<String> = serde_json::from_value(env.clone()).unwrap_or_default();
                for (k, v) in pairs {
                    let entry = format!("{k}={v}");
                    match list
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(existing) => *existing = entry,
                        None => list.push(entry),
                    }
                }
                *env = json!(list);
            }
            "label" => {
                let pairs = key_values(rest, "LABEL")?;
                let labels = config.entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in pairs {
                    labels[k] = json!(v);
                }
            }
            "workdir" => {
                if rest.is_empty() {
                    return Err(needs_args());
                }
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/");
                let dir = if rest.starts_with('/') {
                    rest.to_owned()
                } else {
                    format!("{}/{rest}", current.trim_end_matches('/'))
                };
                config.insert("WorkingDir".into(), json!(resolve_absolute(&dir)));
            }
            "user" => {
                if rest.is_empty() {
                    return Err(needs_args());
                }
                config.insert("User".into(), json!(rest));
            }
            "stopsignal" => {
                if rest.is_empty() {
                    return Err(needs_args());
                }
                config.insert("StopSignal".into(), json!(rest));
            }
            "expose" => {
                let words = split_words(rest);
                if words.is_empty() {
                    return Err(needs_args());
                }
                let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
                if !ports.is_object() {
                    *ports = json!({});
                }
                for word in words {
                    for port in expand_ports(&word)? {
                        ports[port] = json!({});
                    }
                }
            }
            "volume" => {
                let volumes: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) if rest.starts_with('[') => v,
                    _ => split_words(rest),
                };
                if volumes.is_empty() {
                    return Err(needs_args());
                }
                let map = config.entry("Volumes").or_insert_with(|| json!({}));
                if !map.is_object() {
                    *map = json!({});
                }
                for v in volumes {
                    map[v] = json!({});
                }
            }
            "onbuild" => {
                if rest.is_empty() {
                    return Err(needs_args());
                }
                let list = config.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(array) = list.as_array_mut() {
                    array.push(json!(rest));
                } else {
                    *list = json!([rest]);
                }
            }
            "healthcheck" => {
                let (kind, args) = match rest.split_once(char::is_whitespace) {
                    Some((k, a)) => (k.to_ascii_uppercase(), a.trim()),
                    None => (rest.to_ascii_uppercase(), ""),
                };
                let test = match kind.as_str() {
                    "NONE" if args.is_empty() => json!(["NONE"]),
                    "CMD" if !args.is_empty() => {
                        if args.starts_with('[') {
                            match serde_json::from_str::<Vec<String>>(args) {
                                Ok(mut v) => {
                                    v.insert(0, "CMD".into());
                                    json!(v)
                                }
                                Err(_) => json!(["CMD-SHELL", args]),
                            }
                        } else {
                            json!(["CMD-SHELL", args])
                        }
                    }
                    _ => {
                        return Err(ArchiveError::InvalidChange(
                            "HEALTHCHECK in a change must be NONE or CMD without options here"
                                .into(),
                        ));
                    }
                };
                config.insert("Healthcheck".into(), json!({ "Test": test }));
            }
            other => {
                return Err(ArchiveError::InvalidChange(format!(
                    "{other} is not a valid change command"
                )));
            }
        }
    }
    Ok(())
}

/// A JSON array of strings (exec form) or `/bin/sh -c` the text (shell
/// form), as a Dockerfile reads `CMD` and `ENTRYPOINT`.
fn exec_or_shell(rest: &str) -> Vec<String> {
    if rest.starts_with('[')
        && let Ok(args) = serde_json::from_str::<Vec<String>>(rest)
    {
        return args;
    }
    if rest.is_empty() {
        return Vec::new();
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// Words as a Dockerfile splits them: on whitespace, with `"…"` and `'…'`
/// quoting and `\` escapes (quotes removed).
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `k=v k2="v 2"` or the legacy `k the value`, as `ENV` and `LABEL` read.
fn key_values(rest: &str, what: &str) -> Result<Vec<(String, String)>, ArchiveError> {
    let words = split_words(rest);
    let Some(first) = words.first() else {
        return Err(ArchiveError::InvalidChange(format!(
            "{what} requires at least one argument"
        )));
    };
    if !first.contains('=') {
        // Legacy form: the first word is the key, the rest the value.
        let value = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .map(|(_, v)| v.trim())
            .unwrap_or_default();
        if value.is_empty() {
            return Err(ArchiveError::InvalidChange(format!(
                "{what} must have two arguments"
            )));
        }
        return Ok(vec![(first.clone(), split_words(value).join(" "))]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(ArchiveError::InvalidChange(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))),
        })
        .collect()
}

/// `/a/./b/../c` → `/a/c`.
fn resolve_absolute(path: &str) -> String {
    let resolved = resolve_relative("", path);
    format!("/{resolved}").replace("/../", "/")
}

/// `80`, `80/udp`, `8000-8002/tcp` as `ExposedPorts` keys.
fn expand_ports(word: &str) -> Result<Vec<String>, ArchiveError> {
    let bad = || ArchiveError::InvalidChange(format!("invalid containerPort: {word}"));
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_owned()),
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let start: u16 = start.parse().map_err(|_| bad())?;
    let end: u16 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(changes: &[&str]) -> Result<Value, ArchiveError> {
        let mut config = Map::new();
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        apply_changes(&mut config, &changes).map(|()| Value::Object(config))
    }

    #[test]
    fn cmd_and_entrypoint_take_json_arrays_as_exec_form_and_text_as_shell_form() {
        let c = changed(&[r#"CMD ["sh", "-c", "echo hi"]"#, "ENTRYPOINT /init --x"]).unwrap();
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --x"]));
        let c = changed(&["ENTRYPOINT [\"/init\"]"]).unwrap();
        assert_eq!(c["Cmd"], Value::Null);
    }

    #[test]
    fn env_and_label_accept_pairs_with_quotes_and_the_legacy_form() {
        let c = changed(&[
            r#"ENV A=1 B="two words""#,
            "ENV C the rest of it",
            "ENV A=3",
            r#"LABEL org.x="y z" k=v"#,
        ])
        .unwrap();
        assert_eq!(c["Env"], json!(["A=3", "B=two words", "C=the rest of it"]));
        assert_eq!(c["Labels"], json!({ "org.x": "y z", "k": "v" }));
    }

    #[test]
    fn workdir_user_expose_and_volume_set_their_fields() {
        let c = changed(&[
            "WORKDIR /app",
            "WORKDIR sub/../data",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8001",
            r#"VOLUME ["/v1"]"#,
            "VOLUME /v2 /v3",
        ])
        .unwrap();
        assert_eq!(c["WorkingDir"], json!("/app/data"));
        assert_eq!(c["User"], json!("1000:1000"));
        assert_eq!(
            c["ExposedPorts"],
            json!({ "80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {} })
        );
        assert_eq!(c["Volumes"], json!({ "/v1": {}, "/v2": {}, "/v3": {} }));
    }

    #[test]
    fn an_instruction_that_is_not_a_change_command_is_refused_with_dockers_message() {
        let err = changed(&["RUN echo hi"]).unwrap_err();
        assert_eq!(err.to_string(), "run is not a valid change command");
        assert!(err.is_client_error());
        assert!(changed(&["EXPOSE eighty"]).is_err());
    }

    #[test]
    fn member_names_are_cleaned_and_symlinks_resolved_inside_the_archive() {
        assert_eq!(clean_name("./a//b/"), "a/b");
        assert_eq!(resolve_relative("abc", "../def/layer.tar"), "def/layer.tar");
        assert_eq!(resolve_relative("", "../../etc/passwd"), "../../etc/passwd");
    }
}
