//! Restore side: sockets made, bound and connected in the controller ([`Sockets`]), then, once
//! every process exists, their queues, options and shutdown state ([`Unfinished::finish`]).

use super::*;
use crate::error::{Error, Result};
use crate::files::sockopt;
use stasis_image::model::{FileEntry, FileKind, UnixMessage};
use stasis_sys::socket::{self as sock, Creds, SO_PASSPIDFD, SO_PEEK_OFF};
use stasis_sys::SysError;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

const SO_SNDBUFFORCE: i32 = 32;
const SO_RCVBUFFORCE: i32 = 33;

/// A failed step on socket `u`.
fn fail(u: &UnixSocket, what: &str) -> impl FnOnce(SysError) -> Error {
    let path = format!("{}: {what}", describe(u));
    move |e| Error::Io { path: path.into(), source: e.source }
}

fn refuse(u: &UnixSocket, what: String) -> Error {
    Error::Incompatible { file: "files.img".into(), what: format!("{}: {what}", describe(u)) }
}

/// The sockets of the image, made on first use, a connected pair or a listener with its
/// connections at once.
pub struct Sockets<'a> {
    by_ino: HashMap<u64, &'a UnixSocket>,
    made: HashMap<u64, OwnedFd>,
    created: HashSet<u64>,
    ext: bool,
    /// The other end of a connection whose peer was closed, by the socket's inode: it queues the
    /// data again, then is closed.
    orphans: HashMap<u64, OwnedFd>,
    /// Socket files of names whose file was gone at dump: unlinked once the queues are filled
    /// (until then, sockets connect and send to them by path).
    unlink: Vec<PathBuf>,
    /// Sockets handed in with `--inherit-fd`: not made, left as they are.
    inherited: HashSet<u64>,
}

/// What is left to do once every process exists: see [`Unfinished::finish`].
pub struct Unfinished {
    orphans: HashMap<u64, OwnedFd>,
    unlink: Vec<PathBuf>,
    inherited: HashSet<u64>,
}

impl<'a> Sockets<'a> {
    pub fn new(files: &'a [FileEntry], ext: bool) -> Sockets<'a> {
        let by_ino = files
            .iter()
            .filter_map(|f| match &f.kind {
                Some(FileKind::UnixSocket(u)) => Some((u.ino, u)),
                _ => None,
            })
            .collect();
        Sockets {
            by_ino,
            made: HashMap::new(),
            created: HashSet::new(),
            ext,
            orphans: HashMap::new(),
            unlink: Vec::new(),
            inherited: HashSet::new(),
        }
    }

    /// Our fd for socket `u`, with the file status flags (O_NONBLOCK) of its description.
    pub fn open(&mut self, u: &UnixSocket, flags: u32) -> Result<OwnedFd> {
        self.ensure(u.ino)?;
        let fd = self.made.remove(&u.ino).ok_or_else(|| refuse(u, "listed twice in files.img".into()))?;
        let status = (flags & libc::O_NONBLOCK as u32) as i32 | libc::O_RDWR;
        stasis_sys::fd::set_status_flags(fd.as_fd(), status).map_err(fail(u, "setting its file flags"))?;
        Ok(fd)
    }

    /// Socket `ino` is a descriptor handed in (`--inherit-fd`): not made, and left as it is.
    pub fn inherited(&mut self, ino: u64) {
        self.created.insert(ino);
        self.inherited.insert(ino);
    }

    pub fn into_unfinished(self) -> Unfinished {
        Unfinished { orphans: self.orphans, unlink: self.unlink, inherited: self.inherited }
    }

    fn entry(&self, ino: u64) -> Result<&'a UnixSocket> {
        self.by_ino.get(&ino).copied().ok_or_else(|| Error::Incompatible {
            file: "files.img".into(),
            what: format!("unix socket socket:[{ino}] is referred to but not in the image"),
        })
    }

