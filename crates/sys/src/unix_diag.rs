//! `sock_diag(7)` for `AF_UNIX`: one netlink dump of every UNIX socket of our network namespace with
//! its name, bound inode, peer, pending connections, queue lengths and shutdown state
//! (`linux/unix_diag.h`).

use crate::sock_diag::{self, u16_at, u32_at, Family};
use crate::SysError;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
const DIAG_MSG: usize = 16;

/// What `unix_diag` reports about one socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub ty: u8,
    /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7) or `TCP_LISTEN` (10).
    pub state: u8,
    /// The address (see [`crate::socket`]); empty if unnamed.
    pub name: Vec<u8>,
    /// Inode and device of the socket file a path name was bound to.
    pub vfs: Option<(u32, u32)>,
    /// Inode of the peer, 0 if none.
    pub peer: u32,
    /// Inodes of the connections waiting to be accepted (listeners), oldest first.
    pub icons: Vec<u32>,
    /// Receive queue length and its limit (for a listener: pending connections and backlog).
    pub rqlen: (u32, u32),
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2) bits.
    pub shutdown: u8,
}

/// Every UNIX socket of our network namespace (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY` dump).
pub fn dump_all() -> Result<Vec<UnixDiag>, SysError> {
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let names = Family { dump: "unix_diag dump", parse: "parsing a unix_diag reply" };
    sock_diag::dump(&names, &req, parse_msg)
}

/// One `unix_diag_msg` and its attributes.
pub fn parse_msg(b: &[u8]) -> Option<UnixDiag> {
    let mut d = UnixDiag { ty: *b.get(1)?, state: *b.get(2)?, ino: u32_at(b, 4)?, ..Default::default() };
    let mut a = b.get(DIAG_MSG..)?;
    while a.len() >= 4 {
        let len = u16_at(a, 0)? as usize;
        let ty = u16_at(a, 2)?;
        let v = a.get(4..len)?;
        match ty {
            UNIX_DIAG_NAME => d.name = path_name(v),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(v, 0)?, u32_at(v, 4)?)),
            UNIX_DIAG_PEER => d.peer = u32_at(v, 0)?,
            UNIX_DIAG_ICONS => d.icons = v.chunks_exact(4).map(|c| u32_at(c, 0)).collect::<Option<_>>()?,
            UNIX_DIAG_RQLEN => d.rqlen = (u32_at(v, 0)?, u32_at(v, 4)?),
            UNIX_DIAG_SHUTDOWN => d.shutdown = *v.first()?,
            _ => {}
        }
        a = a.get(len.next_multiple_of(4).min(a.len())..)?;
    }
    Some(d)
}

/// The name as bound: a path name loses the terminating NUL the kernel keeps with it.
fn path_name(v: &[u8]) -> Vec<u8> {
    match v.first() {
        Some(&c) if c != 0 => v.iter().take_while(|&&c| c != 0).copied().collect(),
        _ => v.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_message_with_attributes() {
        let mut b = vec![1u8, 1, 1, 0];
        b.extend_from_slice(&77u32.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        // name "\0ab" (3 bytes, padded to 4)
        b.extend_from_slice(&7u16.to_ne_bytes());
        b.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        b.extend_from_slice(&[0, b'a', b'b', 0]);
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&UNIX_DIAG_PEER.to_ne_bytes());
        b.extend_from_slice(&78u32.to_ne_bytes());
        let d = parse_msg(&b).expect("parses");
        assert_eq!((d.ino, d.ty, d.state, d.peer), (77, 1, 1, 78));
        assert_eq!(d.name, b"\0ab");
    }

    #[test]
    fn sees_a_socketpair() {
        let (a, b) = crate::socket::unix_socketpair(libc::SOCK_STREAM).expect("socketpair");
        let ino = |f: &std::os::fd::OwnedFd| {
            std::fs::File::from(f.try_clone().unwrap()).metadata().map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino() as u32
            })
        };
        let (ia, ib) = (ino(&a).unwrap(), ino(&b).unwrap());
        let all = dump_all().expect("dump");
        let da = all.iter().find(|d| d.ino == ia).expect("a listed");
        assert_eq!(da.peer, ib);
    }
}
