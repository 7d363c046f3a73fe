//! The monitor process itself (the `sdc-docker-monitor` binary is a call of
//! [`main`]). It runs in two stages so the daemon never has to reap it:
//!
//! 1. started by [`spawn`](crate::spawn) with `--state-dir DIR`, it leaves
//!    the daemon's session (`setsid`), starts itself again with
//!    `--detached`, and exits at once (the daemon waits for that);
//! 2. the detached copy, re-parented to init and not a session leader (it
//!    can never gain a controlling terminal), becomes the subreaper of the
//!    container, runs `runc run --detach`, reports on its stdout
//!    — the pipe [`spawn`](crate::spawn) reads — and lets go of it, then
//!    runs its event loop until the init exits, writes `exit.json` and
//!    exits. It never runs `runc delete` after a run: that is the driver's.
//!
//! Its stdin is `/dev/null`, its stderr `monitor.log` (panics land there),
//! its working directory `/` (it holds no mount busy).

mod cgroup;
mod event_loop;
mod journal;
mod jsonlog;
mod lines;
mod runtime;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::SystemTime;

use rustix::process::{Pid, PidfdFlags, getpid, pidfd_open, set_child_subreaper};

use self::cgroup::OomWatch;
use self::event_loop::{Output, Session};
use self::journal::Journal;
use self::jsonlog::JsonLog;
use self::runtime::{ContainerStdio, Failure, Runtime};
use crate::layout::{self, file, write_atomic};
use crate::readiness::Readiness;
use crate::{ExitRecord, MonitorConfig, OutputStream, timefmt};

/// The monitor binary's entry point; `args` without the program name.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut state_dir = None;
    let mut detached = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--state-dir") => state_dir = args.next().map(PathBuf::from),
            Some("--detached") => detached = true,
            _ => {
                let _ = writeln!(
                    std::io::stderr(),
                    "usage: sdc-docker-monitor --state-dir DIR (started by sdc-docker)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(state_dir) = state_dir else {
        let _ = writeln!(std::io::stderr(), "sdc-docker-monitor: --state-dir missing");
        return ExitCode::from(2);
    };
    if detached {
        serve(&state_dir);
        ExitCode::SUCCESS
    } else {
        detach(&state_dir)
    }
}

/// Stage 1: a new session, the detached copy, and out.
fn detach(state_dir: &Path) -> ExitCode {
    let _ = rustix::process::setsid();
    close_inherited_fds_on_exec();
    let journal_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(file(state_dir, layout::MONITOR_LOG));
    let stderr = journal_file
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let started = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--detached")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(stderr)
            .spawn()
    });
    match started {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            report(&Readiness::Failed {
                message: format!("cannot start the detached monitor: {e}"),
            });
            ExitCode::FAILURE
        }
    }
}

/// Marks every descriptor above stderr close-on-exec, so descriptors the
/// spawner leaked (a daemon's sockets, a test harness's pipes) reach neither
/// the detached monitor nor the container.
fn close_inherited_fds_on_exec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: this stage is single-threaded and opens nothing meanwhile,
        // so every listed descriptor but the listing's own (closed by now,
        // which only makes the call fail with EBADF) is open and stays so.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
}

/// Sends the one report to the spawner and closes the pipe to it.
fn report(readiness: &Readiness) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&readiness.to_line());
    let _ = out.flush();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

