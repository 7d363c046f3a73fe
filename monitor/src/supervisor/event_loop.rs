//! The monitor's one loop, on poll(2), from `runc run` until the init has
//! exited and its output is drained: container output goes to the log and
//! to the attach clients that want it, clients' input goes to the
//! container's stdin, `ctl` commands resize the pty, and children are
//! reaped (the monitor is their subreaper) until the init is among them.
//!
//! Nothing here blocks: a container that does not read its stdin holds
//! further client input back (clients are not read meanwhile), and a client
//! that does not read its output is disconnected once 256 KiB wait for it,
//! so neither can stall the log. After the init exited the loop goes on
//! until every output stream reached its end, for at most [`DRAIN`], as
//! leftover processes outside a pid namespace may hold them open.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions, WaitStatus, wait};

use super::journal::Journal;
use super::jsonlog::JsonLog;
use super::lines::LineSplitter;
use crate::OutputStream;

/// How long to wait for the output's end after the init exited.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);
/// The most output that may wait for one attach client.
const CLIENT_BACKLOG: usize = 256 * 1024;
/// Attach flag: the client's input goes to stdin.
const FLAG_STDIN: u8 = 0b0001;
/// Attach flag: close the container's stdin when this client's input ends.
const FLAG_STDIN_ONCE: u8 = 0b1000;
/// How often to reap strays when nothing else happens.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// One output stream of the container.
pub(crate) struct Output {
    /// Its read end (or the pty master), non-blocking.
    pub(crate) fd: OwnedFd,
    /// Which stream it is.
    pub(crate) stream: OutputStream,
    /// Its unfinished line.
    lines: LineSplitter,
    /// It reached its end; dropped after this turn.
    ended: bool,
}

impl Output {
    /// Wraps a read end, making it non-blocking.
    pub(crate) fn new(fd: OwnedFd, stream: OutputStream) -> Self {
        let _ = rustix::io::ioctl_fionbio(&fd, true);
        Output {
            fd,
            stream,
            lines: LineSplitter::default(),
            ended: false,
        }
    }
}

/// Everything the loop works with.
pub(crate) struct Session<'a> {
    /// The init's pid.
    pub(crate) init: Pid,
    /// Readable once the init exited (a pidfd).
    pub(crate) init_fd: Option<OwnedFd>,
    /// The container's output streams still open.
    pub(crate) outputs: Vec<Output>,
    /// The container's stdin (pipe write end or a dup of the pty master).
    pub(crate) input: Option<OwnedFd>,
    /// The pty master, for resizes.
    pub(crate) pty: Option<OwnedFd>,
    /// The attach socket, non-blocking.
    pub(crate) listener: UnixListener,
    /// The control FIFO, opened read-write so it never reports EOF.
    pub(crate) control: File,
    /// The json-file log, if any.
    pub(crate) log: Option<JsonLog>,
    /// Where problems go.
    pub(crate) journal: &'a Journal,
}

/// An attach client.
struct Client {
    socket: UnixStream,
    /// Its flags byte, once received.
    flags: Option<u8>,
    /// Encoded frames not yet written.
    backlog: Vec<u8>,
    /// It ended its input.
    input_done: bool,
    /// It is gone or to be dropped.
    closed: bool,
}

/// What a poll entry stands for.
#[derive(Clone, Copy)]
enum Slot {
    Init,
    Output(usize),
    Listener,
    Control,
    Input,
    Client(usize),
}

/// The state of the loop beyond its inputs.
struct Pump<'a> {
    session: Session<'a>,
    clients: Vec<Client>,
    input_backlog: Vec<u8>,
    close_input_when_flushed: bool,
    control_buf: Vec<u8>,
    log_failed: bool,
    exit: Option<(WaitStatus, SystemTime)>,
}

/// Runs until the init exited and the output is drained; returns its wait
/// status and when it was reaped.
pub(crate) fn run(session: Session<'_>) -> (WaitStatus, SystemTime) {
    let mut pump = Pump {
        session,
        clients: Vec::new(),
        input_backlog: Vec::new(),
        close_input_when_flushed: false,
        control_buf: Vec::new(),
        log_failed: false,
        exit: None,
    };
    let mut drain_until: Option<Instant> = None;
    loop {
        pump.reap();
        if let Some(exit) = pump.exit {
            let deadline = *drain_until.get_or_insert_with(|| {
                // Nobody can read stdin any more.
                pump.session.input = None;
                pump.input_backlog.clear();
                Instant::now() + DRAIN
            });
            if pump.session.outputs.is_empty() || Instant::now() >= deadline {
                return pump.finish(exit);
            }
        }
        let timeout = match drain_until {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => REAP_EVERY,
        };
        pump.turn(timeout);
    }
}

