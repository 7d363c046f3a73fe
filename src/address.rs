//! The addresses `-H`, `--admin-host` and `SDC_DOCKER_ADMIN_HOST` take, in
//! Docker's spelling: `unix:///path/to.sock` or `tcp://host:port`.
//!
//! One parser for the server (which binds them) and the operator CLI (which
//! connects to them), so both accept exactly the same strings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The default Docker API socket.
pub const DEFAULT_HOST: &str = "unix:///var/run/sdc-docker.sock";

/// The default admin API socket.
pub const DEFAULT_ADMIN_HOST: &str = "unix:///var/run/sdc-docker-admin.sock";

/// Where a server listens, or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// An address that is neither `unix://PATH` nor `tcp://HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {given:?}: {why} (expected unix:///path/to.sock or tcp://host:port)")]
pub struct AddressError {
    given: String,
    why: &'static str,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |why| AddressError {
            given: s.to_string(),
            why,
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(error("no socket path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = s.strip_prefix("tcp://") {
            let hostport = hostport.trim_end_matches('/');
            let (host, port) = hostport.rsplit_once(':').ok_or_else(|| error("no port"))?;
            if host.is_empty() {
                return Err(error("no host"));
            }
            port.parse::<u16>()
                .map_err(|_| error("the port is not a number from 0 to 65535"))?;
            return Ok(Address::Tcp(hostport.to_string()));
        }
        Err(error("unknown scheme"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp(hostport) => write!(f, "tcp://{hostport}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_addresses_parse() {
        assert_eq!(
            "unix:///var/run/sdc-docker.sock".parse(),
            Ok(Address::Unix(PathBuf::from("/var/run/sdc-docker.sock")))
        );
        assert_eq!(
            "tcp://127.0.0.1:2375".parse(),
            Ok(Address::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            "tcp://[::1]:2375".parse(),
            Ok(Address::Tcp("[::1]:2375".into()))
        );
    }

    #[test]
    fn addresses_without_a_scheme_or_port_are_refused() {
        assert!("/var/run/x.sock".parse::<Address>().is_err());
        assert!("tcp://127.0.0.1".parse::<Address>().is_err());
        assert!("tcp://127.0.0.1:http".parse::<Address>().is_err());
        assert!("unix://".parse::<Address>().is_err());
    }

    #[test]
    fn an_address_displays_as_it_is_written() {
        for s in ["unix:///tmp/a.sock", "tcp://0.0.0.0:2375"] {
            assert_eq!(
                s.parse::<Address>().map(|a| a.to_string()).as_deref(),
                Ok(s)
            );
        }
    }
}
