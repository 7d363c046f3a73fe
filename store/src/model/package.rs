//! Package: a size class. `docker run -m` picks the smallest package whose
//! memory is large enough (the seeds' "SDC packages").

use serde::{Deserialize, Serialize};

use super::{Condition, resource};

resource!(
    /// A package.
    Package,
    PackageSpec,
    PackageStatus
);

/// The sizes of a package.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PackageSpec {
    /// The package UUID (`com.joyent.package` accepts it, or its first 8).
    pub uuid: String,
    /// Memory, MiB (`max_physical_memory`).
    pub memory_mib: i64,
    /// Swap, MiB.
    pub swap_mib: i64,
    /// Disk quota, MiB.
    pub disk_mib: i64,
    /// CPU cap, percent of one CPU (0: none).
    pub cpu_cap: i64,
    /// CPU shares.
    pub cpu_shares: i64,
    /// Max lightweight processes.
    pub max_lwps: i64,
    /// ZFS I/O priority.
    pub zfs_io_priority: i64,
    /// Offered to users (inactive packages are kept for existing containers).
    pub active: bool,
}

/// Observations on a package.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PackageStatus {
    /// Observations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