impl Pump<'_> {
    /// One poll and the handling of what it reported.
    fn turn(&mut self, timeout: Duration) {
        let mut slots = Vec::new();
        let mut revents = Vec::new();
        {
            let s = &self.session;
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            if let Some(fd) = &s.init_fd {
                fds.push(PollFd::new(fd, PollFlags::IN));
                slots.push(Slot::Init);
            }
            for (i, output) in s.outputs.iter().enumerate() {
                fds.push(PollFd::new(&output.fd, PollFlags::IN));
                slots.push(Slot::Output(i));
            }
            fds.push(PollFd::new(&s.listener, PollFlags::IN));
            slots.push(Slot::Listener);
            fds.push(PollFd::new(&s.control, PollFlags::IN));
            slots.push(Slot::Control);
            if let Some(input) = &s.input
                && !self.input_backlog.is_empty()
            {
                fds.push(PollFd::new(input, PollFlags::OUT));
                slots.push(Slot::Input);
            }
            for (i, client) in self.clients.iter().enumerate() {
                let mut events = PollFlags::empty();
                if !client.input_done && (client.flags.is_none() || self.input_backlog.is_empty()) {
                    events |= PollFlags::IN;
                }
                if !client.backlog.is_empty() {
                    events |= PollFlags::OUT;
                }
                fds.push(PollFd::new(&client.socket, events));
                slots.push(Slot::Client(i));
            }
            let timeout = Timespec {
                tv_sec: timeout.as_secs() as i64,
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) => {}
                Err(Errno::INTR) => return,
                Err(e) => {
                    self.session.journal.note(format_args!("poll: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
            revents.extend(fds.iter().map(|fd| fd.revents()));
        }
        for (slot, events) in slots.into_iter().zip(revents) {
            if events.is_empty() {
                continue;
            }
            match slot {
                Slot::Init => self.reap(),
                Slot::Output(i) => self.read_output(i),
                Slot::Listener => self.accept(),
                Slot::Control => self.read_control(),
                Slot::Input => self.flush_input(),
                Slot::Client(i) => self.serve_client(i, events),
            }
        }
        self.clients.retain(|c| !c.closed);
        self.session.outputs.retain(|o| o.stream_open());
    }

    /// Reaps every exited child, noting the init's status.
    fn reap(&mut self) {
        loop {
            match wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if pid == self.session.init {
                        self.exit = Some((status, SystemTime::now()));
                        self.session.init_fd = None;
                    }
                }
                Ok(None) | Err(Errno::CHILD) => return,
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.session.journal.note(format_args!("waitpid: {e}"));
                    return;
                }
            }
        }
    }

    /// Reads what one output stream has and passes it on.
    fn read_output(&mut self, i: usize) {
        let mut buf = [0u8; 8192];
        let Some(output) = self.session.outputs.get_mut(i) else {
            return;
        };
        let n = match rustix::io::read(&output.fd, &mut buf) {
            Ok(n) => n,
            Err(Errno::AGAIN | Errno::INTR) => return,
            // EIO: the pty's last slave is closed, its end of stream.
            Err(Errno::IO) => 0,
            Err(e) => {
                self.session
                    .journal
                    .note(format_args!("reading {}: {e}", output.stream.name()));
                0
            }
        };
        let stream = output.stream;
        if n == 0 {
            output.close();
            let mut lines = std::mem::take(&mut output.lines);
            lines.finish(&mut |entry| self.log_entry(stream, entry));
            return;
        }
        let data = &buf[..n];
        for client in &mut self.clients {
            if client.flags.is_some_and(|flags| flags & stream.flag() != 0) {
                client.send(stream, data, self.session.journal);
            }
        }
        let mut lines = std::mem::take(&mut self.session.outputs[i].lines);
        lines.push(data, &mut |entry| self.log_entry(stream, entry));
        self.session.outputs[i].lines = lines;
    }

    /// Writes one log entry; a failing log is noted once and the output
    /// still goes to clients.
    fn log_entry(&mut self, stream: OutputStream, entry: &[u8]) {
        if let Some(log) = self.session.log.as_mut()
            && let Err(e) = log.write(stream, entry, SystemTime::now())
            && !self.log_failed
        {
            self.log_failed = true;
            self.session.journal.note(format_args!("writing log: {e}"));
        }
    }

    /// Accepts every waiting attach client.
    fn accept(&mut self) {
        loop {
            match self.session.listener.accept() {
                Ok((socket, _)) => {
                    if socket.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            socket,
                            flags: None,
                            backlog: Vec::new(),
                            input_done: false,
                            closed: false,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.session.journal.note(format_args!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Reads and applies control commands.
    fn read_control(&mut self) {
        let mut buf = [0u8; 512];
        match self.session.control.read(&mut buf) {
            Ok(n) => self.control_buf.extend_from_slice(&buf[..n]),
            Err(_) => return,
        }
        while let Some(end) = self.control_buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.control_buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            self.control(line.trim());
        }
        if self.control_buf.len() > 4096 {
            self.control_buf.clear();
        }
    }

    /// Applies one control command.
    fn control(&mut self, command: &str) {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words[..] {
            ["resize", height, width] => {
                let (Ok(rows), Ok(cols)) = (height.parse::<u16>(), width.parse::<u16>()) else {
                    self.session
                        .journal
                        .note(format_args!("bad control command {command:?}"));
                    return;
                };
                if let Some(pty) = &self.session.pty {
                    let size = rustix::termios::Winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    if let Err(e) = rustix::termios::tcsetwinsize(pty, size) {
                        self.session.journal.note(format_args!("resize: {e}"));
                    }
                }
            }
            _ => self
                .session
                .journal
                .note(format_args!("unknown control command {command:?}")),
        }
    }

    /// Writes waiting client input to the container's stdin.
    fn flush_input(&mut self) {
        let Some(input) = &self.session.input else {
            self.input_backlog.clear();
            return;
        };
        while !self.input_backlog.is_empty() {
            match rustix::io::write(input, &self.input_backlog) {
                Ok(n) => {
                    self.input_backlog.drain(..n);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    // The container closed its stdin.
                    self.session.input = None;
                    self.input_backlog.clear();
                    return;
                }
            }
        }
        if self.close_input_when_flushed {
            self.session.input = None;
        }
    }

    /// Handles what poll reported for one client.
    fn serve_client(&mut self, i: usize, events: PollFlags) {
        if events.contains(PollFlags::OUT)
            && let Some(client) = self.clients.get_mut(i)
        {
            client.flush();
        }
        if events.contains(PollFlags::IN) {
            self.read_client(i);
        } else if events.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
            && let Some(client) = self.clients.get_mut(i)
        {
            client.closed = true;
        }
    }

    /// Reads a client's flags or input.
    fn read_client(&mut self, i: usize) {
        let Some(client) = self.clients.get_mut(i) else {
            return;
        };
        let mut buf = [0u8; 8192];
        let want = if client.flags.is_none() { 1 } else { buf.len() };
        let n = match client.socket.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return;
            }
            Err(_) => {
                client.closed = true;
                return;
            }
        };
        let Some(flags) = client.flags else {
            if n == 0 {
                client.closed = true;
            } else {
                client.flags = Some(buf[0]);
            }
            return;
        };
        let wants_stdin = flags & FLAG_STDIN != 0;
        if n == 0 {
            client.input_done = true;
            if wants_stdin && flags & FLAG_STDIN_ONCE != 0 {
                self.close_input_when_flushed = true;
                self.flush_input();
            }
            return;
        }
        if wants_stdin && self.session.input.is_some() {
            self.input_backlog.extend_from_slice(&buf[..n]);
            self.flush_input();
        }
    }

    /// Logs what is left, hands the clients their last frames, and returns
    /// the init's status.
    fn finish(mut self, exit: (WaitStatus, SystemTime)) -> (WaitStatus, SystemTime) {
        for i in 0..self.session.outputs.len() {
            let stream = self.session.outputs[i].stream;
            let mut lines = std::mem::take(&mut self.session.outputs[i].lines);
            lines.finish(&mut |entry| self.log_entry(stream, entry));
        }
        for client in &mut self.clients {
            if !client.backlog.is_empty()
                && client.socket.set_nonblocking(false).is_ok()
                && client
                    .socket
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .is_ok()
            {
                let _ = client.socket.write_all(&client.backlog);
            }
            let _ = client.socket.shutdown(std::net::Shutdown::Both);
        }
        exit
    }
}

impl Output {
    /// Marks the stream as ended.
    fn close(&mut self) {
        self.ended = true;
    }

    /// Whether the stream may still produce output.
    fn stream_open(&self) -> bool {
        !self.ended
    }
}

impl Client {
    /// Queues one frame and writes what the socket takes now.
    fn send(&mut self, stream: OutputStream, data: &[u8], journal: &Journal) {
        if self.closed {
            return;
        }
        if self.backlog.len() + data.len() + 5 > CLIENT_BACKLOG {
            journal.note("attach client too slow, disconnected");
            self.closed = true;
            return;
        }
        self.backlog
            .extend_from_slice(&crate::frame::header(stream, data.len()));
        self.backlog.extend_from_slice(data);
        self.flush();
    }

    /// Writes as much of the backlog as the socket takes.
    fn flush(&mut self) {
        while !self.backlog.is_empty() {
            match self.socket.write(&self.backlog) {
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    self.backlog.clear();
                    return;
                }
            }
        }
        if self.backlog.capacity() > 64 * 1024 {
            self.backlog = Vec::new();
        }
    }
}
