//! The process half of [`ZoneStreams`](crate::ZoneStreams) for the linux
//! driver: attach and resize through the zone's monitor, and exec with the
//! OCI runtime.
//!
//! - **attach** connects to the monitor's attach socket
//!   ([`sdc_docker_monitor::attach_with`]) and decodes its output frames into
//!   [`OutputChunk`]s; the caller's input goes to the socket raw, and
//!   shutting it down half-closes the socket, which ends the zone's stdin
//!   when `stdin_once` was asked.
//! - **resize** writes to the monitor's control FIFO.
//! - **exec** runs `runc exec --process <file>` as a child of the daemon
//!   (not of the monitor: an exec'd process is the caller's, and dies with
//!   its output). The process is the zone's own, as `oci` builds it for the
//!   init (user resolved in the zone's `/etc/passwd`, Docker's
//!   capabilities, the open-files limit), with the exec's args, environment,
//!   working directory and user. Without a tty the process has pipes; with
//!   one, runc's stdin and stdout are a pty of ours whose master carries
//!   both directions (see [`start_with_pty`]). runc's own failures (no such executable, …)
//!   reach the caller on the stderr stream, and the exit code is Docker's:
//!   127 for a missing executable, 126 for one that cannot be run.
//!
//! Every exec keeps its files (process JSON, pid file, runc's log) in a
//! directory of its own under the zone's
//! (`<zone>/exec/<n>/`), removed once runc exited. runc is killed when the
//! task reaping it is dropped (the daemon's runtime shutting down), and its
//! pipes and the pty master are closed when the caller drops the streams.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::process::{Child, Command};

use super::layout::ZoneDir;
use super::{LinuxDriver, blocking, oci, user};
use crate::driver::{ZoneError, ZoneState};
use crate::spec::ZoneSpec;
use crate::streams::{
    AttachOptions, ExecProcess, ExecSpec, Input, OutputChunk, Session, StdStream,
};

/// How long runc may take to start an exec'd process (to send the pty or
/// write the pid file).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How often to look for the pid file while runc starts the process.
const PID_POLL: Duration = Duration::from_millis(5);
/// Read buffer of output streams.
const CHUNK: usize = 32 * 1024;

/// Every capability, by number, for `exec --privileged`: Docker gives the
/// process those of them the daemon's own bounding set has (see
/// [`privileged_capabilities`]).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The zone's spec, checked to be running.
async fn running(
    d: &LinuxDriver,
    id: &str,
    op: &'static str,
) -> Result<(ZoneSpec, ZoneDir), ZoneError> {
    let (spec, info) = d.require(id).await?;
    if info.state != ZoneState::Running {
        return Err(ZoneError::WrongState {
            id: id.to_string(),
            state: info.state,
            op,
        });
    }
    Ok((spec, d.dir(id)?))
}

/// Connects to the running zone's process through its monitor.
pub(crate) async fn attach(
    d: &LinuxDriver,
    id: &str,
    options: AttachOptions,
) -> Result<Session, ZoneError> {
    let (_, dir) = running(d, id, "attach").await?;
    let state_dir = dir.run();
    let streams = sdc_docker_monitor::Streams {
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    let stdin_once = options.stdin_once;
    let socket = blocking(move || {
        let socket = sdc_docker_monitor::attach_with(&state_dir, streams, stdin_once)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| ZoneError::Runtime {
                op: "attach".to_string(),
                message: e.to_string(),
            })?;
        Ok(socket)
    })
    .await?;
    let socket = tokio::net::UnixStream::from_std(socket).map_err(|e| ZoneError::Runtime {
        op: "attach".to_string(),
        message: e.to_string(),
    })?;
    let (read, write) = socket.into_split();
    let (input, keep): (Option<Input>, _) = if options.stdin {
        (Some(Box::pin(write)), None)
    } else {
        // Dropping the write half would half-close the socket: keep it
        // with the output so the monitor sees no end of input.
        (None, Some(write))
    };
    tracing::debug!(zone = id, ?options, "attached");
    Ok(Session {
        input,
        output: Box::pin(frames(read, keep)),
    })
}

