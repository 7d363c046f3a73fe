//! Node: a compute node and its capacity, registered by its agent under a
//! lease so it disappears when the agent stops renewing.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Condition, resource};

resource!(
    /// A compute node.
    Node,
    NodeSpec,
    NodeStatus
);

/// What the node is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSpec {
    /// The compute node UUID (SmartOS) or machine id (Linux).
    pub uuid: String,
    /// Hostname.
    pub hostname: String,
    /// The datacenter name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    /// `linux` or `smartos`.
    pub driver: String,
    /// Where the node's streaming endpoint listens (`host:port`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// The bearer token the streaming endpoint asks for: made at random
    /// by the node each time it starts. Whoever reads Nodes from the store
    /// may reach every zone on the node; the store is the trust boundary.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub streams_token: String,
    /// Memory for containers, bytes.
    pub memory_bytes: i64,
    /// CPUs.
    pub cpus: i64,
    /// Disk for containers, bytes.
    pub disk_bytes: i64,
    /// Placement skips the node.
    pub unschedulable: bool,
}

/// What is allocated on the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    /// Memory promised to placed containers, bytes.
    pub allocated_memory_bytes: i64,
    /// Containers placed here.
    pub containers: i64,
    /// Last heartbeat.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<OffsetDateTime>,
    /// Observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
