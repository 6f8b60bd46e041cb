//! Files unlinked while in use. Argument:
//! - `open` (the default): `ghost.bin` (10000 bytes of pattern, then a line appended) is opened as
//!   three descriptions (read-write at fd 40 with a dup at fd 41, offset 1234; read-only at fd
//!   42, offset 77; write-only O_APPEND at fd 43) and `ghost2.txt` at fd 45, then both unlinked.
//!   After the wake every fd must point at an unlinked file (`nlink` 0, `/proc/self/fd/N` reading
//!   `PATH (deleted)`) with its offset and flags, the four fds of `ghost.bin` at one inode (a
//!   write or seek through one shows through the others), `ghost2.txt` at another, the contents
//!   intact, and neither name back in the directory.
//! - `mapped`: `mapped_private.bin` (3 pages) mapped MAP_PRIVATE from its second page and changed
//!   through the mapping, `mapped_shared.bin` (2 pages) mapped MAP_SHARED and changed through the
//!   mapping; the fds closed and both files unlinked. After the wake each mapping must hold its
//!   bytes, keep its permissions, offset and `PATH (deleted)` name, and be backed by an unlinked
//!   file (`/proc/self/map_files`): the shared one sees writes to the file and the file writes to
//!   it, the private one's change is not in the file.
//! - `big`: `big.bin` (20000 bytes) at fd 44, unlinked, for the dump limit on unlinked files;
//!   prints `FD 44` and `SIZE 20000`.
//!
//! A second argument `wrong` makes the checks expect wrong contents (to show that they fail).

use stasis_tests::raw::{self, Mapping, PAGE};
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const GHOST_LEN: usize = 10_000;
const GHOST_TAIL: &[u8] = b"appended before the dump\n";
const GHOST2: &[u8] = b"the second unlinked file\n";
const BIG_LEN: usize = 20_000;
const BIG_FD: i32 = 44;

/// The pattern seed of a file's contents (changed by the `wrong` argument).
fn seed(base: u64) -> u64 {
    if workload::mode(2, &["wrong"]).is_some() {
        base ^ 1
    } else {
        base
    }
}

/// `len` bytes of the pattern `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    workload::pattern_fill(&mut v, seed);
    v
}

/// `dir/name` written with `content`.
fn create(name: &str, content: &[u8]) -> PathBuf {
    let path = workload::work_dir().join(name);
    std::fs::write(&path, content).or_fail(&format!("write {name}"));
    path
}

/// Opens `path` with `opts`, moves it to fd `at` and seeks to `pos`.
fn open_at(path: &Path, opts: &OpenOptions, at: i32, pos: u64) -> File {
    let f = opts.open(path).or_fail(&format!("open {}", path.display()));
    let mut f = File::from(raw::dup_to(f.as_fd(), at).or_fail(&format!("dup to {at}")));
    f.seek(SeekFrom::Start(pos)).or_fail("seek");
    f
}

/// Checks that `f` is an unlinked file whose fd link reads `PATH (deleted)` and whose flags are
/// `flags`; returns its (dev, inode).
fn check_unlinked(c: &mut Checker, f: &File, path: &Path, flags: i32) -> Option<(u64, u64)> {
    let fd = f.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    let want = format!("{} (deleted)", path.display());
    c.same(&format!("fd {fd}: link"), &Some(want), &link.ok().map(|l| l.to_string_lossy().into_owned()));
    c.same(&format!("fd {fd}: F_GETFL"), &Some(flags), &raw::get_fl(f).ok());
    let meta = c.ok(&format!("fd {fd}: fstat"), f.metadata())?;
    c.same(&format!("fd {fd}: nlink"), &0, &meta.nlink());
    Some((meta.dev(), meta.ino()))
}

/// Checks the bytes of `f` from 0 are `want` (and nothing more).
fn check_contents(c: &mut Checker, what: &str, f: &File, want: &[u8]) {
    let size = f.metadata().map(|m| m.len());
    c.same(&format!("{what}: size"), &Some(want.len() as u64), &size.as_ref().ok().copied());
    let mut got = vec![0u8; want.len()];
    if c.ok(&format!("{what}: read"), f.read_exact_at(&mut got, 0)).is_some() {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        c.check(at.is_none(), || format!("{what}: contents differ at byte {at:?}"));
    }
}

/// The `open` mode's files.
struct Ghosts {
    path: PathBuf,
    path2: PathBuf,
    rw: File,
    rw_dup: File,
    ro: File,
    app: File,
    other: File,
    flags: Vec<i32>,
}

