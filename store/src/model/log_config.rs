//! Log drivers and their options, checked with the seeds' sdc-docker rules
//! and words: `json-file` (`max-size`, `max-file`), `none`, and the
//! forwarding drivers `syslog`, `gelf` and `fluentd`, whose address option
//! is required. Unknown drivers (`journald` included) and unknown options
//! are refused, so a bad `--log-opt` fails `docker run` at once instead of
//! on the node.
//!
//! Every driver but `none` also writes the host log (the seeds: "logs are
//! written to the host for every log driver except 'none'"), rotated at
//! `max-size` (default [`DEFAULT_MAX_LOG_SIZE`]) keeping `max-file` files.

use std::collections::BTreeMap;

use super::container::LogConfig;

/// The host log's size limit when `max-size` is not given: the seeds'
/// `DEFAULT_MAX_LOG_SIZE`, 50 MB.
pub const DEFAULT_MAX_LOG_SIZE: u64 = 50 * 1024 * 1024;

/// How many host log files are kept when `max-file` is not given: the
/// current one and one rotated.
pub const DEFAULT_MAX_LOG_FILES: u32 = 2;

/// The longest the options may be, as JSON (the seeds' limit: they are
/// stored in zone metadata).
pub const MAX_LOG_CONFIG_LEN: usize = 1024;

/// A log configuration that passed [`LogConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidLogConfig {
    /// The driver: `json-file`, `none`, `syslog`, `gelf` or `fluentd`.
    pub driver: String,
    /// The options as given, with the driver's defaults added.
    pub options: BTreeMap<String, String>,
    /// Where output goes on the host: `None` for the `none` driver.
    pub host_log: Option<HostLog>,
}

/// Size and count limits of the host log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLog {
    /// Rotate when a file would grow past this many bytes.
    pub max_size: u64,
    /// Keep at most this many files, the current one included.
    pub max_files: u32,
}

/// Why a log configuration was refused; `Display` is the seeds' message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogConfigError {
    /// A driver sdc-docker does not run.
    #[error("unsupported log driver: {0}")]
    UnsupportedDriver(String),
    /// The driver's address option is missing.
    #[error("missing required log opt '{option}' for log driver: {driver}")]
    MissingOption {
        /// The option.
        option: String,
        /// The driver.
        driver: String,
    },
    /// An option the driver does not have.
    #[error("unknown log opt: '{option}' for {driver} driver")]
    UnknownOption {
        /// The option.
        option: String,
        /// The driver.
        driver: String,
    },
    /// `none` with options.
    #[error("log driver: {0} does not support options")]
    NoOptions(String),
    /// An option's value has the wrong shape.
    #[error("\"log opt '{option}'\" must be {expected}")]
    InvalidValue {
        /// The option.
        option: String,
        /// What it must be.
        expected: String,
    },
    /// The options are too long to store.
    #[error("value for log opts too long, must be < {MAX_LOG_CONFIG_LEN} (was {0})")]
    TooLong(usize),
}

/// How an option's value is checked.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    PositiveInteger,
    Size,
    SyslogAddress,
    FluentdAddress,
    GelfAddress,
    SyslogFacility,
}

struct Driver {
    name: &'static str,
    options: &'static [(&'static str, Kind)],
    required: &'static [&'static str],
    defaults: &'static [(&'static str, &'static str)],
}

const DRIVERS: &[Driver] = &[
    Driver {
        name: "json-file",
        options: &[
            ("max-size", Kind::Size),
            ("max-file", Kind::PositiveInteger),
        ],
        required: &[],
        defaults: &[],
    },
    Driver {
        name: "none",
        options: &[],
        required: &[],
        defaults: &[],
    },
    Driver {
        name: "syslog",
        options: &[
            ("syslog-address", Kind::SyslogAddress),
            ("syslog-facility", Kind::SyslogFacility),
            ("syslog-tag", Kind::Text),
        ],
        required: &["syslog-address"],
        defaults: &[("syslog-facility", "daemon"), ("syslog-tag", "{{.ID}}")],
    },
    Driver {
        name: "gelf",
        options: &[
            ("gelf-address", Kind::GelfAddress),
            ("gelf-tag", Kind::Text),
        ],
        required: &["gelf-address"],
        defaults: &[("gelf-tag", "{{.ID}}")],
    },
    Driver {
        name: "fluentd",
        options: &[
            ("fluentd-address", Kind::FluentdAddress),
            ("fluentd-tag", Kind::Text),
        ],
        required: &["fluentd-address"],
        defaults: &[("fluentd-tag", "{{.ID}}")],
    },
];

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "authpriv", "ftp",
    "cron", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

impl LogConfig {
    /// The driver, `json-file` when none is given.
    pub fn driver(&self) -> &str {
        if self.type_.is_empty() {
            "json-file"
        } else {
            &self.type_
        }
    }

