//! Restore side: every TCP socket made in the controller, listeners and bound sockets before the
//! connections (which bind to a listener's port), each connection in repair mode until
//! [`Unfinished::finish`]; UDP sockets first, by [`super::udp`].

use super::*;
use crate::error::{Error, Result};
use crate::files::sockopt;
use stasis_image::model::{FileEntry, FileKind, TcpConnection};
use stasis_sys::inet::{self as net, RepairWindow};
use stasis_sys::socket as sock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What restore does with established connections (`--tcp-established`, `--tcp-close`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Established {
    /// Restore them (`--tcp-established`).
    pub repair: bool,
    /// Restore them as closed sockets (`--tcp-close`).
    pub close: bool,
}

/// The TCP sockets of an image, made up front, handed out by file id.
pub struct Sockets {
    made: HashMap<u32, OwnedFd>,
}

/// The connections left in repair mode until every process exists.
pub struct Unfinished {
    repaired: Vec<u32>,
}

fn fail(s: &InetSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(s));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

impl Sockets {
    /// Make every TCP socket of `files`: the ones that are not connected first, then the connections.
    pub fn new(files: &[FileEntry], how: Established) -> Result<(Sockets, Unfinished)> {
        let inet = |f: &'_ FileEntry| match &f.kind {
            Some(FileKind::InetSocket(s)) => Some((f.id, s.clone())),
            _ => None,
        };
        let all: Vec<(u32, InetSocket)> = files.iter().filter_map(inet).collect();
        let mut made = HashMap::new();
        let mut repaired = Vec::new();
        for (id, s) in all.iter().filter(|(_, s)| is_udp(s)) {
            made.insert(*id, super::udp::make(s)?);
        }
        for (id, s) in all.iter().filter(|(_, s)| is_raw(s)) {
            made.insert(*id, super::raw::make(s)?);
        }
        for (id, s) in all.iter().filter(|(_, s)| super::ping::is_ping(s)) {
            made.insert(*id, super::ping::make(s)?);
        }
        for (id, s) in all.iter().filter(|(_, s)| is_tcp(s) && !is_connection(s.state)) {
            made.insert(*id, make_unconnected(s)?);
        }
        for (id, s) in all.iter().filter(|(_, s)| is_tcp(s) && is_connection(s.state)) {
            let fd = match (how.repair, how.close) {
                (true, _) => {
                    repaired.push(*id);
                    make_connection(s)?
                }
                (false, true) => make_closed(s)?,
                (false, false) => {
                    return Err(Error::Incompatible {
                        file: "files.img".into(),
                        what: format!(
                            "{}: an established connection (restore with --tcp-established, or --tcp-close)",
                            describe(s)
                        ),
                    })
                }
            };
            made.insert(*id, fd);
        }
        Ok((Sockets { made }, Unfinished { repaired }))
    }

    /// Our fd for the socket of entry `id`, with the file status flags (O_NONBLOCK) of its description.
    pub fn open(&mut self, id: u32, s: &InetSocket, flags: u32) -> Result<OwnedFd> {
        let fd = self.made.remove(&id).ok_or_else(|| Error::Incompatible {
            file: "files.img".into(),
            what: format!("{}: file {id} listed twice", describe(s)),
        })?;
        let status = (flags & libc::O_NONBLOCK as u32) as i32 | libc::O_RDWR;
        stasis_sys::fd::set_status_flags(fd.as_fd(), status).map_err(fail(s, "setting its file flags"))?;
        Ok(fd)
    }
}

fn new_socket(s: &InetSocket) -> Result<OwnedFd> {
    net::socket(s.family as i32, s.sock_type as i32, s.protocol as i32).map_err(fail(s, "making it"))
}

