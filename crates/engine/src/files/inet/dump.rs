//! Dump side: a TCP socket's addresses, state and options, and an established connection read in
//! repair mode under the network lock; UDP sockets go to [`super::udp`].

use super::*;
use crate::error::{Error, Result};
use crate::files::{FileIds, Probe};
use crate::netlock::{self, Lock};
use stasis_image::model::{FileKind, SockOpt, TcpConnection};
use stasis_sys::inet::{self as net, TcpInfo};
use stasis_sys::socket as sock;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Most bytes one queue of a connection may hold in the image.
const MAX_QUEUE: usize = 16 << 20;

/// What the TCP dump knows of the whole tree: the options, the lock, and the sockets it put in
/// repair mode. Dropped (a failed dump), it removes the lock and takes every socket out of repair
/// mode as it was; [`DumpState::take`] hands both over to a dump that succeeded.
#[derive(Default)]
pub struct DumpState {
    /// `--tcp-established`: established connections are dumped (else refused by name).
    pub tcp_established: bool,
    /// `--skip-in-flight`: connections waiting in a listener's accept queue are dropped.
    pub skip_in_flight: bool,
    pub lock_mode: netlock::Mode,
    /// The root of the dump, for the lock's name.
    pub root: i32,
    held: Held,
    /// The TCP sockets by (network namespace inode, family): one `inet_diag` dump each, at the
    /// first TCP socket there (for TCP-MD5 keys and the handshakes in progress of listeners).
    diag: std::collections::HashMap<(u64, i32), Vec<stasis_sys::inet_diag::InetDiag>>,
}

/// The lock and the repaired sockets of a dump (our copies, with `SO_REUSEADDR` as it was: repair
/// mode changes it). Dropped, it unlocks and takes the sockets out of repair mode.
#[derive(Default)]
pub struct Held {
    lock: Option<Lock>,
    repaired: Vec<(OwnedFd, i32)>,
    /// The listeners (our copies, described), whose accept queues [`Held::recheck`] looks at
    /// again at the end of the dump (but with `--skip-in-flight`).
    listeners: Vec<(OwnedFd, String)>,
}

impl Held {
    /// After a dump that killed the tree: the sockets closed in repair mode (nothing was sent) and
    /// the lock stays until the restore; its table name for the inventory.
    pub fn keep(mut self) -> Option<String> {
        self.repaired.clear();
        self.listeners.clear();
        self.lock.take().map(Lock::keep)
    }

    /// At the end of the dump, before the images are committed: a connection that came into a
    /// listener's accept queue since the listener was dumped (the kernel still takes them while
    /// the tree is frozen) fails the dump by name, as it would have at the listener.
    pub fn recheck(&self, root: i32) -> Result<()> {
        for (fd, what) in &self.listeners {
            let info = net::tcp_info(fd.as_fd()).map_err(Error::sys(root, "reading TCP_INFO of a listener again"))?;
            if info.unacked != 0 {
                let what = format!(
                    "{what}: {} connections not yet accepted that came during the dump (dump with --skip-in-flight to drop them)",
                    info.unacked
                );
                return Err(Error::Unsupported { pid: stasis_sys::Pid(root), what });
            }
        }
        Ok(())
    }

    /// The method and name of the lock (table or chains), if one was made.
    pub fn table(&self) -> Option<(&'static str, &str)> {
        self.lock.as_ref().map(|l| (l.method(), l.table()))
    }