    /// Checks the driver and its options with the seeds' rules, in their
    /// order: length, driver, required options, then each option.
    pub fn validate(&self) -> Result<ValidLogConfig, LogConfigError> {
        let length = serde_json::to_string(&self.config)
            .map(|s| s.len())
            .unwrap_or(0);
        if length > MAX_LOG_CONFIG_LEN {
            return Err(LogConfigError::TooLong(length));
        }
        let name = self.driver();
        let driver = DRIVERS
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| LogConfigError::UnsupportedDriver(name.to_owned()))?;
        for option in driver.required {
            if self.config.get(*option).is_none_or(|v| v.is_empty()) {
                return Err(LogConfigError::MissingOption {
                    option: (*option).to_owned(),
                    driver: name.to_owned(),
                });
            }
        }
        if driver.options.is_empty() && !self.config.is_empty() {
            return Err(LogConfigError::NoOptions(name.to_owned()));
        }
        for (option, value) in &self.config {
            let Some((_, kind)) = driver.options.iter().find(|(o, _)| o == option) else {
                return Err(LogConfigError::UnknownOption {
                    option: option.clone(),
                    driver: name.to_owned(),
                });
            };
            check_value(option, *kind, value)?;
        }
        let mut options = self.config.clone();
        for (option, value) in driver.defaults {
            options
                .entry((*option).to_owned())
                .or_insert_with(|| (*value).to_owned());
        }
        let host_log = (name != "none").then(|| HostLog {
            max_size: options
                .get("max-size")
                .and_then(|s| parse_size(s))
                .unwrap_or(DEFAULT_MAX_LOG_SIZE),
            max_files: options
                .get("max-file")
                .and_then(|n| n.parse().ok())
                .unwrap_or(DEFAULT_MAX_LOG_FILES),
        });
        Ok(ValidLogConfig {
            driver: name.to_owned(),
            options,
            host_log,
        })
    }
}

/// `10k`, `50m`, `1g` in bytes (binary units, as Docker's `RAMInBytes`).
fn parse_size(s: &str) -> Option<u64> {
    let (number, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = number.parse().ok()?;
    let factor = match unit {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn check_value(option: &str, kind: Kind, value: &str) -> Result<(), LogConfigError> {
    let invalid = |expected: &str| LogConfigError::InvalidValue {
        option: option.to_owned(),
        expected: expected.to_owned(),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match kind {
        Kind::Text => Ok(()),
        Kind::PositiveInteger => match value.parse::<u64>() {
            Ok(n) if digits(value) && n >= 1 => Ok(()),
            _ => Err(invalid("a positive integer")),
        },
        Kind::Size => {
            let ok = value.len() >= 2
                && digits(&value[..value.len() - 1])
                && value[..value.len() - 1]
                    .parse::<u64>()
                    .is_ok_and(|n| n >= 1)
                && matches!(value.as_bytes()[value.len() - 1], b'k' | b'm' | b'g')
                && parse_size(value).is_some();
            if ok {
                Ok(())
            } else {
                Err(invalid("a positive integer size ([0-9+][k|m|g])"))
            }
        }
        Kind::SyslogFacility => {
            let number = value
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= 23 && digits(value));
            if number.is_some() || FACILITIES.contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    "one of: kern,user,mail,daemon,auth,syslog,lpr,news,uucp,authpriv,ftp,cron,local[0-7] or [0-23]",
                ))
            }
        }
        Kind::SyslogAddress => {
            let expected = "a syslog address \"<udp|tcp>://<host>[:port]\"";
            let parts: Vec<&str> = value.split(':').collect();
            let with = |extra: &str| invalid(&format!("{expected} ({extra})"));
            if !(2..=3).contains(&parts.len()) {
                return Err(invalid(expected));
            }
            if !matches!(parts[0], "udp" | "tcp") {
                return Err(with("invalid protocol"));
            }
            let Some(host) = parts[1].strip_prefix("//") else {
                return Err(invalid(expected));
            };
            if !valid_host(host) {
                return Err(with("invalid host"));
            }
            if parts.len() == 3 && !digits(parts[2]) {
                return Err(with("invalid port"));
            }
            Ok(())
        }
        Kind::FluentdAddress => {
            let expected = "a fluentd address \"<host>:<port>\"";
            let with = |extra: &str| invalid(&format!("{expected} ({extra})"));
            let parts: Vec<&str> = value.split(':').collect();
            if parts.len() != 2 {
                return Err(invalid(expected));
            }
            if !valid_host(parts[0]) {
                return Err(with("invalid host"));
            }
            if !digits(parts[1]) || parts[1].parse::<u32>().map_or(true, |p| p < 1) {
                return Err(with("invalid port"));
            }
            Ok(())
        }
        Kind::GelfAddress => {
            let expected = "a gelf address \"udp://<host>:<port>\"";
            let with = |extra: &str| invalid(&format!("{expected} ({extra})"));
            let parts: Vec<&str> = value.split(':').collect();
            if parts.len() != 3 {
                return Err(invalid(expected));
            }
            if parts[0] != "udp" {
                return Err(with("invalid protocol"));
            }
            let Some(host) = parts[1].strip_prefix("//") else {
                return Err(invalid(expected));
            };
            if !valid_host(host) {
                return Err(with("invalid host"));
            }
            if !digits(parts[2]) {
                return Err(with("invalid port"));
            }
            Ok(())
        }
    }
}

