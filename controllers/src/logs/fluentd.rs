//! The `fluentd` driver's wire format, as moby's `daemon/logger/fluentd`
//! sends it through fluent-logger-golang: the Forward protocol's message
//! mode over TCP, one msgpack array `[tag, time, record]` per line, where
//! `tag` is `fluentd-tag` rendered for the container (default `{{.ID}}`),
//! `time` is the line's time in whole seconds (moby's default, without
//! `fluentd-sub-second-precision`), and `record` is the map
//! `{"container_id", "container_name", "source", "log"}` (the full id, the
//! name with Docker's leading `/`, `stdout` or `stderr`, the text).
//!
//! The msgpack encoding is written by hand: only strings, unsigned
//! integers, arrays and maps are needed. The connection is made on the
//! first send and made again after a failure (the forwarding loop retries
//! with backoff). Limits: no acknowledgements (`require_ack_response`), so a
//! message written into a connection that then breaks can be lost; no TLS
//! or shared-key handshake.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::ContainerInfo;
use super::follow::LogLine;
use super::forward::Endpoint;

/// Why a fluentd configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum FluentdError {
    /// `fluentd-address` is not `host:port`.
    #[error("invalid fluentd address {0:?}")]
    Address(String),
}

/// A container's fluentd destination and the fields of its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluentdConfig {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The rendered tag.
    pub tag: String,
    /// The container's full id (`container_id`).
    pub container_id: String,
    /// The container's name with a leading `/` (`container_name`).
    pub container_name: String,
}

impl FluentdConfig {
    /// The configuration for `fluentd-address` (`host:port`).
    pub fn new(
        address: &str,
        tag: String,
        container: &ContainerInfo,
    ) -> Result<Self, FluentdError> {
        let bad = || FluentdError::Address(address.to_owned());
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(FluentdConfig {
            host: host.to_owned(),
            port,
            tag,
            container_id: container.id.clone(),
            container_name: format!("/{}", container.name),
        })
    }

    /// The Forward protocol message of one line.
    pub fn message(&self, line: &LogLine) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + line.text.len() + self.tag.len());
        array_header(&mut out, 3);
        string(&mut out, &self.tag);
        unsigned(
            &mut out,
            u64::try_from(line.time.unix_timestamp()).unwrap_or(0),
        );
        map_header(&mut out, 4);
        for (key, value) in [
            ("container_id", self.container_id.as_str()),
            ("container_name", self.container_name.as_str()),
            ("source", line.stream.name()),
            ("log", line.text.as_str()),
        ] {
            string(&mut out, key);
            string(&mut out, value);
        }
        out
    }
}

/// Appends a msgpack string.
fn string(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.push(0xd9);
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// Appends a msgpack unsigned integer in its shortest form.
fn unsigned(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn array_header(out: &mut Vec<u8>, n: u8) {
    debug_assert!(n < 16);
    out.push(0x90 | n);
}

fn map_header(out: &mut Vec<u8>, n: u8) {
    debug_assert!(n < 16);
    out.push(0x80 | n);
}

/// Sends lines to a fluentd `in_forward` input.
pub struct FluentdEndpoint {
    config: FluentdConfig,
    stream: Option<TcpStream>,
}

impl FluentdEndpoint {
    /// An endpoint for `config`; connects on the first send.
    pub fn new(config: FluentdConfig) -> Self {
        FluentdEndpoint {
            config,
            stream: None,
        }
    }
}

#[async_trait::async_trait]
impl Endpoint for FluentdEndpoint {
    async fn send(&mut self, line: &LogLine) -> std::io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect((self.config.host.as_str(), self.config.port)).await?;
            tracing::info!(host = %self.config.host, port = self.config.port, "connected to fluentd");
            self.stream = Some(stream);
        }
        let message = self.config.message(line);
        if let Some(stream) = &mut self.stream
            && let Err(e) = stream.write_all(&message).await
        {
            self.stream = None;
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_integers_take_their_shortest_msgpack_forms() {
        let mut out = Vec::new();
        string(&mut out, "abc");
        assert_eq!(out, b"\xa3abc");
        out.clear();
        string(&mut out, &"x".repeat(40));
        assert_eq!(&out[..2], &[0xd9, 40]);
        out.clear();
        string(&mut out, &"x".repeat(300));
        assert_eq!(&out[..3], &[0xda, 0x01, 0x2c]);
        out.clear();
        unsigned(&mut out, 5);
        unsigned(&mut out, 200);
        unsigned(&mut out, 1_700_000_000);
        assert_eq!(out, [5, 0xcc, 200, 0xce, 0x65, 0x53, 0xf1, 0x00]);
    }

    #[test]
    fn addresses_are_host_and_port() {
        let info = ContainerInfo::default();
        assert!(FluentdConfig::new("fluent:24224", "t".into(), &info).is_ok());
        assert!(FluentdConfig::new("fluent", "t".into(), &info).is_err());
    }
}
