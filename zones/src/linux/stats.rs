//! Resource usage of a running zone, read from its cgroups (v1 controllers
//! or the v2 unified hierarchy, whichever holds each file), the host's
//! `/proc/stat` and the zone's own network namespace (`/proc/<pid>/net/dev`).
//!
//! The cgroups are found through `/proc/<init>/cgroup` and the usual mount
//! points (`/sys/fs/cgroup/<controller>` for v1, `/sys/fs/cgroup` or
//! `/sys/fs/cgroup/unified` for v2), as the monitor's OOM watch does.
//! Every file is optional: what a host does not have reads as zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use sdc_docker_monitor::cgroups::Cgroups;

use super::{LinuxDriver, blocking};
use crate::driver::{ZoneError, ZoneState};
use crate::streams::{NetworkStats, ZoneStats};

/// Linux's `USER_HZ`: clock ticks per second in `/proc/stat` and
/// `cpuacct.stat`.
const USER_HZ: u64 = 100;
/// Nanoseconds per tick.
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// Resource usage of zone `id`, which must be running or paused.
pub(crate) async fn stats(d: &LinuxDriver, id: &str) -> Result<ZoneStats, ZoneError> {
    let (_, info) = d.require(id).await?;
    let pid = match (info.state, info.pid) {
        (ZoneState::Running | ZoneState::Paused, Some(pid)) => pid,
        (state, _) => {
            return Err(ZoneError::WrongState {
                id: id.to_string(),
                state,
                op: "stats",
            });
        }
    };
    let id = id.to_string();
    blocking(move || read_stats(&id, pid)).await
}

