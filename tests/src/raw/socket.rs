//! UNIX domain sockets for the workloads: any type (stream, datagram, seqpacket), names as raw
//! `sun_path` bytes (a leading NUL for an abstract name), messages with `SCM_RIGHTS` and
//! `SCM_CREDENTIALS`, and `int`/`timeval` socket options.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `SO_PEEK_OFF`.
pub const SO_PEEK_OFF: i32 = 42;

/// A new `AF_UNIX` socket of `ty` (`socket(2)`).
pub fn unix_socket(ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Two connected `AF_UNIX` sockets of `ty` (`socketpair(2)`).
pub fn unix_pair(ty: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn addr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; zeroes are valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > a.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    Ok((a, (std::mem::size_of::<libc::sa_family_t>() + name.len()) as libc::socklen_t))
}

fn name_of(a: &libc::sockaddr_un, len: libc::socklen_t) -> Vec<u8> {
    let n = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>()).min(a.sun_path.len());
    let mut v: Vec<u8> = a.sun_path[..n].iter().map(|&c| c as u8).collect();
    if v.first().is_some_and(|&c| c != 0) {
        if let Some(end) = v.iter().position(|&c| c == 0) {
            v.truncate(end);
        }
    }
    v
}

/// `bind(2)`.
pub fn bind(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = addr(name)?;
    // SAFETY: `a` is a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) }).map(drop)
}

/// `connect(2)`.
pub fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = addr(name)?;
    // SAFETY: `a` is a valid address of `len` bytes.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) }).map(drop)
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// `accept4(2)` with `SOCK_CLOEXEC`.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed.
    let new =
        cvt(unsafe { libc::accept4(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `shutdown(2)`.
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// `getsockname(2)` (`peer` false) or `getpeername(2)` (`peer` true).
pub fn sock_name(fd: BorrowedFd<'_>, peer: bool) -> io::Result<Vec<u8>> {
    // SAFETY: sockaddr_un is plain data; zeroes are valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let p = (&mut a as *mut libc::sockaddr_un).cast();
    // SAFETY: `a` and `len` are valid for the kernel to write.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    cvt(r)?;
    Ok(name_of(&a, len))
}

/// `getsockopt(2)` of an int option at `SOL_SOCKET`.
pub fn get_opt(fd: BorrowedFd<'_>, opt: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the kernel to write.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&mut v as *mut i32).cast(), &mut len) })?;
    Ok(v)
}

/// `setsockopt(2)` of an int option at `SOL_SOCKET`.
pub fn set_opt(fd: BorrowedFd<'_>, opt: i32, v: i32) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a valid int of `len` bytes.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&v as *const i32).cast(), len) }).map(drop)
}

/// `SO_RCVTIMEO`/`SO_SNDTIMEO` as (seconds, microseconds).
pub fn get_timeout(fd: BorrowedFd<'_>, opt: i32) -> io::Result<(i64, i64)> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid for the kernel to write.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&mut tv as *mut libc::timeval).cast(), &mut len)
    })?;
    Ok((tv.tv_sec, tv.tv_usec))
}

/// Sets `SO_RCVTIMEO`/`SO_SNDTIMEO`.
pub fn set_timeout(fd: BorrowedFd<'_>, opt: i32, sec: i64, usec: i64) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: sec, tv_usec: usec };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` is a valid timeval of `len` bytes.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&tv as *const libc::timeval).cast(), len) })
        .map(drop)
}

/// Credentials of a message: (pid, uid, gid).
pub type Ucred = (i32, u32, u32);

/// `sendmsg(2)` of `data` to `to` (the connected peer when None), with `fds` and `creds`.
pub fn send_msg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: Option<&[u8]>,
    fds: &[BorrowedFd<'_>],
    creds: Option<Ucred>,
) -> io::Result<usize> {
    let mut control = [0u64; 128];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; zeroes are valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let a = to.map(addr).transpose()?;
    if let Some((a, len)) = &a {
        msg.msg_name = (a as *const libc::sockaddr_un as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let fd_bytes = std::mem::size_of_val(raw.as_slice()) as u32;
    let cred_bytes = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: CMSG_SPACE only computes.
    let need = unsafe {
        (if raw.is_empty() { 0 } else { libc::CMSG_SPACE(fd_bytes) })
            + (if creds.is_some() { libc::CMSG_SPACE(cred_bytes) } else { 0 })
    } as usize;
    if need > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = need;
    }
    // SAFETY: the control buffer (1 KiB) holds `need` bytes; headers and data are written within.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        if !raw.is_empty() {
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c) as *mut RawFd, raw.len());
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if let Some((pid, uid, gid)) = creds {
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_CREDENTIALS;
            (*c).cmsg_len = libc::CMSG_LEN(cred_bytes) as usize;
            (libc::CMSG_DATA(c) as *mut libc::ucred).write_unaligned(libc::ucred { pid, uid, gid });
        }
    }
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated length.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A received message.
#[derive(Debug, Default)]
pub struct Received {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Ucred>,
    pub sender: Vec<u8>,
    /// `msg_flags`.
    pub flags: i32,
}

/// `recvmsg(2)` of up to `len` bytes with `flags` (`MSG_CMSG_CLOEXEC` added).
pub fn recv_msg(fd: BorrowedFd<'_>, len: usize, flags: i32) -> io::Result<Received> {
    let mut data = vec![0u8; len];
    let mut control = [0u64; 128];
    // SAFETY: sockaddr_un and msghdr are plain data; zeroes are valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: len };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut a as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated length.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    data.truncate(n as usize);
    let mut out = Received { data, sender: name_of(&a, msg.msg_namelen), flags: msg.msg_flags, ..Default::default() };
    // SAFETY: recvmsg filled the control buffer; the CMSG macros walk it within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let payload = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let p = libc::CMSG_DATA(c) as *const RawFd;
                for i in 0..payload / 4 {
                    // The kernel installed the fd for us.
                    out.fds.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                }
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let u = (libc::CMSG_DATA(c) as *const libc::ucred).read_unaligned();
                out.creds = Some((u.pid, u.uid, u.gid));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(out)
}

/// `send(2)` of one out-of-band byte (`MSG_OOB`).
pub fn send_oob(fd: BorrowedFd<'_>, byte: u8) -> io::Result<()> {
    // SAFETY: `byte` is a live one-byte buffer.
    let n = unsafe { libc::send(fd.as_raw_fd(), (&byte as *const u8).cast(), 1, libc::MSG_OOB | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
