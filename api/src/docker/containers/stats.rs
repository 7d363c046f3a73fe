//! `docker stats`: `GET /containers/{name}/stats?stream=&one-shot=`.
//!
//! Readings come from the zone ([`ZoneStreams::stats`]) once a second, the
//! interval of Docker's stats collector; each carries the reading before it
//! as `precpu_stats`, from which the CLI computes the CPU percentage. As in
//! moby: `stream=false` answers the second of two readings a second apart
//! (so the percentage is not 0), `one-shot=true` the first alone; a
//! container that is not running answers an object holding only its name
//! and id, and a stream keeps sending those until the container runs again,
//! is removed, or the client goes away.
//!
//! [`ZoneStreams::stats`]: sdc_docker_zones::ZoneStreams::stats

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use sdc_docker_store::Error as StoreError;
use sdc_docker_store::model::{Container, ContainerState};
use sdc_docker_zones::ZoneError;
use sdc_docker_zones::streams::ZoneStats;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{containers_api, find, zone_streams};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::query::bool_value;

/// Between two readings: the interval of Docker's stats collector.
const INTERVAL: Duration = Duration::from_secs(1);

/// Go's zero `time.Time`, as Docker writes a reading never taken.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The query of `GET /containers/{name}/stats`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StatsQuery {
    /// Keep sending readings (default true).
    #[serde(default)]
    stream: Option<String>,
    /// One reading, without waiting for a second (only with `stream=false`).
    #[serde(default, rename = "one-shot")]
    one_shot: Option<String>,
}

/// Docker's `ThrottlingData` (always zero here: the zone's CFS throttling
/// is not read).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct ThrottlingData {
    periods: u64,
    throttled_periods: u64,
    throttled_time: u64,
}

/// Docker's `CPUUsage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct CpuUsage {
    total_usage: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_usage: Vec<u64>,
    usage_in_kernelmode: u64,
    usage_in_usermode: u64,
}

/// Docker's `CPUStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct CpuStats {
    cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "is_zero_u64")]
    system_cpu_usage: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    online_cpus: u32,
    throttling_data: ThrottlingData,
}

/// Docker's `MemoryStats` (Linux fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero_u64")]
    usage: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    max_usage: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    limit: u64,
}

/// Docker's `BlkioStatEntry`.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct BlkioStatEntry {
    major: u64,
    minor: u64,
    op: &'static str,
    value: u64,
}

/// Docker's `BlkioStats`: only the bytes read and written are known; the
/// other lists are null, as Docker sends them on cgroup v2.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct BlkioStats {
    io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    io_time_recursive: Option<Vec<BlkioStatEntry>>,
    sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

/// Docker's `PidsStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct PidsStats {
    #[serde(skip_serializing_if = "is_zero_u64")]
    current: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    limit: u64,
}

/// Docker's `StorageStats` (Windows only; always empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct StorageStats {}

/// Docker's `NetworkStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct NetworkStats {
    rx_bytes: u64,
    rx_packets: u64,
    rx_errors: u64,
    rx_dropped: u64,
    tx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
    tx_dropped: u64,
}

/// Docker's `StatsResponse`, field for field in its order.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct StatsResponse {
    name: String,
    id: String,
    read: String,
    preread: String,
    pids_stats: PidsStats,
    blkio_stats: BlkioStats,
    num_procs: u32,
    storage_stats: StorageStats,
    cpu_stats: CpuStats,
    precpu_stats: CpuStats,
    memory_stats: MemoryStats,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    networks: BTreeMap<String, NetworkStats>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// A time as Go's RFC3339Nano.
fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| ZERO_TIME.to_string())
}

/// The CPU part of a reading.
fn cpu_stats(reading: &ZoneStats) -> CpuStats {
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: reading.cpu_total_ns,
            percpu_usage: reading.cpu_per_cpu_ns.clone(),
            usage_in_kernelmode: reading.cpu_system_ns,
            usage_in_usermode: reading.cpu_user_ns,
        },
        system_cpu_usage: reading.system_cpu_ns,
        online_cpus: reading.online_cpus,
        throttling_data: ThrottlingData::default(),
    }
}

/// What a stream remembers of the reading before: its CPU part and time.
#[derive(Clone, Debug, Default)]
struct Previous {
    cpu: CpuStats,
    read: Option<OffsetDateTime>,
}