/// The monitor's output frames on `read` as chunks; `keep` lives as long
/// as the stream.
fn frames(
    read: tokio::net::unix::OwnedReadHalf,
    keep: Option<tokio::net::unix::OwnedWriteHalf>,
) -> impl Stream<Item = io::Result<OutputChunk>> + Send {
    futures::stream::unfold(Some((read, keep)), |state| async move {
        let (mut read, keep) = state?;
        match read_frame(&mut read).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some((read, keep)))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// One frame `[stream][len u32 BE][bytes]`; `None` at a clean end.
async fn read_frame(read: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<OutputChunk>> {
    let mut head = [0u8; 5];
    if read.read(&mut head[..1]).await? == 0 {
        return Ok(None);
    }
    read.read_exact(&mut head[1..]).await?;
    let (stream, len) = sdc_docker_monitor::frame::decode_header(&head)?;
    let stream = match stream {
        sdc_docker_monitor::OutputStream::Stdout => StdStream::Stdout,
        sdc_docker_monitor::OutputStream::Stderr => StdStream::Stderr,
    };
    let mut data = vec![0u8; len];
    read.read_exact(&mut data).await?;
    Ok(Some(OutputChunk {
        stream,
        data: Bytes::from(data),
    }))
}

/// Sets the window size of the running zone's pty.
pub(crate) async fn resize(
    d: &LinuxDriver,
    id: &str,
    height: u16,
    width: u16,
) -> Result<(), ZoneError> {
    let (spec, dir) = running(d, id, "resize").await?;
    if !spec.process.tty {
        return Err(ZoneError::BadRequest(format!(
            "cannot resize zone {id}: it has no tty"
        )));
    }
    let state_dir = dir.run();
    blocking(move || {
        sdc_docker_monitor::resize(&state_dir, height, width).map_err(|e| ZoneError::Runtime {
            op: "resize".to_string(),
            message: e.to_string(),
        })
    })
    .await
}

/// Starts `spec` in the running zone `id` with `runc exec`.
pub(crate) async fn exec(
    d: &LinuxDriver,
    id: &str,
    spec: &ExecSpec,
) -> Result<ExecProcess, ZoneError> {
    if spec.args.is_empty() {
        return Err(ZoneError::BadRequest(
            "No exec command specified".to_string(),
        ));
    }
    let (zone, dir) = running(d, id, "exec").await?;
    let work = {
        let (dir, exec) = (dir.clone(), spec.clone());
        blocking(move || {
            let process = process_json(&zone, &dir, &exec)?;
            let work = WorkDir::create(&dir)?;
            let bytes = serde_json::to_vec(&process).map_err(|e| ZoneError::Runtime {
                op: "exec".to_string(),
                message: e.to_string(),
            })?;
            std::fs::write(work.process(), bytes).map_err(ZoneError::io(format!(
                "writing {}",
                work.process().display()
            )))?;
            Ok(work)
        })
        .await?
    };

    let mut command = Command::new(&d.config.runtime);
    command
        .arg("--root")
        .arg(&d.config.runtime_root)
        .arg("--log")
        .arg(work.runc_log())
        .arg("--log-format")
        .arg("json")
        .arg("exec")
        .arg("--process")
        .arg(work.process())
        .arg("--pid-file")
        .arg(work.pid_file())
        .kill_on_drop(true);
    let spawn_error = |e: io::Error| ZoneError::Runtime {
        op: "exec".to_string(),
        message: format!("running {}: {e}", d.config.runtime.display()),
    };
    let started = if spec.tty {
        start_with_pty(command, id, spec.stdin, spawn_error)?
    } else {
        start_with_pipes(command, id, spec.stdin, spawn_error)?
    };
    let Started {
        mut child,
        input,
        output,
        resize,
        alive,
    } = started;

    // The pid file is written once the process runs; runc may fail first.
    let mut exited = None;
    let mut pid = None;
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    while pid.is_none() && exited.is_none() {
        tokio::select! {
            status = child.wait() => exited = Some(status),
            () = tokio::time::sleep(PID_POLL) => {
                pid = read_pid(&work.pid_file());
                if pid.is_none() && tokio::time::Instant::now() >= deadline {
                    return Err(ZoneError::Runtime {
                        op: "exec".to_string(),
                        message: format!("runc did not start the process within {START_DEADLINE:?}"),
                    });
                }
            }
        }
    }
    if pid.is_none() {
        pid = read_pid(&work.pid_file());
    }

    let (tx, rx) = tokio::sync::oneshot::channel();
    let zone = id.to_string();
    tokio::spawn(async move {
        let status = match exited {
            Some(status) => status,
            None => child.wait().await,
        };
        alive.store(false, Ordering::Release);
        let result = match status {
            Ok(status) => {
                let started = read_pid(&work.pid_file()).is_some();
                let log = work.runc_log();
                let code = exit_code(status);
                let code = if code != 0 && !started {
                    let said = tokio::task::spawn_blocking(move || runc_errors(&log))
                        .await
                        .unwrap_or_default();
                    match said.last() {
                        Some(message) => {
                            tracing::debug!(zone, %message, "runc exec failed");
                            docker_exit_code(message, code)
                        }
                        None => code,
                    }
                } else {
                    code
                };
                drop(work);
                Ok(code)
            }
            Err(e) => Err(ZoneError::Runtime {
                op: "exec".to_string(),
                message: format!("waiting for runc: {e}"),
            }),
        };
        let _ = tx.send(result);
    });
    let exit = async move {
        rx.await.unwrap_or_else(|_| {
            Err(ZoneError::Runtime {
                op: "exec".to_string(),
                message: "runc's reaper went away".to_string(),
            })
        })
    };
    tracing::debug!(zone = id, ?pid, args = ?spec.args, tty = spec.tty, "exec started");
    Ok(ExecProcess {
        pid,
        session: Session { input, output },
        exit: Box::pin(exit),
        resize,
    })
}

/// A process that relays an exec (runc, or SmartOS's zlogin) with the
/// exec's streams, before the exec is known to run.
pub(crate) struct Started {
    /// The relaying process.
    pub(crate) child: Child,
    /// Its stdin, when asked for.
    pub(crate) input: Option<Input>,
    /// Its output.
    pub(crate) output: crate::streams::Output,
    /// Sets the pty's size (with a pty only).
    pub(crate) resize: Option<Resize>,
    /// Whether the relay was not yet reaped (its pid is still its own):
    /// whoever reaps it clears it.
    pub(crate) alive: Arc<AtomicBool>,
}

/// Sets the window size of an exec's pty.
pub(crate) type Resize = Box<dyn Fn(u16, u16) -> Result<(), ZoneError> + Send + Sync>;

/// runc with pipes: runc hands its own stdio to the process, so what runc
/// itself prints when it fails is on the process's stderr as well.
fn start_with_pipes(
    mut command: Command,
    id: &str,
    stdin: bool,
    spawn_error: impl FnOnce(io::Error) -> ZoneError,
) -> Result<Started, ZoneError> {
    command.arg(id);
    spawn_with_pipes(command, stdin, spawn_error)
}

/// Starts `command` with pipes for its stdin (when `stdin`, else
/// `/dev/null`), stdout and stderr.
pub(crate) fn spawn_with_pipes(
    mut command: Command,
    stdin: bool,
    spawn_error: impl FnOnce(io::Error) -> ZoneError,
) -> Result<Started, ZoneError> {
    command
        .stdin(if stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().map_err(spawn_error)?;
    let input = child
        .stdin
        .take()
        .map(|w| Box::pin(ClosingWriter(Some(w))) as Input);
    let stdout = child.stdout.take().map(|r| reader(r, StdStream::Stdout));
    let stderr = child.stderr.take().map(|r| reader(r, StdStream::Stderr));
    let output = futures::stream::select(
        futures::stream::iter(stdout).flatten(),
        futures::stream::iter(stderr).flatten(),
    );
    Ok(Started {
        child,
        input,
        output: Box::pin(output),
        resize: None,
        alive: Arc::new(AtomicBool::new(true)),
    })
}

/// runc with a terminal. runc only hands a pty to a console socket when it
/// detaches, and then it cannot report the exit status; attached, it makes
/// the container's pty itself and copies between it and its own stdin and
/// stdout, which must be a terminal: a pty of ours, whose master carries
/// input and output here. runc puts that pty in raw mode and copies its
/// size to the container's on `SIGWINCH`, which [`Started::resize`] sends
/// after setting the size. runc's stderr (its own messages only) becomes
/// the stderr stream.
fn start_with_pty(
    mut command: Command,
    id: &str,
    stdin: bool,
    spawn_error: impl FnOnce(io::Error) -> ZoneError,
) -> Result<Started, ZoneError> {
    command.arg("--tty").arg(id);
    spawn_with_pty(command, stdin, spawn_error)
}

/// Starts `command` with a new pty of ours as its stdin and stdout (its
/// stderr a pipe): for a relay that copies between its terminal and the
/// process's and follows its terminal's size on `SIGWINCH`, as runc and
/// zlogin do. The input goes to the pty's master when `stdin`.
pub(crate) fn spawn_with_pty(
    mut command: Command,
    stdin: bool,
    spawn_error: impl FnOnce(io::Error) -> ZoneError,
) -> Result<Started, ZoneError> {
    let pty_error = |e: io::Error| ZoneError::Runtime {
        op: "exec".to_string(),
        message: format!("allocating a pty: {e}"),
    };
    let (master, slave) = open_pty().map_err(pty_error)?;
    let slave_out = slave.try_clone().map_err(pty_error)?;
    command
        .stdin(std::process::Stdio::from(slave))
        .stdout(std::process::Stdio::from(slave_out))
        .stderr(std::process::Stdio::piped());
    let spawned = command.spawn();
    // Our copies of the slave must go, or the master never sees its end.
    drop(command);
    let mut child = spawned.map_err(spawn_error)?;
    let relay_said =
        futures::stream::iter(child.stderr.take().map(|r| reader(r, StdStream::Stderr))).flatten();

    let resizer = rustix::io::fcntl_dupfd_cloexec(&master, 0).map_err(|e| pty_error(e.into()))?;
    rustix::io::ioctl_fionbio(&master, true).map_err(|e| pty_error(e.into()))?;
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and answers
    // the same descriptor until the AsyncFd is dropped.
    let master = unsafe { AsyncFd::register(master) }.map_err(|e| pty_error(e.into_parts().1))?;
    let master = Arc::new(master);
    let output = futures::stream::select(pty_reader(master.clone()), relay_said);
    let relay = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32));
    let alive = Arc::new(AtomicBool::new(true));
    let relay_alive = alive.clone();
    let resize = move |height: u16, width: u16| {
        let size = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&resizer, size).map_err(|e| ZoneError::Runtime {
            op: "resize".to_string(),
            message: e.to_string(),
        })?;
        // The relay gone (the process exited) is fine: nothing to resize.
        if let Some(relay) = relay.filter(|_| relay_alive.load(Ordering::Acquire)) {
            let _ = rustix::process::kill_process(relay, rustix::process::Signal::WINCH);
        }
        Ok(())
    };
    Ok(Started {
        child,
        input: stdin.then(|| Box::pin(PtyWriter(Some(master))) as Input),
        output: Box::pin(output),
        resize: Some(Box::new(resize)),
        alive,
    })
}

/// A new pty: its master and its slave, neither becoming anyone's
/// controlling terminal.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // runc gives the container's pty the size of this one; a new pty is
    // 0×0, which programs take for "no size" (busybox `stty size` fails),
    // until a resize arrives. Start at the classic 24×80.
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok((master, slave))
}

