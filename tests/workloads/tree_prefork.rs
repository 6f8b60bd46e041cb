//! A "prefork server": the root fills a big private anonymous mapping (argument 1, in MiB,
//! default 256) with a pattern, then forks 8 workers, which only read it, so all 9 processes share
//! its pages copy-on-write; each worker writes a small area of its own (64 KiB at its own offset
//! inside the mapping), which only it sees. After the wake every process checks the whole mapping:
//! the root's pattern everywhere, except, in a worker, its own area, which holds its own pattern.
//! The test measures the sum of the processes' Pss before the dump and after the restore.

use stasis_tests::raw::{self, Mapping};
use stasis_tests::workload::{self, arg, Checker, OrFail, TreeChild, TreeParent, WAKE};
use std::time::Duration;

const WORKERS: usize = 8;
const AREA: usize = 64 * 1024;
const ROOT_SEED: u64 = 0x9e4f_0000_0000_0001;

fn worker_seed(i: usize) -> u64 {
    0x7070_0000 + i as u64
}

/// The offset of worker `i`'s own area: spread over the mapping, page aligned.
fn area_offset(i: usize, len: usize) -> usize {
    (len / (WORKERS + 1) * (i + 1)) / raw::PAGE * raw::PAGE
}

fn root_word(i: usize) -> u64 {
    workload::pattern_word(ROOT_SEED, i)
}

/// Checks `len` bytes at `off` of `map` against `word`.
fn check_range(c: &mut Checker, what: &str, map: &Mapping, off: usize, len: usize, word: impl Fn(usize) -> u64) {
    if let Some(i) = map.first_word_mismatch(off, len, word) {
        c.check(false, || format!("{what}: word at offset {:#x} differs", i * 8));
    }
}

/// Checks the whole mapping: the root's pattern, except `own` (offset, seed) if given.
fn check_mapping(c: &mut Checker, map: &Mapping, own: Option<(usize, u64)>) {
    match own {
        None => check_range(c, "shared pattern", map, 0, map.len(), root_word),
        Some((off, seed)) => {
            check_range(c, "shared pattern before the own area", map, 0, off, root_word);
            check_range(c, "own area", map, off, AREA, |i| workload::pattern_word(seed, i - off / 8));
            let end = off + AREA;
            check_range(c, "shared pattern after the own area", map, end, map.len() - end, root_word);
        }
    }
}

/// Worker `i`: writes its own area, says ready, waits, checks, reports.
fn worker(i: usize, map: &Mapping, parent: TreeParent) -> i32 {
    let mut s = workload::start();
    let off = area_offset(i, map.len());
    map.fill_words(off, AREA, |w| workload::pattern_word(worker_seed(i), w - off / 8));
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    check_mapping(&mut s.checker, map, Some((off, worker_seed(i))));
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let mib: usize = arg(1, 256);
    let map = Mapping::anon(mib << 20, libc::PROT_READ | libc::PROT_WRITE).or_fail("mmap");
    map.fill_words(0, map.len(), root_word);
    let kids: Vec<TreeChild> =
        (0..WORKERS).map(|i| workload::fork_child(&format!("worker {i}"), |link| worker(i, &map, link))).collect();
    for kid in &kids {
        kid.line().or_fail(&format!("ready line of {}", kid.name));
    }
    let pids: Vec<i32> = kids.iter().map(|k| k.pid).collect();
    let awake = workload::wait_processes_in(&pids, &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep at READY (pid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for kid in &kids {
        c.ok(&format!("wake {}", kid.name), raw::kill(kid.pid, WAKE));
    }
    check_mapping(c, &map, None);
    for kid in kids {
        kid.collect(c);
    }
    s.finish()
}