fn ghosts() -> Ghosts {
    let path = create("ghost.bin", &pattern(GHOST_LEN, 0x6e05));
    let path2 = create("ghost2.txt", GHOST2);
    let mut app = open_at(&path, OpenOptions::new().append(true), 43, 0);
    app.write_all(GHOST_TAIL).or_fail("append");
    let rw = open_at(&path, OpenOptions::new().read(true).write(true), 40, 1234);
    let rw_dup = File::from(raw::dup_to(rw.as_fd(), 41).or_fail("dup to 41"));
    let ro = open_at(&path, OpenOptions::new().read(true), 42, 77);
    let other = open_at(&path2, OpenOptions::new().read(true).custom_flags(libc::O_NOATIME), 45, 3);
    std::fs::remove_file(&path).or_fail("unlink ghost.bin");
    std::fs::remove_file(&path2).or_fail("unlink ghost2.txt");
    let flags = [&rw, &rw_dup, &ro, &app, &other].map(|f| raw::get_fl(f).or_fail("F_GETFL")).to_vec();
    Ghosts { path, path2, rw, rw_dup, ro, app, other, flags }
}

/// The `open` mode's checks.
fn check_ghosts(c: &mut Checker, g: &mut Ghosts) {
    let fds = [&g.rw, &g.rw_dup, &g.ro, &g.app];
    let inodes: Vec<_> = fds.iter().zip(&g.flags).map(|(f, &fl)| check_unlinked(c, f, &g.path, fl)).collect();
    c.check(inodes.windows(2).all(|w| w[0] == w[1]), || format!("the fds of ghost.bin are not one inode: {inodes:?}"));
    let other = check_unlinked(c, &g.other, &g.path2, g.flags[4]);
    c.check(other.is_some() && other != inodes[0], || format!("ghost2.txt {other:?} is ghost.bin {:?}", inodes[0]));
    let offsets: Vec<_> = [&g.rw, &g.rw_dup, &g.ro, &g.app, &g.other].map(|mut f| f.stream_position().ok()).to_vec();
    let end = (GHOST_LEN + GHOST_TAIL.len()) as u64;
    c.same("offsets of fds 40 41 42 43 45", &[1234, 1234, 77, end, 3].map(Some).to_vec(), &offsets);
    let mut want = pattern(GHOST_LEN, seed(0x6e05));
    want.extend_from_slice(GHOST_TAIL);
    check_contents(c, "ghost.bin", &g.ro, &want);
    check_contents(c, "ghost2.txt", &g.other, GHOST2);
    check_one_inode(c, g, &mut want);
    for p in [&g.path, &g.path2] {
        c.check(!p.exists(), || format!("{} exists again after the restore", p.display()));
    }
}

/// Writes and seeks through one fd of `ghost.bin` and checks the others see it.
fn check_one_inode(c: &mut Checker, g: &mut Ghosts, want: &mut Vec<u8>) {
    c.ok("seek fd 40", g.rw.seek(SeekFrom::Start(2000)));
    c.same("offset of fd 41 after a seek through fd 40", &Some(2000), &g.rw_dup.stream_position().ok());
    c.ok("write at 100 through fd 40", g.rw.write_all_at(b"written through fd 40", 100));
    want[100..121].copy_from_slice(b"written through fd 40");
    c.ok("append through fd 43", g.app.write_all(b"appended after the restore\n"));
    want.extend_from_slice(b"appended after the restore\n");
    check_contents(c, "ghost.bin read through fd 42 after writes through fds 40 and 43", &g.ro, want);
}

/// The `mapped` mode's mappings and what each should hold.
struct Mapped {
    private: Mapping,
    private_path: PathBuf,
    shared: Mapping,
    shared_path: PathBuf,
    entries: Vec<Option<workload::MapEntry>>,
}

const PRIVATE_CHANGE: &[u8] = b"a private change before the dump";
const SHARED_CHANGE: &[u8] = b"a shared change before the dump";

fn mapped() -> Mapped {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let private_path = create("mapped_private.bin", &pattern(3 * PAGE, 0x9a1));
    let f = File::open(&private_path).or_fail("open mapped_private.bin");
    let private = Mapping::file_private(&f, PAGE as u64, 2 * PAGE, rw).or_fail("mmap private");
    private.write(100, PRIVATE_CHANGE);
    drop(f);
    let shared_path = create("mapped_shared.bin", &pattern(2 * PAGE, 0x9a2));
    let f = OpenOptions::new().read(true).write(true).open(&shared_path).or_fail("open mapped_shared.bin");
    let shared = Mapping::file_shared(&f, 0, 2 * PAGE, rw).or_fail("mmap shared");
    shared.write(5000, SHARED_CHANGE);
    drop(f);
    std::fs::remove_file(&private_path).or_fail("unlink mapped_private.bin");
    std::fs::remove_file(&shared_path).or_fail("unlink mapped_shared.bin");
    let entries = [&private, &shared].map(|m| workload::own_map_at(m.addr() as u64)).to_vec();
    Mapped { private, private_path, shared, shared_path, entries }
}

