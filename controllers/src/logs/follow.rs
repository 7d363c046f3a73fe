//! Following a container's host log: Docker's json-file format, one
//! `{"log":"text\n","stream":"stdout","time":"…"}` per line, rotated by the
//! monitor `path` → `path.1` → … → `path.<n>` (or truncated in place when
//! only one file is kept).
//!
//! [`LogFollower`] reads the files oldest first and yields each complete
//! line once as a [`LogLine`] carrying its [`Position`]: the identity of the
//! file it came from (inode plus a fingerprint of the file's first line, so
//! an inode the filesystem reuses for a newer file is not mistaken for the
//! old one) and the offset just past it. A [`Checkpoint`] saves positions to
//! a small JSON state file, atomically (write then rename), at most every
//! [`Checkpoint::EVERY_LINES`] lines or [`Checkpoint::EVERY`]; a follower
//! opened from a saved position resumes right after it, in whichever rotated
//! file it now lives.
//!
//! The follower holds the file it reads open, so a rotation (the live
//! `path` now names another inode, or nothing) never loses the rest of it:
//! it reads its file to the end once more — the monitor never writes to a
//! file after renaming it — and then moves to the next newer file. It polls
//! (every [`LogFollower::POLL`] by default) rather than using inotify:
//! simpler, portable, and a 100 ms delay is nothing for log shipping.
//!
//! Limits: lines written between the follower's last read and a truncation
//! (only with `max-file` 1) are lost — all of the rewritten file's start,
//! if it grew past the old read position within one poll — as are files the monitor dropped
//! before the follower got to them. When rotations outrun the poll by more
//! than the number of kept files, the files in between are gone too. A
//! trailing line without its newline in a rotated file (a monitor killed
//! mid-write) is skipped. Lines that are not json-file entries are skipped
//! with a warning.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

/// Why following a log failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// A log file or its directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be written.
    #[error("saving the log position to {path}: {source}")]
    Save {
        /// The state file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// Which of the container's streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and everything, with a tty).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as Docker names them.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Which file a position is in: its inode and a fingerprint of its first
/// line (`None` while the file has no complete first line yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// The inode number.
    pub inode: u64,
    /// FNV-1a of the first line (at most its first 256 bytes).
    pub head: Option<u64>,
}

impl FileId {
    /// Whether `other` may be the same file: same inode, and the same first
    /// line when both know it.
    fn matches(&self, other: &FileId) -> bool {
        self.inode == other.inode
            && match (self.head, other.head) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Where a line ends: the file and the offset just past the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The file.
    pub file: FileId,
    /// Bytes from the file's start to just past the line's newline.
    pub offset: u64,
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The stream it was written to.
    pub stream: Stream,
    /// When the monitor read it.
    pub time: OffsetDateTime,
    /// The text, without its trailing newline.
    pub text: String,
    /// Where it ends, to save once it has been forwarded.
    pub position: Position,
}

/// A json-file entry as written.
#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// The file being read.
struct Current {
    path: PathBuf,
    reader: BufReader<File>,
    id: FileId,
    /// Offset just past the last complete line read.
    offset: u64,
    /// Bytes of a line whose newline has not been read yet.
    partial: Vec<u8>,
    /// The file is known to be rotated and has been read to its end once
    /// since: its end is final.
    final_pass: bool,
}

/// Reads a rotated json-file log line by line, oldest first, from a saved
/// position; see the module documentation.
pub struct LogFollower {
    path: PathBuf,
    poll: Duration,
    current: Option<Current>,
    /// Where to start, until the first file is opened.
    resume: Option<Position>,
    /// The files read to their end, newest last (a few, against re-reading
    /// one whose name changed while the follower chose the next).
    finished: VecDeque<FileId>,
}

/// How many finished files are remembered.
const FINISHED_KEPT: usize = 16;

/// How much of the first line the fingerprint covers.
const HEAD_BYTES: usize = 256;

impl LogFollower {
    /// How often the follower looks for new lines by default.
    pub const POLL: Duration = Duration::from_millis(100);

