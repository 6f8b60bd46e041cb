//! AIO (`io_setup(2)` and friends) as raw system calls: glibc has no wrappers for them.

use std::io;

/// `struct iocb` (linux/aio_abi.h, x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Iocb {
    pub data: u64,
    pub key: u32,
    pub rw_flags: i32,
    pub opcode: u16,
    pub reqprio: i16,
    pub fildes: u32,
    pub buf: u64,
    pub nbytes: u64,
    pub offset: i64,
    pub reserved2: u64,
    pub flags: u32,
    pub resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    pub data: u64,
    pub obj: u64,
    pub res: i64,
    pub res2: i64,
}

pub const IOCB_CMD_PREAD: u16 = 0;
pub const IOCB_CMD_POLL: u16 = 5;

fn ret(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `io_setup(2)`: the new context's id (its ring's address).
pub fn io_setup(nr_events: u32) -> io::Result<u64> {
    let mut ctx: u64 = 0;
    // SAFETY: the kernel writes one aio_context_t at the address of `ctx`, which lives across the call.
    ret(unsafe { libc::syscall(libc::SYS_io_setup, nr_events, &mut ctx as *mut u64) })?;
    Ok(ctx)
}

/// `io_destroy(2)`.
pub fn io_destroy(ctx: u64) -> io::Result<()> {
    // SAFETY: no memory is passed; the kernel checks the id.
    ret(unsafe { libc::syscall(libc::SYS_io_destroy, ctx) }).map(drop)
}

/// `io_submit(2)` of `iocbs`: how many were taken. Each one must stay where it is until its
/// event is reaped, since its address comes back as the event's `obj`.
pub fn io_submit(ctx: u64, iocbs: &[&Iocb]) -> io::Result<usize> {
    let ptrs: Vec<*const Iocb> = iocbs.iter().map(|c| *c as *const Iocb).collect();
    // SAFETY: `ptrs` holds `ptrs.len()` pointers to live iocbs, which the kernel copies; the
    // buffers they name are the caller's (reads into memory the caller owns, checked by the kernel).
    ret(unsafe { libc::syscall(libc::SYS_io_submit, ctx, ptrs.len() as libc::c_long, ptrs.as_ptr()) })
        .map(|n| n as usize)
}

/// `io_getevents(2)`: between `min_nr` and `nr` events, waiting at most `timeout_ms`.
pub fn io_getevents(ctx: u64, min_nr: usize, nr: usize, timeout_ms: i64) -> io::Result<Vec<IoEvent>> {
    let mut events = vec![IoEvent::default(); nr];
    let ts = libc::timespec { tv_sec: timeout_ms / 1000, tv_nsec: (timeout_ms % 1000) * 1_000_000 };
    // SAFETY: `events` has room for `nr` events and `ts` is a valid timespec, both live across the call.
    let n = ret(unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            ctx,
            min_nr as libc::c_long,
            nr as libc::c_long,
            events.as_mut_ptr(),
            &ts as *const libc::timespec,
        )
    })?;
    events.truncate(n as usize);
    Ok(events)
}

/// `mprotect(2)` of a context's ring (`len` bytes at `ctx`).
pub fn protect_ring(ctx: u64, len: usize, prot: i32) -> io::Result<()> {
    // SAFETY: the ring is the kernel's mapping, which no Rust reference points into; the kernel
    // itself reaches it through its own mapping of the pages.
    ret(unsafe { libc::mprotect(ctx as *mut libc::c_void, len, prot) } as libc::c_long).map(drop)
}
