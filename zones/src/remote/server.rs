//! The node's side: [`serve`] answers the protocol of the [module
//! documentation](super) for one [`ZoneStreams`] (the node's driver) on a
//! TCP listener; [`Server`] runs it in the background on an address it
//! binds.
//!
//! Each connection is one hyper HTTP/1.1 connection task; an attach or exec
//! session, once upgraded, is a task of its own pumping frames both ways
//! until the output ended (and the exec's exit was sent) or the client went
//! away. Stopping the server stops accepting and ends every connection and
//! session at once; the zones and their execs' processes are the driver's
//! business (a dropped exec is reaped).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::io::{ReaderStream, StreamReader};

use super::{
    AttachQuery, CLOSE_STDIN, DROP_STDIN, END, EXIT, EXIT_ERROR, LogsQuery, OUTPUT_ERROR,
    PID_HEADER, PREFIX, PathQuery, RESIZE, RESIZE_HEADER, ResizeQuery, STDIN, STDIN_HEADER, Token,
    UPGRADE, WireError, frame, read_frame, stream_kind, write_frames,
};
use crate::streams::{
    AttachOptions, ExecSpec, ExitFuture, ExtractOptions, Input, LogEntry, LogOptions, Output,
    ResizeFn, ZoneStreams,
};

/// A response body: whole or streamed.
type Body = UnsyncBoxBody<Bytes, io::Error>;

/// What every request handler shares.
struct Shared {
    streams: Arc<dyn ZoneStreams>,
    token: Token,
    /// Becomes `true` when the server stops: sessions end.
    closing: watch::Receiver<bool>,
}

