//! Real container images built in memory: gzip'd tar layers, an image
//! config, and a Docker schema2 or OCI manifest, with every digest computed
//! here (sha256 over the exact bytes that are pushed).
//!
//! [`Layer::new`] makes a layer from [`Entry`]s (files, directories,
//! symlinks, OCI whiteouts), [`ImageBuilder`] stacks layers into an
//! [`Image`], and [`ImageIndex`] groups images of several platforms into a
//! Docker manifest list or an OCI index. An image can be pushed with
//! [`crate::Registry::push`], written as an OCI image layout
//! ([`Image::write_oci_layout`]) or as a `docker save` archive
//! ([`Image::docker_archive`]).
//!
//! Everything is deterministic (fixed timestamps, owners and order), so the
//! same inputs always give the same digests; [`Image::random`] takes a seed
//! for the same reason. Layers are held in memory: fine for the ~100 MB of
//! the pull benchmark, not for gigabytes.

use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Media type of a Docker schema2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of a Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of a gzip'd Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip'd OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed OCI layer (Docker manifests use it too:
/// schema2 has no zstd type of its own).
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media type of an uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Media type of an uncompressed Docker layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// How a layer's tar is compressed in its blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip, the default of both formats.
    Gzip,
    /// zstd (one frame).
    Zstd,
    /// The tar as is.
    None,
}

/// The creation time written in every config and history entry, so digests
/// do not change from run to run.
const CREATED: &str = "2024-01-01T00:00:00Z";

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Which family of media types an image's manifest, config and layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Docker schema2 (`application/vnd.docker.…`), what Docker Hub serves
    /// for most images.
    Docker,
    /// OCI image spec 1.0 (`application/vnd.oci.…`).
    Oci,
}

impl Format {
    /// Media type of an image manifest in this format.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST,
            Format::Oci => OCI_MANIFEST,
        }
    }

    /// Media type of a multi-platform index in this format.
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST_LIST,
            Format::Oci => OCI_INDEX,
        }
    }

    /// Media type of an image config in this format.
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_CONFIG,
            Format::Oci => OCI_CONFIG,
        }
    }

    /// Media type of a layer compressed with `compression` in this format.
    pub fn layer_type(self, compression: LayerCompression) -> &'static str {
        match (self, compression) {
            (Format::Docker, LayerCompression::Gzip) => DOCKER_LAYER_GZIP,
            (Format::Oci, LayerCompression::Gzip) => OCI_LAYER_GZIP,
            (_, LayerCompression::Zstd) => OCI_LAYER_ZSTD,
            (Format::Docker, LayerCompression::None) => DOCKER_LAYER_TAR,
            (Format::Oci, LayerCompression::None) => OCI_LAYER_TAR,
        }
    }
}

/// Content addressed by its digest: what a registry stores.
#[derive(Clone, Debug)]
pub struct Blob {
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// The exact bytes pushed and served.
    pub bytes: Bytes,
}

impl Blob {
    /// A blob of `bytes`, its digest computed.
    pub fn new(bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The hex part of the digest (after `sha256:`).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// An OCI/Docker content descriptor of this blob.
    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "size": self.size(), "digest": self.digest })
    }
}

/// One entry of a layer's tar, by path relative to the root (`etc/motd`).
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory with a mode (`0o755`).
    Dir {
        /// Path in the image.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path in the image.
        path: String,
        /// The file's bytes.
        contents: Bytes,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Path of the link in the image.
        path: String,
        /// What the link points to, as written (relative or absolute).
        target: String,
    },
    /// An OCI whiteout: deletes `path` from the layers below (written as an
    /// empty file `.wh.<name>` next to it).
    Whiteout {
        /// Path of the deleted file or directory.
        path: String,
    },
    /// An opaque directory: hides everything the layers below have under
    /// `dir` (written as `dir/.wh..wh..opq`).
    Opaque {
        /// The directory made opaque.
        dir: String,
    },
}

