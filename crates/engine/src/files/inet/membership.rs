//! The multicast groups a UDP socket joined, with their source filters. No option lists them:
//! dump takes the groups joined on each interface of the process's network namespace
//! (`/proc/PID/net/igmp`, `/proc/PID/net/igmp6`) and asks the socket for each with
//! `getsockopt(MCAST_MSFILTER)`, which answers for a group the socket joined and fails with
//! `EADDRNOTAVAIL` for another. Restore joins again (`MCAST_JOIN_GROUP`) and sets the filter.

use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_image::model::Membership;
use stasis_sys::inet::{self as net, MCAST_EXCLUDE, MCAST_INCLUDE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::BorrowedFd;

/// The socket's memberships into `s`.
pub(super) fn dump(p: &Probe, s: &mut InetSocket) -> Result<()> {
    let mut groups = Vec::new();
    for (file, v6) in [("igmp", false), ("igmp6", true)] {
        let path = format!("/proc/{}/net/{file}", p.pid);
        match std::fs::read_to_string(&path) {
            Ok(text) if v6 => groups.extend(parse_igmp6(&text)),
            Ok(text) => groups.extend(parse_igmp(&text)),
            // No IPv6 (or no multicast) in this kernel: no group of that family.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path: path.into(), source: e }),
        }
    }
    groups.dedup();
    for (ifindex, group) in groups {
        if group.is_ipv6() && s.family != libc::AF_INET6 as u32 {
            continue;
        }
        let m = net::membership(p.file, level(group), ifindex, group)
            .map_err(Error::sys(p.pid.0, "reading a multicast membership (MCAST_MSFILTER)"))?;
        if let Some(m) = m {
            s.memberships.push(Membership {
                group: group.to_string(),
                ifindex,
                include: m.mode == MCAST_INCLUDE,
                sources: m.sources.iter().map(IpAddr::to_string).collect(),
            });
        }
    }
    Ok(())
}

/// Join every group of the image again, with its filter.
pub(super) fn restore(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    for m in &s.memberships {
        let bad = || Error::Incompatible {
            file: "files.img".into(),
            what: format!("{}: multicast group {} does not parse", describe(s), m.group),
        };
        let group: IpAddr = m.group.parse().map_err(|_| bad())?;
        let sources = m.sources.iter().map(|a| a.parse()).collect::<std::result::Result<Vec<IpAddr>, _>>();
        let mode = if m.include { MCAST_INCLUDE } else { MCAST_EXCLUDE };
        let want = net::Membership { mode, sources: sources.map_err(|_| bad())? };
        net::join(f, level(group), m.ifindex, group, &want).map_err(|e| Error::Io {
            path: format!(
                "{}: joining multicast group {} on interface {} ({})",
                describe(s),
                m.group,
                m.ifindex,
                e.call
            )
            .into(),
            source: e.source,
        })?;
    }
    Ok(())
}

fn level(group: IpAddr) -> i32 {
    if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    }
}

/// (interface index, group) of `/proc/net/igmp`: a line per interface (`1\tlo : 2 V3`), then a
/// line per group (`\t\t\t\t010000E0 1 0:00000000 0`, the address as the kernel's 32-bit word).
fn parse_igmp(text: &str) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    let mut ifindex = None;
    for line in text.lines().skip(1) {
        let first = line.split_whitespace().next().unwrap_or_default();
        if !line.starts_with('\t') {
            ifindex = first.parse::<u32>().ok();
        } else if let (Some(i), Ok(word)) = (ifindex, u32::from_str_radix(first, 16)) {
            out.push((i, IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))));
        }
    }
    out
}

/// (interface index, group) of `/proc/net/igmp6`: `1 lo ff020000000000000000000000000001 1 ...`.
fn parse_igmp6(text: &str) -> Vec<(u32, IpAddr)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(i), Some(_), Some(hex)) = (f.next(), f.next(), f.next()) else { continue };
        let (Ok(i), Ok(v)) = (i.parse::<u32>(), u128::from_str_radix(hex, 16)) else { continue };
        if hex.len() == 32 {
            out.push((i, IpAddr::V6(Ipv6Addr::from(v))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_igmp() {
        let text = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     2      V3\n\
                    \t\t\t\t030201EF     1 0:00000000\t\t0\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    4\teth0      :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        let got = parse_igmp(text);
        let word = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(u32::from_ne_bytes(a).to_ne_bytes()));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[2].0, 4);
        if cfg!(target_endian = "little") {
            assert_eq!(got[0].1, "239.1.2.3".parse::<IpAddr>().unwrap());
        }
        assert_eq!(got[1].1, word(0x010000E0u32.to_ne_bytes()));
    }

    #[test]
    fn parses_proc_net_igmp6() {
        let text = "1    lo              ff150000000000000000000000001234     1 00000004 0\n\
                    4    eth0            ff0200000000000000000001ff000002     1 00000004 0\n";
        let got = parse_igmp6(text);
        assert_eq!(got, vec![(1, "ff15::1234".parse().unwrap()), (4, "ff02::1:ff00:2".parse().unwrap())]);
    }
}
