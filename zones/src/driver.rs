//! The [`ZoneDriver`] trait and what it reports.
//!
//! The words are SmartOS's (`vmadm`): a zone is *configured*, *installed*,
//! *running* or *stopped*, plus *paused* for the freezer. Each driver maps its
//! own machinery onto them; the trait promises idempotency, not atomicity:
//! after a crash at any point, calling the same method again converges.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::spec::ZoneSpec;

/// The life of a zone, in SmartOS's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneState {
    /// Known to the driver, not yet ready to start (a create that did not
    /// finish; calling create again completes it).
    Configured,
    /// Ready to start, never started (linux: bundle and root file system
    /// in place).
    Installed,
    /// Its init process runs.
    Running,
    /// Frozen.
    Paused,
    /// Ran and exited; [`ZoneInfo::exit_code`] says how.
    Stopped,
}

impl ZoneState {
    /// Whether the zone may be started from this state.
    pub fn can_start(self) -> bool {
        matches!(self, ZoneState::Installed | ZoneState::Stopped)
    }

    /// Whether signals can be delivered to the zone's processes.
    pub fn can_kill(self) -> bool {
        matches!(self, ZoneState::Running | ZoneState::Paused)
    }
}

/// What a driver observes of one zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    /// The zone id ([`ZoneSpec::id`]).
    pub id: String,
    /// Its state.
    pub state: ZoneState,
    /// The init process id on the host, while running or paused.
    pub pid: Option<i64>,
    /// How the last run ended (`128 + signal` when killed by one); `None`
    /// before the first exit, or when the exit was not recorded (the
    /// monitor died with the zone: Docker reports 255 then).
    pub exit_code: Option<i64>,
    /// When the last run started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When the last run ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Whether the kernel's OOM killer ended the last run.
    pub oom_killed: bool,
    /// The spec's labels, so that a listing can be mapped back to containers.
    pub labels: BTreeMap<String, String>,
    /// When the platform itself carries the restart policy (SmartOS:
    /// `docker:restartpolicy`, counted in `docker:restartcount`), how many
    /// times it restarted the zone; `None` when the node's restart
    /// controller does it (linux).
    #[serde(default)]
    pub restart_count: Option<i64>,
}

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// No zone has this id.
    #[error("no such zone: {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The spec cannot be realised (bad user, relative path, …).
    #[error("invalid zone spec: {0}")]
    InvalidSpec(String),
    /// A signal name or number Docker would not accept.
    #[error("Invalid signal: {0}")]
    InvalidSignal(String),
    /// The operation does not apply in the zone's state (pausing a stopped
    /// zone, …).
    #[error("zone {id} is {state:?}: cannot {op}")]
    WrongState {
        /// The zone.
        id: String,
        /// Its state.
        state: ZoneState,
        /// What was asked.
        op: &'static str,
    },
    /// The image's files are not on this machine.
    #[error("image layer {path} is missing: pull the image again on this node")]
    ImageMissing {
        /// The missing directory (linux) or image uuid (smartos).
        path: String,
    },
    /// The runtime (`runc`, the monitor, `vmadm`) refused or failed.
    #[error("{op} failed: {message}")]
    Runtime {
        /// What was being done (`start`, `kill`, `runc delete`, …).
        op: String,
        /// The runtime's own words (its stderr).
        message: String,
    },
    /// The zone did not reach the expected state in time.
    #[error("zone {id} did not {what} within {after:?}")]
    Timeout {
        /// The zone.
        id: String,
        /// What was awaited (`exit`, …).
        what: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// Reading or writing the driver's own files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Nothing at `path` inside zone `id` (Docker: 404 "Could not find the
    /// file … in container …").
    #[error("Could not find the file {path} in container {id}")]
    NoSuchPath {
        /// The zone.
        id: String,
        /// The path asked for.
        path: String,
    },
    /// A request the zone cannot carry out as asked (a bad path, an archive
    /// that would land outside the zone, a directory replaced by a file…):
    /// the caller's mistake, Docker's 400.
    #[error("{0}")]
    BadRequest(String),
    /// A file the driver wrote earlier cannot be read back.
    #[error("{path}: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
}

impl ZoneError {
    /// An [`ZoneError::Io`] for `context`, for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ZoneError {
        let context = context.into();
        move |source| ZoneError::Io { context, source }
    }
}

/// The one boundary to the machine: create, run, signal and remove zones.
///
/// Every method is idempotent and safe to repeat after the caller (or the
/// machine) crashed half way: `create` of an existing zone returns it,
/// `start` of a running one succeeds, `delete` of a missing one succeeds.
#[async_trait::async_trait]
pub trait ZoneDriver: Send + Sync + 'static {
    /// `linux` or `smartos`.
    fn kind(&self) -> &'static str;

    /// Creates the zone of `spec` (state [`ZoneState::Installed`]); an
    /// existing zone with this id is returned as it is, unchanged.
    async fn create(&self, spec: &ZoneSpec) -> Result<ZoneInfo, ZoneError>;

    /// Starts the zone; a running one is returned as it is. A stopped zone
    /// starts again with its file system as it was left.
    async fn start(&self, id: &str) -> Result<ZoneInfo, ZoneError>;

    /// Sends `signal` (empty: the spec's stop signal), waits up to `timeout`
    /// for the zone to exit, then kills it. A zone not running is returned as
    /// it is.
    async fn stop(&self, id: &str, signal: &str, timeout: Duration) -> Result<ZoneInfo, ZoneError>;

    /// Sends `signal` (`TERM`, `SIGTERM` or `15`) to the zone's init.
    async fn kill(&self, id: &str, signal: &str) -> Result<(), ZoneError>;

    /// Freezes every process of the zone.
    async fn pause(&self, id: &str) -> Result<(), ZoneError>;

    /// Thaws the zone.
    async fn unpause(&self, id: &str) -> Result<(), ZoneError>;

    /// Kills the zone if it runs and removes everything of it; a missing
    /// zone is not an error.
    async fn delete(&self, id: &str) -> Result<(), ZoneError>;

    /// The zone, or `None` when there is none with this id.
    async fn get(&self, id: &str) -> Result<Option<ZoneInfo>, ZoneError>;

    /// Every zone of this driver.
    async fn list(&self) -> Result<Vec<ZoneInfo>, ZoneError>;

    /// Changes the driver saw happen by themselves, not as the answer to a
    /// call: a zone's process exiting. Receivers that lag lose events (a
    /// controller's periodic resync catches up); a zone is reported once
    /// the driver has seen it running (after `start`, `get` or `list`).
    fn events(&self) -> tokio::sync::broadcast::Receiver<ZoneEvent>;
}

/// What [`ZoneDriver::events`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneEvent {
    /// The zone's process exited (its exit status can now be read with
    /// [`ZoneDriver::get`]).
    Exited {
        /// The zone.
        id: String,
    },
}
