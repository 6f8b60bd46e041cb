//! memfds with the attributes and descriptions a program can tell apart:
//! - `stasis-exe`: a copy of `/bin/true` at fd 63 (the read-write description `memfd_create`
//!   made, which the kernel does not count as a writer), reopened read-only through
//!   `/proc/self/fd` at fd 60, as programs that run a file from memory do; `execveat(FD, "",
//!   AT_EMPTY_PATH)` of fd 60 and of fd 63 must run it before the dump and after the restore
//!   (ETXTBSY if anything, e.g. a read-write description reopened by path, holds it writable);
//! - `stasis-data`: three pages of pattern, mode 0640 (fchmod) and owner 1234:5678 (fchown),
//!   open read-write at fd 61 and read-only at fd 62 (reopened through `/proc/self/fd/61`: another
//!   description), mapped `MAP_SHARED` and `MAP_PRIVATE` (page 1 changed privately).
//!
//! After the wake: the modes and owners, fd 62 still read-only (a write fails with EBADF) and fd
//! 61 read-write, both fds and both mappings one object (same device and inode), a write through
//! fd 61 seen by the shared mapping and by the private one's unchanged page 0 but not by its page
//! 1, and the program still runs from fd 60.
//! An argument `wrong` makes the checks expect mode 0644 (to show that they fail).

use stasis_tests::raw::{self, Exit, Mapping, PAGE};
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

const OWNER: (u32, u32) = (1234, 5678);
const LEN: usize = 3 * PAGE;
const SEED: u64 = 0x3e3f_da7a;
const PRIVATE: &[u8] = b"a private change of page 1";

struct Setup {
    exe: File,
    exe_own: File,
    rw: File,
    ro: File,
    shared: Mapping,
    private: Mapping,
    entries: Vec<Option<workload::MapEntry>>,
}

fn reopen(f: &File, write: bool, at: i32) -> File {
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    let g = OpenOptions::new().read(true).write(write).open(&path).or_fail(&format!("open {path}"));
    File::from(raw::dup_to(g.as_fd(), at).or_fail(&format!("dup to {at}")))
}

fn setup(c: &mut Checker) -> Setup {
    let exe_rw = raw::memfd_create("stasis-exe", libc::MFD_CLOEXEC).or_fail("memfd_create stasis-exe");
    exe_rw.write_all_at(&std::fs::read("/bin/true").or_fail("read /bin/true"), 0).or_fail("fill stasis-exe");
    let exe = reopen(&exe_rw, false, 60);
    let exe_own = File::from(raw::dup_to(exe_rw.as_fd(), 63).or_fail("dup to 63"));
    drop(exe_rw);
    for (fd, f) in [(60, &exe), (63, &exe_own)] {
        let ran = raw::run_fd(f, "stasis-exe");
        c.same(&format!("execveat of fd {fd} before the dump"), &Some(Exit::Code(0)), &ran.ok());
    }
    let data = raw::memfd_create("stasis-data", libc::MFD_CLOEXEC).or_fail("memfd_create stasis-data");
    let mut content = vec![0u8; LEN];
    workload::pattern_fill(&mut content, SEED);
    data.write_all_at(&content, 0).or_fail("fill stasis-data");
    std::os::unix::fs::fchown(&data, Some(OWNER.0), Some(OWNER.1)).or_fail("fchown");
    data.set_permissions(std::fs::Permissions::from_mode(0o640)).or_fail("fchmod");
    let rw = File::from(raw::dup_to(data.as_fd(), 61).or_fail("dup to 61"));
    drop(data);
    let ro = reopen(&rw, false, 62);
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let shared = Mapping::file_shared(&rw, 0, LEN, prot).or_fail("mmap shared");
    let private = Mapping::file_private(&rw, 0, LEN, prot).or_fail("mmap private");
    private.write(PAGE + 10, PRIVATE);
    let entries = [&shared, &private].map(|m| workload::own_map_at(m.addr() as u64)).to_vec();
    Setup { exe, exe_own, rw, ro, shared, private, entries }
}

fn want_mode() -> u32 {
    if std::env::args().nth(1).as_deref() == Some("wrong") {
        0o644
    } else {
        0o640
    }
}

