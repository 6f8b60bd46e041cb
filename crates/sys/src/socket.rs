//! UNIX domain socket system calls: making, binding and connecting sockets, their options, and
//! messages with ancillary data (`SCM_RIGHTS`, `SCM_CREDENTIALS`), peeked or sent.
//!
//! An address is the bytes of `sun_path` as the kernel reports them: empty for an unnamed socket,
//! starting with a NUL byte for an abstract name (`unix(7)`).

use crate::{check, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most fds one `SCM_RIGHTS` message carries (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// `SO_BUF_LOCK` (Linux 5.14): which of the buffer sizes are fixed by the program (1: send,
/// 2: receive); the kernel tunes the others.
pub const SO_BUF_LOCK: i32 = 72;

/// `SO_PEEK_OFF` (not in every libc).
pub const SO_PEEK_OFF: i32 = 42;
/// `SO_PASSPIDFD`.
pub const SO_PASSPIDFD: i32 = 76;

/// `socket(2)`: a new `AF_UNIX` socket of `ty` (`SOCK_STREAM`, ...), close-on-exec.
pub fn unix_socket(ty: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    let fd = check("socket", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `socketpair(2)`: two connected `AF_UNIX` sockets of `ty`, close-on-exec.
pub fn unix_socketpair(ty: i32) -> Result<(OwnedFd, OwnedFd), SysError> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let ret = unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    check("socketpair", ret as libc::c_long)?;
    // SAFETY: the kernel just returned these fds to us; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A `sockaddr_un` holding `name` and its length, or EINVAL if the name does not fit.
fn sockaddr(call: &'static str, name: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), SysError> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > addr.sun_path.len() {
        return Err(SysError::from_errno(call, libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((addr, len as libc::socklen_t))
}

/// `bind(2)` to the address `name` (see the module doc).
pub fn bind(fd: BorrowedFd<'_>, name: &[u8]) -> Result<(), SysError> {
    let (addr, len) = sockaddr("bind", name)?;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    check("bind", ret as libc::c_long).map(drop)
}

/// `bind(2)` to the relative path `name` resolved in directory `dir`: the process's working
/// directory is `dir` for the call (`fchdir(2)`) and is put back after. The working directory is
/// shared by every thread of the process: call this only while no other thread uses relative paths.
pub fn bind_in(dir: &std::path::Path, fd: BorrowedFd<'_>, name: &[u8]) -> Result<(), SysError> {
    let open_dir = |path: &std::path::Path| -> Result<OwnedFd, SysError> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| SysError::from_errno("open", libc::EINVAL))?;
        // SAFETY: `c` is a live NUL-terminated string; flags are plain integers.
        let ret = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        let fd = check("open", ret as libc::c_long)?;
        // SAFETY: the kernel just returned this fd to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    let here = open_dir(std::path::Path::new("."))?;
    let there = open_dir(dir)?;
    // SAFETY: plain integer argument on an open directory fd.
    check("fchdir", unsafe { libc::fchdir(there.as_raw_fd()) } as libc::c_long)?;
    let bound = bind(fd, name);
    // SAFETY: as above.
    check("fchdir", unsafe { libc::fchdir(here.as_raw_fd()) } as libc::c_long)?;
    bound
}

/// `connect(2)` to the address `name`.
pub fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> Result<(), SysError> {
    let (addr, len) = sockaddr("connect", name)?;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) };
    check("connect", ret as libc::c_long).map(drop)
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    check("listen", ret as libc::c_long).map(drop)
}

/// `accept4(2)` with `SOCK_CLOEXEC`.
pub fn accept(fd: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    // SAFETY: null address pointers are allowed; plain integer flags.
    let ret = unsafe { libc::accept4(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    let fd = check("accept4", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `shutdown(2)` with `how` (`SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`).
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::shutdown(fd.as_raw_fd(), how) };
    check("shutdown", ret as libc::c_long).map(drop)
}

/// `getsockopt(2)` of an `int` option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32, SysError> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the kernel to write an int and its size.
    let ret = unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    check("getsockopt", ret as libc::c_long).map(|_| v)
}

/// `SO_RCVBUF` and `SO_SNDBUF` back to `rcvbuf` and `sndbuf` as `getsockopt` reported them: the
/// kernel doubles what is set, so half goes in, through the `FORCE` variants that pass the system
/// limits (as root). A size of 0 (not saved), or one the socket has already, is left alone.
pub fn set_buffer_sizes(fd: BorrowedFd<'_>, rcvbuf: i32, sndbuf: i32) -> Result<(), SysError> {
    for (want, get, force) in
        [(rcvbuf, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE), (sndbuf, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE)]
    {
        if want != 0 && get_int(fd, libc::SOL_SOCKET, get).ok() != Some(want) {
            set_int(fd, libc::SOL_SOCKET, force, want / 2)?;
        }
    }
    Ok(())
}

/// `setsockopt(2)` of an `int` option.
pub fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> Result<(), SysError> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a valid int of `len` bytes for the kernel to read.
    let ret = unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (&v as *const libc::c_int).cast(), len) };
    check("setsockopt", ret as libc::c_long).map(drop)
}

/// `getsockopt(2)` of a `struct timeval` option (`SO_RCVTIMEO`, `SO_SNDTIMEO`), in microseconds.
pub fn get_timeout(fd: BorrowedFd<'_>, opt: i32) -> Result<u64, SysError> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid for the kernel to write a timeval and its size.
    let ret = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&mut tv as *mut libc::timeval).cast(), &mut len)
    };
    check("getsockopt", ret as libc::c_long)?;
    Ok(tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64)
}