    /// Unlock, then take every socket out of repair mode (the kernel sends a window probe, which
    /// passes now), with its `SO_REUSEADDR` back.
    fn release(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.remove();
        }
        for (fd, reuse) in self.repaired.drain(..) {
            let off = sock::set_int(fd.as_fd(), libc::IPPROTO_TCP, net::TCP_REPAIR, net::TCP_REPAIR_OFF)
                .and_then(|()| sock::set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse));
            if let Err(e) = off {
                log::warn!("taking a socket out of TCP repair mode: {e}");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

impl DumpState {
    /// The lock and the repaired sockets, for the end of the dump.
    pub fn take(&mut self) -> Held {
        std::mem::take(&mut self.held)
    }

    /// Lock `conn` (making the lock at the first connection).
    fn lock(&mut self, conn: &netlock::Conn) -> Result<()> {
        if self.held.lock.is_none() {
            self.held.lock = Lock::new(self.lock_mode, self.root);
        }
        match &mut self.held.lock {
            Some(l) => l.add(conn).map_err(|what| Error::Failed { pid: stasis_sys::Pid(self.root), what }),
            None => Ok(()),
        }
    }
}

/// Whether our copy of a socket is `AF_INET` or `AF_INET6`.
pub fn is_inet(fd: BorrowedFd<'_>) -> bool {
    let domain = sock::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok();
    domain == Some(libc::AF_INET) || domain == Some(libc::AF_INET6)
}

pub fn dump(p: &Probe, ids: &mut FileIds) -> Result<FileKind> {
    let f = p.file;
    let int = |level, opt| sock::get_int(f, level, opt).map_err(Error::sys(p.pid.0, "reading a socket option"));
    let family = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let ty = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let here = net::address(f, false).map_err(Error::sys(p.pid.0, "reading a socket's address"))?;
    let udp = protocol == libc::IPPROTO_UDP || protocol == libc::IPPROTO_UDPLITE;
    let raw = ty == libc::SOCK_RAW;
    let ping = ty == libc::SOCK_DGRAM && (protocol == libc::IPPROTO_ICMP || protocol == libc::IPPROTO_ICMPV6);
    if !(ty == libc::SOCK_STREAM && protocol == libc::IPPROTO_TCP || ty == libc::SOCK_DGRAM && udp || raw || ping) {
        return Err(p.unsupported(other_kind(family, ty, protocol, here, p.meta.ino())));
    }
    let here = here.ok_or_else(|| p.unsupported("an IP socket without an address"))?;
    let mut s = InetSocket {
        ino: p.meta.ino(),
        family: family as u32,
        sock_type: ty as u32,
        protocol: protocol as u32,
        local_addr: here.ip().to_string(),
        local_port: here.port() as u32,
        ..Default::default()
    };
    if raw {
        return super::raw::dump(p, s).map(FileKind::InetSocket);
    }
    if ping {
        return super::ping::dump(p, s).map(FileKind::InetSocket);
    }
    if udp {
        return super::udp::dump(p, s).map(FileKind::InetSocket);
    }
    let info = net::tcp_info(f).map_err(Error::sys(p.pid.0, "reading TCP_INFO"))?;
    s.state = info.state as u32;
    if s.state != TCP_LISTEN && s.state != TCP_CLOSE {
        let there = net::address(f, true).ok().flatten();
        s.remote_addr = there.map(|a| a.ip().to_string()).unwrap_or_default();
        s.remote_port = there.map_or(0, |a| a.port() as u32);
    }
    read_options(p, &mut s)?;
    refuse_extensions(p, ids, &s)?;
    match s.state {
        TCP_LISTEN => listener(p, ids, &mut s, &info)?,
        TCP_CLOSE => {}
        TCP_SYN_SENT => connecting(p, &mut s)?,
        st if is_connection(st) => connection(p, ids, &mut s)?,
        other => {
            let what = format!("{} in state {}", describe(&s), state_name(other));
            return Err(p.unsupported(what));
        }
    }
    Ok(FileKind::InetSocket(s))
}

/// The `IPPROTO_TCP` options `TCP_ULP` and `TCP_AO_INFO` (`linux/tcp.h`).
const TCP_ULP: i32 = 31;
const TCP_AO_INFO: i32 = 40;
/// `struct tcp_ao_info_opt`.
const TCP_AO_INFO_LEN: usize = 48;

/// What a TCP socket can hold that a restore cannot make again, refused by name: an upper layer
/// protocol (`TCP_ULP`: kernel TLS, whose keys and record state stay in the kernel), TCP-MD5 keys
/// (`TCP_MD5SIG`: no `getsockopt` reads them back; `inet_diag` tells how many) and TCP-AO keys
/// (`TCP_AO_ADD_KEY`: their secrets cannot be read back).
fn refuse_extensions(p: &Probe, ids: &mut FileIds, s: &InetSocket) -> Result<()> {
    let f = p.file;
    let ulp = net::get_bytes(f, libc::IPPROTO_TCP, TCP_ULP, 16).map(|b| crate::files::sockopt::c_string(&b));
    if let Ok(name) = ulp.as_deref() {
        if !name.is_empty() {
            let what = format!("{}: an upper layer protocol (TCP_ULP {name:?}, kernel TLS or another)", describe(s));
            return Err(p.unsupported(what));
        }
    }
    match net::get_bytes(f, libc::IPPROTO_TCP, TCP_AO_INFO, TCP_AO_INFO_LEN) {
        Ok(_) => return Err(p.unsupported(format!("{}: TCP-AO keys (TCP_AO_ADD_KEY)", describe(s)))),
        // ENOENT: no keys; ENOPROTOOPT: a kernel without TCP-AO.
        Err(e) if [libc::ENOENT, libc::ENOPROTOOPT, libc::EOPNOTSUPP].contains(&e.errno()) => {}
        Err(e) => return Err(Error::sys(p.pid.0, "reading TCP_AO_INFO")(e)),
    }
    if diag(p, ids, s)?.iter().any(|d| u64::from(d.ino) == s.ino && d.md5_keys != 0) {
        return Err(p.unsupported(format!("{}: TCP-MD5 keys (TCP_MD5SIG)", describe(s))));
    }
    Ok(())
}

/// The TCP sockets of `s`'s network namespace and family, from `inet_diag` (asked once per
/// namespace and family), with their TCP-MD5 key counts.
fn diag<'a>(p: &Probe, ids: &'a mut FileIds, s: &InetSocket) -> Result<&'a [stasis_sys::inet_diag::InetDiag]> {
    let netns = net::socket_netns(p.file).map_err(Error::sys(p.pid.0, "finding a socket's network namespace"))?;
    let ns_ino =
        std::fs::File::from(netns.try_clone().map_err(Error::io(p.link))?).metadata().map_err(Error::io(p.link))?.ino();
    let key = (ns_ino, s.family as i32);
    Ok(match ids.state::<DumpState>().diag.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let own = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
            let within = if own == Some(ns_ino) { None } else { Some(netns.as_fd()) };
            let all = stasis_sys::inet_diag::dump_tcp_with_keys(within, s.family as i32)
                .map_err(Error::sys(p.pid.0, "listing TCP sockets and their MD5 keys (inet_diag)"))?;
            e.insert(all)
        }
    })
}

