//! The state of memory areas beyond their protection comes back exactly: every area's `VmFlags`
//! (from `/proc/self/smaps`) must read the same after the restore as before, its bytes too, and
//! the behaviour behind each flag must hold. Argument 1 picks the case:
//!
//! - `advice`: one area per madvise (DONTFORK, DONTDUMP, HUGEPAGE, NOHUGEPAGE, WIPEONFORK,
//!   MERGEABLE, SEQUENTIAL, RANDOM), `mlock`, `mlock2(MLOCK_ONFAULT)` (its untouched pages stay
//!   out of memory), MAP_NORESERVE, MAP_DROPPABLE, and one area with several at once.
//! - `shared-prot`: two shared mappings of one file open read-write, one read-only and one
//!   writable: the read-only one can still be made writable with `mprotect`, and a write through
//!   it shows in the other; a shared mapping of a file open read-only still cannot (EACCES).
//! - `tree`: WIPEONFORK and MAP_DROPPABLE areas and a DONTFORK area in a parent and a child that
//!   wrote its own bytes into them after the fork: each sees its own bytes after the restore, and a
//!   process forked after the restore gets them wiped and has no DONTFORK area, as before.
//! - `guard`: guard regions (`MADV_GUARD_INSTALL`) in an anonymous area, in a parent and in a
//!   child that removed one of the parent's and installed one of its own: they stay guard regions
//!   (pagemap bit 58, EIO through `/proc/self/mem`), the pages around them keep their bytes.
//! - `mm-wide`: `mlockall(MCL_FUTURE | MCL_ONFAULT)`, membarrier registrations and KSM merge-any
//!   (`PR_SET_MEMORY_MERGE`) in a parent, none of them in a child forked before: a new mapping is
//!   locked on fault in the parent only, the registrations and merge-any are the parent's only.
//! - `no-vdso`: a process that unmapped its `[vdso]`, `[vvar]` and `[vvar_vclock]` (stasis
//!   finds its `syscall` instruction elsewhere), and a child forked after: none of them is mapped
//!   in either after the restore, and the clock still works as a system call.
//! - `sealed`: areas sealed with `mseal` (one writable, one made read-only first), in a parent and
//!   in a child forked after the sealing, which sealed one of its own: their VmFlags show `sl`
//!   again, their bytes are kept, and `munmap`/`mprotect` of them still fail with EPERM. Prints
//!   `SKIP` when the kernel has no mseal.
//! - `hugetlb-anon`: a huge page mapped `MAP_HUGETLB`; the process checks its bytes when woken
//!   after the restore. Prints `SKIP` when no huge page is free. (MFD_HUGETLB memfds and
//!   hugetlbfs files: the `hugetlb` workload.)

use stasis_tests::raw::{self, Mapping, PAGE};
use stasis_tests::workload::{self, arg, pattern_word, Checker, OrFail, TreeParent, WAKE};
use std::fs::File;
use std::os::unix::fs::FileExt;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const PRIVATE_ANON: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
const MAP_DROPPABLE: i32 = 0x08;
const MLOCK_ONFAULT: u32 = 1;
const PR_SET_MEMORY_MERGE: i32 = 67;
const PR_GET_MEMORY_MERGE: i32 = 68;
const MEMBARRIER_CMD_GET_REGISTRATIONS: i32 = 1 << 9;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: i32 = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: i32 = 1 << 4;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 1 << 6;
const PM_GUARD_REGION: u64 = 1 << 58;

