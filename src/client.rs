//! A small HTTP/1 client of the admin API, over a unix socket or TCP.
//!
//! One connection per request (operator commands make one or two): connect,
//! hyper's HTTP/1 handshake, send, read the whole answer. An answer that is
//! not 2xx becomes [`ClientError::Server`] carrying the server's own
//! `message`, which the CLI prints as it is.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sdc_docker_api::admin::wire::{ApplyReport, Deleted, ObjectList};
use sdc_docker_store::Kind;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::address::Address;

/// What can go wrong talking to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address (no server, wrong path or port).
    #[error(
        "cannot reach the admin API at {address}: {cause} (is `sdc-docker serve` running there? set --admin-host or SDC_DOCKER_ADMIN_HOST)"
    )]
    Connect {
        /// Where we tried.
        address: Address,
        /// Why it failed (part of the message, so not a `source`).
        cause: std::io::Error,
    },
    /// The connection broke, or the answer was not HTTP.
    #[error("talking to the admin API at {address}: {cause}")]
    Http {
        /// Where.
        address: Address,
        /// What hyper said.
        cause: hyper::Error,
    },
    /// The server answered with an error; `message` is its own words.
    #[error("{message}")]
    Server {
        /// The status code.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// A 2xx answer we could not read.
    #[error("the admin API answered something unexpected: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of a server-side error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The admin API at one address.
#[derive(Clone, Debug)]
pub struct AdminClient {
    address: Address,
}

/// Percent-encode one path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdminClient {
    /// A client of the admin API at `address`.
    pub fn new(address: Address) -> Self {
        AdminClient { address }
    }

    /// Every object of `kind` in `account`.
    pub async fn list(&self, kind: Kind, account: &str) -> Result<ObjectList, ClientError> {
        let path = format!("/v1/{}?account={}", kind.plural(), encode(account));
        self.call(Method::GET, &path, None).await
    }

    /// One object, as the server stores it.
    pub async fn get(
        &self,
        kind: Kind,
        account: &str,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, &object_path(kind, account, name), None)
            .await
    }

    /// Replace an object from a person's YAML or JSON text, sent as it is
    /// (so the server's line and column point into it), guarded by
    /// `resource_version` whatever the text says.
    pub async fn replace_text(
        &self,
        kind: Kind,
        account: &str,
        name: &str,
        text: &str,
        resource_version: i64,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!(
            "{}&resourceVersion={resource_version}",
            object_path(kind, account, name)
        );
        self.call(
            Method::PUT,
            &path,
            Some(("application/yaml", text.as_bytes().to_vec())),
        )
        .await
    }

    /// Delete an object.
    pub async fn delete(
        &self,
        kind: Kind,
        account: &str,
        name: &str,
    ) -> Result<Deleted, ClientError> {
        self.call(Method::DELETE, &object_path(kind, account, name), None)
            .await
    }

    /// Apply a file (YAML or JSON, as the operator wrote it).
    pub async fn apply(&self, account: &str, file: Vec<u8>) -> Result<ApplyReport, ClientError> {
        let path = format!("/v1/apply?account={}", encode(account));
        self.call(Method::POST, &path, Some(("application/yaml", file)))
            .await
    }

    /// Send a request and decode a 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.request(method, path, body).await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(&bytes).trim().to_string();
                    if text.is_empty() {
                        status.to_string()
                    } else {
                        text
                    }
                });
            return Err(ClientError::Server { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Send one request on a fresh connection; the status and whole body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let host = match &self.address {
            Address::Unix(_) => "localhost".to_string(),
            Address::Tcp(hostport) => hostport.clone(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| ClientError::Decode(format!("building the request: {e}")))?;
        let connect = |cause| ClientError::Connect {
            address: self.address.clone(),
            cause,
        };
        match &self.address {
            Address::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(connect)?;
                self.exchange(stream, request).await
            }
            Address::Tcp(hostport) => {
                let stream = TcpStream::connect(hostport.as_str())
                    .await
                    .map_err(connect)?;
                self.exchange(stream, request).await
            }
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |cause| ClientError::Http {
            address: self.address.clone(),
            cause,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        // The connection is driven by its own task; it ends when `sender`
        // is dropped after the answer has been read.
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        drop(sender);
        driver.abort();
        Ok((status, body))
    }
}

fn object_path(kind: Kind, account: &str, name: &str) -> String {
    format!(
        "/v1/{}/{}?account={}",
        kind.plural(),
        encode(name),
        encode(account)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_in_paths() {
        assert_eq!(encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(
            object_path(Kind::Container, "default", "my web"),
            "/v1/containers/my%20web?account=default"
        );
    }
}
