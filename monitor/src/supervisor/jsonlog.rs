//! Docker's json-file log: one JSON object per entry and line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-23T01:02:03.123456789Z"}`,
//! rotated before an entry would make the file larger than `max_size`:
//! `path` → `path.1` → … → `path.<max_files-1>`, the oldest dropped, so at
//! most `max_files` files exist (with `max_files` 1 the file is truncated).
//! Output that is not UTF-8 is stored with U+FFFD in place of the bad bytes,
//! as Docker does.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use crate::{LogConfig, OutputStream, timefmt};

/// The open json-file log of one container.
pub(crate) struct JsonLog {
    config: LogConfig,
    file: File,
    size: u64,
    entry: Vec<u8>,
}

/// One line of the log.
#[derive(Serialize)]
struct Entry<'a> {
    log: Cow<'a, str>,
    stream: &'static str,
    time: String,
}

impl JsonLog {
    /// Opens (creating) the log for appending.
    pub(crate) fn open(config: LogConfig) -> io::Result<Self> {
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            config,
            file,
            size,
            entry: Vec::new(),
        })
    }

    /// Appends one entry, rotating first if it would not fit.
    pub(crate) fn write(
        &mut self,
        stream: OutputStream,
        text: &[u8],
        at: SystemTime,
    ) -> io::Result<()> {
        self.entry.clear();
        let entry = Entry {
            log: String::from_utf8_lossy(text),
            stream: stream.name(),
            time: timefmt::format(at),
        };
        serde_json::to_writer(&mut self.entry, &entry).map_err(io::Error::other)?;
        self.entry.push(b'\n');
        let len = self.entry.len() as u64;
        if self.config.max_size > 0 && self.size > 0 && self.size + len > self.config.max_size {
            self.rotate()?;
        }
        self.file.write_all(&self.entry)?;
        self.size += len;
        if self.entry.capacity() > 64 * 1024 {
            self.entry = Vec::new();
        }
        Ok(())
    }

    /// Shifts the files by one and starts an empty `path`.
    fn rotate(&mut self) -> io::Result<()> {
        let max_files = self.config.max_files.max(1);
        if max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..max_files - 1).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.config.path, self.numbered(1))?;
        self.file = open_append(&self.config.path)?;
        self.size = 0;
        Ok(())
    }

    /// `path.n`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.config.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

/// `path` opened for appending, created `0640` like Docker's logs.
fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, max_size: u64, max_files: u32) -> LogConfig {
        LogConfig {
            path: dir.join("c-json.log"),
            max_size,
            max_files,
        }
    }

    #[test]
    fn an_entry_is_one_json_line_in_dockers_format() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = JsonLog::open(config(dir.path(), 0, 1))?;
        log.write(
            OutputStream::Stderr,
            b"a \"quoted\" \xff\n",
            SystemTime::UNIX_EPOCH,
        )?;
        let text = std::fs::read_to_string(dir.path().join("c-json.log"))?;
        assert_eq!(
            text,
            "{\"log\":\"a \\\"quoted\\\" \u{fffd}\\n\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:00Z\"}\n"
        );
        Ok(())
    }

    #[test]
    fn rotation_keeps_max_files_files_each_within_max_size() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = JsonLog::open(config(dir.path(), 1000, 3))?;
        for i in 0..200 {
            log.write(
                OutputStream::Stdout,
                format!("line {i}\n").as_bytes(),
                SystemTime::UNIX_EPOCH,
            )?;
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        for name in &names {
            assert!(std::fs::metadata(dir.path().join(name))?.len() <= 1000);
        }
        let newest = std::fs::read_to_string(dir.path().join("c-json.log"))?;
        assert!(newest.contains("line 199\\n"));
        Ok(())
    }

    #[test]
    fn a_single_file_log_is_truncated_instead_of_rotated() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut log = JsonLog::open(config(dir.path(), 200, 1))?;
        for _ in 0..10 {
            log.write(OutputStream::Stdout, b"hello\n", SystemTime::UNIX_EPOCH)?;
        }
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        assert!(std::fs::metadata(dir.path().join("c-json.log"))?.len() <= 200);
        Ok(())
    }
}