/// The `VmFlags` of the area holding `addr`, and its Rss in kB.
fn vm_flags(addr: usize) -> (Vec<String>, u64) {
    let text = std::fs::read_to_string("/proc/self/smaps").or_fail("read /proc/self/smaps");
    let mut inside = false;
    let mut rss = 0;
    for line in text.lines() {
        let first = line.split(' ').next().unwrap_or("");
        if let Some((s, e)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (s, e) = (usize::from_str_radix(s, 16).unwrap_or(0), usize::from_str_radix(e, 16).unwrap_or(0));
            inside = s <= addr && addr < e;
        } else if inside && first == "Rss:" {
            rss = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if inside && first == "VmFlags:" {
            return (line.split_whitespace().skip(1).map(str::to_string).collect(), rss);
        }
    }
    Err::<(Vec<String>, u64), _>(format!("no area at {addr:#x}")).or_fail("read /proc/self/smaps")
}

fn flags_of(addr: usize) -> Vec<String> {
    vm_flags(addr).0
}

/// A named area, the flags it must keep and the seed of its bytes (`None`: not checked).
struct Area {
    name: &'static str,
    map: Mapping,
    flags: Vec<String>,
    seed: Option<u64>,
}

impl Area {
    fn new(name: &'static str, map: Mapping, seed: Option<u64>) -> Area {
        if let Some(seed) = seed {
            map.fill_words(0, map.len(), |i| pattern_word(seed, i));
        }
        Area { name, flags: Vec::new(), map, seed }
    }

    /// Records the flags as they are now (after every madvise and lock).
    fn settle(mut self) -> Area {
        self.flags = flags_of(self.map.addr());
        self
    }

    fn check(&self, c: &mut Checker) {
        c.same(&format!("{}: VmFlags", self.name), &self.flags, &flags_of(self.map.addr()));
        if let Some(seed) = self.seed {
            let bad = self.map.first_word_mismatch(0, self.map.len(), |i| pattern_word(seed, i));
            c.check(bad.is_none(), || format!("{}: word {bad:?} differs", self.name));
        }
    }
}

fn anon(pages: usize) -> Mapping {
    Mapping::with_flags(pages * PAGE, RW, PRIVATE_ANON, None, 0).or_fail("mmap")
}

fn advised(name: &'static str, advice: &[i32], seed: u64) -> Area {
    let a = Area::new(name, anon(16), Some(seed));
    for &adv in advice {
        a.map.advise(0, a.map.len(), adv).or_fail(name);
    }
    a
}

fn droppable(pages: usize) -> Option<Mapping> {
    match Mapping::with_flags(pages * PAGE, RW, MAP_DROPPABLE | libc::MAP_ANONYMOUS, None, 0) {
        Ok(m) => Some(m),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(524)) => None,
        Err(e) => Err(e).or_fail("mmap MAP_DROPPABLE"),
    }
}

fn advice_case(s: &mut workload::Session) {
    let mut areas = vec![
        advised("dontfork", &[libc::MADV_DONTFORK], 1),
        advised("dontdump", &[libc::MADV_DONTDUMP], 2),
        advised("hugepage", &[libc::MADV_HUGEPAGE], 3),
        advised("nohugepage", &[libc::MADV_NOHUGEPAGE], 4),
        advised("wipeonfork", &[libc::MADV_WIPEONFORK], 5),
        advised("mergeable", &[libc::MADV_MERGEABLE], 6),
        advised("sequential", &[libc::MADV_SEQUENTIAL], 7),
        advised("random", &[libc::MADV_RANDOM], 8),
        advised("several", &[libc::MADV_RANDOM, libc::MADV_DONTDUMP, libc::MADV_WIPEONFORK], 9),
    ];
    let locked = Area::new("mlock", anon(16), Some(10));
    raw::mlock2(&locked.map, 0).or_fail("mlock");
    areas.push(locked);
    // Locked on fault: only the two pages written are in memory, and stay the only ones.
    let onfault = Area::new("mlock onfault", anon(64), None);
    raw::mlock2(&onfault.map, MLOCK_ONFAULT).or_fail("mlock2 onfault");
    onfault.map.write(0, b"first");
    onfault.map.write(10 * PAGE, b"second");
    let onfault_rss = vm_flags(onfault.map.addr()).1;
    areas.push(onfault);
    let noreserve =
        Mapping::with_flags(16 * PAGE, RW, PRIVATE_ANON | libc::MAP_NORESERVE, None, 0).or_fail("mmap noreserve");
    areas.push(Area::new("noreserve", noreserve, Some(11)));
    match droppable(16) {
        Some(m) => areas.push(Area::new("droppable", m, Some(12))),
        None => s.checker.note("MAP_DROPPABLE not supported here".into()),
    }
    let areas: Vec<Area> = areas.into_iter().map(Area::settle).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for a in &areas {
        a.check(c);
    }
    let onfault = areas.iter().find(|a| a.name == "mlock onfault").expect("made above");
    c.same("mlock onfault: Rss kB", &onfault_rss, &vm_flags(onfault.map.addr()).1);
    c.same("mlock onfault: bytes", &b"second".to_vec(), &onfault.map.read(10 * PAGE, 6));
}

