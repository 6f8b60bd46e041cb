//! The page server's wire protocol: checksummed frames over a byte stream (TCP), by which `dump
//! --page-server` hands its page files to `stasis page-server`, and `lazy-pages` asks one for pages.
//! See `docs/page-server.md`.
//!
//! A frame is a 24-byte header, then its payload:
//!
//! ```text
//! 0   magic     u32 LE  "SPGS"
//! 4   kind      u16 LE  (Hello = 1, Open, Data, Close, Commit, Ok, Error, Get, Round, Running, PageSource)
//! 6   flags     u16 LE  0
//! 8   length    u32 LE  payload bytes, at most MAX_PAYLOAD
//! 12  reserved  u32 LE  0
//! 16  checksum  u64 LE  xxh3-64 of bytes 0..16 of the header, then the payload
//! ```
//!
//! Frames come from untrusted peers: every length is checked against [`MAX_PAYLOAD`] before anything
//! is allocated, and a frame whose checksum or layout is wrong is an error naming its kind.

use std::io::{self, Read, Write};

use xxhash_rust::xxh3::Xxh3Default;

/// The first word of every frame: `SPGS` read as a little-endian `u32`.
pub const WIRE_MAGIC: u32 = u32::from_le_bytes(*b"SPGS");
/// The protocol version, exchanged in [`Frame::Hello`]; peers of another version are refused.
pub const WIRE_VERSION: u32 = 1;
/// The most page bytes one [`Frame::Data`] carries.
pub const MAX_DATA: usize = 1 << 20;
/// The largest payload a reader accepts: a full data frame, or a close frame's checksum list.
pub const MAX_PAYLOAD: usize = MAX_DATA + 16;
/// The longest file name in an [`Frame::Open`].
pub const MAX_NAME: usize = 64;
/// Stage timings a [`Frame::Running`] carries at most.
pub const MAX_STAGES: usize = 16;
const HEADER: usize = 24;

/// One message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// First frame of each side: the protocol version.
    Hello { version: u32 },
    /// The sender starts the file `name` (a page file: `pages-PID.img`).
    Open { name: String },
    /// Bytes of the open file at `offset` (sent in order); the answer to a [`Frame::Get`].
    Data { offset: u64, bytes: Vec<u8> },
    /// The open file is complete: its size, and the chunk checksums of its page data.
    Close { size: u64, chunk_size: u64, checksums: Vec<u64> },
    /// Every file is sent: make them part of the image directory.
    Commit,
    /// The receiver took the last [`Frame::Close`] or [`Frame::Commit`].
    Ok,
    /// The peer gives up, saying why.
    Error { message: String },
    /// Ask for `len` bytes of the page file `name` at `offset` (answered by one [`Frame::Data`]).
    Get { name: String, offset: u64, len: u32 },
    /// `stasis migrate`: the files up to the next [`Frame::Commit`] are round `index` (1, 2, ...) of
    /// the migration, an image whose parent is round `index - 1`; `last`: the final dump.
    Round { index: u32, last: bool },
    /// `stasis serve`: the migrated tree runs, its root being `pid` (in the receiver's namespace);
    /// `stages_us`: how long the receiver's stages took, in microseconds (the last round received,
    /// then the restore's stages; see `stasis_engine::migrate`), at most [`MAX_STAGES`], possibly none.
    Running { pid: i32, stages_us: Vec<u64> },
    /// `stasis migrate --lazy`: the page files of the next round are not sent; the sender serves
    /// them (as `page-server --lazy-pages` does) on `port` of its address.
    PageSource { port: u16 },
}

impl Frame {
    fn kind(&self) -> u16 {
        match self {
            Frame::Hello { .. } => 1,
            Frame::Open { .. } => 2,
            Frame::Data { .. } => 3,
            Frame::Close { .. } => 4,
            Frame::Commit => 5,
            Frame::Ok => 6,
            Frame::Error { .. } => 7,
            Frame::Get { .. } => 8,
            Frame::Round { .. } => 9,
            Frame::Running { .. } => 10,
            Frame::PageSource { .. } => 11,
        }
    }

    /// The frame's name, for messages.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }
}

fn kind_name(kind: u16) -> &'static str {
    match kind {
        1 => "hello",
        2 => "open",
        3 => "data",
        4 => "close",
        5 => "commit",
        6 => "ok",
        7 => "error",
        8 => "get",
        9 => "round",
        10 => "running",
        11 => "page source",
        _ => "unknown",
    }
}