/// A connect in progress: nothing to save but the addresses (restore connects again); the
/// destination comes from `inet_diag`, `getpeername` does not tell it yet.
fn connecting(p: &Probe, s: &mut InetSocket) -> Result<()> {
    let all = stasis_sys::inet_diag::dump_all(s.family as i32, libc::IPPROTO_TCP)
        .map_err(Error::sys(p.pid.0, "listing TCP sockets (inet_diag)"))?;
    let Some(to) = all.iter().find(|d| u64::from(d.ino) == s.ino).and_then(|d| d.dst) else {
        return Err(p.unsupported(format!("{}: a connect in progress to an unknown address", describe(s))));
    };
    s.remote_addr = to.ip().to_string();
    s.remote_port = u32::from(to.port());
    Ok(())
}

/// `udp socket socket:[N] 0.0.0.0:53`, `raw socket ...`: what is refused, by name.
fn other_kind(family: i32, ty: i32, protocol: i32, at: Option<std::net::SocketAddr>, ino: u64) -> String {
    let kind = match (ty, protocol) {
        (libc::SOCK_STREAM, libc::IPPROTO_MPTCP) => "MPTCP socket",
        (libc::SOCK_STREAM, libc::IPPROTO_SCTP) | (libc::SOCK_SEQPACKET, _) => "SCTP socket",
        _ => "IP socket",
    };
    let v = if family == libc::AF_INET6 { "IPv6 " } else { "" };
    let at = at.map_or(String::new(), |a| format!(" {a}"));
    format!("{v}{kind} socket:[{ino}]{at} (type {ty}, protocol {protocol})")
}

