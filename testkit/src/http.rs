//! A minimal HTTP/1.1 client for talking to the fixtures: one request per
//! connection, plain HTTP only, the whole body read into memory.
//!
//! The fixtures only ever talk to services on loopback that they started, so
//! this needs no TLS, pooling, redirects or streaming; it is built on the
//! `hyper` the workspace already compiles rather than on a full client crate.
//! It is not meant to test the product's own client: it is the independent
//! yardstick those tests compare against.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// How long one request (connect, send, read the whole response) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A response read to its end.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The value of header `name`, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Send `request` (its URI absolute: `http://HOST:PORT/path?query`) on a new
/// connection and read the whole response, within two minutes.
///
/// A `Host` header is added when the request has none.
pub async fn send(request: Request<Bytes>) -> io::Result<Response> {
    match tokio::time::timeout(REQUEST_TIMEOUT, send_now(request)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete response within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

async fn send_now(request: Request<Bytes>) -> io::Result<Response> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .uri
        .authority()
        .ok_or_else(|| invalid(format!("URI without a host: {}", parts.uri)))?
        .clone();
    if parts.uri.scheme_str() != Some("http") {
        return Err(invalid(format!("only http:// is supported: {}", parts.uri)));
    }
    let port = authority.port_u16().unwrap_or(80);
    // HTTP/1.1 origin-form: the request line carries only path and query.
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = path
        .parse::<Uri>()
        .map_err(|e| invalid(format!("{path}: {e}")))?;
    if !parts.headers.contains_key(HOST) {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| invalid(format!("{authority}: {e}")))?;
        parts.headers.insert(HOST, host);
    }

    let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    // The connection task ends when the response is read and `sender` drops.
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
