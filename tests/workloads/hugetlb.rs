//! Hugetlb memory (2 MiB pages) in a parent and its child. Argument 1 is the case:
//!
//! - `tree`: the parent maps a private `MAP_HUGETLB` area of four huge pages and
//!   fills three of them (the last stays untouched, not populated), and a shared one
//!   (`MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB`) of two huge pages whose first it fills, then forks
//!   a child. The child writes its own pattern over the second huge page of the private area (a
//!   copy of its own) and over the second huge page of the shared one (seen by the parent). After
//!   the restore each process checks every byte of both areas, that both are still hugetlb (smaps
//!   `KernelPageSize` 2048 kB and `ht` in VmFlags), and that the shared one is still shared: the
//!   child writes a word the parent must then read, and the parent one the child must read.
//! - `memfd`: `MFD_HUGETLB | MFD_HUGE_2MB` memfds (see [`memfd_case`]): one of three huge pages held
//!   at fd 50, sealed and with mode 0640, mapped shared and privately; one only mapped; one only
//!   held at fd 51; the child of the parent writes into the shared one.
//! - `hugefile DIR`: a file on the hugetlbfs mount at DIR (see [`hugefile_case`]).
//! - `hugefile-unlinked DIR`: a file of that mount unlinked while held and mapped (see
//!   [`hugefile_unlinked_case`]).
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

/// `MFD_HUGE_2MB`: log2 of the page size at `MFD_HUGE_SHIFT` (26).
const MFD_HUGE_2MB: u32 = 21 << 26;
/// `HUGETLBFS_MAGIC` (`linux/magic.h`).
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
const MEMFD_PAGES: usize = 3;
const MEMFD_FD: i32 = 50;
const FD_ONLY_FD: i32 = 51;
const FILE_FD: i32 = 52;
const UNLINKED_FD: i32 = 53;
const SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
const SEEDS: [u64; 2] = [0x4875_6766_0001, 0x4875_6766_0002];
const PRIVATE_SEED: u64 = 0x4875_6766_0003;
const KID_SEED: u64 = 0x4875_6766_0004;
const MAP_ONLY_SEED: u64 = 0x4875_6766_0005;
const FD_ONLY_SEED: u64 = 0x4875_6766_0006;
/// Where the child writes a word into the shared mapping after the restore, and the parent.
const KID_AT: usize = 2 * HUGE + HUGE / 2;
const PARENT_AT: usize = 64;

/// The memfds of the `memfd` case, in the parent and (by fork) in its child.
struct Memfds {
    /// `stasis-huge`, three huge pages: 0 and 1 patterns, 2 half written by the child.
    fd: std::fs::File,
    shared: Mapping,
    /// Its first two huge pages, privately; page 1 changed (a copy of the parent's own).
    private: Mapping,
    /// `stasis-huge-map`, one huge page, only mapped (its fd closed).
    map_only: Mapping,
    /// `stasis-huge-fd`, one huge page, only held at fd 51 (made without MFD_ALLOW_SEALING).
    fd_only: std::fs::File,
}

fn huge_memfd(name: &str, pages: usize, sealing: bool) -> std::fs::File {
    let flags = libc::MFD_HUGETLB | MFD_HUGE_2MB | if sealing { libc::MFD_ALLOW_SEALING } else { 0 };
    let f = match raw::memfd_create(name, flags) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)) => {
            workload::skip(&format!("no MFD_HUGETLB memfd of 2 MiB pages: {e}"))
        }
        r => r.or_fail("memfd_create MFD_HUGETLB"),
    };
    f.set_len((pages * HUGE) as u64).or_fail("ftruncate the huge memfd");
    f
}

fn at_fd(f: std::fs::File, fd: i32) -> std::fs::File {
    use std::os::fd::AsFd;
    std::fs::File::from(raw::dup_to(f.as_fd(), fd).or_fail(&format!("dup to {fd}")))
}