/// The protocol served in the background on a bound address.
pub struct Server {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `address` (port 0: any free one) and serves `streams` there to
    /// requests carrying `token`.
    pub async fn bind(
        address: SocketAddr,
        streams: Arc<dyn ZoneStreams>,
        token: Token,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, streams, token, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        tracing::info!(%address, "zone streams listening");
        Ok(Server {
            address,
            stop,
            task,
        })
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting and ends every connection and session.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Serves `streams` on `listener` to requests carrying `token` until
/// `shutdown` completes; then every connection and session ends.
pub async fn serve(
    listener: TcpListener,
    streams: Arc<dyn ZoneStreams>,
    token: Token,
    shutdown: impl Future<Output = ()>,
) {
    let (closing_tx, closing) = watch::channel(false);
    let shared = Arc::new(Shared {
        streams,
        token,
        closing,
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            handle(shared.clone(), req)
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await;
                        if let Err(e) = served {
                            tracing::debug!(%peer, error = %e, "zone streams connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather
                    // than spin.
                    tracing::warn!(error = %e, "accepting a zone streams connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    closing_tx.send_replace(true);
    connections.shutdown().await;
}

/// Answers one request; errors become their status and JSON.
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    Ok(match route(&shared, req).await {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(%method, %path, error = ?e, "zone streams request failed");
            let status = e.status();
            let json = serde_json::to_vec(&e).unwrap_or_default();
            let mut response = Response::new(full(json));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
    })
}

/// Checks the token and dispatches by method and route.
async fn route(shared: &Shared, mut req: Request<Incoming>) -> Result<Response<Body>, WireError> {
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !shared.token.matches(offered) {
        return Err(WireError::Unauthorized {
            message: "the request does not carry this node's streams token".into(),
        });
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some((id, op)) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
    else {
        return Err(no_route(req.method(), &path));
    };
    let streams = &shared.streams;
    let zone = |e| WireError::from(&e);
    match (req.method().clone(), op) {
        (Method::POST, "attach") => {
            let q: AttachQuery = parse_query(&query)?;
            let upgrade = upgrade_of(&mut req)?;
            let options = AttachOptions {
                stdin: q.stdin,
                stdout: q.stdout,
                stderr: q.stderr,
                stdin_once: q.stdin_once,
            };
            let session = streams.attach(id, options).await.map_err(zone)?;
            let has_input = session.input.is_some();
            spawn_session(
                upgrade,
                session.input,
                session.output,
                None,
                None,
                shared.closing.clone(),
            );
            Ok(switching(has_input, None, false))
        }
        (Method::POST, "resize") => {
            let q: ResizeQuery = parse_query(&query)?;
            streams.resize(id, q.height, q.width).await.map_err(zone)?;
            Ok(no_content())
        }
        (Method::POST, "exec") => {
            let upgrade = upgrade_of(&mut req)?;
            let body = read_body(req.into_body()).await?;
            let spec: ExecSpec =
                serde_json::from_slice(&body).map_err(|e| WireError::BadRequest {
                    message: format!("the exec spec: {e}"),
                })?;
            let process = streams.exec(id, &spec).await.map_err(zone)?;
            let has_input = process.session.input.is_some();
            let has_resize = process.resize.is_some();
            spawn_session(
                upgrade,
                process.session.input,
                process.session.output,
                Some(process.exit),
                process.resize,
                shared.closing.clone(),
            );
            Ok(switching(has_input, process.pid, has_resize))
        }
        (Method::GET, "logs") => {
            let q: LogsQuery = parse_query(&query)?;
            let options = LogOptions {
                stdout: q.stdout,
                stderr: q.stderr,
                since: parse_time(q.since.as_deref())?,
                until: parse_time(q.until.as_deref())?,
                tail: q.tail,
                follow: q.follow,
            };
            let entries = streams.logs(id, options).await.map_err(zone)?;
            let frames = entries.map(|entry| {
                Ok::<_, io::Error>(Frame::data(match entry {
                    Ok(entry) => log_frame(&entry),
                    Err(e) => frame(OUTPUT_ERROR, e.to_string().as_bytes()),
                }))
            });
            Ok(Response::new(StreamBody::new(frames).boxed_unsync()))
        }
        (Method::GET, "stats") => json(&streams.stats(id).await.map_err(zone)?),
        (Method::GET, "path") => {
            let q: PathQuery = parse_query(&query)?;
            json(&streams.stat_path(id, &q.path).await.map_err(zone)?)
        }
        (Method::GET, "archive") => {
            let q: PathQuery = parse_query(&query)?;
            let (stat, tar) = streams.archive(id, &q.path).await.map_err(zone)?;
            let stat = serde_json::to_vec(&stat).map_err(other)?;
            let mut prefix = BytesMut::with_capacity(4 + stat.len());
            prefix.put_u32(stat.len() as u32);
            prefix.put_slice(&stat);
            let body = futures::stream::once(async move { Ok(prefix.freeze()) })
                .chain(ReaderStream::new(tar));
            Ok(Response::new(stream_body(body)))
        }
        (Method::PUT, "archive") => {
            let q: PathQuery = parse_query(&query)?;
            let tar = Box::pin(StreamReader::new(
                req.into_body()
                    .into_data_stream()
                    .map(|chunk| chunk.map_err(io::Error::other)),
            ));
            let options = ExtractOptions {
                no_overwrite_dir_non_dir: q.no_overwrite_dir_non_dir,
                copy_uid_gid: q.copy_uid_gid,
            };
            streams
                .extract(id, &q.path, tar, options)
                .await
                .map_err(zone)?;
            Ok(no_content())
        }
        (Method::GET, "changes") => json(&streams.changes(id).await.map_err(zone)?),
        (Method::GET, "export") => {
            let tar = streams.export(id).await.map_err(zone)?;
            Ok(Response::new(stream_body(ReaderStream::new(tar))))
        }
        (method, _) => Err(no_route(&method, &path)),
    }
}

fn no_route(method: &Method, path: &str) -> WireError {
    WireError::BadRequest {
        message: format!("no route {method} {path}"),
    }
}

fn other(e: impl std::fmt::Display) -> WireError {
    WireError::Other {
        message: e.to_string(),
    }
}

fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, WireError> {
    serde_urlencoded::from_str(query).map_err(|e| WireError::BadRequest {
        message: format!("the query {query:?}: {e}"),
    })
}

fn parse_time(text: Option<&str>) -> Result<Option<OffsetDateTime>, WireError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|e| WireError::BadRequest {
            message: format!("the time {t:?}: {e}"),
        })
    })
    .transpose()
}

/// A whole request body (an exec spec: small).
async fn read_body(body: Incoming) -> Result<Bytes, WireError> {
    Ok(http_body_util::Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(|e| WireError::BadRequest {
            message: format!("reading the request: {e}"),
        })?
        .to_bytes())
}

/// The connection's upgrade, once the 101 is sent; refuses a request that
/// does not ask for the session protocol.
fn upgrade_of(req: &mut Request<Incoming>) -> Result<hyper::upgrade::OnUpgrade, WireError> {
    let asks = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(UPGRADE.as_bytes()));
    if !asks {
        return Err(WireError::BadRequest {
            message: format!("attach and exec need `Upgrade: {UPGRADE}`"),
        });
    }
    Ok(hyper::upgrade::on(req))
}

/// The 101 answer of a session.
fn switching(has_input: bool, pid: Option<i64>, has_resize: bool) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(header::UPGRADE, header::HeaderValue::from_static(UPGRADE));
    if has_input {
        headers.insert(STDIN_HEADER, header::HeaderValue::from_static("1"));
    }
    if has_resize {
        headers.insert(RESIZE_HEADER, header::HeaderValue::from_static("1"));
    }
    if let Some(pid) = pid {
        headers.insert(PID_HEADER, header::HeaderValue::from(pid));
    }
    response
}

/// Runs the session once the connection is upgraded (it never is when the
/// client went away first: the session is dropped then).
fn spawn_session(
    upgrade: hyper::upgrade::OnUpgrade,
    input: Option<Input>,
    output: Output,
    exit: Option<ExitFuture>,
    resize: Option<ResizeFn>,
    closing: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                pump(TokioIo::new(upgraded), input, output, exit, resize, closing).await;
            }
            Err(e) => tracing::debug!(error = %e, "a zone session was never upgraded"),
        }
    });
}

