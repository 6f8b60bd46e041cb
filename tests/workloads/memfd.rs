//! A memfd open on an fd and mapped MAP_SHARED: `memfd_create("stasis-memfd", MFD_ALLOW_SEALING)`
//! filled with 10000 bytes of pattern, sealed with F_SEAL_SHRINK | F_SEAL_GROW, moved to fd 50 at
//! offset 321, mapped MAP_SHARED read-write over three pages, and changed through the mapping.
//! After the wake the fd must read `/memfd:stasis-memfd (deleted)` with its offset and flags, the
//! seals must be the same (and still refuse shrinking and growing), the contents intact through
//! the fd and through the mapping, and the fd and the mapping one object: the same inode, a write
//! through the fd shows in the mapping and a write through the mapping in the fd.
//!
//! An argument `wrong` makes the checks expect other seals (to show that they fail).

use stasis_tests::raw::{self, Mapping, PAGE};
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};

const NAME: &str = "stasis-memfd";
const LEN: usize = 10_000;
const MAP_LEN: usize = 3 * PAGE;
const SEED: u64 = 0x3e3f_d000;
const FD: i32 = 50;
const POS: u64 = 321;
const CHANGE: &[u8] = b"written through the mapping before the dump";
const CHANGE_AT: usize = 600;

/// What was recorded before the dump.
struct Memfd {
    file: File,
    map: Mapping,
    flags: i32,
    seals: i32,
    entry: Option<workload::MapEntry>,
}

fn setup() -> Memfd {
    let f = raw::memfd_create(NAME, libc::MFD_ALLOW_SEALING).or_fail("memfd_create");
    let mut content = vec![0u8; LEN];
    workload::pattern_fill(&mut content, SEED);
    f.write_all_at(&content, 0).or_fail("fill the memfd");
    raw::add_seals(&f, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW).or_fail("F_ADD_SEALS");
    let mut file = File::from(raw::dup_to(f.as_fd(), FD).or_fail("dup to 50"));
    drop(f);
    file.seek(SeekFrom::Start(POS)).or_fail("seek");
    let map = Mapping::file_shared(&file, 0, MAP_LEN, libc::PROT_READ | libc::PROT_WRITE).or_fail("mmap");
    map.write(CHANGE_AT, CHANGE);
    let flags = raw::get_fl(&file).or_fail("F_GETFL");
    let seals = raw::get_seals(&file).or_fail("F_GET_SEALS");
    let entry = workload::own_map_at(map.addr() as u64);
    Memfd { file, map, flags, seals, entry }
}

/// The seals expected after the restore.
fn want_seals() -> i32 {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    if workload::mode(1, &["wrong"]).is_some() {
        seals | libc::F_SEAL_WRITE
    } else {
        seals
    }
}

/// The fd: link, offset, flags, seals, and that the seals still hold.
fn check_fd(c: &mut Checker, m: &mut Memfd) {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", m.file.as_raw_fd()));
    let want = format!("/memfd:{NAME} (deleted)");
    c.same("link of fd 50", &Some(want), &link.ok().map(|l| l.to_string_lossy().into_owned()));
    c.same("offset of fd 50", &Some(POS), &m.file.stream_position().ok());
    c.same("F_GETFL of fd 50", &Some(m.flags), &raw::get_fl(&m.file).ok());
    c.same("seals before the dump", &want_seals(), &m.seals);
    c.same("seals after the restore", &Some(want_seals()), &raw::get_seals(&m.file).ok());
    let size = m.file.metadata().map(|x| x.len()).ok();
    c.same("size", &Some(LEN as u64), &size);
    for (what, len) in [("shrink", 100u64), ("grow", 2 * LEN as u64)] {
        let r = m.file.set_len(len);
        c.check(r.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EPERM), || {
            format!("ftruncate to {what} the sealed memfd: {r:?}, want EPERM")
        });
    }
}

/// The contents through the fd and the mapping, and that both are one object.
fn check_shared(c: &mut Checker, m: &Memfd) {
    let mut want = vec![0u8; LEN];
    workload::pattern_fill(&mut want, SEED);
    want[CHANGE_AT..CHANGE_AT + CHANGE.len()].copy_from_slice(CHANGE);
    let mut got = vec![0u8; LEN];
    if c.ok("read the memfd", m.file.read_exact_at(&mut got, 0)).is_some() {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        c.check(at.is_none(), || format!("memfd contents read through fd 50 differ at byte {at:?}"));
    }
    let at = m.map.read(0, LEN).iter().zip(&want).position(|(a, b)| a != b);
    c.check(at.is_none(), || format!("memfd contents read through the mapping differ at byte {at:?}"));
    c.same("maps entry of the mapping", &m.entry, &workload::own_map_at(m.map.addr() as u64));
    let name = workload::own_map_at(m.map.addr() as u64).map(|e| e.path);
    c.same("name of the mapping", &Some(format!("/memfd:{NAME} (deleted)")), &name);
    check_same_inode(c, m);
    c.ok("write through fd 50", m.file.write_all_at(b"through the fd", 5000));
    c.same("a write through fd 50, read through the mapping", &b"through the fd".to_vec(), &m.map.read(5000, 14));
    m.map.write(7000, b"through the mapping");
    let mut got = [0u8; 19];
    c.ok("read fd 50", m.file.read_exact_at(&mut got, 7000));
    c.same("a write through the mapping, read through fd 50", b"through the mapping", &got);
}

/// The mapping's file (`/proc/self/map_files`) is the fd's inode.
fn check_same_inode(c: &mut Checker, m: &Memfd) {
    let Some(e) = workload::own_map_at(m.map.addr() as u64) else {
        return c.check(false, || "no maps entry for the mapping".into());
    };
    let mapped = std::fs::metadata(format!("/proc/self/map_files/{:x}-{:x}", e.start, e.end));
    let mapped = mapped.map(|x| (x.dev(), x.ino())).ok();
    let fd = m.file.metadata().map(|x| (x.dev(), x.ino())).ok();
    c.check(mapped.is_some() && mapped == fd, || format!("mapping (dev, inode) {mapped:?}, fd 50 {fd:?}"));
}

fn main() {
    let mut s = workload::start();
    let mut m = setup();
    s.ready();
    s.wait_for_wake();
    check_fd(&mut s.checker, &mut m);
    check_shared(&mut s.checker, &m);
    s.finish()
}