/// The stats object of the container `name` (`/name`, as Docker names it)
/// and `id`: of `reading` when there is one (zero otherwise, as Docker
/// answers for a container not running), with `previous` as the `pre`
/// fields.
fn stats_response(
    name: &str,
    id: &str,
    reading: Option<&ZoneStats>,
    previous: &Previous,
) -> StatsResponse {
    let mut response = StatsResponse {
        name: format!("/{name}"),
        id: id.to_string(),
        read: ZERO_TIME.to_string(),
        preread: previous
            .read
            .map_or_else(|| ZERO_TIME.to_string(), timestamp),
        pids_stats: PidsStats::default(),
        blkio_stats: BlkioStats::default(),
        num_procs: 0,
        storage_stats: StorageStats {},
        cpu_stats: CpuStats::default(),
        precpu_stats: previous.cpu.clone(),
        memory_stats: MemoryStats::default(),
        networks: BTreeMap::new(),
    };
    let Some(reading) = reading else {
        return response;
    };
    response.read = timestamp(reading.read);
    response.pids_stats = PidsStats {
        current: reading.pids_current,
        limit: reading.pids_limit.unwrap_or(0),
    };
    response.blkio_stats.io_service_bytes_recursive = Some(vec![
        BlkioStatEntry {
            major: 0,
            minor: 0,
            op: "read",
            value: reading.blkio_read_bytes,
        },
        BlkioStatEntry {
            major: 0,
            minor: 0,
            op: "write",
            value: reading.blkio_write_bytes,
        },
    ]);
    response.cpu_stats = cpu_stats(reading);
    response.memory_stats = MemoryStats {
        usage: reading.memory_usage,
        max_usage: reading.memory_max_usage.unwrap_or(0),
        stats: reading.memory_stats.clone(),
        limit: reading.memory_limit,
    };
    response.networks = reading
        .networks
        .iter()
        .map(|(interface, n)| {
            (
                interface.clone(),
                NetworkStats {
                    rx_bytes: n.rx_bytes,
                    rx_packets: n.rx_packets,
                    rx_errors: n.rx_errors,
                    rx_dropped: n.rx_dropped,
                    tx_bytes: n.tx_bytes,
                    tx_packets: n.tx_packets,
                    tx_errors: n.tx_errors,
                    tx_dropped: n.tx_dropped,
                },
            )
        })
        .collect();
    response
}

/// A reading of `container`'s zone; `None` when it has nothing running to
/// read (not running, not placed, its process just exited).
async fn read(state: &DockerState, container: &Container) -> Option<ZoneStats> {
    if !matches!(
        container.status.state,
        ContainerState::Running | ContainerState::Paused
    ) {
        return None;
    }
    let (streams, id) = zone_streams(state, container).ok()?;
    match streams.stats(&id).await {
        Ok(stats) => Some(stats),
        Err(ZoneError::NotFound { .. } | ZoneError::WrongState { .. }) => None,
        Err(e) => {
            tracing::warn!(container = %container.metadata.name, error = %e, "reading stats failed");
            None
        }
    }
}