    /// A follower of the log at `path` (which need not exist yet) starting
    /// just after `from`, or at the start of the oldest file when `from` is
    /// `None` or its file is gone.
    pub fn new(path: impl Into<PathBuf>, from: Option<Position>) -> Self {
        LogFollower {
            path: path.into(),
            poll: Self::POLL,
            current: None,
            resume: from,
            finished: VecDeque::new(),
        }
    }

    /// Sets how often [`Self::next_line`] looks for new lines.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next line, waiting (polling) for it.
    pub async fn next_line(&mut self) -> Result<LogLine, FollowError> {
        loop {
            if let Some(line) = self.read_line().await? {
                return Ok(line);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The next line if one is there, `None` when the follower has read
    /// everything written so far.
    pub async fn read_line(&mut self) -> Result<Option<LogLine>, FollowError> {
        loop {
            let Some(current) = self.current.as_mut() else {
                if self.open_next().await? {
                    continue;
                }
                return Ok(None);
            };
            let read = current
                .reader
                .read_until(b'\n', &mut current.partial)
                .await
                .map_err(|source| FollowError::Read {
                    path: current.path.clone(),
                    source,
                })?;
            if current.partial.ends_with(b"\n") {
                let bytes = std::mem::take(&mut current.partial);
                let start = current.offset;
                current.offset += bytes.len() as u64;
                if start == 0 {
                    current.id.head = Some(fingerprint(&bytes));
                } else if current.id.head.is_none() {
                    current.id.head = read_head(&current.path).await;
                }
                let position = Position {
                    file: current.id,
                    offset: current.offset,
                };
                match parse(&bytes, position) {
                    Some(line) => return Ok(Some(line)),
                    None => {
                        tracing::warn!(path = %current.path.display(), offset = start, "skipping a line that is not a json-file entry");
                        continue;
                    }
                }
            }
            debug_assert!(read == 0 || !current.partial.ends_with(b"\n"));
            // At the end of what is written: is this still the live file?
            let live = match tokio::fs::metadata(&self.path).await {
                Ok(m) => m.ino() == current.id.inode,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(source) => {
                    return Err(FollowError::Read {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            if live {
                let len = current
                    .reader
                    .get_ref()
                    .metadata()
                    .await
                    .map(|m| m.len())
                    .unwrap_or(u64::MAX);
                if len < current.offset + current.partial.len() as u64 {
                    tracing::info!(path = %current.path.display(), "log truncated; reading it from its start");
                    current
                        .reader
                        .seek(SeekFrom::Start(0))
                        .await
                        .map_err(|source| FollowError::Read {
                            path: current.path.clone(),
                            source,
                        })?;
                    current.offset = 0;
                    current.partial.clear();
                    current.id.head = None;
                    continue;
                }
                return Ok(None);
            }
            if !current.final_pass {
                // Rotated: whatever was written before the rename is there
                // now; read to the end once more.
                current.final_pass = true;
                continue;
            }
            if !current.partial.is_empty() {
                tracing::warn!(path = %current.path.display(), "skipping an unfinished last line of a rotated log");
            }
            let id = current.id;
            self.finished.push_back(id);
            if self.finished.len() > FINISHED_KEPT {
                self.finished.pop_front();
            }
            self.current = None;
        }
    }

    /// Opens the file to read next; false when there is none yet.
    async fn open_next(&mut self) -> Result<bool, FollowError> {
        let files = self.listing().await?;
        let (index, offset) = if let Some(resume) = self.resume {
            match files.iter().position(|(_, id)| id.matches(&resume.file)) {
                Some(i) => (i, resume.offset),
                None => {
                    if !files.is_empty() {
                        tracing::warn!(path = %self.path.display(), "the saved log position's file is gone; starting at the oldest file");
                    }
                    (0, 0)
                }
            }
        } else {
            let after_last = self
                .finished
                .back()
                .and_then(|last| files.iter().position(|(_, id)| id.matches(last)))
                .map_or(0, |i| i + 1);
            let next = (after_last..files.len())
                .find(|i| !self.finished.iter().any(|f| f.matches(&files[*i].1)));
            match next {
                Some(i) => (i, 0),
                None => return Ok(false),
            }
        };
        let Some((path, id)) = files.get(index) else {
            return Ok(false);
        };
        let read_err = |source| FollowError::Read {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(path).await {
            Ok(f) => f,
            // Rotated away since the listing: list again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(read_err(e)),
        };
        let meta = file.metadata().await.map_err(read_err)?;
        if meta.ino() != id.inode {
            return Ok(true);
        }
        let offset = if offset > meta.len() { 0 } else { offset };
        file.seek(SeekFrom::Start(offset)).await.map_err(read_err)?;
        tracing::debug!(path = %path.display(), offset, "following log file");
        self.resume = None;
        self.current = Some(Current {
            path: path.clone(),
            reader: BufReader::new(file),
            id: *id,
            offset,
            partial: Vec::new(),
            final_pass: false,
        });
        Ok(true)
    }

    /// The log's files, oldest first, with their identities; listed until
    /// two listings agree, so a rotation in the middle is not half seen.
    async fn listing(&self) -> Result<Vec<(PathBuf, FileId)>, FollowError> {
        let mut previous = self.list_once().await?;
        for _ in 0..10 {
            let again = self.list_once().await?;
            if again == previous {
                return Ok(again);
            }
            previous = again;
        }
        Ok(previous)
    }

    async fn list_once(&self) -> Result<Vec<(PathBuf, FileId)>, FollowError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let read_err = |source| FollowError::Read {
            path: dir.clone(),
            source,
        };
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        // (generation: 0 for the live file, n for `path.n`)
        let mut numbered: Vec<(u32, PathBuf)> = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(read_err)? {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let generation = if file_name == name {
                Some(0)
            } else {
                file_name
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n > 0)
            };
            if let Some(generation) = generation {
                numbered.push((generation, entry.path()));
            }
        }
        numbered.sort_by_key(|(generation, _)| std::cmp::Reverse(*generation));
        let mut files = Vec::with_capacity(numbered.len());
        for (_, path) in numbered {
            match tokio::fs::metadata(&path).await {
                Ok(meta) => {
                    let head = read_head(&path).await;
                    files.push((
                        path,
                        FileId {
                            inode: meta.ino(),
                            head,
                        },
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(FollowError::Read { path, source }),
            }
        }
        Ok(files)
    }
}

/// The fingerprint of a file's first line, when it has one.
async fn read_head(path: &Path) -> Option<u64> {
    let mut file = File::open(path).await.ok()?;
    let mut buf = vec![0; HEAD_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    let bytes = &buf[..filled];
    match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => Some(fingerprint(&bytes[..=end])),
        None if filled == HEAD_BYTES => Some(fingerprint(bytes)),
        None => None,
    }
}

/// FNV-1a over the first line's first [`HEAD_BYTES`] bytes (stable across
/// builds, unlike std's hasher).
fn fingerprint(line: &[u8]) -> u64 {
    line.iter()
        .take(HEAD_BYTES)
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

fn parse(bytes: &[u8], position: Position) -> Option<LogLine> {
    let entry: Entry = serde_json::from_slice(bytes).ok()?;
    let stream = match entry.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let time = OffsetDateTime::parse(&entry.time, &Rfc3339).ok()?;
    let mut text = entry.log;
    if text.ends_with('\n') {
        text.pop();
    }
    Some(LogLine {
        stream,
        time,
        text,
        position,
    })
}

/// The saved position of a follower: a small JSON file replaced atomically,
/// written at most every [`Self::EVERY_LINES`] lines or every
/// [`Self::EVERY`], and on [`Self::flush`].
pub struct Checkpoint {
    path: PathBuf,
    saved: Option<Position>,
    pending: Option<Position>,
    unsaved: usize,
    last_save: Instant,
}

impl Checkpoint {
    /// Save after this many lines at the latest…
    pub const EVERY_LINES: usize = 1000;
    /// …or after this long.
    pub const EVERY: Duration = Duration::from_secs(1);

    /// The checkpoint kept in `path`; [`Self::position`] is what it holds
    /// (nothing when the file is missing or unreadable).
    pub async fn load(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let saved = match tokio::fs::read(&path).await {
            Ok(bytes) => match serde_json::from_slice::<Position>(&bytes) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable log position");
                    None
                }
            },
            Err(_) => None,
        };
        Checkpoint {
            path,
            saved,
            pending: None,
            unsaved: 0,
            last_save: Instant::now(),
        }
    }

    /// The position last recorded (saved or not).
    pub fn position(&self) -> Option<Position> {
        self.pending.or(self.saved)
    }

    /// Records that everything up to `position` is done; saves it when
    /// enough lines or time have gone by since the last save.
    pub async fn record(&mut self, position: Position) -> Result<(), FollowError> {
        self.pending = Some(position);
        self.unsaved += 1;
        if self.unsaved >= Self::EVERY_LINES || self.last_save.elapsed() >= Self::EVERY {
            self.flush().await?;
        }
        Ok(())
    }

    /// Saves the last recorded position now, if it is not saved yet.
    pub async fn flush(&mut self) -> Result<(), FollowError> {
        let Some(position) = self.pending else {
            return Ok(());
        };
        let save_err = |source| FollowError::Save {
            path: self.path.clone(),
            source,
        };
        let bytes =
            serde_json::to_vec(&position).map_err(|e| save_err(std::io::Error::other(e)))?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp).await.map_err(save_err)?;
        file.write_all(&bytes).await.map_err(save_err)?;
        // On disk before the rename makes it the position.
        file.sync_data().await.map_err(save_err)?;
        drop(file);
        tokio::fs::rename(&tmp, &self.path)
            .await
            .map_err(save_err)?;
        self.saved = Some(position);
        self.pending = None;
        self.unsaved = 0;
        self.last_save = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> String {
        format!(
            "{{\"log\":\"{text}\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-23T01:02:03.123456789Z\"}}\n"
        )
    }

    #[tokio::test]
    async fn a_line_is_parsed_with_its_stream_time_and_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        std::fs::write(&path, entry("hello")).expect("write");
        let mut follower = LogFollower::new(&path, None);
        let line = follower.read_line().await.expect("read").expect("a line");
        assert_eq!(line.text, "hello");
        assert_eq!(line.stream, Stream::Stdout);
        assert_eq!(line.time.nanosecond(), 123_456_789);
        assert_eq!(line.position.offset, entry("hello").len() as u64);
        assert!(follower.read_line().await.expect("read").is_none());
    }

    #[tokio::test]
    async fn a_half_written_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        let full = entry("split");
        std::fs::write(&path, &full[..10]).expect("write");
        let mut follower = LogFollower::new(&path, None);
        assert!(follower.read_line().await.expect("read").is_none());
        std::fs::write(&path, &full).expect("write");
        let line = follower.read_line().await.expect("read").expect("a line");
        assert_eq!(line.text, "split");
    }

    #[tokio::test]
    async fn a_truncated_log_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c-json.log");
        std::fs::write(&path, entry("one") + &entry("two")).expect("write");
        let mut follower = LogFollower::new(&path, None);
        follower.read_line().await.expect("read").expect("one");
        follower.read_line().await.expect("read").expect("two");
        std::fs::write(&path, entry("3")).expect("truncate and write");
        let line = follower.read_line().await.expect("read").expect("a line");
        assert_eq!(line.text, "3");
    }

    #[tokio::test]
    async fn a_checkpoint_survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state.json");
        let mut checkpoint = Checkpoint::load(&state).await;
        assert_eq!(checkpoint.position(), None);
        let position = Position {
            file: FileId {
                inode: 7,
                head: Some(9),
            },
            offset: 42,
        };
        checkpoint.record(position).await.expect("record");
        checkpoint.flush().await.expect("flush");
        assert_eq!(Checkpoint::load(&state).await.position(), Some(position));
    }
}