fn memfds() -> Memfds {
    use std::os::unix::fs::PermissionsExt;
    let fd = at_fd(huge_memfd("stasis-huge", MEMFD_PAGES, true), MEMFD_FD);
    fd.set_permissions(std::fs::Permissions::from_mode(0o640)).or_fail("fchmod");
    let shared = map_huge(MEMFD_PAGES, libc::MAP_SHARED, Some(&fd));
    for (page, seed) in SEEDS.iter().enumerate() {
        shared.fill_words(page * HUGE, HUGE, |i| pattern_word(*seed, i));
    }
    let private = map_huge(2, libc::MAP_PRIVATE, Some(&fd));
    private.fill_words(HUGE, HUGE, |i| pattern_word(PRIVATE_SEED, i));
    raw::add_seals(&fd, SEALS).or_fail("F_ADD_SEALS");
    let map_only = map_huge(1, libc::MAP_SHARED, Some(&huge_memfd("stasis-huge-map", 1, true)));
    map_only.fill_words(0, HUGE, |i| pattern_word(MAP_ONLY_SEED, i));
    let fd_only = at_fd(huge_memfd("stasis-huge-fd", 1, false), FD_ONLY_FD);
    map_huge(1, libc::MAP_SHARED, Some(&fd_only)).fill_words(0, HUGE, |i| pattern_word(FD_ONLY_SEED, i));
    Memfds { fd, shared, private, map_only, fd_only }
}

/// `f` (at fd `fd`) is a hugetlb memfd named `name` with 2 MiB pages, `pages` of them, `mode`, `seals`.
fn check_memfd(c: &mut Checker, who: &str, f: &std::fs::File, fd: i32, name: &str, pages: usize, seals: i32) {
    use std::os::unix::fs::MetadataExt;
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|l| l.to_string_lossy().into_owned());
    c.same(&format!("{who}: fd {fd} link"), &format!("/memfd:{name} (deleted)"), &link.unwrap_or_default());
    c.same(&format!("{who}: fd {fd} f_type"), &Some(HUGETLBFS_MAGIC), &raw::fs_type(f).ok());
    let meta = f.metadata().or_fail("fstat");
    c.same(&format!("{who}: fd {fd} st_blksize"), &(HUGE as u64), &meta.blksize());
    c.same(&format!("{who}: fd {fd} size"), &((pages * HUGE) as u64), &meta.size());
    c.same(&format!("{who}: fd {fd} seals"), &Some(seals), &raw::get_seals(f).ok());
}

/// Huge page `page` of `f`, read with pread, holds the pattern of `seed`.
fn check_read(c: &mut Checker, what: &str, f: &std::fs::File, page: usize, seed: u64) {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; HUGE];
    let read = f.read_exact_at(&mut buf, (page * HUGE) as u64);
    // Words counted from the start of the file, as the mappings of it from offset 0 fill them.
    let word = |i: usize| pattern_word(seed, page * HUGE / 8 + i).to_le_bytes();
    let bad = buf.chunks(8).enumerate().position(|(i, w)| w != word(i));
    c.check(read.is_ok() && bad.is_none(), || format!("{what}: pread of huge page {page}: {read:?}, word {bad:?}"));
}

fn check_memfds(c: &mut Checker, who: &str, m: &Memfds) {
    use std::os::unix::fs::PermissionsExt;
    check_memfd(c, who, &m.fd, MEMFD_FD, "stasis-huge", MEMFD_PAGES, SEALS);
    let mode = m.fd.metadata().map(|md| md.permissions().mode() & 0o7777).ok();
    c.same(&format!("{who}: mode of stasis-huge"), &Some(0o640), &mode);
    let grown = m.fd.set_len((4 * HUGE) as u64).map_err(|e| e.raw_os_error());
    c.same(&format!("{who}: ftruncate of the sealed memfd"), &Err(Some(libc::EPERM)), &grown);
    check_memfd(c, who, &m.fd_only, FD_ONLY_FD, "stasis-huge-fd", 1, libc::F_SEAL_SEAL);
    check_read(c, &format!("{who}: stasis-huge-fd"), &m.fd_only, 0, FD_ONLY_SEED);
    for (page, seed) in SEEDS.iter().enumerate() {
        check_page(c, &format!("{who}: shared mapping"), &m.shared, page, Some(*seed));
        check_read(c, &format!("{who}: stasis-huge"), &m.fd, page, *seed);
    }
    let half = m.shared.first_word_mismatch(2 * HUGE, HUGE / 2, |i| pattern_word(KID_SEED, i - 2 * HUGE / 8));
    c.check(half.is_none(), || format!("{who}: the child's half of huge page 2 differs at word {half:?}"));
    // The word at KID_AT is the child's to write now.
    let rest = m.shared.first_word_mismatch(KID_AT + 8, HUGE / 2 - 8, |_| 0);
    c.check(rest.is_none(), || format!("{who}: the second half of huge page 2 is not zero at word {rest:?}"));
    check_page(c, &format!("{who}: private mapping"), &m.private, 0, Some(SEEDS[0]));
    check_page(c, &format!("{who}: private mapping"), &m.private, 1, Some(PRIVATE_SEED));
    check_page(c, &format!("{who}: mapped-only memfd"), &m.map_only, 0, Some(MAP_ONLY_SEED));
    for (what, map) in [("shared", &m.shared), ("private", &m.private), ("mapped-only", &m.map_only)] {
        check_hugetlb(c, &format!("{who}: {what} mapping"), map.addr());
    }
}