/// One JSON line of a stats body.
fn line(response: &StatsResponse) -> Bytes {
    // Go's json.Encoder ends each object with a newline.
    let mut text = serde_json::to_vec(response).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// The answer: `application/json`, one object a line.
fn json_body(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /containers/{name}/stats`.
pub(super) async fn stats(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    let stream = query.stream.as_deref().is_none_or(|s| bool_value(Some(s)));
    let one_shot = bool_value(query.one_shot.as_deref());
    if stream && one_shot {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let container = find(&state, &name).await?;
    let key = container.metadata.name.clone();
    let id = container.docker_id();

    if !stream {
        let Some(first) = read(&state, &container).await else {
            let zero = stats_response(&key, &id, None, &Previous::default());
            return Ok(json_body(Body::from(line(&zero))));
        };
        if one_shot {
            let only = stats_response(&key, &id, Some(&first), &Previous::default());
            return Ok(json_body(Body::from(line(&only))));
        }
        tokio::time::sleep(INTERVAL).await;
        let previous = Previous {
            cpu: cpu_stats(&first),
            read: Some(first.read),
        };
        let second = read(&state, &container).await;
        let answer = stats_response(&key, &id, second.as_ref(), &previous);
        return Ok(json_body(Body::from(line(&answer))));
    }

    // A stream: the body pulls the next reading when the client has taken
    // the last one; when the client goes away the body, and this, is dropped.
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = (state, key, id, Previous::default(), ticks);
    let lines =
        futures::stream::unfold(start, |(state, key, id, previous, mut ticks)| async move {
            ticks.tick().await;
            // Read again every time: the container may have stopped, started
            // or gone.
            let container = match containers_api(&state).get(&key).await {
                Ok(c) => c,
                Err(StoreError::NotFound { .. }) => return None,
                Err(e) => {
                    tracing::warn!(container = %key, error = %e, "stats stream ends");
                    return None;
                }
            };
            let reading = read(&state, &container).await;
            let response = stats_response(&key, &id, reading.as_ref(), &previous);
            let next = Previous {
                cpu: response.cpu_stats.clone(),
                read: reading.as_ref().map(|r| r.read),
            };
            Some((
                Ok::<_, std::io::Error>(line(&response)),
                (state, key, id, next, ticks),
            ))
        });
    Ok(json_body(Body::from_stream(lines)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdc_docker_zones::streams::NetworkStats as ZoneNetworkStats;

    fn reading(cpu_total_ns: u64, system_cpu_ns: u64) -> ZoneStats {
        ZoneStats {
            read: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .expect("a valid time"),
            cpu_total_ns,
            cpu_per_cpu_ns: Vec::new(),
            cpu_user_ns: cpu_total_ns / 4 * 3,
            cpu_system_ns: cpu_total_ns / 4,
            system_cpu_ns,
            online_cpus: 2,
            memory_usage: 3 << 20,
            memory_max_usage: None,
            memory_limit: 256 << 20,
            memory_stats: BTreeMap::from([("inactive_file".to_string(), 1 << 20)]),
            pids_current: 1,
            pids_limit: None,
            networks: BTreeMap::from([(
                "eth0".to_string(),
                ZoneNetworkStats {
                    rx_bytes: 100,
                    tx_bytes: 50,
                    ..ZoneNetworkStats::default()
                },
            )]),
            blkio_read_bytes: 4096,
            blkio_write_bytes: 512,
        }
    }

    /// The docker CLI's `calculateCPUPercentUnix`.
    fn cli_cpu_percent(json: &serde_json::Value) -> f64 {
        let number = |pointer: &str| {
            json.pointer(pointer)
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
        };
        let cpu_delta = number("/cpu_stats/cpu_usage/total_usage")
            - number("/precpu_stats/cpu_usage/total_usage");
        let system_delta =
            number("/cpu_stats/system_cpu_usage") - number("/precpu_stats/system_cpu_usage");
        let cpus = number("/cpu_stats/online_cpus");
        if system_delta > 0.0 && cpu_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        }
    }

    #[test]
    fn a_reading_carries_the_previous_cpu_so_the_cli_computes_a_percentage() {
        let first = reading(1_000_000_000, 500_000_000_000);
        let previous = Previous {
            cpu: cpu_stats(&first),
            read: Some(first.read),
        };
        // A quarter of one of two CPUs over the interval: 1 s of host CPU
        // time is 2 s across both, of which 0.25 s was the zone's.
        let second = reading(1_250_000_000, 502_000_000_000);
        let json = serde_json::to_value(stats_response("web", "abc", Some(&second), &previous))
            .expect("serializes");
        assert_eq!(json["name"], "/web");
        assert_eq!(json["id"], "abc");
        assert_eq!(
            json["precpu_stats"]["cpu_usage"]["total_usage"],
            1_000_000_000
        );
        assert_eq!(json["cpu_stats"]["cpu_usage"]["total_usage"], 1_250_000_000);
        assert_eq!(
            json["cpu_stats"]["cpu_usage"]["usage_in_kernelmode"],
            312_500_000
        );
        assert_eq!(
            json["cpu_stats"]["cpu_usage"]["usage_in_usermode"],
            937_500_000
        );
        assert_eq!(json["cpu_stats"]["system_cpu_usage"], 502_000_000_000u64);
        assert_eq!(json["cpu_stats"]["online_cpus"], 2);
        assert!(json["cpu_stats"]["cpu_usage"].get("percpu_usage").is_none());
        assert!((cli_cpu_percent(&json) - 25.0).abs() < 1e-9);
        assert_eq!(json["read"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(json["preread"], json["read"]);
    }

    #[test]
    fn memory_block_io_pids_and_networks_are_in_dockers_fields() {
        let now = reading(1, 1);
        let json = serde_json::to_value(stats_response(
            "web",
            "abc",
            Some(&now),
            &Previous::default(),
        ))
        .expect("serializes");
        assert_eq!(json["memory_stats"]["usage"], 3 << 20);
        assert_eq!(json["memory_stats"]["limit"], 256 << 20);
        assert_eq!(json["memory_stats"]["stats"]["inactive_file"], 1 << 20);
        assert!(json["memory_stats"].get("max_usage").is_none());
        assert_eq!(
            json["blkio_stats"]["io_service_bytes_recursive"],
            serde_json::json!([
                {"major": 0, "minor": 0, "op": "read", "value": 4096},
                {"major": 0, "minor": 0, "op": "write", "value": 512}
            ])
        );
        assert_eq!(
            json["blkio_stats"]["io_serviced_recursive"],
            serde_json::Value::Null
        );
        assert_eq!(json["pids_stats"], serde_json::json!({"current": 1}));
        assert_eq!(json["networks"]["eth0"]["rx_bytes"], 100);
        assert_eq!(json["networks"]["eth0"]["tx_bytes"], 50);
        assert_eq!(json["preread"], ZERO_TIME);
    }

    #[test]
    fn a_container_not_running_has_stats_with_only_its_name_and_id() {
        let json = serde_json::to_value(stats_response("web", "abc", None, &Previous::default()))
            .expect("serializes");
        assert_eq!(json["name"], "/web");
        assert_eq!(json["read"], ZERO_TIME);
        assert_eq!(json["memory_stats"], serde_json::json!({}));
        assert_eq!(json["pids_stats"], serde_json::json!({}));
        assert!(json.get("networks").is_none());
        assert_eq!(
            json["cpu_stats"],
            serde_json::json!({
                "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
            })
        );
        assert_eq!(cli_cpu_percent(&json), 0.0);
    }

    #[test]
    fn each_line_is_one_json_object() {
        let text = line(&stats_response("web", "abc", None, &Previous::default()));
        assert!(text.ends_with(b"}\n"));
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 1);
    }
}