/// What can go wrong reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the connection failed")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("bad frame magic {0:#010x} (not a stasis page server peer)")]
    BadMagic(u32),
    #[error("{kind} frame: {problem}")]
    Malformed { kind: &'static str, problem: String },
}

fn malformed(kind: u16, problem: impl Into<String>) -> WireError {
    WireError::Malformed { kind: kind_name(kind), problem: problem.into() }
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> io::Result<()> {
    if let Frame::Data { offset, bytes } = frame {
        return write_data(w, *offset, bytes);
    }
    write_raw(w, frame.kind(), &[&payload(frame)])
}

/// Write a [`Frame::Data`] without copying `bytes` (at most [`MAX_DATA`]).
pub fn write_data(w: &mut impl Write, offset: u64, bytes: &[u8]) -> io::Result<()> {
    if bytes.len() > MAX_DATA {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "data frame over MAX_DATA"));
    }
    write_raw(w, 3, &[&offset.to_le_bytes(), bytes])
}

fn payload(frame: &Frame) -> Vec<u8> {
    let mut p = Vec::new();
    match frame {
        Frame::Hello { version } => p.extend(version.to_le_bytes()),
        Frame::Open { name } => p.extend(name.as_bytes()),
        Frame::Data { offset, bytes } => {
            p.extend(offset.to_le_bytes());
            p.extend(bytes);
        }
        Frame::Close { size, chunk_size, checksums } => {
            p.extend(size.to_le_bytes());
            p.extend(chunk_size.to_le_bytes());
            checksums.iter().for_each(|c| p.extend(c.to_le_bytes()));
        }
        Frame::Commit | Frame::Ok => {}
        Frame::Error { message } => p.extend(message.as_bytes()),
        Frame::Get { name, offset, len } => {
            p.extend(offset.to_le_bytes());
            p.extend(len.to_le_bytes());
            p.extend(name.as_bytes());
        }
        Frame::Round { index, last } => {
            p.extend(index.to_le_bytes());
            p.extend(u32::from(*last).to_le_bytes());
        }
        Frame::Running { pid, stages_us } => {
            p.extend(pid.to_le_bytes());
            stages_us.iter().for_each(|t| p.extend(t.to_le_bytes()));
        }
        Frame::PageSource { port } => p.extend(port.to_le_bytes()),
    }
    p
}

