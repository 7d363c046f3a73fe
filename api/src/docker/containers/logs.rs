//! `GET /containers/{name}/logs`: a container's log, read from its zone on
//! the node ([`ZoneStreams::logs`](sdc_docker_zones::ZoneStreams::logs)),
//! for running and stopped containers alike (the node keeps the log until
//! the container is removed).
//!
//! The body is the log's bytes, in Docker's stdcopy frames when the
//! container has no tty (so `docker logs` keeps stdout and stderr apart),
//! raw when it has one; with `timestamps` every entry starts with its time
//! in RFC 3339 with nine fractional digits and a space. `follow` keeps the
//! body open for new entries until the container's process exits.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use sdc_docker_store::model::ContainerState;
use sdc_docker_zones::streams::{LogEntry, LogOptions};
use time::OffsetDateTime;

use super::hijack::{Framing, last};
use super::{find, zone_error, zone_streams};
use crate::ApiError;
use crate::docker::query::{bool_value, timestamp};
use crate::docker::{ApiVersion, DockerState};

/// Serves a container's log.
pub(super) async fn logs(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    axum::Extension(version): axum::Extension<ApiVersion>,
) -> Result<Response, ApiError> {
    let options = LogOptions {
        stdout: bool_value(last(&query, "stdout")),
        stderr: bool_value(last(&query, "stderr")),
        since: parse_time(last(&query, "since").unwrap_or_default())?,
        until: parse_time(last(&query, "until").unwrap_or_default())?,
        tail: parse_tail(last(&query, "tail").unwrap_or_default()),
        follow: bool_value(last(&query, "follow")),
    };
    let timestamps = bool_value(last(&query, "timestamps"));
    if !(options.stdout || options.stderr) {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let container = find(&state, &name).await?;
    if container.spec.log_config.driver() == "none" {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let framing = Framing::for_tty(container.spec.tty);
    let content_type = HeaderValue::from_static(framing.content_type(&version));
    if container.status.started_at.is_none() && container.status.state == ContainerState::Created {
        // Never ran: no log yet (the zone may not even exist).
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        return Ok(response);
    }
    let (streams, id) = zone_streams(&state, &container)?;
    let entries = streams
        .logs(&id, options)
        .await
        .map_err(|e| zone_error(&container, e))?;
    let container_name = container.metadata.name.clone();
    let body = entries.filter_map(move |entry| {
        let bytes = match entry {
            Ok(entry) => Some(Ok::<_, std::io::Error>(encode_entry(&entry, framing, timestamps))),
            Err(e) => {
                // The status is sent: all that is left is to end the body.
                tracing::warn!(container = %container_name, error = %e, "reading a container's log");
                Some(Err(e))
            }
        };
        std::future::ready(bytes)
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// One log entry as the client reads it.
pub(super) fn encode_entry(entry: &LogEntry, framing: Framing, timestamps: bool) -> Bytes {
    let mut out = BytesMut::new();
    if timestamps {
        let mut line = format_timestamp(entry.time).into_bytes();
        line.push(b' ');
        line.extend_from_slice(&entry.data);
        framing.encode(entry.stream, &line, &mut out);
    } else {
        framing.encode(entry.stream, &entry.data, &mut out);
    }
    out.freeze()
}

/// Docker's `RFC3339NanoFixed`: UTC, always nine fractional digits.
pub(super) fn format_timestamp(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// `tail`: `all` (or anything not a count, as Docker reads it) is
/// everything.
fn parse_tail(value: &str) -> Option<usize> {
    value.trim().parse::<usize>().ok()
}

/// A `since`/`until` value: empty or `0` is none (Docker's logs read `0`
/// as "not given"), otherwise [`timestamp`].
fn parse_time(value: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    if value.trim() == "0" {
        return Ok(None);
    }
    timestamp(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdc_docker_zones::streams::StdStream;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn times_are_read_as_unix_seconds_with_a_fraction_or_rfc_3339() {
        assert_eq!(parse_time("").ok(), Some(None));
        assert_eq!(parse_time("0").ok(), Some(None));
        let t = parse_time("1700000000").unwrap().unwrap();
        assert_eq!(t.unix_timestamp(), 1_700_000_000);
        let t = parse_time("1700000000.5").unwrap().unwrap();
        assert_eq!(t.nanosecond(), 500_000_000);
        let t = parse_time("1700000000.000000001").unwrap().unwrap();
        assert_eq!(t.nanosecond(), 1);
        let t = parse_time("2023-11-14T22:13:20.25Z").unwrap().unwrap();
        assert_eq!(t.unix_timestamp(), 1_700_000_000);
        assert_eq!(t.nanosecond(), 250_000_000);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("1.2.3").is_err());
        assert!(parse_time("1.0000000001").is_err());
    }

    #[test]
    fn a_timestamp_has_nine_fractional_digits_in_utc() {
        let t = parse_time("1700000000.05").unwrap().unwrap();
        assert_eq!(format_timestamp(t), "2023-11-14T22:13:20.050000000Z");
        let t = OffsetDateTime::parse("2023-11-14T23:13:20+01:00", &Rfc3339).unwrap();
        assert_eq!(format_timestamp(t), "2023-11-14T22:13:20.000000000Z");
    }

    #[test]
    fn a_tail_that_is_not_a_count_means_everything() {
        assert_eq!(parse_tail("all"), None);
        assert_eq!(parse_tail("2"), Some(2));
        assert_eq!(parse_tail("-1"), None);
    }

    #[test]
    fn an_entry_is_framed_with_its_timestamp_inside_the_frame() {
        let entry = LogEntry {
            stream: StdStream::Stderr,
            time: parse_time("1700000000").unwrap().unwrap(),
            data: Bytes::from_static(b"oops\n"),
        };
        let framed = encode_entry(&entry, Framing::Multiplexed, true);
        let text = b"2023-11-14T22:13:20.000000000Z oops\n";
        assert_eq!(&framed[..4], &[2, 0, 0, 0]);
        assert_eq!(&framed[4..8], &(text.len() as u32).to_be_bytes());
        assert_eq!(&framed[8..], text);
        assert_eq!(&encode_entry(&entry, Framing::Raw, false)[..], b"oops\n");
    }
}
