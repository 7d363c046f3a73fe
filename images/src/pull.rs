//! `docker pull`: resolve a reference on its registry, store the config and
//! every layer not yet unpacked in the [`ImageStore`], then record the
//! [`Image`] object in the spec store, reporting progress as Docker's
//! JSONMessage stream does.
//!
//! The Image object is written last, so a pull that fails (registry gone,
//! corrupt blob, wrong DiffID) leaves none; layers completed before the
//! failure stay, as Docker's do, and make the next attempt shorter. Layers
//! are fetched one after the other; Docker fetches three at a time.

use futures::StreamExt;
use sdc_docker_store::model::{Image, ImageSpec};
use sdc_docker_store::{Api, Resource};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::layer::Compression;
use crate::reference::{Digest, Reference};
use crate::registry::{Client, ImageConfig, Platform, RegistryError};
use crate::store::{ImageStore, LayerSource, StoreError};

/// One step of a pull, in Docker's JSONMessage terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// `Pulling from REPO` (id = tag).
    PullingFrom {
        /// The repository, familiar (`library/busybox`).
        repo: String,
        /// The tag, or the digest when pulled by digest.
        tag: String,
    },
    /// A layer's status: `Pulling fs layer`, `Already exists`,
    /// `Downloading` (with bytes), `Download complete`, `Extracting`,
    /// `Pull complete`.
    Layer {
        /// The first 12 hex digits of the layer's (blob) digest.
        id: String,
        /// Docker's status text.
        status: String,
        /// Bytes so far, for `Downloading`.
        current: Option<u64>,
        /// Bytes in all, for `Downloading`.
        total: Option<u64>,
    },
    /// `Digest: sha256:…` of the manifest the reference resolved to.
    Digest(Digest),
    /// The final `Status: …` line.
    Status(String),
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Talking to the registry failed, or it served bad content.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storing a blob or unpacking a layer failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the Image object failed.
    #[error("recording the image: {0}")]
    Api(#[from] sdc_docker_store::Error),
    /// The image config is not JSON of the expected shape.
    #[error("invalid image config: {0}")]
    InvalidConfig(#[from] serde_json::Error),
    /// The manifest's layers and the config's DiffIDs do not pair up.
    #[error("the manifest has {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// DiffIDs in the config.
        diff_ids: usize,
    },
}

/// Pulls `reference` for `platform` into `store` and records it in
/// `images`, calling `progress` with every step. Returns the Image object.
pub async fn pull(
    client: &Client,
    store: &ImageStore,
    images: &Api<Image>,
    reference: &Reference,
    platform: &Platform,
    mut progress: impl FnMut(PullEvent),
) -> Result<Image, PullError> {
    let reference = if reference.digest().is_some() {
        reference.clone()
    } else {
        reference.clone().with_default_tag()
    };
    // Resolved before anything is reported, as Docker does: a pull of an
    // unknown tag fails with no progress shown, so the API can still answer
    // it with an HTTP error instead of an in-stream one.
    let resolved = client.resolve(&reference, platform).await?;
    progress(PullEvent::PullingFrom {
        repo: reference.repository().to_owned(),
        tag: match reference.digest() {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or_default().to_owned(),
        },
    });
    let manifest = &resolved.manifest;
    let config_bytes = client
        .fetch_blob_bytes(&reference, &manifest.config)
        .await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let short = |d: &Digest| d.hex().chars().take(12).collect::<String>();
    let mut missing = Vec::new();
    for (descriptor, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let status = if store.has_layer(diff_id) {
            "Already exists"
        } else {
            missing.push((descriptor, diff_id));
            "Pulling fs layer"
        };
        progress(layer_event(short(&descriptor.digest), status, None));
    }
    for (descriptor, diff_id) in &missing {
        let id = short(&descriptor.digest);
        if !store.has_blob(&descriptor.digest) {
            let mut stream = client.fetch_blob(&reference, descriptor).await?;
            let mut writer = store.blob_writer(&descriptor.digest).await?;
            let mut received = 0u64;
            // The stream's last item is an error when the blob is short,
            // long or corrupt: the writer is dropped (temp file removed).
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                received += chunk.len() as u64;
                writer.write(&chunk).await?;
                progress(layer_event(
                    id.clone(),
                    "Downloading",
                    Some((received, descriptor.size)),
                ));
            }
            progress(layer_event(id.clone(), "Verifying Checksum", None));
            writer.commit().await?;
            progress(layer_event(id.clone(), "Download complete", None));
        }
        progress(layer_event(id.clone(), "Extracting", None));
        store
            .unpack_layer(
                &descriptor.digest,
                Compression::from_media_type(&descriptor.media_type),
                diff_id,
            )
            .await?;
        store.set_layer_source(
            diff_id,
            &LayerSource {
                digest: descriptor.digest.clone(),
                media_type: descriptor.media_type.clone(),
                size: descriptor.size,
            },
        )?;
        progress(layer_event(id, "Pull complete", None));
    }
    if !store.has_blob(&manifest.config.digest) {
        store
            .put_blob(&manifest.config.digest, &config_bytes)
            .await?;
    }
    progress(PullEvent::Digest(resolved.reference_digest.clone()));

    let spec = image_spec(
        store,
        &reference,
        &resolved.reference_digest,
        &manifest.config.digest,
        &config,
        &config_bytes,
    )?;
    let (image, tag_added) = record(images, spec).await?;
    let familiar = reference.familiar();
    progress(PullEvent::Status(if missing.is_empty() && !tag_added {
        format!("Image is up to date for {familiar}")
    } else {
        format!("Downloaded newer image for {familiar}")
    }));
    Ok(image)
}

