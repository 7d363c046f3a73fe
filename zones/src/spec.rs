//! [`ZoneSpec`]: what a zone runs, in terms no driver owns.
//!
//! It is the driver-neutral result of merging a container with its image and
//! package ([`crate::docker::zone_spec`]); the linux driver writes it next to
//! the zone so that it knows everything again after a daemon restart, the
//! SmartOS driver turns it into a `vmadm` payload. Paths in it are host paths
//! of the node that runs the zone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a driver needs to create and run one zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZoneSpec {
    /// The zone id: a UUID (see [`crate::docker::zone_id`]).
    pub id: String,
    /// The hostname inside.
    pub hostname: String,
    /// The DNS domain inside (may be empty).
    pub domainname: String,
    /// The init process.
    pub process: ProcessSpec,
    /// The image the root file system is made from.
    pub image: ImageLayers,
    /// Memory limit in bytes (0: none).
    pub memory_bytes: u64,
    /// CPU shares, the relative weight (0: the default).
    pub cpu_shares: u64,
    /// Host directories or files mounted into the zone.
    pub mounts: Vec<BindMount>,
    /// Name servers (empty: the host's).
    pub dns: Vec<String>,
    /// DNS search domains (empty: the host's).
    pub dns_search: Vec<String>,
    /// Extra `/etc/hosts` entries as `(host, ip)`.
    pub extra_hosts: Vec<(String, String)>,
    /// Identity of the zone for whoever lists zones (container name, account).
    pub labels: BTreeMap<String, String>,
    /// Where the zone's stdout and stderr go.
    pub log: LogSpec,
    /// The signal `stop` sends first, as Docker spells it (`SIGTERM`).
    pub stop_signal: String,
    /// What Docker says of the container, for platforms that set a zone up
    /// from Docker's own terms (SmartOS: `dockerinit` reads `docker:*`
    /// metadata). The linux driver runs [`ZoneSpec::process`] and ignores it.
    pub docker: DockerConfig,
    /// The package that sizes the zone, when one was chosen.
    pub package: Option<PackageSizing>,
    /// Network interfaces allocated to the zone (empty: the driver's
    /// default).
    pub nics: Vec<NicSpec>,
}

/// The container as Docker describes it, after the image's defaults are
/// applied (as `docker inspect` shows `Config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerConfig {
    /// The 64-hex Docker id.
    pub id: String,
    /// The container's name, without `/`.
    pub name: String,
    /// The image as the user named it (`busybox`, `repo@sha256:…`).
    pub image_name: String,
    /// The image's `os` (`linux`; `smartos` for a SmartOS-native image).
    pub image_os: String,
    /// `Config.Cmd`.
    pub cmd: Vec<String>,
    /// `Config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Config.Env`: the container's variables, then the image's not
    /// overridden.
    pub env: Vec<String>,
    /// `Config.WorkingDir` (empty: unset).
    pub workdir: String,
    /// `Config.User` (empty: unset).
    pub user: String,
    /// `Config.Tty`.
    pub tty: bool,
    /// `Config.AttachStdin`.
    pub attach_stdin: bool,
    /// `Config.AttachStdout`.
    pub attach_stdout: bool,
    /// `Config.AttachStderr`.
    pub attach_stderr: bool,
    /// `Config.OpenStdin`.
    pub open_stdin: bool,
    /// The restart policy as Docker's CLI spells it: `no`, `always`,
    /// `unless-stopped`, `on-failure` or `on-failure:N`.
    pub restart_policy: String,
    /// The log driver (`json-file` when none was given).
    pub log_driver: String,
    /// The log driver's options (`--log-opt`).
    pub log_options: BTreeMap<String, String>,
    /// The image's labels, then the container's (which win).
    pub labels: BTreeMap<String, String>,
    /// Exposed ports (`80/tcp`), the image's and the container's.
    pub exposed_ports: Vec<String>,
    /// Published ports as `(container port with protocol, host port)`;
    /// an empty host port means any.
    pub port_bindings: Vec<(String, String)>,
    /// `-P`: publish every exposed port.
    pub publish_all_ports: bool,
}

/// A package's sizing of a zone, in the package's units.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageSizing {
    /// The package's name.
    pub name: String,
    /// The package's UUID.
    pub uuid: String,
    /// Memory cap, MiB.
    pub memory_mib: u64,
    /// Swap cap, MiB.
    pub swap_mib: u64,
    /// Disk quota, MiB.
    pub disk_mib: u64,
    /// CPU cap, percent of one CPU (0: none).
    pub cpu_cap: u64,
    /// Fair-share scheduler shares.
    pub cpu_shares: u64,
    /// Lightweight-process (thread) limit.
    pub max_lwps: u64,
    /// ZFS I/O priority.
    pub zfs_io_priority: u64,
}

/// One network interface of a zone, as the network controller allocated it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NicSpec {
    /// The physical network (nic tag) it is on: `external`, `admin`, a
    /// fabric's tag.
    pub nic_tag: String,
    /// Its address, or `dhcp`.
    pub ip: String,
    /// Its netmask (dotted quad; empty with `dhcp`).
    pub netmask: String,
    /// Its gateway (empty: none).
    pub gateway: String,
    /// VLAN id (0: untagged).
    pub vlan_id: u16,
    /// Whether the default route goes through it.
    pub primary: bool,
}

/// The init process of a zone, fully merged (no image defaults left to apply).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSpec {
    /// Program and arguments; never empty.
    pub args: Vec<String>,
    /// `KEY=value` pairs, in order.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// `user[:group]`, each a name or a number (empty: root); names are
    /// resolved in the zone's own `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open for attach.
    pub open_stdin: bool,
}

/// The image of a zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageLayers {
    /// The image id (`sha256:…`, or a SmartOS image UUID).
    pub id: String,
    /// Linux: the unpacked layers, top first, as
    /// `ImageStore::lower_dirs` gives them (overlay's `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
}

/// A host path mounted into the zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BindMount {
    /// The host path.
    pub source: PathBuf,
    /// The absolute path inside the zone.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// How the zone's output is kept; paths are the driver's to choose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSpec {
    /// `json-file` (kept by the node), `none`, or another Docker driver name.
    pub driver: String,
    /// Rotate when the file reaches this many bytes (`None`: never).
    pub max_size: Option<u64>,
    /// Keep this many files, the current one included.
    pub max_files: u32,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            driver: "json-file".to_string(),
            max_size: None,
            max_files: 1,
        }
    }
}

impl LogSpec {
    /// Whether output is kept at all (`--log-driver none` keeps nothing).
    pub fn keeps_output(&self) -> bool {
        self.driver != "none"
    }
}
