//! [`ZoneStreams`](crate::ZoneStreams) over the network: a node serves its
//! driver's streaming side ([`server`]) and an API instance on another
//! machine reaches it as [`RemoteStreams`] ([`client`]), so `docker logs`,
//! `attach`, `exec`, `cp`, `stats`, `diff` and `export` work for a
//! container whatever node it runs on.
//!
//! # The protocol
//!
//! HTTP/1.1, one route per method of the trait, every path under
//! `/v1/zones/{id}/`:
//!
//! | method | route | request | answer |
//! |---|---|---|---|
//! | attach | `POST attach?stdin&stdout&stderr&stdinOnce` | upgrade | 101, then the session stream |
//! | resize | `POST resize?height&width` | | 204 |
//! | exec | `POST exec` | [`ExecSpec`](crate::streams::ExecSpec) JSON, upgrade | 101, then the session stream |
//! | logs | `GET logs?stdout&stderr&since&until&tail&follow` | | a stream of log frames |
//! | stats | `GET stats` | | [`ZoneStats`](crate::streams::ZoneStats) JSON |
//! | stat_path | `GET path?path` | | [`PathStat`](crate::streams::PathStat) JSON |
//! | archive | `GET archive?path` | | a 4-byte length, the `PathStat` JSON, then the tar |
//! | extract | `PUT archive?path&noOverwriteDirNonDir&copyUidGid` | the tar | 204 |
//! | changes | `GET changes` | | [`Change`](crate::streams::Change)s JSON |
//! | export | `GET export` | | the tar |
//!
//! Query values are URL-encoded; times are RFC 3339. An error is its HTTP
//! status and a JSON body naming the [`ZoneError`] variant
//! (`{"kind":"notFound","id":…}`), so the client rebuilds the very error
//! the node's driver returned: `notFound`, `wrongState`, `noSuchPath`,
//! `badRequest`, `invalidSignal`, `invalidSpec`, and `other` with the
//! driver's message for the rest. A failure half way through a streamed
//! body (a tar, a log) aborts the connection, which the client reads as an
//! I/O error.
//!
//! **Frames.** Logs and the sessions of attach and exec carry frames: an
//! 8-byte header — the kind, three zero bytes, the payload's length as a
//! big-endian `u32`, which is Docker's multiplexed-stream header — then the
//! payload. Output chunks are Docker's own frames: kind 1 standard output,
//! 2 standard error. A log entry is kind 1 or 2 with a payload of the
//! entry's time (nanoseconds since the Unix epoch, big-endian `i128`)
//! followed by its bytes. From the node, besides those:
//! [`END`] (the output ended), [`EXIT`] (an exec's exit code, big-endian
//! `i64`), [`OUTPUT_ERROR`] (reading the output failed: the message) and
//! [`EXIT_ERROR`] (waiting for the exit failed: the error's JSON). From
//! the client, in a session: [`STDIN`] (bytes for the process),
//! [`CLOSE_STDIN`], [`DROP_STDIN`] (the caller dropped its input without
//! closing it) and [`RESIZE`] (height and width, big-endian `u16`s).
//! The node closes the session once the output ended and, for exec, the
//! exit was sent; a client that goes away drops its input (without
//! closing the process's stdin) and its output.
//!
//! # Trust
//!
//! Every request carries `Authorization: Bearer <token>`. The node makes a
//! random token when it starts and publishes it, with its address, in its
//! `Node` object (`spec.address`, `spec.streamsToken`): whoever reads the
//! store may reach every zone's processes and files, and nobody else.
//! The store is the trust boundary; the connection itself is plain TCP
//! (neither encrypted nor authenticated beyond the token), meant for the
//! data center's admin network.

pub mod client;
pub mod server;

use std::io;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::driver::{ZoneError, ZoneState};
use crate::streams::StdStream;

pub use client::RemoteStreams;
pub use server::{Server, serve};

/// The protocol's version, the first segment of every path.
const PREFIX: &str = "/v1/zones/";

/// The `Upgrade` protocol name of an attach or exec session.
const UPGRADE: &str = "sdc-zone-session";

/// An exec's host pid, in the 101 answer (absent when unknown).
const PID_HEADER: &str = "x-zone-pid";
/// Present (`1`) in the 101 answer when the session takes input.
const STDIN_HEADER: &str = "x-zone-stdin";
/// Present (`1`) in the 101 answer when the exec has a pty to resize.
const RESIZE_HEADER: &str = "x-zone-resize";