/// Every option of [`OPTIONS`] and of [`crate::files::sockopt`] the socket answers, linger,
/// timeouts, device, filter, congestion control, buffer sizes.
pub(super) fn read_options(p: &Probe, s: &mut InetSocket) -> Result<()> {
    let f = p.file;
    crate::files::sockopt::read_ints(f, &mut s.options);
    for &(name, level, opt, unconnected) in OPTIONS {
        // Multicast options are refused on stream sockets (an accepted one reads the TTL of
        // its SYN as IP_MULTICAST_TTL).
        let multicast = name.contains("MULTICAST");
        if unconnected && is_connection(s.state) || multicast && s.sock_type == libc::SOCK_STREAM as u32 {
            continue;
        }
        if let Ok(value) = sock::get_int(f, level, opt) {
            s.options.push(SockOpt { name: name.into(), value });
        }
    }
    let err = |what| Error::sys(p.pid.0, what);
    put_socket_level(s, crate::files::sockopt::dump(p, &describe(s))?);
    if s.protocol == libc::IPPROTO_TCP as u32 {
        let text = net::get_bytes(f, libc::IPPROTO_TCP, libc::TCP_CONGESTION, 64);
        s.congestion = text.map(|b| crate::files::sockopt::c_string(&b)).map_err(err("reading TCP_CONGESTION"))?;
    }
    s.rcvbuf = sock::get_int(f, libc::SOL_SOCKET, libc::SO_RCVBUF).map_err(err("reading SO_RCVBUF"))?;
    s.sndbuf = sock::get_int(f, libc::SOL_SOCKET, libc::SO_SNDBUF).map_err(err("reading SO_SNDBUF"))?;
    Ok(())
}

/// A listener: its backlog. Connections waiting in its accept queue, and handshakes in progress
/// (`SYN-RECV`: the client may already believe itself connected), cannot be put back by a
/// restore: refused by name, or dropped with `--skip-in-flight`; without it the accept queue is
/// looked at again at the end of the dump ([`Held::recheck`]).
fn listener(p: &Probe, ids: &mut FileIds, s: &mut InetSocket, info: &TcpInfo) -> Result<()> {
    s.backlog = info.sacked;
    let here = local(s);
    let handshakes =
        diag(p, ids, s)?.iter().filter(|d| d.state == TCP_SYN_RECV && in_handshake_with(d.src, here)).count();
    let skip = ids.state::<DumpState>().skip_in_flight;
    if !skip {
        let mine = p.file.try_clone_to_owned().map_err(Error::io(p.link))?;
        ids.state::<DumpState>().held.listeners.push((mine, describe(s)));
    }
    let what = match (info.unacked, handshakes) {
        (0, 0) => return Ok(()),
        (queued, 0) => format!("{}: {queued} connections not yet accepted", describe(s)),
        (queued, n) => {
            format!("{}: {queued} connections not yet accepted and {n} in their handshake (SYN-RECV)", describe(s))
        }
    };
    if !skip {
        return Err(p.unsupported(format!("{what} (dump with --skip-in-flight to drop them)")));
    }
    log::warn!("pid {} fd {}: {what}: dropped (--skip-in-flight), their clients will be reset", p.pid, p.fd);
    Ok(())
}

