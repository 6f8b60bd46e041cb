//! ICMP ping sockets in a network namespace of the workload's own (so that it can let itself make
//! them: `net.ipv4.ping_group_range` = `0 2147483647` there, and the loopback up): an IPv4 one
//! bound to 127.0.0.1 (the kernel picks its identifier), connected to 127.0.0.1, with IP_TTL 33;
//! an IPv6 one bound to [::1] with the identifier 4321 and IPV6_UNICAST_HOPS 21, not connected;
//! an IPv4 one never used. Each used one pings once before the READY (its reply read, so nothing
//! is queued).
//!
//! After the wake each socket has the same addresses (identifier included) and options, the
//! sysctl is as set, and both used sockets ping again: the reply comes back to them, with their
//! identifier and the sequence number sent.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;

const RANGE: &str = "0\t2147483647";
const V6_IDENT: u16 = 4321;

/// An echo request: type, code 0, checksum and identifier left to the kernel, `seq`, a payload.
fn request(v6: bool, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"stasis ping");
    p
}

/// Send an echo request with `seq` (to `to`, or the connected peer) and read its reply: its
/// identifier, or what went wrong.
fn ping(s: &UdpSocket, v6: bool, to: Option<SocketAddr>, seq: u16) -> Result<u16, String> {
    let req = request(v6, seq);
    match to {
        Some(to) => s.send_to(&req, to).map(drop),
        None => s.send(&req).map(drop),
    }
    .map_err(|e| format!("send: {e}"))?;
    if !raw::poll_readable(s.as_fd(), 30_000).map_err(|e| format!("poll: {e}"))? {
        return Err("no echo reply within 30 s".into());
    }
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
    let reply = &buf[..n];
    let want_type = if v6 { 129 } else { 0 };
    if n < 8 || reply[0] != want_type || reply[6..8] != seq.to_be_bytes() || reply[8..] != req[8..] {
        return Err(format!("not the reply to sequence {seq}: {reply:?}"));
    }
    Ok(u16::from_be_bytes([reply[4], reply[5]]))
}

type State = (Option<SocketAddr>, Option<SocketAddr>, Vec<Option<i32>>);

fn state(s: &UdpSocket) -> State {
    let opts = [
        (libc::IPPROTO_IP, libc::IP_TTL),
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
        (libc::SOL_SOCKET, libc::SO_TYPE),
        (libc::SOL_SOCKET, libc::SO_PROTOCOL),
    ];
    (
        s.local_addr().ok(),
        s.peer_addr().ok(),
        opts.iter().map(|&(l, o)| raw::get_opt_at(s.as_fd(), l, o).ok()).collect(),
    )
}

fn socket(family: i32, protocol: i32) -> UdpSocket {
    UdpSocket::from(raw::inet_socket(family, libc::SOCK_DGRAM, protocol).or_fail("ping socket"))
}

fn main() {
    let mut s = workload::start();
    workload::unshare_net();
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().map_err(|e| e.to_string());
    up.and_then(|st| if st.success() { Ok(()) } else { Err(st.to_string()) }).or_fail("ip link set lo up");
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").or_fail("ping_group_range");
    let v4 = socket(libc::AF_INET, libc::IPPROTO_ICMP);
    raw::bind_inet(v4.as_fd(), "127.0.0.1:0".parse().or_fail("address")).or_fail("bind");
    raw::connect_inet(v4.as_fd(), "127.0.0.1:0".parse().or_fail("address")).or_fail("connect");
    raw::set_opt_at(v4.as_fd(), libc::IPPROTO_IP, libc::IP_TTL, 33).or_fail("IP_TTL");
    let v6 = socket(libc::AF_INET6, libc::IPPROTO_ICMPV6);
    raw::bind_inet(v6.as_fd(), format!("[::1]:{V6_IDENT}").parse().or_fail("address")).or_fail("bind v6");
    raw::set_opt_at(v6.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 21).or_fail("IPV6_UNICAST_HOPS");
    let unused = socket(libc::AF_INET, libc::IPPROTO_ICMP);
    let six: SocketAddr = "[::1]:0".parse().or_fail("address");
    let ident4 = ping(&v4, false, None, 1).or_fail("ping over IPv4 before the dump");
    let ident6 = ping(&v6, true, Some(six), 1).or_fail("ping over IPv6 before the dump");
    let all = [&v4, &v6, &unused];
    let before: Vec<State> = all.iter().map(|s| state(s)).collect();
    s.ready();
    s.wait_for_wake();
    let c: &mut Checker = &mut s.checker;
    for (i, (sock, b)) in all.iter().zip(&before).enumerate() {
        c.same(&format!("ping socket {i}: addresses and options"), b, &state(sock));
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").map(|r| r.trim().to_string());
    c.same("net.ipv4.ping_group_range", &Ok(RANGE.to_string()), &range.map_err(|e| e.to_string()));
    c.same("IPv6 identifier", &V6_IDENT, &ident6);
    c.same("IPv6 ping after the restore", &Ok(V6_IDENT), &ping(&v6, true, Some(six), 2));
    c.same("IPv4 ping after the restore", &Ok(ident4), &ping(&v4, false, None, 2));
    s.finish()
}