fn layer_event(id: String, status: &str, bytes: Option<(u64, u64)>) -> PullEvent {
    PullEvent::Layer {
        id,
        status: status.to_owned(),
        current: bytes.map(|b| b.0),
        total: bytes.map(|b| b.1),
    }
}

/// The spec of the pulled image, with the one tag and digest of this pull.
fn image_spec(
    store: &ImageStore,
    reference: &Reference,
    manifest_digest: &Digest,
    id: &Digest,
    config: &ImageConfig,
    config_bytes: &[u8],
) -> Result<ImageSpec, PullError> {
    let size = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| store.layer_size(d))
        .sum::<u64>();
    Ok(ImageSpec {
        id: id.to_string(),
        repo_tags: reference
            .tag()
            .map(|_| vec![reference.to_string()])
            .unwrap_or_default(),
        repo_digests: vec![format!("{}@{manifest_digest}", reference.name())],
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        diff_ids: config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.to_string())
            .collect(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        config: serde_json::from_slice(config_bytes)?,
        created: config
            .created
            .as_deref()
            .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok()),
    })
}

/// Creates the Image object of `spec` or adds `spec`'s tags and digests to
/// the one there, then moves those tags off any other image (a tag names one
/// image). Returns the object and whether a tag is new on it. Used by pull,
/// load and import alike.
pub async fn record(images: &Api<Image>, spec: ImageSpec) -> Result<(Image, bool), PullError> {
    let name = spec
        .id
        .strip_prefix("sha256:")
        .unwrap_or(&spec.id)
        .to_owned();
    let mut attempts = 0;
    let (image, tag_added) = loop {
        attempts += 1;
        let result = match images.get(&name).await {
            Ok(mut existing) => {
                let mut added = false;
                for tag in &spec.repo_tags {
                    if !existing.spec.repo_tags.contains(tag) {
                        existing.spec.repo_tags.push(tag.clone());
                        added = true;
                    }
                }
                for digest in &spec.repo_digests {
                    if !existing.spec.repo_digests.contains(digest) {
                        existing.spec.repo_digests.push(digest.clone());
                    }
                }
                images.replace(&existing).await.map(|i| (i, added))
            }
            Err(sdc_docker_store::Error::NotFound { .. }) => images
                .create(&Image::new(&name, spec.clone()))
                .await
                .map(|i| (i, !spec.repo_tags.is_empty())),
            Err(e) => Err(e),
        };
        match result {
            Ok(done) => break done,
            // Another pull changed the object meanwhile: read it again.
            Err(
                sdc_docker_store::Error::Conflict { .. }
                | sdc_docker_store::Error::AlreadyExists { .. },
            ) if attempts < 5 => {}
            Err(e) => return Err(e.into()),
        }
    };
    let tags = &image.spec.repo_tags;
    if !tags.is_empty() {
        for mut other in images.list().await?.items {
            if other.metadata.name != name && other.spec.repo_tags.iter().any(|t| tags.contains(t))
            {
                other.spec.repo_tags.retain(|t| !tags.contains(t));
                images.replace(&other).await?;
            }
        }
    }
    Ok((image, tag_added))
}
