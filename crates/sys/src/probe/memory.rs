//! Probes of the memory interfaces: `vmsplice`/`splice`, the `PAGEMAP_SCAN` ioctl, userfaultfd
//! features and soft-dirty bits. Each maps at most one private page of its own and unmaps it.

use std::fs::File;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::{errno, own, sys, Probed, PAGE};
use crate::uffd::{PageRegion, PmScanArg, UffdioApi, FEATURE_WP_ASYNC, PAGEMAP_SCAN, UFFDIO_API, UFFD_API};

/// `PAGE_IS_PRESENT` category of `PAGEMAP_SCAN`.
const PAGE_IS_PRESENT: u64 = 1 << 3;
/// Bit 55 of a pagemap entry: the page is soft-dirty (Documentation/admin-guide/mm/pagemap.rst).
const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bit 63 of a pagemap entry: the page is present.
const PM_PRESENT: u64 = 1 << 63;

/// `vmsplice` one page of ours into a pipe, then `splice` it to `/dev/null`.
pub(super) fn probe_vmsplice() -> Probed {
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two fds.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Probed::failed("pipe2", errno());
    }
    let (rd, wr) = (own(ends[0].into()), own(ends[1].into()));
    let null = match File::options().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => return Probed::no(format!("open /dev/null: {e}")),
    };
    let page = vec![0x5au8; PAGE];
    let iov = libc::iovec { iov_base: page.as_ptr() as *mut libc::c_void, iov_len: PAGE };
    // SAFETY: `iov` describes `page`, which stays alive and unmodified until the pipe is drained
    // into /dev/null below.
    let moved = unsafe { libc::vmsplice(wr.as_raw_fd(), &iov, 1, 0) };
    if moved != PAGE as isize {
        return Probed::failed("vmsplice", errno());
    }
    // SAFETY: fds only; null offsets mean "use the file position".
    let out = unsafe {
        let null_off = std::ptr::null_mut();
        libc::splice(rd.as_raw_fd(), null_off, null.as_raw_fd(), null_off, PAGE, 0)
    };
    if out != PAGE as isize {
        return Probed::failed("splice", errno());
    }
    Probed::yes("moved a page through a pipe with vmsplice and splice")
}

/// One private anonymous page of ours, written to so that it is present; unmapped on drop.
struct OwnPage(*mut libc::c_void);

impl OwnPage {
    fn new() -> Result<OwnPage, i32> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel overlaps nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        // SAFETY: `p` is a writable page we just mapped and nobody else refers to.
        unsafe { p.cast::<u8>().write_volatile(1) };
        Ok(OwnPage(p))
    }

    fn addr(&self) -> u64 {
        self.0 as u64
    }
}

impl Drop for OwnPage {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `new` and no reference into it outlives `self`.
        unsafe { libc::munmap(self.0, PAGE) };
    }
}

pub(super) fn probe_pagemap_scan() -> Probed {
    let pagemap = match File::open("/proc/self/pagemap") {
        Ok(f) => f,
        Err(e) => return Probed::no(format!("open /proc/self/pagemap: {e}")),
    };
    let page = match OwnPage::new() {
        Ok(p) => p,
        Err(e) => return Probed::failed("mmap", e),
    };
    let mut region = PageRegion::default();
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        start: page.addr(),
        end: page.addr() + PAGE as u64,
        vec: &mut region as *mut PageRegion as u64,
        vec_len: 1,
        category_anyof_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..PmScanArg::default()
    };
    // SAFETY: `arg` is a complete pm_scan_arg whose `vec` points at one live page_region.
    let ret = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg as *mut PmScanArg) };
    match sys(ret.into()) {
        Ok(1) if region.start == page.addr() && region.categories & PAGE_IS_PRESENT != 0 => {
            Probed::yes("found a present page of ours")
        }
        Ok(n) => Probed::no(format!("PAGEMAP_SCAN returned {n} regions for one present page")),
        Err(e) => Probed::failed("ioctl(PAGEMAP_SCAN)", e),
    }
}

/// Opens a userfaultfd and asks `UFFDIO_API` for every feature it offers.
pub(super) fn probe_uffd() -> (Probed, u64) {
    // SAFETY: integer flags only; the result is a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let uffd = match sys(ret) {
        Ok(fd) => own(fd),
        Err(e) => return (Probed::failed("userfaultfd", e), 0),
    };
    let mut api = UffdioApi { api: UFFD_API, ..UffdioApi::default() };
    // SAFETY: `api` is a live uffdio_api that the kernel reads and fills in.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    if let Err(e) = sys(ret.into()) {
        return (Probed::failed("ioctl(UFFDIO_API)", e), 0);
    }
    let detail = format!("features {:#x}", api.features);
    let probed = if api.features & FEATURE_WP_ASYNC != 0 {
        Probed::yes(detail)
    } else {
        Probed::no(format!("{detail}: no UFFD_FEATURE_WP_ASYNC"))
    };
    (probed, api.features)
}

/// A new anonymous mapping is soft-dirty when the kernel tracks soft-dirty bits; without
/// `CONFIG_MEM_SOFT_DIRTY` bit 55 of its pagemap entry is always clear. Nothing is cleared.
pub(super) fn probe_soft_dirty() -> Probed {
    let page = match OwnPage::new() {
        Ok(p) => p,
        Err(e) => return Probed::failed("mmap", e),
    };
    let mut entry = [0u8; 8];
    let offset = page.addr() / PAGE as u64 * 8;
    let read = File::open("/proc/self/pagemap").and_then(|f| f.read_exact_at(&mut entry, offset));
    if let Err(e) = read {
        return Probed::no(format!("read /proc/self/pagemap: {e}"));
    }
    let entry = u64::from_ne_bytes(entry);
    if entry & PM_PRESENT == 0 {
        Probed::no("pagemap shows a page we wrote as absent")
    } else if entry & PM_SOFT_DIRTY == 0 {
        Probed::no("a freshly written page is not soft-dirty (no CONFIG_MEM_SOFT_DIRTY)")
    } else {
        Probed::yes("a freshly written page is soft-dirty")
    }
}
