//! Dump side: a socket's state from `unix_diag` and `getsockopt`, its queue peeked, and the
//! tree-wide check of peers.

use super::*;
use crate::error::{Error, Result};
use crate::files::{adopt, FileIds, Probe};
use stasis_image::model::{FileEntry, FileKind, SocketOptions, UnixMessage};
use stasis_sys::socket::{self as sock, SO_PASSPIDFD, SO_PEEK_OFF};
use stasis_sys::unix_diag::{self, UnixDiag};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Peek buffer for one datagram or record: bigger than any the default limits allow.
const RECORD_BUF: usize = 4 << 20;
/// Most messages a queue may hold (also a bound should the peek offset stop moving).
const MAX_MESSAGES: usize = 1 << 16;
/// Peek buffer for a run of stream bytes.
const STREAM_BUF: usize = 256 << 10;

/// What the socket dump knows of the whole tree.
#[derive(Default)]
pub struct DumpState {
    /// `--ext-unix-sk`: a peer outside the tree is allowed (restore connects to it again by name).
    pub ext: bool,
    /// `--external unix[INODE]`: the sockets allowed a peer outside the tree one by one.
    pub ext_inodes: Vec<u64>,
    /// Every UNIX socket of the namespace by inode, read at the first socket.
    table: Option<HashMap<u32, UnixDiag>>,
    /// (inode, pid, fd) of each socket dumped, for messages.
    owners: Vec<(u64, i32, i32)>,
}

impl DumpState {
    fn table(&mut self, pid: i32) -> Result<&HashMap<u32, UnixDiag>> {
        if self.table.is_none() {
            let all = unix_diag::dump_all().map_err(Error::sys(pid, "listing unix sockets (sock_diag)"))?;
            self.table = Some(all.into_iter().map(|d| (d.ino, d)).collect());
        }
        Ok(self.table.as_ref().expect("just filled"))
    }
}

/// Whether our copy of a socket is `AF_UNIX`.
pub fn is_unix(fd: BorrowedFd<'_>) -> bool {
    sock::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok() == Some(libc::AF_UNIX)
}

pub fn dump(p: &Probe, ids: &mut FileIds) -> Result<FileKind> {
    let ino = p.meta.ino();
    let d = ids.state::<DumpState>().table(p.pid.0)?.get(&(ino as u32)).cloned();
    let d = d.ok_or_else(|| p.unsupported(format!("unix socket socket:[{ino}] that sock_diag does not list")))?;
    let ty = d.ty as u32;
    if ![SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET].contains(&ty) {
        return Err(p.unsupported(format!("unix socket socket:[{ino}] of type {ty}")));
    }
    let mut u = UnixSocket {
        ino,
        sock_type: ty,
        state: d.state as u32,
        name: d.name.clone(),
        peer: d.peer as u64,
        shutdown: d.shutdown as u32,
        ..Default::default()
    };
    u.options = Some(options(p, &describe(&u))?);
    if is_path(&u.name) {
        path_file(p, &mut u, &d)?;
    }
    if u.state == LISTEN {
        u.backlog = d.rqlen.1;
        u.icons = d.icons.iter().map(|&i| i as u64).collect();
    } else if pending_on(ids.state::<DumpState>().table(p.pid.0)?, &d).is_some() && d.rqlen.1 > 0 {
        let what = format!("{}: data written on a connection not yet accepted", describe(&u));
        return Err(p.unsupported(what));
    }
    // A listener queues connections, and a stream or seqpacket socket not connected (never, or
    // not yet) has no queue at all (recvmsg gives EINVAL or ENOTCONN): only the others are read.
    if u.state != LISTEN && (ty == SOCK_DGRAM || u.state == ESTABLISHED) {
        if ty == SOCK_STREAM && sock::has_oob(p.file).map_err(Error::sys(p.pid.0, "peeking for MSG_OOB data"))? {
            return Err(p.unsupported(format!("{}: out-of-band data (MSG_OOB) in its queue", describe(&u))));
        }
        u.queue = queue(p, ids, &u)?;
    }
    if ty == SOCK_DGRAM && u.state == ESTABLISHED && u.peer == 0 {
        // Connected to a socket closed since: the kernel still reports its name.
        u.peer_name = sock::peer_name(p.file).unwrap_or_default();
    }
    ids.state::<DumpState>().owners.push((ino, p.pid.0, p.fd));
    Ok(FileKind::UnixSocket(u))
}

/// The listener on whose accept queue `d` (a client) waits.
fn pending_on<'a>(table: &'a HashMap<u32, UnixDiag>, d: &UnixDiag) -> Option<&'a UnixDiag> {
    if d.state as u32 != ESTABLISHED || d.peer != 0 {
        return None;
    }
    table.values().find(|l| l.state as u32 == LISTEN && l.icons.contains(&d.ino))
}

