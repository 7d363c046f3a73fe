//! The content-addressed image store on this node's disk: blobs by digest
//! under `blobs/sha256/<hex>` and layers unpacked once each under
//! `layers/<diffid-hex>/`, every one alone as an overlayfs lower dir (see
//! [`layer::Mode::OverlayLower`]), so an image's rootfs is the overlay of
//! its layers' dirs and a layer shared by several images is stored once.
//!
//! Nothing appears under a final name before it is complete: a blob is
//! written to a temp file in its own directory, fsynced, and renamed into
//! place only after its sha256 matched; a layer is unpacked into a temp dir
//! renamed into place only after its DiffID matched the config's. Temp names
//! start with `.tmp-`; those a crash left behind are removed by
//! [`ImageStore::open`]. Limits: sha256 digests only; nothing here deletes
//! blobs or layers (no garbage collection yet).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sdc_docker_store::model::Image;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::layer::{self, Compression, LayerError, Mode, Summary};
use crate::reference::Digest;

/// Prefix of every temp file and directory.
const TMP_PREFIX: &str = ".tmp-";

/// Why the image store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("image store: {op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The path it was on.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A digest in an algorithm the store does not keep.
    #[error("image store keeps sha256 digests only, not {0}")]
    UnsupportedDigest(Digest),
    /// The bytes written for a blob hash to another digest.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    BlobDigestMismatch {
        /// The digest the blob was written under.
        expected: Digest,
        /// The digest of the bytes written.
        actual: String,
    },
    /// The unpacked layer's DiffID is not the one the image config names.
    #[error("layer DiffID mismatch: the config says {expected}, the layer is {actual}")]
    DiffIdMismatch {
        /// The config's `rootfs.diff_ids[i]`.
        expected: Digest,
        /// The DiffID of the stream unpacked.
        actual: String,
    },
    /// The layer tarball could not be unpacked.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// A unique temp name in a directory: process id and a counter, so two
/// writers of the same digest never share a temp file.
fn temp_name(hex: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{hex}-{}-{n}", std::process::id())
}

fn sha256_hex(digest: &Digest) -> Result<&str, StoreError> {
    if digest.algorithm() == "sha256" {
        Ok(digest.hex())
    } else {
        Err(StoreError::UnsupportedDigest(digest.clone()))
    }
}

