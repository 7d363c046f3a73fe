//! The API's side: [`RemoteStreams`] is a [`ZoneStreams`] whose every call
//! is a request to a node's [server](super::server), so code written
//! against the trait reaches a zone on another machine exactly as one on
//! its own.
//!
//! Each call opens its own TCP connection (the calls are few and mostly
//! long: a session, a log, a tar), so there is no pool to go stale when the
//! node restarts on another port. An attach or exec session is served by
//! two tasks: one reads the node's frames into the
//! [`Output`](crate::streams::Output) and the exit future, the other
//! writes the [`Input`](crate::streams::Input)'s bytes and the resizes;
//! the connection closes once the output, the exit and the input are all
//! dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::PollSender;

use super::{
    AttachQuery, CLOSE_STDIN, DROP_STDIN, END, EXIT, EXIT_ERROR, LogsQuery, OUTPUT_ERROR,
    PID_HEADER, PREFIX, PathQuery, RESIZE, RESIZE_HEADER, ResizeQuery, STDIN, STDIN_HEADER, Token,
    UPGRADE, WireError, frame, kind_stream, read_frame,
};
use crate::driver::ZoneError;
use crate::streams::{
    AttachOptions, ByteStream, Change, ExecProcess, ExecSpec, ExitFuture, ExtractOptions, LogEntry,
    LogOptions, LogStream, OutputChunk, PathStat, ResizeFn, Session, ZoneStats, ZoneStreams,
};

/// A request body: whole or streamed.
type Body = UnsyncBoxBody<Bytes, io::Error>;

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most stdin one frame carries.
const STDIN_CHUNK: usize = 64 << 10;

/// The [`ZoneStreams`] of a node reached over the network.
#[derive(Clone, Debug)]
pub struct RemoteStreams {
    address: String,
    token: Token,
}

impl RemoteStreams {
    /// The streams served at `address` (`host:port`, as a Node's
    /// `spec.address`), reached with the node's `token`.
    pub fn new(address: impl Into<String>, token: Token) -> RemoteStreams {
        RemoteStreams {
            address: address.into(),
            token,
        }
    }

    /// Where the node listens.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether this reaches the node at `address` with `token`.
    pub fn reaches(&self, address: &str, token: &str) -> bool {
        self.address == address && self.token.as_str() == token
    }

    /// A transport failure as the trait's error.
    fn unreachable(&self, e: impl std::fmt::Display) -> ZoneError {
        ZoneError::Runtime {
            op: format!("reaching the node at {}", self.address),
            message: e.to_string(),
        }
    }

    /// Sends one request on a connection of its own; a refusal comes back
    /// as the node's [`ZoneError`].
    async fn request(
        &self,
        method: Method,
        id: &str,
        op: &str,
        query: &impl Serialize,
        body: Body,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ZoneError> {
        let query =
            serde_urlencoded::to_string(query).map_err(|e| ZoneError::BadRequest(e.to_string()))?;
        let mut uri = format!("{PREFIX}{id}/{op}");
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query);
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| self.unreachable(e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tcp))
                .await
                .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "a zone streams connection ended");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, &self.address)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token.as_str()),
            );
        if upgrade {
            request = request
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, UPGRADE);
        }
        let request = request.body(body).map_err(|e| self.unreachable(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let wire =
            serde_json::from_slice::<WireError>(&body).unwrap_or_else(|_| WireError::Other {
                message: format!("{status}: {}", String::from_utf8_lossy(&body)),
            });
        Err(wire.into_zone_error(&self.address))
    }

    /// A JSON answer to a GET.
    async fn get_json<T: DeserializeOwned>(
        &self,
        id: &str,
        op: &str,
        query: &impl Serialize,
    ) -> Result<T, ZoneError> {
        let response = self
            .request(Method::GET, id, op, query, empty(), false)
            .await?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| self.unreachable(format!("its answer: {e}")))
    }

    /// A streamed answer as bytes to read.
    fn reader(response: Response<Incoming>) -> ByteStream {
        Box::pin(StreamReader::new(
            response
                .into_body()
                .into_data_stream()
                .map(|chunk| chunk.map_err(io::Error::other)),
        ))
    }

    /// Upgrades `response` into a session.
    async fn session(&self, mut response: Response<Incoming>) -> Result<Remote, ZoneError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.unreachable(format!(
                "it answered {} to a session request",
                response.status()
            )));
        }
        let headers = std::mem::take(response.headers_mut());
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(Remote::open(
            TokioIo::new(upgraded),
            &headers,
            &self.address,
        ))
    }
}

