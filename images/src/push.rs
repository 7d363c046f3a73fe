//! `docker push`: send an image's layers, config and manifest to its
//! repository's registry, reporting progress as Docker's JSONMessage stream
//! does, and record the manifest digest on the [`Image`] object.
//!
//! The layers pushed are the very blobs they were unpacked from (recorded by
//! pull, load and import with [`ImageStore::set_layer_source`]), so an image
//! pulled from one registry and pushed to another keeps its layer digests;
//! a layer whose source blob is not known is an error, never recompressed
//! here. The manifest is Docker schema 2, or OCI when any layer blob has an
//! OCI media type, with the image config (stored as the blob named by the
//! image id) as its config.
//!
//! A reference with a tag pushes that tag; one without pushes every tag of
//! the repository, as Docker does for `docker push --all-tags` (the API's
//! `?tag=` left empty). Layers go one after the other; Docker sends up to
//! five at a time.

use bytes::Bytes;
use sdc_docker_store::Api;
use sdc_docker_store::model::Image;
use serde::Serialize;

use crate::lookup::LookupError;
use crate::reference::{Digest, Reference};
use crate::registry::{BlobPush, Client, DOCKER_MANIFEST, OCI_MANIFEST, RegistryError};
use crate::store::{ImageStore, LayerSource};

/// The media type of a Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The media type of an OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One step of a push, in Docker's JSONMessage terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A line without an id: `The push refers to repository [...]`, and
    /// `<tag>: digest: sha256:… size: N` after each tag.
    Status(String),
    /// A layer's status: `Preparing`, `Waiting`, `Pushing` (with bytes),
    /// `Pushed`, `Layer already exists`, `Mounted from <repo>`.
    Layer {
        /// The first 12 hex digits of the layer's DiffID (Docker's id for
        /// a pushed layer).
        id: String,
        /// Docker's status text.
        status: String,
        /// Bytes sent so far, for `Pushing`.
        current: Option<u64>,
        /// Bytes in all, for `Pushing`.
        total: Option<u64>,
    },
    /// The aux message after each tag: `{"Tag","Digest","Size"}`.
    Pushed(PushedTag),
}

/// A tag pushed: what Docker's aux `PushResult` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PushedTag {
    /// The tag.
    pub tag: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushResult {
    /// Every tag pushed, in order.
    pub tags: Vec<PushedTag>,
}

/// Why a push failed. `Display` is Docker's message where it has one.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Nothing in the repository is tagged (Docker's wording).
    #[error("An image does not exist locally with the tag: {0}")]
    NoSuchRepository(String),
    /// The tag asked for names no image (Docker's wording).
    #[error("tag does not exist: {0}")]
    NoSuchTag(String),
    /// A reference with a digest (Docker's wording).
    #[error("cannot push a digest reference")]
    DigestReference,
    /// A layer whose source blob is not in the store.
    #[error(
        "layer {diff_id} of image {image} has no stored blob to push (it was not pulled, loaded or imported here)"
    )]
    MissingLayerSource {
        /// The image id.
        image: String,
        /// The layer's DiffID.
        diff_id: String,
    },
    /// The image's config blob is missing from the store.
    #[error("the config blob of image {0} is not in the image store")]
    MissingConfig(String),
    /// The Image object holds an id or DiffID that is not a digest.
    #[error("image {image}: invalid digest {value}")]
    InvalidDigest {
        /// The image id.
        image: String,
        /// What is not a digest.
        value: String,
    },
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading or writing Image objects failed.
    #[error("recording the push: {0}")]
    Api(#[from] sdc_docker_store::Error),
    /// The manifest could not be encoded.
    #[error("encoding the manifest: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<LookupError> for PushError {
    fn from(error: LookupError) -> PushError {
        match error {
            LookupError::NotFound(name) | LookupError::Ambiguous(name) => {
                PushError::NoSuchTag(name)
            }
            LookupError::Store(e) => PushError::Api(e),
        }
    }
}

