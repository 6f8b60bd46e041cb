//! UDP and UDP-Lite sockets over IPv4 and IPv6 (dual-stack included): unbound, bound and
//! connected, with their options, shutdown state and the datagrams queued unread.
//!
//! Dump reads the queue without consuming it: with `SO_PEEK_OFF` set on our copy of the socket,
//! each `MSG_PEEK` returns the next datagram and its source; the peek offset is put back as it was.
//! Data written but held back by `UDP_CORK` or `MSG_MORE` (the kernel keeps it in the socket until
//! the datagram is complete) cannot be read back: such a socket is refused by name. The shutdown
//! state comes from `inet_diag` (no `getsockopt` shows it).
//!
//! Restore makes the socket, sets its options, binds it, and queues its datagrams again before it
//! connects (a connected socket takes datagrams from its peer only): each is sent to the socket
//! through a raw socket (`IPPROTO_RAW`, IP header included) with its original source address and
//! port, so that no port needs to be free and the program reads the same sources; the restore
//! waits until each is queued (`SO_MEMINFO`) before it sends the next, and fails naming the
//! socket and the datagram if one is dropped. Then the
//! buffer sizes, the bound device, `connect`, and `shutdown`. What is lost: the datagrams' receive
//! timestamps, TTL and TOS (new ones), and their IP options. A zero-length datagram that was
//! peeked before the dump (by the program, or a dump that failed) is invisible to a walk by peek
//! offset (the kernel skips it, see `__skb_try_recv_from_queue`) and is not saved.

use super::packet;
use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_image::model::Datagram;
use stasis_sys::inet as net;
use stasis_sys::socket as sock;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Most bytes of datagrams one socket may have queued in the image.
const MAX_QUEUED: usize = 16 << 20;
/// A buffer for any datagram (a UDP length field is 16 bits).
const MAX_DATAGRAM: usize = 65536;
/// How long a restore waits for a re-sent datagram to be queued (it crosses the loopback
/// device's backlog, normally within a millisecond).
const REQUEUE_WAIT: Duration = Duration::from_secs(10);
/// How long a dump waits for datagrams being sent to leave the socket before it calls what stays
/// held back (corked).
const CORK_WAIT: Duration = Duration::from_millis(200);

/// A UDP or UDP-Lite socket: `s` holds its family, type, protocol and local address.
pub(super) fn dump(p: &Probe, mut s: InetSocket) -> Result<InetSocket> {
    super::dump::read_peer(p, &mut s, "reading a UDP socket's peer")?;
    super::dump::read_options(p, &mut s)?;
    super::membership::dump(p, &mut s)?;
    refuse_corked(p, &s)?;
    s.shutdown = shutdown_state(p, &s)?;
    s.datagrams = queued(p, &s)?;
    Ok(s)
}