    /// The listener in the image bound to `name`, if any.
    fn listener_named(&self, name: &[u8]) -> Option<&'a UnixSocket> {
        if name.is_empty() {
            return None;
        }
        self.by_ino.values().copied().find(|l| l.state == LISTEN && l.name == name)
    }

    /// The listener in the image that accepted `u`, a connection whose client was closed since
    /// (it has the listener's name).
    fn accepted_by(&self, u: &UnixSocket) -> Option<&'a UnixSocket> {
        let accepted = u.state == ESTABLISHED && connection_oriented(u) && !u.external_peer;
        accepted.then(|| self.listener_named(&u.name)).flatten()
    }

    /// The listener in the image on whose queue `u` waits.
    fn pending_on(&self, u: &UnixSocket) -> Option<&'a UnixSocket> {
        self.by_ino.values().copied().find(|l| l.state == LISTEN && l.icons.contains(&u.ino))
    }

    fn keep(&mut self, u: &UnixSocket, fd: OwnedFd) {
        self.created.insert(u.ino);
        self.made.insert(u.ino, fd);
    }

    /// Make socket `ino` (and what must be made with it) unless made already.
    fn ensure(&mut self, ino: u64) -> Result<()> {
        if self.created.contains(&ino) {
            return Ok(());
        }
        let u = self.entry(ino)?;
        if u.state == LISTEN {
            return self.make_listener(u);
        }
        if let Some(l) = self.pending_on(u) {
            return self.make_listener(l);
        }
        if u.external_peer {
            return self.make_external(u);
        }
        if u.peer == 0 {
            // A connection its listener accepted from a client closed since: made with the listener.
            if let Some(l) = self.accepted_by(u) {
                return self.make_listener(l);
            }
            return self.make_unconnected(u);
        }
        if u.peer == u.ino {
            return self.make_self_connected(u);
        }
        let peer = self.entry(u.peer)?;
        if connection_oriented(u) {
            match self.listener_named(&u.name).or_else(|| self.listener_named(&peer.name)) {
                Some(l) => self.make_listener(l),
                None => match accepted_side(u, peer) {
                    Some((accepted, client)) => self.make_accepted(accepted, Some(client)),
                    None => self.make_pair(u, peer),
                },
            }
        } else if peer.peer == u.ino {
            self.make_pair(u, peer)
        } else {
            self.make_dgram_to(u, peer)
        }
    }

    /// A socket, bound if it was.
    fn new_socket(&mut self, u: &UnixSocket) -> Result<OwnedFd> {
        let fd = sock::unix_socket(u.sock_type as i32).map_err(fail(u, "making it"))?;
        self.bind(u, fd.as_fd())?;
        Ok(fd)
    }

    /// Bind `fd` to `u`'s name (see [`bind_name`]).
    fn bind(&mut self, u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
        if let Some(path) = bind_name(u, fd)? {
            self.unlink.push(path);
        }
        Ok(())
    }

    /// An accepted connection whose listener is not in the image (closed after accepting): a
    /// temporary listener on its name accepts it from `client` (or, for a client that was closed,
    /// from a socket kept until its data is queued), so the name is free again afterwards.
    fn make_accepted(&mut self, s: &UnixSocket, client: Option<&UnixSocket>) -> Result<()> {
        let temp = sock::unix_socket(s.sock_type as i32).map_err(fail(s, "making a listener for it"))?;
        self.bind(s, temp.as_fd())?;
        sock::listen(temp.as_fd(), 1).map_err(fail(s, "listening to accept it"))?;
        let c = match client {
            Some(cl) => self.new_socket(cl)?,
            None => sock::unix_socket(s.sock_type as i32).map_err(fail(s, "making its peer"))?,
        };
        sock::connect(c.as_fd(), &address(s)).map_err(fail(s, "connecting to it"))?;
        let a = sock::accept(temp.as_fd()).map_err(fail(s, "accepting it"))?;
        self.keep(s, a);
        match client {
            Some(cl) => self.keep(cl, c),
            None => drop(self.orphans.insert(s.ino, c)),
        }
        Ok(())
    }

    /// A socket connected to nobody: unconnected, or one whose peer was closed (made as a pair whose
    /// other end queues the data again and is then closed).
    fn make_unconnected(&mut self, u: &UnixSocket) -> Result<()> {
        if u.state == ESTABLISHED && connection_oriented(u) && !u.name.is_empty() {
            return self.make_accepted(u, None);
        }
        if u.state == ESTABLISHED && connection_oriented(u) {
            let (a, b) = sock::unix_socketpair(u.sock_type as i32).map_err(fail(u, "making a socketpair"))?;
            self.orphans.insert(u.ino, b);
            self.keep(u, a);
            return Ok(());
        }
        let fd = self.new_socket(u)?;
        if u.sock_type == SOCK_DGRAM && u.state == ESTABLISHED && !u.peer_name.is_empty() {
            connect_to_closed(u, fd.as_fd())?;
        }
        self.keep(u, fd);
        Ok(())
    }

    /// A datagram socket connected to itself: bound, then connected to its own name.
    fn make_self_connected(&mut self, u: &UnixSocket) -> Result<()> {
        let fd = self.new_socket(u)?;
        if u.name.is_empty() {
            return Err(refuse(u, "connected to itself without a name".into()));
        }
        sock::connect(fd.as_fd(), &address(u)).map_err(fail(u, "connecting it to itself"))?;
        self.keep(u, fd);
        Ok(())
    }

    /// A connected pair (stream or seqpacket, or two datagram sockets connected to each other).
    fn make_pair(&mut self, u: &UnixSocket, peer: &UnixSocket) -> Result<()> {
        let (a, b) = sock::unix_socketpair(u.sock_type as i32).map_err(fail(u, "making a socketpair"))?;
        self.bind(u, a.as_fd())?;
        self.bind(peer, b.as_fd())?;
        self.keep(u, a);
        self.keep(peer, b);
        Ok(())
    }

    /// A datagram socket connected to `peer`, which is not connected back.
    fn make_dgram_to(&mut self, u: &UnixSocket, peer: &UnixSocket) -> Result<()> {
        let fd = self.new_socket(u)?;
        self.keep(u, fd);
        self.ensure(peer.ino)?;
        if peer.name.is_empty() {
            return Err(refuse(u, format!("connected to socket:[{}], which has no name", peer.ino)));
        }
        sock::connect(self.made[&u.ino].as_fd(), &address(peer)).map_err(fail(u, "connecting it to its peer"))
    }

    /// A socket whose peer is outside the image: connected again to the peer's name.
    fn make_external(&mut self, u: &UnixSocket) -> Result<()> {
        let target = show_name(&u.peer_name);
        if !self.ext {
            let what = format!("its peer {target} was outside the dump (restore with --ext-unix-sk to connect to it)");
            return Err(refuse(u, what));
        }
        let fd = self.new_socket(u)?;
        let what = format!("connecting it to {target}, its external peer");
        sock::connect(fd.as_fd(), &u.peer_name).map_err(fail(u, &what))?;
        self.keep(u, fd);
        Ok(())
    }

    /// A listener, the connections it accepted (each client connected, then accepted; a client
    /// closed since is a socket kept until the data is queued again), and the connections waiting
    /// on it, in their order.
    fn make_listener(&mut self, l: &'a UnixSocket) -> Result<()> {
        let fd = self.new_socket(l)?;
        sock::listen(fd.as_fd(), l.backlog as i32).map_err(fail(l, "listening"))?;
        let accepted: Vec<&UnixSocket> = self
            .by_ino
            .values()
            .copied()
            .filter(|s| s.state == ESTABLISHED && connection_oriented(s) && s.name == l.name && !s.external_peer)
            .filter(|s| (s.peer == 0 || self.by_ino.contains_key(&s.peer)) && !self.created.contains(&s.ino))
            .collect();
        for s in accepted {
            let client = if s.peer == 0 { None } else { Some(self.entry(s.peer)?) };
            let c = match client {
                Some(client) => self.new_socket(client)?,
                None => sock::unix_socket(s.sock_type as i32).map_err(fail(s, "making its closed client"))?,
            };
            let who = client.unwrap_or(s);
            sock::connect(c.as_fd(), &address(l)).map_err(fail(who, "connecting it to its listener"))?;
            let a = sock::accept(fd.as_fd()).map_err(fail(s, "accepting it"))?;
            match client {
                Some(client) => self.keep(client, c),
                None => drop(self.orphans.insert(s.ino, c)),
            }
            self.keep(s, a);
        }
        self.keep(l, fd);
        for &c in &l.icons {
            if c == 0 {
                connect_closed_client(l)?;
                continue;
            }
            let client = self.entry(c)?;
            let cfd = self.new_socket(client)?;
            sock::connect(cfd.as_fd(), &address(l)).map_err(fail(client, "connecting it to its listener"))?;
            self.keep(client, cfd);
        }
        Ok(())
    }
}

