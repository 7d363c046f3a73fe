//! The `gelf` driver's wire format, as moby's `daemon/logger/gelf` sends it
//! through go-gelf: one GELF 1.1 JSON message per line over UDP —
//! `version` "1.1", `host` (this node's hostname), `short_message` (the
//! line), `timestamp` (seconds as a float, millisecond precision), `level`
//! (6 for stdout, 3 for stderr) and the extra fields `_container_id`,
//! `_container_name`, `_image_id`, `_image_name`, `_command`, `_tag` and
//! `_created` — gzip-compressed (moby's default `gelf-compression-type`; the
//! seeds do not allow the option) and, when the compressed message is
//! larger than [`CHUNK_SIZE`] bytes, cut into GELF chunks: `0x1e 0x0f`, an
//! 8-byte message id, the chunk's sequence number and the chunk count, then
//! up to [`CHUNK_SIZE`]` - 12` bytes of the message.
//!
//! Limits: a message needing more than [`MAX_CHUNKS`] chunks (about 180 KB
//! compressed) is refused by the GELF spec; it is sent cut to what fits.
//! UDP has no delivery guarantee; a datagram lost on the way is lost.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::UdpSocket;

use super::ContainerInfo;
use super::follow::{LogLine, Stream};
use super::forward::Endpoint;

/// The largest datagram sent whole (go-gelf's `ChunkSize`).
pub const CHUNK_SIZE: usize = 1420;

/// The chunk header: magic (2), message id (8), sequence (1), count (1).
const CHUNK_HEADER: usize = 12;

/// The most chunks a GELF message may have.
pub const MAX_CHUNKS: usize = 128;

/// Why a GELF configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum GelfError {
    /// `gelf-address` is not `udp://host:port`.
    #[error("invalid gelf address {0:?}")]
    Address(String),
}

/// A container's GELF destination and the fields of its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GelfConfig {
    /// The input's host name or address.
    pub host: String,
    /// The input's UDP port.
    pub port: u16,
    /// This node's hostname (`host`).
    pub hostname: String,
    /// The rendered `gelf-tag` (`_tag`).
    pub tag: String,
    /// The container the lines come from.
    pub container: ContainerInfo,
}

impl GelfConfig {
    /// The configuration for `gelf-address`.
    pub fn new(
        address: &str,
        hostname: String,
        tag: String,
        container: ContainerInfo,
    ) -> Result<Self, GelfError> {
        let bad = || GelfError::Address(address.to_owned());
        let rest = address.strip_prefix("udp://").ok_or_else(bad)?;
        let (host, port) = rest.split_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(GelfConfig {
            host: host.to_owned(),
            port,
            hostname,
            tag,
            container,
        })
    }

    /// The GELF JSON of one line, uncompressed.
    pub fn message(&self, line: &LogLine) -> Vec<u8> {
        let c = &self.container;
        let created = c
            .created
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        let value = serde_json::json!({
            "version": "1.1",
            "host": self.hostname,
            "short_message": line.text,
            "timestamp": timestamp(line.time),
            "level": match line.stream { Stream::Stdout => 6, Stream::Stderr => 3 },
            "_container_id": c.id,
            "_container_name": c.name,
            "_image_id": c.image_id,
            "_image_name": c.image_name,
            "_command": c.command,
            "_tag": self.tag,
            "_created": created,
        });
        // A `Value` of strings and numbers always serializes.
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// `bytes` gzip-compressed (fastest level, as moby's default).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The datagrams of one (compressed) message: itself when it fits in
/// [`CHUNK_SIZE`], else GELF chunks under message id `id` (at most
/// [`MAX_CHUNKS`]; what does not fit is not sent).
pub fn datagrams(message: &[u8], id: [u8; 8]) -> Vec<Vec<u8>> {
    if message.len() <= CHUNK_SIZE {
        return vec![message.to_vec()];
    }
    let body = CHUNK_SIZE - CHUNK_HEADER;
    let pieces: Vec<&[u8]> = message.chunks(body).take(MAX_CHUNKS).collect();
    let count = pieces.len() as u8;
    pieces
        .iter()
        .enumerate()
        .map(|(seq, piece)| {
            let mut chunk = Vec::with_capacity(CHUNK_HEADER + piece.len());
            chunk.extend_from_slice(&[0x1e, 0x0f]);
            chunk.extend_from_slice(&id);
            chunk.push(seq as u8);
            chunk.push(count);
            chunk.extend_from_slice(piece);
            chunk
        })
        .collect()
}

/// Sends lines to a GELF UDP input.
pub struct GelfEndpoint {
    config: GelfConfig,
    socket: Option<(UdpSocket, std::net::SocketAddr)>,
}

impl GelfEndpoint {
    /// An endpoint for `config`; resolves and binds on the first send.
    pub fn new(config: GelfConfig) -> Self {
        GelfEndpoint {
            config,
            socket: None,
        }
    }
}

#[async_trait::async_trait]
impl Endpoint for GelfEndpoint {
    async fn send(&mut self, line: &LogLine) -> std::io::Result<()> {
        if self.socket.is_none() {
            let target = tokio::net::lookup_host((self.config.host.as_str(), self.config.port))
                .await?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} has no address", self.config.host),
                    )
                })?;
            let local = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            self.socket = Some((UdpSocket::bind(local).await?, target));
        }
        let compressed = gzip(&self.config.message(line));
        let id: [u8; 8] = rand::random();
        if let Some((socket, target)) = &self.socket {
            for datagram in datagrams(&compressed, id) {
                if let Err(e) = socket.send_to(&datagram, target).await {
                    self.socket = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// A time as GELF's float seconds, to the millisecond as go-gelf does.
pub fn timestamp(time: OffsetDateTime) -> f64 {
    (time.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_message_is_one_datagram_and_a_large_one_is_chunked() {
        assert_eq!(datagrams(b"small", [1; 8]), vec![b"small".to_vec()]);
        let large = vec![7u8; 3000];
        let chunks = datagrams(&large, [9; 8]);
        assert_eq!(chunks.len(), 3);
        for (seq, chunk) in chunks.iter().enumerate() {
            assert!(chunk.len() <= CHUNK_SIZE);
            assert_eq!(&chunk[..2], &[0x1e, 0x0f]);
            assert_eq!(&chunk[2..10], &[9; 8]);
            assert_eq!(chunk[10] as usize, seq);
            assert_eq!(chunk[11], 3);
        }
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c[12..].to_vec()).collect();
        assert_eq!(joined, large);
    }

    #[test]
    fn addresses_must_be_udp_with_a_port() {
        let info = ContainerInfo::default();
        assert!(
            GelfConfig::new("udp://graylog:12201", "h".into(), "t".into(), info.clone()).is_ok()
        );
        assert!(
            GelfConfig::new("tcp://graylog:12201", "h".into(), "t".into(), info.clone()).is_err()
        );
        assert!(GelfConfig::new("udp://graylog", "h".into(), "t".into(), info).is_err());
    }
}