#[async_trait::async_trait]
impl ZoneStreams for RemoteStreams {
    async fn attach(&self, id: &str, options: AttachOptions) -> Result<Session, ZoneError> {
        let query = AttachQuery {
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
            stdin_once: options.stdin_once,
        };
        let response = self
            .request(Method::POST, id, "attach", &query, empty(), true)
            .await?;
        Ok(self.session(response).await?.session)
    }

    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ZoneError> {
        let query = ResizeQuery { height, width };
        self.request(Method::POST, id, "resize", &query, empty(), false)
            .await?;
        Ok(())
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError> {
        let spec = serde_json::to_vec(spec).map_err(|e| ZoneError::BadRequest(e.to_string()))?;
        let response = self
            .request(Method::POST, id, "exec", &(), full(spec), true)
            .await?;
        let remote = self.session(response).await?;
        Ok(ExecProcess {
            pid: remote.pid,
            session: remote.session,
            exit: remote.exit,
            resize: remote.resize,
        })
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<LogStream, ZoneError> {
        let time = |t: Option<OffsetDateTime>| -> Result<Option<String>, ZoneError> {
            t.map(|t| {
                t.format(&Rfc3339)
                    .map_err(|e| ZoneError::BadRequest(e.to_string()))
            })
            .transpose()
        };
        let query = LogsQuery {
            stdout: options.stdout,
            stderr: options.stderr,
            since: time(options.since)?,
            until: time(options.until)?,
            tail: options.tail,
            follow: options.follow,
        };
        let response = self
            .request(Method::GET, id, "logs", &query, empty(), false)
            .await?;
        let entries = futures::stream::unfold(Some(Self::reader(response)), |reader| async move {
            let mut reader = reader?;
            match read_frame(&mut reader).await {
                Ok(Some((kind, payload))) => match (kind_stream(kind), kind) {
                    (Some(stream), _) if payload.len() >= 16 => {
                        let mut nanos = [0u8; 16];
                        nanos.copy_from_slice(&payload[..16]);
                        match OffsetDateTime::from_unix_timestamp_nanos(i128::from_be_bytes(nanos))
                        {
                            Ok(time) => Some((
                                Ok(LogEntry {
                                    stream,
                                    time,
                                    data: payload.slice(16..),
                                }),
                                Some(reader),
                            )),
                            Err(e) => Some((Err(invalid(e)), None)),
                        }
                    }
                    (_, OUTPUT_ERROR) => Some((
                        Err(io::Error::other(
                            String::from_utf8_lossy(&payload).into_owned(),
                        )),
                        Some(reader),
                    )),
                    _ => Some((Err(invalid(format!("a log frame of kind {kind}"))), None)),
                },
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(Box::pin(entries))
    }

    async fn stats(&self, id: &str) -> Result<ZoneStats, ZoneError> {
        self.get_json(id, "stats", &()).await
    }

    async fn stat_path(&self, id: &str, path: &str) -> Result<PathStat, ZoneError> {
        let query = PathQuery {
            path: path.to_owned(),
            ..Default::default()
        };
        self.get_json(id, "path", &query).await
    }

    async fn archive(&self, id: &str, path: &str) -> Result<(PathStat, ByteStream), ZoneError> {
        let query = PathQuery {
            path: path.to_owned(),
            ..Default::default()
        };
        let response = self
            .request(Method::GET, id, "archive", &query, empty(), false)
            .await?;
        let mut reader = Self::reader(response);
        let read_stat = async {
            let len = reader.read_u32().await? as usize;
            if len > super::MAX_FRAME {
                return Err(invalid(format!("a path stat of {len} bytes")));
            }
            let mut stat = vec![0u8; len];
            reader.read_exact(&mut stat).await?;
            serde_json::from_slice::<PathStat>(&stat).map_err(invalid)
        };
        let stat = read_stat.await.map_err(|e| self.unreachable(e))?;
        Ok((stat, reader))
    }

    async fn extract(
        &self,
        id: &str,
        path: &str,
        tar: ByteStream,
        options: ExtractOptions,
    ) -> Result<(), ZoneError> {
        let query = PathQuery {
            path: path.to_owned(),
            no_overwrite_dir_non_dir: options.no_overwrite_dir_non_dir,
            copy_uid_gid: options.copy_uid_gid,
        };
        let body = StreamBody::new(ReaderStream::new(tar).map(|chunk| chunk.map(Frame::data)))
            .boxed_unsync();
        self.request(Method::PUT, id, "archive", &query, body, false)
            .await?;
        Ok(())
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, ZoneError> {
        self.get_json(id, "changes", &()).await
    }

    async fn export(&self, id: &str) -> Result<ByteStream, ZoneError> {
        let response = self
            .request(Method::GET, id, "export", &(), empty(), false)
            .await?;
        Ok(Self::reader(response))
    }
}

/// The client's half of an attach or exec session.
struct Remote {
    session: Session,
    pid: Option<i64>,
    exit: ExitFuture,
    resize: Option<ResizeFn>,
}

impl Remote {
    /// Starts the session's two tasks on the upgraded connection `io`.
    fn open(
        io: impl tokio::io::AsyncRead + AsyncWrite + Send + 'static,
        headers: &HeaderMap,
        address: &str,
    ) -> Remote {
        let has_input = headers.contains_key(STDIN_HEADER);
        let has_resize = headers.contains_key(RESIZE_HEADER);
        let pid = headers
            .get(PID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let (mut reader, mut writer) = tokio::io::split(io);

        // Writer: stdin in order (bounded, so a slow process slows the
        // caller), resizes beside it.
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(16);
        let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            let (mut stdin_open, mut control_open) = (has_input, has_resize);
            let mut closed = false;
            while stdin_open || control_open {
                let next = tokio::select! {
                    f = stdin_rx.recv(), if stdin_open => match f {
                        Some(f) => {
                            closed |= f.first() == Some(&CLOSE_STDIN);
                            f
                        }
                        None => {
                            stdin_open = false;
                            if closed {
                                continue;
                            }
                            // Dropped without a shutdown: the node drops
                            // its input too (a detach, not an EOF).
                            frame(DROP_STDIN, b"")
                        }
                    },
                    f = control_rx.recv(), if control_open => match f {
                        Some(f) => f,
                        None => {
                            control_open = false;
                            continue;
                        }
                    },
                };
                let written = async {
                    writer.write_all(&next).await?;
                    writer.flush().await
                };
                if written.await.is_err() {
                    break;
                }
            }
        });

        // Reader: output chunks, then the exit; stops once nobody wants
        // either.
        let (output_tx, mut output_rx) = mpsc::channel::<io::Result<OutputChunk>>(16);
        let (exit_tx, exit_rx) = oneshot::channel::<Result<i64, ZoneError>>();
        let node = address.to_owned();
        tokio::spawn(async move {
            let mut output_tx = Some(output_tx);
            let mut exit_tx = Some(exit_tx);
            loop {
                let next = tokio::select! {
                    f = read_frame(&mut reader) => f,
                    _ = async {
                        if let Some(tx) = &output_tx {
                            tx.closed().await;
                        }
                        if let Some(tx) = exit_tx.as_mut() {
                            tx.closed().await;
                        }
                    } => break,
                };
                match next {
                    Ok(Some((kind, data))) => match (kind_stream(kind), kind) {
                        (Some(stream), _) => {
                            if let Some(tx) = &output_tx {
                                let _ = tx.send(Ok(OutputChunk { stream, data })).await;
                            }
                        }
                        (_, END) => output_tx = None,
                        (_, OUTPUT_ERROR) => {
                            if let Some(tx) = &output_tx {
                                let message = String::from_utf8_lossy(&data).into_owned();
                                let _ = tx.send(Err(io::Error::other(message))).await;
                            }
                        }
                        (_, EXIT) if data.len() == 8 => {
                            if let Some(tx) = exit_tx.take() {
                                let _ = tx.send(Ok((&data[..]).get_i64()));
                            }
                        }
                        (_, EXIT_ERROR) => {
                            if let Some(tx) = exit_tx.take() {
                                let error = serde_json::from_slice::<WireError>(&data)
                                    .unwrap_or_else(|e| WireError::Other {
                                        message: format!("an exit error that does not decode: {e}"),
                                    });
                                let _ = tx.send(Err(error.into_zone_error(&node)));
                            }
                        }
                        _ => tracing::debug!(kind, "ignoring an unknown session frame"),
                    },
                    Ok(None) => {
                        if let Some(tx) = &output_tx {
                            let eof = io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("the node at {node} ended the session before the output"),
                            );
                            let _ = tx.send(Err(eof)).await;
                        }
                        break;
                    }
                    Err(e) => {
                        if let Some(tx) = &output_tx {
                            let _ = tx.send(Err(e)).await;
                        }
                        break;
                    }
                }
            }
        });

        let node = address.to_owned();
        let exit: ExitFuture = Box::pin(async move {
            exit_rx.await.unwrap_or_else(|_| {
                Err(ZoneError::Runtime {
                    op: format!("waiting for an exec on the node at {node}"),
                    message: "the session ended before the exit code arrived".into(),
                })
            })
        });
        let resize: Option<ResizeFn> = has_resize.then(|| {
            let control = control_tx.clone();
            Box::new(move |height: u16, width: u16| {
                let mut size = [0u8; 4];
                size[..2].copy_from_slice(&height.to_be_bytes());
                size[2..].copy_from_slice(&width.to_be_bytes());
                control
                    .send(frame(RESIZE, &size))
                    .map_err(|_| ZoneError::Runtime {
                        op: "resize".into(),
                        message: "the exec's session has ended".into(),
                    })
            }) as ResizeFn
        });
        drop(control_tx);
        let input = has_input.then(|| {
            Box::pin(RemoteInput {
                tx: PollSender::new(stdin_tx),
                closed: false,
            }) as crate::streams::Input
        });
        let output = futures::stream::poll_fn(move |cx| output_rx.poll_recv(cx));
        Remote {
            session: Session {
                input,
                output: Box::pin(output),
            },
            pid,
            exit,
            resize,
        }
    }
}

/// A session's stdin: each write a [`STDIN`] frame, the shutdown a
/// [`CLOSE_STDIN`].
struct RemoteInput {
    tx: PollSender<Bytes>,
    closed: bool,
}

impl AsyncWrite for RemoteInput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(broken_pipe()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = buf.len().min(STDIN_CHUNK);
        this.tx
            .send_item(frame(STDIN, &buf[..n]))
            .map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        ready!(this.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        this.tx
            .send_item(frame(CLOSE_STDIN, b""))
            .map_err(|_| broken_pipe())?;
        this.closed = true;
        this.tx.close();
        Poll::Ready(Ok(()))
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the session with the node ended")
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