/// Bytes written and held in the socket (`UDP_CORK`, `MSG_MORE`) make the dump fail by name.
fn refuse_corked(p: &Probe, s: &InetSocket) -> Result<()> {
    let deadline = Instant::now() + CORK_WAIT;
    loop {
        let held = net::ioctl_int(p.file, net::SIOCOUTQ).map_err(Error::sys(p.pid.0, "reading SIOCOUTQ"))?;
        if held == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            let what = format!(
                "{}: data written and not sent, held by UDP_CORK or MSG_MORE until its datagram is complete ({held} bytes of send buffer)",
                describe(s)
            );
            return Err(p.unsupported(what));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The socket's `RCV_SHUTDOWN`/`SEND_SHUTDOWN` bits, from `inet_diag`.
fn shutdown_state(p: &Probe, s: &InetSocket) -> Result<u32> {
    let all = stasis_sys::inet_diag::dump_all(s.family as i32, s.protocol as i32)
        .map_err(Error::sys(p.pid.0, "listing UDP sockets (inet_diag)"))?;
    match all.iter().find(|d| u64::from(d.ino) == s.ino) {
        Some(d) => Ok(u32::from(d.shutdown)),
        // An unbound socket is in no hash table, so inet_diag does not list it: taken as not
        // shut down (a program has no reason to shut down a socket it never used).
        None if s.local_port == 0 => Ok(0),
        None => Err(p.unsupported(format!("{}: not listed by inet_diag (another network namespace?)", describe(s)))),
    }
}

/// Every datagram queued on the socket, oldest first, left in the queue.
fn queued(p: &Probe, s: &InetSocket) -> Result<Vec<Datagram>> {
    let all = peek_all(p.file).map_err(Error::sys(p.pid.0, "peeking a UDP socket's queue"))?;
    let mut total = 0;
    let mut out = Vec::with_capacity(all.len());
    for d in all {
        total += d.data.len();
        let Some(from) = d.from.filter(|_| d.len == d.data.len() && total <= MAX_QUEUED) else {
            let what = format!("{}: a queued datagram of {} bytes could not be read whole", describe(s), d.len);
            return Err(p.unsupported(what));
        };
        out.push(Datagram { data: d.data, source_addr: from.ip().to_string(), source_port: from.port() as u32 });
    }
    Ok(out)
}

/// The queue, peeked datagram by datagram from peek offset 0, with the peek offset put back.
fn peek_all(f: BorrowedFd<'_>) -> std::result::Result<Vec<net::Datagram>, stasis_sys::SysError> {
    let was = sock::get_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let walked = loop {
        match net::peek_datagram(f, MAX_DATAGRAM) {
            Ok(Some(d)) if out.len() < MAX_QUEUED => out.push(d),
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF, was)?;
    walked.map(|()| out)
}

/// A UDP socket made again: options, `bind`, its datagrams queued again, buffers, device,
/// `connect`, `shutdown`.
pub(super) fn make(s: &InetSocket) -> Result<OwnedFd> {
    let fd = net::socket(s.family as i32, s.sock_type as i32, s.protocol as i32).map_err(fail(s, "making it"))?;
    let f = fd.as_fd();
    super::restore::set_options(s, f, &[])?;
    let here = local(s).ok_or_else(|| bad(s, "an address that does not parse"))?;
    if here.port() != 0 {
        net::bind(f, &here).map_err(fail(s, "binding it"))?;
    }
    requeue(s, f)?;
    super::restore::set_buffers(s, f)?;
    super::restore::set_device(s, f)?;
    super::membership::restore(s, f)?;
    if s.state == TCP_ESTABLISHED {
        let there = remote(s).ok_or_else(|| bad(s, "a peer address that does not parse"))?;
        net::connect(f, &there).map_err(fail(s, "connecting it"))?;
    }
    for (bit, how) in [(1, libc::SHUT_RD), (2, libc::SHUT_WR)] {
        if s.shutdown & bit != 0 {
            // An unconnected socket is shut down all the same, with ENOTCONN.
            match sock::shutdown(f, how) {
                Err(e) if e.errno() != libc::ENOTCONN => return Err(fail(s, "shutting it down")(e)),
                _ => {}
            }
        }
    }
    super::restore::set_filter(s, f)?;
    Ok(fd)
}

fn fail(s: &InetSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(s));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

fn bad(s: &InetSocket, what: &str) -> Error {
    Error::Incompatible { file: "files.img".into(), what: format!("{}: {what}", describe(s)) }
}

/// Send every datagram of the image to the socket from its source, one at a time, each once the
/// one before is queued (so that they queue in order whichever CPU carries them).
fn requeue(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    if s.datagrams.is_empty() {
        return Ok(());
    }
    let bytes: usize = s.datagrams.iter().map(|d| d.data.len() + 1024).sum();
    let room = (2 * bytes + (1 << 20)).min(i32::MAX as usize / 2) as i32;
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, room).map_err(fail(s, "making room for its datagrams"))?;
    let here = net::address(f, false).ok().flatten().ok_or_else(|| bad(s, "bound to no address"))?;
    let lite = s.protocol == libc::IPPROTO_UDPLITE as u32;
    for (i, d) in s.datagrams.iter().enumerate() {
        let from =
            addr(&d.source_addr, d.source_port).ok_or_else(|| bad(s, "a datagram source that does not parse"))?;
        let what = format!("re-sending datagram {} of {} (from {from})", i + 1, s.datagrams.len());
        let (to, bytes) =
            packet::udp(from, here, lite, &d.data).ok_or_else(|| bad(s, &format!("{what}: mixed families")))?;
        let before = receive_memory(f).map_err(fail(s, "reading SO_MEMINFO"))?;
        packet::send(to, &bytes).map_err(fail(s, &what))?;
        wait_queued(s, f, before, &what)?;
    }
    Ok(())
}

/// Wait until the socket's receive memory grows past `before` (the datagram is queued).
fn wait_queued(s: &InetSocket, f: BorrowedFd<'_>, before: u32, what: &str) -> Result<()> {
    let deadline = Instant::now() + REQUEUE_WAIT;
    while receive_memory(f).map_err(fail(s, "reading SO_MEMINFO"))? <= before {
        if Instant::now() > deadline {
            let why = format!("{what}: it was not queued (dropped by the kernel)");
            return Err(Error::Failed { pid: stasis_sys::Pid(0), what: format!("{}: {why}", describe(s)) });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// `SK_MEMINFO_RMEM_ALLOC` of `SO_MEMINFO`: the memory the receive queue holds.
fn receive_memory(f: BorrowedFd<'_>) -> std::result::Result<u32, stasis_sys::SysError> {
    let b = net::get_bytes(f, libc::SOL_SOCKET, SO_MEMINFO, 4 * 9)?;
    Ok(b.get(..4).map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
}

/// `SO_MEMINFO` (`asm-generic/socket.h`).
const SO_MEMINFO: i32 = 55;