fn shared_prot_case(s: &mut workload::Session) {
    let dir = workload::work_dir();
    let path = dir.join("shared-prot");
    let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).or_fail("create");
    file.write_all_at(&[7u8; 4 * PAGE], 0).or_fail("write file");
    let ro = Mapping::with_flags(4 * PAGE, libc::PROT_READ, libc::MAP_SHARED, Some(&file), 0).or_fail("mmap ro");
    let rw = Mapping::with_flags(4 * PAGE, RW, libc::MAP_SHARED, Some(&file), 0).or_fail("mmap rw");
    let ro_path = dir.join("shared-prot-ro");
    std::fs::write(&ro_path, [9u8; PAGE]).or_fail("write ro file");
    let ro_file = File::open(&ro_path).or_fail("open ro file");
    let only =
        Mapping::with_flags(PAGE, libc::PROT_READ, libc::MAP_SHARED, Some(&ro_file), 0).or_fail("mmap read-only file");
    drop((file, ro_file));
    let before = [flags_of(ro.addr()), flags_of(rw.addr()), flags_of(only.addr())];
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same(
        "VmFlags of the three mappings",
        &before,
        &[flags_of(ro.addr()), flags_of(rw.addr()), flags_of(only.addr())],
    );
    if c.ok("mprotect the read-only mapping of the read-write file", ro.protect(0, PAGE, RW)).is_some() {
        ro.write(100, b"through ro");
        c.same("write through the mprotect'ed mapping seen in the other", &b"through ro".to_vec(), &rw.read(100, 10));
    }
    let err = only.protect(0, PAGE, RW).err().and_then(|e| e.raw_os_error());
    c.same("mprotect a mapping of a read-only file writable", &Some(libc::EACCES), &err);
}

/// The areas of the tree case: (wipeonfork, droppable if supported, dontfork).
struct TreeAreas {
    wipe: Mapping,
    drop: Option<Mapping>,
    dontfork: Mapping,
}

const PARENT_SEED: u64 = 0x5eed_0001;
const CHILD_SEED: u64 = 0x5eed_0002;

fn zero(m: &Mapping) -> bool {
    m.first_word_mismatch(0, m.len(), |_| 0).is_none()
}

fn holds(m: &Mapping, seed: u64) -> bool {
    m.first_word_mismatch(0, m.len(), |i| pattern_word(seed, i)).is_none()
}

/// In a process forked after the restore: the wiped areas read as zero, the DONTFORK area is gone.
fn check_fresh_fork(c: &mut Checker, t: &TreeAreas) {
    let kid = workload::fork_child("fork after the restore", |link| {
        let mut k = Checker::default();
        k.check(zero(&t.wipe), || "wipeonfork area not wiped".into());
        if let Some(d) = &t.drop {
            k.check(zero(d), || "droppable area not wiped".into());
        }
        k.check(workload::own_map_at(t.dontfork.addr() as u64).is_none(), || "dontfork area inherited".into());
        link.report(k)
    });
    kid.collect(c);
}

fn check_tree_areas(c: &mut Checker, t: &TreeAreas, seed: u64, flags: &[Vec<String>]) {
    c.check(holds(&t.wipe, seed), || "wipeonfork area: bytes differ".into());
    if let Some(d) = &t.drop {
        c.check(holds(d, seed), || "droppable area: bytes differ".into());
    }
    let now: Vec<Vec<String>> = areas_of(t).iter().map(|&a| flags_of(a)).collect();
    c.same("VmFlags", &flags.to_vec(), &now);
}

fn areas_of(t: &TreeAreas) -> Vec<usize> {
    std::iter::once(t.wipe.addr()).chain(t.drop.as_ref().map(|m| m.addr())).collect()
}

fn tree_child(t: &TreeAreas, link: TreeParent) -> i32 {
    let mut s = workload::start();
    s.checker.check(zero(&t.wipe), || "wipeonfork area not wiped in the child".into());
    if let Some(d) = &t.drop {
        s.checker.check(zero(d), || "droppable area not wiped in the child".into());
    }
    t.wipe.fill_words(0, t.wipe.len(), |i| pattern_word(CHILD_SEED, i));
    if let Some(d) = &t.drop {
        d.fill_words(0, d.len(), |i| pattern_word(CHILD_SEED, i));
    }
    let flags: Vec<Vec<String>> = areas_of(t).iter().map(|&a| flags_of(a)).collect();
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    check_tree_areas(&mut s.checker, t, CHILD_SEED, &flags);
    check_fresh_fork(&mut s.checker, t);
    link.report(s.into_checker())
}