/// An unbound, bound or listening socket: options, then `bind` and `listen`.
fn make_unconnected(s: &InetSocket) -> Result<OwnedFd> {
    let fd = new_socket(s)?;
    set_options(s, fd.as_fd(), &[])?;
    set_device(s, fd.as_fd())?;
    set_buffers(s, fd.as_fd())?;
    if s.local_port != 0 {
        let at = local(s).ok_or_else(|| bad_address(s))?;
        let at = if s.state == TCP_SYN_SENT { bind_address(s, at) } else { at };
        net::bind(fd.as_fd(), &at).map_err(fail(s, "binding it"))?;
    }
    if s.state == TCP_LISTEN {
        sock::listen(fd.as_fd(), s.backlog as i32).map_err(fail(s, "listening"))?;
    }
    if s.state == TCP_SYN_SENT {
        connect_again(s, fd.as_fd())?;
    }
    set_filter(s, fd.as_fd())?;
    Ok(fd)
}

/// A connection that had sent its SYN and heard nothing yet: a new non-blocking `connect` from
/// the same address sends a new SYN (a program blocked in `connect` goes on waiting in the
/// restarted call; one that polls sees the socket become writable).
fn connect_again(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    let there = remote(s).ok_or_else(|| bad_address(s))?;
    stasis_sys::fd::set_status_flags(f, libc::O_RDWR | libc::O_NONBLOCK).map_err(fail(s, "setting O_NONBLOCK"))?;
    match net::connect(f, &there) {
        Err(e) if e.errno() == libc::EINPROGRESS => Ok(()),
        Err(e) => Err(fail(s, "connecting it again")(e)),
        Ok(()) => Ok(()),
    }
}

/// An established connection with `--tcp-close`: a socket with its options, buffer sizes and
/// filter that is not connected (reads and writes fail as on a connection that was closed).
fn make_closed(s: &InetSocket) -> Result<OwnedFd> {
    let fd = new_socket(s)?;
    set_options(s, fd.as_fd(), &[])?;
    set_device(s, fd.as_fd())?;
    set_buffers(s, fd.as_fd())?;
    set_filter(s, fd.as_fd())?;
    log::warn!("{}: restored closed (--tcp-close)", describe(s));
    Ok(fd)
}

fn bad_address(s: &InetSocket) -> Error {
    Error::Incompatible { file: "files.img".into(), what: format!("{}: an address that does not parse", describe(s)) }
}