/// A connection waiting on listener `l` (made and listening) from a client closed since: a client
/// socket connects, then is closed; the connection, once accepted, reads EOF.
fn connect_closed_client(l: &UnixSocket) -> Result<()> {
    let c = sock::unix_socket(l.sock_type as i32).map_err(fail(l, "making the client of a pending connection"))?;
    sock::connect(c.as_fd(), &address(l)).map_err(fail(l, "connecting the closed client of a pending connection"))
}

/// Connect datagram socket `u` to a peer that is then closed, bound to the name its closed peer
/// had, as it was: its next send fails with ECONNREFUSED, then ENOTCONN, and `getpeername` shows
/// that name meanwhile. Left unconnected if the name is taken.
fn connect_to_closed(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
    let name = &u.peer_name;
    if is_path(name) && name[0] != b'/' {
        log::warn!("{}: its closed peer's name {} is a relative path: left unconnected", describe(u), show_name(name));
        return Ok(());
    }
    let peer = sock::unix_socket(libc::SOCK_DGRAM).map_err(fail(u, "making its closed peer"))?;
    let path =
        is_path(name).then(|| PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)));
    if path.as_ref().is_some_and(|p| std::fs::symlink_metadata(p).is_ok()) || sock::bind(peer.as_fd(), name).is_err() {
        log::warn!("{}: the name of its closed peer {} is taken: left unconnected", describe(u), show_name(name));
        return Ok(());
    }
    let connected = sock::connect(fd, name).map_err(fail(u, "connecting it to its closed peer"));
    if let Some(p) = &path {
        std::fs::remove_file(p).map_err(Error::io(p))?;
    }
    connected
}

