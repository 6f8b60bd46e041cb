//! A large heap filled with a pattern. Argument: size in MiB (default 256). Used for the 256 MiB
//! round trip and, with 8 MiB, for the dump that runs out of space.

use stasis_tests::workload::{self, arg, pattern_word};

fn main() {
    let mut s = workload::start();
    let mib: usize = arg(1, 256);
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
