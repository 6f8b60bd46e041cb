//! ICMP ping sockets (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)` and ICMPv6's, see `icmp(7)`):
//! the identifier (the port of the bound address: given to `bind`, or picked by the kernel at
//! `bind` or at the first send), the bound and connected addresses, the options and the BPF
//! filter.
//!
//! Echo replies waiting to be read are refused by name (the kernel cannot be asked to queue one on
//! a given socket without the host answering the echo request again). Restore makes the socket
//! (which `net.ipv4.ping_group_range` of the namespace must allow to stasis's group, as it allowed
//! the program's), sets its options, binds it to its address and identifier, and connects it.

use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_sys::inet as net;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Whether an entry is a ping socket.
pub(super) fn is_ping(i: &InetSocket) -> bool {
    i.sock_type == libc::SOCK_DGRAM as u32
        && (i.protocol == libc::IPPROTO_ICMP as u32 || i.protocol == libc::IPPROTO_ICMPV6 as u32)
}

/// A ping socket: `s` holds its family, type, protocol and local address.
pub(super) fn dump(p: &Probe, mut s: InetSocket) -> Result<InetSocket> {
    read_peer(p, &mut s)?;
    super::dump::read_options(p, &mut s)?;
    super::raw::refuse_unread(p, &s)?;
    Ok(s)
}

/// Whether the socket is connected, and to what: `getpeername` does not tell (a ping socket's peer
/// has no port, and `inet_getname` takes that for not connected), `/proc/net/icmp` (`icmp6`) of
/// the socket's network namespace does, read from a thread in it.
fn read_peer(p: &Probe, s: &mut InetSocket) -> Result<()> {
    let err = |what| Error::sys(p.pid.0, what);
    let netns = net::socket_netns(p.file).map_err(err("finding a socket's network namespace"))?;
    let list = if s.family == libc::AF_INET6 as u32 { "icmp6" } else { "icmp" };
    let path = format!("/proc/thread-self/net/{list}");
    let text = stasis_sys::ns::run_in_fd(netns.as_fd(), stasis_sys::ns::Kind::Net, || std::fs::read_to_string(&path))
        .map_err(err("entering a socket's network namespace"))?
        .map_err(Error::io(format!("/proc/net/{list} of its network namespace")))?;
    let ino = p.meta.ino();
    // A socket without an identifier is in no hash table, so not listed: it was never connected
    // (connect picks an identifier).
    if s.local_port == 0 {
        s.state = TCP_CLOSE;
        return Ok(());
    }
    let Some((state, peer)) =
        text.lines().skip(1).find_map(|l| listed(l).filter(|(i, ..)| *i == ino).map(|(_, st, a)| (st, a)))
    else {
        return Err(p.unsupported(format!("{}: not listed in /proc/net/{list}", describe(s))));
    };
    s.state = if state == TCP_ESTABLISHED { TCP_ESTABLISHED } else { TCP_CLOSE };
    if s.state == TCP_ESTABLISHED {
        s.remote_addr = peer.to_string();
    }
    Ok(())
}

/// A line of `/proc/net/icmp` or `icmp6`: (inode, state, remote address).
fn listed(line: &str) -> Option<(u64, u32, IpAddr)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let (remote, state, ino) = (w.get(2)?, w.get(3)?, w.get(9)?);
    let hex = remote.split(':').next()?;
    let words: Vec<u32> =
        (0..hex.len() / 8).map(|i| u32::from_str_radix(hex.get(8 * i..8 * i + 8)?, 16).ok()).collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let addr = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((ino.parse().ok()?, u32::from_str_radix(state, 16).ok()?, addr))
}

/// A ping socket made again: options, buffers, device, `bind` (address and identifier),
/// `connect`, BPF filter.
pub(super) fn make(s: &InetSocket) -> Result<OwnedFd> {
    let fail = |what| super::raw::fail(s, what);
    let fd = match net::socket(s.family as i32, s.sock_type as i32, s.protocol as i32) {
        Err(e) if e.errno() == libc::EACCES => {
            let what = format!(
                "{}: making it: net.ipv4.ping_group_range of its network namespace does not take stasis's group",
                describe(s)
            );
            return Err(Error::Failed { pid: stasis_sys::Pid(0), what });
        }
        made => made.map_err(fail("making it"))?,
    };
    let f = fd.as_fd();
    super::restore::set_options(s, f, &[])?;
    super::restore::set_buffers(s, f)?;
    super::restore::set_device(s, f)?;
    // Bound: to an address, or to an identifier only (picked at the first send or connect).
    super::raw::place(s, f, |here| here.port() != 0 || !here.ip().is_unspecified())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::listed;

    #[test]
    fn lines_of_proc_net_icmp_are_read() {
        let host = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let line = format!(
            "  12: {}:03B6 {}:0000 01 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 0",
            host([127, 0, 0, 1]),
            host([127, 0, 0, 2])
        );
        assert_eq!(listed(&line), Some((41234, 1, "127.0.0.2".parse().unwrap())));
        let six = (0..4).map(|i| host([0, 0, 0, if i == 3 { 1 } else { 0 }])).collect::<String>();
        let line = format!("   3: {six}:10E1 {six}:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0");
        assert_eq!(listed(&line), Some((99, 7, "::1".parse().unwrap())));
    }
}