/// Whether a connection in its handshake whose local end is `src` came to a listener on `here`
/// (a listener on a wildcard address takes any address of its port).
fn in_handshake_with(src: Option<std::net::SocketAddr>, here: Option<std::net::SocketAddr>) -> bool {
    match (src, here) {
        (Some(src), Some(here)) => {
            let v4 = |ip: std::net::IpAddr| match ip {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
                v4 => v4,
            };
            src.port() == here.port() && (here.ip().is_unspecified() || v4(src.ip()) == v4(here.ip()))
        }
        _ => false,
    }
}

/// An established connection: refused without `--tcp-established`; else locked, put in repair mode
/// and read.
fn connection(p: &Probe, ids: &mut FileIds, s: &mut InetSocket) -> Result<()> {
    let (Some(here), Some(there)) = (local(s), remote(s)) else {
        return Err(p.unsupported(format!("{}: no peer address", describe(s))));
    };
    if !ids.state::<DumpState>().tcp_established {
        let state = match s.state {
            TCP_ESTABLISHED => "an established TCP connection".to_string(),
            st => format!("a TCP connection in state {}", state_name(st)),
        };
        return Err(p.unsupported(format!("{state} {here} -> {there} (dump with --tcp-established)")));
    }
    ids.state::<DumpState>().lock(&(here, there))?;
    let f = p.file;
    let reuse = s.options.iter().find(|o| o.name == "SO_REUSEADDR").map_or(0, |o| o.value);
    let mine = f.try_clone_to_owned().map_err(Error::io(p.link))?;
    sock::set_int(f, libc::IPPROTO_TCP, net::TCP_REPAIR, net::TCP_REPAIR_ON)
        .map_err(Error::sys(p.pid.0, "entering TCP repair mode"))?;
    ids.state::<DumpState>().held.repaired.push((mine, reuse));
    // Read again in repair mode: the state may have moved between the lock and the repair.
    let info = net::tcp_info(f).map_err(Error::sys(p.pid.0, "reading TCP_INFO"))?;
    if info.state as u32 != s.state {
        let what = format!("{} in state {} (changed during the dump)", describe(s), state_name(info.state as u32));
        return Err(p.unsupported(what));
    }
    s.tcp = Some(read_connection(p, &info, s)?);
    Ok(())
}

/// Sequence numbers, queues, window, MSS, timestamp clock and options of a socket in repair mode.
fn read_connection(p: &Probe, info: &TcpInfo, s: &InetSocket) -> Result<TcpConnection> {
    let f = p.file;
    let err = |what| Error::sys(p.pid.0, what);
    let inq = net::ioctl_int(f, net::SIOCINQ).map_err(err("reading SIOCINQ"))? as usize;
    let outq = net::ioctl_int(f, net::SIOCOUTQ).map_err(err("reading SIOCOUTQ"))? as usize;
    let unsent = net::ioctl_int(f, net::SIOCOUTQNSD).map_err(err("reading SIOCOUTQNSD"))? as u32;
    if inq > MAX_QUEUE || outq > MAX_QUEUE {
        return Err(p.unsupported(format!("{}: more than {MAX_QUEUE} bytes queued", describe(s))));
    }
    // A FIN sent counts one sequence number in the send queue (SIOCOUTQ, write_seq) until it is
    // acknowledged; one received counts in rcv_nxt (SIOCINQ leaves it out).
    let (fin_sent, fin_acked, peer_fin) = (fin_sent(s.state), s.state == TCP_FIN_WAIT2, peer_fin(s.state));
    let outq = outq.saturating_sub(usize::from(fin_sent && !fin_acked));
    // With our FIN queued every byte goes back as sent (the FIN must follow them).
    let unsent = if fin_sent { 0 } else { unsent };
    let (recv_end, recv_queue) = queue(p, net::TCP_RECV_QUEUE, inq, s)?;
    let (send_end, send_queue) = queue(p, net::TCP_SEND_QUEUE, outq, s)?;
    let (recv_end, send_end) = (recv_end.wrapping_sub(u32::from(peer_fin)), send_end.wrapping_sub(u32::from(fin_sent)));
    let w = net::repair_window(f).map_err(err("reading TCP_REPAIR_WINDOW"))?;
    let int = |opt| sock::get_int(f, libc::IPPROTO_TCP, opt).map_err(err("reading a TCP option"));
    Ok(TcpConnection {
        send_seq: send_end.wrapping_sub(outq as u32),
        recv_seq: recv_end.wrapping_sub(inq as u32),
        send_queue,
        unsent,
        recv_queue,
        mss: int(libc::TCP_MAXSEG)? as u32,
        wscale_ok: info.options & net::TCPI_OPT_WSCALE != 0,
        snd_wscale: info.snd_wscale as u32,
        rcv_wscale: info.rcv_wscale as u32,
        sack: info.options & net::TCPI_OPT_SACK != 0,
        timestamps: info.options & net::TCPI_OPT_TIMESTAMPS != 0,
        timestamp: int(net::TCP_TIMESTAMP)? as u32,
        snd_wl1: w.snd_wl1,
        snd_wnd: w.snd_wnd,
        max_window: w.max_window,
        rcv_wnd: w.rcv_wnd,
        rcv_wup: w.rcv_wup,
    })
}