/// Carries a session over `io`: the client's frames into the process, the
/// output (and exit) out, until the output ended and the exit was sent, the
/// client went away, or the server stops.
async fn pump(
    io: impl AsyncRead + AsyncWrite + Send + 'static,
    input: Option<Input>,
    mut output: Output,
    exit: Option<ExitFuture>,
    resize: Option<ResizeFn>,
    mut closing: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = tokio::io::split(io);
    let inbound = async move {
        let mut input = input;
        loop {
            match read_frame(&mut reader).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(stdin) = input.as_mut() {
                        let written = async {
                            stdin.write_all(&data).await?;
                            stdin.flush().await
                        };
                        if let Err(e) = written.await {
                            tracing::debug!(error = %e, "writing a session's stdin");
                            input = None;
                        }
                    }
                }
                Ok(Some((CLOSE_STDIN, _))) => {
                    if let Some(mut stdin) = input.take() {
                        let _ = stdin.shutdown().await;
                    }
                }
                Ok(Some((DROP_STDIN, _))) => input = None,
                Ok(Some((RESIZE, size))) if size.len() == 4 => {
                    let height = u16::from_be_bytes([size[0], size[1]]);
                    let width = u16::from_be_bytes([size[2], size[3]]);
                    if let Some(resize) = &resize
                        && let Err(e) = resize(height, width)
                    {
                        tracing::debug!(error = %e, "resizing a session's pty");
                    }
                }
                Ok(Some((kind, _))) => {
                    tracing::debug!(kind, "ignoring an unknown session frame");
                }
                // The client closed the connection (it never half-closes),
                // or it broke: the session is over.
                Ok(None) | Err(_) => return,
            }
        }
    };
    let outbound = async move {
        let mut exit = exit;
        let mut output_open = true;
        while output_open || exit.is_some() {
            tokio::select! {
                chunk = output.next(), if output_open => match chunk {
                    Some(Ok(chunk)) => write_frames(&mut writer, stream_kind(chunk.stream), &chunk.data).await?,
                    Some(Err(e)) => write_frames(&mut writer, OUTPUT_ERROR, e.to_string().as_bytes()).await?,
                    None => {
                        output_open = false;
                        write_frames(&mut writer, END, b"").await?;
                    }
                },
                code = async {
                    match exit.as_mut() {
                        Some(exit) => exit.await,
                        None => std::future::pending().await,
                    }
                }, if exit.is_some() => {
                    exit = None;
                    match code {
                        Ok(code) => write_frames(&mut writer, EXIT, &code.to_be_bytes()).await?,
                        Err(e) => {
                            let json = serde_json::to_vec(&WireError::from(&e)).unwrap_or_default();
                            write_frames(&mut writer, EXIT_ERROR, &json).await?;
                        }
                    }
                }
            }
            writer.flush().await?;
        }
        writer.shutdown().await
    };
    tokio::select! {
        done = outbound => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "a zone session's client went away");
            }
        }
        _ = inbound => {}
        _ = closing.wait_for(|c| *c) => {}
    }
}

/// A log entry as a frame: its stream's kind, its time, its bytes.
fn log_frame(entry: &LogEntry) -> Bytes {
    let mut payload = Vec::with_capacity(16 + entry.data.len());
    payload.extend_from_slice(&entry.time.unix_timestamp_nanos().to_be_bytes());
    payload.extend_from_slice(&entry.data);
    frame(stream_kind(entry.stream), &payload)
}

fn json(value: &impl serde::Serialize) -> Result<Response<Body>, WireError> {
    let mut response = Response::new(full(serde_json::to_vec(value).map_err(other)?));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn stream_body(stream: impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static) -> Body {
    StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}