/// What `r` reads, as chunks of `stream`, until its end.
pub(crate) fn reader(
    r: impl AsyncRead + Unpin + Send + 'static,
    stream: StdStream,
) -> impl Stream<Item = io::Result<OutputChunk>> + Send {
    futures::stream::unfold(Some(r), move |state| async move {
        let mut r = state?;
        let mut buf = BytesMut::with_capacity(CHUNK);
        match r.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((
                Ok(OutputChunk {
                    stream,
                    data: buf.freeze(),
                }),
                Some(r),
            )),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// What the pty's master reads, as stdout, until every slave is closed
/// (`EIO`).
fn pty_reader(master: Arc<AsyncFd<OwnedFd>>) -> impl Stream<Item = io::Result<OutputChunk>> + Send {
    futures::stream::unfold(Some(master), |state| async move {
        let master = state?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut guard = match master.readable().await {
                Ok(guard) => guard,
                Err(e) => return Some((Err(e), None)),
            };
            let read = guard
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf[..]).map_err(io::Error::from));
            match read {
                Err(_would_block) => continue,
                Ok(Ok(0)) => return None,
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    let chunk = OutputChunk {
                        stream: StdStream::Stdout,
                        data: Bytes::from(buf),
                    };
                    return Some((Ok(chunk), Some(master)));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return None;
                }
                Ok(Err(e)) => return Some((Err(e), None)),
            }
        }
    })
}

