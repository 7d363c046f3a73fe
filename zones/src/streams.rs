//! The streaming side of a zone: what needs the zone itself rather than its
//! spec — its output and input (attach), a second process in it (exec), its
//! log, its resource usage (stats), and its files (copy, changes, export).
//!
//! The Docker API reaches a zone only through this trait (and never drives
//! its lifecycle, which is [`ZoneDriver`](crate::ZoneDriver)'s and the
//! controllers'). Shaped so the SmartOS driver fits: attach is zoneadmd's
//! stdio, exec is `zlogin`, logs are `/zones/<uuid>/logs/stdio.log*`, stats
//! are the zone's kstats, files are under `/zones/<uuid>/root`.
//!
//! Byte streams are tokio's `AsyncRead`/`AsyncWrite`; output arrives as
//! [`OutputChunk`]s that say which stream they came from, so a caller can
//! frame them the way Docker does (multiplexed) or not (tty).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::driver::ZoneError;

/// Which of a process's output streams a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdStream {
    /// Standard output (everything, when the process has a tty).
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a process's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where it came from.
    pub stream: StdStream,
    /// The bytes, as the process wrote them.
    pub data: Bytes,
}

/// A process's output, in the order it was read; ends when the process's
/// output ends (or, for attach, when the zone's process exits).
pub type Output = Pin<Box<dyn Stream<Item = std::io::Result<OutputChunk>> + Send>>;

/// A process's input. Shutting it down (`AsyncWriteExt::shutdown`) closes
/// the process's stdin.
pub type Input = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// A plain byte stream (a tar archive).
pub type ByteStream = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// A future resolving to a process's exit code (128 + signal when killed).
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i64, ZoneError>> + Send>>;

/// Sets a pty's window size: height, then width.
pub type ResizeFn = Box<dyn Fn(u16, u16) -> Result<(), ZoneError> + Send + Sync>;

/// Which streams an attach client wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Send input to the zone's process.
    pub stdin: bool,
    /// Receive its standard output.
    pub stdout: bool,
    /// Receive its standard error.
    pub stderr: bool,
    /// Close the process's stdin when this client's input ends (`docker
    /// run -i` without `-t`); otherwise only this client's input ends.
    pub stdin_once: bool,
}

/// An attached or exec'd process's streams.
pub struct Session {
    /// Its stdin, when asked for (and the process keeps one open).
    pub input: Option<Input>,
    /// Its output.
    pub output: Output,
}

/// What to run with [`ZoneStreams::exec`] (Docker's exec config).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The command and its arguments; not empty.
    pub args: Vec<String>,
    /// `KEY=value` entries added to the zone's own environment.
    pub env: Vec<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty: the zone's user.
    pub user: String,
    /// Working directory; empty: the zone's.
    pub workdir: String,
    /// Allocate a pty (stdout and stderr are one stream).
    pub tty: bool,
    /// Keep stdin open for the caller's input.
    pub stdin: bool,
    /// Every capability, as `docker exec --privileged`.
    pub privileged: bool,
}

/// A process started by [`ZoneStreams::exec`].
pub struct ExecProcess {
    /// Its pid as the host sees it, when known.
    pub pid: Option<i64>,
    /// Its streams.
    pub session: Session,
    /// Resolves once it exited; its output has ended by then or ends soon
    /// after.
    pub exit: ExitFuture,
    /// Sets its pty's window size (only with `tty`).
    pub resize: Option<ResizeFn>,
}

/// Which part of a zone's log to read ([`ZoneStreams::logs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Standard output lines.
    pub stdout: bool,
    /// Standard error lines.
    pub stderr: bool,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries before this time.
    pub until: Option<OffsetDateTime>,
    /// Only the last N entries (of those selected); `None`: all.
    pub tail: Option<usize>,
    /// Keep following new entries until the zone's process exits (or
    /// `until` passes).
    pub follow: bool,
}

/// One entry of a zone's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Which stream wrote it.
    pub stream: StdStream,
    /// When the zone's monitor read it.
    pub time: OffsetDateTime,
    /// The bytes, with their newline when they had one.
    pub data: Bytes,
}

/// A zone's log entries, oldest first.
pub type LogStream = Pin<Box<dyn Stream<Item = std::io::Result<LogEntry>> + Send>>;