/// The words written after the restore: the child's in the shared mapping, the parent's over
/// page 0, which the private mapping (not copied there) sees too.
fn check_word(c: &mut Checker, who: &str, m: &Memfds, at: usize, want: u64) {
    let got = u64::from_le_bytes(m.shared.read(at, 8).try_into().unwrap_or_default());
    c.same(&format!("{who}: word at {at:#x} of the shared mapping"), &want, &got);
    if at < HUGE {
        let got = u64::from_le_bytes(m.private.read(at, 8).try_into().unwrap_or_default());
        c.same(&format!("{who}: word at {at:#x} of the private mapping"), &want, &got);
    }
}

fn memfd_child(link: TreeParent, m: &Memfds) -> i32 {
    let mut s = workload::start();
    m.shared.fill_words(2 * HUGE, HUGE / 2, |i| pattern_word(KID_SEED, i - 2 * HUGE / 8));
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    check_memfds(c, "child", m);
    m.shared.write(KID_AT, &CHILD_WORD.to_le_bytes());
    link.send("wrote\n").or_fail("wrote line");
    let line = link.line();
    c.same("line from the parent", &Some("wrote".to_string()), &line.ok());
    check_word(c, "child", m, PARENT_AT, PARENT_WORD);
    link.report(s.into_checker())
}

/// Hugetlb memfds (see the module docs) in a parent and its child.
fn memfd_case(s: &mut workload::Session) {
    let m = memfds();
    let kid = workload::fork_child("child", |link| memfd_child(link, &m));
    kid.expect_line(&mut s.checker, "child ready", "ready");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    check_memfds(c, "parent", &m);
    kid.expect_line(c, "child wrote", "wrote");
    check_word(c, "parent", &m, KID_AT, CHILD_WORD);
    m.shared.write(PARENT_AT, &PARENT_WORD.to_le_bytes());
    check_word(c, "parent", &m, PARENT_AT, PARENT_WORD);
    c.ok("wrote line", kid.send("wrote\n"));
    kid.collect(c);
}

