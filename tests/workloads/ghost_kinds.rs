//! Unlinked files of every kind, with the attributes a program can read back:
//! - `owned.bin`: 5000 bytes, owner 1234:5678, mode 0604, fixed access and modification times,
//!   open only write-only (fd 46, offset 10), then unlinked;
//! - `sparse.bin`: 1 GiB with 8 KiB of data (4 KiB at 4 KiB, 4 KiB at 512 MiB), read-write at
//!   fd 47, unlinked: its holes must stay holes (the same `SEEK_DATA`/`SEEK_HOLE` extents) and it
//!   is under the default `--ghost-limit`, which counts data;
//! - an `O_TMPFILE` file of the work directory (never named), owner 1234:5678, mode 0750, at fd 48:
//!   its link must read `DIR/#INODE (deleted)` with its own inode;
//! - `node-null`: a device node for 1:3 (`/dev/null`), owner 1234:5678, mode 0620, open read-write
//!   at fd 49, unlinked: still that device, with its mode and owner.
//!
//! After the wake each fd must be an unlinked object (`nlink` 0, its link, its flags and offset)
//! with its type, mode, owner, times (checked before anything reads them), size and contents.
//! An argument `wrong` makes the checks expect other modes (to show that they fail).

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const OWNER: (u32, u32) = (1234, 5678);
const OWNED_LEN: usize = 5000;
const SPARSE_SIZE: u64 = 1 << 30;
const SPARSE_DATA: [u64; 2] = [4096, 512 << 20];
const TMP_DATA: &[u8] = b"an O_TMPFILE file that never had a name\n";
const ATIME: (u64, u32) = (1_000_000_123, 456_000_789);
const MTIME: (u64, u32) = (1_100_000_000, 789_000_123);

fn wrong() -> bool {
    std::env::args().nth(1).as_deref() == Some("wrong")
}

/// `mode`, or another one with the `wrong` argument.
fn want_mode(mode: u32) -> u32 {
    if wrong() {
        mode ^ 0o004
    } else {
        mode
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    workload::pattern_fill(&mut v, seed);
    v
}

fn moved(f: File, at: i32) -> File {
    File::from(raw::dup_to(f.as_fd(), at).or_fail(&format!("dup to {at}")))
}

fn chown_chmod(f: &File, mode: u32) {
    std::os::unix::fs::fchown(f, Some(OWNER.0), Some(OWNER.1)).or_fail("fchown");
    f.set_permissions(std::fs::Permissions::from_mode(mode)).or_fail("fchmod");
}

struct Setup {
    dir: PathBuf,
    owned: File,
    sparse: File,
    sparse_extents: Vec<(u64, u64)>,
    tmp: File,
    node: File,
    flags: Vec<i32>,
}

fn setup() -> Setup {
    let dir = workload::work_dir();
    let owned_path = dir.join("owned.bin");
    std::fs::write(&owned_path, pattern(OWNED_LEN, 0x0e1)).or_fail("write owned.bin");
    let owned = OpenOptions::new().write(true).open(&owned_path).or_fail("open owned.bin write-only");
    chown_chmod(&owned, 0o604);
    let at = |(s, n): (u64, u32)| UNIX_EPOCH + Duration::new(s, n);
    owned.set_times(std::fs::FileTimes::new().set_accessed(at(ATIME)).set_modified(at(MTIME))).or_fail("futimens");
    let mut owned = moved(owned, 46);
    owned.seek(SeekFrom::Start(10)).or_fail("seek");
    let sparse_path = dir.join("sparse.bin");
    let sparse = OpenOptions::new().read(true).write(true).create_new(true).open(&sparse_path).or_fail("sparse.bin");
    sparse.set_len(SPARSE_SIZE).or_fail("truncate sparse.bin");
    for (i, &off) in SPARSE_DATA.iter().enumerate() {
        sparse.write_all_at(&pattern(4096, 0x5a0 + i as u64), off).or_fail("write sparse.bin");
    }
    let sparse = moved(sparse, 47);
    let sparse_extents = raw::data_extents(&sparse, SPARSE_SIZE).or_fail("extents of sparse.bin");
    let tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir)
        .or_fail("O_TMPFILE");
    tmp.write_all_at(TMP_DATA, 0).or_fail("write the O_TMPFILE file");
    chown_chmod(&tmp, 0o750);
    let tmp = moved(tmp, 48);
    let node_path = dir.join("node-null");
    raw::mknod(&node_path, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).or_fail("mknod");
    let node = OpenOptions::new().read(true).write(true).open(&node_path).or_fail("open node-null");
    chown_chmod(&node, 0o620);
    let node = moved(node, 49);
    for p in [&owned_path, &sparse_path, &node_path] {
        std::fs::remove_file(p).or_fail(&format!("unlink {}", p.display()));
    }
    let flags = [&owned, &sparse, &tmp, &node].map(|f| raw::get_fl(f).or_fail("F_GETFL")).to_vec();
    Setup { dir, owned, sparse, sparse_extents, tmp, node, flags }
}

/// Checks link, flags, nlink, file type and mode, owner; returns the metadata.
fn check_object(c: &mut Checker, f: &File, link: &str, flags: i32, mode: u32) -> Option<std::fs::Metadata> {
    let fd = f.as_raw_fd();
    let got = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|l| l.to_string_lossy().into_owned());
    c.same(&format!("fd {fd}: link"), &Some(link.to_string()), &got);
    c.same(&format!("fd {fd}: F_GETFL"), &Some(flags), &raw::get_fl(f).ok());
    let m = c.ok(&format!("fd {fd}: fstat"), f.metadata())?;
    c.same(&format!("fd {fd}: nlink"), &0, &m.nlink());
    c.same(&format!("fd {fd}: st_mode"), &format!("{:o}", want_mode(mode)), &format!("{:o}", m.mode()));
    c.same(&format!("fd {fd}: owner"), &OWNER, &(m.uid(), m.gid()));
    Some(m)
}

