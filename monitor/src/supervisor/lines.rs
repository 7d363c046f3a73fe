//! Cuts a container's output into log entries as Docker's json-file driver
//! does: one entry per line (newline included); a line longer than 16 KiB
//! becomes several entries, the last part without a newline; a partial line
//! is held until its newline arrives or the stream ends.

/// The longest entry; longer lines are split (Docker's 16 KiB).
pub(crate) const MAX_ENTRY: usize = 16 * 1024;

/// The unfinished line of one stream.
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`, calling `emit` for every finished entry.
    pub(crate) fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(end) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(end + 1);
            if self.partial.is_empty() {
                emit_chunks(line, emit);
            } else {
                self.partial.extend_from_slice(line);
                emit_chunks(&self.partial, emit);
                self.partial.clear();
            }
            data = rest;
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() >= MAX_ENTRY {
            let whole = self.partial.len() / MAX_ENTRY * MAX_ENTRY;
            emit_chunks(&self.partial[..whole], emit);
            self.partial.drain(..whole);
        }
        if self.partial.is_empty() && self.partial.capacity() > MAX_ENTRY {
            // Give back what one long line took.
            self.partial = Vec::new();
        }
    }

    /// Emits what is left at the end of the stream.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit_chunks(&self.partial, emit);
        }
        self.partial = Vec::new();
    }
}

/// `data` in entries of at most [`MAX_ENTRY`] bytes.
fn emit_chunks(data: &[u8], emit: &mut impl FnMut(&[u8])) {
    for chunk in data.chunks(MAX_ENTRY) {
        emit(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(feeds: &[&[u8]], finish: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::default();
        for feed in feeds {
            splitter.push(feed, &mut |e| out.push(e.to_vec()));
        }
        if finish {
            splitter.finish(&mut |e| out.push(e.to_vec()));
        }
        out
    }

    #[test]
    fn lines_split_across_reads_become_one_entry_each() {
        let got = entries(&[b"one\ntw", b"o\nthr"], false);
        assert_eq!(got, vec![b"one\n".to_vec(), b"two\n".to_vec()]);
    }

    #[test]
    fn a_partial_line_is_flushed_at_the_end() {
        let got = entries(&[b"a\nrest"], true);
        assert_eq!(got, vec![b"a\n".to_vec(), b"rest".to_vec()]);
    }

    #[test]
    fn a_long_line_is_cut_into_16_kib_entries() {
        let long = vec![b'x'; MAX_ENTRY * 2 + 10];
        let got = entries(&[&long, b"\n"], false);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), MAX_ENTRY);
        assert_eq!(got[2], [vec![b'x'; 10], b"\n".to_vec()].concat());
    }
}
