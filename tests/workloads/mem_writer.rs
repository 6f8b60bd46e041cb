//! Memory that keeps changing while it is migrated: an area of MiB (argument 1, default 32) whose
//! pages are rewritten one after another at RATE MiB/s (argument 2, default 16), each with the
//! pattern of a new seed (a counter), the seed of every page kept beside it. SIGUSR1 stops the
//! writes and verifies every page against its seed, and the counter against the pages written.

use stasis_tests::raw::{self, Mapping, SigSet, PAGE};
use stasis_tests::workload::{self, pattern_word, OrFail, WAKE};
use std::time::{Duration, Instant};

fn main() {
    let mut s = workload::start();
    let mib: usize = workload::arg(1, 32);
    let rate: f64 = workload::arg(2, 16.0);
    let area = Mapping::anon(mib << 20, libc::PROT_READ | libc::PROT_WRITE).or_fail("mmap");
    let pages = area.len() / PAGE;
    let mut seeds = vec![0u64; pages];
    let mut counter: u64 = 0;
    let write = |seeds: &mut [u64], counter: &mut u64| {
        *counter += 1;
        let p = (*counter as usize - 1) % pages;
        seeds[p] = *counter;
        let seed = *counter;
        area.fill_words(p * PAGE, PAGE, |w| pattern_word(seed, w));
    };
    (0..pages).for_each(|_| write(&mut seeds, &mut counter));
    s.ready();
    raw::sigprocmask(libc::SIG_UNBLOCK, SigSet::of(&[WAKE])).or_fail("unblock SIGUSR1");
    let per_second = rate * (1 << 20) as f64 / PAGE as f64;
    let (mut since, mut done) = (Instant::now(), 0u64);
    while !s.woke() {
        let due = (since.elapsed().as_secs_f64() * per_second) as u64;
        if due > done + per_second as u64 {
            // Behind by more than a second (the process was frozen or moved): start over from now.
            (since, done) = (Instant::now(), 0);
            continue;
        }
        if done < due {
            write(&mut seeds, &mut counter);
            done += 1;
            continue;
        }
        let _ = raw::nanosleep(Duration::from_millis(1));
    }
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[WAKE])).or_fail("block SIGUSR1");
    let mut bad = 0;
    for (p, &seed) in seeds.iter().enumerate() {
        if area.first_word_mismatch(p * PAGE, PAGE, |w| pattern_word(seed, w)).is_some() {
            bad += 1;
        }
    }
    s.checker.check(bad == 0, || format!("{bad} of {pages} pages differ from their seed"));
    let newest = seeds.iter().copied().max().unwrap_or(0);
    s.checker.same("the counter and the newest page's seed", &counter, &newest);
    s.checker.note(format!("{counter} page writes"));
    s.finish()
}
