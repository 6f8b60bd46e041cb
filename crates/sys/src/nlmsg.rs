//! Netlink messages (`netlink(7)`) of any protocol: the header of a request, the receive loop of its
//! replies up to `NLMSG_DONE` (a dump) or the acknowledgement (`NLMSG_ERROR` with 0, a request
//! with `NLM_F_ACK`), and netlink attributes (`struct nlattr`, nested or not) built and walked.
//! [`crate::sock_diag`] and [`crate::conntrack`] build their bodies and parse each reply.
//!
//! # References
//! `netlink(7)`, `linux/netlink.h`.

use crate::{check, SysError};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct nlmsghdr`.
pub(crate) const NLMSG_HDR: usize = 16;
/// `NLA_F_NESTED`, set on the type of an attribute that holds attributes.
const NLA_F_NESTED: u16 = 1 << 15;
/// `NLA_TYPE_MASK`: the type without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = !(3 << 14);
/// The receive buffer: the kernel fills at most this much per datagram of a dump.
const RECV_BUF: usize = 64 << 10;

/// Names for the errors of one kind of request: the request refused and a reply that does not parse.
pub(crate) struct Family {
    pub dump: &'static str,
    pub parse: &'static str,
}

/// Send one request (`ty`, `flags` besides `NLM_F_REQUEST`, then `body`) on `sock` and collect
/// every reply message up to `NLMSG_DONE` or the acknowledgement, each parsed by `parse` (given
/// the message without its netlink header; `None` fails as `EPROTO`). An `NLMSG_ERROR` with an
/// errno fails with it.
pub(crate) fn transact<T>(
    sock: BorrowedFd<'_>,
    (ty, flags): (u16, u16),
    family: &Family,
    body: &[u8],
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Result<Vec<T>, SysError> {
    let req = request(ty, flags, body);
    // SAFETY: `req` is a live buffer of its length.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    check("send(AF_NETLINK)", n as libc::c_long)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        // SAFETY: `buf` is a live buffer of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = check("recv(AF_NETLINK)", n as libc::c_long)? as usize;
        if parse_batch(family, &buf[..n], &parse, &mut out)? {
            return Ok(out);
        }
    }
}

/// The netlink header of a request (`NLM_F_REQUEST` and `flags`), then `body`.
fn request(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut req = Vec::with_capacity(NLMSG_HDR + body.len());
    req.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&ty.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16 | flags).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id
    req.extend_from_slice(body);
    req
}

/// Parse one datagram of netlink messages into `out`; true at the end of the dump or at the
/// acknowledgement.
pub(crate) fn parse_batch<T>(
    family: &Family,
    mut b: &[u8],
    parse: &impl Fn(&[u8]) -> Option<T>,
    out: &mut Vec<T>,
) -> Result<bool, SysError> {
    let bad = || SysError::from_errno(family.parse, libc::EPROTO);
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0).ok_or_else(bad)? as usize;
        let ty = u16_at(b, 4).ok_or_else(bad)?;
        if len < NLMSG_HDR || len > b.len() {
            return Err(bad());
        }
        match ty as i32 {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => match u32_at(b, NLMSG_HDR).ok_or_else(bad)? as i32 {
                0 => return Ok(true),
                errno => return Err(SysError::from_errno(family.dump, -errno)),
            },
            _ => out.push(parse(&b[NLMSG_HDR..len]).ok_or_else(bad)?),
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(false)
}

/// The native-endian `u32` at `at` of `b`.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The native-endian `u16` at `at` of `b`.
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The attributes of `b` as (type without its flags, value); `None` if one runs past the end.
pub(crate) fn attrs(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0)? as usize;
        let ty = u16_at(b, 2)? & NLA_TYPE_MASK;
        out.push((ty, b.get(4..len.max(4))?));
        b = b.get(len.next_multiple_of(4).min(b.len())..)?;
    }
    Some(out)
}

/// Netlink attributes being built, each padded to 4 bytes.
#[derive(Default)]
pub(crate) struct AttrBuf(pub Vec<u8>);

impl AttrBuf {
    /// One attribute of type `ty` holding `value`.
    pub fn put(&mut self, ty: u16, value: &[u8]) {
        self.0.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    /// One attribute of type `ty` (marked nested) holding the attributes `inner` adds.
    pub fn nest(&mut self, ty: u16, inner: impl FnOnce(&mut AttrBuf)) {
        let start = self.0.len();
        self.put(ty | NLA_F_NESTED, &[]);
        inner(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Family = Family { dump: "test dump", parse: "parsing a test reply" };

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_batch_is_parsed_up_to_done() {
        let mut b = msg(20, &7u32.to_ne_bytes());
        b.extend(msg(libc::NLMSG_DONE as u16, &[0; 4]));
        let mut out = Vec::new();
        assert!(parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut out).unwrap());
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn an_error_message_and_a_short_message_fail_and_an_ack_ends() {
        let b = msg(libc::NLMSG_ERROR as u16, &(-libc::EPERM).to_ne_bytes());
        let e = parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut Vec::new()).unwrap_err();
        assert_eq!((e.call, e.errno()), ("test dump", libc::EPERM));
        let mut b = msg(20, &[1]);
        b[0] = 200;
        let e = parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut Vec::new()).unwrap_err();
        assert_eq!((e.call, e.errno()), ("parsing a test reply", libc::EPROTO));
        let b = msg(libc::NLMSG_ERROR as u16, &0i32.to_ne_bytes());
        assert!(parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut Vec::new()).unwrap());
    }

    #[test]
    fn nested_attributes_are_built_and_walked_back() {
        let mut a = AttrBuf::default();
        a.nest(1, |a| {
            a.put(2, &[9]);
            a.put(3, &5u32.to_be_bytes());
        });
        a.put(4, &[]);
        let outer = attrs(&a.0).unwrap();
        assert_eq!(outer.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![1, 4]);
        let inner = attrs(outer[0].1).unwrap();
        assert_eq!(inner, vec![(2, &[9u8][..]), (3, &5u32.to_be_bytes()[..])]);
    }
}