/// `dir` is a hugetlbfs mount: the file `stasis-huge-file` of two huge pages there, held at fd 52,
/// mapped shared (page 0 filled, page 1 not) and privately (its page 0, half changed: a copy).
/// After the restore: both mappings hugetlb and as they were, the file by its name too (its
/// pages kept while the process was gone), and a write through the shared mapping read by pread.
fn hugefile_case(s: &mut workload::Session, dir: &str) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let path = format!("{dir}/stasis-huge-file");
    let opened = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path);
    let f = at_fd(opened.or_fail(&format!("create {path}")), FILE_FD);
    f.set_len((2 * HUGE) as u64).or_fail("ftruncate the hugetlbfs file");
    let shared = map_huge(2, libc::MAP_SHARED, Some(&f));
    shared.fill_words(0, HUGE, |i| pattern_word(SEEDS[0], i));
    let private = map_huge(1, libc::MAP_PRIVATE, Some(&f));
    private.fill_words(0, HUGE / 2, |i| pattern_word(PRIVATE_SEED, i));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("f_type of the file", &Some(HUGETLBFS_MAGIC), &raw::fs_type(&f).ok());
    check_page(c, "shared mapping", &shared, 0, Some(SEEDS[0]));
    check_page(c, "shared mapping", &shared, 1, None);
    let bad = private.first_word_mismatch(0, HUGE / 2, |i| pattern_word(PRIVATE_SEED, i));
    c.check(bad.is_none(), || format!("private mapping: its own half page differs at word {bad:?}"));
    let bad = private.first_word_mismatch(HUGE / 2, HUGE / 2, |i| pattern_word(SEEDS[0], i));
    c.check(bad.is_none(), || format!("private mapping: the file's half page differs at word {bad:?}"));
    check_hugetlb(c, "shared mapping", shared.addr());
    check_hugetlb(c, "private mapping", private.addr());
    let by_name = std::fs::File::open(&path).or_fail(&format!("open {path}"));
    let same = (by_name.metadata().map(|m| m.ino()).ok(), f.metadata().map(|m| m.ino()).ok());
    c.same("inode of the file by name and of fd 52", &same.0, &same.1);
    check_read(c, "the file by name", &by_name, 0, SEEDS[0]);
    shared.write(HUGE + 8, &PARENT_WORD.to_le_bytes());
    let mut word = [0u8; 8];
    c.ok("pread the word", f.read_exact_at(&mut word, (HUGE + 8) as u64));
    c.same("word written through the shared mapping, read by fd 52", &PARENT_WORD, &u64::from_le_bytes(word));
}

/// `dir` is a hugetlbfs mount: a file of two huge pages there (the first filled through a shared
/// mapping, the second a hole), held at fd 53 and mapped, then unlinked. After the restore: the
/// fd and the mapping are one hugetlbfs file again, unlinked (`(deleted)`, no name left in
/// `dir`), with its bytes; a write through the mapping is read by pread.
fn hugefile_unlinked_case(s: &mut workload::Session, dir: &str) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let path = format!("{dir}/stasis-huge-file");
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path);
    let f = at_fd(f.or_fail(&format!("create {path}")), UNLINKED_FD);
    f.set_len((2 * HUGE) as u64).or_fail("ftruncate the hugetlbfs file");
    let shared = map_huge(2, libc::MAP_SHARED, Some(&f));
    shared.fill_words(0, HUGE, |i| pattern_word(SEEDS[0], i));
    std::fs::remove_file(&path).or_fail(&format!("unlink {path}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let link = std::fs::read_link(format!("/proc/self/fd/{UNLINKED_FD}")).map(|l| l.to_string_lossy().into_owned());
    c.same("link of fd 53", &format!("{path} (deleted)"), &link.unwrap_or_default());
    c.check(std::fs::symlink_metadata(&path).is_err(), || format!("{path} has a name again"));
    c.same("f_type of fd 53", &Some(HUGETLBFS_MAGIC), &raw::fs_type(&f).ok());
    let meta = f.metadata().or_fail("fstat fd 53");
    c.same("st_blksize and size of fd 53", &(HUGE as u64, (2 * HUGE) as u64), &(meta.blksize(), meta.size()));
    check_page(c, "shared mapping of the unlinked file", &shared, 0, Some(SEEDS[0]));
    check_page(c, "shared mapping of the unlinked file", &shared, 1, None);
    check_read(c, "the unlinked file", &f, 0, SEEDS[0]);
    check_hugetlb(c, "shared mapping of the unlinked file", shared.addr());
    shared.write(HUGE + 8, &PARENT_WORD.to_le_bytes());
    let mut word = [0u8; 8];
    c.ok("pread the word", f.read_exact_at(&mut word, (HUGE + 8) as u64));
    c.same("word written through the mapping, read by fd 53", &PARENT_WORD, &u64::from_le_bytes(word));
}

fn main() {
    let mut s = workload::start();
    match arg::<String>(1, "tree".into()).as_str() {
        "tree" => tree_case(&mut s),
        "memfd" => memfd_case(&mut s),
        "hugefile" => hugefile_case(&mut s, &arg::<String>(2, String::new())),
        "hugefile-unlinked" => hugefile_unlinked_case(&mut s, &arg::<String>(2, String::new())),
        other => Err(other).or_fail("unknown case"),
    }
    s.finish()
}