/// Stage 2: the container's whole life.
fn serve(state_dir: &Path) {
    let journal = Journal::open(state_dir);
    let fail = |message: String| {
        journal.note(&message);
        report(&Readiness::Failed { message });
    };
    let config_path = file(state_dir, layout::CONFIG);
    let config: MonitorConfig = match std::fs::read(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => return fail(format!("{}: {e}", config_path.display())),
    };
    if let Err(e) = write_atomic(
        &file(state_dir, layout::MONITOR_PID),
        getpid().as_raw_nonzero().to_string().as_bytes(),
    ) {
        return fail(format!("writing monitor.pid: {e}"));
    }
    // Orphans of the container (its init, once `runc run` exits) become
    // our children, so we can wait for the init.
    if let Err(e) = set_child_subreaper(Some(getpid())) {
        return fail(format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    // The endpoints exist before the container starts, so a client may
    // connect as soon as `spawn` returns.
    let endpoints = match Endpoints::open(state_dir) {
        Ok(endpoints) => endpoints,
        Err(e) => return fail(e),
    };
    let log = match config.log.clone().map(JsonLog::open).transpose() {
        Ok(log) => log,
        Err(e) => {
            endpoints.remove(state_dir);
            return fail(format!("opening the container log: {e}"));
        }
    };

    let runtime = Runtime::new(&config);
    let init_pid_file = file(state_dir, layout::INIT_PID);
    let run_began = std::time::Instant::now();
    let started = runtime.run(&init_pid_file).and_then(|stdio| {
        let init = read_init_pid(&init_pid_file).map_err(Failure::Monitor)?;
        // Our child since runc exited (we are its subreaper), reaped by
        // nobody but us: the pid cannot be reused before we wait for it.
        let init_fd = pidfd_open(init, PidfdFlags::empty())
            .map_err(|e| Failure::Monitor(format!("pidfd_open: {e}")))?;
        let oom = OomWatch::of_process(init.as_raw_nonzero().get());
        Ok((stdio, init, init_fd, oom))
    });
    let (stdio, init, init_fd, oom) = match started {
        Ok(started) => started,
        Err(failure) => {
            runtime.delete_force();
            endpoints.remove(state_dir);
            let readiness = match failure {
                Failure::Runtime(stderr) => Readiness::RuntimeFailed { stderr },
                Failure::Monitor(message) => Readiness::Failed { message },
            };
            journal.note(format_args!("not started: {readiness:?}"));
            return report(&readiness);
        }
    };
    let runtime_took = run_began.elapsed();
    let started_at = SystemTime::now();
    let started_text = timefmt::format(started_at);
    if let Err(e) = write_atomic(
        &file(state_dir, layout::STARTED_AT),
        started_text.as_bytes(),
    ) {
        journal.note(format_args!("writing started_at: {e}"));
    }
    report(&Readiness::Running {
        monitor_pid: getpid().as_raw_nonzero().get(),
        init_pid: init.as_raw_nonzero().get(),
        started_at: started_text,
        runtime_micros: u64::try_from(runtime_took.as_micros()).unwrap_or(u64::MAX),
    });

    let (outputs, input, pty) = match stdio {
        ContainerStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            vec![
                Output::new(stdout, OutputStream::Stdout),
                Output::new(stderr, OutputStream::Stderr),
            ],
            stdin,
            None,
        ),
        ContainerStdio::Pty(master) => {
            let output = rustix::io::fcntl_dupfd_cloexec(&master, 0);
            let input = rustix::io::fcntl_dupfd_cloexec(&master, 0);
            match (output, input) {
                (Ok(output), Ok(input)) => (
                    vec![Output::new(output, OutputStream::Stdout)],
                    config.open_stdin.then_some(input),
                    Some(master),
                ),
                _ => {
                    journal.note("cannot duplicate the pty master; output goes unread");
                    (Vec::new(), None, Some(master))
                }
            }
        }
    };
    if let Some(input) = &input {
        let _ = rustix::io::ioctl_fionbio(input, true);
    }
    let (status, finished_at) = event_loop::run(Session {
        init,
        init_fd: Some(init_fd),
        outputs,
        input,
        pty,
        listener: endpoints.attach,
        control: endpoints.control,
        log,
        journal: &journal,
    });

    let record = ExitRecord {
        exit_code: status
            .exit_status()
            .or_else(|| status.terminating_signal().map(|signal| 128 + signal))
            .unwrap_or(-1),
        signal: status.terminating_signal(),
        finished_at,
        oom_killed: oom.fired(),
    };
    if let Err(e) = write_atomic(&file(state_dir, layout::EXIT), &record.to_json()) {
        journal.note(format_args!("writing exit.json: {e}"));
    }
    let _ = std::fs::remove_file(file(state_dir, layout::ATTACH_SOCKET));
    let _ = std::fs::remove_file(file(state_dir, layout::CONTROL));
}

/// The init's pid from runc's pid file.
fn read_init_pid(path: &Path) -> Result<Pid, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{}: bad pid {text:?}", path.display()))
}

/// The attach socket and the control FIFO.
struct Endpoints {
    attach: UnixListener,
    control: std::fs::File,
}

impl Endpoints {
    /// Binds `attach.sock` and creates and opens `ctl`.
    fn open(state_dir: &Path) -> Result<Self, String> {
        let attach_path = file(state_dir, layout::ATTACH_SOCKET);
        let attach = layout::SocketPath::new(state_dir, layout::ATTACH_SOCKET, true)
            .and_then(|address| UnixListener::bind(address.path()))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("{}: {e}", attach_path.display()))?;
        let control_path = file(state_dir, layout::CONTROL);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &control_path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| format!("{}: {e}", control_path.display()))?;
        // Read-write: the FIFO then never reports EOF between writers.
        let control = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&control_path)
            .map_err(|e| format!("{}: {e}", control_path.display()))?;
        Ok(Endpoints { attach, control })
    }

    /// Removes both from the state directory.
    fn remove(self, state_dir: &Path) {
        let _ = std::fs::remove_file(file(state_dir, layout::ATTACH_SOCKET));
        let _ = std::fs::remove_file(file(state_dir, layout::CONTROL));
    }
}