/// The bytes of `f` (any access mode) at `off`, read through a description of our own.
fn read_at(c: &mut Checker, f: &File, off: u64, len: usize) -> Vec<u8> {
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    let mut out = vec![0u8; len];
    if let Some(r) = c.ok(&format!("open {path} read-only"), File::open(&path)) {
        c.ok(&format!("read {path}"), r.read_exact_at(&mut out, off));
    }
    out
}

fn check_owned(c: &mut Checker, s: &mut Setup, path: &Path) {
    let link = format!("{} (deleted)", path.display());
    let Some(m) = check_object(c, &s.owned, &link, s.flags[0], libc::S_IFREG | 0o604) else { return };
    c.same("owned.bin: atime", &(ATIME.0 as i64, ATIME.1 as i64), &(m.atime(), m.atime_nsec()));
    c.same("owned.bin: mtime", &(MTIME.0 as i64, MTIME.1 as i64), &(m.mtime(), m.mtime_nsec()));
    c.same("owned.bin: size", &(OWNED_LEN as u64), &m.size());
    c.same("fd 46: offset", &Some(10), &s.owned.stream_position().ok());
    let got = read_at(c, &s.owned, 0, OWNED_LEN);
    c.check(got == pattern(OWNED_LEN, 0x0e1), || "owned.bin: contents differ".into());
}

fn check_sparse(c: &mut Checker, s: &Setup, path: &Path) {
    let link = format!("{} (deleted)", path.display());
    let Some(m) = check_object_plain(c, &s.sparse, &link, s.flags[1]) else { return };
    c.same("sparse.bin: size", &SPARSE_SIZE, &m.size());
    let extents = raw::data_extents(&s.sparse, SPARSE_SIZE).ok();
    c.same("sparse.bin: SEEK_DATA/SEEK_HOLE extents", &Some(s.sparse_extents.clone()), &extents);
    c.check(m.blocks() * 512 < 1 << 20, || format!("sparse.bin: {} blocks allocated, holes filled?", m.blocks()));
    for (i, &off) in SPARSE_DATA.iter().enumerate() {
        let got = read_at(c, &s.sparse, off, 4096);
        c.check(got == pattern(4096, 0x5a0 + i as u64), || format!("sparse.bin: data at {off} differs"));
    }
    let hole = read_at(c, &s.sparse, 100 << 20, 4096);
    c.check(hole.iter().all(|&b| b == 0), || "sparse.bin: the hole at 100 MiB is not zero".into());
}

/// Link, flags and nlink only (sparse.bin keeps the workload's own owner and mode).
fn check_object_plain(c: &mut Checker, f: &File, link: &str, flags: i32) -> Option<std::fs::Metadata> {
    let fd = f.as_raw_fd();
    let got = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok().map(|l| l.to_string_lossy().into_owned());
    c.same(&format!("fd {fd}: link"), &Some(link.to_string()), &got);
    c.same(&format!("fd {fd}: F_GETFL"), &Some(flags), &raw::get_fl(f).ok());
    let m = c.ok(&format!("fd {fd}: fstat"), f.metadata())?;
    c.same(&format!("fd {fd}: nlink"), &0, &m.nlink());
    Some(m)
}

fn check_tmp(c: &mut Checker, s: &Setup) {
    let ino = s.tmp.metadata().map(|m| m.ino()).unwrap_or(0);
    let link = format!("{}/#{ino} (deleted)", s.dir.display());
    let Some(m) = check_object(c, &s.tmp, &link, s.flags[2], libc::S_IFREG | 0o750) else { return };
    c.same("O_TMPFILE file: size", &(TMP_DATA.len() as u64), &m.size());
    let mut got = vec![0u8; TMP_DATA.len()];
    c.ok("read the O_TMPFILE file", s.tmp.read_exact_at(&mut got, 0));
    c.same("O_TMPFILE file: contents", &TMP_DATA.to_vec(), &got);
}

fn check_node(c: &mut Checker, s: &Setup, path: &Path) {
    let link = format!("{} (deleted)", path.display());
    let Some(m) = check_object(c, &s.node, &link, s.flags[3], libc::S_IFCHR | 0o620) else { return };
    c.same("node-null: rdev", &libc::makedev(1, 3), &m.rdev());
    let wrote = s.node.write_at(b"into /dev/null", 0).ok();
    c.same("node-null: write", &Some(14), &wrote);
    let mut buf = [0u8; 8];
    c.same("node-null: read (end of file)", &Some(0), &s.node.read_at(&mut buf, 0).ok());
}

fn main() {
    let mut s = workload::start();
    let mut setup = setup();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let dir = setup.dir.clone();
    check_owned(c, &mut setup, &dir.join("owned.bin"));
    check_sparse(c, &setup, &dir.join("sparse.bin"));
    check_tmp(c, &setup);
    check_node(c, &setup, &dir.join("node-null"));
    for name in ["owned.bin", "sparse.bin", "node-null"] {
        c.check(!dir.join(name).exists(), || format!("{name} exists again after the restore"));
    }
    s.finish()
}