impl Entry {
    /// A directory, mode 0755.
    pub fn dir(path: &str) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }

    /// A regular file, mode 0644.
    pub fn file(path: &str, contents: impl Into<Bytes>) -> Entry {
        Entry::File {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// An executable file, mode 0755.
    pub fn executable(path: &str, contents: impl Into<Bytes>) -> Entry {
        Entry::File {
            path: path.into(),
            contents: contents.into(),
            mode: 0o755,
        }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// A whiteout deleting `path`.
    pub fn whiteout(path: &str) -> Entry {
        Entry::Whiteout { path: path.into() }
    }

    /// A marker making `dir` opaque.
    pub fn opaque(dir: &str) -> Entry {
        Entry::Opaque { dir: dir.into() }
    }
}

/// One layer: a tar (gzip'd unless asked otherwise), with the digests both
/// of what is pushed (`blob.digest`) and of what is unpacked (`diff_id`).
#[derive(Clone, Debug)]
pub struct Layer {
    /// The compressed tar as pushed; its digest is the layer digest of the
    /// manifest.
    pub blob: Blob,
    /// How `blob` is compressed.
    pub compression: LayerCompression,
    /// `sha256:` of the uncompressed tar: the entry in `rootfs.diff_ids`.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// The `created_by` of this layer's history entry.
    pub created_by: String,
}

impl Layer {
    /// A layer holding `entries`, in order, owned by root, mtime 0.
    pub fn new(created_by: &str, entries: &[Entry]) -> Layer {
        Layer::from_tar(created_by, tar_of(entries), Compression::default())
    }

    /// A layer from an uncompressed tar, gzip'd at `level`.
    pub fn from_tar(created_by: &str, tar: Vec<u8>, level: Compression) -> Layer {
        let diff_id = sha256_digest(&tar);
        let mut gz = GzEncoder::new(Vec::with_capacity(tar.len() / 2), level);
        gz.write_all(&tar).expect("gzip into memory");
        let gzip = gz.finish().expect("gzip into memory");
        Layer {
            blob: Blob::new(gzip),
            compression: LayerCompression::Gzip,
            diff_id,
            tar_size: tar.len() as u64,
            created_by: created_by.into(),
        }
    }

    /// The same layer (same tar, same `diff_id`) with its blob compressed
    /// as `compression` says.
    pub fn compressed(&self, compression: LayerCompression) -> Layer {
        let tar = self.tar();
        let bytes = match compression {
            LayerCompression::Gzip => {
                return Layer::from_tar(&self.created_by, tar, Compression::default());
            }
            LayerCompression::Zstd => zstd::encode_all(&tar[..], 3).expect("zstd into memory"),
            LayerCompression::None => tar,
        };
        Layer {
            blob: Blob::new(bytes),
            compression,
            ..self.clone()
        }
    }

    /// The uncompressed tar (decompressed again from the blob).
    pub fn tar(&self) -> Vec<u8> {
        match self.compression {
            LayerCompression::Gzip => {
                let mut tar = Vec::with_capacity(self.tar_size as usize);
                GzDecoder::new(&self.blob.bytes[..])
                    .read_to_end(&mut tar)
                    .expect("gunzip a layer built here");
                tar
            }
            LayerCompression::Zstd => {
                zstd::decode_all(&self.blob.bytes[..]).expect("unzstd a layer built here")
            }
            LayerCompression::None => self.blob.bytes.to_vec(),
        }
    }
}

/// Paths (and link targets) of every entry of a layer's tar, in order:
/// lets a test see which whiteouts a layer carries.
pub fn tar_paths(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .expect("reading a tar")
        .map(|e| {
            let e = e.expect("reading a tar entry");
            let path = e.path().expect("tar entry path").display().to_string();
            match e.link_name().expect("tar link name") {
                Some(target) => format!("{path} -> {}", target.display()),
                None => path,
            }
        })
        .collect()
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let result = match entry {
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(
                    &mut header,
                    format!("{}/", path.trim_end_matches('/')),
                    &[][..],
                )
            }
            Entry::File {
                path,
                contents,
                mode,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(contents.len() as u64);
                builder.append_data(&mut header, path, &contents[..])
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)
            }
            Entry::Whiteout { path } => {
                let (dir, name) = match path.trim_end_matches('/').rsplit_once('/') {
                    Some((dir, name)) => (format!("{dir}/"), name),
                    None => (String::new(), path.as_str()),
                };
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_data(&mut header, format!("{dir}.wh.{name}"), &[][..])
            }
            Entry::Opaque { dir } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                let marker = format!("{}/.wh..wh..opq", dir.trim_end_matches('/'));
                builder.append_data(&mut header, marker, &[][..])
            }
        };
        result.unwrap_or_else(|e| panic!("adding {entry:?} to a tar: {e}"));
    }
    builder.into_inner().expect("finishing a tar in memory")
}

/// Stacks layers into an [`Image`]; defaults: linux/amd64, `Cmd ["sh"]`,
/// the usual `PATH`.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    architecture: String,
    variant: Option<String>,
    cmd: Vec<String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

