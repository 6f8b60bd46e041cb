//! Conntrack entries of the calling thread's network namespace over ctnetlink (`NETLINK_NETFILTER`,
//! subsystem `NFNL_SUBSYS_CTNETLINK`): the table listed (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, one
//! address family at a time) and an entry made (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE|NLM_F_EXCL`).
//! An entry is the typed [`Entry`]: what ctnetlink lets one set again (tuples, status, timeout,
//! mark, zone, TCP state, window scales and flags, the NAT mapping), and by name what it shows but
//! cannot be set back ([`Entry::cannot_set`]).
//!
//! # References
//! `linux/netfilter/nfnetlink.h`, `linux/netfilter/nfnetlink_conntrack.h`,
//! `linux/netfilter/nf_conntrack_common.h`, `net/netfilter/nf_conntrack_netlink.c`.

use crate::nlmsg::{self, attrs, AttrBuf, Family};
use crate::{check, SysError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_HELP: u16 = 5;
const CTA_NAT_SRC: u16 = 6;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_NAT_DST: u16 = 13;
const CTA_TUPLE_MASTER: u16 = 14;
const CTA_SEQ_ADJ_ORIG: u16 = 15;
const CTA_SEQ_ADJ_REPLY: u16 = 16;
const CTA_SECCTX: u16 = 19;
const CTA_ZONE: u16 = 18;
const CTA_LABELS: u16 = 22;
const CTA_SYNPROXY: u16 = 24;
// enum ctattr_tuple, ctattr_ip, ctattr_l4proto
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
// enum ctattr_protoinfo, ctattr_protoinfo_tcp
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
// enum ctattr_nat, ctattr_protonat
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_PROTO: u16 = 3;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;
// enum ctattr_help
const CTA_HELP_NAME: u16 = 1;

/// `IPS_SRC_NAT`, `IPS_DST_NAT` of `enum ip_conntrack_status`.
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
/// `IPS_DYING`: the entry is being removed.
pub const IPS_DYING: u32 = 1 << 9;
/// `IPS_OFFLOAD`: the flow is handled by a flowtable, which keeps the entry's state.
pub const IPS_OFFLOAD: u32 = 1 << 14;

/// One direction of a connection: addresses, protocol, and its ports or ICMP id, type and code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol (`IPPROTO_TCP`...).
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP and ICMPv6 only.
    pub icmp: Option<Icmp>,
}

/// An ICMP (or ICMPv6) tuple's identifier, type and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub id: u16,
    pub ty: u8,
    pub code: u8,
}

/// The TCP tracking state ctnetlink shows and takes back (`CTA_PROTOINFO_TCP`): the state, each
/// direction's window scale and flags (`IP_CT_TCP_FLAG_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u8,
    pub wscale: [u8; 2],
    pub flags: [u8; 2],
}

/// One conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    pub original: Tuple,
    /// The reply direction: with NAT, the addresses and ports the mapping gave.
    pub reply: Tuple,
    /// `enum ip_conntrack_status` bits.
    pub status: u32,
    /// Seconds left.
    pub timeout: u32,
    pub mark: u32,
    pub zone: u16,
    pub tcp: Option<TcpInfo>,
    /// What the entry holds that ctnetlink cannot set back, by name (a helper, labels...).
    pub cannot_set: Vec<String>,
}

/// A `NETLINK_NETFILTER` socket of the calling thread's network namespace, close-on-exec.
fn socket() -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    let fd = check("socket(NETLINK_NETFILTER)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `struct nfgenmsg` of `family`, version `NFNETLINK_V0`, resource id 0.
fn nfgenmsg(family: u8) -> Vec<u8> {
    vec![family, 0, 0, 0]
}

/// Every conntrack entry of `family` (`AF_INET`, `AF_INET6`) in the calling thread's network
/// namespace, in every zone.
pub fn dump(family: u8) -> Result<Vec<Entry>, SysError> {
    let sock = socket()?;
    let names = Family { dump: "ctnetlink dump (IPCTNL_MSG_CT_GET)", parse: "parsing a ctnetlink entry" };
    let ty = (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET, libc::NLM_F_DUMP as u16);
    nlmsg::transact(sock.as_fd(), ty, &names, &nfgenmsg(family), parse)
}

/// Make `entry` in the calling thread's network namespace (`IPCTNL_MSG_CT_NEW`, failing with
/// `EEXIST` if its tuple is there already). Its NAT mapping, if any (TCP and UDP only), is the one
/// its reply tuple shows.
pub fn create(entry: &Entry) -> Result<(), SysError> {
    let sock = socket()?;
    let names = Family { dump: "ctnetlink IPCTNL_MSG_CT_NEW", parse: "parsing a ctnetlink answer" };
    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK) as u16;
    let mut body = nfgenmsg(entry.family);
    body.extend(encode(entry).0);
    nlmsg::transact(sock.as_fd(), (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW, flags), &names, &body, |_| Some(()))
        .map(drop)
}