/// Pushes `reference` (one tag, or every tag of its repository when it has
/// none) from `store` and `images` with `client`, calling `progress` with
/// every step.
pub async fn push(
    client: &Client,
    store: &ImageStore,
    images: &Api<Image>,
    reference: &Reference,
    mut progress: impl FnMut(PushEvent),
) -> Result<PushResult, PushError> {
    if reference.digest().is_some() {
        return Err(PushError::DigestReference);
    }
    let all = images.list().await?.items;
    let name = reference.name();
    let prefix = format!("{name}:");
    // Every (tag, image) of the repository, in the order of the images.
    let tagged: Vec<(String, &Image)> = all
        .iter()
        .flat_map(|image| {
            image
                .spec
                .repo_tags
                .iter()
                .filter_map(|t| t.strip_prefix(&prefix))
                .map(move |tag| (tag.to_owned(), image))
        })
        .collect();
    if tagged.is_empty() {
        return Err(PushError::NoSuchRepository(reference.familiar_name()));
    }
    let targets: Vec<(String, &Image)> = match reference.tag() {
        Some(tag) => {
            let found = tagged
                .iter()
                .find(|(t, _)| t == tag)
                .ok_or_else(|| PushError::NoSuchTag(reference.familiar()))?;
            vec![found.clone()]
        }
        None => tagged,
    };
    progress(PushEvent::Status(format!(
        "The push refers to repository [{name}]"
    )));
    let mut result = PushResult::default();
    for (tag, image) in targets {
        let target = reference
            .with_tag(&tag)
            .map_err(|_| PushError::NoSuchTag(format!("{}:{tag}", reference.familiar_name())))?;
        let pushed = push_tag(client, store, &target, image, &mut progress).await?;
        record_digest(images, &image.metadata.name, &name, &pushed.digest).await?;
        progress(PushEvent::Status(format!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        )));
        progress(PushEvent::Pushed(pushed.clone()));
        result.tags.push(pushed);
    }
    Ok(result)
}

/// A layer to push: its DiffID and the blob it came from.
struct PushLayer {
    diff_id: Digest,
    source: LayerSource,
}

/// Pushes `image` as `target` (which has a tag).
async fn push_tag(
    client: &Client,
    store: &ImageStore,
    target: &Reference,
    image: &Image,
    progress: &mut impl FnMut(PushEvent),
) -> Result<PushedTag, PushError> {
    let invalid = |value: &str| PushError::InvalidDigest {
        image: image.spec.id.clone(),
        value: value.to_owned(),
    };
    let id = Digest::parse(&image.spec.id).map_err(|_| invalid(&image.spec.id))?;
    let mut layers = Vec::new();
    for diff_id in &image.spec.diff_ids {
        let diff_id = Digest::parse(diff_id).map_err(|_| invalid(diff_id))?;
        let source = store
            .layer_source(&diff_id)
            .ok_or_else(|| PushError::MissingLayerSource {
                image: image.spec.id.clone(),
                diff_id: diff_id.to_string(),
            })?;
        layers.push(PushLayer { diff_id, source });
    }
    let config_path = store.blob_path(&id);
    let config_size = std::fs::metadata(&config_path)
        .ok()
        .filter(|_| store.has_blob(&id))
        .map(|m| m.len())
        .ok_or_else(|| PushError::MissingConfig(image.spec.id.clone()))?;
    let mount_from = mount_source(image, target);

    let short = |d: &Digest| d.hex().chars().take(12).collect::<String>();
    for layer in &layers {
        progress(layer_event(short(&layer.diff_id), "Preparing", None));
    }
    for layer in &layers {
        progress(layer_event(short(&layer.diff_id), "Waiting", None));
    }
    for layer in &layers {
        let id = short(&layer.diff_id);
        let descriptor = descriptor(
            &layer.source.media_type,
            &layer.source.digest,
            layer.source.size,
        );
        let outcome = client
            .push_blob(
                target,
                &descriptor,
                &store.blob_path(&layer.source.digest),
                mount_from.as_deref(),
                |sent, total| progress(layer_event(id.clone(), "Pushing", Some((sent, total)))),
            )
            .await?;
        let status = match outcome {
            BlobPush::Exists => "Layer already exists".to_owned(),
            BlobPush::Mounted(from) => format!("Mounted from {from}"),
            BlobPush::Uploaded => "Pushed".to_owned(),
        };
        tracing::debug!(target = %target, layer = %layer.diff_id, %status, "layer pushed");
        progress(layer_event(id, &status, None));
    }

    let oci = layers
        .iter()
        .any(|l| l.source.media_type.starts_with("application/vnd.oci."));
    let (manifest_type, config_type) = if oci {
        (OCI_MANIFEST, OCI_CONFIG)
    } else {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    };
    let config = descriptor(config_type, &id, config_size);
    client
        .push_blob(target, &config, &config_path, None, |_, _| {})
        .await?;
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: manifest_type,
        config: config.clone(),
        layers: layers
            .iter()
            .map(|l| descriptor(&l.source.media_type, &l.source.digest, l.source.size))
            .collect(),
    };
    let bytes = manifest_bytes(&manifest)?;
    let size = bytes.len() as u64;
    let digest = client.put_manifest(target, manifest_type, bytes).await?;
    Ok(PushedTag {
        tag: target.tag().unwrap_or_default().to_owned(),
        digest,
        size,
    })
}