impl ImageBuilder {
    /// An image with no layers yet, for linux/amd64 running `sh`.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            architecture: "amd64".into(),
            variant: None,
            cmd: vec!["sh".into()],
        }
    }

    /// Add `layer` on top of the layers so far.
    pub fn layer(mut self, layer: Layer) -> ImageBuilder {
        self.layers.push(layer);
        self
    }

    /// The config's `architecture` (GOARCH names: `amd64`, `arm64`) and
    /// `variant` (`v8` for arm64 on Docker Hub).
    pub fn architecture(mut self, architecture: &str, variant: Option<&str>) -> ImageBuilder {
        self.architecture = architecture.into();
        self.variant = variant.map(Into::into);
        self
    }

    /// The config's `Cmd`.
    pub fn cmd(mut self, cmd: &[&str]) -> ImageBuilder {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Write the config and the manifest in `format`.
    pub fn build(self, format: Format) -> Image {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({ "created": CREATED, "created_by": l.created_by }))
            .collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": self.cmd,
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        let config = Blob::new(serde_json::to_vec(&config).expect("serialising a config"));
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| l.blob.descriptor(format.layer_type(l.compression)))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_type(),
            "config": config.descriptor(format.config_type()),
            "layers": layers,
        });
        let manifest = Blob::new(serde_json::to_vec(&manifest).expect("serialising a manifest"));
        Image {
            format,
            architecture: self.architecture,
            variant: self.variant,
            layers: self.layers,
            config,
            manifest,
        }
    }
}

/// A built image: its blobs and everything a test asserts on.
#[derive(Clone, Debug)]
pub struct Image {
    /// Media types of the manifest, config and layers.
    pub format: Format,
    /// The config's architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// The config's variant (`v8`), if any.
    pub variant: Option<String>,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image config; its digest is the image id.
    pub config: Blob,
    /// The manifest exactly as pushed; its digest is the `repo@sha256:…`.
    pub manifest: Blob,
}

impl Image {
    /// The image id as Docker shows it: the config digest, `sha256:<hex>`.
    pub fn id(&self) -> &str {
        &self.config.digest
    }