/// One reading of a zone's resource usage: what Docker's stats need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneStats {
    /// When it was read.
    #[serde(with = "time::serde::rfc3339")]
    pub read: OffsetDateTime,
    /// CPU time of the zone, in nanoseconds.
    pub cpu_total_ns: u64,
    /// ... per host CPU, when the host tells (cgroup v1 `cpuacct.usage_percpu`).
    pub cpu_per_cpu_ns: Vec<u64>,
    /// ... in user mode.
    pub cpu_user_ns: u64,
    /// ... in kernel mode.
    pub cpu_system_ns: u64,
    /// CPU time of the whole host, in nanoseconds (Docker's
    /// `system_cpu_usage`, from `/proc/stat`).
    pub system_cpu_ns: u64,
    /// Host CPUs online.
    pub online_cpus: u32,
    /// Memory in use, in bytes.
    pub memory_usage: u64,
    /// The most ever in use, when the host tells.
    pub memory_max_usage: Option<u64>,
    /// The limit, in bytes.
    pub memory_limit: u64,
    /// The memory controller's own counters (`cache`, `rss`, `inactive_file`, …).
    pub memory_stats: BTreeMap<String, u64>,
    /// Processes in the zone.
    pub pids_current: u64,
    /// Their limit, when one is set.
    pub pids_limit: Option<u64>,
    /// Per network interface of the zone.
    pub networks: BTreeMap<String, NetworkStats>,
    /// Block I/O: bytes read and written.
    pub blkio_read_bytes: u64,
    /// ...
    pub blkio_write_bytes: u64,
}

/// One interface's counters, as `/proc/net/dev` has them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// A path in a zone, as `docker cp` reports it (`X-Docker-Container-Path-Stat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// The last element of the path.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Go's `os.FileMode` bits (type bits included: directory `1 << 31`,
    /// symlink `1 << 27`, …), as Docker sends them.
    pub mode: u32,
    /// Modification time.
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    /// Where a symlink points (empty otherwise).
    pub link_target: String,
}

/// How [`ZoneStreams::extract`] treats what is already there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory or the reverse
    /// (`noOverwriteDirNonDir`).
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the archive's uid/gid (`copyUIDGID`); otherwise files belong to
    /// the zone's root.
    pub copy_uid_gid: bool,
}

/// A change to a zone's file system against its image (`docker diff`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The path, absolute inside the zone.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// Docker's change kinds: 0 modified, 1 added, 2 deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Changed (Docker's `C`, 0).
    Modified,
    /// Added (`A`, 1).
    Added,
    /// Deleted (`D`, 2).
    Deleted,
}

/// The streaming side of a zone driver; see the module documentation.
/// Every method fails with [`ZoneError::NotFound`] for an unknown zone and
/// [`ZoneError::WrongState`] when the zone must run and does not.
#[async_trait::async_trait]
pub trait ZoneStreams: Send + Sync + 'static {
    /// Connects to the running zone's process: its output from now on, and
    /// its stdin when `options.stdin` (and the zone keeps stdin open).
    async fn attach(&self, id: &str, options: AttachOptions) -> Result<Session, ZoneError>;

    /// Sets the window size of the zone's pty (zones with a tty only).
    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ZoneError>;

    /// Starts another process in the running zone.
    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError>;

    /// The zone's log (written by every log driver but `none`).
    async fn logs(&self, id: &str, options: LogOptions) -> Result<LogStream, ZoneError>;

    /// Resource usage of the running zone, now.
    async fn stats(&self, id: &str) -> Result<ZoneStats, ZoneError>;

    /// What is at `path` inside the zone ([`ZoneError::NoSuchPath`] if nothing).
    async fn stat_path(&self, id: &str, path: &str) -> Result<PathStat, ZoneError>;

    /// A tar archive of `path` inside the zone (a file, or a directory and
    /// everything under it), as `docker cp` from a container reads it.
    async fn archive(&self, id: &str, path: &str) -> Result<(PathStat, ByteStream), ZoneError>;

    /// Unpacks the tar archive `tar` into the directory `path` inside the
    /// zone, as `docker cp` into a container; nothing can land outside the
    /// zone's root.
    async fn extract(
        &self,
        id: &str,
        path: &str,
        tar: ByteStream,
        options: ExtractOptions,
    ) -> Result<(), ZoneError>;

    /// What changed in the zone's file system against its image.
    async fn changes(&self, id: &str) -> Result<Vec<Change>, ZoneError>;

    /// The zone's whole file system as a tar archive (`docker export`).
    async fn export(&self, id: &str) -> Result<ByteStream, ZoneError>;
}
