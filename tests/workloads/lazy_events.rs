//! Three private anonymous areas filled with patterns, for a lazy restore whose pages come only
//! when faulted: once woken, the process drops the first MiB of the first area
//! (madvise(MADV_DONTNEED): it must read zero), unmaps the third, moves the second (mremap), then
//! forks; the child and the parent each check what they hold. Argument: the size of each area in
//! MiB (default 16).

use stasis_tests::raw::{self, Exit, Forked, Mapping};
use stasis_tests::workload::{self, arg, pattern_word, OrFail};
use std::time::Duration;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const DROPPED: usize = 1 << 20;

fn area(len: usize, seed: u64) -> Mapping {
    let m = Mapping::anon(len, RW).or_fail("mmap anonymous");
    m.fill_words(0, len, |i| pattern_word(seed, i));
    m
}

/// What differs from the expected contents, if anything.
fn check(a: &Mapping, b: &Mapping) -> Option<String> {
    if let Some(w) = a.first_word_mismatch(0, DROPPED, |_| 0) {
        return Some(format!("dropped area reads nonzero at word {w}"));
    }
    if let Some(w) = a.first_word_mismatch(DROPPED, a.len() - DROPPED, |i| pattern_word(0xa1, i)) {
        return Some(format!("first area differs at word {w}"));
    }
    b.first_word_mismatch(0, b.len(), |i| pattern_word(0xb2, i)).map(|w| format!("moved area differs at word {w}"))
}

fn main() {
    let mut s = workload::start();
    let len = arg::<usize>(1, 16) << 20;
    let a = area(len, 0xa1);
    let b = area(len, 0xb2);
    let c = area(len, 0xc3);
    s.ready();
    s.wait_for_wake();
    a.discard(0, DROPPED).or_fail("madvise(MADV_DONTNEED)");
    drop(c);
    let b = b.remap_moved().or_fail("mremap");
    match raw::fork().or_fail("fork") {
        Forked::Child => raw::raw_exit(if check(&a, &b).is_none() { 0 } else { 1 }),
        Forked::Parent(child) => {
            let exit = loop {
                match raw::try_waitpid(child).or_fail("waitpid") {
                    Some(exit) => break exit,
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            s.checker.check(exit == Exit::Code(0), || format!("the forked child found its memory wrong: {exit:?}"));
        }
    }
    let problem = check(&a, &b);
    s.checker.check(problem.is_none(), || problem.clone().unwrap_or_default());
    s.finish()
}