/// Kind of a frame of standard output (Docker's 1).
pub const STDOUT: u8 = 1;
/// Kind of a frame of standard error (Docker's 2).
pub const STDERR: u8 = 2;
/// Node to client: the output ended.
pub const END: u8 = 3;
/// Node to client: the exec exited; payload an `i64`.
pub const EXIT: u8 = 4;
/// Node to client: reading the output failed; payload the message.
pub const OUTPUT_ERROR: u8 = 5;
/// Node to client: waiting for the exit failed; payload the error's JSON.
pub const EXIT_ERROR: u8 = 6;
/// Client to node: bytes for the process's stdin.
pub const STDIN: u8 = 10;
/// Client to node: close the process's stdin.
pub const CLOSE_STDIN: u8 = 11;
/// Client to node: resize the exec's pty; payload height and width.
pub const RESIZE: u8 = 12;
/// Client to node: the caller dropped its input without closing it (a
/// detach): the node drops its own.
pub const DROP_STDIN: u8 = 13;

/// The largest frame either side accepts, so a broken peer cannot make
/// the other allocate without bound.
const MAX_FRAME: usize = 16 << 20;

/// A node's secret, which every request to its streams must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh random token: 32 bytes from the OS's generator, in hex.
    pub fn generate() -> Token {
        let bytes: [u8; 32] = rand::random();
        Token(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A token as published (a Node's `spec.streamsToken`).
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is this token, compared in time independent of
    /// where they differ (so the answer's timing does not leak a prefix).
    fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// The query of `attach`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AttachQuery {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    stdin_once: bool,
}

/// The query of `resize`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct ResizeQuery {
    height: u16,
    width: u16,
}

/// The query of `logs`; times in RFC 3339.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct LogsQuery {
    stdout: bool,
    stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tail: Option<usize>,
    follow: bool,
}

/// The query of `path`, `archive` and (with the options) extract.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PathQuery {
    path: String,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
}

/// A [`ZoneError`] as it travels: its variant and what the client needs to
/// rebuild it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum WireError {
    NotFound {
        id: String,
    },
    WrongState {
        id: String,
        state: ZoneState,
        op: String,
    },
    NoSuchPath {
        id: String,
        path: String,
    },
    BadRequest {
        message: String,
    },
    InvalidSignal {
        signal: String,
    },
    InvalidSpec {
        message: String,
    },
    /// The token was missing or wrong.
    Unauthorized {
        message: String,
    },
    Other {
        message: String,
    },
}