/// The stored blob a layer was unpacked from: its digest, media type
/// (saying how it is compressed) and size, i.e. a manifest's layer
/// descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerSource {
    /// The blob's digest.
    pub digest: Digest,
    /// The manifest media type of the blob
    /// (`application/vnd.docker.image.rootfs.diff.tar.gzip`, …).
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// The image store rooted at one directory (under the data dir).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store at `root`, removing temp files and dirs a
    /// crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, StoreError> {
        let store = ImageStore { root: root.into() };
        for dir in [store.blobs_dir(), store.layers_dir()] {
            std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
            let entries = std::fs::read_dir(&dir).map_err(io_error("listing", &dir))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let path = entry.path();
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Where blob `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Whether blob `digest` is stored, complete and verified.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        digest.algorithm() == "sha256" && self.blob_path(digest).is_file()
    }

    /// The directory of the layer with DiffID `diff_id` (whether or not it
    /// is unpacked yet).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }

    /// Whether the layer with DiffID `diff_id` is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        diff_id.algorithm() == "sha256" && self.layer_dir(diff_id).is_dir()
    }

    /// Bytes of file content in the unpacked layer, as recorded when it was
    /// unpacked (0 when unknown).
    pub fn layer_size(&self, diff_id: &Digest) -> u64 {
        std::fs::read_to_string(self.layer_size_path(diff_id))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn layer_size_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(format!("{}.size", diff_id.hex()))
    }

    fn layer_source_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(format!("{}.source", diff_id.hex()))
    }

    /// Records which stored blob the layer `diff_id` was unpacked from, so
    /// `docker push` and `docker save` can send the same bytes again.
    pub fn set_layer_source(
        &self,
        diff_id: &Digest,
        source: &LayerSource,
    ) -> Result<(), StoreError> {
        let path = self.layer_source_path(diff_id);
        let json = serde_json::to_vec(source).map_err(|e| StoreError::Io {
            op: "encoding",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let temp = self.layers_dir().join(temp_name(diff_id.hex()));
        std::fs::write(&temp, json).map_err(io_error("writing", &temp))?;
        std::fs::rename(&temp, &path).map_err(io_error("renaming into place", &path))
    }

    /// The blob the layer `diff_id` was unpacked from, when it is known
    /// and still stored.
    pub fn layer_source(&self, diff_id: &Digest) -> Option<LayerSource> {
        let json = std::fs::read(self.layer_source_path(diff_id)).ok()?;
        let source: LayerSource = serde_json::from_slice(&json).ok()?;
        self.has_blob(&source.digest).then_some(source)
    }

    /// Removes the unpacked layer `diff_id` with its records and the blob it
    /// came from. The dir is first renamed to a temp name, so a crash midway
    /// leaves only what [`ImageStore::open`] cleans. Returns whether there
    /// was a layer. The caller makes sure no image still uses it.
    pub async fn remove_layer(&self, diff_id: &Digest) -> Result<bool, StoreError> {
        let hex = sha256_hex(diff_id)?.to_owned();
        let dir = self.layer_dir(diff_id);
        let source = std::fs::read(self.layer_source_path(diff_id))
            .ok()
            .and_then(|json| serde_json::from_slice::<LayerSource>(&json).ok());
        let doomed = self.layers_dir().join(temp_name(&hex));
        let existed = match std::fs::rename(&dir, &doomed) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("renaming for removal", &dir)(e)),
        };
        for path in [
            self.layer_size_path(diff_id),
            self.layer_source_path(diff_id),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &path)(e)),
            }
        }
        if let Some(source) = source {
            self.remove_blob(&source.digest)?;
        }
        if existed {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&doomed))
                .await
                .map_err(|e| StoreError::Io {
                    op: "removing",
                    path: dir.clone(),
                    source: io::Error::other(e.to_string()),
                })?
                .map_err(io_error("removing", &dir))?;
        }
        Ok(existed)
    }

    /// Removes blob `digest` if it is stored.
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &path)(e)),
        }
    }

    /// The layer dirs of `image`, top layer first, as overlayfs's
    /// `lowerdir=` wants them. Diff ids that do not parse are skipped.
    pub fn lower_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image
            .spec
            .diff_ids
            .iter()
            .rev()
            .filter_map(|d| Digest::parse(d).ok())
            .map(|d| self.layer_dir(&d))
            .collect()
    }

    /// Starts writing blob `digest`; see [`BlobWriter`].
    pub async fn blob_writer(&self, digest: &Digest) -> Result<BlobWriter, StoreError> {
        let hex = sha256_hex(digest)?;
        let temp = self.blobs_dir().join(temp_name(hex));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io_error("creating", &temp))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            temp: Some(temp),
            blobs_dir: self.blobs_dir(),
            digest: Some(digest.clone()),
            written: 0,
        })
    }

    /// Starts writing a blob whose digest is not known yet (an upload, a
    /// `docker load`); [`BlobWriter::commit`] names it by its sha256.
    pub async fn new_blob(&self) -> Result<BlobWriter, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = self.blobs_dir().join(temp_name(&format!("new{n}")));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io_error("creating", &temp))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            temp: Some(temp),
            blobs_dir: self.blobs_dir(),
            digest: None,
            written: 0,
        })
    }

    /// Stores `bytes` as blob `digest` (verified like any blob).
    pub async fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let mut writer = self.blob_writer(digest).await?;
        writer.write(bytes).await?;
        writer.commit().await.map(drop)
    }

    /// Unpacks the stored blob `blob` (a layer tarball) as the layer with
    /// DiffID `diff_id`: into a temp dir, renamed to [`Self::layer_dir`]
    /// once the DiffID matched. On any error the temp dir is removed. When
    /// the layer is unpacked already (another pull won the race), the
    /// existing one is kept and `None` is returned.
    pub async fn unpack_layer(
        &self,
        blob: &Digest,
        compression: Option<Compression>,
        diff_id: &Digest,
    ) -> Result<Option<Summary>, StoreError> {
        let hex = sha256_hex(diff_id)?.to_owned();
        let blob_path = self.blob_path(blob);
        let temp = self.layers_dir().join(temp_name(&hex));
        let final_dir = self.layer_dir(diff_id);
        let size_path = self.layer_size_path(diff_id);
        let expected = diff_id.clone();
        tokio::task::spawn_blocking(move || {
            let result = unpack_into(
                &blob_path,
                &temp,
                compression,
                &expected,
                &size_path,
                &final_dir,
            );
            if !matches!(result, Ok(Some(_))) {
                let _ = std::fs::remove_dir_all(&temp);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "unpacking",
            path: self.layer_dir(diff_id),
            source: io::Error::other(e.to_string()),
        })?
    }
}

/// The blocking part of [`ImageStore::unpack_layer`].
fn unpack_into(
    blob_path: &Path,
    temp: &Path,
    compression: Option<Compression>,
    expected: &Digest,
    size_path: &Path,
    final_dir: &Path,
) -> Result<Option<Summary>, StoreError> {
    let blob = std::fs::File::open(blob_path).map_err(io_error("opening", blob_path))?;
    std::fs::create_dir(temp).map_err(io_error("creating", temp))?;
    let summary = layer::unpack(blob, temp, Mode::OverlayLower, compression)?;
    if summary.diff_id != expected.as_str() {
        return Err(StoreError::DiffIdMismatch {
            expected: expected.clone(),
            actual: summary.diff_id,
        });
    }
    // The size is written first: a layer dir under its final name always
    // has its size beside it.
    std::fs::write(size_path, summary.file_bytes.to_string())
        .map_err(io_error("writing", size_path))?;
    match std::fs::rename(temp, final_dir) {
        Ok(()) => Ok(Some(summary)),
        Err(_) if final_dir.is_dir() => Ok(None),
        Err(e) => Err(io_error("renaming into place", final_dir)(e)),
    }
}

/// A blob being written: bytes go to a temp file in the blobs dir and are
/// hashed; [`BlobWriter::commit`] fsyncs and renames it into place only
/// when the hash is the digest expected (or, for [`ImageStore::new_blob`],
/// under the digest it has). Dropped without a commit, the temp file is
/// removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: tokio::fs::File,
    hasher: Sha256,
    /// `None` once committed.
    temp: Option<PathBuf>,
    blobs_dir: PathBuf,
    /// The digest the bytes must have, when known in advance.
    digest: Option<Digest>,
    written: u64,
}

impl BlobWriter {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        let blobs_dir = &self.blobs_dir;
        self.file
            .write_all(bytes)
            .await
            .map_err(io_error("writing", blobs_dir))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies, fsyncs and renames the blob into place; returns its digest.
    pub async fn commit(mut self) -> Result<Digest, StoreError> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let digest = match &self.digest {
            Some(expected) if actual != expected.hex() => {
                return Err(StoreError::BlobDigestMismatch {
                    expected: expected.clone(),
                    actual: format!("sha256:{actual}"),
                });
            }
            Some(expected) => expected.clone(),
            None => Digest::parse(&format!("sha256:{actual}")).map_err(|e| StoreError::Io {
                op: "naming",
                path: self.blobs_dir.clone(),
                source: io::Error::other(e.to_string()),
            })?,
        };
        let path = self.blobs_dir.join(digest.hex());
        self.file
            .sync_all()
            .await
            .map_err(io_error("syncing", &path))?;
        let temp = self.temp.clone().unwrap_or_default();
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(io_error("renaming into place", &path))?;
        self.temp = None;
        Ok(digest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}
