//! The daemon's side of the monitor: start one for a container, read its
//! state back (also after a daemon restart), attach to the container's
//! streams and resize its pty. Everything here is blocking std code that
//! returns quickly, except [`spawn`], which waits for `runc run`
//! to start the container.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::layout::{self, file};
use crate::readiness::Readiness;
use crate::{MonitorConfig, MonitorError, timefmt};

pub use crate::exit::ExitRecord;

/// What [`spawn`] returns once the container's process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The monitor's pid (not a child of the caller).
    pub monitor_pid: i32,
    /// The container init's pid in the host's pid namespace.
    pub init_pid: i32,
    /// When `runc run` returned.
    pub started_at: SystemTime,
    /// How long `runc run` took (the rest of a start is ours).
    pub runtime_took: std::time::Duration,
}

/// What a state directory says about its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorState {
    /// The monitor's pid, if it got as far as writing it.
    pub monitor_pid: Option<i32>,
    /// Whether that pid is still this state directory's monitor (checked
    /// through `/proc/PID/cmdline`, so a reused pid does not count).
    pub monitor_alive: bool,
    /// The init's pid, once `runc run` wrote it.
    pub init_pid: Option<i32>,
    /// When the container started.
    pub started_at: Option<SystemTime>,
    /// How it exited, once it has. A dead monitor without an exit record
    /// means the monitor itself was killed: the container's fate is then
    /// only known to the runtime (`runc state`).
    pub exit: Option<ExitRecord>,
}

/// Which streams an attach client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    /// Send what the client writes to the container's stdin.
    pub stdin: bool,
    /// Receive the container's stdout (or its pty).
    pub stdout: bool,
    /// Receive the container's stderr.
    pub stderr: bool,
}

/// Starts a monitor for `config` and waits until the container's process
/// runs.
///
/// Leftover files of a previous run in the state directory are removed
/// first; a monitor still running there is [`MonitorError::AlreadyRunning`]. Returns [`MonitorError::RuntimeFailed`] with the runtime's message
/// when `runc run` fails; the monitor has then exited and
/// the runtime holds no container. Blocks for as long as the runtime takes.
pub fn spawn(config: &MonitorConfig) -> Result<Spawned, MonitorError> {
    let state_dir = &config.state_dir;
    std::fs::create_dir_all(state_dir).map_err(|e| MonitorError::io(state_dir, e))?;
    let state_dir = state_dir
        .canonicalize()
        .map_err(|e| MonitorError::io(state_dir, e))?;
    if let Ok(MonitorState {
        monitor_alive: true,
        monitor_pid: Some(pid),
        ..
    }) = state(&state_dir)
    {
        return Err(MonitorError::AlreadyRunning { pid });
    }
    for name in layout::RUN_FILES {
        let path = file(&state_dir, name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(MonitorError::io(path, e)),
        }
    }
    let config = absolute_config(config, &state_dir)?;
    let config_path = file(&state_dir, layout::CONFIG);
    let json = serde_json::to_vec_pretty(&config).map_err(|e| MonitorError::Malformed {
        path: config_path.clone(),
        detail: e.to_string(),
    })?;
    // Read by nobody before the monitor we start below: written in place,
    // and not at all when a previous run left the same (a new file is an
    // inode to allocate, which is not cheap on a busy file system).
    if std::fs::read(&config_path).map_or(true, |old| old != json) {
        std::fs::write(&config_path, &json).map_err(|e| MonitorError::io(&config_path, e))?;
    }

    let binary = monitor_binary(&config);
    // The monitor answers on its stdout and then lets go of it; its first
    // stage exits at once (the second runs on, re-parented), so waiting for
    // it here keeps the daemon free of zombies.
    let mut child = Command::new(&binary)
        .arg("--state-dir")
        .arg(&state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| MonitorError::MonitorExec {
            binary: binary.clone(),
            source,
        })?;
    let mut report = Vec::new();
    let read = match child.stdout.take() {
        Some(mut out) => out.read_to_end(&mut report).map(|_| ()),
        None => Ok(()),
    };
    let _ = child.wait();
    read.map_err(|e| MonitorError::io(&binary, e))?;

    match serde_json::from_slice::<Readiness>(&report) {
        Ok(Readiness::Running {
            monitor_pid,
            init_pid,
            started_at,
            runtime_micros,
        }) => Ok(Spawned {
            monitor_pid,
            init_pid,
            started_at: timefmt::parse(&started_at).unwrap_or_else(SystemTime::now),
            runtime_took: std::time::Duration::from_micros(runtime_micros),
        }),
        Ok(Readiness::RuntimeFailed { stderr }) => Err(MonitorError::RuntimeFailed { stderr }),
        Ok(Readiness::Failed { message }) => Err(MonitorError::MonitorFailed { detail: message }),
        Err(_) => Err(MonitorError::MonitorFailed {
            detail: monitor_log_tail(&state_dir),
        }),
    }
}

