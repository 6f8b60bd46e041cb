//! Hugetlb memory (2 MiB pages) in a parent and its child (argument 1: `tree`, the only case).
//!
//! The parent maps a private `MAP_HUGETLB` area of four huge pages and
//! fills three of them (the last stays untouched, not populated), and a shared one
//! (`MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB`) of two huge pages whose first it fills, then forks
//! a child. The child writes its own pattern over the second huge page of the private area (a
//! copy of its own) and over the second huge page of the shared one (seen by the parent). After
//! the restore each process checks every byte of both areas, that both are still hugetlb (smaps
//! `KernelPageSize` 2048 kB and `ht` in VmFlags), and that the shared one is still shared: the
//! child writes a word the parent must then read, and the parent one the child must read.
//!
//! Prints `SKIP` when the huge pages cannot be had (the test reserves them in
//! `/proc/sys/vm/nr_hugepages`).

use stasis_tests::raw::{self, Mapping};
use stasis_tests::workload::{self, arg, pattern_word, Checker, OrFail, TreeParent, WAKE};

const HUGE: usize = 2 << 20;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
/// `MAP_HUGETLB` with 2 MiB pages (log2 21 at `MAP_HUGE_SHIFT`, 26).
const HUGE_2M: i32 = libc::MAP_HUGETLB | (21 << 26);
const PRIVATE_PAGES: usize = 4;
const SHARED_PAGES: usize = 2;
const PARENT_SEED: u64 = 0x4875_6765_0001;
const SHARED_SEED: u64 = 0x4875_6765_0002;
const CHILD_SEED: u64 = 0x4875_6765_0003;
const CHILD_SHARED_SEED: u64 = 0x4875_6765_0004;
/// The words of the shared area's last page the two processes write after the restore.
const FROM_CHILD: usize = SHARED_PAGES * HUGE - 16;
const FROM_PARENT: usize = SHARED_PAGES * HUGE - 8;
const CHILD_WORD: u64 = 0xc417_d000_0000_0001;
const PARENT_WORD: u64 = 0x9a4e_0700_0000_0002;

/// Maps `pages` huge pages with `flags`, or prints SKIP when the pool has none to give.
fn map_huge(pages: usize, flags: i32, file: Option<&std::fs::File>) -> Mapping {
    match Mapping::with_flags(pages * HUGE, RW, flags, file, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)) => {
            workload::skip(&format!("no {pages} free 2 MiB huge pages: {e}"))
        }
        r => r.or_fail("mmap huge pages"),
    }
}

/// Checks huge page `page` of `m` holds the pattern of `seed` (`None`: zeros).
fn check_page(c: &mut Checker, what: &str, m: &Mapping, page: usize, seed: Option<u64>) {
    let want = |i: usize| seed.map_or(0, |s| pattern_word(s, i));
    let bad = m.first_word_mismatch(page * HUGE, HUGE, want);
    c.check(bad.is_none(), || format!("{what}: huge page {page} differs at word {bad:?}"));
}

/// The first half of the shared area's second huge page holds what the child wrote before the dump.
fn check_child_half(c: &mut Checker, what: &str, shared: &Mapping) {
    let bad = shared.first_word_mismatch(HUGE, HUGE / 2, |i| pattern_word(CHILD_SHARED_SEED, i));
    c.check(bad.is_none(), || format!("{what}: the child's half page differs at word {bad:?}"));
}

/// The area at `addr` is hugetlb of 2 MiB pages in `/proc/self/smaps`.
fn check_hugetlb(c: &mut Checker, what: &str, addr: usize) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").or_fail("read /proc/self/smaps");
    let head = format!("{addr:x}-");
    let Some(at) = smaps.find(&format!("\n{head}")).map(|i| i + 1).or(smaps.starts_with(&head).then_some(0)) else {
        return c.check(false, || format!("{what}: no area at {addr:#x} in smaps"));
    };
    let entry: Vec<&str> = smaps[at..].lines().take_while(|l| !l.starts_with("VmFlags")).collect();
    let flags = smaps[at..].lines().find(|l| l.starts_with("VmFlags")).unwrap_or("");
    let size = entry.iter().find(|l| l.starts_with("KernelPageSize")).map(|l| l.split_whitespace().nth(1));
    c.same(&format!("{what}: KernelPageSize (kB)"), &Some(Some("2048")), &size);
    c.check(flags.split_whitespace().any(|f| f == "ht"), || format!("{what}: no ht in {flags:?}"));
}

fn child(link: TreeParent, private: &Mapping, shared: &Mapping) -> i32 {
    let mut s = workload::start();
    private.fill_words(HUGE, HUGE, |i| pattern_word(CHILD_SEED, i));
    shared.fill_words(HUGE, HUGE / 2, |i| pattern_word(CHILD_SHARED_SEED, i));
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    for (page, seed) in [(0, Some(PARENT_SEED)), (1, Some(CHILD_SEED)), (2, Some(PARENT_SEED)), (3, None)] {
        check_page(c, "child's private area", private, page, seed);
    }
    check_page(c, "child's shared area", shared, 0, Some(SHARED_SEED));
    check_child_half(c, "child's shared area", shared);
    check_hugetlb(c, "child's private area", private.addr());
    check_hugetlb(c, "child's shared area", shared.addr());
    shared.write(FROM_CHILD, &CHILD_WORD.to_le_bytes());
    link.send("wrote\n").or_fail("wrote line");
    let line = link.line();
    c.same("line from the parent", &Some("wrote".to_string()), &line.ok());
    let got = u64::from_le_bytes(shared.read(FROM_PARENT, 8).try_into().unwrap_or_default());
    c.same("word the parent wrote into the shared area after the restore", &PARENT_WORD, &got);
    link.report(s.into_checker())
}

fn tree_case(s: &mut workload::Session) {
    let private = map_huge(PRIVATE_PAGES, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | HUGE_2M, None);
    let shared = map_huge(SHARED_PAGES, libc::MAP_SHARED | libc::MAP_ANONYMOUS | HUGE_2M, None);
    private.fill_words(0, 3 * HUGE, |i| pattern_word(PARENT_SEED, i));
    shared.fill_words(0, HUGE, |i| pattern_word(SHARED_SEED, i));
    let kid = workload::fork_child("child", |link| child(link, &private, &shared));
    kid.expect_line(&mut s.checker, "child ready", "ready");
    let awake = workload::wait_processes_in(&[kid.pid], &['S'], std::time::Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("child not asleep at READY: {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    for (page, seed) in [(0, Some(PARENT_SEED)), (1, Some(PARENT_SEED)), (2, Some(PARENT_SEED)), (3, None)] {
        check_page(c, "parent's private area", &private, page, seed);
    }
    check_page(c, "parent's shared area", &shared, 0, Some(SHARED_SEED));
    check_child_half(c, "parent's shared area", &shared);
    check_hugetlb(c, "parent's private area", private.addr());
    check_hugetlb(c, "parent's shared area", shared.addr());
    kid.expect_line(c, "child wrote", "wrote");
    let got = u64::from_le_bytes(shared.read(FROM_CHILD, 8).try_into().unwrap_or_default());
    c.same("word the child wrote into the shared area after the restore", &CHILD_WORD, &got);
    shared.write(FROM_PARENT, &PARENT_WORD.to_le_bytes());
    c.ok("wrote line", kid.send("wrote\n"));
    kid.collect(c);
}

fn main() {
    let mut s = workload::start();
    match arg::<String>(1, "tree".into()).as_str() {
        "tree" => tree_case(&mut s),
        other => Err(other).or_fail("unknown case"),
    }
    s.finish()
}
