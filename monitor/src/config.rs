//! What the daemon tells a monitor: the container to run and how to treat
//! its stdio. [`spawn`](crate::spawn) writes it as `config.json` into the
//! state directory (paths made absolute), and the monitor process reads it
//! back, so the arguments of the monitor stay short and the configuration a
//! container was started with stays visible on disk.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How to run one container under a monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container (zone) id, also the OCI runtime's container id.
    pub id: String,
    /// The OCI bundle: `config.json` and the rootfs, already mounted.
    pub bundle: PathBuf,
    /// The directory the monitor owns for this container (see
    /// [`layout`](crate::layout)). Any length: sockets under a path too long
    /// for `sun_path` are reached through `/proc/<pid>/fd/<dir>/`.
    pub state_dir: PathBuf,
    /// The OCI runtime binary (`runc`); a bare name is looked up on `PATH`.
    pub runtime: PathBuf,
    /// Passed as `runc --root DIR`, so several daemons or tests don't share
    /// the runtime's state.
    pub runtime_root: Option<PathBuf>,
    /// Allocate a pty (`runc --console-socket`); the bundle must say
    /// `process.terminal: true` too. Otherwise the container gets pipes.
    pub tty: bool,
    /// Keep the container's stdin open for attach clients; otherwise its
    /// stdin is `/dev/null`.
    pub open_stdin: bool,
    /// The json-file log; `None` is Docker's log driver `none`.
    pub log: Option<LogConfig>,
    /// The monitor binary; by default `sdc-docker-monitor` next to the
    /// current executable, else looked up on `PATH`.
    pub monitor_binary: Option<PathBuf>,
}

/// Docker's json-file log driver options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The current log file; rotated files are `path.1`, `path.2`, ….
    pub path: PathBuf,
    /// Rotate before a line would make the file larger than this many bytes;
    /// 0 means never rotate (`max-size` unset).
    pub max_size: u64,
    /// How many files to keep in all, the current one included (`max-file`,
    /// at least 1).
    pub max_files: u32,
}
