//! The `VmFlags` of a memory area (`/proc/PID/smaps`) and what becomes of each at restore.
//!
//! Every mnemonic Linux 6.18 prints (`show_smap_vma_flags` in fs/proc/task_mmu.c) has a [`Fate`]
//! in [`TABLE`]: implied by how the area is mapped again (its protection, sharing and backing),
//! recorded and set again at restore (madvise, mlock, mmap flags, the file's open mode), or refused
//! at dump by name. A mnemonic the table does not know (`??` for a bit the kernel has no name for,
//! or one a newer kernel added) is refused too: nothing a program can observe changes silently.
//! The kernel's own areas (`[vdso]`, `[vvar]`, ...) carry driver flags (`io`, `pf`, `de`, `dd`)
//! that come with the areas themselves and are not checked.

use super::MapEntry;
use crate::error::Result;
use stasis_image::model::{self, Vma};
use stasis_sys::remote::Remote;

/// What restore does with a VmFlags mnemonic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fate {
    /// Follows from the protection, sharing or backing the area is mapped with again.
    Implied,
    /// Recorded in the image and set again at restore.
    Restored,
    /// Cannot be restored faithfully: the dump is refused, naming this.
    Refused(&'static str),
}

use Fate::{Implied, Refused, Restored};

/// Every mnemonic of Linux 6.18, in the kernel's bit order.
pub const TABLE: &[(&str, Fate)] = &[
    ("rd", Implied),
    ("wr", Implied),
    ("ex", Implied),
    ("sh", Implied),
    // The most access mprotect may grant: kept in `Vma::may`, restored by the file's open mode.
    ("mr", Restored),
    ("mw", Restored),
    ("me", Restored),
    ("ms", Implied),
    ("gd", Restored),
    ("pf", Refused("PFN-mapped memory")),
    // Linux 6.18: the area has had a guard region (see `mem::guards`).
    ("gu", Restored),
    ("lo", Restored),
    ("io", Refused("I/O memory")),
    ("sr", Restored),
    ("rr", Restored),
    ("dc", Restored),
    // Passed over for hugetlb areas and AIO rings, which have it too and are made again their own
    // way (`mem::hugetlb`, `mem::aio`).
    ("de", Refused("a driver mapping that cannot grow (VM_DONTEXPAND)")),
    ("lf", Restored),
    // Accounted to the commit limit: private writable areas not mapped MAP_NORESERVE.
    ("ac", Implied),
    ("nr", Restored),
    // Hugetlb memory: mapped again with MAP_HUGETLB and its page size, or of the hugetlbfs file
    // or MFD_HUGETLB memfd made or found again (see `mem::hugetlb`).
    ("ht", Restored),
    ("sf", Refused("synchronous DAX memory (MAP_SYNC)")),
    ("ar", Refused("memory with a reserved cache type (VM_PAT)")),
    ("wf", Restored),
    ("dd", Restored),
    ("bt", Refused("branch target memory (arm64 BTI)")),
    // Soft-dirty tracking: every restored area is new, so soft-dirty, as after a fresh mmap.
    ("sd", Implied),
    ("mm", Refused("mixed-map driver memory")),
    ("hg", Restored),
    ("nh", Restored),
    ("mg", Restored),
    ("um", Refused("userfaultfd-registered memory")),
    ("uw", Refused("userfaultfd-registered memory (write-protect, not by a stasis pre-dump's holder)")),
    ("mt", Refused("memory tagged memory (arm64 MTE)")),
    ("ui", Refused("userfaultfd-registered memory (minor faults)")),
    ("ss", Refused("a shadow stack")),
    ("dp", Restored),
    // Sealed (mseal): sealed again as the last change to the task's memory (`mem::seal`).
    ("sl", Restored),
];

/// The fate of mnemonic `flag`: refused when the table does not know it.
pub fn fate(flag: &[u8; 2]) -> Fate {
    TABLE
        .iter()
        .find(|(name, _)| name.as_bytes() == flag)
        .map_or(Refused("a VmFlags flag stasis does not know"), |&(_, fate)| fate)
}

