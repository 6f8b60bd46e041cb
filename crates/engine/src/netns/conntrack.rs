//! The conntrack table of the tree's network namespace (`Namespace.conntrack`): listed at dump by
//! the thread in the namespace (ctnetlink, [`stasis_sys::conntrack`], IPv4 then IPv6, every zone),
//! made again at restore by the thread in the new namespace once its firewall is loaded and before
//! any process of the tree runs (so a restored connection's first packet meets its entry, as
//! `ct state established` rules and `nf_conntrack_tcp_loose` = 0 need).
//!
//! Each entry keeps its tuples, status, the seconds it had left, mark, zone and TCP state (state,
//! window scales, flags), and its NAT mapping (the reply tuple of a TCP or UDP entry with the
//! `SNAT`/`DNAT` bits: made again as a one-address, one-port mapping, from which the kernel derives
//! the same reply tuple). What ctnetlink shows but cannot set back is refused by name: an entry
//! with a helper (and so the expectations a helper makes), labels, a security context, a sequence
//! adjustment, synproxy state, a zone of one direction, the state of a protocol other than TCP
//! (SCTP, DCCP), an entry a flowtable handles, NAT of other protocols. Counters and the start
//! timestamp are not saved (ctnetlink sets neither): a restored entry counts from zero.
//!
//! Without conntrack in the kernel (no `/proc/sys/net/netfilter/nf_conntrack_count`, or ctnetlink
//! absent while the table is empty) there is nothing to save; a table ctnetlink cannot list is
//! refused.

use crate::error::{Error, Result};
use stasis_image::model::{ConntrackEntry, ConntrackTcp, ConntrackTuple};
use stasis_sys::conntrack::{self as ct, Entry, Icmp, TcpInfo, Tuple};
use stasis_sys::Pid;
use std::net::IpAddr;

/// The entry count of the calling thread's network namespace (`None`: no conntrack here).
const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

/// Every conntrack entry of the calling thread's network namespace (`pid`: the tree's root).
pub fn dump(pid: i32) -> Result<Vec<ConntrackEntry>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let entries = match ct::dump(family as u8) {
            Ok(entries) => entries,
            Err(e) => return absent(pid, e),
        };
        for e in entries {
            if e.status & ct::IPS_DYING != 0 || e.timeout == 0 {
                log::info!("pid {pid}: conntrack entry {} is going away: not saved", describe(&e));
                continue;
            }
            check(pid, &e)?;
            out.push(to_image(&e));
        }
    }
    if !out.is_empty() {
        log::info!("pid {pid}: {} conntrack entries in its network namespace", out.len());
    }
    Ok(out)
}

/// ctnetlink failed: nothing to save if conntrack is not there or its table is empty.
fn absent(pid: i32, e: stasis_sys::SysError) -> Result<Vec<ConntrackEntry>> {
    match std::fs::read_to_string(COUNT).map(|c| c.trim().to_string()) {
        Err(_) => {
            log::info!("pid {pid}: no conntrack in this kernel ({e}): no conntrack entry to save");
            Ok(Vec::new())
        }
        Ok(n) if n == "0" => {
            log::info!("pid {pid}: ctnetlink unusable ({e}), the conntrack table empty: nothing to save");
            Ok(Vec::new())
        }
        Ok(n) => {
            let what = format!(
                "{n} conntrack entries in its network namespace that ctnetlink cannot list ({e}: {})",
                e.source
            );
            Err(Error::Unsupported { pid: Pid(pid), what })
        }
    }
}

/// Refuse an entry holding what ctnetlink cannot set back.
fn check(pid: i32, e: &Entry) -> Result<()> {
    let mut held = e.cannot_set.clone();
    if e.status & ct::IPS_OFFLOAD != 0 {
        held.push("a flowtable offload".into());
    }
    let nat_ports = matches!(e.original.proto as i32, libc::IPPROTO_TCP | libc::IPPROTO_UDP);
    if e.status & (ct::IPS_SRC_NAT | ct::IPS_DST_NAT) != 0 && !nat_ports {
        held.push("a NAT mapping of a protocol other than TCP and UDP".into());
    }
    if held.is_empty() {
        return Ok(());
    }
    let what = format!("conntrack entry {} in its network namespace with {}", describe(e), held.join(", "));
    Err(Error::Unsupported { pid: Pid(pid), what })
}