/// Whether a socket is bound to the socket file at `path`: a datagram socket connecting to it
/// finds one (connected, or refused as of another type) or not (`ECONNREFUSED`: the file is stale).
/// Unlike a stream connect, this leaves a live listener nothing to accept.
fn live(path: &[u8]) -> bool {
    let Ok(probe) = sock::unix_socket(libc::SOCK_DGRAM) else { return true };
    match sock::connect(probe.as_fd(), path) {
        Ok(()) => true,
        Err(e) => e.errno() != libc::ECONNREFUSED,
    }
}

/// Of a connected stream or seqpacket pair without a listener in the image, the side that was
/// accepted (it has its listener's name) and the client: the only named side, or, both named, the
/// one made later (the higher inode: the kernel makes it during the client's connect).
fn accepted_side<'a>(u: &'a UnixSocket, peer: &'a UnixSocket) -> Option<(&'a UnixSocket, &'a UnixSocket)> {
    match (u.name.is_empty(), peer.name.is_empty()) {
        (true, true) => None,
        (false, true) => Some((u, peer)),
        (true, false) => Some((peer, u)),
        (false, false) if u.ino > peer.ino => Some((u, peer)),
        (false, false) => Some((peer, u)),
    }
}

/// Bind `fd` to `u`'s name. A path gets its socket file again (a stale socket file there is
/// replaced; anything else there is an error) with its mode and owner; if the file was gone at
/// dump, its path is returned, to be unlinked once the sockets no longer need it.
fn bind_path(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
    if u.name[0] == b'/' {
        sock::bind(fd, &u.name).map_err(fail(u, "binding it"))
    } else {
        let dir = std::path::Path::new(&u.bind_dir);
        sock::bind_in(dir, fd, &u.name).map_err(fail(u, "binding it in its directory"))
    }
}

