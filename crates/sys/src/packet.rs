//! Packet sockets (`packet(7)`): making and binding them by interface and protocol, reading the
//! address back, and `packet_diag` (`linux/packet_diag.h`, through `sock_diag`) for what no
//! `getsockopt` shows: mmap'ed rings and the interface memberships.

use crate::sock_diag::{self, u16_at, u32_at, Family};
use crate::{check, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SOL_PACKET` (`linux/socket.h`).
pub const SOL_PACKET: i32 = 263;
pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_SHOW_MCLIST: u32 = 0x2;
const PACKET_SHOW_RING_CFG: u32 = 0x4;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
/// `struct packet_diag_msg`: family, type, num, inode, cookie.
const DIAG_MSG: usize = 16;

/// `socket(AF_PACKET, ty, protocol)` (`protocol` in network byte order, as `htons(ETH_P_*)`).
pub fn socket(ty: i32, protocol: u16) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, i32::from(protocol)) };
    let fd = check("socket(AF_PACKET)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `bind(2)` to interface `ifindex` (0: every interface) and `protocol` (network byte order).
pub fn bind(fd: BorrowedFd<'_>, ifindex: i32, protocol: u16) -> Result<(), SysError> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = protocol;
    a.sll_ifindex = ifindex;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `a` is a valid sockaddr_ll of `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_ll).cast(), len) };
    check("bind(AF_PACKET)", ret as libc::c_long).map(drop)
}

/// `getsockname(2)`: (interface index, protocol in network byte order).
pub fn name(fd: BorrowedFd<'_>) -> Result<(i32, u16), SysError> {
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `a` and `len` are valid for the kernel to write a sockaddr_ll and its size.
    let ret = unsafe { libc::getsockname(fd.as_raw_fd(), (&mut a as *mut libc::sockaddr_ll).cast(), &mut len) };
    check("getsockname(AF_PACKET)", ret as libc::c_long)?;
    Ok((a.sll_ifindex, a.sll_protocol))
}

/// One membership of `PACKET_ADD_MEMBERSHIP` (`struct packet_diag_mclist`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketMembership {
    pub ifindex: u32,
    pub count: u32,
    /// `PACKET_MR_MULTICAST` (0), `PACKET_MR_PROMISC` (1), `PACKET_MR_ALLMULTI` (2) ...
    pub kind: u16,
    pub address: Vec<u8>,
}

/// What `packet_diag` reports about one socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketDiag {
    pub ino: u32,
    /// An RX or TX ring is set up (`PACKET_RX_RING`, `PACKET_TX_RING`).
    pub ring: bool,
    pub memberships: Vec<PacketMembership>,
}

/// Every packet socket of our network namespace.
pub fn dump_all() -> Result<Vec<PacketDiag>, SysError> {
    // struct packet_diag_req: family, protocol, pad, ino, show, cookie[2]
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&(PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let names = Family { dump: "packet_diag dump", parse: "parsing a packet_diag reply" };
    sock_diag::dump(&names, &req, parse_msg)
}

/// One `packet_diag_msg` and its attributes.
pub fn parse_msg(b: &[u8]) -> Option<PacketDiag> {
    let mut d = PacketDiag { ino: u32_at(b, 4)?, ..Default::default() };
    let mut a = b.get(DIAG_MSG..)?;
    while a.len() >= 4 {
        let len = u16_at(a, 0)? as usize;
        let ty = u16_at(a, 2)?;
        let v = a.get(4..len)?;
        match ty {
            PACKET_DIAG_RX_RING | PACKET_DIAG_TX_RING => d.ring = true,
            // struct packet_diag_mclist: index, count, type, alen, addr[32]
            PACKET_DIAG_MCLIST => {
                for m in v.chunks_exact(44) {
                    let alen = (u16_at(m, 10)? as usize).min(32);
                    d.memberships.push(PacketMembership {
                        ifindex: u32_at(m, 0)?,
                        count: u32_at(m, 4)?,
                        kind: u16_at(m, 8)?,
                        address: m.get(12..12 + alen)?.to_vec(),
                    });
                }
            }
            _ => {}
        }
        a = a.get(len.next_multiple_of(4).min(a.len())..)?;
    }
    Some(d)
}

/// `setsockopt(PACKET_ADD_MEMBERSHIP)` (`struct packet_mreq`).
pub fn add_membership(fd: BorrowedFd<'_>, m: &PacketMembership) -> Result<(), SysError> {
    let mut req = vec![0u8; 16];
    req[0..4].copy_from_slice(&(m.ifindex as i32).to_ne_bytes());
    req[4..6].copy_from_slice(&m.kind.to_ne_bytes());
    let alen = m.address.len().min(8);
    req[6..8].copy_from_slice(&(alen as u16).to_ne_bytes());
    req[8..8 + alen].copy_from_slice(&m.address[..alen]);
    crate::inet::set_bytes(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn packet_diag_lists_a_socket_and_its_ring() {
        let Ok(s) = socket(libc::SOCK_RAW, 0x88b5u16.to_be()) else {
            eprintln!("skipped: no packet socket (CAP_NET_RAW)");
            return;
        };
        // struct tpacket_req: block size, block count, frame size, frame count
        let req: Vec<u8> = [4096u32, 1, 2048, 2].iter().flat_map(|w| w.to_ne_bytes()).collect();
        crate::inet::set_bytes(s.as_fd(), SOL_PACKET, 5, &req).expect("PACKET_RX_RING");
        let ino = std::fs::File::from(s.try_clone().unwrap()).metadata().unwrap().ino() as u32;
        let all = dump_all().expect("packet_diag");
        assert!(all.iter().find(|d| d.ino == ino).expect("listed").ring);
    }
}