/// The first flag of `e` that refuses the area, with its reason; flags `allowed` says are fine in
/// this area are passed over.
pub fn refused(e: &MapEntry, allowed: impl Fn(&str) -> bool) -> Option<(String, &'static str)> {
    e.vm_flags.0.iter().find_map(|f| match fate(f) {
        Refused(why) if !allowed(&String::from_utf8_lossy(f)) => Some((String::from_utf8_lossy(f).into_owned(), why)),
        _ => None,
    })
}

/// The madvise state of an area: (mnemonic, `MADV_BIT_*`, advice).
const ADVICE: [(&str, u32, i32); 8] = [
    ("dc", model::MADV_BIT_DONTFORK, libc::MADV_DONTFORK),
    ("dd", model::MADV_BIT_DONTDUMP, libc::MADV_DONTDUMP),
    ("hg", model::MADV_BIT_HUGEPAGE, libc::MADV_HUGEPAGE),
    ("nh", model::MADV_BIT_NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
    ("wf", model::MADV_BIT_WIPEONFORK, libc::MADV_WIPEONFORK),
    ("mg", model::MADV_BIT_MERGEABLE, libc::MADV_MERGEABLE),
    ("sr", model::MADV_BIT_SEQUENTIAL, libc::MADV_SEQUENTIAL),
    ("rr", model::MADV_BIT_RANDOM, libc::MADV_RANDOM),
];

/// The `MADV_BIT_*` bits of an area.
pub fn madvise_bits(e: &MapEntry) -> u32 {
    ADVICE.iter().filter(|(f, _, _)| e.vm_flags.has(f)).fold(0, |acc, (_, bit, _)| acc | bit)
}

/// The `may` protection of an area (`mr`, `mw`, `me`).
pub fn may_prot(e: &MapEntry) -> u32 {
    [("mr", libc::PROT_READ), ("mw", libc::PROT_WRITE), ("me", libc::PROT_EXEC)]
        .iter()
        .filter(|(f, _)| e.vm_flags.has(f))
        .fold(0, |acc, (_, p)| acc | *p as u32)
}

/// The mmap flags beyond sharing an area is mapped with again: MAP_GROWSDOWN, MAP_NORESERVE.
pub fn map_flags(e: &MapEntry) -> u32 {
    let mut flags = 0;
    if e.vm_flags.has("gd") {
        flags |= libc::MAP_GROWSDOWN as u32;
    }
    if e.vm_flags.has("nr") {
        flags |= libc::MAP_NORESERVE as u32;
    }
    flags
}

/// `MLOCK_ONFAULT` for `mlock2`.
const MLOCK_ONFAULT: u32 = 1;

/// After the fill: the madvise state and the lock of every area of `vmas`; each advice in one call
/// per stretch of contiguous areas that have it.
pub fn restore_all(inj: &mut dyn Remote, vmas: &[&Vma]) -> Result<()> {
    for (_, bit, advice) in ADVICE {
        let with = vmas.iter().filter(|v| v.madvise & bit != 0).map(|v| (v.start, v.end, ()));
        for (start, end, ()) in super::runs::coalesce(with.collect()) {
            inj.madvise(start, end - start, advice)?;
        }
    }
    for v in vmas.iter().filter(|v| v.locked) {
        inj.mlock2(v.start, v.end - v.start, if v.lock_on_fault { MLOCK_ONFAULT } else { 0 })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{fate, Fate, TABLE};

    #[test]
    fn every_mnemonic_has_one_fate() {
        for (i, (name, _)) in TABLE.iter().enumerate() {
            assert!(TABLE[i + 1..].iter().all(|(other, _)| other != name), "{name} twice");
        }
        assert_eq!(fate(b"dp"), Fate::Restored);
        assert!(matches!(fate(b"ht"), Fate::Restored));
        assert!(matches!(fate(b"??"), Fate::Refused(_)));
        assert!(matches!(fate(b"zz"), Fate::Refused(_)));
    }
}