fn write_raw(w: &mut impl Write, kind: u16, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut head = [0u8; HEADER];
    head[0..4].copy_from_slice(&WIRE_MAGIC.to_le_bytes());
    head[4..6].copy_from_slice(&kind.to_le_bytes());
    head[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    let mut hasher = Xxh3Default::new();
    hasher.update(&head[..16]);
    parts.iter().for_each(|p| hasher.update(p));
    head[16..24].copy_from_slice(&hasher.digest().to_le_bytes());
    w.write_all(&head)?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// Read one frame. End of stream before its first byte is [`WireError::Closed`].
pub fn read_frame(r: &mut impl Read) -> Result<Frame, WireError> {
    let mut head = [0u8; HEADER];
    let first = loop {
        match r.read(&mut head) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if first == 0 {
        return Err(WireError::Closed);
    }
    r.read_exact(&mut head[first..])?;
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    if word(0) != WIRE_MAGIC {
        return Err(WireError::BadMagic(word(0)));
    }
    let kind = u16::from_le_bytes([head[4], head[5]]);
    let len = word(8) as usize;
    if head[6..8] != [0, 0] || word(12) != 0 {
        return Err(malformed(kind, "nonzero flags or reserved word"));
    }
    if len > MAX_PAYLOAD {
        return Err(malformed(kind, format!("payload of {len} bytes, over the limit of {MAX_PAYLOAD}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let mut hasher = Xxh3Default::new();
    hasher.update(&head[..16]);
    hasher.update(&body);
    let listed = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    if hasher.digest() != listed {
        return Err(malformed(kind, "checksum mismatch"));
    }
    decode(kind, body)
}

fn decode(kind: u16, body: Vec<u8>) -> Result<Frame, WireError> {
    let u64_at = |at: usize| -> Result<u64, WireError> {
        let b = body.get(at..at + 8).ok_or_else(|| malformed(kind, format!("{} bytes is too short", body.len())))?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let text = |bytes: &[u8], max: usize| -> Result<String, WireError> {
        if bytes.len() > max {
            return Err(malformed(kind, format!("text of {} bytes, over {max}", bytes.len())));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed(kind, "text is not UTF-8"))
    };
    let frame = match kind {
        1 if body.len() == 4 => Frame::Hello { version: u32::from_le_bytes(body[..4].try_into().expect("4")) },
        2 => Frame::Open { name: text(&body, MAX_NAME)? },
        3 if body.len() > MAX_DATA + 8 => return Err(malformed(kind, format!("{} bytes of data", body.len() - 8))),
        3 => {
            let offset = u64_at(0)?;
            let mut bytes = body;
            bytes.drain(..8);
            Frame::Data { offset, bytes }
        }
        4 if body.len() >= 16 && body.len().is_multiple_of(8) => Frame::Close {
            size: u64_at(0)?,
            chunk_size: u64_at(8)?,
            checksums: (16..body.len()).step_by(8).map(u64_at).collect::<Result<_, _>>()?,
        },
        5 | 6 if body.is_empty() => {
            if kind == 5 {
                Frame::Commit
            } else {
                Frame::Ok
            }
        }
        7 => Frame::Error { message: text(&body, 4096)? },
        8 if body.len() >= 12 => Frame::Get {
            offset: u64_at(0)?,
            len: u32::from_le_bytes(body[8..12].try_into().expect("4")),
            name: text(&body[12..], MAX_NAME)?,
        },
        9 if body.len() == 8 && u32::from_le_bytes(body[4..8].try_into().expect("4")) <= 1 => {
            Frame::Round { index: u32::from_le_bytes(body[..4].try_into().expect("4")), last: body[4] == 1 }
        }
        10 if body.len() >= 4 && (body.len() - 4).is_multiple_of(8) && body.len() <= 4 + 8 * MAX_STAGES => {
            Frame::Running {
                pid: i32::from_le_bytes(body[..4].try_into().expect("4")),
                stages_us: body[4..].chunks(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect(),
            }
        }
        11 if body.len() == 2 => Frame::PageSource { port: u16::from_le_bytes([body[0], body[1]]) },
        1..=11 => return Err(malformed(kind, format!("payload of {} bytes does not fit", body.len()))),
        _ => return Err(WireError::Malformed { kind: "unknown", problem: format!("frame kind {kind}") }),
    };
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut buf = Vec::new();
        write_frame(&mut buf, &frame).unwrap();
        assert_eq!(read_frame(&mut buf.as_slice()).unwrap(), frame);
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::Hello { version: WIRE_VERSION });
        round_trip(Frame::Open { name: "pages-42.img".into() });
        round_trip(Frame::Data { offset: 4096, bytes: vec![7; 5000] });
        round_trip(Frame::Close { size: 8192, chunk_size: 4096, checksums: vec![1, 2] });
        round_trip(Frame::Commit);
        round_trip(Frame::Ok);
        round_trip(Frame::Error { message: "no space".into() });
        round_trip(Frame::Get { name: "pages-1.img".into(), offset: 4096, len: 8192 });
        round_trip(Frame::Round { index: 3, last: true });
        round_trip(Frame::Round { index: 1, last: false });
        round_trip(Frame::Running { pid: 42, stages_us: vec![] });
        round_trip(Frame::Running { pid: 42, stages_us: vec![1, 2, 3, 4, 5] });
        round_trip(Frame::PageSource { port: 7000 });
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Frame::Data { offset: 0, bytes: vec![1; 64] }).unwrap();
        buf[40] ^= 1;
        let err = read_frame(&mut buf.as_slice()).unwrap_err();
        assert!(err.to_string().contains("data frame: checksum mismatch"), "{err}");
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Frame::Commit).unwrap();
        buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = read_frame(&mut buf.as_slice()).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn end_of_stream_and_garbage() {
        assert!(matches!(read_frame(&mut [].as_slice()), Err(WireError::Closed)));
        assert!(matches!(read_frame(&mut [0u8; 24].as_slice()), Err(WireError::BadMagic(0))));
        let mut buf = Vec::new();
        write_frame(&mut buf, &Frame::Ok).unwrap();
        assert!(matches!(read_frame(&mut &buf[..10]), Err(WireError::Io(_))));
    }
}
