//! Hijacked connections: how attach and exec carry a process's input and
//! output over the HTTP connection of their request.
//!
//! The CLI asks with `Connection: Upgrade` and `Upgrade: tcp`; the answer is
//! `101 Switching Protocols`, after which the connection is a plain byte
//! stream both ways ([`hijack`]): the client's bytes are the process's
//! stdin, and the process's output comes back raw (a tty, where stdout and
//! stderr are one stream) or multiplexed in Docker's stdcopy frames
//! ([`Framing`]). An old client that does not ask for an upgrade gets `200`
//! and the output in the body, and cannot send input.
//!
//! [`pump`] moves the bytes: client input to the process (watching for the
//! detach keys of a tty session, [`DetachKeys`]), process output to the
//! client. When the client shuts its write side (the CLI does after its
//! stdin's end, and after its own detach) either the process's stdin is
//! closed and output keeps flowing until the process's own output ends, or
//! the session is over ([`AtEnd`]).

use std::future::Future;
use std::io;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use sdc_docker_zones::streams::{Input, OutputChunk, StdStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ApiError;
use crate::docker::ApiVersion;

/// Docker's media type of a raw (tty) stream.
pub(super) const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// Docker's media type of a multiplexed (stdcopy) stream, API 1.42 and up.
pub(super) const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// How output is laid out on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// The bytes as the process wrote them (a tty).
    Raw,
    /// Docker's stdcopy frames, so stdout and stderr stay apart.
    Multiplexed,
}

impl Framing {
    /// The framing of a process with or without a tty.
    pub(super) fn for_tty(tty: bool) -> Framing {
        if tty {
            Framing::Raw
        } else {
            Framing::Multiplexed
        }
    }

    /// The `Content-Type` announcing it to a client of `version`: before
    /// 1.42 Docker said raw-stream for both, and clients ignore it.
    pub(super) fn content_type(self, version: &ApiVersion) -> &'static str {
        match self {
            Framing::Multiplexed if !version.older_than("1.42") => MULTIPLEXED_STREAM,
            _ => RAW_STREAM,
        }
    }

    /// Appends `data` from `stream` to `out` in this framing.
    pub(super) fn encode(self, stream: StdStream, data: &[u8], out: &mut BytesMut) {
        match self {
            Framing::Raw => out.extend_from_slice(data),
            Framing::Multiplexed => encode_frames(stream, data, out),
        }
    }
}

/// Docker's stdcopy frames of `data`: an 8-byte header `[stream, 0, 0, 0,
/// length as big-endian u32]` (stream 1 stdout, 2 stderr) and the bytes;
/// nothing for no bytes (an empty frame means nothing to the client).
pub(super) fn encode_frames(stream: StdStream, data: &[u8], out: &mut BytesMut) {
    let code = match stream {
        StdStream::Stdout => 1,
        StdStream::Stderr => 2,
    };
    // A frame says its length in 32 bits; more is cut into several.
    for part in data.chunks(u32::MAX as usize) {
        out.reserve(8 + part.len());
        out.put_slice(&[code, 0, 0, 0]);
        out.put_u32(part.len() as u32);
        out.put_slice(part);
    }
}

/// The client's side of a hijacked connection.
pub(super) struct Client {
    /// What the client sends (its stdin); `None` for an old client that
    /// did not upgrade.
    pub(super) input: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Where its output goes.
    pub(super) output: Pin<Box<dyn AsyncWrite + Send>>,
}

/// A connection being hijacked: answer with `response`, then await
/// `client` for the stream (it resolves once the answer went out).
pub(super) struct Hijack {
    /// `101 Switching Protocols`, or `200` with a streamed body.
    pub(super) response: Response,
    /// The connection, once hyper handed it over.
    pub(super) client: Pin<Box<dyn Future<Output = io::Result<Client>> + Send>>,
}

/// Whether the request asks to upgrade its connection.
fn wants_upgrade(request: &Request) -> bool {
    request.headers().contains_key(header::UPGRADE)
}