    /// The manifest digest (what `docker pull` prints as `Digest:`).
    pub fn manifest_digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Media type of the manifest.
    pub fn manifest_type(&self) -> &'static str {
        self.format.manifest_type()
    }

    /// The `rootfs.diff_ids` of the config, bottom layer first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The layer digests of the manifest (of the gzip'd blobs).
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.blob.digest.clone()).collect()
    }

    /// Sum of the gzip'd layer sizes (what a pull downloads, config aside).
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size()).sum()
    }

    /// Sum of the uncompressed tar sizes.
    pub fn unpacked_size(&self) -> u64 {
        self.layers.iter().map(|l| l.tar_size).sum()
    }

    /// The config parsed as JSON.
    pub fn config_json(&self) -> Value {
        serde_json::from_slice(&self.config.bytes).expect("a config built here is JSON")
    }

    /// The blobs a registry needs before the manifest: layers, then config.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers
            .iter()
            .map(|l| &l.blob)
            .chain(std::iter::once(&self.config))
    }

    /// The `platform` of this image in an index.
    fn platform(&self) -> Value {
        let mut platform = json!({ "architecture": self.architecture, "os": "linux" });
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }

    /// An image of `layers` layers of random (incompressible) data, about
    /// `total_bytes` uncompressed in all, each layer one file
    /// `data/layer-<i>.bin`. The same `seed` gives the same image; a new
    /// seed gives blobs a registry or store has never seen.
    ///
    /// Layers are gzip'd at the fastest level: random data does not shrink
    /// anyway (deflate stores it), and this keeps building ~100 MB quick.
    pub fn random(layers: usize, total_bytes: usize, seed: u64) -> Image {
        assert!(layers > 0, "an image needs at least one layer");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let per_layer = total_bytes / layers;
        let mut builder = ImageBuilder::new().cmd(&["/bin/true"]);
        for i in 0..layers {
            let mut data = vec![0u8; per_layer];
            rng.fill_bytes(&mut data);
            let tar = tar_of(&[
                Entry::dir("data"),
                Entry::file(&format!("data/layer-{i}.bin"), data),
            ]);
            let created_by = format!("random layer {i} of {per_layer} bytes, seed {seed}");
            builder = builder.layer(Layer::from_tar(&created_by, tar, Compression::fast()));
        }
        builder.build(Format::Docker)
    }

    /// Write this image as an OCI image layout in `dir` (created if
    /// missing): `oci-layout`, `index.json` naming the manifest `tag`
    /// (`org.opencontainers.image.ref.name`), and `blobs/sha256/<hex>`.
    /// `skopeo inspect oci:DIR:TAG` reads it.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .unwrap_or_else(|e| panic!("creating {}: {e}", blobs.display()));
        for blob in self.blobs().chain(std::iter::once(&self.manifest)) {
            let path = blobs.join(blob.hex());
            std::fs::write(&path, &blob.bytes)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        let mut descriptor = self.manifest.descriptor(self.manifest_type());
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        let index =
            json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor] });
        let files = [
            ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
            ("index.json", index),
        ];
        for (name, value) in files {
            let path = dir.join(name);
            std::fs::write(&path, serde_json::to_vec(&value).expect("serialising JSON"))
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    /// This image as a `docker save` archive (the classic docker-archive
    /// format: `manifest.json`, `<config hex>.json`, `<diff_id hex>/layer.tar`
    /// uncompressed), tagged `repo_tag` (`busybox:latest`), ready for
    /// `docker load` / `POST /images/load`.
    pub fn docker_archive(&self, repo_tag: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_size(bytes.len() as u64);
            builder
                .append_data(&mut header, path, bytes)
                .unwrap_or_else(|e| panic!("adding {path} to a docker archive: {e}"));
        };
        let config_name = format!("{}.json", self.config.hex());
        add(&config_name, &self.config.bytes);
        let mut layer_names = Vec::new();
        for layer in &self.layers {
            let name = format!("{}/layer.tar", layer.diff_id.trim_start_matches("sha256:"));
            add(&name, &layer.tar());
            layer_names.push(name);
        }
        let manifest =
            json!([{ "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names }]);
        add(
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("serialising JSON"),
        );
        builder.into_inner().expect("finishing a tar in memory")
    }
}

/// Images of several platforms under one tag: a Docker manifest list or an
/// OCI index.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    /// Media type family of the index (its images keep their own).
    pub format: Format,
    /// The images, in the order of the index's `manifests`.
    pub images: Vec<Image>,
    /// The index exactly as pushed.
    pub manifest: Blob,
}

impl ImageIndex {
    /// An index of `images`, each entry with its platform (`linux`, its
    /// architecture and variant).
    pub fn new(format: Format, images: Vec<Image>) -> ImageIndex {
        let manifests: Vec<Value> = images
            .iter()
            .map(|image| {
                let mut descriptor = image.manifest.descriptor(image.manifest_type());
                descriptor["platform"] = image.platform();
                descriptor
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": format.index_type(),
            "manifests": manifests,
        });
        let manifest = Blob::new(serde_json::to_vec(&index).expect("serialising an index"));
        ImageIndex {
            format,
            images,
            manifest,
        }
    }

    /// The digest of the index itself (what `docker pull` prints as
    /// `Digest:` for a multi-platform tag).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Media type of the index.
    pub fn media_type(&self) -> &'static str {
        self.format.index_type()
    }

    /// The image for `architecture` (`amd64`, `arm64`).
    ///
    /// # Panics
    /// When the index has none.
    pub fn image(&self, architecture: &str) -> &Image {
        self.images
            .iter()
            .find(|i| i.architecture == architecture)
            .unwrap_or_else(|| panic!("the index has no linux/{architecture} image"))
    }
}

/// One entry of a [`raw_layer`]: names written into the tar header as
/// given, `..` and all, which [`tar::Builder`] refuses to write (hostile
/// layers for safety tests).
#[derive(Clone, Debug)]
pub struct RawEntry {
    name: String,
    link: Option<String>,
    contents: Vec<u8>,
}

impl RawEntry {
    /// A regular file at `name`.
    pub fn file(name: &str, contents: &[u8]) -> RawEntry {
        RawEntry {
            name: name.into(),
            link: None,
            contents: contents.to_vec(),
        }
    }

    /// A symlink at `name` to `target`.
    pub fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            name: name.into(),
            link: Some(target.into()),
            contents: Vec::new(),
        }
    }
}

/// A layer whose tar has `entries` with their names exactly as given.
pub fn raw_layer(created_by: &str, entries: &[RawEntry]) -> Layer {
    let mut tar = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_old();
        let name = entry.name.as_bytes();
        assert!(name.len() < 100, "raw names are short: {}", entry.name);
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match &entry.link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                let target = target.as_bytes();
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
                header.set_size(0);
            }
            None => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(entry.contents.len() as u64);
            }
        }
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(&entry.contents);
        let padding = (512 - entry.contents.len() % 512) % 512;
        tar.extend(std::iter::repeat_n(0u8, padding));
    }
    tar.extend(std::iter::repeat_n(0u8, 1024));
    Layer::from_tar(created_by, tar, Compression::default())
}