/// The socket file of a path name: mode and owner, and whether it is still this socket's.
fn path_file(p: &Probe, u: &mut UnixSocket, d: &UnixDiag) -> Result<()> {
    let vfs_ino = d.vfs.map(|(vino, _)| vino as u64);
    if u.name[0] != b'/' {
        // Relative to the directory the binder was in: the process's working directory, if the
        // socket file there is this socket's.
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", p.pid)).ok();
        let file = cwd.as_ref().map(|c| c.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&u.name)));
        let same = file.and_then(|f| std::fs::symlink_metadata(f).ok()).is_some_and(|m| Some(m.ino()) == vfs_ino);
        match cwd {
            Some(c) if same => u.bind_dir = c.to_string_lossy().into_owned(),
            _ => {
                let what = format!("{} bound to a relative path not found in the working directory", describe(u));
                return Err(p.unsupported(what));
            }
        }
    }
    let path = file_path(u);
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        u.path_present = m.file_type().is_socket() && d.vfs.is_some_and(|(vino, _)| vino as u64 == m.ino());
        u.path_mode = m.mode() & 0o7777;
        u.path_uid = m.uid();
        u.path_gid = m.gid();
    }
    Ok(())
}

/// The `SOL_SOCKET` options [`SocketOptions`] has fields of its own for.
pub(super) const OWN_FIELDS: [&str; 6] =
    ["SO_PASSCRED", "SO_PEEK_OFF", "SO_RCVLOWAT", "SO_PRIORITY", "SO_MARK", "SO_PASSSEC"];

fn options(p: &Probe, what: &str) -> Result<SocketOptions> {
    let f = p.file;
    let mut others = Vec::new();
    crate::files::sockopt::read_ints(f, &mut others);
    others.retain(|o| !OWN_FIELDS.contains(&o.name.as_str()));
    let int =
        |opt: i32| sock::get_int(f, libc::SOL_SOCKET, opt).map_err(Error::sys(p.pid.0, "reading a socket option"));
    let timeout = |opt: i32| sock::get_timeout(f, opt).map_err(Error::sys(p.pid.0, "reading a socket timeout"));
    Ok(SocketOptions {
        rcvbuf: int(libc::SO_RCVBUF)?,
        sndbuf: int(libc::SO_SNDBUF)?,
        passcred: int(libc::SO_PASSCRED)? != 0,
        peek_off: int(SO_PEEK_OFF)?,
        rcvtimeo_us: timeout(libc::SO_RCVTIMEO)?,
        sndtimeo_us: timeout(libc::SO_SNDTIMEO)?,
        rcvlowat: int(libc::SO_RCVLOWAT)?,
        priority: int(libc::SO_PRIORITY)?,
        mark: int(libc::SO_MARK)? as u32,
        passsec: int(libc::SO_PASSSEC)? != 0,
        passpidfd: int(SO_PASSPIDFD).unwrap_or(0) != 0,
        options: others,
        socket: Some(crate::files::sockopt::dump(p, what)?),
    })
}

/// The receive queue, left in place: peeked with credentials on and the peek offset stepping, then
/// both options put back as they were.
fn queue(p: &Probe, ids: &mut FileIds, u: &UnixSocket) -> Result<Vec<UnixMessage>> {
    let f = p.file;
    let opts = u.options.as_ref().expect("set before");
    let err = |what: &'static str| Error::sys(p.pid.0, what);
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_PASSCRED, 1).map_err(err("enabling SO_PASSCRED to peek"))?;
    let peeked = sock::set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, 0)
        .map_err(err("setting SO_PEEK_OFF to peek"))
        .and_then(|()| peek_all(p, u));
    let put_back = sock::set_int(f, libc::SOL_SOCKET, SO_PEEK_OFF, opts.peek_off)
        .and_then(|()| sock::set_int(f, libc::SOL_SOCKET, libc::SO_PASSCRED, opts.passcred as i32))
        .map_err(err("restoring SO_PEEK_OFF and SO_PASSCRED after peeking"));
    let peeked = peeked?;
    put_back?;
    let mut out = Vec::with_capacity(peeked.len());
    for m in peeked {
        let mut fds = Vec::with_capacity(m.fds.len());
        for fd in m.fds {
            fds.push(adopt(ids, p.pid, fd).map_err(|e| match e {
                Error::Unsupported { pid, what } if p.fd >= 0 => {
                    Error::UnsupportedFd { pid, fd: p.fd, what: format!("{}: {what}", describe(u)) }
                }
                e => e,
            })?);
        }
        let c = m.creds.filter(|c| c.pid != 0);
        out.push(UnixMessage {
            data: m.data,
            fds,
            has_creds: c.is_some(),
            pid: c.map_or(0, |c| c.pid),
            uid: c.map_or(0, |c| c.uid),
            gid: c.map_or(0, |c| c.gid),
            sender: if u.sock_type == SOCK_DGRAM { m.sender } else { Vec::new() },
        });
    }
    Ok(out)
}

