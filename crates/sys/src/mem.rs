//! Reading and writing another process's memory through `/proc/PID/mem`, and its page table through
//! `/proc/PID/pagemap` (proc(5)). Plain file I/O: `/proc/PID/mem` writes even read-only private pages
//! (FOLL_FORCE), which `process_vm_writev` and injected reads cannot.

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
