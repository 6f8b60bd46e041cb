//! Pseudo-terminal files (in `files.img`) and the state of their pair.

use super::*;
use serde::Serialize;

/// One end of a pseudo-terminal of the tree: the master (`/dev/ptmx`) or a slave (`/dev/pts/N`,
/// or `/dev/tty` naming it). Restore makes the pair once per `index`, with the same index. The
/// state of the pair is stored once, with its master.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PtyFile {
    /// N of `/dev/pts/N`.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(bool, tag = "2")]
    pub master: bool,
    /// The path it was opened by (`/dev/ptmx`, `/dev/pts/ptmx`, `/dev/pts/N`, `/dev/tty`).
    #[prost(string, tag = "3")]
    pub path: String,
    /// This end is in exclusive mode (`TIOCGEXCL`).
    #[prost(bool, tag = "4")]
    pub exclusive: bool,
    /// Master only: the pair's state.
    #[prost(message, optional, tag = "5")]
    pub state: Option<PtyState>,
    /// A slave hung up (its master was closed: `TIOCGEXCL` gives EIO): restored as a slave of a
    /// new pair whose master is closed at once, at any index.
    #[prost(bool, tag = "100")]
    pub hung_up: bool,
}

/// The state of a pseudo-terminal pair, read on its master.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PtyState {
    /// `struct termios2` (the slave's settings), field by field.
    #[prost(uint32, tag = "1")]
    pub iflag: u32,
    #[prost(uint32, tag = "2")]
    pub oflag: u32,
    #[prost(uint32, tag = "3")]
    pub cflag: u32,
    #[prost(uint32, tag = "4")]
    pub lflag: u32,
    #[prost(uint32, tag = "5")]
    pub line: u32,
    /// `c_cc`, 19 bytes.
    #[prost(bytes = "vec", tag = "6")]
    #[serde(serialize_with = "hex_bytes")]
    pub cc: Vec<u8>,
    #[prost(uint32, tag = "7")]
    pub ispeed: u32,
    #[prost(uint32, tag = "8")]
    pub ospeed: u32,
    /// Window size: rows, columns, pixel width and height.
    #[prost(uint32, tag = "9")]
    pub rows: u32,
    #[prost(uint32, tag = "10")]
    pub cols: u32,
    #[prost(uint32, tag = "11")]
    pub xpixel: u32,
    #[prost(uint32, tag = "12")]
    pub ypixel: u32,
    /// The slave is locked (`TIOCGPTLCK`).
    #[prost(bool, tag = "13")]
    pub locked: bool,
    /// The master is in packet mode (`TIOCGPKT`).
    #[prost(bool, tag = "14")]
    pub packet: bool,
    /// Complete input lines (canonical mode) waiting to be read on the slave, each with its end
    /// (newline, EOL, EOL2; none for a line ended by EOF).
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub slave_lines: Vec<Vec<u8>>,
    /// Input waiting on the slave after those lines: a line being edited (canonical mode) or every
    /// byte (non-canonical mode).
    #[prost(bytes = "vec", tag = "16")]
    #[serde(serialize_with = "hex_bytes")]
    pub slave_input: Vec<u8>,
    /// Output of the slave waiting to be read on the master.
    #[prost(bytes = "vec", tag = "17")]
    #[serde(serialize_with = "hex_bytes")]
    pub master_input: Vec<u8>,
    /// Every slave had been closed (the master reads end of file / EIO).
    #[prost(bool, tag = "18")]
    pub slave_closed: bool,
    /// The slave inode's owner, group and mode (`st_mode`, with its file type; 0 in older images:
    /// left as the new pair has them).
    #[prost(uint32, tag = "100")]
    pub slave_uid: u32,
    #[prost(uint32, tag = "101")]
    pub slave_gid: u32,
    #[prost(uint32, tag = "102")]
    pub slave_mode: u32,
}