/// One queue (`TCP_RECV_QUEUE` or `TCP_SEND_QUEUE`) of `len` bytes, peeked: the sequence number
/// after its last byte and its bytes.
fn queue(p: &Probe, which: i32, len: usize, s: &InetSocket) -> Result<(u32, Vec<u8>)> {
    let f = p.file;
    let err = |what| Error::sys(p.pid.0, what);
    sock::set_int(f, libc::IPPROTO_TCP, net::TCP_REPAIR_QUEUE, which).map_err(err("selecting a TCP repair queue"))?;
    let end = sock::get_int(f, libc::IPPROTO_TCP, net::TCP_QUEUE_SEQ).map_err(err("reading TCP_QUEUE_SEQ"))? as u32;
    // A peek offset the program set (SO_PEEK_OFF) would start the peek past the queue's first
    // bytes and move on by what we read: it is off while we peek, then put back as it was.
    let peek_off = sock::get_int(f, libc::SOL_SOCKET, sock::SO_PEEK_OFF).map_err(err("reading SO_PEEK_OFF"))?;
    if peek_off >= 0 {
        sock::set_int(f, libc::SOL_SOCKET, sock::SO_PEEK_OFF, -1).map_err(err("setting SO_PEEK_OFF off to peek"))?;
    }
    let data = net::peek(f, len).map_err(err("peeking a TCP queue"));
    if peek_off >= 0 {
        sock::set_int(f, libc::SOL_SOCKET, sock::SO_PEEK_OFF, peek_off).map_err(err("putting SO_PEEK_OFF back"))?;
    }
    let data = data?;
    if data.len() != len {
        let name = if which == net::TCP_RECV_QUEUE { "receive" } else { "send" };
        let what = format!("{}: {} of the {len} bytes of its {name} queue could be read", describe(s), data.len());
        return Err(p.unsupported(what));
    }
    Ok((end, data))
}

/// The peer of a datagram or raw socket, if it is connected: `s` becomes established with its
/// remote address, or closed (`ENOTCONN`); `what` names the read in an error.
pub(super) fn read_peer(p: &Probe, s: &mut InetSocket, what: &'static str) -> Result<()> {
    match net::address(p.file, true) {
        Ok(Some(peer)) => {
            s.state = TCP_ESTABLISHED;
            s.remote_addr = peer.ip().to_string();
            s.remote_port = peer.port() as u32;
        }
        Ok(None) => return Err(p.unsupported(format!("{}: a peer of an unknown family", describe(s)))),
        Err(e) if e.errno() == libc::ENOTCONN => s.state = TCP_CLOSE,
        Err(e) => return Err(Error::sys(p.pid.0, what)(e)),
    }
    Ok(())
}