/// A repository of the target's registry the image was pulled from (or
/// pushed to), to mount layers from instead of uploading them.
fn mount_source(image: &Image, target: &Reference) -> Option<String> {
    image.spec.repo_digests.iter().find_map(|d| {
        let r = Reference::parse_normalized(d).ok()?;
        (r.domain() == target.domain() && r.repository() != target.repository())
            .then(|| r.repository().to_owned())
    })
}

/// Adds `name@digest` to the repo digests of image `object` (retrying when
/// another writer changed it meanwhile).
async fn record_digest(
    images: &Api<Image>,
    object: &str,
    name: &str,
    digest: &Digest,
) -> Result<(), PushError> {
    let entry = format!("{name}@{digest}");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut image = images.get(object).await?;
        if image.spec.repo_digests.contains(&entry) {
            return Ok(());
        }
        image.spec.repo_digests.push(entry.clone());
        match images.replace(&image).await {
            Ok(_) => return Ok(()),
            Err(sdc_docker_store::Error::Conflict { .. }) if attempts < 5 => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A descriptor in Docker's field order (`mediaType`, `size`, `digest`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorOut {
    media_type: String,
    size: u64,
    digest: Digest,
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> crate::registry::Descriptor {
    crate::registry::Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: Vec::new(),
    }
}

/// The manifest pushed, in Docker's field order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut {
    schema_version: u32,
    media_type: &'static str,
    #[serde(serialize_with = "docker_order")]
    config: crate::registry::Descriptor,
    #[serde(serialize_with = "docker_order_all")]
    layers: Vec<crate::registry::Descriptor>,
}

fn to_out(d: &crate::registry::Descriptor) -> DescriptorOut {
    DescriptorOut {
        media_type: d.media_type.clone(),
        size: d.size,
        digest: d.digest.clone(),
    }
}

fn docker_order<S: serde::Serializer>(
    d: &crate::registry::Descriptor,
    s: S,
) -> Result<S::Ok, S::Error> {
    to_out(d).serialize(s)
}

fn docker_order_all<S: serde::Serializer>(
    ds: &[crate::registry::Descriptor],
    s: S,
) -> Result<S::Ok, S::Error> {
    ds.iter().map(to_out).collect::<Vec<_>>().serialize(s)
}

/// The manifest as Docker writes it: indented by three spaces.
fn manifest_bytes(manifest: &ManifestOut) -> Result<Bytes, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    manifest.serialize(&mut serializer)?;
    Ok(Bytes::from(out))
}

fn layer_event(id: String, status: &str, bytes: Option<(u64, u64)>) -> PushEvent {
    PushEvent::Layer {
        id,
        status: status.to_owned(),
        current: bytes.map(|b| b.0),
        total: bytes.map(|b| b.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_written_in_dockers_layout_with_three_space_indents() {
        let digest =
            |c: char| Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        let manifest = ManifestOut {
            schema_version: 2,
            media_type: DOCKER_MANIFEST,
            config: descriptor(DOCKER_CONFIG, &digest('a'), 12),
            layers: vec![descriptor(
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                &digest('b'),
                34,
            )],
        };
        let text = String::from_utf8(manifest_bytes(&manifest).unwrap().to_vec()).unwrap();
        let expected = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\n      \"mediaType\": \"{DOCKER_CONFIG}\",\n      \"size\": 12,\n      \"digest\": \"sha256:{}\"\n   }},\n   \"layers\": [\n      {{\n         \"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\",\n         \"size\": 34,\n         \"digest\": \"sha256:{}\"\n      }}\n   ]\n}}",
            "a".repeat(64),
            "b".repeat(64)
        );
        assert_eq!(text, expected);
    }
}