/// The attributes of `IPCTNL_MSG_CT_NEW` for `e`.
fn encode(e: &Entry) -> AttrBuf {
    let mut a = AttrBuf::default();
    a.nest(CTA_TUPLE_ORIG, |a| put_tuple(a, &e.original));
    // With NAT the kernel derives the reply tuple from the mapping (and sets the NAT bits only
    // where it changes the tuple): it is given the one without NAT, and the mapping.
    let nat = e.status & (IPS_SRC_NAT | IPS_DST_NAT) != 0;
    a.nest(CTA_TUPLE_REPLY, |a| put_tuple(a, &if nat { inverse(&e.original) } else { e.reply.clone() }));
    if e.status & IPS_DST_NAT != 0 {
        a.nest(CTA_NAT_DST, |a| put_nat(a, &e.reply.src, e.reply.src_port));
    }
    if e.status & IPS_SRC_NAT != 0 {
        a.nest(CTA_NAT_SRC, |a| put_nat(a, &e.reply.dst, e.reply.dst_port));
    }
    a.put(CTA_STATUS, &e.status.to_be_bytes());
    a.put(CTA_TIMEOUT, &e.timeout.to_be_bytes());
    a.put(CTA_MARK, &e.mark.to_be_bytes());
    if e.zone != 0 {
        a.put(CTA_ZONE, &e.zone.to_be_bytes());
    }
    if let Some(t) = &e.tcp {
        a.nest(CTA_PROTOINFO, |a| {
            a.nest(CTA_PROTOINFO_TCP, |a| {
                a.put(CTA_PROTOINFO_TCP_STATE, &[t.state]);
                // struct nf_ct_tcp_flags: the flags, and the mask of those to set.
                a.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[t.flags[0], 0xff]);
                a.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &[t.flags[1], 0xff]);
                a.put(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, &[t.wscale[0]]);
                a.put(CTA_PROTOINFO_TCP_WSCALE_REPLY, &[t.wscale[1]]);
            })
        });
    }
    a
}

fn put_tuple(a: &mut AttrBuf, t: &Tuple) {
    a.nest(CTA_TUPLE_IP, |a| match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            a.put(CTA_IP_V4_SRC, &s.octets());
            a.put(CTA_IP_V4_DST, &d.octets());
        }
        (s, d) => {
            a.put(CTA_IP_V6_SRC, &v6(s).octets());
            a.put(CTA_IP_V6_DST, &v6(d).octets());
        }
    });
    a.nest(CTA_TUPLE_PROTO, |a| {
        a.put(CTA_PROTO_NUM, &[t.proto]);
        match (t.icmp, t.proto as i32) {
            (Some(i), libc::IPPROTO_ICMPV6) => {
                a.put(CTA_PROTO_ICMPV6_ID, &i.id.to_be_bytes());
                a.put(CTA_PROTO_ICMPV6_TYPE, &[i.ty]);
                a.put(CTA_PROTO_ICMPV6_CODE, &[i.code]);
            }
            (Some(i), _) => {
                a.put(CTA_PROTO_ICMP_ID, &i.id.to_be_bytes());
                a.put(CTA_PROTO_ICMP_TYPE, &[i.ty]);
                a.put(CTA_PROTO_ICMP_CODE, &[i.code]);
            }
            (None, _) => {
                a.put(CTA_PROTO_SRC_PORT, &t.src_port.to_be_bytes());
                a.put(CTA_PROTO_DST_PORT, &t.dst_port.to_be_bytes());
            }
        }
    });
}

