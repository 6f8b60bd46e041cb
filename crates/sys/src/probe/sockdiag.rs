//! Probe of `NETLINK_SOCK_DIAG`: a dump request that matches no socket, for unix and for TCP.

use std::fs::File;
use std::io::{self, Read, Write};

use super::{own, sys, Probed};

/// `SOCK_DIAG_BY_FAMILY` (include/uapi/linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Opens a `NETLINK_SOCK_DIAG` socket and sends a dump request that matches no socket (state set
/// 0) for unix and for TCP sockets: the family's module answers with `NLMSG_DONE`.
pub(super) fn probe_sock_diag() -> Probed {
    let flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: integer arguments only; the result is a new fd.
    let ret = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_SOCK_DIAG) };
    let mut sock = match sys(ret.into()) {
        Ok(fd) => File::from(own(fd)),
        Err(e) => return Probed::failed("socket(NETLINK_SOCK_DIAG)", e),
    };
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    let mut unix_req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    unix_req.resize(24, 0);
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, struct inet_diag_sockid (48).
    let mut tcp_req = vec![libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0];
    tcp_req.resize(56, 0);
    let unix = diag_answers(&mut sock, 1, &unix_req);
    let tcp = diag_answers(&mut sock, 2, &tcp_req);
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => e.clone(),
    };
    let detail = format!("unix: {}, tcp: {}", show(&unix), show(&tcp));
    if unix.is_ok() && tcp.is_ok() {
        Probed::yes(detail)
    } else {
        Probed::no(detail)
    }
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request and reads the first answer.
fn diag_answers(sock: &mut File, seq: u32, req: &[u8]) -> Result<(), String> {
    let len = 16 + req.len() as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend(len.to_ne_bytes());
    msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend(flags.to_ne_bytes());
    msg.extend(seq.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    msg.extend(req);
    sock.write_all(&msg).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = sock.read(&mut buf).map_err(|e| format!("receive: {e}"))?;
    let word = |at: usize| buf.get(at..at + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4")));
    let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match kind {
        _ if n < 16 => Err(format!("short answer of {n} bytes")),
        Some(t) if t == libc::NLMSG_DONE as u16 => Ok(()),
        Some(t) if t == libc::NLMSG_ERROR as u16 => {
            let code = word(16).map_or(0, |w| w as i32);
            Err(io::Error::from_raw_os_error(-code).to_string())
        }
        Some(t) => Err(format!("unexpected message type {t}")),
        None => Err("no answer".to_string()),
    }
}