/// Input to the pty's master; shutting it down only ends this input (a
/// terminal has no end of input but the `^D` the caller may send).
struct PtyWriter(Option<Arc<AsyncFd<OwnedFd>>>);

impl AsyncWrite for PtyWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(master) = &self.0 else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        loop {
            let mut guard = ready!(master.poll_write_ready(cx))?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

/// A writer whose shutdown closes it (tokio's `ChildStdin` stays open).
pub(crate) struct ClosingWriter<W>(pub(crate) Option<W>);

impl<W: AsyncWrite + Unpin> AsyncWrite for ClosingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(w) = self.0.as_mut() {
            ready!(Pin::new(w).poll_flush(cx))?;
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

/// The OCI `process` of `exec` in `zone`: the zone's own process (as
/// [`oci::runtime_config`] makes it) with the exec's args, environment,
/// working directory, user, tty and capabilities.
fn process_json(zone: &ZoneSpec, dir: &ZoneDir, exec: &ExecSpec) -> Result<Value, ZoneError> {
    let user_spec = if exec.user.is_empty() {
        zone.process.user.as_str()
    } else {
        exec.user.as_str()
    };
    let root = dir.rootfs();
    let exec_user = user::resolve(
        user_spec,
        &user::read_etc(&root, "passwd"),
        &user::read_etc(&root, "group"),
    )
    .map_err(|e| ZoneError::BadRequest(e.to_string()))?;
    let mut env = merge_env(&zone.process.env, &exec.env);
    if exec.tty && !env.iter().any(|e| env_key(e) == "TERM") {
        env.push("TERM=xterm".to_string());
    }
    let cwd = if exec.workdir.is_empty() {
        zone.process.cwd.as_str()
    } else {
        exec.workdir.as_str()
    };
    let caps = if exec.privileged {
        privileged_capabilities()
    } else {
        oci::CAPABILITIES.to_vec()
    };
    let cwd = if cwd.is_empty() { "/" } else { cwd };
    Ok(oci::process(
        exec.tty,
        &exec_user,
        &exec.args,
        &env,
        cwd,
        &caps,
        oci::nofile_limit(),
    ))
}

/// The capabilities of a privileged process: all those in this process's
/// bounding set (`CapBnd` of `/proc/self/status`), as Docker's
/// `GetAllCapabilities`; runc cannot grant more. All of them when the set
/// cannot be read.
fn privileged_capabilities() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        });
    bounding_capabilities(bounding.unwrap_or(u64::MAX))
}