fn tree_case(s: &mut workload::Session) {
    let wipe = anon(16);
    wipe.advise(0, wipe.len(), libc::MADV_WIPEONFORK).or_fail("madvise wipeonfork");
    let t = TreeAreas { wipe, drop: droppable(16), dontfork: anon(4) };
    t.dontfork.advise(0, t.dontfork.len(), libc::MADV_DONTFORK).or_fail("madvise dontfork");
    if t.drop.is_none() {
        s.checker.note("MAP_DROPPABLE not supported here".into());
    }
    for m in std::iter::once(&t.wipe).chain(&t.drop) {
        m.fill_words(0, m.len(), |i| pattern_word(PARENT_SEED, i));
    }
    let flags: Vec<Vec<String>> = areas_of(&t).iter().map(|&a| flags_of(a)).collect();
    let kid = workload::fork_child("child", |link| tree_child(&t, link));
    kid.line().or_fail("ready line of the child");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    check_tree_areas(c, &t, PARENT_SEED, &flags);
    kid.collect(c);
    check_fresh_fork(c, &t);
}

const GUARD_PAGES: usize = 16;

/// Page `p` of `m` is a guard page: pagemap says so and `/proc/self/mem` cannot read it.
fn is_guard(m: &Mapping, p: usize) -> bool {
    let addr = (m.addr() + p * PAGE) as u64;
    let pagemap = File::open("/proc/self/pagemap").or_fail("open pagemap");
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, addr / PAGE as u64 * 8).or_fail("read pagemap");
    let marked = u64::from_ne_bytes(entry) & PM_GUARD_REGION != 0;
    let eio = workload::read_own_memory(addr, 8).err().and_then(|e| e.raw_os_error()) == Some(libc::EIO);
    marked && eio
}

/// Every page of `m`: a guard page if in `guards`, else the pattern of the seed `seed_of` gives.
fn check_guarded(c: &mut Checker, m: &Mapping, guards: &[usize], seed_of: impl Fn(usize) -> u64) {
    for p in 0..GUARD_PAGES {
        if guards.contains(&p) {
            c.check(is_guard(m, p), || format!("page {p}: not a guard page"));
            continue;
        }
        c.check(!is_guard(m, p), || format!("page {p}: a guard page"));
        let seed = seed_of(p);
        let bad = m.first_word_mismatch(p * PAGE, PAGE, |i| pattern_word(seed, i));
        c.check(bad.is_none(), || format!("page {p}: word {bad:?} differs"));
    }
}

fn guard_child(m: &Mapping, link: TreeParent) -> i32 {
    let mut s = workload::start();
    m.advise(10 * PAGE, PAGE, raw::MADV_GUARD_REMOVE).or_fail("remove guard");
    m.fill_words(10 * PAGE, PAGE, |i| pattern_word(CHILD_SEED, i));
    m.advise(5 * PAGE, PAGE, raw::MADV_GUARD_INSTALL).or_fail("install guard");
    let flags = flags_of(m.addr());
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    check_guarded(&mut s.checker, m, &[2, 3, 5], |p| if p == 10 { CHILD_SEED } else { PARENT_SEED });
    s.checker.same("VmFlags of the guarded area", &flags, &flags_of(m.addr()));
    link.report(s.into_checker())
}

fn guard_case(s: &mut workload::Session) {
    let m = anon(GUARD_PAGES);
    m.fill_words(0, m.len(), |i| pattern_word(PARENT_SEED, i));
    match m.advise(2 * PAGE, 2 * PAGE, raw::MADV_GUARD_INSTALL) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => workload::skip("no MADV_GUARD_INSTALL (Linux 6.13)"),
        r => r.or_fail("install guard"),
    }
    m.advise(10 * PAGE, PAGE, raw::MADV_GUARD_INSTALL).or_fail("install guard");
    if !is_guard(&m, 2) {
        workload::skip("pagemap does not report guard regions (Linux 6.14)");
    }
    // An area whose only guard was removed again (it still says `gu` on Linux 6.18).
    let once = anon(4);
    once.fill_words(0, once.len(), |i| pattern_word(CHILD_SEED, i));
    once.advise(PAGE, PAGE, raw::MADV_GUARD_INSTALL).or_fail("install guard");
    once.advise(PAGE, PAGE, raw::MADV_GUARD_REMOVE).or_fail("remove guard");
    once.write(PAGE, b"again");
    let kid = workload::fork_child("child", |link| guard_child(&m, link));
    kid.line().or_fail("ready line of the child");
    let flags = [flags_of(m.addr()), flags_of(once.addr())];
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    check_guarded(c, &m, &[2, 3, 10], |_| PARENT_SEED);
    c.same("VmFlags of the guarded areas", &flags, &[flags_of(m.addr()), flags_of(once.addr())]);
    c.same("area once guarded: page 1", &b"again".to_vec(), &once.read(PAGE, 5));
    let bad = once.first_word_mismatch(2 * PAGE, 2 * PAGE, |i| pattern_word(CHILD_SEED, i));
    c.check(bad.is_none(), || format!("area once guarded: word {bad:?} differs"));
    kid.collect(c);
}