/// An established connection in repair mode: bound, sequence numbers, `connect` (no packet), TCP
/// options, timestamp clock, queues, window; left in repair mode.
fn make_connection(s: &InetSocket) -> Result<OwnedFd> {
    let t = s.tcp.as_ref().ok_or_else(|| Error::Incompatible {
        file: "files.img".into(),
        what: format!("{}: an established connection without its TCP state", describe(s)),
    })?;
    let (here, there) = (local(s).ok_or_else(|| bad_address(s))?, remote(s).ok_or_else(|| bad_address(s))?);
    let fd = new_socket(s)?;
    let f = fd.as_fd();
    let int = |level, opt, v| sock::set_int(f, level, opt, v);
    int(libc::IPPROTO_TCP, net::TCP_REPAIR, net::TCP_REPAIR_ON).map_err(fail(s, "entering TCP repair mode"))?;
    // Not SO_REUSEADDR: repair mode forces reuse (the listener holds the port) until it ends.
    set_options(s, f, &["SO_REUSEADDR"])?;
    set_device(s, f)?;
    set_buffers(s, f)?;
    net::bind(f, &bind_address(s, here)).map_err(fail(s, "binding it"))?;
    set_seq(f, net::TCP_RECV_QUEUE, t.recv_seq).map_err(fail(s, "setting its receive sequence number"))?;
    set_seq(f, net::TCP_SEND_QUEUE, t.send_seq).map_err(fail(s, "setting its send sequence number"))?;
    // The MSS the connection used: `connect` computes it from TCP_MAXSEG (then cleared again) and
    // the route, TCP_REPAIR_OPTIONS sets the peer's clamp after.
    let user_mss = t.mss.min(MAX_USER_MSS) as i32;
    int(libc::IPPROTO_TCP, libc::TCP_MAXSEG, user_mss).map_err(fail(s, "setting TCP_MAXSEG"))?;
    net::connect(f, &there).map_err(fail(s, "connecting it in repair mode"))?;
    int(libc::IPPROTO_TCP, libc::TCP_MAXSEG, 0).map_err(fail(s, "clearing TCP_MAXSEG"))?;
    let now = net::address(f, false).ok().flatten();
    if now != Some(here) {
        return Err(Error::Failed {
            pid: stasis_sys::Pid(0),
            what: format!("{}: came out bound to {now:?}", describe(s)),
        });
    }
    net::set_repair_options(f, &repair_options(t)).map_err(fail(s, "setting TCP_REPAIR_OPTIONS"))?;
    int(libc::IPPROTO_TCP, net::TCP_TIMESTAMP, t.timestamp as i32).map_err(fail(s, "setting TCP_TIMESTAMP"))?;
    grow_buffers(f, t).map_err(fail(s, "making room for its queues"))?;
    fill(f, net::TCP_RECV_QUEUE, &t.recv_queue).map_err(fail(s, "filling its receive queue"))?;
    let sent = t.send_queue.len().saturating_sub(t.unsent as usize);
    fill(f, net::TCP_SEND_QUEUE, &t.send_queue[..sent]).map_err(fail(s, "filling its send queue"))?;
    // After the queues: the kernel checks the window against the end of the receive queue, which
    // is one short of the dumped rcv_nxt while the peer's FIN is still to come.
    let recv_end = t.recv_seq.wrapping_add(t.recv_queue.len() as u32);
    let at_most_end = |seq: u32| if (seq.wrapping_sub(recv_end) as i32) > 0 { recv_end } else { seq };
    let w = RepairWindow {
        snd_wl1: at_most_end(t.snd_wl1),
        snd_wnd: t.snd_wnd,
        max_window: t.max_window,
        rcv_wnd: t.rcv_wnd,
        rcv_wup: at_most_end(t.rcv_wup),
    };
    net::set_repair_window(f, &w).map_err(fail(s, "setting TCP_REPAIR_WINDOW"))?;
    close_halves(s, t, f, (here, there))?;
    set_filter(s, f)?;
    Ok(fd)
}

/// The FINs of a half-closed connection, in the order they came: the peer's as a packet from it
/// (the socket acknowledges it), ours queued by `shutdown(SHUT_WR)` in repair mode.
fn close_halves(s: &InetSocket, t: &TcpConnection, f: BorrowedFd<'_>, ends: (SocketAddr, SocketAddr)) -> Result<()> {
    let shut = || sock::shutdown(f, libc::SHUT_WR).map_err(fail(s, "queueing its FIN (shutdown in repair mode)"));
    match s.state {
        TCP_CLOSING => {
            shut()?;
            receive_fin(s, t, f, ends, TCP_CLOSING)?;
        }
        st if peer_fin(st) => {
            receive_fin(s, t, f, ends, TCP_CLOSE_WAIT)?;
            if fin_sent(st) {
                shut()?;
            }
        }
        st if fin_sent(st) => shut()?,
        _ => {}
    }
    // FIN-WAIT-2 comes back as FIN-WAIT-1: the peer acknowledges our FIN again when it comes again.
    let want = if s.state == TCP_FIN_WAIT2 { TCP_FIN_WAIT1 } else { s.state };
    let now = net::tcp_info(f).map(|i| u32::from(i.state)).map_err(fail(s, "reading TCP_INFO"))?;
    if now != want {
        let what = format!("{}: came out in state {}, not {}", describe(s), state_name(now), state_name(want));
        return Err(Error::Failed { pid: stasis_sys::Pid(0), what });
    }
    Ok(())
}