/// A socket whose file was gone at dump, where its path names another file now (a FIFO, the file
/// of a socket bound there later) or lies in a directory removed since: the other file is moved
/// aside (the missing directories are made) for the bind, the socket's new file is unlinked at once,
/// and the rest is put back as it was. False, doing nothing, when the path is simply free (the
/// caller binds, and unlinks the file once the queues are filled).
fn bind_where_gone(u: &UnixSocket, fd: BorrowedFd<'_>, path: &std::path::Path) -> Result<bool> {
    let missing: Vec<PathBuf> =
        path.ancestors().skip(1).take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(PathBuf::from).collect();
    let taken = std::fs::symlink_metadata(path).is_ok();
    if missing.is_empty() && !taken {
        return Ok(false);
    }
    if u.sock_type == SOCK_DGRAM && !u.queue.is_empty() {
        let what = format!("messages queued on it while its path {} now names another file", path.display());
        return Err(refuse(u, what));
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d).map_err(Error::io(d))?;
    }
    let aside = taken.then(|| path.with_file_name(format!(".stasis-aside-{}-{}", std::process::id(), u.ino)));
    if let Some(a) = &aside {
        std::fs::rename(path, a).map_err(Error::io(path))?;
    }
    let bound = bind_path(u, fd);
    let unlinked = if bound.is_ok() { std::fs::remove_file(path).map_err(Error::io(path)) } else { Ok(()) };
    let back = aside.as_ref().map_or(Ok(()), |a| std::fs::rename(a, path).map_err(Error::io(path)));
    for d in &missing {
        let _ = std::fs::remove_dir(d);
    }
    bound.and(unlinked).and(back).map(|()| true)
}

fn bind_name(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<Option<PathBuf>> {
    if u.name.is_empty() {
        return Ok(None);
    }
    if !is_path(&u.name) {
        return sock::bind(fd, &u.name).map_err(fail(u, "binding it")).map(|()| None);
    }
    let path = file_path(u);
    if !u.path_present && bind_where_gone(u, fd, &path)? {
        return Ok(None);
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() && live(&address(u)) => {
            return Err(refuse(u, format!("{} is the name of a live socket", path.display())))
        }
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path).map_err(Error::io(&path))?,
        Ok(_) => return Err(refuse(u, format!("{} exists and is not a socket", path.display()))),
        Err(_) => {}
    }
    bind_path(u, fd)?;
    use std::os::unix::fs::PermissionsExt;
    if !u.path_present {
        return Ok(Some(path));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(u.path_mode & 0o7777)).map_err(Error::io(&path))?;
    std::os::unix::fs::lchown(&path, Some(u.path_uid), Some(u.path_gid)).map_err(Error::io(&path))?;
    Ok(None)
}

