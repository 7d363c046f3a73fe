//! Driving the OCI runtime: `runc run --detach` with the container's stdio
//! (pipes the monitor keeps the other ends of, or a pty whose master runc
//! sends back over the console socket), and `runc delete --force` to clean
//! up after a failed start. One `run` rather than `create` then `start`:
//! each runtime call is a Go program starting (~10 ms), and the monitor, as
//! the container's subreaper, inherits the init when runc exits, so even an
//! init that exits at once is still its unreaped child. runc's error text is taken from its
//! stderr (where it prints the error even with `--log`) or, failing that,
//! from the error entries of its JSON log.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use rustix::pipe::{PipeFlags, pipe_with};

use crate::{MonitorConfig, layout};

/// The monitor's ends of the container's stdio.
pub(crate) enum ContainerStdio {
    /// Separate pipes: stdin's write end (when kept open), stdout's and
    /// stderr's read ends.
    Pipes {
        /// Where attach clients' input goes.
        stdin: Option<OwnedFd>,
        /// The container's stdout.
        stdout: OwnedFd,
        /// The container's stderr.
        stderr: OwnedFd,
    },
    /// The master side of the container's pty.
    Pty(OwnedFd),
}

/// Why the runtime did not give us a container.
pub(crate) enum Failure {
    /// The runtime refused; its message.
    Runtime(String),
    /// Something on our side broke.
    Monitor(String),
}

/// The runtime invocation of one container.
pub(crate) struct Runtime<'a> {
    config: &'a MonitorConfig,
    log: PathBuf,
}

impl<'a> Runtime<'a> {
    /// The runtime of `config`, logging to `state_dir/runc.log`.
    pub(crate) fn new(config: &'a MonitorConfig) -> Self {
        Runtime {
            config,
            log: layout::file(&config.state_dir, layout::RUNTIME_LOG),
        }
    }

    /// `runc [--root R] --log L --log-format json`.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.config.runtime);
        if let Some(root) = &self.config.runtime_root {
            command.arg("--root").arg(root);
        }
        command
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        command
    }

    /// `runc run --detach`: the container's process runs once this returns.
    pub(crate) fn run(&self, init_pid_file: &Path) -> Result<ContainerStdio, Failure> {
        let mut command = self.command();
        command
            .arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(&self.config.bundle)
            .arg("--pid-file")
            .arg(init_pid_file);
        if self.config.tty {
            self.create_with_pty(command)
        } else {
            self.create_with_pipes(command)
        }
    }

    fn create_with_pipes(&self, mut command: Command) -> Result<ContainerStdio, Failure> {
        let broken = |e: std::io::Error| Failure::Monitor(format!("stdio pipes: {e}"));
        let (stdout, stdout_w) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| broken(e.into()))?;
        let (stderr, stderr_w) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| broken(e.into()))?;
        let (stdin, stdin_r) = if self.config.open_stdin {
            let (r, w) = pipe_with(PipeFlags::CLOEXEC).map_err(|e| broken(e.into()))?;
            (Some(w), Stdio::from(r))
        } else {
            (None, Stdio::null())
        };
        // runc hands its own stdio to the container's init.
        command
            .arg(&self.config.id)
            .stdin(stdin_r)
            .stdout(Stdio::from(stdout_w))
            .stderr(Stdio::from(stderr_w));
        let status = command.status();
        // Dropping the command closes our copies of the container's ends, so
        // the read ends see EOF once the container closes them.
        drop(command);
        let status = status.map_err(|e| {
            Failure::Monitor(format!("cannot run {}: {e}", self.config.runtime.display()))
        })?;
        if !status.success() {
            let said = read_available(&stderr);
            return Err(Failure::Runtime(self.message(&said, "run", status)));
        }
        Ok(ContainerStdio::Pipes {
            stdin,
            stdout,
            stderr,
        })
    }

    fn create_with_pty(&self, mut command: Command) -> Result<ContainerStdio, Failure> {
        let socket_path = layout::file(&self.config.state_dir, layout::CONSOLE_SOCKET);
        // runc connects to it, so the address must work from its process.
        let address =
            layout::SocketPath::new(&self.config.state_dir, layout::CONSOLE_SOCKET, false)
                .map_err(|e| Failure::Monitor(format!("{}: {e}", socket_path.display())))?;
        let listener = UnixListener::bind(address.path())
            .map_err(|e| Failure::Monitor(format!("{}: {e}", socket_path.display())))?;
        let (stderr, stderr_w) = pipe_with(PipeFlags::CLOEXEC)
            .map_err(|e| Failure::Monitor(format!("stderr pipe: {e}")))?;
        command
            .arg("--console-socket")
            .arg(address.path())
            .arg(&self.config.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr_w));
        let child = command.spawn();
        drop(command);
        let mut child = child.map_err(|e| {
            Failure::Monitor(format!("cannot run {}: {e}", self.config.runtime.display()))
        })?;
        let master = receive_console(&listener, &mut child);
        let _ = std::fs::remove_file(&socket_path);
        let status = child
            .wait()
            .map_err(|e| Failure::Monitor(format!("waiting for runc run: {e}")))?;
        if !status.success() {
            let said = read_available(&stderr);
            return Err(Failure::Runtime(self.message(&said, "run", status)));
        }
        match master {
            Ok(master) => Ok(ContainerStdio::Pty(master)),
            Err(e) => Err(Failure::Monitor(format!("console socket: {e}"))),
        }
    }

    /// `runc delete --force`, after a failed start: leaves no container behind.
    pub(crate) fn delete_force(&self) {
        let _ = self
            .command()
            .arg("delete")
            .arg("--force")
            .arg(&self.config.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The runtime's message: what it printed, else the errors of its log.
    fn message(&self, stderr: &str, step: &str, status: std::process::ExitStatus) -> String {
        let said = stderr.trim();
        if !said.is_empty() {
            return said.to_string();
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let errors: Vec<String> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| {
                matches!(
                    entry.get("level").and_then(|l| l.as_str()),
                    Some("error" | "fatal")
                )
            })
            .filter_map(|entry| entry.get("msg").and_then(|m| m.as_str()).map(String::from))
            .collect();
        match errors.last() {
            Some(last) => last.clone(),
            None => format!("runc {step} failed ({status})"),
        }
    }
}

/// Accepts runc's connection on the console socket and takes the pty
/// master it sends with `SCM_RIGHTS`, while watching that runc is still
/// alive (it may fail before it connects).
fn receive_console(listener: &UnixListener, child: &mut Child) -> std::io::Result<OwnedFd> {
    let tick = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: Duration::from_millis(100).as_nanos() as i64,
    };
    loop {
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[0].revents().contains(PollFlags::IN) {
            let (stream, _) = listener.accept()?;
            return receive_fd(&stream);
        }
        if child.try_wait()?.is_some() {
            return Err(std::io::Error::other(
                "runc exited without sending a console",
            ));
        }
    }
}

/// The one file descriptor sent on `stream`.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // runc sends the pty's name as the data.
    let mut name = [0u8; 256];
    recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::other(
        "no file descriptor on the console socket",
    ))
}

/// What can be read from `fd` now, without waiting.
fn read_available(fd: &OwnedFd) -> String {
    let _ = rustix::io::ioctl_fionbio(fd, true);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while bytes.len() < 64 * 1024 {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
