//! Node registration: the agent on a compute node keeps that machine's
//! [`Node`] object in the store, under a lease, for as long as it runs.
//!
//! [`NodeInfo::probe`] reads what the node is — a UUID kept in a file the
//! caller names (generated once, so it is stable per data dir), the
//! hostname, memory from `/proc/meminfo`, CPUs from `/proc/cpuinfo`, and
//! the size of the data dir's filesystem from `statvfs` — through small
//! parse functions over text that are unit-tested on their own.
//! [`register_node`] writes the `Node` attached to a fresh lease and starts
//! a task that renews the lease every third of its TTL, writes
//! `status.heartbeat` every [`NodeAgentOptions::heartbeat`], and checks at
//! each renewal that the object is still there and still on its lease:
//! when an operator deleted it, or the lease ended while the store was
//! unreachable, it is created again (on a new lease when the old one is
//! gone). [`NodeAgent::stop`] revokes the lease, which deletes the object
//! at once; a node that simply dies disappears when its TTL runs out.
//!
//! Limits: the object's name is the hostname unless the caller picks
//! another; a name held by a node with another UUID is refused
//! ([`NodeError::NameTaken`]) rather than fought over. The agent owns the
//! capacity fields of the spec and rewrites them when they change, but
//! never `unschedulable`, which is the operator's; it remembers the last
//! value it saw, so a node re-created after a lease loss stays cordoned.
//! All of the node's memory counts as capacity (no reserve is held back for
//! the host itself yet).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sdc_docker_store::model::{Node, NodeSpec};
use sdc_docker_store::{
    Api, Decoded, Error as StoreError, LeaseId, Resource, Store, encode, new_uid,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The driver name of a Linux node.
pub const LINUX_DRIVER: &str = "linux";

/// Why a node could not be probed or registered.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file describing the machine (`/proc/meminfo`, the UUID file) could
    /// not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file describing the machine did not say what we need (no
    /// `MemTotal:` line, a UUID file holding something else).
    #[error("{what}: {message}")]
    Parse {
        /// What was being read.
        what: String,
        /// What was wrong with it.
        message: String,
    },
    /// The Node's name is held by another node (another UUID): two machines
    /// with one hostname need distinct names.
    #[error("node name {name:?} is held by node {uuid}; give this node another name")]
    NameTaken {
        /// The contested name.
        name: String,
        /// The UUID of the node that holds it.
        uuid: String,
    },
    /// The value stored under the Node's key does not decode, and it is not
    /// on our lease, so we leave it to the operator.
    #[error("node {name:?} holds a malformed value not written by this agent: {message}")]
    Malformed {
        /// The node name.
        name: String,
        /// The decoder's message.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a node is: the spec its agent registers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The Node object's name (the hostname unless chosen otherwise).
    pub name: String,
    /// Stable node UUID.
    pub uuid: String,
    /// Hostname.
    pub hostname: String,
    /// The datacenter name (may be empty).
    pub datacenter: String,
    /// The zone driver (`linux`).
    pub driver: String,
    /// Where the node's streaming endpoint listens (may be empty).
    pub address: String,
    /// The token its streaming endpoint asks for (may be empty).
    pub streams_token: String,
    /// Memory for containers, bytes.
    pub memory_bytes: i64,
    /// CPUs.
    pub cpus: i64,
    /// Disk for containers (the data dir's filesystem), bytes.
    pub disk_bytes: i64,
}

impl NodeInfo {
    /// Probe this machine: the UUID kept in `uuid_file` (generated and
    /// written there the first time), the hostname (also the name), memory,
    /// CPUs and the size of the filesystem holding `data_dir`; the driver
    /// is `linux`.
    pub fn probe(data_dir: &Path, uuid_file: &Path) -> Result<NodeInfo, NodeError> {
        let uuid = load_or_create_uuid(uuid_file)?;
        let hostname = read_hostname()?;
        let meminfo = read("/proc/meminfo")?;
        let memory_bytes = parse_meminfo_total(&meminfo)?;
        let cpus = std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| parse_cpuinfo_count(&text))
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i64));
        let disk_bytes = filesystem_size(data_dir)?;
        Ok(NodeInfo {
            name: node_name(&hostname),
            uuid,
            hostname,
            datacenter: String::new(),
            driver: LINUX_DRIVER.to_string(),
            address: String::new(),
            streams_token: String::new(),
            memory_bytes,
            cpus,
            disk_bytes,
        })
    }

    /// The spec registered for this node, with `unschedulable` as given
    /// (it is the operator's field).
    pub fn spec(&self, unschedulable: bool) -> NodeSpec {
        NodeSpec {
            uuid: self.uuid.clone(),
            hostname: self.hostname.clone(),
            datacenter: self.datacenter.clone(),
            driver: self.driver.clone(),
            address: self.address.clone(),
            streams_token: self.streams_token.clone(),
            memory_bytes: self.memory_bytes,
            cpus: self.cpus,
            disk_bytes: self.disk_bytes,
            unschedulable,
        }
    }
}