/// The mm-wide state as the process sees it: membarrier registrations, merge-any, and the
/// VmFlags and Rss of a new mapping with one page written.
fn mm_wide_state() -> (i64, i32, Vec<String>, u64) {
    let regs = raw::membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS).or_fail("membarrier get registrations");
    let merge = raw::prctl(PR_GET_MEMORY_MERGE, 0, 0).or_fail("PR_GET_MEMORY_MERGE");
    let fresh = anon(8);
    fresh.write(0, b"x");
    let (flags, rss) = vm_flags(fresh.addr());
    (regs, merge, flags, rss)
}

fn mm_wide_child(link: TreeParent) -> i32 {
    let mut s = workload::start();
    let before = mm_wide_state();
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    s.checker.same("registrations, merge-any, new mapping", &before, &mm_wide_state());
    s.checker.same("registrations", &0, &before.0);
    link.report(s.into_checker())
}

fn mm_wide_case(s: &mut workload::Session) {
    let kid = workload::fork_child("child", mm_wide_child);
    kid.line().or_fail("ready line of the child");
    raw::mlockall(libc::MCL_FUTURE | libc::MCL_ONFAULT).or_fail("mlockall");
    for cmd in [MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE] {
        raw::membarrier(cmd).or_fail("membarrier register");
    }
    raw::prctl(PR_SET_MEMORY_MERGE, 1, 0).or_fail("PR_SET_MEMORY_MERGE");
    let before = mm_wide_state();
    s.checker.check(before.2.iter().any(|f| f == "lf"), || format!("new mapping not locked on fault: {:?}", before.2));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    c.same("registrations, merge-any, new mapping", &before, &mm_wide_state());
    c.ok("membarrier private expedited", raw::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
    kid.collect(c);
}

/// The names of this process's kernel special mappings.
fn specials() -> Vec<String> {
    let maps = workload::own_maps().or_fail("read /proc/self/maps");
    maps.into_iter().map(|m| m.path).filter(|n| n.starts_with("[v")).collect()
}

fn no_vdso_case(s: &mut workload::Session) {
    let gone = raw::unmap_vdso().or_fail("unmap the vDSO");
    s.checker.check(!gone.is_empty(), || "no vDSO to unmap".into());
    let before = specials();
    let heap = Area::new("heap after the unmap", anon(4), Some(13)).settle();
    // Without a vDSO nothing may read the clock through the C library, as the tree helpers do
    // for their timeouts: the child talks through a pipe read without one.
    let kid = workload::fork_child("child", |link| {
        let mut k = workload::start();
        let mine = Area::new("child's area", anon(4), Some(14)).settle();
        link.send("ready\n").or_fail("ready line");
        k.wait_for_wake();
        check_no_vdso(&mut k.checker, &before, &mine);
        if !k.checker.passed() {
            // Its FAIL line goes to the log; the parent sees no "pass" and exit code 1.
            k.finish()
        }
        link.send("pass\n").or_fail("verdict line");
        0
    });
    c_same_line(&mut s.checker, &kid.up, "ready");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    check_no_vdso(c, &before, &heap);
    c_same_line(c, &kid.up, "pass");
    loop {
        match raw::try_waitpid(kid.pid) {
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            exit => {
                c.same("child's exit", &Some(raw::Exit::Code(0)), &exit.ok().flatten());
                break;
            }
        }
    }
}

/// A sealed area of `pages` pages with the bytes of `seed`, read-only when `ro`.
fn sealed_area(name: &'static str, pages: usize, seed: u64, ro: bool) -> Area {
    let a = Area::new(name, anon(pages), Some(seed));
    if ro {
        a.map.protect(0, a.map.len(), libc::PROT_READ).or_fail("mprotect read-only");
    }
    match a.map.seal() {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            workload::skip(&format!("mseal: {e} (no mseal in this kernel)"))
        }
        Err(e) => Err(e).or_fail("mseal"),
    }
    a.settle()
}