/// The reply direction of `t` without NAT (TCP, UDP: the addresses and ports swapped).
fn inverse(t: &Tuple) -> Tuple {
    Tuple { src: t.dst, dst: t.src, src_port: t.dst_port, dst_port: t.src_port, ..t.clone() }
}

/// A NAT range of one address and one port (`CTA_NAT_*`): the mapping the reply tuple shows.
fn put_nat(a: &mut AttrBuf, addr: &IpAddr, port: u16) {
    match addr {
        IpAddr::V4(v) => {
            a.put(CTA_NAT_V4_MINIP, &v.octets());
            a.put(CTA_NAT_V4_MAXIP, &v.octets());
        }
        IpAddr::V6(v) => {
            a.put(CTA_NAT_V6_MINIP, &v.octets());
            a.put(CTA_NAT_V6_MAXIP, &v.octets());
        }
    }
    if port != 0 {
        a.nest(CTA_NAT_PROTO, |a| {
            a.put(CTA_PROTONAT_PORT_MIN, &port.to_be_bytes());
            a.put(CTA_PROTONAT_PORT_MAX, &port.to_be_bytes());
        });
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(v) => v,
        IpAddr::V4(v) => v.to_ipv6_mapped(),
    }
}

/// One `IPCTNL_MSG_CT_NEW` message of a dump: `struct nfgenmsg`, then the attributes.
fn parse(b: &[u8]) -> Option<Entry> {
    let family = *b.first()?;
    let mut e = Entry {
        family,
        original: empty_tuple(),
        reply: empty_tuple(),
        status: 0,
        timeout: 0,
        mark: 0,
        zone: 0,
        tcp: None,
        cannot_set: Vec::new(),
    };
    for (ty, v) in attrs(b.get(4..)?)? {
        match ty {
            CTA_TUPLE_ORIG => e.original = tuple(v, &mut e.cannot_set)?,
            CTA_TUPLE_REPLY => e.reply = tuple(v, &mut e.cannot_set)?,
            CTA_STATUS => e.status = be32(v)?,
            CTA_TIMEOUT => e.timeout = be32(v)?,
            CTA_MARK => e.mark = be32(v)?,
            CTA_ZONE => e.zone = u16::from_be_bytes(v.get(..2)?.try_into().ok()?),
            CTA_PROTOINFO => protoinfo(v, &mut e)?,
            CTA_HELP => e.cannot_set.push(helper(v)),
            CTA_TUPLE_MASTER => e.cannot_set.push("an expected connection (it has a master)".into()),
            CTA_SEQ_ADJ_ORIG | CTA_SEQ_ADJ_REPLY => e.cannot_set.push("a sequence adjustment".into()),
            CTA_SECCTX => e.cannot_set.push("a security context".into()),
            CTA_LABELS => e.cannot_set.push("labels".into()),
            // Every entry made by ctnetlink gets a synproxy extension, zero when unused.
            CTA_SYNPROXY if attrs(v)?.iter().any(|(_, v)| v.iter().any(|b| *b != 0)) => {
                e.cannot_set.push("synproxy state".into())
            }
            _ => {}
        }
    }
    Some(e)
}

fn empty_tuple() -> Tuple {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    Tuple { src: any, dst: any, proto: 0, src_port: 0, dst_port: 0, icmp: None }
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn tuple(b: &[u8], cannot_set: &mut Vec<String>) -> Option<Tuple> {
    let mut t = empty_tuple();
    let mut icmp = Icmp { id: 0, ty: 0, code: 0 };
    for (ty, v) in attrs(b)? {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, v) in attrs(v)? {
                    let addr = match ty {
                        CTA_IP_V4_SRC | CTA_IP_V4_DST => {
                            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v.get(..4)?).ok()?))
                        }
                        CTA_IP_V6_SRC | CTA_IP_V6_DST => {
                            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v.get(..16)?).ok()?))
                        }
                        _ => continue,
                    };
                    if matches!(ty, CTA_IP_V4_SRC | CTA_IP_V6_SRC) {
                        t.src = addr;
                    } else {
                        t.dst = addr;
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, v) in attrs(v)? {
                    match ty {
                        CTA_PROTO_NUM => t.proto = *v.first()?,
                        CTA_PROTO_SRC_PORT => t.src_port = be16(v)?,
                        CTA_PROTO_DST_PORT => t.dst_port = be16(v)?,
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => icmp.id = be16(v)?,
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => icmp.ty = *v.first()?,
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => icmp.code = *v.first()?,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => cannot_set.push("a zone of one direction".into()),
            _ => {}
        }
    }
    if matches!(t.proto as i32, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) {
        t.icmp = Some(icmp);
    }
    Some(t)
}