fn read(path: &str) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        path: PathBuf::from(path),
        source,
    })
}

/// The UUID stored in `path`, or a new one written there when the file does
/// not exist (written to a temporary file and renamed, so a crash never
/// leaves half a UUID).
pub fn load_or_create_uuid(path: &Path) -> Result<String, NodeError> {
    let io = |source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_uuid_file(&text).map_err(|message| NodeError::Parse {
            what: path.display().to_string(),
            message,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let uuid = uuid::Uuid::new_v4().to_string();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{uuid}\n")).map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            tracing::info!(path = %path.display(), %uuid, "generated this node's UUID");
            Ok(uuid)
        }
        Err(e) => Err(io(e)),
    }
}

/// The UUID a UUID file holds (surrounding whitespace allowed), in its
/// canonical lower-case hyphenated form.
pub fn parse_uuid_file(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    uuid::Uuid::parse_str(trimmed)
        .map(|u| u.to_string())
        .map_err(|e| format!("not a UUID ({trimmed:?}): {e}"))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(text: &str) -> Result<i64, NodeError> {
    let parse_error = |message: String| NodeError::Parse {
        what: "/proc/meminfo".into(),
        message,
    };
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or_else(|| parse_error("no MemTotal line".into()))?;
    let mut words = line.split_whitespace();
    let value: i64 = words
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| parse_error(format!("MemTotal is not a number: {line:?}")))?;
    let unit = match words.next() {
        None => 1,
        Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
        Some(u) if u.eq_ignore_ascii_case("mb") => 1024 * 1024,
        Some(u) => return Err(parse_error(format!("unknown MemTotal unit {u:?}"))),
    };
    value
        .checked_mul(unit)
        .ok_or_else(|| parse_error(format!("MemTotal too large: {line:?}")))
}

/// How many processors a `/proc/cpuinfo` text lists (0 when it lists none).
pub fn parse_cpuinfo_count(text: &str) -> i64 {
    text.lines()
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|k| k.trim_end() == "processor")
        })
        .count() as i64
}

/// A hostname as `/proc/sys/kernel/hostname` or `/etc/hostname` hold it:
/// the first non-empty line, trimmed.
pub fn parse_hostname(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
}

fn read_hostname() -> Result<String, NodeError> {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(name) = parse_hostname(&text)
        {
            return Ok(name);
        }
    }
    Err(NodeError::Parse {
        what: "hostname".into(),
        message: "neither /proc/sys/kernel/hostname nor /etc/hostname names this machine".into(),
    })
}

/// The Node name for a hostname: lower case, with anything a key segment
/// may not hold replaced by `-`.
pub fn node_name(hostname: &str) -> String {
    let name: String = hostname
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '/' || c.is_control() { '-' } else { c })
        .collect();
    if name.is_empty() {
        "node".to_string()
    } else {
        name
    }
}