/// The file behind the mapping `m` (`/proc/self/map_files/START-END`), opened read-write.
fn backing_file(c: &mut Checker, what: &str, m: &Mapping) -> Option<File> {
    let e = workload::own_map_at(m.addr() as u64)?;
    let path = format!("/proc/self/map_files/{:x}-{:x}", e.start, e.end);
    let f = c.ok(&format!("{what}: open {path}"), OpenOptions::new().read(true).write(true).open(&path))?;
    let nlink = f.metadata().map(|m| m.nlink()).ok();
    c.same(&format!("{what}: nlink of the mapped file"), &Some(0), &nlink);
    Some(f)
}

/// The `mapped` mode's checks.
fn check_mapped(c: &mut Checker, m: &Mapped) {
    let now = [&m.private, &m.shared].map(|x| workload::own_map_at(x.addr() as u64)).to_vec();
    c.same("maps entries of the two mappings", &m.entries, &now);
    for (e, p) in now.iter().zip([&m.private_path, &m.shared_path]) {
        let want = format!("{} (deleted)", p.display());
        c.same("name of the mapping", &Some(want.as_str()), &e.as_ref().map(|e| e.path.as_str()));
    }
    let file = pattern(3 * PAGE, seed(0x9a1));
    let mut want = file[PAGE..].to_vec();
    want[100..100 + PRIVATE_CHANGE.len()].copy_from_slice(PRIVATE_CHANGE);
    let at = m.private.read(0, 2 * PAGE).iter().zip(&want).position(|(a, b)| a != b);
    c.check(at.is_none(), || format!("MAP_PRIVATE mapping differs at byte {at:?}"));
    if let Some(f) = backing_file(c, "MAP_PRIVATE mapping", &m.private) {
        check_contents(c, "file behind the MAP_PRIVATE mapping (without the private change)", &f, &file);
    }
    let mut want = pattern(2 * PAGE, seed(0x9a2));
    want[5000..5000 + SHARED_CHANGE.len()].copy_from_slice(SHARED_CHANGE);
    let at = m.shared.read(0, 2 * PAGE).iter().zip(&want).position(|(a, b)| a != b);
    c.check(at.is_none(), || format!("MAP_SHARED mapping differs at byte {at:?}"));
    let Some(f) = backing_file(c, "MAP_SHARED mapping", &m.shared) else { return };
    check_contents(c, "file behind the MAP_SHARED mapping", &f, &want);
    m.shared.write(6000, b"through the mapping");
    let mut got = [0u8; 19];
    c.ok("read the file", f.read_exact_at(&mut got, 6000));
    c.same("a write through the MAP_SHARED mapping, read from its file", b"through the mapping", &got);
    c.ok("write the file", f.write_all_at(b"through the file", 7000));
    c.same(
        "a write to the file, read through the MAP_SHARED mapping",
        &b"through the file".to_vec(),
        &m.shared.read(7000, 16),
    );
}

/// The `big` mode's file.
fn big() -> (File, PathBuf, i32) {
    let path = create("big.bin", &pattern(BIG_LEN, 0xb16));
    let f = open_at(&path, OpenOptions::new().read(true), BIG_FD, 10);
    std::fs::remove_file(&path).or_fail("unlink big.bin");
    workload::say(&format!("FD {BIG_FD}"));
    workload::say(&format!("SIZE {BIG_LEN}"));
    let flags = raw::get_fl(&f).or_fail("F_GETFL");
    (f, path, flags)
}

fn check_big(c: &mut Checker, f: &File, path: &Path, flags: i32) {
    check_unlinked(c, f, path, flags);
    check_contents(c, "big.bin", f, &pattern(BIG_LEN, seed(0xb16)));
}

fn main() {
    let mut s = workload::start();
    match std::env::args().nth(1).as_deref().unwrap_or("open") {
        "open" => {
            let mut g = ghosts();
            s.ready();
            s.wait_for_wake();
            check_ghosts(&mut s.checker, &mut g);
        }
        "mapped" => {
            let m = mapped();
            s.ready();
            s.wait_for_wake();
            check_mapped(&mut s.checker, &m);
        }
        "big" => {
            let (f, path, flags) = big();
            s.ready();
            s.wait_for_wake();
            check_big(&mut s.checker, &f, &path, flags);
        }
        other => Err::<(), _>(other.to_string()).or_fail("unknown mode (open|mapped|big)"),
    }
    s.finish()
}
