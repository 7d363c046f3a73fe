//! The `syslog` driver's wire format and transport, as moby's
//! `daemon/logger/syslog` sends with its default format: the Unix-style
//! RFC 3164 line `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG\n`, where PRI is the
//! facility (`syslog-facility`, a name or a number, default `daemon`) times
//! eight plus the severity (info for stdout, err for stderr), TAG is
//! `syslog-tag` rendered for the container (default `{{.ID}}`), and PID is
//! the daemon's. Over `udp://` each line is one datagram; over `tcp://` the
//! lines follow each other on one connection, each ended by its newline
//! (moby's default framer for this format adds none besides). The default
//! port is 514.
//!
//! Unlike moby, which stamps the time of sending, the timestamp is the
//! line's own (as the monitor read it), in UTC. Limits: no `tcp+tls`, no
//! `rfc5424` format (the seeds allow neither option); the address is
//! resolved again at each (re)connection.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::follow::{LogLine, Stream};
use super::forward::Endpoint;

/// The default syslog port.
pub const DEFAULT_PORT: u16 = 514;

/// Why a syslog configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// `syslog-address` is not `udp://host[:port]` or `tcp://host[:port]`.
    #[error("invalid syslog address {0:?}")]
    Address(String),
    /// `syslog-facility` is neither a facility name nor 0–23.
    #[error("invalid syslog facility {0:?}")]
    Facility(String),
}

/// The transport of a syslog address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per line.
    Udp,
    /// Newline-ended lines on one connection.
    Tcp,
}

/// A container's syslog destination and how its lines are labelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// UDP or TCP.
    pub transport: Transport,
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The facility number, 0–23.
    pub facility: u8,
    /// The rendered tag.
    pub tag: String,
}

const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The facility number of a name (`daemon`) or a number (`3`).
pub fn parse_facility(value: &str) -> Result<u8, SyslogError> {
    if let Some((_, n)) = FACILITIES.iter().find(|(name, _)| *name == value) {
        return Ok(*n);
    }
    match value.parse::<u8>() {
        Ok(n) if n <= 23 => Ok(n),
        _ => Err(SyslogError::Facility(value.to_owned())),
    }
}

impl SyslogConfig {
    /// The configuration from validated `syslog-*` options, with `tag`
    /// already rendered for the container.
    pub fn from_options(
        options: &BTreeMap<String, String>,
        tag: String,
    ) -> Result<Self, SyslogError> {
        let address = options.get("syslog-address").map_or("", String::as_str);
        let bad = || SyslogError::Address(address.to_owned());
        let (transport, rest) = if let Some(rest) = address.strip_prefix("udp://") {
            (Transport::Udp, rest)
        } else if let Some(rest) = address.strip_prefix("tcp://") {
            (Transport::Tcp, rest)
        } else {
            return Err(bad());
        };
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (rest, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let facility = parse_facility(options.get("syslog-facility").map_or("daemon", |f| f))?;
        Ok(SyslogConfig {
            transport,
            host: host.to_owned(),
            port,
            facility,
            tag,
        })
    }
}

/// The severity moby gives a stream: info (6) for stdout, err (3) for
/// stderr.
pub fn severity(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => 6,
        Stream::Stderr => 3,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One message in moby's default (Unix, RFC 3164 style) format, newline
/// included: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG\n` (Go's `time.Stamp`
/// pads the day with a space).
pub fn format_message(
    facility: u8,
    stream: Stream,
    tag: &str,
    pid: u32,
    time: OffsetDateTime,
    text: &str,
) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    format!(
        "<{}>{} {:>2} {:02}:{:02}:{:02} {}[{}]: {}\n",
        u16::from(facility) * 8 + u16::from(severity(stream)),
        month,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        tag,
        pid,
        text
    )
}

/// Sends lines to a syslog server.
pub struct SyslogEndpoint {
    config: SyslogConfig,
    pid: u32,
    udp: Option<(UdpSocket, std::net::SocketAddr)>,
    tcp: Option<TcpStream>,
}

impl SyslogEndpoint {
    /// An endpoint for `config`; connects on the first send.
    pub fn new(config: SyslogConfig) -> Self {
        SyslogEndpoint {
            config,
            pid: std::process::id(),
            udp: None,
            tcp: None,
        }
    }

    async fn resolve(&self) -> std::io::Result<std::net::SocketAddr> {
        tokio::net::lookup_host((self.config.host.as_str(), self.config.port))
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.config.host),
                )
            })
    }
}

#[async_trait::async_trait]
impl Endpoint for SyslogEndpoint {
    async fn send(&mut self, line: &LogLine) -> std::io::Result<()> {
        let message = format_message(
            self.config.facility,
            line.stream,
            &self.config.tag,
            self.pid,
            line.time,
            &line.text,
        );
        match self.config.transport {
            Transport::Udp => {
                if self.udp.is_none() {
                    let target = self.resolve().await?;
                    let local = if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    self.udp = Some((UdpSocket::bind(local).await?, target));
                }
                if let Some((socket, target)) = &self.udp
                    && let Err(e) = socket.send_to(message.as_bytes(), target).await
                {
                    self.udp = None;
                    return Err(e);
                }
                Ok(())
            }
            Transport::Tcp => {
                if self.tcp.is_none() {
                    let target = self.resolve().await?;
                    self.tcp = Some(TcpStream::connect(target).await?);
                }
                if let Some(stream) = &mut self.tcp
                    && let Err(e) = stream.write_all(message.as_bytes()).await
                {
                    self.tcp = None;
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_message_has_mobys_unix_format_and_priority() {
        let time = time::macros::datetime!(2026-11-03 04:05:06.789 UTC);
        assert_eq!(
            format_message(3, Stream::Stdout, "abc", 42, time, "hello"),
            "<30>Nov  3 04:05:06 abc[42]: hello\n"
        );
        assert_eq!(
            format_message(16, Stream::Stderr, "t", 1, time, "oops"),
            "<131>Nov  3 04:05:06 t[1]: oops\n"
        );
    }

    #[test]
    fn addresses_default_to_port_514_and_facilities_take_names_or_numbers() {
        let config = SyslogConfig::from_options(
            &options(&[
                ("syslog-address", "tcp://logs"),
                ("syslog-facility", "local7"),
            ]),
            "tag".into(),
        )
        .expect("valid");
        assert_eq!(config.transport, Transport::Tcp);
        assert_eq!((config.host.as_str(), config.port), ("logs", 514));
        assert_eq!(config.facility, 23);
        assert_eq!(parse_facility("5").expect("number"), 5);
        assert!(parse_facility("24").is_err());
        assert!(
            SyslogConfig::from_options(&options(&[("syslog-address", "unix:///x")]), "t".into())
                .is_err()
        );
    }
}