/// `tcp 10.0.0.1:40000 -> 10.0.0.2:80 (reply 10.0.0.2:80 -> 10.0.0.1:40000, zone 3)`.
pub fn describe(e: &Entry) -> String {
    let end = |a: &IpAddr, port: u16, t: &Tuple| match (t.icmp, a) {
        (Some(_), _) => a.to_string(),
        (None, IpAddr::V6(_)) => format!("[{a}]:{port}"),
        (None, IpAddr::V4(_)) => format!("{a}:{port}"),
    };
    let side = |t: &Tuple| {
        let icmp = t.icmp.map(|i| format!(" id {} type {} code {}", i.id, i.ty, i.code)).unwrap_or_default();
        format!("{} -> {}{icmp}", end(&t.src, t.src_port, t), end(&t.dst, t.dst_port, t))
    };
    let zone = if e.zone != 0 { format!(", zone {}", e.zone) } else { String::new() };
    format!("{} {} (reply {}{zone})", proto_name(e.original.proto), side(&e.original), side(&e.reply))
}

fn proto_name(p: u8) -> String {
    match p as i32 {
        libc::IPPROTO_TCP => "tcp".into(),
        libc::IPPROTO_UDP => "udp".into(),
        libc::IPPROTO_UDPLITE => "udplite".into(),
        libc::IPPROTO_ICMP => "icmp".into(),
        libc::IPPROTO_ICMPV6 => "icmpv6".into(),
        n => format!("protocol {n}"),
    }
}

fn to_image(e: &Entry) -> ConntrackEntry {
    let tuple = |t: &Tuple| {
        let i = t.icmp.unwrap_or(Icmp { id: 0, ty: 0, code: 0 });
        ConntrackTuple {
            src: t.src.to_string(),
            dst: t.dst.to_string(),
            protocol: t.proto.into(),
            src_port: t.src_port.into(),
            dst_port: t.dst_port.into(),
            icmp_id: i.id.into(),
            icmp_type: i.ty.into(),
            icmp_code: i.code.into(),
        }
    };
    ConntrackEntry {
        family: e.family.into(),
        original: Some(tuple(&e.original)),
        reply: Some(tuple(&e.reply)),
        status: e.status,
        timeout: e.timeout,
        mark: e.mark,
        zone: e.zone.into(),
        tcp: e.tcp.map(|t| ConntrackTcp {
            state: t.state.into(),
            wscale_original: t.wscale[0].into(),
            wscale_reply: t.wscale[1].into(),
            flags_original: t.flags[0].into(),
            flags_reply: t.flags[1].into(),
        }),
    }
}

