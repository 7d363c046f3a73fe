//! A SmartOS zone's log for [`ZoneStreams::logs`](crate::ZoneStreams::logs):
//! zoneadmd writes what the zone's init prints to
//! `/zones/<uuid>/logs/stdio.log`, one Docker json-file object a line
//! (`{"log":"…\n","stream":"stdout","time":"<RFC 3339>"}`), and rotates it
//! to `stdio.log.<YYYYMMDDTHHMMSSZ>` beside it. The files are read by the
//! linux driver's json-file reader ([`crate::linux::logs::read`]), oldest
//! first, with the same selection by stream, time and tail, and the same
//! following across a rotation.
//!
//! Following ends when the zone is no longer running. The platform has no
//! exit record next to the log, so a follower asks `vmadm` (through the
//! driver) every `poll_interval`; output the init wrote just before it
//! exited is in the file by then, since zoneadmd writes it as it reads it.
//!
//! A zone made with `--log-driver none` (`docker:logdriver` in its internal
//! metadata) keeps no log: reading it is refused as Docker refuses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::SmartosDriver;
use crate::driver::{ZoneDriver, ZoneError};
use crate::linux::logs::{Rotation, read};
use crate::streams::{LogOptions, LogStream};

/// The internal-metadata key holding the zone's Docker log driver.
pub const LOG_DRIVER_KEY: &str = "docker:logdriver";

/// The log of zone `id` as `options` selects it.
pub(crate) async fn logs(
    d: &SmartosDriver,
    id: &str,
    options: LogOptions,
) -> Result<LogStream, ZoneError> {
    let vm = d
        .vm(id)
        .await?
        .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })?;
    if !keeps_log(&vm) {
        return Err(ZoneError::BadRequest(
            "configured logging driver does not support reading".to_string(),
        ));
    }
    let live = super::zone_info(&vm).is_some_and(|zone| zone.state.can_kill());
    let writing = Arc::new(AtomicBool::new(live));
    if live && options.follow {
        watch_until_down(d, id, writing.clone());
    }
    read(
        id,
        d.log_file(id),
        Rotation::Timestamped,
        options,
        move || writing.load(Ordering::Acquire),
    )
}

/// Whether the zone `vm` (a vmadm object) keeps a log: every log driver
/// but `none` has zoneadmd write `stdio.log`.
fn keeps_log(vm: &Value) -> bool {
    let driver = vm
        .get("internal_metadata")
        .and_then(|m| m.get(LOG_DRIVER_KEY))
        .and_then(Value::as_str)
        .unwrap_or_default();
    driver != "none"
}