/// The capabilities whose bit is set in `mask`.
fn bounding_capabilities(mask: u64) -> Vec<&'static str> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// `KEY` of `KEY=value` (the whole entry without `=`).
pub(crate) fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `base` with each of `extra` replacing the entry of its key, or added.
pub(crate) fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut env = base.to_vec();
    for entry in extra {
        match env.iter_mut().find(|e| env_key(e) == env_key(entry)) {
            Some(slot) => slot.clone_from(entry),
            None => env.push(entry.clone()),
        }
    }
    env
}

/// The exit code of runc, which is its process's (`128 + N` for a signal).
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => 255,
    }
}

/// Docker's exit code for a process runc could not start: 127 when the
/// executable is missing, 126 when it may not be run, else runc's `code`.
fn docker_exit_code(message: &str, code: i64) -> i64 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        code
    }
}

/// The error messages of runc's JSON log.
fn runc_errors(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|entry| entry["msg"].as_str().map(String::from))
        .collect()
}

/// The pid in `path`, once runc wrote it.
fn read_pid(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|p| *p > 0)
}

/// The files of one exec, removed with this value.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// A new empty directory under `<zone>/exec/`.
    fn create(zone: &ZoneDir) -> Result<WorkDir, ZoneError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = zone.path().join("exec");
        std::fs::create_dir_all(&parent)
            .map_err(ZoneError::io(format!("creating {}", parent.display())))?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ZoneError::io(format!("creating {}", path.display()))(e));
                }
            }
        }
    }

    fn process(&self) -> PathBuf {
        self.path.join("process.json")
    }

    fn pid_file(&self) -> PathBuf {
        self.path.join("pid")
    }

    fn runc_log(&self) -> PathBuf {
        self.path.join("runc.log")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "removing an exec's files");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_overrides_the_zones_by_key_and_adds_the_rest() {
        let base = ["PATH=/bin", "A=1", "B=2"].map(String::from);
        let extra = ["A=9", "C=3"].map(String::from);
        assert_eq!(merge_env(&base, &extra), ["PATH=/bin", "A=9", "B=2", "C=3"]);
    }

    #[test]
    fn privileged_capabilities_are_those_of_the_bounding_set() {
        assert_eq!(bounding_capabilities(u64::MAX).len(), 41);
        assert_eq!(ALL_CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL_CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        let without_sys_resource = bounding_capabilities(0x01ff_feff_ffff);
        assert_eq!(without_sys_resource.len(), 40);
        assert!(!without_sys_resource.contains(&"CAP_SYS_RESOURCE"));
        assert_eq!(
            bounding_capabilities(0b101),
            ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]
        );
    }

    #[test]
    fn runcs_start_failures_map_to_dockers_exit_codes() {
        let not_found = "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert_eq!(docker_exit_code(not_found, 255), 127);
        let denied =
            "exec failed: unable to start container process: exec: \"/bin\": permission denied";
        assert_eq!(docker_exit_code(denied, 255), 126);
        assert_eq!(docker_exit_code("something else", 255), 255);
    }
}
