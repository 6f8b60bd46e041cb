//! `sock_diag(7)` for `AF_INET` and `AF_INET6` (`linux/inet_diag.h`): one netlink dump of the
//! sockets of a family and protocol in our network namespace, with their state, queue lengths and
//! shutdown state (which no `getsockopt` shows).

use crate::sock_diag::{self, u16_at, u32_at, Family};
use crate::SysError;

const INET_DIAG_SHUTDOWN: u16 = 8;
/// `INET_DIAG_INFO`: the extension whose request also brings a TCP socket's MD5 keys.
const INET_DIAG_INFO: u8 = 2;
/// `INET_DIAG_MD5SIG`: the TCP-MD5 keys (`struct tcp_diag_md5sig`, 100 bytes each), to
/// `CAP_NET_ADMIN` only.
const INET_DIAG_MD5SIG: u16 = 18;
const TCP_DIAG_MD5SIG: usize = 100;
/// `struct inet_diag_msg`: family, state, timer, retrans, `inet_diag_sockid` (48 bytes), expires,
/// rqueue, wqueue, uid, inode.
const DIAG_MSG: usize = 72;

/// What `inet_diag` reports about one socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InetDiag {
    pub ino: u32,
    pub state: u8,
    pub rqueue: u32,
    pub wqueue: u32,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2) bits.
    pub shutdown: u8,
    /// The remote address and port (`idiag_dst`, `idiag_dport`), also of a connect in progress
    /// (which `getpeername` does not tell).
    pub dst: Option<std::net::SocketAddr>,
    /// The local address and port (`idiag_src`, `idiag_sport`): a listener's, for the
    /// connections in its handshake (`SYN-RECV`).
    pub src: Option<std::net::SocketAddr>,
    /// How many TCP-MD5 keys (`TCP_MD5SIG`) the socket holds (asked with [`dump_tcp_with_keys`]).
    pub md5_keys: u32,
}

/// Every socket of `family` (`AF_INET`, `AF_INET6`) and `protocol` (`IPPROTO_TCP`, `IPPROTO_UDP`,
/// `IPPROTO_UDPLITE`, ...) of our network namespace, in every state.
pub fn dump_all(family: i32, protocol: i32) -> Result<Vec<InetDiag>, SysError> {
    let names = Family { dump: "inet_diag dump", parse: "parsing an inet_diag reply" };
    sock_diag::dump(&names, &request(family as u8, protocol as u8), parse_msg)
}

/// Every TCP socket of `family` in the network namespace `netns` (ours when `None`) with its
/// TCP-MD5 key count: the request asks for `INET_DIAG_INFO`, which brings `INET_DIAG_MD5SIG`.
pub fn dump_tcp_with_keys(netns: Option<std::os::fd::BorrowedFd<'_>>, family: i32) -> Result<Vec<InetDiag>, SysError> {
    let names = Family { dump: "inet_diag dump", parse: "parsing an inet_diag reply" };
    let mut req = request(family as u8, libc::IPPROTO_TCP as u8);
    req[2] = 1 << (INET_DIAG_INFO - 1);
    sock_diag::dump_in(netns, &names, &req, parse_msg)
}

/// One `struct inet_diag_req_v2`: every state, any address.
fn request(family: u8, protocol: u8) -> Vec<u8> {
    let mut req = Vec::with_capacity(56);
    req.extend_from_slice(&[family, protocol, 0, 0]); // family, protocol, ext, pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // states
    req.extend_from_slice(&[0; 40]); // ports, addresses, interface
    req.extend_from_slice(&[0xff; 8]); // no cookie
    req
}

/// One `inet_diag_msg` and its attributes.
pub fn parse_msg(b: &[u8]) -> Option<InetDiag> {
    let v4 = i32::from(*b.first()?) == libc::AF_INET;
    let at = |port: std::ops::Range<usize>, addr: usize| -> Option<std::net::SocketAddr> {
        let port = u16::from_be_bytes(b.get(port)?.try_into().ok()?);
        let raw: [u8; 16] = b.get(addr..addr + 16)?.try_into().ok()?;
        let ip: std::net::IpAddr = if v4 {
            std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()
        } else {
            std::net::Ipv6Addr::from(raw).into()
        };
        Some(std::net::SocketAddr::new(ip, port))
    };
    let mut d = InetDiag {
        dst: Some(at(6..8, 24)?),
        src: Some(at(4..6, 8)?),
        state: *b.get(1)?,
        rqueue: u32_at(b, 56)?,
        wqueue: u32_at(b, 60)?,
        ino: u32_at(b, 68)?,
        ..Default::default()
    };
    let mut a = b.get(DIAG_MSG..)?;
    while a.len() >= 4 {
        let len = u16_at(a, 0)? as usize;
        let ty = u16_at(a, 2)?;
        let v = a.get(4..len)?;
        if ty == INET_DIAG_SHUTDOWN {
            d.shutdown = *v.first()?;
        }
        if ty == INET_DIAG_MD5SIG {
            d.md5_keys = (v.len() / TCP_DIAG_MD5SIG) as u32;
        }
        a = a.get(len.next_multiple_of(4).min(a.len())..)?;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn parses_a_message_with_its_shutdown() {
        let mut b = vec![0u8; DIAG_MSG];
        b[0] = libc::AF_INET as u8;
        b[1] = 7;
        b[4..6].copy_from_slice(&8080u16.to_be_bytes());
        b[6..8].copy_from_slice(&53u16.to_be_bytes());
        b[8..12].copy_from_slice(&[127, 0, 0, 2]);
        b[24..28].copy_from_slice(&[127, 0, 0, 1]);
        b[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&INET_DIAG_SHUTDOWN.to_ne_bytes());
        b.extend_from_slice(&[2, 0, 0, 0]);
        let d = parse_msg(&b).expect("parses");
        assert_eq!((d.ino, d.state, d.shutdown), (4242, 7, 2));
        assert_eq!(d.src, Some("127.0.0.2:8080".parse().unwrap()));
        assert_eq!(d.dst, Some("127.0.0.1:53".parse().unwrap()));
    }

    #[test]
    fn sees_a_shut_down_udp_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let fd = std::os::fd::AsFd::as_fd(&s);
        let _ = crate::socket::shutdown(fd, libc::SHUT_WR);
        let ino = std::fs::File::from(fd.try_clone_to_owned().unwrap()).metadata().unwrap().ino() as u32;
        let Ok(all) = dump_all(libc::AF_INET, libc::IPPROTO_UDP) else {
            eprintln!("skipped: no inet_diag for UDP in this kernel");
            return;
        };
        let d = all.iter().find(|d| d.ino == ino).expect("listed");
        assert_eq!(d.shutdown, 2);
    }
}
