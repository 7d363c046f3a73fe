//! Query-string values as Docker's daemon reads them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ApiError;

/// Docker's `httputils.BoolValue`: anything but empty, `0`, `no`, `false`
/// and `none` (any case, surrounding spaces ignored) is true.
pub fn bool_value(value: Option<&str>) -> bool {
    let value = value.unwrap_or_default().trim().to_ascii_lowercase();
    !matches!(value.as_str(), "" | "0" | "no" | "false" | "none")
}

/// A time as `since`/`until` carry it (Docker's `timetypes.ParseTimestamps`
/// output): Unix seconds with an optional fraction (`1700000000.5`; the CLI
/// resolves `10m` or a date itself before sending), or RFC 3339. `None`
/// when empty; times beyond what a date holds saturate to the latest one.
pub fn timestamp(raw: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::bad_request(format!(
            "invalid time value {raw:?}: expected Unix seconds, seconds.nanoseconds, or RFC 3339"
        ))
    };
    if raw.contains(['T', 't']) {
        return OffsetDateTime::parse(raw, &Rfc3339)
            .map(Some)
            .map_err(|_| bad());
    }
    let (seconds, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    let nanos: i64 = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // The digits are a fraction of a second: `.5` is half of one.
        format!("{fraction:0<9}").parse().map_err(|_| bad())?
    };
    let nanos = if seconds < 0 { -nanos } else { nanos };
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    Ok(Some(
        OffsetDateTime::from_unix_timestamp_nanos(total).unwrap_or(if total < 0 {
            time::PrimitiveDateTime::MIN.assume_utc()
        } else {
            time::PrimitiveDateTime::MAX.assume_utc()
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_true_unless_empty_zero_no_false_or_none() {
        assert!(bool_value(Some("1")));
        assert!(bool_value(Some("True")));
        assert!(bool_value(Some("yes")));
        assert!(!bool_value(Some("0")));
        assert!(!bool_value(Some("false")));
        assert!(!bool_value(Some(" No ")));
        assert!(!bool_value(Some("none")));
        assert!(!bool_value(None));
    }

    #[test]
    fn times_are_unix_seconds_with_a_fraction_or_rfc_3339() {
        assert_eq!(timestamp("").ok(), Some(None));
        let t = timestamp("1700000000")
            .ok()
            .flatten()
            .map(|t| t.unix_timestamp());
        assert_eq!(t, Some(1_700_000_000));
        let t = timestamp("1700000000.5")
            .ok()
            .flatten()
            .map(|t| t.nanosecond());
        assert_eq!(t, Some(500_000_000));
        let t = timestamp("1700000000.000000001")
            .ok()
            .flatten()
            .map(|t| t.nanosecond());
        assert_eq!(t, Some(1));
        let t = timestamp("2023-11-14T22:13:20.25Z")
            .ok()
            .flatten()
            .map(|t| t.unix_timestamp());
        assert_eq!(t, Some(1_700_000_000));
        assert!(timestamp("99999999999999").ok().flatten().is_some());
        assert!(timestamp("yesterday").is_err());
        assert!(timestamp("1.1234567890").is_err());
    }
}