/// Takes over `request`'s connection for a stream of `content_type`.
pub(super) fn hijack(request: &mut Request, content_type: &'static str) -> Hijack {
    if wants_upgrade(request) {
        let upgrade = hyper::upgrade::on(request);
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let client = async move {
            let upgraded = upgrade.await.map_err(io::Error::other)?;
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            Ok(Client {
                input: Some(Box::pin(read) as Pin<Box<dyn AsyncRead + Send>>),
                output: Box::pin(write) as Pin<Box<dyn AsyncWrite + Send>>,
            })
        };
        return Hijack {
            response,
            client: Box::pin(client),
        };
    }
    // No upgrade: the output is the body, through an in-memory pipe.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let body = futures::stream::unfold(theirs, |mut pipe| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match pipe.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, io::Error>(Bytes::from(buf)), pipe))
            }
            Err(e) => Some((Err(e), pipe)),
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let client = Client {
        input: None,
        output: Box::pin(ours),
    };
    Hijack {
        response,
        client: Box::pin(std::future::ready(Ok(client))),
    }
}

/// The key sequence that detaches a client from a tty session without
/// stopping the process (Docker's `detachKeys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DetachKeys(Vec<u8>);

impl DetachKeys {
    /// Docker's default, ctrl-p ctrl-q.
    pub(super) fn default_keys() -> DetachKeys {
        DetachKeys(vec![0x10, 0x11])
    }

    /// Parses Docker's form: comma-separated keys, each a single character
    /// or `ctrl-` and one of `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`.
    pub(super) fn parse(keys: &str) -> Result<DetachKeys, String> {
        let mut codes = Vec::new();
        for key in keys.split(',') {
            let bytes = key.as_bytes();
            if bytes.len() == 1 {
                codes.push(bytes[0]);
                continue;
            }
            let code = match bytes {
                [c, t, r, l, b'-', k]
                    if [c, t, r, l]
                        .iter()
                        .zip(b"ctrl")
                        .all(|(a, b)| a.eq_ignore_ascii_case(b)) =>
                {
                    match k {
                        b'a'..=b'z' => Some(k - b'a' + 1),
                        b'A'..=b'Z' => Some(k - b'A' + 1),
                        b'@' => Some(0),
                        b'[' => Some(27),
                        b'\\' => Some(28),
                        b']' => Some(29),
                        b'^' => Some(30),
                        b'_' => Some(31),
                        _ => None,
                    }
                }
                _ => None,
            };
            match code {
                Some(code) => codes.push(code),
                None => return Err(format!("Unknown character: '{key}'")),
            }
        }
        Ok(DetachKeys(codes))
    }
}

/// Watches a client's input for the detach keys, holding back a partial
/// match until it completes (detach) or fails (the held bytes go on).
#[derive(Debug)]
pub(super) struct DetachScanner {
    keys: DetachKeys,
    matched: usize,
}

impl DetachScanner {
    /// A scanner for `keys`.
    pub(super) fn new(keys: DetachKeys) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// Feeds `input`: appends what may go to the process to `forward`, and
    /// says whether the keys were typed (what follows them is dropped).
    pub(super) fn feed(&mut self, input: &[u8], forward: &mut Vec<u8>) -> bool {
        let keys = &self.keys.0;
        if keys.is_empty() {
            forward.extend_from_slice(input);
            return false;
        }
        for &byte in input {
            if byte == keys[self.matched] {
                self.matched += 1;
                if self.matched == keys.len() {
                    return true;
                }
                continue;
            }
            // Not the sequence after all: what was held is ordinary input.
            forward.extend_from_slice(&keys[..self.matched]);
            self.matched = 0;
            if byte == keys[0] {
                self.matched = 1;
                if keys.len() == 1 {
                    return true;
                }
            } else {
                forward.push(byte);
            }
        }
        false
    }
}

/// Why [`pump`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The process's output ended.
    Output,
    /// The client typed the detach keys.
    Detached,
    /// The client's input ended, which ends this session (see [`AtEnd`]).
    Input,
    /// The client went away (a write to it failed).
    ClientGone,
}

/// What the end of a client's input means, as in Docker: only a client
/// whose end closes the process's stdin (`docker run -i`, `docker exec -i`
/// without a tty) waits for the output's end; for any other the session is
/// over (the CLI ends its input when it detached on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtEnd {
    /// Close the process's stdin; the output goes on.
    CloseStdin,
    /// End the session; the process goes on.
    EndSession,
}

impl AtEnd {
    /// Docker's rule: stdin is closed at the client's end when it is to be
    /// (`StdinOnce`, or any exec) and there is no tty.
    pub(super) fn of(close_stdin: bool, tty: bool) -> AtEnd {
        if close_stdin && !tty {
            AtEnd::CloseStdin
        } else {
            AtEnd::EndSession
        }
    }
}

