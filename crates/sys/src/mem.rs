//! Reading and writing another process's memory through `/proc/PID/mem` or `process_vm_writev(2)`,
//! and its page table through `/proc/PID/pagemap` (proc(5)). `/proc/PID/mem` writes even read-only
//! private pages (FOLL_FORCE), which `process_vm_writev` and injected reads cannot.

use crate::Pid;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

/// `/proc/PID/mem` of a task the caller may ptrace-attach to.
#[derive(Debug)]
pub struct ProcMem {
    file: File,
}

impl ProcMem {
    pub fn open(pid: Pid) -> io::Result<ProcMem> {
        let file = OpenOptions::new().read(true).write(true).open(format!("/proc/{pid}/mem"))?;
        Ok(ProcMem { file })
    }

    /// Read exactly `buf.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr)
    }

    /// Write all of `buf` at `addr`.
    pub fn write(&self, addr: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, addr)
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Write all of `data` at `addr` of task `pid` with `process_vm_writev(2)` (the pages must be
/// writable there: it does not force, as `/proc/PID/mem` does), faulting the pages in as it copies.
pub fn write_remote(pid: Pid, addr: u64, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let local = libc::iovec { iov_base: data[done..].as_ptr() as *mut libc::c_void, iov_len: data.len() - done };
        let remote = libc::iovec { iov_base: (addr + done as u64) as *mut libc::c_void, iov_len: data.len() - done };
        // SAFETY: one iovec each side; `local` points into `data`, alive and only read for the
        // call; `remote` names the other task's memory, which the kernel checks.
        let n = unsafe { libc::process_vm_writev(pid.0, &local, 1, &remote, 1, 0) };
        match n {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("pid {pid}: nothing written at {:#x}", addr + done as u64),
                ))
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

/// Allocate every page of `buf` that lies whole inside it, writable, in one call
/// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14), as a restore does before it fills an area.
pub fn populate_write(buf: &mut [u8]) -> io::Result<()> {
    let page = 4096usize;
    let start = (buf.as_mut_ptr() as usize).next_multiple_of(page);
    let end = (buf.as_mut_ptr() as usize + buf.len()) / page * page;
    if end <= start {
        return Ok(());
    }
    // SAFETY: the range is inside `buf`, which we borrow mutably; populating pages that are
    // already mapped changes no byte of them.
    let ret = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bits of a `/proc/PID/pagemap` entry (Documentation/admin-guide/mm/pagemap.rst).
pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_SWAPPED: u64 = 1 << 62;
pub const PM_FILE_OR_SHARED: u64 = 1 << 61;
/// A guard region marker (`MADV_GUARD_INSTALL`, Linux 6.13; reported by pagemap since 6.14): its
/// swap bit is set too, but there is no page behind it.
pub const PM_GUARD_REGION: u64 = 1 << 58;
/// Write-protected by userfaultfd (the page, or a pte marker standing for an absent one).
pub const PM_UFFD_WP: u64 = 1 << 57;

/// A "swapped" entry that is a pte marker (`SWP_PTE_MARKER`, swap type 31 on x86_64: userfaultfd
/// write-protection of an absent page, or a guard region), not a page. The swap type is shown
/// only to CAP_SYS_ADMIN; without it (frame 0) a marker cannot be told from a swapped page.
pub fn is_pte_marker(entry: u64) -> bool {
    entry & PM_SWAPPED != 0 && entry & 0x1f == 0x1f
}

/// `/proc/PID/pagemap`, one 64-bit entry per virtual page.
#[derive(Debug)]
pub struct PageMapFile {
    file: File,
}

impl PageMapFile {
    pub fn open(pid: Pid) -> io::Result<PageMapFile> {
        Ok(PageMapFile { file: File::open(format!("/proc/{pid}/pagemap"))? })
    }

    /// The entries of the pages in `[start, end)` (both page aligned), appended to `out`.
    pub fn read_range(&self, start: u64, end: u64, out: &mut Vec<u64>) -> io::Result<()> {
        let pages = ((end - start) / 4096) as usize;
        let mut bytes = vec![0u8; pages * 8];
        self.file.read_exact_at(&mut bytes, (start / 4096) * 8)?;
        out.extend(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
        Ok(())
    }
}
