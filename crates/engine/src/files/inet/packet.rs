//! IP packets a restore sends to a socket it made, through a raw socket (`IPPROTO_RAW`: the IP
//! header is ours, so the source is any address and port): a queued datagram again from its
//! source, or the FIN a peer had sent. They carry [`crate::netlock::BYPASS_MARK`], so the network
//! lock lets them through.

use stasis_sys::inet as net;
use stasis_sys::socket as sock;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

/// Send `packet` (IP header included) towards `to`.
pub(super) fn send(to: SocketAddr, packet: &[u8]) -> Result<(), stasis_sys::SysError> {
    let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let raw = net::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    sock::set_int(raw.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, crate::netlock::BYPASS_MARK as i32)?;
    net::send_to(raw.as_fd(), packet, &to).map(drop)
}

/// A TCP segment with FIN and ACK from `from` to `to` (no options), and where to send it; `None`
/// if the families differ.
pub(super) fn tcp_fin(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    window: u16,
) -> Option<(SocketAddr, Vec<u8>)> {
    let (src, dst) = (net::wire_ip(from.ip()), net::wire_ip(to.ip()));
    let proto = libc::IPPROTO_TCP as u8;
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&from.port().to_be_bytes());
    tcp.extend_from_slice(&to.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, TCP_FIN | TCP_ACK]);
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut out = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_header(s, d, proto, tcp.len()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_header(s, d, proto, tcp.len()),
        _ => return None,
    };
    let sum = checksum(&pseudo_header(src, dst, proto, tcp.len()), &tcp);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&tcp);
    Some((SocketAddr::new(dst, 0), out))
}

const TCP_FIN: u8 = 0x01;
const TCP_ACK: u8 = 0x10;

/// The IP packet carrying `data` from `from` to the socket bound at `here` (the loopback address
/// if it is bound to any), and where to send it; `None` if the families cannot meet (an IPv4
/// source and an IPv6-only destination).
pub(super) fn udp(from: SocketAddr, here: SocketAddr, lite: bool, data: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let src = net::wire_ip(from.ip());
    let dst = match (net::wire_ip(here.ip()), src) {
        (IpAddr::V6(a), IpAddr::V4(_)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(a), IpAddr::V4(_)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V6(a), IpAddr::V6(_)) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (d, _) => d,
    };
    let proto = if lite { libc::IPPROTO_UDPLITE } else { libc::IPPROTO_UDP } as u8;
    let udp_len = 8 + data.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&here.port().to_be_bytes());
    // UDP-Lite: a coverage of 0 is the whole datagram.
    udp.extend_from_slice(&(if lite { 0 } else { udp_len as u16 }).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut out = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_header(s, d, proto, udp_len),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_header(s, d, proto, udp_len),
        _ => return None,
    };
    let sum = match checksum(&pseudo_header(src, dst, proto, udp_len), &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&udp);
    Some((SocketAddr::new(dst, 0), out))
}

/// An IPv4 header (no options, don't fragment, TTL 64); the kernel fills in its checksum and id.
fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// An IPv6 header (traffic class and flow label 0, hop limit 64).
fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// The pseudo-header the UDP checksum covers (RFC 768, RFC 8200 section 8.1).
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            p.extend_from_slice(&v6(s));
            p.extend_from_slice(&v6(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

/// The Internet checksum (RFC 1071) of `a` then `b` (`a` of even length).
fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let words =
        |x: &[u8]| -> u64 { x.chunks(2).map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0))).sum() };
    let mut sum = words(a) + words(b);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fin_checksums_to_zero() {
        let from: SocketAddr = "[::1]:80".parse().unwrap();
        let (to, p) = tcp_fin(from, "[::1]:4000".parse().unwrap(), 7, 9, 512).expect("same family");
        assert_eq!(p.len(), 40 + 20);
        assert_eq!(p[40 + 13], 0x11);
        assert_eq!(checksum(&pseudo_header(from.ip(), to.ip(), 6, 20), &p[40..]), 0);
    }

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2, complemented 220d.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
    }

    #[test]
    fn a_packet_checksums_to_zero_over_its_pseudo_header() {
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let here: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let (to, p) = udp(from, here, false, b"abc").expect("same family");
        assert_eq!(to, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(p.len(), 20 + 8 + 3);
        let pseudo = pseudo_header(from.ip(), to.ip(), 17, 11);
        assert_eq!(checksum(&pseudo, &p[20..]), 0);
        assert_eq!(&p[20..24], &[0x0f, 0xa0, 0, 53]);
    }

    #[test]
    fn a_v4_mapped_source_travels_as_ipv4_to_a_dual_stack_socket() {
        let from: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let here: SocketAddr = "[::]:53".parse().unwrap();
        let (to, p) = udp(from, here, true, b"").expect("dual stack");
        assert!(to.is_ipv4());
        assert_eq!(p[9], libc::IPPROTO_UDPLITE as u8);
        assert_eq!(&p[24..26], &[0, 0], "full coverage");
        let v6only: SocketAddr = "[::1]:53".parse().unwrap();
        assert!(udp(from, v6only, false, b"").is_none());
    }
}
