//! A zone's log for [`ZoneStreams::logs`](crate::ZoneStreams::logs): the
//! monitor's json-file log, `container.log` and its rotated files
//! `container.log.1`, `.2`, … (the highest number the oldest), one JSON
//! object per line: `{"log":"text\n","stream":"stdout","time":"<RFC 3339>"}`.
//! The reader ([`read`]) knows nothing of the linux driver: the SmartOS
//! driver reads zoneadmd's `stdio.log` with it too, whose rotated files
//! carry a timestamp instead of a number ([`Rotation`]), and each driver
//! tells it in its own way whether anyone still writes the log.
//!
//! A reader thread walks the files oldest first, selects entries by stream
//! and time, keeps the last `tail` of them, and sends them through a
//! bounded channel (so a slow client slows the reading, not the memory).
//! Following, it then polls the current file every 100 ms for lines the
//! monitor appends, follows a rotation (its open file renamed to `.1`: it
//! drains that one, then takes the newer files), and ends once the zone's
//! process exited and the file is drained (the monitor records the exit
//! after writing the last output), when `until` passes, when the zone is
//! deleted, or when the caller drops the stream.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::LinuxDriver;
use crate::driver::ZoneError;
use crate::streams::{LogEntry, LogOptions, LogStream, StdStream};

/// How often a follower looks for new lines.
const POLL: Duration = Duration::from_millis(100);
/// Entries buffered between the reader thread and the stream.
const CHANNEL: usize = 256;

/// The zone's log as `options` selects it.
pub(crate) async fn logs(
    d: &LinuxDriver,
    id: &str,
    options: LogOptions,
) -> Result<LogStream, ZoneError> {
    let (spec, _) = d.require(id).await?;
    if !spec.log.keeps_output() {
        return Err(ZoneError::BadRequest(
            "configured logging driver does not support reading".to_string(),
        ));
    }
    let dir = d.dir(id)?;
    let (spec_file, state_dir) = (dir.spec(), dir.run());
    // The monitor writes until it recorded the exit (or died); a deleted
    // zone has no writer either.
    let writing = move || {
        let exited = match sdc_docker_monitor::state(&state_dir) {
            Ok(state) => state.exit.is_some() || !state.monitor_alive,
            Err(_) => true,
        };
        !exited && spec_file.exists()
    };
    read(id, dir.log_file(), Rotation::Numbered, options, writing)
}

/// How the rotated files of a json-file log are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// `<log>.1`, `<log>.2`, …: the highest number the oldest; a rotation
    /// renames every file (the monitor's own log).
    Numbered,
    /// `<log>.<YYYYMMDDTHHMMSSZ>`: the rotation time, so the names sort
    /// oldest first and never change (zoneadmd's `stdio.log`).
    Timestamped,
}

impl Rotation {
    /// The rotated files of `path` that exist, oldest first.
    fn files(self, path: &Path) -> Vec<PathBuf> {
        match self {
            Rotation::Numbered => rotated(path)
                .into_iter()
                .map(|n| numbered(path, n))
                .collect(),
            Rotation::Timestamped => timestamped(path),
        }
    }
}

/// Reads the json-file log at `path` (and its rotated files) as `options`
/// selects, on a thread of its own; see the module documentation. While
/// following, `writing` is asked (every 100 ms) whether anyone may still
/// append: once it says no, what is there is drained and the stream ends.
pub(crate) fn read(
    id: &str,
    path: PathBuf,
    rotation: Rotation,
    options: LogOptions,
    mut writing: impl FnMut() -> bool + Send + 'static,
) -> Result<LogStream, ZoneError> {
    let reader = Reader {
        path,
        rotation,
        options,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
    let zone = id.to_string();
    std::thread::Builder::new()
        .name("zone-logs".to_string())
        .spawn(move || {
            if let Err(e) = reader.run(&tx, &mut writing) {
                tracing::debug!(zone, error = %e, "reading a zone's log");
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(ZoneError::io("starting a log reader"))?;
    Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })))
}

type Sender = tokio::sync::mpsc::Sender<io::Result<LogEntry>>;

/// The receiver went away: stop reading.
struct Gone;

/// One line of the json-file log.
#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

/// `line` as an entry, `None` when it is not one (a torn or foreign line).
fn parse(line: &[u8]) -> Option<LogEntry> {
    let line: Line = serde_json::from_slice(line).ok()?;
    let stream = match line.stream.as_str() {
        "stdout" => StdStream::Stdout,
        "stderr" => StdStream::Stderr,
        _ => return None,
    };
    let time = OffsetDateTime::parse(&line.time, &Rfc3339).ok()?;
    Some(LogEntry {
        stream,
        time,
        data: Bytes::from(line.log.into_bytes()),
    })
}

