//! userfaultfd in MISSING mode, for lazy restore (`uffd.rs` has the write-protect mode of incremental
//! dumps): ioctls on a userfaultfd another process created (taken with `pidfd_getfd`): its
//! API handshake, registration of ranges in MISSING mode, and the answers to its faults
//! (`UFFDIO_COPY`, `UFFDIO_ZEROPAGE`, `UFFDIO_WAKE`); and its messages. The context of a
//! userfaultfd is the address space of the process that created it, whoever makes the ioctl.
//!
//! # References
//! userfaultfd(2), ioctl_userfaultfd(2), include/uapi/linux/userfaultfd.h

use crate::uffd::{UffdioApi, UffdioRange, UffdioRegister, UFFDIO_API, UFFDIO_REGISTER, UFFD_API};
use crate::{check, SysError};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `_IOR(0xAA, 0x02, struct uffdio_range)`.
const UFFDIO_WAKE: libc::c_ulong = 0x8010_aa02;
/// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
/// `_IOWR(0xAA, 0x04, struct uffdio_zeropage)`.
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xc020_aa04;
/// `UFFDIO_REGISTER_MODE_MISSING`.
const MODE_MISSING: u64 = 1;

/// `UFFD_FEATURE_EVENT_FORK`: a fork of the process hands us a userfaultfd of the child.
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `UFFD_FEATURE_EVENT_REMAP`: mremap of a registered range is reported.
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// `UFFD_FEATURE_EVENT_REMOVE`: madvise(MADV_DONTNEED/MADV_REMOVE) of a registered range is reported.
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_EVENT_UNMAP`: munmap of a registered range is reported.
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// One message read from a userfaultfd (`struct uffd_msg`).
#[derive(Debug)]
pub enum Msg {
    /// A thread faulted on a missing page at `address`.
    PageFault { address: u64 },
    /// The process forked; `ufd` is the child's userfaultfd, which the kernel put in our fd table.
    Fork { ufd: OwnedFd },
    /// `[from, from+len)` moved to `to`.
    Remap { from: u64, to: u64, len: u64 },
    /// `[start, end)` was dropped (madvise).
    Remove { start: u64, end: u64 },
    /// `[start, end)` was unmapped.
    Unmap { start: u64, end: u64 },
    /// An event of another kind.
    Other(u8),
}

#[repr(C)]
#[derive(Default)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
#[derive(Default)]
struct ZeroPage {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

fn ioctl<T>(fd: BorrowedFd<'_>, name: &'static str, req: libc::c_ulong, arg: &mut T) -> Result<(), SysError> {
    // SAFETY: `arg` is a live, properly sized `#[repr(C)]` struct of the layout `req` names, which
    // the kernel reads and writes only within its size.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    check(name, ret as libc::c_long).map(drop)
}

/// `UFFDIO_API` with `features`: the handshake a new userfaultfd needs before anything else.
pub fn api(fd: BorrowedFd<'_>, features: u64) -> Result<(), SysError> {
    let mut a = UffdioApi { api: UFFD_API, features, ioctls: 0 };
    ioctl(fd, "ioctl(UFFDIO_API)", UFFDIO_API, &mut a)
}

/// The `UFFD_FEATURE_*` bits this kernel offers: `UFFDIO_API` on a userfaultfd of our own.
pub fn offered_features() -> Result<u64, SysError> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let fd = check("userfaultfd", ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut a = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
    ioctl(fd.as_fd(), "ioctl(UFFDIO_API)", UFFDIO_API, &mut a)?;
    Ok(a.features)
}

/// `UFFDIO_REGISTER` of `[start, start+len)` in MISSING mode.
pub fn register_missing(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut r = UffdioRegister { range: UffdioRange { start, len }, mode: MODE_MISSING, ioctls: 0 };
    ioctl(fd, "ioctl(UFFDIO_REGISTER)", UFFDIO_REGISTER, &mut r)
}

/// `UFFDIO_COPY` of `src` to `dst` in the registered process, waking the faulting threads. Returns
/// the bytes copied; an `EEXIST` error means a page at `dst + copied` is present already (the
/// copied count is in the `Err`'s second field).
pub fn copy(fd: BorrowedFd<'_>, dst: u64, src: &[u8]) -> Result<u64, (SysError, u64)> {
    let mut c = Copy { dst, src: src.as_ptr() as u64, len: src.len() as u64, mode: 0, copy: 0 };
    match ioctl(fd, "ioctl(UFFDIO_COPY)", UFFDIO_COPY, &mut c) {
        Ok(()) => Ok(c.copy.max(0) as u64),
        Err(e) => Err((e, c.copy.max(0) as u64)),
    }
}

/// `UFFDIO_ZEROPAGE` of `[start, start+len)`, waking the faulting threads.
pub fn zeropage(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut z = ZeroPage { start, len, mode: 0, zeropage: 0 };
    ioctl(fd, "ioctl(UFFDIO_ZEROPAGE)", UFFDIO_ZEROPAGE, &mut z)
}

/// `UFFDIO_WAKE` of the threads waiting on `[start, start+len)`.
pub fn wake(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut r = UffdioRange { start, len };
    ioctl(fd, "ioctl(UFFDIO_WAKE)", UFFDIO_WAKE, &mut r)
}

/// Read one message from a non-blocking userfaultfd: `None` when there is none (`EAGAIN`).
pub fn read_msg(fd: BorrowedFd<'_>) -> Result<Option<Msg>, SysError> {
    let mut m = [0u8; 32];
    // SAFETY: `m` is a live 32-byte buffer, the size of `struct uffd_msg`.
    let ret = unsafe { libc::read(fd.as_raw_fd(), m.as_mut_ptr().cast(), m.len()) };
    match check("read(userfaultfd)", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EAGAIN => return Ok(None),
        Err(e) => return Err(e),
        Ok(n) if n != 32 => return Err(SysError::from_errno("read(userfaultfd)", libc::EIO)),
        Ok(_) => {}
    }
    let word = |at: usize| u64::from_le_bytes(m[at..at + 8].try_into().expect("8 bytes"));
    Ok(Some(match m[0] {
        0x12 => Msg::PageFault { address: word(16) },
        0x13 => {
            let n = u32::from_le_bytes(m[8..12].try_into().expect("4 bytes")) as i32;
            // SAFETY: for a fork event the kernel installed fd `n` in our table for this message;
            // nobody else owns it.
            Msg::Fork { ufd: unsafe { OwnedFd::from_raw_fd(n) } }
        }
        0x14 => Msg::Remap { from: word(8), to: word(16), len: word(24) },
        0x15 => Msg::Remove { start: word(8), end: word(16) },
        0x16 => Msg::Unmap { start: word(8), end: word(16) },
        other => Msg::Other(other),
    }))
}

/// `poll(2)` for input on `fds` for up to `timeout_ms` (-1: no limit): whether each is readable
/// (or hung up).
pub fn poll_in(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> Result<Vec<bool>, SysError> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a live array of `p.len()` pollfd structs.
    let ret = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    match check("poll", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EINTR => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
        Ok(_) => Ok(p.iter().map(|x| x.revents != 0).collect()),
    }
}
