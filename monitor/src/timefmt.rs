//! Timestamps as Docker writes them: RFC 3339 in UTC with nanoseconds
//! (`2026-11-23T01:02:03.123456789Z`), for log lines and the state files.

use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339, UTC.
pub(crate) fn format(t: SystemTime) -> String {
    // Formatting a UTC date in the years 0..=9999 cannot fail; the fallback
    // only keeps a far-future clock from panicking.
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// Parses what [`format`] wrote (any RFC 3339 offset is accepted).
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_time_round_trips_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        let s = format(t);
        assert!(s.ends_with(".123456789Z"), "{s}");
        assert_eq!(parse(&s), Some(t));
    }
}
