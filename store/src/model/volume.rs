//! Volume: a named data volume (`docker volume create`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Condition, resource};

resource!(
    /// A named volume.
    Volume,
    VolumeSpec,
    VolumeStatus
);

/// The desired volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeSpec {
    /// `local`, or `tritonnfs` for shared NFS volumes.
    pub driver: String,
    /// Size in MiB (0: the driver's default).
    pub size_mib: i64,
    /// The network a shared volume is reachable on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Docker labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Where the volume lives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeStatus {
    /// `creating`, `ready`, `failed`, …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Host path or NFS path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mountpoint: String,
    /// The node that holds it (local volumes).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