fn protoinfo(b: &[u8], e: &mut Entry) -> Option<()> {
    for (ty, v) in attrs(b)? {
        if ty != CTA_PROTOINFO_TCP {
            e.cannot_set.push(format!("protocol state of protocol {}", e.original.proto));
            continue;
        }
        let mut t = TcpInfo::default();
        for (ty, v) in attrs(v)? {
            match ty {
                CTA_PROTOINFO_TCP_STATE => t.state = *v.first()?,
                CTA_PROTOINFO_TCP_WSCALE_ORIGINAL => t.wscale[0] = *v.first()?,
                CTA_PROTOINFO_TCP_WSCALE_REPLY => t.wscale[1] = *v.first()?,
                CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => t.flags[0] = *v.first()?,
                CTA_PROTOINFO_TCP_FLAGS_REPLY => t.flags[1] = *v.first()?,
                _ => {}
            }
        }
        e.tcp = Some(t);
    }
    Some(())
}

fn helper(b: &[u8]) -> String {
    let name = attrs(b)
        .unwrap_or_default()
        .into_iter()
        .find(|(ty, _)| *ty == CTA_HELP_NAME)
        .map(|(_, v)| String::from_utf8_lossy(v.split(|c| *c == 0).next().unwrap_or_default()).into_owned());
    format!("the helper {}", name.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let t = |s: [u8; 4], d: [u8; 4], sp, dp| Tuple {
            src: IpAddr::from(s),
            dst: IpAddr::from(d),
            proto: libc::IPPROTO_TCP as u8,
            src_port: sp,
            dst_port: dp,
            icmp: None,
        };
        Entry {
            family: libc::AF_INET as u8,
            original: t([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80),
            reply: t([10, 0, 0, 2], [192, 0, 2, 1], 80, 1234),
            status: IPS_SRC_NAT | 0xe,
            timeout: 432000,
            mark: 42,
            zone: 3,
            tcp: Some(TcpInfo { state: 3, wscale: [7, 9], flags: [0x23, 0x23] }),
            cannot_set: Vec::new(),
        }
    }

    /// The attributes of a message as the kernel would dump them: our encoding, read back.
    #[test]
    fn an_entry_encoded_parses_back() {
        let mut e = sample();
        e.status = 0xe;
        let mut msg = nfgenmsg(e.family);
        msg.extend(encode(&e).0);
        assert_eq!(parse(&msg), Some(e));
    }

    #[test]
    fn the_nat_mapping_is_the_reply_tuple() {
        let e = sample();
        let encoded = encode(&e);
        let outer = attrs(&encoded.0).unwrap();
        let nat = outer.iter().find(|(t, _)| *t == CTA_NAT_SRC).expect("CTA_NAT_SRC");
        let inner = attrs(nat.1).unwrap();
        assert_eq!(inner[0], (CTA_NAT_V4_MINIP, &[192u8, 0, 2, 1][..]));
        assert!(!outer.iter().any(|(t, _)| *t == CTA_NAT_DST));
    }

    #[test]
    fn a_helper_and_labels_are_named() {
        let mut a = AttrBuf::default();
        a.nest(CTA_HELP, |a| a.put(CTA_HELP_NAME, b"ftp\0"));
        a.put(CTA_LABELS, &[1; 16]);
        let mut msg = nfgenmsg(libc::AF_INET as u8);
        msg.extend(a.0);
        assert_eq!(parse(&msg).unwrap().cannot_set, vec!["the helper ftp".to_string(), "labels".into()]);
    }

    /// On the kernel: an entry made in a new network namespace of a thread of ours is listed
    /// back as made, and a second one with its tuple is refused with `EEXIST`.
    #[test]
    fn an_entry_made_is_listed_back() {
        let got = std::thread::spawn(|| {
            crate::ns::unshare(&[crate::ns::Kind::Net]).expect("unshare(CLONE_NEWNET)");
            let mut e = sample();
            e.status = 0xe; // SEEN_REPLY, ASSURED, CONFIRMED
            e.zone = 0;
            e.reply = Tuple { src: e.original.dst, dst: e.original.src, ..e.reply.clone() };
            e.reply.dst_port = e.original.src_port;
            if let Err(err) = create(&e) {
                return Err(format!("{err}: {}", err.source));
            }
            let again = create(&e).map_err(|err| err.errno());
            Ok((e, dump(libc::AF_INET as u8).expect("dump"), again, dump(libc::AF_INET6 as u8).expect("dump v6")))
        })
        .join()
        .expect("thread");
        let (e, listed, again, v6) = match got {
            Ok(got) => got,
            Err(why) => return eprintln!("skipped: no ctnetlink here ({why})"),
        };
        assert_eq!(listed.len(), 1, "{listed:?}");
        let l = &listed[0];
        assert_eq!((&l.original, &l.reply, l.mark, l.tcp), (&e.original, &e.reply, e.mark, e.tcp));
        assert_eq!(l.status & 0xe, 0xe);
        assert!(l.timeout <= e.timeout && l.timeout + 60 > e.timeout, "timeout {}", l.timeout);
        assert_eq!(again, Err(libc::EEXIST));
        assert!(v6.is_empty());
    }

    /// On the kernel: an IPv6 UDP entry made in a new network namespace is listed back as made.
    #[test]
    fn an_ipv6_entry_made_is_listed_back() {
        let got = std::thread::spawn(|| {
            crate::ns::unshare(&[crate::ns::Kind::Net]).expect("unshare(CLONE_NEWNET)");
            let t = |s: &str, d: &str, sp, dp| Tuple {
                src: s.parse().unwrap(),
                dst: d.parse().unwrap(),
                proto: libc::IPPROTO_UDP as u8,
                src_port: sp,
                dst_port: dp,
                icmp: None,
            };
            let e = Entry {
                family: libc::AF_INET6 as u8,
                original: t("fd00::1", "fd00::2", 5353, 53),
                reply: t("fd00::2", "fd00::1", 53, 5353),
                status: 0xa,
                timeout: 120,
                mark: 7,
                zone: 2,
                tcp: None,
                cannot_set: Vec::new(),
            };
            create(&e).map_err(|err| format!("{err}: {}", err.source))?;
            Ok::<_, String>((e, dump(libc::AF_INET6 as u8).expect("dump"), dump(libc::AF_INET as u8).expect("dump")))
        })
        .join()
        .expect("thread");
        let (e, listed, v4) = match got {
            Ok(got) => got,
            Err(why) => return eprintln!("skipped: no ctnetlink here ({why})"),
        };
        assert_eq!(listed.len(), 1, "{listed:?}");
        let l = &listed[0];
        assert_eq!((&l.original, &l.reply, l.mark, l.zone, l.tcp), (&e.original, &e.reply, 7, 2, None));
        assert!(l.cannot_set.is_empty(), "{:?}", l.cannot_set);
        assert!(v4.is_empty());
    }

    /// On the kernel: an entry with a source NAT mapping made in a new network namespace is listed
    /// back with the same reply tuple and the NAT bit.
    #[test]
    fn a_nat_entry_made_is_listed_back() {
        let got = std::thread::spawn(|| {
            crate::ns::unshare(&[crate::ns::Kind::Net]).expect("unshare(CLONE_NEWNET)");
            let mut e = sample();
            e.status = 0xe | IPS_SRC_NAT;
            e.zone = 0;
            create(&e).map_err(|err| format!("{err}: {}", err.source))?;
            Ok::<_, String>((e, dump(libc::AF_INET as u8).expect("dump")))
        })
        .join()
        .expect("thread");
        let (e, listed) = match got {
            Ok(got) => got,
            Err(why) => return eprintln!("skipped: no ctnetlink or NAT here ({why})"),
        };
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((&listed[0].original, &listed[0].reply), (&e.original, &e.reply));
        assert_eq!(listed[0].status & IPS_SRC_NAT, IPS_SRC_NAT, "status {:#x}", listed[0].status);
    }
}