impl WireError {
    /// The HTTP status that carries it.
    fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            WireError::NotFound { .. } | WireError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            WireError::WrongState { .. } => StatusCode::CONFLICT,
            WireError::BadRequest { .. }
            | WireError::InvalidSignal { .. }
            | WireError::InvalidSpec { .. } => StatusCode::BAD_REQUEST,
            WireError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            WireError::Other { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error the client hands on; `address` says which node answered.
    fn into_zone_error(self, address: &str) -> ZoneError {
        match self {
            WireError::NotFound { id } => ZoneError::NotFound { id },
            WireError::WrongState { id, state, op } => ZoneError::WrongState {
                id,
                state,
                op: static_op(&op),
            },
            WireError::NoSuchPath { id, path } => ZoneError::NoSuchPath { id, path },
            WireError::BadRequest { message } => ZoneError::BadRequest(message),
            WireError::InvalidSignal { signal } => ZoneError::InvalidSignal(signal),
            WireError::InvalidSpec { message } => ZoneError::InvalidSpec(message),
            WireError::Unauthorized { message } => ZoneError::Runtime {
                op: format!("authenticating to the node at {address}"),
                message,
            },
            WireError::Other { message } => ZoneError::Runtime {
                op: format!("the node at {address}"),
                message,
            },
        }
    }
}

impl From<&ZoneError> for WireError {
    fn from(e: &ZoneError) -> Self {
        match e {
            ZoneError::NotFound { id } => WireError::NotFound { id: id.clone() },
            ZoneError::WrongState { id, state, op } => WireError::WrongState {
                id: id.clone(),
                state: *state,
                op: (*op).to_owned(),
            },
            ZoneError::NoSuchPath { id, path } => WireError::NoSuchPath {
                id: id.clone(),
                path: path.clone(),
            },
            ZoneError::BadRequest(message) => WireError::BadRequest {
                message: message.clone(),
            },
            ZoneError::InvalidSignal(signal) => WireError::InvalidSignal {
                signal: signal.clone(),
            },
            ZoneError::InvalidSpec(message) => WireError::InvalidSpec {
                message: message.clone(),
            },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }
}

/// The operations a [`ZoneError::WrongState`] names, as the driver spells
/// them (the variant holds a `&'static str`); any other comes back as
/// `"operate on it"`.
fn static_op(op: &str) -> &'static str {
    const OPS: &[&str] = &[
        "attach",
        "resize",
        "exec",
        "logs",
        "stats",
        "stat a path",
        "archive a path",
        "extract an archive",
        "changes",
        "export",
        "kill",
        "pause",
        "unpause",
        "start before its create finished",
    ];
    OPS.iter()
        .find(|known| **known == op)
        .copied()
        .unwrap_or("operate on it")
}

/// The frame kind of a stream's output.
fn stream_kind(stream: StdStream) -> u8 {
    match stream {
        StdStream::Stdout => STDOUT,
        StdStream::Stderr => STDERR,
    }
}

/// The stream a frame kind of output names, if it names one.
fn kind_stream(kind: u8) -> Option<StdStream> {
    match kind {
        STDOUT => Some(StdStream::Stdout),
        STDERR => Some(StdStream::Stderr),
        _ => None,
    }
}

/// One frame: its header and payload, ready to write.
fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    // Frames are at most MAX_FRAME long: callers split larger payloads.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Writes `payload` as frames of `kind`, split so none exceeds the limit.
async fn write_frames(
    writer: &mut (impl AsyncWrite + Unpin),
    kind: u8,
    payload: &[u8],
) -> io::Result<()> {
    if payload.is_empty() {
        return writer.write_all(&frame(kind, payload)).await;
    }
    for piece in payload.chunks(MAX_FRAME) {
        writer.write_all(&frame(kind, piece)).await?;
    }
    Ok(())
}

/// The next frame, or `None` at a clean end of the stream (before a
/// header).
async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<(u8, Bytes)>> {
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame header",
                ))
            };
        }
        filled += n;
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some((header[0], Bytes::from(payload))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_read_back_as_written_and_a_clean_end_is_none() {
        let mut wire = Vec::new();
        write_frames(&mut wire, STDOUT, b"hello").await.unwrap();
        write_frames(&mut wire, END, b"").await.unwrap();
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 0, 0, 0, 5], "Docker's header");
        let mut reader = &wire[..];
        assert_eq!(
            read_frame(&mut reader).await.unwrap(),
            Some((STDOUT, Bytes::from_static(b"hello")))
        );
        assert_eq!(
            read_frame(&mut reader).await.unwrap(),
            Some((END, Bytes::new()))
        );
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error_and_an_oversized_frame_is_refused() {
        let mut reader = &[1u8, 0, 0][..];
        assert!(read_frame(&mut reader).await.is_err());
        let mut reader = &[1u8, 0, 0, 0, 0, 0, 0, 9, b'x'][..];
        assert!(read_frame(&mut reader).await.is_err());
        let mut reader = &[1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..];
        let err = read_frame(&mut reader).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn zone_errors_survive_the_trip_with_their_variant() {
        let errors = [
            ZoneError::NotFound { id: "z".into() },
            ZoneError::WrongState {
                id: "z".into(),
                state: ZoneState::Stopped,
                op: "attach",
            },
            ZoneError::NoSuchPath {
                id: "z".into(),
                path: "/nope".into(),
            },
            ZoneError::BadRequest("bad".into()),
            ZoneError::InvalidSignal("SIGNOPE".into()),
        ];
        for e in errors {
            let json = serde_json::to_string(&WireError::from(&e)).unwrap();
            let back = serde_json::from_str::<WireError>(&json)
                .unwrap()
                .into_zone_error("node:1");
            assert_eq!(format!("{back:?}"), format!("{e:?}"), "{json}");
        }
        let runtime = ZoneError::Runtime {
            op: "runc exec".into(),
            message: "boom".into(),
        };
        let back = WireError::from(&runtime).into_zone_error("node:1");
        assert!(
            matches!(&back, ZoneError::Runtime { message, .. } if message == "runc exec failed: boom"),
            "{back:?}"
        );
    }

    #[test]
    fn tokens_are_random_and_match_only_themselves() {
        let (a, b) = (Token::generate(), Token::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(b.as_str()));
        assert!(!a.matches(&a.as_str()[..63]));
        assert!(!a.matches(""));
    }
}
