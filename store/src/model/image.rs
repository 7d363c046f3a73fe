//! Image: a pulled image, shared by every instance through the store.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Condition, resource};

resource!(
    /// A pulled or loaded image. Its name is the image id without `sha256:`.
    Image,
    ImageSpec,
    ImageStatus
);

/// What the image is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageSpec {
    /// The image id: the digest of its config (`sha256:…`).
    pub id: String,
    /// Normalised tags (`docker.io/library/busybox:latest`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repo_tags: Vec<String>,
    /// Manifest digests per repository (`docker.io/library/busybox@sha256:…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// `linux`, or `smartos` for SmartOS images.
    pub os: String,
    /// `amd64`, …
    pub architecture: String,
    /// Uncompressed layer digests, bottom first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff_ids: Vec<String>,
    /// Total size in bytes.
    pub size: i64,
    /// The image config (Docker's `Config` object), kept as JSON.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub config: serde_json::Value,
    /// When the image was built.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<OffsetDateTime>,
}

/// Where the image's layers are unpacked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageStatus {
    /// Nodes that hold the unpacked layers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