/// The area is still sealed: VmFlags (checked by `check`) and munmap/mprotect refused.
fn check_sealed(c: &mut Checker, a: &Area) {
    a.check(c);
    c.check(a.flags.iter().any(|f| f == "sl"), || format!("{}: no sl before the dump", a.name));
    let unmap = a.map.unmap_sealed().err().and_then(|e| e.raw_os_error());
    c.same(&format!("{}: munmap", a.name), &Some(libc::EPERM), &unmap);
    let prot = a.map.protect(0, a.map.len(), libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
    c.same(&format!("{}: mprotect", a.name), &Some(libc::EPERM), &prot.err().and_then(|e| e.raw_os_error()));
}

fn sealed_case(s: &mut workload::Session) {
    let rw = sealed_area("sealed writable area", 4, 31, false);
    let ro = sealed_area("sealed read-only area", 2, 32, true);
    let kid = workload::fork_child("child", |link| {
        let mut k = workload::start();
        let mine = sealed_area("child's sealed area", 3, 33, false);
        link.send("ready\n").or_fail("ready line");
        k.wait_for_wake();
        for a in [&rw, &ro, &mine] {
            check_sealed(&mut k.checker, a);
        }
        if !k.checker.passed() {
            k.finish()
        }
        link.send("pass\n").or_fail("verdict line");
        0
    });
    c_same_line(&mut s.checker, &kid.up, "ready");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    check_sealed(c, &rw);
    check_sealed(c, &ro);
    c_same_line(c, &kid.up, "pass");
    let exit = raw::waitpid(kid.pid);
    c.same("child's exit", &Some(raw::Exit::Code(0)), &exit.ok());
    // Sealed areas cannot be unmapped: the mappings are never dropped.
    std::mem::forget((rw, ro));
}

/// Reads one line from `pipe`, blocking, and checks it is `want`.
fn c_same_line(c: &mut Checker, pipe: &std::io::PipeReader, want: &str) {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = (&*pipe).read(&mut byte) {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    c.same("line from the child", &want.to_string(), &String::from_utf8_lossy(&line).into_owned());
}

/// The special mappings are those of `before` (no vDSO), `area` is intact, the clock works.
fn check_no_vdso(c: &mut Checker, before: &[String], area: &Area) {
    c.same("special mappings", &before.to_vec(), &specials());
    area.check(c);
    let clock = raw::clock_gettime_syscall(libc::CLOCK_MONOTONIC);
    c.check(clock.as_ref().is_ok_and(|d| !d.is_zero()), || format!("clock_gettime system call: {clock:?}"));
}

const HUGE: usize = 2 << 20;

fn hugetlb_case(s: &mut workload::Session) {
    let m = match Mapping::with_flags(HUGE, RW, PRIVATE_ANON | libc::MAP_HUGETLB, None, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)) => {
            workload::skip(&format!("no free 2 MiB huge page: {e}"))
        }
        r => r.or_fail("mmap a huge page"),
    };
    m.fill_words(0, HUGE, |i| pattern_word(PARENT_SEED, i));
    workload::say(&format!("huge {:x}", m.addr()));
    s.ready();
    s.wait_for_wake();
    let bad = m.first_word_mismatch(0, HUGE, |i| pattern_word(PARENT_SEED, i));
    s.checker.check(bad.is_none(), || format!("huge page: word {bad:?} differs"));
}

fn main() {
    let mut s = workload::start();
    match arg::<String>(1, "advice".into()).as_str() {
        "advice" => advice_case(&mut s),
        "shared-prot" => shared_prot_case(&mut s),
        "tree" => tree_case(&mut s),
        "guard" => guard_case(&mut s),
        "mm-wide" => mm_wide_case(&mut s),
        "no-vdso" => no_vdso_case(&mut s),
        "sealed" => sealed_case(&mut s),
        "hugetlb-anon" => hugetlb_case(&mut s),
        other => Err(other).or_fail("unknown case"),
    }
    s.finish()
}
