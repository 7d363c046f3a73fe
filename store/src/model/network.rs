//! Network: a fabric network containers attach to (`docker network create`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Condition, resource};

resource!(
    /// A network.
    Network,
    NetworkSpec,
    NetworkStatus
);

/// The desired network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkSpec {
    /// The 64-hex Docker id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `bridge`/`overlay` as Docker names it; a fabric underneath.
    pub driver: String,
    /// CIDR, e.g. `192.168.128.0/22`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    /// Gateway address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Range addresses are allocated from.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    /// The fabric VLAN.
    pub vlan_id: i64,
    /// No route outside.
    pub internal: bool,
    /// Docker labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What the network controller allocated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkStatus {
    /// Addresses in use, by container id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub allocations: BTreeMap<String, String>,
    /// Observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