/// The total size in bytes of the filesystem holding `path`.
pub fn filesystem_size(path: &Path) -> Result<i64, NodeError> {
    let stat = rustix::fs::statvfs(path).map_err(|e| NodeError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let bytes = u128::from(stat.f_blocks) * u128::from(stat.f_frsize);
    Ok(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// How the agent keeps its registration.
#[derive(Clone, Debug)]
pub struct NodeAgentOptions {
    /// TTL of the lease: how long after the agent stops renewing the Node
    /// disappears.
    pub ttl: Duration,
    /// How often the lease is renewed and the object checked; `None`:
    /// every third of the TTL.
    pub renew: Option<Duration>,
    /// How often `status.heartbeat` is written.
    pub heartbeat: Duration,
}

impl Default for NodeAgentOptions {
    /// A 10 s lease renewed every 3⅓ s, a heartbeat every 30 s (each one is
    /// a store write that every watcher of Nodes sees).
    fn default() -> Self {
        NodeAgentOptions {
            ttl: Duration::from_secs(10),
            renew: None,
            heartbeat: Duration::from_secs(30),
        }
    }
}

/// A running registration. [`NodeAgent::stop`] ends it and removes the
/// Node; dropping the agent does the same in the background.
pub struct NodeAgent {
    name: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl NodeAgent {
    /// The Node object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stop renewing and revoke the lease, which deletes the Node at once.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // Tell the task to stop (it revokes the lease on its way out).
        self.stop.send_replace(true);
    }
}

/// The registration's state, owned by the agent's task.
struct Registration {
    store: Arc<dyn Store>,
    api: Api<Node>,
    info: NodeInfo,
    options: NodeAgentOptions,
    lease: Option<LeaseId>,
    /// The operator's `unschedulable`, as last seen.
    unschedulable: bool,
    last_heartbeat: Option<Instant>,
}

/// Register `info` as a Node in the default account under a lease of
/// `options.ttl`, and keep it registered until the returned agent is
/// stopped. Fails when the first registration fails (the store
/// unreachable, the name taken by another node).
pub async fn register_node(
    store: Arc<dyn Store>,
    info: NodeInfo,
    options: NodeAgentOptions,
) -> Result<NodeAgent, NodeError> {
    let mut reg = Registration {
        api: Api::<Node>::default_account(store.clone()),
        store,
        info,
        options,
        lease: None,
        unschedulable: false,
        last_heartbeat: None,
    };
    if let Err(e) = reg.ensure().await {
        if let Some(lease) = reg.lease {
            // Not registered: the lease would only linger until its TTL.
            let _ = reg.store.lease_revoke(lease).await;
        }
        return Err(e);
    }
    let name = reg.info.name.clone();
    tracing::info!(node = %name, uuid = %reg.info.uuid, memory_bytes = reg.info.memory_bytes, cpus = reg.info.cpus, "node registered");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(reg.run(stopped));
    Ok(NodeAgent {
        name,
        stop,
        task: Some(task),
    })
}

impl Registration {
    fn renew_every(&self) -> Duration {
        self.options
            .renew
            .unwrap_or(self.options.ttl / 3)
            .max(Duration::from_millis(10))
    }

    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let every = self.renew_every();
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(every) => {}
            }
            if let Some(lease) = self.lease {
                match self.store.lease_keep_alive(lease).await {
                    Ok(_) => {}
                    Err(StoreError::LeaseNotFound(_)) => {
                        tracing::warn!(node = %self.info.name, lease = format!("{lease:x}"), "the node's lease ended; registering again on a new one");
                        self.lease = None;
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.info.name, error = %e, "renewing the node's lease");
                        continue;
                    }
                }
            }
            if let Err(e) = self.ensure().await {
                tracing::warn!(node = %self.info.name, error = %e, "keeping the node registered");
            }
        }
        if let Some(lease) = self.lease.take() {
            match self.store.lease_revoke(lease).await {
                Ok(()) | Err(StoreError::LeaseNotFound(_)) => {
                    tracing::info!(node = %self.info.name, "node unregistered");
                }
                Err(e) => {
                    tracing::warn!(node = %self.info.name, error = %e, "revoking the node's lease; the node goes when it expires");
                }
            }
        }
    }

    /// Make the Node exist on our lease with our spec, and write the
    /// heartbeat when it is due.
    async fn ensure(&mut self) -> Result<(), NodeError> {
        let lease = match self.lease {
            Some(lease) => lease,
            None => {
                let lease = self.store.lease_grant(self.options.ttl).await?;
                self.lease = Some(lease);
                lease
            }
        };
        let key = self.api.key(&self.info.name);
        let Some(kv) = self.store.get(&key).await? else {
            return self.create(lease).await;
        };
        let ours = kv.lease == Some(lease);
        let node = match sdc_docker_store::decode::<Node>(&kv) {
            Decoded::Valid(node) => node,
            Decoded::Invalid { message, .. } if ours => {
                tracing::warn!(node = %self.info.name, error = %message, "our Node was overwritten with a malformed value; registering again");
                self.store.delete(&key, Some(kv.mod_revision), None).await?;
                return self.create(lease).await;
            }
            Decoded::Invalid { message, .. } => {
                return Err(NodeError::Malformed {
                    name: self.info.name.clone(),
                    message,
                });
            }
        };
        if !ours && node.spec.uuid != self.info.uuid {
            return Err(NodeError::NameTaken {
                name: self.info.name.clone(),
                uuid: node.spec.uuid,
            });
        }
        self.unschedulable = node.spec.unschedulable;
        if !ours {
            // Ours from before (a restart within the old lease's TTL, or a
            // lease that ended while the store was away): a key cannot move
            // to another lease, so delete it and create it on ours.
            tracing::info!(node = %self.info.name, "moving the node to this agent's lease");
            match self.store.delete(&key, Some(kv.mod_revision), None).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return self.create(lease).await;
        }
        let mut node = node;
        let want = self.info.spec(node.spec.unschedulable);
        if node.spec != want {
            node.spec = want;
            node = match self.api.replace(&node).await {
                Ok(node) => node,
                // Written meanwhile (an operator, the allocation
                // controller): the next check starts from what is there.
                Err(StoreError::Conflict { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
        }
        let due = self
            .last_heartbeat
            .is_none_or(|at| at.elapsed() >= self.options.heartbeat);
        if due {
            node.status.heartbeat = Some(OffsetDateTime::now_utc());
            match self.api.update_status(&node).await {
                Ok(_) => self.last_heartbeat = Some(Instant::now()),
                // Still due: the next check writes it.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Create the Node on `lease` (as `Api::create` would, plus the lease).
    async fn create(&mut self, lease: LeaseId) -> Result<(), NodeError> {
        let mut node = Node::new(&self.info.name, self.info.spec(self.unschedulable));
        let meta = node.metadata_mut();
        meta.uid = new_uid();
        meta.generation = 1;
        meta.creation_timestamp = Some(OffsetDateTime::now_utc());
        node.status.heartbeat = Some(OffsetDateTime::now_utc());
        let key = self.api.key(&self.info.name);
        match self
            .store
            .create(&key, encode(&node)?, Some(lease), None)
            .await
        {
            Ok(_) => {
                self.last_heartbeat = Some(Instant::now());
                Ok(())
            }
            // Someone wrote it meanwhile: the next check looks at it.
            Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(StoreError::LeaseNotFound(_)) => {
                self.lease = None;
                Err(StoreError::LeaseNotFound(lease).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       16303412 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_meminfo_total(text).ok(), Some(16303412 * 1024));
        assert_eq!(parse_meminfo_total("MemTotal: 42\n").ok(), Some(42));
    }

    #[test]
    fn meminfo_without_a_total_or_with_garbage_is_an_error_saying_so() {
        let e = parse_meminfo_total("MemFree: 1 kB\n").unwrap_err();
        assert!(e.to_string().contains("no MemTotal line"), "{e}");
        let e = parse_meminfo_total("MemTotal: lots kB\n").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e = parse_meminfo_total("MemTotal: 1 parsecs\n").unwrap_err();
        assert!(e.to_string().contains("unknown MemTotal unit"), "{e}");
    }

    #[test]
    fn cpuinfo_counts_processor_lines_only() {
        let text = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(parse_cpuinfo_count(text), 2);
        assert_eq!(parse_cpuinfo_count("Processor\t: ARMv7\n"), 0);
        assert_eq!(parse_cpuinfo_count(""), 0);
    }

    #[test]
    fn hostnames_are_the_first_meaningful_line_and_names_are_key_safe() {
        assert_eq!(parse_hostname("\n  cn01 \n").as_deref(), Some("cn01"));
        assert_eq!(parse_hostname("# comment\nbox\n").as_deref(), Some("box"));
        assert_eq!(parse_hostname("\n\n"), None);
        assert_eq!(node_name("CN01.Example"), "cn01.example");
        assert_eq!(node_name("a/b"), "a-b");
        assert_eq!(node_name(" "), "node");
    }

    #[test]
    fn a_uuid_file_holds_one_uuid_and_is_stable_once_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/node-uuid");
        let first = load_or_create_uuid(&path).expect("created");
        assert_eq!(load_or_create_uuid(&path).expect("read"), first);
        assert_eq!(
            parse_uuid_file("  6F9619FF-8B86-D011-B42D-00C04FC964FF\n").as_deref(),
            Ok("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        std::fs::write(&path, "not a uuid").expect("write");
        assert!(load_or_create_uuid(&path).is_err());
    }

    #[test]
    fn probing_this_machine_finds_memory_cpus_and_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let info = NodeInfo::probe(dir.path(), &dir.path().join("uuid")).expect("probe");
        assert!(
            info.memory_bytes > 0 && info.cpus > 0 && info.disk_bytes > 0,
            "{info:?}"
        );
        assert_eq!(info.driver, "linux");
        assert!(!info.name.is_empty());
    }
}