/// Reads the state directory: pids, times, the exit record, and whether the
/// monitor still runs.
pub fn state(state_dir: &Path) -> Result<MonitorState, MonitorError> {
    let state_dir = state_dir
        .canonicalize()
        .map_err(|e| MonitorError::io(state_dir, e))?;
    let monitor_pid = read_pid(&file(&state_dir, layout::MONITOR_PID))?;
    let init_pid = read_pid(&file(&state_dir, layout::INIT_PID))?;
    let started_path = file(&state_dir, layout::STARTED_AT);
    let started_at =
        match read_optional(&started_path)? {
            Some(bytes) => Some(timefmt::parse(&String::from_utf8_lossy(&bytes)).ok_or_else(
                || MonitorError::Malformed {
                    path: started_path.clone(),
                    detail: "not an RFC 3339 time".into(),
                },
            )?),
            None => None,
        };
    let exit_path = file(&state_dir, layout::EXIT);
    let exit = match read_optional(&exit_path)? {
        Some(bytes) => Some(ExitRecord::from_json(&exit_path, &bytes)?),
        None => None,
    };
    Ok(MonitorState {
        monitor_pid,
        monitor_alive: monitor_pid.is_some_and(|pid| is_monitor_of(pid, &state_dir)),
        init_pid,
        started_at,
        exit,
    })
}

/// Connects to the container's streams (see the crate docs for the
/// protocol). Fails when no monitor runs for `state_dir`.
pub fn attach(state_dir: &Path, streams: Streams) -> io::Result<UnixStream> {
    attach_with(state_dir, streams, false)
}

/// [`attach`], and with `stdin_once` the container's stdin is closed when
/// this client ends its input (`docker run -i` without a tty).
pub fn attach_with(state_dir: &Path, streams: Streams, stdin_once: bool) -> io::Result<UnixStream> {
    let address = layout::SocketPath::new(state_dir, layout::ATTACH_SOCKET, true)?;
    let mut socket = UnixStream::connect(address.path())?;
    let flags = u8::from(streams.stdin)
        | (u8::from(streams.stdout) << 1)
        | (u8::from(streams.stderr) << 2)
        | (u8::from(stdin_once) << 3);
    socket.write_all(&[flags])?;
    Ok(socket)
}

/// Sets the window size of the container's pty (no effect without a tty).
/// Fails when no monitor runs for `state_dir`.
pub fn resize(state_dir: &Path, height: u16, width: u16) -> io::Result<()> {
    // Non-blocking open: ENXIO at once when nobody reads the FIFO, rather
    // than hanging on a dead monitor.
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(file(state_dir, layout::CONTROL))?;
    fifo.write_all(format!("resize {height} {width}\n").as_bytes())
}

/// `config` with every path absolute, as the monitor runs from `/`.
fn absolute_config(
    config: &MonitorConfig,
    state_dir: &Path,
) -> Result<MonitorConfig, MonitorError> {
    let cwd = std::env::current_dir().map_err(|e| MonitorError::io(".", e))?;
    let abs = |p: &Path| cwd.join(p);
    let mut out = config.clone();
    out.state_dir = state_dir.to_path_buf();
    out.bundle = abs(&config.bundle);
    // A bare runtime name is looked up on PATH; only paths are anchored.
    if config.runtime.components().count() > 1 {
        out.runtime = abs(&config.runtime);
    }
    out.runtime_root = config.runtime_root.as_deref().map(abs);
    if let Some(log) = out.log.as_mut() {
        log.path = abs(&log.path);
        log.max_files = log.max_files.max(1);
    }
    Ok(out)
}

/// The monitor binary to run for `config`.
fn monitor_binary(config: &MonitorConfig) -> PathBuf {
    const NAME: &str = "sdc-docker-monitor";
    if let Some(binary) = &config.monitor_binary {
        return binary.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(NAME)))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(NAME))
}

/// The last lines of the monitor's own log, for an error message.
fn monitor_log_tail(state_dir: &Path) -> String {
    let text = std::fs::read_to_string(file(state_dir, layout::MONITOR_LOG)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("; ");
    if tail.is_empty() {
        "the monitor exited without a report".into()
    } else {
        tail
    }
}

/// The content of `path`, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, MonitorError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MonitorError::io(path, e)),
    }
}

/// A pid file's pid, `None` if the file does not exist.
fn read_pid(path: &Path) -> Result<Option<i32>, MonitorError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    String::from_utf8_lossy(&bytes)
        .trim()
        .parse::<i32>()
        .map(Some)
        .map_err(|e| MonitorError::Malformed {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// Whether `pid` is a live monitor of `state_dir`: its command line carries
/// `--state-dir <state_dir>`, which a reused pid will not (a zombie's
/// command line is empty).
fn is_monitor_of(pid: i32, state_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(arg) = args.next() {
        if arg == b"--state-dir" {
            use std::os::unix::ffi::OsStrExt;
            return args.next().map(OsStr::from_bytes) == Some(state_dir.as_os_str());
        }
    }
    false
}