/// Send the socket the peer's FIN (at the end of its receive queue, acknowledging nothing new) and
/// wait until it moved to `then`.
fn receive_fin(
    s: &InetSocket,
    t: &TcpConnection,
    f: BorrowedFd<'_>,
    (here, there): (SocketAddr, SocketAddr),
    then: u32,
) -> Result<()> {
    let seq = t.recv_seq.wrapping_add(t.recv_queue.len() as u32);
    let scale = if t.wscale_ok { t.snd_wscale.min(14) } else { 0 };
    let window = (t.snd_wnd >> scale).min(u32::from(u16::MAX)) as u16;
    let (to, bytes) = super::packet::tcp_fin(there, here, seq, t.send_seq, window).ok_or_else(|| bad_address(s))?;
    super::packet::send(to, &bytes).map_err(fail(s, "sending it its peer's FIN"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = net::tcp_info(f).map(|i| u32::from(i.state)).map_err(fail(s, "reading TCP_INFO"))?;
        if now == then {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let what = format!("{}: its peer's FIN was not taken (state {})", describe(s), state_name(now));
            return Err(Error::Failed { pid: stasis_sys::Pid(0), what });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Buffers big enough for both queues while they are filled (the kernel's accounting of the
/// refilled queues is not the original's); [`Unfinished::finish`] puts the dumped sizes back.
fn grow_buffers(f: BorrowedFd<'_>, t: &TcpConnection) -> std::result::Result<(), stasis_sys::SysError> {
    for (len, get, force) in [
        (t.recv_queue.len(), libc::SO_RCVBUF, libc::SO_RCVBUFFORCE),
        (t.send_queue.len(), libc::SO_SNDBUF, libc::SO_SNDBUFFORCE),
    ] {
        let want = (4 * len + (1 << 20)).min(i32::MAX as usize / 2) as i32;
        if sock::get_int(f, libc::SOL_SOCKET, get)? < want {
            sock::set_int(f, libc::SOL_SOCKET, force, want)?;
        }
    }
    Ok(())
}

/// The largest TCP_MAXSEG a program may set (`MAX_TCP_WINDOW`): a connection whose MSS was larger
/// (loopback, where it is half the window) comes back with this one.
const MAX_USER_MSS: u32 = 32767;

/// Where to bind a connection: its address, but for an IPv6 socket that was not IPv6-only, the
/// any address with its port (binding to a specific IPv6 address makes a socket IPv6-only; the
/// route picks the same source address again, which `make_connection` checks).
fn bind_address(s: &InetSocket, here: std::net::SocketAddr) -> std::net::SocketAddr {
    let v6only = s.options.iter().find(|o| o.name == "IPV6_V6ONLY").map_or(1, |o| o.value);
    match here {
        std::net::SocketAddr::V6(a) if v6only == 0 && a.ip().to_ipv4_mapped().is_none() => {
            std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), a.port())
        }
        _ => here,
    }
}

fn set_seq(f: BorrowedFd<'_>, queue: i32, seq: u32) -> std::result::Result<(), stasis_sys::SysError> {
    sock::set_int(f, libc::IPPROTO_TCP, net::TCP_REPAIR_QUEUE, queue)?;
    sock::set_int(f, libc::IPPROTO_TCP, net::TCP_QUEUE_SEQ, seq as i32)
}

/// Bytes into a queue in repair mode: the receive queue as if received, the send queue as if sent
/// and not yet acknowledged.
fn fill(f: BorrowedFd<'_>, queue: i32, data: &[u8]) -> std::result::Result<(), stasis_sys::SysError> {
    sock::set_int(f, libc::IPPROTO_TCP, net::TCP_REPAIR_QUEUE, queue)?;
    // One MSS-sized piece per call keeps each skb small enough for the kernel to take.
    data.chunks(64 << 10).try_for_each(|piece| net::send_all(f, piece))
}

/// The negotiated options as `TCP_REPAIR_OPTIONS` pairs.
fn repair_options(t: &TcpConnection) -> Vec<(u32, u32)> {
    let mut out = vec![(net::TCPOPT_MSS, t.mss)];
    if t.wscale_ok {
        out.push((net::TCPOPT_WINDOW, t.snd_wscale | t.rcv_wscale << 16));
    }
    if t.sack {
        out.push((net::TCPOPT_SACK_PERM, 0));
    }
    if t.timestamps {
        out.push((net::TCPOPT_TIMESTAMP, 0));
    }
    out
}

/// Every recorded option (but those of `except`) that differs from this new socket's value, then
/// linger, timeouts, the options that are not integers and congestion control (not the device:
/// [`set_device`]).
pub(super) fn set_options(s: &InetSocket, f: BorrowedFd<'_>, except: &[&str]) -> Result<()> {
    let what = describe(s);
    let own: Vec<(&str, i32, i32)> = OPTIONS.iter().map(|&(n, l, o, _)| (n, l, o)).collect();
    // SO_PRIORITY last: setting IP_TOS (or IPV6_TCLASS) sets the priority from the TOS.
    let (last, first): (Vec<_>, Vec<_>) = s.options.iter().partition(|o| o.name == "SO_PRIORITY");
    for o in first.into_iter().chain(last).filter(|o| !except.contains(&o.name.as_str())) {
        sockopt::set_int(f, o, &own, &what)?;
    }
    sockopt::restore(&socket_level(s), f, &what)?;
    let text = |level, opt| net::get_bytes(f, level, opt, 64).unwrap_or_default();
    if !s.congestion.is_empty() && !text(libc::IPPROTO_TCP, libc::TCP_CONGESTION).starts_with(s.congestion.as_bytes()) {
        net::set_bytes(f, libc::IPPROTO_TCP, libc::TCP_CONGESTION, s.congestion.as_bytes())
            .map_err(fail(s, "setting TCP_CONGESTION"))?;
    }
    Ok(())
}

/// `SO_BINDTODEVICE`, if the socket had a device.
pub(super) fn set_device(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    sockopt::set_device(&socket_level(s), f, &describe(s))
}

/// The BPF filter and its lock, last.
pub(super) fn set_filter(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    sockopt::restore_filter(&socket_level(s), f, &describe(s))
}

/// `SO_RCVBUF`/`SO_SNDBUF` where they differ from a new socket's (the kernel doubles what is set;
/// the `FORCE` variants pass the system limits, as root), then `SO_BUF_LOCK`.
pub(super) fn set_buffers(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    sockopt::set_buffers(f, s.rcvbuf, s.sndbuf, &s.options, &describe(s))
}

impl Unfinished {
    /// Once every process exists, before any runs: each connection out of repair mode (the kernel
    /// sends a window probe), `SO_REUSEADDR` as it was (repair mode changes it), the bytes that had
    /// never been sent, sent now, and the buffer sizes as dumped.
    pub fn finish(self, files: &[FileEntry], opened: &HashMap<u32, OwnedFd>) -> Result<()> {
        for f in files.iter().filter(|f| self.repaired.contains(&f.id)) {
            let (Some(FileKind::InetSocket(s)), Some(fd)) = (&f.kind, opened.get(&f.id)) else { continue };
            let fd = fd.as_fd();
            sock::set_int(fd, libc::IPPROTO_TCP, net::TCP_REPAIR, net::TCP_REPAIR_OFF)
                .map_err(fail(s, "leaving TCP repair mode"))?;
            let reuse = s.options.iter().find(|o| o.name == "SO_REUSEADDR").map_or(0, |o| o.value);
            sock::set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse).map_err(fail(s, "setting SO_REUSEADDR"))?;
            let Some(t) = &s.tcp else { continue };
            let sent = t.send_queue.len().saturating_sub(t.unsent as usize);
            net::send_all(fd, &t.send_queue[sent..]).map_err(fail(s, "sending the bytes never sent"))?;
            for (want, force) in [(s.rcvbuf, libc::SO_RCVBUFFORCE), (s.sndbuf, libc::SO_SNDBUFFORCE)] {
                sock::set_int(fd, libc::SOL_SOCKET, force, want / 2).map_err(fail(s, "setting its buffer sizes"))?;
            }
            sockopt::set_buffer_lock(fd, &s.options, &describe(s))?;
        }
        Ok(())
    }
}