fn peek_all(p: &Probe, u: &UnixSocket) -> Result<Vec<sock::Peeked>> {
    let stream = u.sock_type == SOCK_STREAM;
    let len = if stream { STREAM_BUF } else { RECORD_BUF };
    let mut out = Vec::new();
    while let Some(m) = sock::peek(p.file, len).map_err(Error::sys(p.pid.0, "peeking a socket's queue"))? {
        if m.truncated {
            return Err(p.unsupported(format!("{}: a queued message bigger than {len} bytes", describe(u))));
        }
        let eof = stream || u.shutdown & RCV_SHUTDOWN != 0 || u.sock_type == SOCK_SEQPACKET && u.peer == 0;
        if m.data.is_empty() && m.fds.is_empty() && eof {
            break; // end of stream, not a message
        }
        // A zero-length datagram or record does not move the peek offset, but the kernel marks it
        // peeked and the next peek at the same offset passes it.
        out.push(m);
        if out.len() > MAX_MESSAGES {
            return Err(p.unsupported(format!("{}: more than {MAX_MESSAGES} queued messages", describe(u))));
        }
    }
    Ok(out)
}

/// Tree-wide: every socket's peer is in the image (and every pending connection's client), or, with
/// `--ext-unix-sk`, is marked external to be connected again by name at restore.
pub fn check_peers(files: &mut [FileEntry], ids: &mut FileIds) -> Result<()> {
    let inos: std::collections::HashSet<u64> = sockets(files).map(|u| u.ino).collect();
    let state = ids.state::<DumpState>();
    let (ext_all, ext_inodes) = (state.ext, state.ext_inodes.clone());
    let owners = state.owners.clone();
    let Some(table) = state.table.as_ref() else { return Ok(()) };
    for f in files.iter_mut() {
        let Some(FileKind::UnixSocket(u)) = &mut f.kind else { continue };
        let (pid, fd) = owners.iter().find(|o| o.0 == u.ino).map_or((0, -1), |o| (o.1, o.2));
        let refuse = |what: String| match fd {
            0.. => Error::UnsupportedFd { pid: stasis_sys::Pid(pid), fd, what },
            _ => Error::Unsupported { pid: stasis_sys::Pid(pid), what: format!("a socket in flight: {what}") },
        };
        let me = describe(u);
        for c in u.icons.iter_mut() {
            if *c != 0 && inos.contains(c) {
                continue;
            }
            if *c != 0 && table.contains_key(&(*c as u32)) {
                let what = format!("{me}: a connection waiting to be accepted from socket:[{c}], outside the dump");
                return Err(refuse(what));
            }
            // Closed by its process (the kernel reports inode 0, or one no socket has any more).
            log::warn!(
                "{me}: a connection waiting to be accepted from a client closed since: restored as a connection \
                 that reads EOF (what that client wrote before closing is not visible and is not restored)"
            );
            *c = 0;
        }
        let d = table.get(&(u.ino as u32)).cloned().unwrap_or_default();
        let outside = match pending_on(table, &d) {
            Some(l) if inos.contains(&(l.ino as u64)) => None,
            Some(l) => Some((l.ino as u64, l.name.clone(), "waiting to be accepted by")),
            None if u.peer != 0 && !inos.contains(&u.peer) => {
                let name = table.get(&(u.peer as u32)).map(|p| p.name.clone()).unwrap_or_default();
                Some((u.peer, name, "connected to"))
            }
            None => None,
        };
        let Some((peer, name, how)) = outside else { continue };
        let what = format!("{} {how} socket:[{peer}] ({}) outside the dumped tree", describe(u), show_name(&name));
        if !ext_all && !ext_inodes.contains(&u.ino) {
            let how = format!("--ext-unix-sk or --external unix[{}]", u.ino);
            return Err(refuse(format!("{what} (dump with {how} to connect it again at restore)")));
        }
        if name.is_empty() {
            return Err(refuse(format!("{what}: it has no name to connect to again")));
        }
        if !u.queue.is_empty() {
            return Err(refuse(format!("{what}, with data queued from it")));
        }
        u.external_peer = true;
        u.peer_name = name;
    }
    Ok(())
}

fn sockets(files: &[FileEntry]) -> impl Iterator<Item = &UnixSocket> {
    files.iter().filter_map(|f| match &f.kind {
        Some(FileKind::UnixSocket(u)) => Some(u),
        _ => None,
    })
}
