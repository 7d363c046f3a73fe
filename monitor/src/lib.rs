//! The per-container monitor of sdc-docker: what conmon is to podman and
//! containerd-shim to Docker. One small `sdc-docker-monitor` process per
//! container runs the OCI runtime (`runc run --detach`), holds the
//! container's stdio, writes its output to a Docker json-file log, serves
//! attach clients, resizes the pty, and records how the container's init
//! exited. It is detached from the daemon (its own session, re-parented away
//! by a double spawn) so the daemon can restart — or be killed — without
//! touching the containers; a restarted daemon re-adopts a container from the
//! files in its state directory ([`state`]).
//!
//! The daemon side is this library's client API, blocking std code (callers
//! in async code use `spawn_blocking`):
//!
//! - [`spawn`] starts a monitor for a [`MonitorConfig`] and returns once the
//!   container's process runs ([`Spawned`]), or [`MonitorError::RuntimeFailed`]
//!   with the runtime's own message.
//! - [`state`] reads what is on disk and whether the monitor still lives
//!   ([`MonitorState`], [`ExitRecord`]).
//! - [`attach`] connects to the container's streams; [`resize`] sets the
//!   window size of its pty.
//!
//! # Attach protocol
//!
//! [`attach`] connects to `state_dir/attach.sock` (a `SOCK_STREAM` unix
//! socket) and sends one byte of flags: bit 0 stdin, bit 1 stdout, bit 2
//! stderr, bit 3 "stdin once" (the container's stdin is closed when this
//! client's input ends, as `docker run -i` without `-t` does). From then on:
//!
//! - the monitor sends output frames `[stream: u8][len: u32 big-endian][bytes]`
//!   where stream is 1 for stdout and 2 for stderr (with a tty everything is
//!   stream 1), only for the streams the client asked for; [`read_frame`]
//!   decodes them;
//! - bytes the client writes go to the container's stdin, raw and unframed,
//!   when it asked for stdin and the container was started with `open_stdin`
//!   (they are discarded otherwise); the client ends its input with
//!   `shutdown(Write)` and keeps reading output;
//! - the monitor closes the connection when the container has exited and its
//!   output has been drained. A client that cannot keep up (more than 256 KiB
//!   of output waiting for it) is disconnected rather than stalling the
//!   container or the log.
//!
//! Attaching only shows output produced after the connection; earlier output
//! is in the log.
//!
//! # Control FIFO
//!
//! `state_dir/ctl` is a FIFO the monitor keeps open for reading. [`resize`]
//! writes one line `resize <height> <width>\n` to it (atomically: shorter than
//! `PIPE_BUF`); the monitor applies it to the pty with `TIOCSWINSZ`, which
//! also sends `SIGWINCH` to the container's foreground process group.
//! Opening it fails with `ENXIO` when no monitor is running.
//!
//! See [`layout`] for every file of the state directory.

pub mod cgroups;
mod client;
mod config;
mod error;
mod exit;
pub mod frame;
pub mod layout;
mod readiness;
pub mod supervisor;
mod timefmt;

pub use client::{
    ExitRecord, MonitorState, Spawned, Streams, attach, attach_with, resize, spawn, state,
};
pub use config::{LogConfig, MonitorConfig};
pub use error::MonitorError;
pub use frame::{Frame, OutputStream, read_frame};