/// `setsockopt(2)` of a `struct timeval` option, from microseconds.
pub fn set_timeout(fd: BorrowedFd<'_>, opt: i32, micros: u64) -> Result<(), SysError> {
    let tv = libc::timeval { tv_sec: (micros / 1_000_000) as libc::time_t, tv_usec: (micros % 1_000_000) as _ };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` is a valid timeval of `len` bytes for the kernel to read.
    let ret =
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&tv as *const libc::timeval).cast(), len) };
    check("setsockopt", ret as libc::c_long).map(drop)
}

/// `getsockname(2)`: the address as the kernel reports it.
pub fn local_name(fd: BorrowedFd<'_>) -> Result<Vec<u8>, SysError> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for the kernel to write an address and its size.
    let ret = unsafe { libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    check("getsockname", ret as libc::c_long)?;
    Ok(name_of(&addr, len))
}

/// `getpeername(2)`: the peer's address as the kernel reports it (also for a datagram peer that
/// has been closed since).
pub fn peer_name(fd: BorrowedFd<'_>) -> Result<Vec<u8>, SysError> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for the kernel to write an address and its size.
    let ret = unsafe { libc::getpeername(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    check("getpeername", ret as libc::c_long)?;
    Ok(name_of(&addr, len))
}

fn name_of(addr: &libc::sockaddr_un, len: libc::socklen_t) -> Vec<u8> {
    let n = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>()).min(addr.sun_path.len());
    let mut name: Vec<u8> = addr.sun_path[..n].iter().map(|&c| c as u8).collect();
    if name.first().is_some_and(|&c| c != 0) {
        // A path name may carry its terminating NUL.
        if let Some(end) = name.iter().position(|&c| c == 0) {
            name.truncate(end);
        }
    }
    name
}

/// Credentials attached to a message (`SCM_CREDENTIALS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creds {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One message peeked from a socket's receive queue.
#[derive(Debug)]
pub struct Peeked {
    pub data: Vec<u8>,
    /// Our copies of the files in flight with it.
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Creds>,
    /// The sender's address (datagram sockets).
    pub sender: Vec<u8>,
    /// The message did not fit the buffer (`MSG_TRUNC`) or its fds did not (`MSG_CTRUNC`).
    pub truncated: bool,
}

const CMSG_SPACE: usize = 4096;

/// `recvmsg(2)` with `MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC` into a buffer of `len` bytes:
/// the message at the socket's peek offset, left in the queue. `None` when the queue is empty.
pub fn peek(fd: BorrowedFd<'_>, len: usize) -> Result<Option<Peeked>, SysError> {
    let mut data = vec![0u8; len];
    let mut control = [0u64; CMSG_SPACE / 8];
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: len };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    match check("recvmsg", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EAGAIN => return Ok(None),
        Err(e) => return Err(e),
        Ok(n) => data.truncate(n as usize),
    }
    let truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    let (fds, creds) = control_messages(&msg);
    Ok(Some(Peeked { data, fds, creds, sender: name_of(&addr, msg.msg_namelen), truncated }))
}

/// `recvmsg(2)` with `MSG_CMSG_CLOEXEC`, blocking: one message of at most `len` bytes and the
/// fds in flight with it. An empty message with no fds means the peer closed its end.
pub fn recv(fd: BorrowedFd<'_>, len: usize) -> Result<(Vec<u8>, Vec<OwnedFd>), SysError> {
    let mut data = vec![0u8; len];
    let mut control = [0u64; CMSG_SPACE / 8];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: len };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    let n = check("recvmsg", ret as libc::c_long)?;
    data.truncate(n as usize);
    let (fds, _) = control_messages(&msg);
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(SysError::from_errno("recvmsg", libc::EMSGSIZE));
    }
    Ok((data, fds))
}