/// What becomes of a client's input.
pub(super) enum Stdin {
    /// The client sends none (it did not ask for stdin): its side of the
    /// connection is not read.
    Ignored,
    /// It goes to the process.
    Forwarded {
        /// The process's stdin; `None` when it takes none (the input is
        /// read and dropped).
        input: Option<Input>,
        /// What the input's end means.
        at_end: AtEnd,
        /// The keys that detach (a tty session).
        detach: Option<DetachKeys>,
    },
}

/// Moves bytes between `client` and a process: the client's input as
/// `stdin` says, the process's `output` to the client in `framing`.
/// Returns why it ended and the client's output, still open, so the caller
/// can finish the connection (an exec records its exit code first).
pub(super) async fn pump(
    client: Client,
    stdin: Stdin,
    output: impl Stream<Item = io::Result<OutputChunk>> + Send,
    framing: Framing,
) -> (Ended, Pin<Box<dyn AsyncWrite + Send>>) {
    let Client {
        input: client_input,
        output: mut client_output,
    } = client;
    let to_process = forward_input(client_input, stdin);
    let to_client = async {
        let mut output = std::pin::pin!(output);
        let mut buf = BytesMut::new();
        while let Some(chunk) = output.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::debug!(error = %e, "a process's output failed");
                    break;
                }
            };
            buf.clear();
            framing.encode(chunk.stream, &chunk.data, &mut buf);
            let written = async {
                client_output.write_all(&buf).await?;
                client_output.flush().await
            };
            if written.await.is_err() {
                return Ended::ClientGone;
            }
        }
        Ended::Output
    };
    let ended = tokio::select! {
        ended = to_client => ended,
        ended = to_process => ended,
    };
    (ended, client_output)
}

/// Copies the client's input to the process until the detach keys
/// ([`Ended::Detached`]) or the input's end (see [`AtEnd`]; when it only
/// closes the process's stdin, this then waits forever, as the output's
/// end finishes the session).
async fn forward_input(client: Option<Pin<Box<dyn AsyncRead + Send>>>, stdin: Stdin) -> Ended {
    let (
        Some(mut client),
        Stdin::Forwarded {
            input,
            at_end,
            detach,
        },
    ) = (client, stdin)
    else {
        return std::future::pending().await;
    };
    let mut process = input;
    let mut scanner = detach.map(DetachScanner::new);
    let mut buf = vec![0u8; 32 * 1024];
    let mut forward = Vec::new();
    loop {
        let n = match client.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "reading a client's input");
                0
            }
        };
        if n == 0 {
            if at_end == AtEnd::EndSession {
                return Ended::Input;
            }
            if let Some(mut stdin) = process.take()
                && let Err(e) = stdin.shutdown().await
            {
                tracing::debug!(error = %e, "closing a process's stdin");
            }
            return std::future::pending().await;
        }
        forward.clear();
        let detached = match scanner.as_mut() {
            Some(scanner) => scanner.feed(&buf[..n], &mut forward),
            None => {
                forward.extend_from_slice(&buf[..n]);
                false
            }
        };
        if let Some(stdin) = process.as_mut()
            && !forward.is_empty()
            && stdin
                .write_all(&forward)
                .await
                .and(stdin.flush().await)
                .is_err()
        {
            // The process closed its stdin: later input has nowhere to go.
            process = None;
        }
        if detached {
            return Ended::Detached;
        }
    }
}