impl Unfinished {
    /// Once every process exists: queue the messages again (with the files in flight and the
    /// credentials), then set the options and the shutdown state. `opened` holds our fd of every
    /// description of the image.
    pub fn finish(self, files: &[FileEntry], opened: &HashMap<u32, OwnedFd>) -> Result<()> {
        let mut socks: HashMap<u64, (&UnixSocket, BorrowedFd<'_>)> = HashMap::new();
        for f in files {
            if let (Some(FileKind::UnixSocket(u)), Some(fd)) = (&f.kind, opened.get(&f.id)) {
                if self.inherited.contains(&u.ino) {
                    continue;
                }
                socks.insert(u.ino, (u, fd.as_fd()));
            }
        }
        for (u, fd) in socks.values() {
            set_buffers(u, *fd)?;
        }
        for (u, _) in socks.values() {
            let orphan = self.orphans.get(&u.ino).map(|o| o.as_fd());
            for m in &u.queue {
                requeue(u, m, orphan, &socks, opened)?;
            }
        }
        let orphaned: HashSet<u64> = self.orphans.into_keys().collect();
        for path in &self.unlink {
            std::fs::remove_file(path).map_err(Error::io(path))?;
        }
        for (u, fd) in socks.values() {
            set_options(u, *fd)?;
            if !orphaned.contains(&u.ino) {
                shut(u, *fd)?; // an orphan was shut down when its other end was closed
            }
        }
        Ok(())
    }
}

fn set_buffers(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
    let Some(o) = &u.options else { return Ok(()) };
    for (get, force, want) in [(libc::SO_SNDBUF, SO_SNDBUFFORCE, o.sndbuf), (libc::SO_RCVBUF, SO_RCVBUFFORCE, o.rcvbuf)]
    {
        if sock::get_int(fd, libc::SOL_SOCKET, get).map_err(fail(u, "reading its buffer size"))? != want {
            sock::set_int(fd, libc::SOL_SOCKET, force, want / 2).map_err(fail(u, "setting its buffer size"))?;
        }
    }
    Ok(())
}

/// Send message `m` again so that it lands on `u`'s receive queue: from its peer (or the other
/// end kept for a closed peer), from the datagram socket named as its sender, or else from a
/// new unnamed socket.
fn requeue(
    u: &UnixSocket,
    m: &UnixMessage,
    orphan: Option<BorrowedFd<'_>>,
    socks: &HashMap<u64, (&UnixSocket, BorrowedFd<'_>)>,
    opened: &HashMap<u32, OwnedFd>,
) -> Result<()> {
    let mut fds = Vec::with_capacity(m.fds.len());
    for id in &m.fds {
        let f = opened.get(id).ok_or_else(|| refuse(u, format!("a file in flight, id {id}, is not in files.img")))?;
        fds.push(f.as_fd());
    }
    let creds = m.has_creds.then_some(Creds { pid: m.pid, uid: m.uid, gid: m.gid });
    let by_name =
        || socks.values().find(|(s, _)| s.sock_type == SOCK_DGRAM && !s.name.is_empty() && s.name == m.sender);
    let peer = socks.get(&u.peer);
    let temp;
    let target = address(u);
    // `to` is None when the sender is connected to `u`.
    let (from, to): (BorrowedFd<'_>, Option<&[u8]>) = if let Some(o) = orphan {
        (o, None)
    } else if let Some((s, sfd)) = by_name().or(peer.filter(|(p, _)| m.sender.is_empty() || p.name == m.sender)) {
        (*sfd, if s.peer == u.ino { None } else { Some(target.as_slice()) })
    } else {
        temp = stand_in(u, &m.sender)?;
        (temp.as_fd(), Some(target.as_slice()))
    };
    if to.is_some_and(<[u8]>::is_empty) {
        return Err(refuse(u, "a queued message from a sender that cannot reach it (it has no name)".into()));
    }
    let to = to.unwrap_or_default();
    let mut sent = match sock::send(from, &m.data, to, &fds, creds) {
        Err(e) if e.errno() == libc::ESRCH && creds.is_some() => {
            log::warn!(
                "{}: a queued message's sender pid {} is gone: sent without its credentials",
                describe(u),
                m.pid
            );
            sock::send(from, &m.data, to, &fds, None)
        }
        r => r,
    }
    .map_err(fail(u, "queueing its data again"))?;
    // A stream takes a long run in parts when the sender's buffer fills; records go whole.
    while sent < m.data.len() && u.sock_type == SOCK_STREAM {
        let n = sock::send(from, &m.data[sent..], to, &[], creds).map_err(fail(u, "queueing its data again"))?;
        sent += n;
    }
    if sent != m.data.len() {
        return Err(refuse(u, format!("queued {sent} of {} bytes of a message again", m.data.len())));
    }
    Ok(())
}

/// A socket to send a datagram whose sender is not in the image: bound to the sender's name while
/// it is free (a path only if nothing is there, unlinked at once), so the receiver sees the same
/// sender address; unnamed otherwise.
fn stand_in(u: &UnixSocket, sender: &[u8]) -> Result<OwnedFd> {
    let fd = sock::unix_socket(u.sock_type as i32).map_err(fail(u, "making a socket to queue its data"))?;
    if sender.is_empty() {
        return Ok(fd);
    }
    if is_path(sender) && sender[0] != b'/' {
        log::warn!(
            "{}: a queued datagram's sender {} is a relative path: sent unnamed",
            describe(u),
            show_name(sender)
        );
        return Ok(fd);
    }
    let path =
        is_path(sender).then(|| PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(sender)));
    if path.as_ref().is_some_and(|p| std::fs::symlink_metadata(p).is_ok()) {
        log::warn!("{}: a queued datagram's sender {} is taken: sent unnamed", describe(u), show_name(sender));
        return Ok(fd);
    }
    match sock::bind(fd.as_fd(), sender) {
        Ok(()) => {
            if let Some(p) = path {
                std::fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        Err(e) => log::warn!("{}: binding a stand-in for sender {}: {e}: sent unnamed", describe(u), show_name(sender)),
    }
    Ok(fd)
}

fn set_options(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
    let Some(o) = &u.options else { return Ok(()) };
    let err = fail(u, "setting its options");
    let ints = [
        (libc::SO_PASSCRED, o.passcred as i32),
        (SO_PEEK_OFF, o.peek_off),
        (libc::SO_RCVLOWAT, o.rcvlowat),
        (libc::SO_PRIORITY, o.priority),
        (libc::SO_MARK, o.mark as i32),
        (libc::SO_PASSSEC, o.passsec as i32),
        (SO_PASSPIDFD, o.passpidfd as i32),
    ];
    let result = (|| {
        for (opt, want) in ints {
            if sock::get_int(fd, libc::SOL_SOCKET, opt).unwrap_or(want) != want {
                sock::set_int(fd, libc::SOL_SOCKET, opt, want)?;
            }
        }
        for (opt, want) in [(libc::SO_RCVTIMEO, o.rcvtimeo_us), (libc::SO_SNDTIMEO, o.sndtimeo_us)] {
            if sock::get_timeout(fd, opt)? != want {
                sock::set_timeout(fd, opt, want)?;
            }
        }
        Ok(())
    })();
    result.map_err(err)?;
    // The other socket-level options, linger and the rest; the filter last, once the queue is
    // back (it could drop what is queued again).
    let what = describe(u);
    for opt in &o.options {
        sockopt::set_int(fd, opt, &[], &what)?;
    }
    sockopt::set_buffer_lock(fd, &o.options, &what)?;
    if let Some(level) = &o.socket {
        sockopt::restore(level, fd, &what)?;
        sockopt::set_device(level, fd, &what)?;
        sockopt::restore_filter(level, fd, &what)?;
    }
    Ok(())
}

fn shut(u: &UnixSocket, fd: BorrowedFd<'_>) -> Result<()> {
    let how = match (u.shutdown & RCV_SHUTDOWN != 0, u.shutdown & SEND_SHUTDOWN != 0) {
        (true, true) => libc::SHUT_RDWR,
        (true, false) => libc::SHUT_RD,
        (false, true) => libc::SHUT_WR,
        (false, false) => return Ok(()),
    };
    sock::shutdown(fd, how).map_err(fail(u, "shutting it down"))
}

impl crate::files::kinds::Opener for Sockets<'_> {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::UnixSocket(u)) => Some(Sockets::open(self, u, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, f: &FileEntry) {
        if let Some(FileKind::UnixSocket(u)) = &f.kind {
            Sockets::inherited(self, u.ino);
        }
    }

    fn opened(
        self: Box<Self>,
        _: &[FileEntry],
        _: &HashMap<u32, OwnedFd>,
        later: &mut crate::files::kinds::Later,
    ) -> Result<()> {
        later.unfinished.put(self.into_unfinished());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(ino: u64, name: &[u8]) -> UnixSocket {
        UnixSocket { ino, sock_type: SOCK_STREAM, state: ESTABLISHED, name: name.to_vec(), ..Default::default() }
    }

    #[test]
    fn the_accepted_side_has_the_name_or_the_higher_inode() {
        let (a, b) = (sock(10, b""), sock(11, b""));
        assert!(accepted_side(&a, &b).is_none());
        let (a, b) = (sock(10, b"\0srv"), sock(11, b""));
        assert_eq!(accepted_side(&a, &b).map(|(s, c)| (s.ino, c.ino)), Some((10, 11)));
        assert_eq!(accepted_side(&b, &a).map(|(s, c)| (s.ino, c.ino)), Some((10, 11)));
        let (a, b) = (sock(10, b"\0client"), sock(11, b"/run/srv.sock"));
        assert_eq!(accepted_side(&a, &b).map(|(s, c)| (s.ino, c.ino)), Some((11, 10)));
    }

    #[test]
    fn listeners_and_pending_clients_are_found_by_name_and_icons() {
        let mut l = sock(1, b"\0l");
        l.state = LISTEN;
        l.icons = vec![3];
        let files: Vec<FileEntry> = [l, sock(2, b"\0l"), sock(3, b"")]
            .into_iter()
            .enumerate()
            .map(|(i, u)| FileEntry { id: i as u32 + 1, flags: 2, kind: Some(FileKind::UnixSocket(u)), owner: None })
            .collect();
        let s = Sockets::new(&files, false);
        assert_eq!(s.listener_named(b"\0l").map(|l| l.ino), Some(1));
        assert!(s.listener_named(b"").is_none());
        assert_eq!(s.pending_on(&sock(3, b"")).map(|l| l.ino), Some(1));
        assert!(s.pending_on(&sock(2, b"")).is_none());
    }
}
