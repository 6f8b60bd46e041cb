//! Fewer injected calls for the layout: every injected call is a round trip through the scheduler
//! (two context switches), so a process of many small areas (a thread's stack and its guard, glibc's
//! arenas) paid one `mmap`, one `mprotect` and one `madvise` per area. Here:
//!
//! - a stretch of contiguous private anonymous areas with the same mmap flags is mapped by one
//!   `mmap(PROT_NONE)`, then each area gets its fill protection with `mprotect` (areas next to each
//!   other with the same protection in one call). The areas end up exactly as when mapped one by one:
//!   the protection splits them at the same boundaries, and `mprotect` to a writable protection
//!   charges the commit (`VM_ACCOUNT`, `ac` in smaps) as `mmap` with it does;
//! - the final `mprotect` and each `madvise` advice cover, in one call, every stretch of contiguous
//!   areas that get the same one.

use crate::mem::{fill_prot, kind};
use stasis_image::model::{Vma, VmaKind};
use std::collections::HashSet;

/// Contiguous `(start, end, value)` ranges with the same value merged into one; sorted by start.
pub fn coalesce<T: PartialEq + Copy>(mut ranges: Vec<(u64, u64, T)>) -> Vec<(u64, u64, T)> {
    ranges.sort_unstable_by_key(|r| r.0);
    let mut out: Vec<(u64, u64, T)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.1 == r.0 && last.2 == r.2 => last.1 = r.1,
            _ => out.push(r),
        }
    }
    out
}

/// Whether area `v` may be mapped together with its neighbours (see the module docs): private
/// anonymous, unnamed (a name is set per area), neither growing down nor droppable, not kept.
fn joinable(v: &Vma, kept: &HashSet<u64>) -> bool {
    kind(v) == VmaKind::Anon
        && v.flags & libc::MAP_PRIVATE as u32 != 0
        && v.flags & libc::MAP_GROWSDOWN as u32 == 0
        && !v.droppable
        && !v.name.starts_with("[anon:")
        && !kept.contains(&v.start)
}

/// A stretch of areas mapped by one `mmap`.
#[derive(Debug, PartialEq, Eq)]
pub struct Stretch {
    pub start: u64,
    pub end: u64,
    pub flags: u32,
    /// The fill protections to set after the `mmap(PROT_NONE)`: `(start, end, prot)`, coalesced,
    /// without the areas that stay `PROT_NONE`.
    pub prots: Vec<(u64, u64, u32)>,
}

/// Split the areas `vmas` (address order, no special ones) into what is mapped one by one (`Err`
/// with the area) and stretches of two or more joinable areas (`Ok`).
pub fn stretches<'a>(vmas: &[&'a Vma], filled: &HashSet<u64>, kept: &HashSet<u64>) -> Vec<Result<Stretch, &'a Vma>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < vmas.len() {
        let first = vmas[i];
        let mut j = i + 1;
        if joinable(first, kept) {
            while j < vmas.len()
                && joinable(vmas[j], kept)
                && vmas[j].start == vmas[j - 1].end
                && vmas[j].flags == first.flags
            {
                j += 1;
            }
        }
        if j - i < 2 {
            out.push(Err(first));
        } else {
            let group = &vmas[i..j];
            let prots = group
                .iter()
                .map(|v| (v.start, v.end, fill_prot(v, filled.contains(&v.start))))
                .filter(|r| r.2 != libc::PROT_NONE as u32)
                .collect();
            out.push(Ok(Stretch {
                start: first.start,
                end: group[group.len() - 1].end,
                flags: first.flags,
                prots: coalesce(prots),
            }));
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u32 = (libc::PROT_READ | libc::PROT_WRITE) as u32;
    const PRIVATE: u32 = libc::MAP_PRIVATE as u32;

    fn anon(start: u64, end: u64, prot: u32) -> Vma {
        Vma { start, end, prot, flags: PRIVATE, kind: VmaKind::Anon as i32, ..Default::default() }
    }

    #[test]
    fn coalesce_merges_only_touching_ranges_with_the_same_value() {
        let r = vec![
            (0x3000, 0x4000, 1),
            (0x1000, 0x2000, 1),
            (0x2000, 0x3000, 1),
            (0x5000, 0x6000, 1),
            (0x6000, 0x7000, 2),
        ];
        assert_eq!(coalesce(r), vec![(0x1000, 0x4000, 1), (0x5000, 0x6000, 1), (0x6000, 0x7000, 2)]);
    }

    #[test]
    fn guard_and_stack_pairs_become_one_stretch() {
        let (g1, s1, g2, s2) =
            (anon(0x1000, 0x2000, 0), anon(0x2000, 0x5000, RW), anon(0x5000, 0x6000, 0), anon(0x6000, 0x9000, RW));
        let filled: HashSet<u64> = [0x2000].into();
        let all = [&g1, &s1, &g2, &s2];
        let out = stretches(&all, &filled, &HashSet::new());
        let want = Stretch {
            start: 0x1000,
            end: 0x9000,
            flags: PRIVATE,
            prots: vec![(0x2000, 0x5000, RW), (0x6000, 0x9000, RW)],
        };
        assert_eq!(out, vec![Ok(want)]);
    }

    #[test]
    fn gaps_other_flags_names_and_kept_areas_break_stretches() {
        let a = anon(0x1000, 0x2000, RW);
        let gap = anon(0x3000, 0x4000, RW);
        let mut noreserve = anon(0x4000, 0x5000, RW);
        noreserve.flags |= libc::MAP_NORESERVE as u32;
        let mut named = anon(0x5000, 0x6000, RW);
        named.name = "[anon:x]".into();
        let kept_one = anon(0x6000, 0x7000, RW);
        let kept: HashSet<u64> = [0x6000].into();
        let all = [&a, &gap, &noreserve, &named, &kept_one];
        let out = stretches(&all, &HashSet::new(), &kept);
        assert!(out.iter().all(|s| s.is_err()), "{out:?}");
        assert_eq!(out.len(), 5);
    }
}