/// Everything [`stats`] reports, for zone `id` whose init is `pid`.
fn read_stats(id: &str, pid: i64) -> Result<ZoneStats, ZoneError> {
    let listing = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(listing) => listing,
        // It exited since it was seen running.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ZoneError::WrongState {
                id: id.to_string(),
                state: ZoneState::Stopped,
                op: "stats",
            });
        }
        Err(e) => return Err(ZoneError::io(format!("reading /proc/{pid}/cgroup"))(e)),
    };
    let groups = Cgroups::parse(&listing, Path::new(sdc_docker_monitor::cgroups::ROOT));
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let (system_cpu_ns, cpu_lines) = system_cpu(&proc_stat);
    let online_cpus = if cpu_lines > 0 {
        cpu_lines
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    };
    let host_memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .unwrap_or(u64::MAX);

    let mut stats = ZoneStats {
        read: OffsetDateTime::now_utc(),
        cpu_total_ns: 0,
        cpu_per_cpu_ns: Vec::new(),
        cpu_user_ns: 0,
        cpu_system_ns: 0,
        system_cpu_ns,
        online_cpus,
        memory_usage: 0,
        memory_max_usage: None,
        memory_limit: host_memory,
        memory_stats: BTreeMap::new(),
        pids_current: 0,
        pids_limit: None,
        networks: std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
            .map(|text| net_dev(&text))
            .unwrap_or_default(),
        blkio_read_bytes: 0,
        blkio_write_bytes: 0,
    };

    // CPU.
    if let Some(usage) = groups
        .v1_file("cpuacct", "cpuacct.usage")
        .and_then(read_u64)
    {
        stats.cpu_total_ns = usage;
        stats.cpu_per_cpu_ns = groups
            .v1_file("cpuacct", "cpuacct.usage_percpu")
            .and_then(read)
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let ticks = groups
            .v1_file("cpuacct", "cpuacct.stat")
            .and_then(read)
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
        stats.cpu_user_ns = ticks.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        stats.cpu_system_ns = ticks.get("system").copied().unwrap_or(0) * NS_PER_TICK;
    } else if let Some(cpu) = groups.v2_file("cpu.stat").and_then(read) {
        let cpu = flat_keyed(&cpu);
        let usec = |key: &str| cpu.get(key).copied().unwrap_or(0) * 1000;
        stats.cpu_total_ns = usec("usage_usec");
        stats.cpu_user_ns = usec("user_usec");
        stats.cpu_system_ns = usec("system_usec");
    }

    // Memory.
    if let Some(usage) = groups
        .v1_file("memory", "memory.usage_in_bytes")
        .and_then(read_u64)
    {
        stats.memory_usage = usage;
        stats.memory_max_usage = groups
            .v1_file("memory", "memory.max_usage_in_bytes")
            .and_then(read_u64);
        if let Some(limit) = groups
            .v1_file("memory", "memory.limit_in_bytes")
            .and_then(read_u64)
        {
            stats.memory_limit = limit.min(host_memory);
        }
        stats.memory_stats = groups
            .v1_file("memory", "memory.stat")
            .and_then(read)
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
    } else if let Some(usage) = groups.v2_file("memory.current").and_then(read_u64) {
        stats.memory_usage = usage;
        stats.memory_max_usage = groups.v2_file("memory.peak").and_then(read_u64);
        if let Some(limit) = groups
            .v2_file("memory.max")
            .and_then(read)
            .and_then(|t| limit_value(&t))
        {
            stats.memory_limit = limit.min(host_memory);
        }
        stats.memory_stats = groups
            .v2_file("memory.stat")
            .and_then(read)
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
    }

    // Processes.
    let (current, max) = match groups.v1_file("pids", "pids.current") {
        Some(current) => (Some(current), groups.v1_file("pids", "pids.max")),
        None => (groups.v2_file("pids.current"), groups.v2_file("pids.max")),
    };
    stats.pids_current = current.and_then(read_u64).unwrap_or(0);
    stats.pids_limit = max.and_then(read).and_then(|t| limit_value(&t));

    // Block I/O.
    let v1_io = groups
        .v1_file("blkio", "blkio.throttle.io_service_bytes")
        .or_else(|| groups.v1_file("blkio", "blkio.throttle.io_service_bytes_recursive"))
        .and_then(read);
    if let Some(text) = v1_io {
        (stats.blkio_read_bytes, stats.blkio_write_bytes) = blkio_v1(&text);
    } else if let Some(text) = groups.v2_file("io.stat").and_then(read) {
        (stats.blkio_read_bytes, stats.blkio_write_bytes) = io_stat_v2(&text);
    }
    Ok(stats)
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: PathBuf) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`).
fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A limit file: a number, or `max` for none.
fn limit_value(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// Host CPU time in nanoseconds (the first line of `/proc/stat`) and the
/// number of `cpuN` lines.
fn system_cpu(proc_stat: &str) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in proc_stat.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.filter_map(|f| f.parse::<u64>().ok()).sum();
                total = ticks.saturating_mul(NS_PER_TICK);
            }
            Some(name) if name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The interfaces of `/proc/<pid>/net/dev`, but `lo` (as Docker reports).
fn net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let n: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap_or(0))
                .collect();
            if n.len() < 12 {
                return None;
            }
            Some((
                name.to_string(),
                NetworkStats {
                    rx_bytes: n[0],
                    rx_packets: n[1],
                    rx_errors: n[2],
                    rx_dropped: n[3],
                    tx_bytes: n[8],
                    tx_packets: n[9],
                    tx_errors: n[10],
                    tx_dropped: n[11],
                },
            ))
        })
        .collect()
}

/// Read and write totals of v1 `blkio.throttle.io_service_bytes`
/// (`MAJ:MIN Read N` lines; the `Total` lines are skipped).
fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = fields[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => read = read.saturating_add(n),
                "Write" => write = write.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, write)
}

/// Read and write totals of v2 `io.stat` (`MAJ:MIN rbytes=N wbytes=N …`).
fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for field in text.split_whitespace() {
        if let Some((key, n)) = field.split_once('=') {
            let n: u64 = n.parse().unwrap_or(0);
            match key {
                "rbytes" => read = read.saturating_add(n),
                "wbytes" => write = write.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_limits_and_meminfo_parse_as_the_kernel_writes_them() {
        let stat = flat_keyed("cache 8192\nrss 4096\ntotal_rss 4096\n");
        assert_eq!(stat["cache"], 8192);
        assert_eq!(stat["total_rss"], 4096);
        assert_eq!(flat_keyed("user 12\nsystem 3\n")["system"], 3);
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("1024\n"), Some(1024));
        assert_eq!(
            mem_total("MemTotal:        8000000 kB\nMemFree: 1 kB\n"),
            Some(8_192_000_000)
        );
    }

    #[test]
    fn host_cpu_time_sums_the_first_line_in_nanoseconds_and_counts_cpus() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\n\
                    cpu0 50 0 25 400 25 0 0 0 0 0\n\
                    cpu1 50 0 25 400 25 0 0 0 0 0\n\
                    intr 1 2 3\nctxt 5\n";
        assert_eq!(system_cpu(text), (1000 * 10_000_000, 2));
    }

    #[test]
    fn network_counters_skip_lo_and_read_rx_and_tx_columns() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:    1500      10    1    2    0     0          0         0      700       5    3    4    0     0       0          0\n";
        let nets = net_dev(text);
        assert_eq!(nets.len(), 1);
        assert_eq!(
            nets["eth0"],
            NetworkStats {
                rx_bytes: 1500,
                rx_packets: 10,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 700,
                tx_packets: 5,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn block_io_totals_add_up_reads_and_writes_of_every_device() {
        let v1 = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Total 4608\n\
                  8:16 Read 4\n8:16 Write 0\nTotal 4612\n";
        assert_eq!(blkio_v1(v1), (4100, 512));
        let v2 = "8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(io_stat_v2(v2), (101, 22));
    }
}