/// `recvmsg(2)` with `MSG_CMSG_CLOEXEC`, blocking: one message into `buf` and the fds in flight
/// with it. Returns the bytes received (0: the peer closed).
pub fn recv_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), SysError> {
    let mut control = [0u64; CMSG_SPACE / 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    let n = check("recvmsg", ret as libc::c_long)?;
    Ok((n as usize, control_messages(&msg).0))
}

/// The fds and credentials of a received message's control data.
fn control_messages(msg: &libc::msghdr) -> (Vec<OwnedFd>, Option<Creds>) {
    let mut fds = Vec::new();
    let mut creds = None;
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk its control buffer within
    // msg_controllen, and each header's data is read within its cmsg_len.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let h = &*c;
            let payload = h.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                let p = libc::CMSG_DATA(c) as *const RawFd;
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    // The kernel installed these fds for us: we own them now.
                    fds.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                }
            } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
                let u = (libc::CMSG_DATA(c) as *const libc::ucred).read_unaligned();
                creds = Some(Creds { pid: u.pid, uid: u.uid, gid: u.gid });
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (fds, creds)
}

/// `sendmsg(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`: `data` to `to` (or the connected peer when
/// empty), with `fds` in flight and `creds`. Returns the bytes sent.
pub fn send(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: &[u8],
    fds: &[BorrowedFd<'_>],
    creds: Option<Creds>,
) -> Result<usize, SysError> {
    send_with(fd, (data, to), fds, creds, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// `sendmsg(2)` of one message to the connected peer with `fds` in flight, blocking until it is
/// queued (`MSG_NOSIGNAL`: a closed peer is `EPIPE`, not a signal). For `SOCK_SEQPACKET`, one
/// message is one record.
pub fn send_message(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize, SysError> {
    send_with(fd, (data, &[]), fds, None, libc::MSG_NOSIGNAL)
}

/// One message received: its bytes and the fds in flight with it.
pub type Message = (Vec<u8>, Vec<OwnedFd>);

/// `recvmsg(2)` of one message (blocking, `MSG_CMSG_CLOEXEC`) of at most `max` bytes, with the
/// fds in flight with it. `None` when the peer has closed (a zero-length read); a message longer
/// than `max` is `EMSGSIZE` (and dropped, as `SOCK_SEQPACKET` drops the rest of a record).
pub fn recv_message(fd: BorrowedFd<'_>, max: usize) -> Result<Option<Message>, SysError> {
    let mut data = vec![0u8; max];
    let mut control = [0u64; CMSG_SPACE / 8];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: max };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE;
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    let n = check("recvmsg", ret as libc::c_long)? as usize;
    let (fds, _) = control_messages(&msg);
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(SysError::from_errno("recvmsg", libc::EMSGSIZE));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    data.truncate(n);
    Ok(Some((data, fds)))
}

/// `getsockopt(SO_PEERCRED)`: the pid, uid and gid of the peer of a connected socket (for a
/// socketpair, of the process that made it).
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<Creds, SysError> {
    // SAFETY: ucred is plain data; all zeroes is a valid value.
    let mut u: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `u` is a live ucred of `len` bytes for the kernel to fill.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut u as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    check("getsockopt(SO_PEERCRED)", ret as libc::c_long)?;
    Ok(Creds { pid: u.pid, uid: u.uid, gid: u.gid })
}

fn send_with(
    fd: BorrowedFd<'_>,
    (data, to): (&[u8], &[u8]),
    fds: &[BorrowedFd<'_>],
    creds: Option<Creds>,
    flags: i32,
) -> Result<usize, SysError> {
    if fds.len() > MAX_FDS {
        return Err(SysError::from_errno("sendmsg", libc::ETOOMANYREFS));
    }
    let mut control = [0u64; CMSG_SPACE / 8];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let addr = if to.is_empty() { None } else { Some(sockaddr("sendmsg", to)?) };
    if let Some((a, len)) = &addr {
        msg.msg_name = (a as *const libc::sockaddr_un as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let fd_bytes = std::mem::size_of_val(raw.as_slice()) as u32;
    let cred_bytes = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: CMSG_SPACE is a pure computation on lengths.
    let need = unsafe {
        (if raw.is_empty() { 0 } else { libc::CMSG_SPACE(fd_bytes) })
            + (if creds.is_some() { libc::CMSG_SPACE(cred_bytes) } else { 0 })
    } as usize;
    if need > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = need;
    }
    // SAFETY: the control buffer holds `need` bytes, enough for the headers written below; each
    // header's data is written within its CMSG_LEN.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        if !raw.is_empty() {
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c) as *mut RawFd, raw.len());
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if let Some(cr) = creds {
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_CREDENTIALS;
            (*c).cmsg_len = libc::CMSG_LEN(cred_bytes) as usize;
            let u = libc::ucred { pid: cr.pid, uid: cr.uid, gid: cr.gid };
            (libc::CMSG_DATA(c) as *mut libc::ucred).write_unaligned(u);
        }
    }
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    check("sendmsg", ret as libc::c_long).map(|n| n as usize)
}

/// `recv(2)` with `MSG_OOB | MSG_PEEK | MSG_DONTWAIT`: whether a stream socket holds an
/// out-of-band byte (`EINVAL` when it holds none, or with `SO_OOBINLINE`, or without
/// `CONFIG_AF_UNIX_OOB`), left in place.
pub fn has_oob(fd: BorrowedFd<'_>) -> Result<bool, SysError> {
    let mut byte = 0u8;
    let flags = libc::MSG_OOB | libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: `byte` is a live one-byte buffer.
    let ret = unsafe { libc::recv(fd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, flags) };
    match check("recv(MSG_OOB)", ret as libc::c_long) {
        Ok(n) => Ok(n > 0),
        Err(e) if [libc::EINVAL, libc::EAGAIN, libc::EOPNOTSUPP].contains(&e.errno()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `getsockopt(SO_GET_FILTER)`: the classic BPF program attached with `SO_ATTACH_FILTER`, 8 bytes
/// per instruction (`struct sock_filter`); empty if none. Fails with `EACCES` for an eBPF program
/// (`SO_ATTACH_BPF`), which has no classic form to read back. The option length is counted in
/// instructions (`sk_get_filter`).
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<u8>, SysError> {
    let mut count: libc::socklen_t = 0;
    // SAFETY: a zero length asks for the instruction count only; nothing is written to the buffer.
    let ret = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, std::ptr::null_mut(), &mut count)
    };
    check("getsockopt(SO_GET_FILTER)", ret as libc::c_long)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut prog = vec![0u8; 8 * count as usize];
    let mut len = count;
    // SAFETY: `prog` holds `len` instructions of 8 bytes, the unit the kernel counts in.
    let ret = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, prog.as_mut_ptr().cast(), &mut len)
    };
    check("getsockopt(SO_GET_FILTER)", ret as libc::c_long)?;
    prog.truncate(8 * (len.min(count) as usize));
    Ok(prog)
}

/// `setsockopt(SO_ATTACH_FILTER)` of a classic BPF program, 8 bytes per instruction.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[u8]) -> Result<(), SysError> {
    let mut insns: Vec<libc::sock_filter> = prog
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_mut_ptr() };
    let len = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: `fprog` points to `insns`, live for the call, of the length it states.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            len,
        )
    };
    check("setsockopt(SO_ATTACH_FILTER)", ret as libc::c_long).map(drop)
}