/// (dev, inode) of `f`, or of the file behind the mapping `m`.
fn identity(f: Option<&File>, m: Option<&Mapping>) -> Option<(u64, u64)> {
    let meta = match (f, m) {
        (Some(f), _) => f.metadata().ok()?,
        (None, Some(m)) => {
            let e = workload::own_map_at(m.addr() as u64)?;
            std::fs::metadata(format!("/proc/self/map_files/{:x}-{:x}", e.start, e.end)).ok()?
        }
        _ => return None,
    };
    Some((meta.dev(), meta.ino()))
}

fn check(c: &mut Checker, s: &Setup) {
    for (fd, f) in [(60, &s.exe), (63, &s.exe_own)] {
        let ran = raw::run_fd(f, "stasis-exe");
        c.same(&format!("execveat of fd {fd} after the restore"), &Some(Exit::Code(0)), &ran.ok());
    }
    c.same("F_GETFL of fd 63", &Some(libc::O_RDWR), &raw::get_fl(&s.exe_own).ok().map(|f| f & libc::O_ACCMODE));
    c.same("F_GETFL of fd 60", &Some(libc::O_RDONLY), &raw::get_fl(&s.exe).ok().map(|f| f & libc::O_ACCMODE));
    let m = s.rw.metadata().ok();
    c.same(
        "stasis-data: mode",
        &Some(format!("{:o}", libc::S_IFREG | want_mode())),
        &m.as_ref().map(|m| format!("{:o}", m.mode())),
    );
    c.same("stasis-data: owner", &Some(OWNER), &m.as_ref().map(|m| (m.uid(), m.gid())));
    c.same("F_GETFL of fd 61", &Some(libc::O_RDWR), &raw::get_fl(&s.rw).ok().map(|f| f & libc::O_ACCMODE));
    c.same("F_GETFL of fd 62", &Some(libc::O_RDONLY), &raw::get_fl(&s.ro).ok().map(|f| f & libc::O_ACCMODE));
    let w = s.ro.write_at(b"x", 0).map_err(|e| e.raw_os_error());
    c.same("a write through the read-only fd 62", &Err(Some(libc::EBADF)), &w);
    let ids = [
        identity(Some(&s.rw), None),
        identity(Some(&s.ro), None),
        identity(None, Some(&s.shared)),
        identity(None, Some(&s.private)),
    ];
    c.check(ids[0].is_some() && ids.iter().all(|i| *i == ids[0]), || {
        format!("fds 61, 62 and the mappings are not one memfd: {ids:?}")
    });
    let now = [&s.shared, &s.private].map(|m| workload::own_map_at(m.addr() as u64)).to_vec();
    c.same("maps entries of the two mappings", &s.entries, &now);
    let mut want = vec![0u8; LEN];
    workload::pattern_fill(&mut want, SEED);
    c.check(s.shared.read(0, LEN) == want, || "the MAP_SHARED mapping differs".into());
    let mut private = want.clone();
    private[PAGE + 10..PAGE + 10 + PRIVATE.len()].copy_from_slice(PRIVATE);
    c.check(s.private.read(0, LEN) == private, || "the MAP_PRIVATE mapping differs".into());
    c.ok(
        "write through fd 61",
        s.rw.write_all_at(b"after", 20).and_then(|()| s.rw.write_all_at(b"after", PAGE as u64 + 20)),
    );
    c.same("fd 61's write seen by the shared mapping", &b"after".to_vec(), &s.shared.read(20, 5));
    c.same("fd 61's write seen by page 0 of the private mapping", &b"after".to_vec(), &s.private.read(20, 5));
    c.same(
        "page 1 of the private mapping keeps its own copy",
        &private[PAGE + 20..PAGE + 25].to_vec(),
        &s.private.read(PAGE + 20, 5),
    );
    let mut got = [0u8; 5];
    c.ok("read fd 62", s.ro.read_exact_at(&mut got, 20));
    c.same("fd 61's write read through fd 62", b"after", &got);
}

fn main() {
    let mut s = workload::start();
    let setup = setup(&mut s.checker);
    s.ready();
    s.wait_for_wake();
    check(&mut s.checker, &setup);
    s.finish()
}