/// Clears `writing` once zone `id` is no longer running (or is gone),
/// looking every `poll_interval`; stops early when the driver is dropped
/// or nobody follows any more (the flag is the follower's only).
fn watch_until_down(d: &SmartosDriver, id: &str, writing: Arc<AtomicBool>) {
    let Some(driver) = d.me.get().cloned() else {
        // A driver not made by `SmartosDriver::new`: nothing can hold it
        // for the watcher, so the follower ends only when dropped.
        tracing::debug!(
            zone = id,
            "no shared driver: a follower of this log ends when dropped"
        );
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (id, interval) = (id.to_string(), d.config.poll_interval);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if Arc::strong_count(&writing) == 1 {
                return;
            }
            let Some(driver) = driver.upgrade() else {
                writing.store(false, Ordering::Release);
                return;
            };
            match driver.get(&id).await {
                Ok(Some(zone)) if zone.state.can_kill() => {}
                Ok(_) => {
                    writing.store(false, Ordering::Release);
                    return;
                }
                Err(e) => {
                    tracing::debug!(zone = %id, error = %e, "looking whether a zone still runs")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{LogEntry, StdStream};
    use futures::StreamExt;
    use serde_json::json;
    use std::io::Write;
    use std::path::Path;
    use std::time::Duration;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// A json-file line of `stream` at second `second` of a fixed minute.
    fn line(stream: &str, second: u8, text: &str) -> String {
        let time = format!("2026-11-23T10:00:{second:02}.000000001Z");
        format!(
            "{}\n",
            json!({ "log": format!("{text}\n"), "stream": stream, "time": time })
        )
    }

    fn at(second: u8) -> OffsetDateTime {
        OffsetDateTime::parse(&format!("2026-11-23T10:00:{second:02}Z"), &Rfc3339).unwrap()
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn texts(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).trim_end().to_string())
            .collect()
    }

    fn both() -> LogOptions {
        LogOptions {
            stdout: true,
            stderr: true,
            ..LogOptions::default()
        }
    }

    /// A log directory with two rotated files (written out of name order)
    /// and the current one: lines `a`…`f`, one a second.
    fn rotated_log() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("stdio.log");
        append(
            &dir.path().join("stdio.log.20261123T100004Z"),
            &(line("stdout", 2, "c") + &line("stderr", 3, "d")),
        );
        append(
            &dir.path().join("stdio.log.20261123T100002Z"),
            &(line("stdout", 0, "a") + &line("stderr", 1, "b")),
        );
        append(
            &current,
            &(line("stdout", 4, "e") + "not json\n" + &line("stdout", 5, "f")),
        );
        (dir, current)
    }

    async fn collect(path: &Path, options: LogOptions) -> Vec<LogEntry> {
        let stream = read(
            "z",
            path.to_path_buf(),
            Rotation::Timestamped,
            options,
            || false,
        )
        .unwrap();
        stream.map(|e| e.unwrap()).collect().await
    }

    #[tokio::test]
    async fn rotated_files_are_read_in_the_order_of_their_timestamps_then_the_current_one() {
        let (_dir, current) = rotated_log();
        let entries = collect(&current, both()).await;
        assert_eq!(texts(&entries), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(entries[1].stream, StdStream::Stderr);
        assert_eq!(entries[0].time, at(0) + time::Duration::nanoseconds(1));
    }

    #[tokio::test]
    async fn logs_select_by_stream_since_until_and_tail_across_rotated_files() {
        let (_dir, current) = rotated_log();
        let stdout = LogOptions {
            stdout: true,
            ..LogOptions::default()
        };
        assert_eq!(
            texts(&collect(&current, stdout.clone()).await),
            ["a", "c", "e", "f"]
        );
        let window = LogOptions {
            since: Some(at(1)),
            until: Some(at(4)),
            ..both()
        };
        assert_eq!(texts(&collect(&current, window).await), ["b", "c", "d"]);
        let tail = LogOptions {
            tail: Some(3),
            ..both()
        };
        assert_eq!(texts(&collect(&current, tail).await), ["d", "e", "f"]);
        let none = LogOptions {
            tail: Some(0),
            ..both()
        };
        assert!(collect(&current, none).await.is_empty());
    }

    /// The next entry, within a deadline.
    async fn next(stream: &mut LogStream) -> Option<LogEntry> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("no log entry within 10 s")
            .map(|e| e.unwrap())
    }

    #[tokio::test]
    async fn following_goes_on_across_a_rotation_and_ends_once_nobody_writes() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("stdio.log");
        append(&current, &line("stdout", 0, "before"));
        let writing = Arc::new(AtomicBool::new(true));
        let flag = writing.clone();
        let options = LogOptions {
            follow: true,
            tail: Some(1),
            ..both()
        };
        let mut stream = read(
            "z",
            current.clone(),
            Rotation::Timestamped,
            options,
            move || flag.load(Ordering::Acquire),
        )
        .unwrap();
        assert_eq!(texts(&[next(&mut stream).await.unwrap()]), ["before"]);

        append(&current, &line("stderr", 1, "appended"));
        assert_eq!(texts(&[next(&mut stream).await.unwrap()]), ["appended"]);

        // zoneadmd rotates: the open file is renamed away, with a line
        // written to it just before, and a new one takes its name.
        append(&current, &line("stdout", 2, "last of the old file"));
        std::fs::rename(&current, dir.path().join("stdio.log.20261123T100002Z")).unwrap();
        append(&current, &line("stdout", 3, "first of the new file"));
        assert_eq!(
            texts(&[next(&mut stream).await.unwrap()]),
            ["last of the old file"]
        );
        assert_eq!(
            texts(&[next(&mut stream).await.unwrap()]),
            ["first of the new file"]
        );

        append(&current, &line("stdout", 4, "written before the exit"));
        writing.store(false, Ordering::Release);
        assert_eq!(
            texts(&[next(&mut stream).await.unwrap()]),
            ["written before the exit"]
        );
        assert!(next(&mut stream).await.is_none());
    }

    #[test]
    fn only_the_none_log_driver_keeps_no_log() {
        assert!(keeps_log(&json!({ "uuid": "u" })));
        assert!(keeps_log(
            &json!({ "internal_metadata": { LOG_DRIVER_KEY: "json-file" } })
        ));
        assert!(!keeps_log(
            &json!({ "internal_metadata": { LOG_DRIVER_KEY: "none" } })
        ));
    }
}
