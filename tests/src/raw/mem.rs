//! Memory mappings, the program break, the auxiliary vector, clocks and sleeps.
//!
//! `Mapping` never hands out references into the mapped memory: every access copies, so changing
//! the protection, discarding pages or unmapping can never invalidate a live Rust reference.

use super::{cvt, cvt_long};
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Size of a page on x86_64.
pub const PAGE: usize = 4096;

/// A private memory mapping owned by this process; unmapped on drop.
pub struct Mapping {
    addr: usize,
    len: usize,
    /// Protection of each page, to refuse accesses that would fault.
    prot: RefCell<Vec<i32>>,
}

impl Mapping {
    /// Maps `len` bytes of private anonymous memory with `prot` (`mmap(2)`).
    pub fn anon(len: usize, prot: i32) -> io::Result<Mapping> {
        Self::map(len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// Maps `len` bytes of `file` from `offset` privately (MAP_PRIVATE) with `prot`.
    pub fn file_private(file: &File, offset: u64, len: usize, prot: i32) -> io::Result<Mapping> {
        Self::map(len, prot, libc::MAP_PRIVATE, file.as_raw_fd(), offset as libc::off_t)
    }

    fn map(len: usize, prot: i32, flags: i32, fd: i32, off: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: a new mapping at a kernel-chosen address cannot overlap existing Rust objects.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr: ptr as usize, len, prot: RefCell::new(vec![prot; len.div_ceil(PAGE)]) })
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, mmap refuses zero lengths).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, len: usize, need: i32) {
        assert!(off + len <= self.len, "access {off}+{len} beyond mapping of {}", self.len);
        if len == 0 {
            return;
        }
        let prot = self.prot.borrow();
        for page in off / PAGE..=(off + len - 1) / PAGE {
            assert!(prot[page] & need == need, "page {page} lacks protection {need:#x}");
        }
    }

    /// Writes `data` at `off` (the range must be writable).
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), libc::PROT_WRITE);
        // SAFETY: the range is inside the mapping and writable (checked); no Rust reference
        // points into the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (self.addr + off) as *mut u8, data.len()) };
    }

    /// Fills `len` bytes at `off` (8-aligned, multiple of 8) with `word(i)` for word index `i`
    /// counted from the start of the mapping.
    pub fn fill_words(&self, off: usize, len: usize, word: impl Fn(usize) -> u64) {
        assert!(off.is_multiple_of(8) && len.is_multiple_of(8), "unaligned fill");
        self.check(off, len, libc::PROT_WRITE);
        let base = (self.addr + off) as *mut u64;
        for i in 0..len / 8 {
            // SAFETY: in bounds, aligned and writable (checked above).
            unsafe { base.add(i).write(word(off / 8 + i)) };
        }
    }

    /// Copies `len` bytes at `off` out (the range must be readable).
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        self.check(off, len, libc::PROT_READ);
        let mut out = vec![0u8; len];
        // SAFETY: the range is inside the mapping and readable (checked).
        unsafe { std::ptr::copy_nonoverlapping((self.addr + off) as *const u8, out.as_mut_ptr(), len) };
        out
    }

    /// Changes the protection of `len` bytes at `off` (page aligned) with `mprotect(2)`.
    pub fn protect(&self, off: usize, len: usize, prot: i32) -> io::Result<()> {
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len, "bad mprotect range");
        // SAFETY: the range belongs to this mapping and no Rust reference points into it.
        cvt(unsafe { libc::mprotect((self.addr + off) as *mut _, len, prot) })?;
        let mut table = self.prot.borrow_mut();
        for p in &mut table[off / PAGE..(off + len).div_ceil(PAGE)] {
            *p = prot;
        }
        Ok(())
    }

    /// Discards `len` bytes at `off` with `madvise(MADV_DONTNEED)` (they read back as zero).
    pub fn discard(&self, off: usize, len: usize) -> io::Result<()> {
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len, "bad madvise range");
        // SAFETY: the range belongs to this private mapping and no Rust reference points into it.
        cvt(unsafe { libc::madvise((self.addr + off) as *mut _, len, libc::MADV_DONTNEED) }).map(drop)
    }

    /// Grows or moves the mapping to `new_len` with `mremap(MREMAP_MAYMOVE)`.
    pub fn remap(self, new_len: usize) -> io::Result<Mapping> {
        // SAFETY: the old range is owned by `self`, which is consumed; nothing references it.
        let ptr = unsafe { libc::mremap(self.addr as *mut _, self.len, new_len, libc::MREMAP_MAYMOVE) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let prot = self.prot.borrow()[0];
        let out = Mapping { addr: ptr as usize, len: new_len, prot: RefCell::new(vec![prot; new_len.div_ceil(PAGE)]) };
        std::mem::forget(self);
        Ok(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by this value and nothing references it.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

/// The current program break (`brk(0)` as a raw system call).
pub fn current_brk() -> usize {
    // SAFETY: brk(0) only queries the break.
    unsafe { libc::syscall(libc::SYS_brk, 0usize) as usize }
}

/// `getauxval(3)` for `key` (0 when absent).
pub fn getauxval(key: u64) -> u64 {
    // SAFETY: getauxval takes a plain integer.
    unsafe { libc::getauxval(key as libc::c_ulong) as u64 }
}

fn to_duration(ts: libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

/// `clock_gettime(3)` through the C library, which uses the vDSO.
pub fn clock_gettime(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = to_timespec(Duration::ZERO);
    // SAFETY: `ts` is a live local.
    cvt(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok(to_duration(ts))
}

/// `clock_gettime(2)` as a real system call, bypassing the vDSO.
pub fn clock_gettime_syscall(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = to_timespec(Duration::ZERO);
    // SAFETY: `ts` is a live local.
    cvt_long(unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts) })?;
    Ok(to_duration(ts))
}

/// One `nanosleep(2)` call for `req`; on failure returns the error and the remaining time the
/// kernel wrote back.
pub fn nanosleep(req: Duration) -> Result<(), (io::Error, Duration)> {
    let req = to_timespec(req);
    let mut rem = to_timespec(Duration::ZERO);
    // SAFETY: both timespecs are live locals.
    if unsafe { libc::nanosleep(&req, &mut rem) } == 0 {
        Ok(())
    } else {
        Err((io::Error::last_os_error(), to_duration(rem)))
    }
}

/// One `clock_nanosleep(2)` call with TIMER_ABSTIME until `deadline` on `clock`.
pub fn clock_nanosleep_abs(clock: libc::clockid_t, deadline: Duration) -> io::Result<()> {
    let ts = to_timespec(deadline);
    // SAFETY: `ts` is a live local; no remaining time is requested with TIMER_ABSTIME.
    let err = unsafe { libc::clock_nanosleep(clock, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
    if err == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(err))
    }
}

impl Mapping {
    /// The index (counted from the start of the mapping) of the first 64-bit word of `len` bytes
    /// at `off` (8-aligned, multiple of 8) that differs from `word(i)`, read in place without
    /// copying (so reading never makes a private copy of shared pages).
    pub fn first_word_mismatch(&self, off: usize, len: usize, word: impl Fn(usize) -> u64) -> Option<usize> {
        assert!(off.is_multiple_of(8) && len.is_multiple_of(8), "unaligned check");
        self.check(off, len, libc::PROT_READ);
        let base = (self.addr + off) as *const u64;
        (0..len / 8)
            .find(|&i| {
                // SAFETY: in bounds, aligned and readable (checked above).
                let got = unsafe { base.add(i).read() };
                got != word(off / 8 + i)
            })
            .map(|i| off / 8 + i)
    }
}