/// The last value of query parameter `key`, if any.
pub(super) fn last<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Docker's error for detach keys it cannot parse.
pub(super) fn bad_detach_keys(keys: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid detach keys ({keys}) provided"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdcopy_frame_has_an_eight_byte_header_with_a_big_endian_length() {
        let mut out = BytesMut::new();
        encode_frames(StdStream::Stderr, b"hello", &mut out);
        assert_eq!(&out[..], b"\x02\x00\x00\x00\x00\x00\x00\x05hello");
        out.clear();
        encode_frames(StdStream::Stdout, &[7u8; 300], &mut out);
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 1, 44]);
        assert_eq!(out.len(), 308);
    }

    #[test]
    fn raw_framing_passes_bytes_through_and_empty_output_makes_no_frame() {
        let mut out = BytesMut::new();
        Framing::Raw.encode(StdStream::Stderr, b"a\r\n", &mut out);
        assert_eq!(&out[..], b"a\r\n");
        out.clear();
        Framing::Multiplexed.encode(StdStream::Stdout, b"", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_multiplexed_media_type_is_announced_from_api_1_42() {
        let old = ApiVersion("1.41".to_string());
        let new = ApiVersion("1.45".to_string());
        assert_eq!(Framing::Multiplexed.content_type(&old), RAW_STREAM);
        assert_eq!(Framing::Multiplexed.content_type(&new), MULTIPLEXED_STREAM);
        assert_eq!(Framing::Raw.content_type(&new), RAW_STREAM);
    }

    #[test]
    fn detach_keys_parse_like_dockers() {
        assert_eq!(
            DetachKeys::parse("ctrl-p,ctrl-q"),
            Ok(DetachKeys::default_keys())
        );
        assert_eq!(DetachKeys::parse("ctrl-a,x"), Ok(DetachKeys(vec![1, b'x'])));
        assert_eq!(
            DetachKeys::parse("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_"),
            Ok(DetachKeys(vec![0, 27, 28, 29, 30, 31]))
        );
        assert_eq!(DetachKeys::parse("CTRL-Z"), Ok(DetachKeys(vec![26])));
        assert_eq!(
            DetachKeys::parse("ctrl-1"),
            Err("Unknown character: 'ctrl-1'".to_string())
        );
        assert!(DetachKeys::parse("ab").is_err());
        assert!(DetachKeys::parse("ctrl-p,,ctrl-q").is_err());
    }

    #[test]
    fn the_detach_keys_end_the_input_and_a_partial_match_is_passed_on() {
        let mut scanner = DetachScanner::new(DetachKeys::default_keys());
        let mut out = Vec::new();
        assert!(!scanner.feed(b"ls\x10", &mut out));
        assert_eq!(out, b"ls");
        // ctrl-p then something else: the ctrl-p was ordinary input.
        assert!(!scanner.feed(b"x", &mut out));
        assert_eq!(out, b"ls\x10x");
        out.clear();
        // The sequence split across reads still detaches.
        assert!(!scanner.feed(b"a\x10", &mut out));
        assert!(scanner.feed(b"\x11after", &mut out));
        assert_eq!(out, b"a");
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p goes on, the rest detach.
        let mut scanner = DetachScanner::new(DetachKeys::default_keys());
        let mut out = Vec::new();
        assert!(scanner.feed(b"\x10\x10\x11", &mut out));
        assert_eq!(out, b"\x10");
    }

    #[tokio::test]
    async fn the_end_of_a_tty_clients_input_ends_its_session() {
        let (client_side, mut test_side) = tokio::io::duplex(1024);
        let (read, write) = tokio::io::split(client_side);
        let client = Client {
            input: Some(Box::pin(read)),
            output: Box::pin(write),
        };
        let stdin = Stdin::Forwarded {
            input: None,
            at_end: AtEnd::of(true, true),
            detach: Some(DetachKeys::default_keys()),
        };
        test_side.shutdown().await.unwrap();
        let (ended, _) = pump(client, stdin, futures::stream::pending(), Framing::Raw).await;
        assert_eq!(ended, Ended::Input);
    }

    #[tokio::test]
    async fn pumping_closes_stdin_at_the_clients_end_and_runs_until_the_output_ends() {
        let (client_side, mut test_side) = tokio::io::duplex(1024);
        let (read, write) = tokio::io::split(client_side);
        let client = Client {
            input: Some(Box::pin(read)),
            output: Box::pin(write),
        };
        let (stdin_ours, mut stdin_process) = tokio::io::duplex(1024);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<io::Result<OutputChunk>>();
        let output = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let stdin = Stdin::Forwarded {
            input: Some(Box::pin(stdin_ours)),
            at_end: AtEnd::of(true, false),
            detach: None,
        };
        let pumping = tokio::spawn(pump(client, stdin, output, Framing::Multiplexed));
        test_side.write_all(b"input").await.unwrap();
        test_side.shutdown().await.unwrap();
        let mut got = Vec::new();
        stdin_process.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"input");
        tx.send(Ok(OutputChunk {
            stream: StdStream::Stdout,
            data: Bytes::from_static(b"out"),
        }))
        .unwrap();
        drop(tx);
        let (ended, _output) = pumping.await.unwrap();
        assert_eq!(ended, Ended::Output);
        let mut frame = [0u8; 11];
        test_side.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x01\x00\x00\x00\x00\x00\x00\x03out");
    }
}