/// The seeds' host rule: `[a-z0-9.-]+`, not starting or ending with `.` or
/// `-`, never two of them in a row.
fn valid_host(host: &str) -> bool {
    let bytes = host.as_bytes();
    let special = |b: u8| b == b'.' || b == b'-';
    !host.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || special(*b))
        && !special(bytes[0])
        && !special(bytes[bytes.len() - 1])
        && !bytes.windows(2).any(|w| special(w[0]) && special(w[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(driver: &str, options: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            type_: driver.into(),
            config: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn error(driver: &str, options: &[(&str, &str)]) -> String {
        config(driver, options)
            .validate()
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn json_file_is_the_default_and_writes_a_50_mb_host_log() {
        let valid = LogConfig::default().validate().expect("valid");
        assert_eq!(valid.driver, "json-file");
        assert_eq!(
            valid.host_log,
            Some(HostLog {
                max_size: DEFAULT_MAX_LOG_SIZE,
                max_files: DEFAULT_MAX_LOG_FILES
            })
        );
        let sized = config("json-file", &[("max-size", "10k"), ("max-file", "3")])
            .validate()
            .expect("valid");
        assert_eq!(
            sized.host_log,
            Some(HostLog {
                max_size: 10 * 1024,
                max_files: 3
            })
        );
    }

    #[test]
    fn none_writes_nothing_and_takes_no_options() {
        assert_eq!(
            config("none", &[]).validate().expect("valid").host_log,
            None
        );
        assert_eq!(
            error("none", &[("max-size", "1m")]),
            "log driver: none does not support options"
        );
    }

    #[test]
    fn unknown_drivers_and_options_are_refused_with_the_seeds_words() {
        assert_eq!(error("journald", &[]), "unsupported log driver: journald");
        assert_eq!(
            error("json-file", &[("x", "1")]),
            "unknown log opt: 'x' for json-file driver"
        );
        assert_eq!(
            error("syslog", &[]),
            "missing required log opt 'syslog-address' for log driver: syslog"
        );
        assert_eq!(
            error("fluentd", &[("fluentd-tag", "t")]),
            "missing required log opt 'fluentd-address' for log driver: fluentd"
        );
    }

    #[test]
    fn option_values_are_checked_like_the_seeds_check_them() {
        assert_eq!(
            error("json-file", &[("max-size", "10")]),
            "\"log opt 'max-size'\" must be a positive integer size ([0-9+][k|m|g])"
        );
        assert_eq!(
            error("json-file", &[("max-file", "0")]),
            "\"log opt 'max-file'\" must be a positive integer"
        );
        assert_eq!(
            error("syslog", &[("syslog-address", "unix:///dev/log")]),
            "\"log opt 'syslog-address'\" must be a syslog address \"<udp|tcp>://<host>[:port]\" (invalid protocol)"
        );
        assert!(
            config("syslog", &[("syslog-address", "udp://10.0.0.1:514")])
                .validate()
                .is_ok()
        );
        assert!(
            config("syslog", &[("syslog-address", "tcp://logs.example.com")])
                .validate()
                .is_ok()
        );
        assert_eq!(
            error("syslog", &[("syslog-address", "tcp://-bad-:514")]),
            "\"log opt 'syslog-address'\" must be a syslog address \"<udp|tcp>://<host>[:port]\" (invalid host)"
        );
        assert!(
            error(
                "syslog",
                &[
                    ("syslog-address", "udp://h:514"),
                    ("syslog-facility", "local9")
                ]
            )
            .contains("local[0-7] or [0-23]")
        );
        assert!(
            config("fluentd", &[("fluentd-address", "fluent:24224")])
                .validate()
                .is_ok()
        );
        assert_eq!(
            error("fluentd", &[("fluentd-address", "fluent:0")]),
            "\"log opt 'fluentd-address'\" must be a fluentd address \"<host>:<port>\" (invalid port)"
        );
        assert!(
            config("gelf", &[("gelf-address", "udp://graylog:12201")])
                .validate()
                .is_ok()
        );
        assert_eq!(
            error("gelf", &[("gelf-address", "tcp://graylog:12201")]),
            "\"log opt 'gelf-address'\" must be a gelf address \"udp://<host>:<port>\" (invalid protocol)"
        );
    }

    #[test]
    fn forwarding_drivers_get_their_default_tags_and_still_a_host_log() {
        let valid = config("syslog", &[("syslog-address", "udp://h:514")])
            .validate()
            .expect("valid");
        assert_eq!(valid.options["syslog-facility"], "daemon");
        assert_eq!(valid.options["syslog-tag"], "{{.ID}}");
        assert!(valid.host_log.is_some());
    }

    #[test]
    fn options_too_long_to_store_are_refused() {
        let long = "x".repeat(2000);
        assert!(
            error("syslog", &[("syslog-tag", &long)]).starts_with("value for log opts too long")
        );
    }
}
