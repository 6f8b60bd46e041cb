//! A large heap filled with a pattern. Arguments: size in MiB (default 256), then optionally
//! `pidfd-outside` (also hold a pidfd of pid 1, which stasis refuses as a process outside the tree,
//! only after inspecting the whole tree). Used for the 256 MiB round trip and, with 8 MiB, for the
//! dump that runs out of space; with `pidfd-outside`, for the refused dump that must leave no page.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, pattern_word, OrFail};

fn main() {
    let mut s = workload::start();
    let mib: usize = arg(1, 256);
    let _outside = match std::env::args().nth(2).as_deref() {
        None => None,
        Some("pidfd-outside") => Some(raw::pidfd_open(1, 0).or_fail("pidfd_open(1)")),
        Some(other) => workload::unknown_mode(other, "pidfd-outside"),
    };
    let words = mib << 17;
    let mut heap = vec![0u64; words];
    for (i, w) in heap.iter_mut().enumerate() {
        *w = pattern_word(0xb16, i);
    }
    s.ready();
    s.wait_for_wake();
    let bad = heap.iter().enumerate().position(|(i, &w)| w != pattern_word(0xb16, i));
    s.checker.check(bad.is_none(), || format!("{mib} MiB heap differs at byte {:?}", bad.map(|i| i * 8)));
    let count = heap.iter().enumerate().filter(|&(i, &w)| w != pattern_word(0xb16, i)).count();
    s.checker.check(count == 0, || format!("{count} words of {words} differ"));
    s.finish()
}
