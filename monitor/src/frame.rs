//! The output frames of the attach socket: `[stream: u8][len: u32 BE][bytes]`,
//! stream 1 for stdout and 2 for stderr (Docker's stdcopy multiplexing, with
//! a shorter header). The monitor encodes, attach clients decode.

use std::io::{self, Read};

/// Which output stream a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// The container's stdout, or its pty.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl OutputStream {
    /// The stream's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            OutputStream::Stdout => 1,
            OutputStream::Stderr => 2,
        }
    }

    /// The stream's name in json-file logs.
    pub fn name(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }

    /// The stream's attach flag bit.
    pub(crate) fn flag(self) -> u8 {
        match self {
            OutputStream::Stdout => 0b010,
            OutputStream::Stderr => 0b100,
        }
    }
}

/// One decoded output frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The stream the bytes came from.
    pub stream: OutputStream,
    /// The bytes, exactly as the container wrote them.
    pub data: Vec<u8>,
}

/// The 5-byte header of a frame of `len` bytes on `stream`.
pub(crate) fn header(stream: OutputStream, len: usize) -> [u8; 5] {
    // Frames are at most one read buffer long, far below u32::MAX.
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream.code(), len[0], len[1], len[2], len[3]]
}

/// Reads the next frame; `Ok(None)` at a clean end of stream (the container
/// exited and the monitor closed the connection).
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (stream, len) = decode_header(&head)?;
    let mut data = vec![0u8; len];
    reader.read_exact(&mut data)?;
    Ok(Some(Frame { stream, data }))
}

/// The stream and payload length a frame header `[stream][len u32 BE]`
/// announces, for readers of frames other than [`read_frame`] (async ones).
pub fn decode_header(head: &[u8; 5]) -> io::Result<(OutputStream, usize)> {
    let stream = match head[0] {
        1 => OutputStream::Stdout,
        2 => OutputStream::Stderr,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("attach frame with unknown stream {other}"),
            ));
        }
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    Ok((stream, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_to_its_stream_and_bytes() {
        let mut wire = header(OutputStream::Stderr, 3).to_vec();
        wire.extend_from_slice(b"hi\n");
        let mut r = &wire[..];
        let frame = read_frame(&mut r).ok().flatten();
        assert_eq!(
            frame,
            Some(Frame {
                stream: OutputStream::Stderr,
                data: b"hi\n".to_vec()
            })
        );
        assert!(matches!(read_frame(&mut r), Ok(None)));
    }

    #[test]
    fn a_truncated_header_is_an_error() {
        let mut r = &[1u8, 0][..];
        assert!(read_frame(&mut r).is_err());
    }
}
