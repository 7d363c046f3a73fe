//! Container: what the user asked `docker create`/`docker run` for, and what
//! the provisioning, restart and logs controllers observed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Condition, resource};

resource!(
    /// A Docker container.
    Container,
    ContainerSpec,
    ContainerStatus
);

impl Container {
    /// The container's Docker id: `spec.id`, or, for a spec written without
    /// one (by an operator), one derived from its uid, so that it is stable.
    pub fn docker_id(&self) -> String {
        if !self.spec.id.is_empty() {
            return self.spec.id.clone();
        }
        let hex: String = self
            .metadata
            .uid
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        format!("{hex}{hex}")
    }
}

/// The desired container, in the terms of Docker's create body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerSpec {
    /// The 64-hex Docker id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The image reference as the user gave it (`busybox`, `repo@sha256:…`).
    pub image: String,
    /// The resolved image id (`sha256:…`), once known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Arguments (Docker's `Cmd`); empty means the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Docker's `Entrypoint`; `None` means the image's, `Some([])` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory; empty means the image's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `user[:group]`; empty means the image's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Hostname inside the container; empty means the first 12 of the id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// DNS domain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domainname: String,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub open_stdin: bool,
    /// Close stdin after the first attach detaches.
    pub stdin_once: bool,
    /// Attach stdin on start.
    pub attach_stdin: bool,
    /// Attach stdout on start.
    pub attach_stdout: bool,
    /// Attach stderr on start.
    pub attach_stderr: bool,
    /// Docker labels (`com.joyent.package`, `triton.*` are reserved).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The restart policy the node enforces, with the seeds' backoff.
    pub restart_policy: RestartPolicy,
    /// Where stdout/stderr go.
    pub log_config: LogConfig,
    /// Memory asked for with `-m`, in bytes (0: the default package).
    pub memory: i64,
    /// The package asked for by name or UUID (`com.joyent.package`), or the
    /// one chosen from `memory` by placement.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub package: String,
    /// CPU shares (relative weight).
    pub cpu_shares: i64,
    /// Ports exposed, `80/tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// `-p` bindings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_bindings: Vec<PortBinding>,
    /// `-P`: publish every exposed port.
    pub publish_all_ports: bool,
    /// Volumes and bind mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Networks to attach (names); empty means the default network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// DNS servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// `host:ip` entries for /etc/hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Signal sent by `docker stop` (default SIGTERM).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Seconds `docker stop` waits before SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// `--rm`: remove the container once it exits.
    pub auto_remove: bool,
    /// Whether the container should be running, stopped or paused.
    pub desired_state: DesiredState,
    /// The last request the desired state cannot say by itself (`docker
    /// kill`, `docker restart`, `docker stop -t/-s`); carried out once, by
    /// the node, when it acts on the generation the request was written at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<LifecycleRequest>,
}

/// A one-off lifecycle request ([`ContainerSpec::request`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LifecycleRequest {
    /// What to do.
    pub action: RequestAction,
    /// The signal (`SIGHUP`, `9`); empty: the container's stop signal
    /// (kill: `SIGKILL`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub signal: String,
    /// Seconds to wait before SIGKILL (stop, restart); `None`: the
    /// container's stop timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// The generation the request was written at; it is carried out when
    /// `status.observedGeneration` is still below it.
    pub generation: i64,
}

/// What a [`LifecycleRequest`] asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestAction {
    /// Send a signal to the container's process.
    #[default]
    Kill,
    /// Stop with this signal and timeout.
    Stop,
    /// Stop (as above) and start again.
    Restart,
    /// Start (again), even when the desired state already says running:
    /// a process that exited by itself is started by a `docker start`.
    Start,
}

/// What the user last asked of the container's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Created, never started.
    #[default]
    Created,
    /// Running (restarted according to the policy when it exits).
    Running,
    /// Stopped by the user.
    Stopped,
    /// Frozen.
    Paused,
}

/// Docker's restart policy names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicyName {
    /// Never restart.
    #[default]
    No,
    /// Always restart.
    Always,
    /// Restart when the exit code is not 0.
    OnFailure,
    /// Always, unless the user stopped it.
    UnlessStopped,
}

/// `--restart NAME[:MAX]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartPolicy {
    /// The policy.
    pub name: RestartPolicyName,
    /// For `on-failure`: how many restarts at most (0: unlimited).
    pub maximum_retry_count: i64,
}

/// `--log-driver` and `--log-opt`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogConfig {
    /// The driver (`json-file` when empty).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Driver options (`max-size`, `max-file`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// One `-p` binding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PortBinding {
    /// The container port with protocol, `80/tcp`.
    pub container_port: String,
    /// The host IP (empty: any).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// The host port (empty: chosen).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_port: String,
}

/// A volume or bind mount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mount {
    /// `volume` or `bind`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Volume name or host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What is observed of the container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    /// The generation last acted upon.
    pub observed_generation: i64,
    /// Docker's state word.
    pub state: ContainerState,
    /// The node the container was placed on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The package placement chose.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub package: String,
    /// The main process id on its node, while running.
    pub pid: i64,
    /// The exit code of the last run.
    pub exit_code: i64,
    /// Why the last start failed, if it did.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Killed by the OOM killer.
    pub oom_killed: bool,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// When the last run started.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<OffsetDateTime>,
    /// When the last run ended.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
    /// The desired state the node last acted upon: an edit that leaves the
    /// desired state as it was (`docker update`) does not start an exited
    /// container again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acted_desired_state: Option<DesiredState>,
    /// Observations (e.g. `Invalid` for a malformed spec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Docker's container states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Stored, not yet realised.
    #[default]
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Being restarted by its policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Could not be realised.
    Dead,
}