/// An open log file and the bytes of a line not yet complete.
struct Cursor {
    file: File,
    inode: (u64, u64),
    pending: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path) -> io::Result<Option<Cursor>> {
        match File::open(path) {
            Ok(file) => {
                let meta = file.metadata()?;
                Ok(Some(Cursor {
                    file,
                    inode: (meta.dev(), meta.ino()),
                    pending: Vec::new(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every complete line from where it stopped to the end of the file.
    fn read_lines(&mut self, mut each: impl FnMut(&[u8]) -> Result<(), Gone>) -> io::Result<bool> {
        // A file truncated under us (a one-file log "rotates" so) starts over.
        let len = self.file.metadata()?.len();
        let pos = self.file.stream_position()?;
        if len < pos {
            self.file.seek(SeekFrom::Start(0))?;
            self.pending.clear();
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match self.file.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &buf[..n];
            while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                let line = &rest[..end];
                let result = if self.pending.is_empty() {
                    each(line)
                } else {
                    self.pending.extend_from_slice(line);
                    let line = std::mem::take(&mut self.pending);
                    each(&line)
                };
                if result.is_err() {
                    return Ok(false);
                }
                rest = &rest[end + 1..];
            }
            self.pending.extend_from_slice(rest);
        }
    }
}

/// `path.n`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of `path` that exist, as numbers, highest (oldest)
/// first.
fn rotated(path: &Path) -> Vec<u32> {
    let mut numbers = Vec::new();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return numbers;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            if let Some(n) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
            {
                numbers.push(n);
            }
        }
    }
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers
}

/// The files rotated away from `path` with a timestamp suffix
/// (`stdio.log.20261123T100000Z`, possibly followed by more to tell two
/// rotations of one second apart), oldest first.
fn timestamped(path: &Path) -> Vec<PathBuf> {
    let mut names = Vec::new();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            if file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .is_some_and(is_rotation_time)
            {
                names.push(file);
            }
        }
    }
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Whether `suffix` starts with a `YYYYMMDDTHHMMSSZ` time.
fn is_rotation_time(suffix: &str) -> bool {
    let b = suffix.as_bytes();
    b.len() >= 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

/// The inode of `path`, if it exists.
fn inode(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

struct Reader {
    path: PathBuf,
    rotation: Rotation,
    options: LogOptions,
}

impl Reader {
    fn selected(&self, entry: &LogEntry) -> bool {
        let stream = match entry.stream {
            StdStream::Stdout => self.options.stdout,
            StdStream::Stderr => self.options.stderr,
        };
        stream
            && self.options.since.is_none_or(|since| entry.time >= since)
            && self.options.until.is_none_or(|until| entry.time < until)
    }

    fn run(&self, tx: &Sender, writing: &mut dyn FnMut() -> bool) -> io::Result<()> {
        let send = |entry: LogEntry| tx.blocking_send(Ok(entry)).map_err(|_| Gone);
        let mut tail = self.options.tail.map(|n| (n, VecDeque::new()));
        let mut keep = |entry: LogEntry| -> Result<(), Gone> {
            match tail.as_mut() {
                Some((0, _)) => Ok(()),
                Some((n, kept)) => {
                    if kept.len() == *n {
                        kept.pop_front();
                    }
                    kept.push_back(entry);
                    Ok(())
                }
                None => send(entry),
            }
        };

        // What is there now, oldest first; the current file stays open.
        let mut last_read = None;
        for old in self.rotation.files(&self.path) {
            if let Some(mut old) = Cursor::open(&old)? {
                last_read = Some(old.inode);
                let more = old.read_lines(|line| match parse(line) {
                    Some(entry) if self.selected(&entry) => keep(entry),
                    _ => Ok(()),
                })?;
                if !more {
                    return Ok(());
                }
            }
        }
        let mut current = Cursor::open(&self.path)?;
        if let Some(cursor) = current.as_mut() {
            let more = cursor.read_lines(|line| match parse(line) {
                Some(entry) if self.selected(&entry) => keep(entry),
                _ => Ok(()),
            })?;
            if !more {
                return Ok(());
            }
        }
        if let Some((_, kept)) = tail {
            for entry in kept {
                if send(entry).is_err() {
                    return Ok(());
                }
            }
        }
        if self.options.follow {
            self.follow(current, last_read, tx, writing)?;
        }
        Ok(())
    }

    /// Sends what is appended from here on; see the module documentation
    /// for when it ends. `last_read`: the last rotated file read, when the
    /// current file was missing (between a rename and its new file).
    fn follow(
        &self,
        mut current: Option<Cursor>,
        last_read: Option<(u64, u64)>,
        tx: &Sender,
        writing: &mut dyn FnMut() -> bool,
    ) -> io::Result<()> {
        let past_until = std::cell::Cell::new(false);
        let mut each = |line: &[u8]| -> Result<(), Gone> {
            let Some(entry) = parse(line) else {
                return Ok(());
            };
            if self.options.until.is_some_and(|until| entry.time >= until) {
                past_until.set(true);
                return Err(Gone);
            }
            if self.selected(&entry) {
                tx.blocking_send(Ok(entry)).map_err(|_| Gone)?;
            }
            Ok(())
        };
        // The last file read, to know which rotated files are newer when
        // no file is open (the log was between a rename and its new file).
        let mut last_read = current.as_ref().map(|c| c.inode).or(last_read);
        loop {
            // Decided before draining, so nothing written before the exit
            // record is missed.
            let exited = !writing();
            if let Some(cursor) = current.as_mut()
                && !cursor.read_lines(&mut each)?
            {
                return Ok(());
            }
            // Rotated since we opened it: finish ours, then the newer files.
            let now = inode(&self.path);
            if current.as_ref().map(|c| c.inode) != now {
                // What the monitor appended to ours between the read above
                // and its rename: our handle still reads that file.
                if let Some(cursor) = current.as_mut()
                    && !cursor.read_lines(&mut each)?
                {
                    return Ok(());
                }
                // The files newer than ours, oldest first, then the current
                // one, from a view taken while no rotation renumbered them.
                let ours = current.as_ref().map(|c| c.inode).or(last_read);
                let mut files = self.consistent_files()?;
                let next = match files.last() {
                    Some((path, _)) if *path == self.path => files.pop().map(|(_, c)| c),
                    _ => None,
                };
                let start = files
                    .iter()
                    .position(|(_, c)| Some(c.inode) == ours)
                    .map_or(0, |i| i + 1);
                for (_, mut file) in files.into_iter().skip(start) {
                    last_read = Some(file.inode);
                    if !file.read_lines(&mut each)? {
                        return Ok(());
                    }
                }
                if let Some(next) = &next {
                    last_read = Some(next.inode);
                }
                current = next;
                continue;
            }
            if exited || past_until.get() {
                return Ok(());
            }
            if self
                .options
                .until
                .is_some_and(|until| OffsetDateTime::now_utc() >= until)
            {
                return Ok(());
            }
            if tx.is_closed() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    /// The rotated files, oldest first, then the current one, all open:
    /// listed again until a listing and the files opened from it agree,
    /// since the writer may rotate (renumber every file) while they are
    /// being opened. A file ours was renamed to and then deleted (more
    /// rotations than `max-file` since) is simply not among them.
    fn consistent_files(&self) -> io::Result<Vec<(PathBuf, Cursor)>> {
        let listing = || -> Vec<(PathBuf, Option<(u64, u64)>)> {
            let mut paths = self.rotation.files(&self.path);
            paths.push(self.path.clone());
            paths
                .into_iter()
                .map(|p| {
                    let i = inode(&p);
                    (p, i)
                })
                .collect()
        };
        loop {
            let before = listing();
            let mut files = Vec::new();
            for (path, _) in &before {
                if let Some(file) = Cursor::open(path)? {
                    files.push((path.clone(), file));
                }
            }
            let opened: Vec<(PathBuf, Option<(u64, u64)>)> = files
                .iter()
                .map(|(p, c)| (p.clone(), Some(c.inode)))
                .collect();
            let present: Vec<_> = before
                .iter()
                .filter(|(_, i)| i.is_some())
                .cloned()
                .collect();
            if opened == present && listing() == before {
                return Ok(files);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_file_line_parses_to_an_entry() {
        let entry = parse(
            br#"{"log":"no newline","stream":"stderr","time":"2026-11-23T01:02:03.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(entry.stream, StdStream::Stderr);
        assert_eq!(entry.data, Bytes::from_static(b"no newline"));
        assert_eq!(entry.time.nanosecond(), 123_456_789);
        assert!(parse(b"{\"log\":\"x\",").is_none());
    }

    #[test]
    fn rotated_files_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        for name in [
            "container.log",
            "container.log.1",
            "container.log.2",
            "container.log.x",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(rotated(&path), [2, 1]);
    }

    #[test]
    fn timestamped_rotations_are_listed_oldest_first_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdio.log");
        for name in [
            "stdio.log",
            "stdio.log.20261123T100000Z",
            "stdio.log.20261122T235959Z",
            "stdio.log.20261123T100000Z.1",
            "stdio.log.1",
            "stdio.log.2026",
            "other.log.20261123T100000Z",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = Rotation::Timestamped
            .files(&path)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "stdio.log.20261122T235959Z",
                "stdio.log.20261123T100000Z",
                "stdio.log.20261123T100000Z.1",
            ]
        );
        assert_eq!(
            Rotation::Numbered.files(&path),
            [
                dir.path().join("stdio.log.2026"),
                dir.path().join("stdio.log.1")
            ]
        );
    }
}