/// The entry of the image, checked (the image is untrusted): `None` names the bad field.
fn from_image(c: &ConntrackEntry) -> std::result::Result<Entry, String> {
    let family = match c.family as i32 {
        f @ (libc::AF_INET | libc::AF_INET6) => f as u8,
        f => return Err(format!("family {f}")),
    };
    let tuple = |t: Option<&ConntrackTuple>, which: &str| -> std::result::Result<Tuple, String> {
        let t = t.ok_or(format!("no {which} tuple"))?;
        let addr = |a: &str| a.parse::<IpAddr>().map_err(|_| format!("{which} address {a:?}"));
        let small = |v: u32, what: &str, max: u32| if v <= max { Ok(v) } else { Err(format!("{which} {what} {v}")) };
        let proto = small(t.protocol, "protocol", 255)? as u8;
        let icmp = matches!(proto as i32, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6).then_some(());
        Ok(Tuple {
            src: addr(&t.src)?,
            dst: addr(&t.dst)?,
            proto,
            src_port: small(t.src_port, "source port", 65535)? as u16,
            dst_port: small(t.dst_port, "destination port", 65535)? as u16,
            icmp: icmp
                .map(|()| -> std::result::Result<Icmp, String> {
                    Ok(Icmp {
                        id: small(t.icmp_id, "icmp id", 65535)? as u16,
                        ty: small(t.icmp_type, "icmp type", 255)? as u8,
                        code: small(t.icmp_code, "icmp code", 255)? as u8,
                    })
                })
                .transpose()?,
        })
    };
    let byte = |v: u32, what: &str| u8::try_from(v).map_err(|_| format!("tcp {what} {v}"));
    let tcp = match &c.tcp {
        None => None,
        Some(t) => Some(TcpInfo {
            state: byte(t.state, "state")?,
            wscale: [byte(t.wscale_original, "window scale")?, byte(t.wscale_reply, "window scale")?],
            flags: [byte(t.flags_original, "flags")?, byte(t.flags_reply, "flags")?],
        }),
    };
    Ok(Entry {
        family,
        original: tuple(c.original.as_ref(), "original")?,
        reply: tuple(c.reply.as_ref(), "reply")?,
        status: c.status,
        timeout: c.timeout,
        mark: c.mark,
        zone: u16::try_from(c.zone).map_err(|_| format!("zone {}", c.zone))?,
        tcp,
        cannot_set: Vec::new(),
    })
}

/// Make each entry of `entries` in the calling thread's (new) network namespace.
pub fn restore(pid: i32, entries: &[ConntrackEntry]) -> Result<()> {
    for (i, c) in entries.iter().enumerate() {
        let e = from_image(c).map_err(|what| Error::Incompatible {
            file: "pstree.img".into(),
            what: format!("conntrack entry {i} of the network namespace: bad {what}"),
        })?;
        ct::create(&e).map_err(|err| {
            let what =
                format!("making conntrack entry {} in its network namespace: {err}: {}", describe(&e), err.source);
            Error::Failed { pid: Pid(pid), what }
        })?;
    }
    if !entries.is_empty() {
        log::info!("pid {pid}: {} conntrack entries made in its network namespace", entries.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let t = |s: &str, d: &str, sp, dp| Tuple {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            proto: 6,
            src_port: sp,
            dst_port: dp,
            icmp: None,
        };
        Entry {
            family: libc::AF_INET6 as u8,
            original: t("fd00::1", "fd00::2", 40000, 80),
            reply: t("fd00::2", "fd00::1", 80, 40000),
            status: 0x18e,
            timeout: 431999,
            mark: 42,
            zone: 0,
            tcp: Some(TcpInfo { state: 3, wscale: [7, 7], flags: [0x23, 0x23] }),
            cannot_set: Vec::new(),
        }
    }

    #[test]
    fn an_entry_goes_through_the_image_unchanged() {
        let e = entry();
        assert_eq!(from_image(&to_image(&e)), Ok(e));
    }

    #[test]
    fn a_bad_image_entry_is_named() {
        let mut c = to_image(&entry());
        c.original.as_mut().unwrap().dst_port = 70000;
        assert_eq!(from_image(&c), Err("original destination port 70000".into()));
        c.family = 3;
        assert_eq!(from_image(&c), Err("family 3".into()));
    }

    #[test]
    fn an_entry_is_described_by_its_tuples() {
        assert_eq!(describe(&entry()), "tcp [fd00::1]:40000 -> [fd00::2]:80 (reply [fd00::2]:80 -> [fd00::1]:40000)");
    }

    #[test]
    fn what_ctnetlink_cannot_set_back_is_refused() {
        let mut e = entry();
        e.cannot_set.push("the helper ftp".into());
        e.status |= ct::IPS_DST_NAT;
        assert!(check(1, &e).unwrap_err().to_string().contains("with the helper ftp is not"));
        e.cannot_set.clear();
        assert!(check(1, &e).is_ok());
        e.original.proto = libc::IPPROTO_ICMP as u8;
        let err = check(1, &e).unwrap_err().to_string();
        assert!(err.contains("with a NAT mapping of a protocol other than TCP and UDP"), "{err}");
    }
}
