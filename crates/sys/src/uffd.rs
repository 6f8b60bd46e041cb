//! Write tracking without soft-dirty: a userfaultfd in asynchronous write-protect mode
//! (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7) over areas of another process's mm, read back and armed
//! again with the `PAGEMAP_SCAN` ioctl on that process's `/proc/PID/pagemap`.
//!
//! A userfaultfd acts on the mm of the process that created it, whoever holds it: the target is
//! made to create it (an injected `userfaultfd(2)`), we take it with `pidfd_getfd`, and every ioctl
//! here runs in our process. References: `userfaultfd(2)`, `ioctl_userfaultfd(2)`,
//! Documentation/admin-guide/mm/userfaultfd.rst and pagemap.rst (`PAGEMAP_SCAN`),
//! include/uapi/linux/userfaultfd.h and fs.h. The ABI structs and ioctl numbers here serve the
//! kernel probes and the MISSING mode of lazy restore (`uffd_missing.rs`) too.

use crate::{check, SysError};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `UFFD_API`.
pub(crate) const UFFD_API: u64 = 0xaa;
/// `UFFDIO_API` = `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
pub(crate) const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `UFFDIO_REGISTER` = `_IOWR(0xAA, 0x00, struct uffdio_register)`.
pub(crate) const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `UFFDIO_UNREGISTER` = `_IOR(0xAA, 0x01, struct uffdio_range)`.
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_aa01;
/// `UFFDIO_WRITEPROTECT` = `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)`.
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xc018_aa06;
/// `PAGEMAP_SCAN` = `_IOWR('f', 16, struct pm_scan_arg)`.
pub(crate) const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;

/// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`: write-protect shmem and hugetlbfs areas too.
pub const FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
/// `UFFD_FEATURE_WP_UNPOPULATED`: pages not yet faulted in are write-protected too (pte markers).
pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `UFFD_FEATURE_WP_ASYNC`: a write to a protected page is let through by the kernel, which only
/// clears the page's protection; no fault message is ever queued.
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `UFFD_USER_MODE_ONLY` flag of `userfaultfd(2)`.
pub const USER_MODE_ONLY: u32 = 1;
const REGISTER_MODE_WP: u64 = 1 << 1;
const WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// `PM_SCAN_WP_MATCHING`: write-protect the pages reported, atomically with the scan.
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// `PAGE_IS_WRITTEN`: written since last write-protected.
const PAGE_IS_WRITTEN: u64 = 1 << 1;

#[repr(C)]
#[derive(Default)]
pub(crate) struct UffdioApi {
    pub(crate) api: u64,
    pub(crate) features: u64,
    pub(crate) ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct UffdioRange {
    pub(crate) start: u64,
    pub(crate) len: u64,
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct UffdioRegister {
    pub(crate) range: UffdioRange,
    pub(crate) mode: u64,
    pub(crate) ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct PmScanArg {
    pub(crate) size: u64,
    pub(crate) flags: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) walk_end: u64,
    pub(crate) vec: u64,
    pub(crate) vec_len: u64,
    pub(crate) max_pages: u64,
    pub(crate) category_inverted: u64,
    pub(crate) category_mask: u64,
    pub(crate) category_anyof_mask: u64,
    pub(crate) return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct PageRegion {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) categories: u64,
}

/// `ioctl(fd, req, arg)` on a live `#[repr(C)]` argument.
fn ioctl<T>(call: &'static str, fd: BorrowedFd<'_>, req: libc::c_ulong, arg: &mut T) -> Result<i64, SysError> {
    // SAFETY: `arg` is a live, exclusively borrowed struct laid out as the request's argument; the
    // kernel reads and writes at most its size (encoded in `req`).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    check(call, ret as libc::c_long)
}

/// `UFFDIO_API`: enable `features` (all of them or the call fails) on a fresh userfaultfd.
/// Returns the features the kernel offers.
pub fn api(uffd: BorrowedFd<'_>, features: u64) -> Result<u64, SysError> {
    let mut a = UffdioApi { api: UFFD_API, features, ioctls: 0 };
    ioctl("ioctl(UFFDIO_API)", uffd, UFFDIO_API, &mut a)?;
    Ok(a.features)
}

/// `UFFDIO_REGISTER` in write-protect mode over `[start, start + len)` of the userfaultfd's mm.
/// The range must be whole areas the mm can track (EINVAL otherwise; EBUSY when another
/// userfaultfd has them).
pub fn register_wp(uffd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut r = UffdioRegister { range: UffdioRange { start, len }, mode: REGISTER_MODE_WP, ioctls: 0 };
    ioctl("ioctl(UFFDIO_REGISTER)", uffd, UFFDIO_REGISTER, &mut r).map(drop)
}

/// `UFFDIO_WRITEPROTECT` of `[start, start + len)`: from now on a write there is seen as written.
pub fn write_protect(uffd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut w = UffdioWriteprotect { range: UffdioRange { start, len }, mode: WRITEPROTECT_MODE_WP };
    ioctl("ioctl(UFFDIO_WRITEPROTECT)", uffd, UFFDIO_WRITEPROTECT, &mut w).map(drop)
}

/// Undo [`register_wp`] over `[start, start + len)`: the protection is lifted first
/// (`UFFDIO_WRITEPROTECT` without `MODE_WP`), then the range unregistered (`UFFDIO_UNREGISTER`), so
/// no write-protect state (bits or markers) stays in the mm.
pub fn unregister(uffd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), SysError> {
    let mut w = UffdioWriteprotect { range: UffdioRange { start, len }, mode: 0 };
    ioctl("ioctl(UFFDIO_WRITEPROTECT)", uffd, UFFDIO_WRITEPROTECT, &mut w)?;
    let mut r = UffdioRange { start, len };
    ioctl("ioctl(UFFDIO_UNREGISTER)", uffd, UFFDIO_UNREGISTER, &mut r).map(drop)
}

/// The page ranges of `[start, end)` written since they were last write-protected, from
/// `PAGEMAP_SCAN` on `pagemap` (a process's `/proc/PID/pagemap`), as (start, end) pairs. With
/// `rearm`, the pages reported are write-protected again by the same walk, so a write racing with
/// the scan is either reported now or seen as written next time.
pub fn written(pagemap: &File, start: u64, end: u64, rearm: bool) -> Result<Vec<(u64, u64)>, SysError> {
    const BATCH: usize = 512;
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut regions = vec![PageRegion::default(); BATCH];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: if rearm { PM_SCAN_WP_MATCHING } else { 0 },
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: BATCH as u64,
            category_mask: PAGE_IS_WRITTEN,
            return_mask: PAGE_IS_WRITTEN,
            ..PmScanArg::default()
        };
        // SAFETY: `arg.vec` points to `regions`, BATCH live page_region entries the kernel fills.
        let ret = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg as *mut PmScanArg) };
        let n = check("ioctl(PAGEMAP_SCAN)", ret as libc::c_long)? as usize;
        for r in &regions[..n.min(BATCH)] {
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    Ok(out)
}
