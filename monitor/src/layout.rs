//! The files of a monitor's state directory: the one place their names are
//! spelled, for the monitor that writes them and the client that reads them.
//!
//! | file | written by | content |
//! | --- | --- | --- |
//! | `config.json` | [`spawn`](crate::spawn) | the [`MonitorConfig`](crate::MonitorConfig), paths absolute |
//! | `monitor.pid` | the monitor, at start | its pid, decimal |
//! | `init.pid` | `runc run --pid-file` | the container's init pid (host namespace) |
//! | `started_at` | the monitor, after `runc run` | RFC 3339 time |
//! | `exit.json` | the monitor, after the init exited and the output was drained | [`ExitRecord`](crate::ExitRecord) as JSON |
//! | `attach.sock` | the monitor, while it runs | the attach socket (see the crate docs) |
//! | `ctl` | the monitor, while it runs | the control FIFO (see the crate docs) |
//! | `console.sock` | the monitor, during `runc run` with a tty | the runtime's console socket |
//! | `monitor.log` | the monitor | its own problems, plain text, one line each |
//! | `runc.log` | the runtime (`--log`, JSON lines) | the runtime's own log |
//!
//! Every file but the logs is replaced atomically (temp file + rename).
//! [`spawn`](crate::spawn) removes the files of a previous run first.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The monitor's configuration, written by `spawn`.
pub const CONFIG: &str = "config.json";
/// The monitor's pid.
pub const MONITOR_PID: &str = "monitor.pid";
/// The container init's pid.
pub const INIT_PID: &str = "init.pid";
/// When `runc run` returned.
pub const STARTED_AT: &str = "started_at";
/// How the init exited.
pub const EXIT: &str = "exit.json";
/// The attach socket.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The control FIFO.
pub const CONTROL: &str = "ctl";
/// The console socket handed to `runc run --console-socket`.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The monitor's own log.
pub const MONITOR_LOG: &str = "monitor.log";
/// The runtime's log (`runc --log`).
pub const RUNTIME_LOG: &str = "runc.log";

/// The files a run leaves behind, removed before the next run starts.
pub(crate) const RUN_FILES: [&str; 7] = [
    MONITOR_PID,
    INIT_PID,
    STARTED_AT,
    EXIT,
    ATTACH_SOCKET,
    CONTROL,
    CONSOLE_SOCKET,
];

/// The longest socket path used as is; `sun_path` holds 108 bytes with its
/// terminating NUL, and runc adds nothing, so this keeps a margin.
const MAX_SOCKET_PATH: usize = 100;

/// A unix socket address for `state_dir/name` that fits `sun_path` however
/// long `state_dir` is: a longer path goes through `/proc/<pid>/fd/<dir>/name`,
/// an `O_PATH` descriptor of the directory held as long as this value lives.
pub(crate) struct SocketPath {
    path: PathBuf,
    _dir: Option<OwnedFd>,
}

impl SocketPath {
    /// The address of `state_dir/name`; with `self_only` it is good only in
    /// this process (`/proc/self`), otherwise in any process that may read
    /// this one's `/proc/<pid>/fd` (runc, as root).
    pub(crate) fn new(state_dir: &Path, name: &str, self_only: bool) -> std::io::Result<Self> {
        let path = file(state_dir, name);
        if path.as_os_str().len() <= MAX_SOCKET_PATH {
            return Ok(SocketPath { path, _dir: None });
        }
        use rustix::fs::OFlags;
        let dir = rustix::fs::open(
            state_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let owner = if self_only {
            String::from("self")
        } else {
            std::process::id().to_string()
        };
        let path = PathBuf::from(format!("/proc/{owner}/fd/{}/{name}", dir.as_raw_fd()));
        Ok(SocketPath {
            path,
            _dir: Some(dir),
        })
    }

    /// The path to bind or connect to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `state_dir/name`.
pub fn file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name)
}

/// Writes `content` to `path` atomically: a temporary file in the same
/// directory, then a rename over `path`.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}
