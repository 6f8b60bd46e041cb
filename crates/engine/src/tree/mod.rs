//! The process tree: the dump's freeze and walk of it ([`freeze`]), what a child shares with its
//! parent (found with `kcmp` at dump, made again with clone flags at restore), and restore stage 2
//! as a validated [`plan`] of who creates whom. Sessions, groups and their helpers are in
//! `crate::session`.

pub(crate) mod freeze;
pub mod plan;

pub use plan::{plan, Creation, Plan, ProcPlan};

use stasis_image::model::{SHARES_FILES, SHARES_FS, SHARES_SIGHAND, SHARES_VM};
use stasis_sys::Pid;

/// `kcmp` types of the kernel objects a child may share with its parent, their `shares` bits, and
/// the clone flags that share them again.
const SHARED_OBJECTS: [(i32, u32, i32); 4] = [
    (1, SHARES_VM, libc::CLONE_VM),
    (2, SHARES_FILES, libc::CLONE_FILES),
    (3, SHARES_FS, libc::CLONE_FS),
    (4, SHARES_SIGHAND, libc::CLONE_SIGHAND),
];

/// What a child shares with its parent (`kcmp` of its mm, fd table, fs info, signal handlers): made
/// by clone without CLONE_THREAD, restored by forking it with the same flags.
pub fn sharing(child: Pid, parent: Pid) -> u32 {
    SHARED_OBJECTS
        .iter()
        .filter(|(kind, _, _)| stasis_sys::fd::kcmp(child, parent, *kind, 0, 0).ok() == Some(0))
        .fold(0, |acc, (_, bit, _)| acc | bit)
}

/// The clone flags that give a child what it shares with its parent (`ProcessEntry::shares`).
pub fn clone_flags(shares: u32) -> u64 {
    SHARED_OBJECTS.iter().filter(|(_, bit, _)| shares & bit != 0).fold(0, |acc, (_, _, flag)| acc | *flag as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clone_flags_follow_the_shares_bits() {
        use stasis_image::model::{SHARES_FILES, SHARES_VM};
        assert_eq!(super::clone_flags(0), 0);
        assert_eq!(super::clone_flags(SHARES_VM | SHARES_FILES), (libc::CLONE_VM | libc::CLONE_FILES) as u64);
    }
}
