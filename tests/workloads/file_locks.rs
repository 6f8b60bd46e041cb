//! File locks of every kind in a parent and its child, each on files of the work directory:
//! - the parent: a POSIX write lock on bytes 0-99 of `posix.lck` (fd 70), `flock(LOCK_EX)` on
//!   `flock.lck` (fd 71), an OFD write lock on bytes 10-19 of `ofd.lck` (description A, fd 72), a
//!   read lease on `lease.lck` (fd 76, read-only); then it forks the child, which inherits those
//!   descriptions;
//! - the child: a POSIX read lock from byte 200 to the end of `posix.lck` (its own description,
//!   fd 73), `flock(LOCK_SH)` on `flock2.lck` (fd 74), an OFD read lock on bytes 100-149 of
//!   `ofd.lck` (description B, fd 75).
//!
//! After the wake each process checks, through new descriptions of its own and through its fds,
//! that the locks are held by the right owner with their ranges and types: `F_GETLK` reports the
//! other process's POSIX lock with its pid and none of its own, `F_OFD_GETLK` reports an OFD lock
//! to another description and not to its own, `flock(LOCK_NB)` on a new description fails with
//! EWOULDBLOCK, `F_GETLEASE` reads the lease. An argument `wrong` makes the parent expect a write
//! lease (to show that the checks fail).

use stasis_tests::raw::{self, RecordLock};
use stasis_tests::workload::{self, Checker, OrFail, TreeParent, WAKE};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::time::Duration;

const W: i32 = libc::F_WRLCK;
const R: i32 = libc::F_RDLCK;
const U: i32 = libc::F_UNLCK;

fn lock(kind: i32, start: i64, len: i64) -> RecordLock {
    RecordLock { kind, start, len, pid: 0 }
}

fn open_at(name: &str, write: bool, at: i32) -> File {
    let path = workload::work_dir().join(name);
    let f = OpenOptions::new().read(true).write(write).create(write).truncate(false).open(&path).or_fail(name);
    File::from(raw::dup_to(f.as_fd(), at).or_fail(&format!("dup to {at}")))
}

fn fresh(name: &str) -> File {
    OpenOptions::new().read(true).write(true).open(workload::work_dir().join(name)).or_fail(name)
}

/// What `cmd` on `f` reports for a `probe` lock: (type, start, len, pid), start and len only
/// when a lock was found.
fn probe(c: &mut Checker, what: &str, f: &File, cmd: i32, probe: RecordLock, want: (i32, i64, i64, i32)) {
    let got = c.ok(what, raw::record_lock(f, cmd, probe));
    let got = got.map(|l| if l.kind == U { (U, 0, 0, 0) } else { (l.kind, l.start, l.len, l.pid) });
    c.same(what, &Some(want), &got);
}

fn would_block(c: &mut Checker, what: &str, f: &File, op: i32) {
    let r = raw::flock(f, op | libc::LOCK_NB).map_err(|e| e.raw_os_error());
    c.same(what, &Err(Some(libc::EWOULDBLOCK)), &r);
}

struct Parent {
    posix: File,
    ofd: File,
    lease: File,
    _flock: File,
}

fn parent_setup() -> Parent {
    let posix = open_at("posix.lck", true, 70);
    raw::record_lock(&posix, libc::F_SETLK, lock(W, 0, 100)).or_fail("F_SETLK write 0-99");
    let flock = open_at("flock.lck", true, 71);
    raw::flock(&flock, libc::LOCK_EX).or_fail("flock LOCK_EX");
    let ofd = open_at("ofd.lck", true, 72);
    raw::record_lock(&ofd, libc::F_OFD_SETLK, lock(W, 10, 10)).or_fail("F_OFD_SETLK write 10-19");
    drop(open_at("lease.lck", true, 77));
    let lease = open_at("lease.lck", false, 76);
    raw::fcntl_int(&lease, libc::F_SETLEASE, R).or_fail("F_SETLEASE read");
    Parent { posix, ofd, lease, _flock: flock }
}

fn check_parent(c: &mut Checker, p: &Parent, child: i32) {
    // Through fd 70: closing another fd of posix.lck would drop the parent's POSIX locks on it.
    probe(c, "parent: F_GETLK 0-99 (its own lock)", &p.posix, libc::F_GETLK, lock(W, 0, 100), (U, 0, 0, 0));
    probe(c, "parent: F_GETLK 200-299 (the child's)", &p.posix, libc::F_GETLK, lock(W, 200, 100), (R, 200, 0, child));
    would_block(c, "parent: flock(LOCK_SH) on a new description of flock.lck", &fresh("flock.lck"), libc::LOCK_SH);
    let ofd = fresh("ofd.lck");
    probe(
        c,
        "parent: F_OFD_GETLK 10-19 on a new description",
        &ofd,
        libc::F_OFD_GETLK,
        lock(W, 10, 10),
        (W, 10, 10, -1),
    );
    probe(c, "parent: F_OFD_GETLK 10-19 on fd 72 (its own)", &p.ofd, libc::F_OFD_GETLK, lock(W, 10, 10), (U, 0, 0, 0));
    probe(c, "parent: F_OFD_GETLK 100-149 on fd 72", &p.ofd, libc::F_OFD_GETLK, lock(W, 100, 50), (R, 100, 50, -1));
    let want = if std::env::args().nth(1).as_deref() == Some("wrong") { W } else { R };
    c.same("parent: F_GETLEASE of fd 76", &Some(want), &raw::fcntl_int(&p.lease, libc::F_GETLEASE, 0).ok());
}

fn child(parent: TreeParent, p: &Parent) -> i32 {
    let mut s = workload::start();
    let posix = open_at("posix.lck", true, 73);
    raw::record_lock(&posix, libc::F_SETLK, lock(R, 200, 0)).or_fail("F_SETLK read 200-");
    let flock2 = open_at("flock2.lck", true, 74);
    raw::flock(&flock2, libc::LOCK_SH).or_fail("flock LOCK_SH");
    let ofd = open_at("ofd.lck", true, 75);
    raw::record_lock(&ofd, libc::F_OFD_SETLK, lock(R, 100, 50)).or_fail("F_OFD_SETLK read 100-149");
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    let ppid = raw::raw_getppid();
    probe(c, "child: F_GETLK 0-99 (the parent's)", &posix, libc::F_GETLK, lock(W, 0, 100), (W, 0, 100, ppid));
    probe(c, "child: F_GETLK 200-299 (its own)", &posix, libc::F_GETLK, lock(W, 200, 100), (U, 0, 0, 0));
    would_block(c, "child: flock(LOCK_EX) on a new description of flock2.lck", &fresh("flock2.lck"), libc::LOCK_EX);
    would_block(c, "child: flock(LOCK_SH) on a new description of flock.lck", &fresh("flock.lck"), libc::LOCK_SH);
    probe(c, "child: F_OFD_GETLK 100-149 on fd 75 (its own)", &ofd, libc::F_OFD_GETLK, lock(W, 100, 50), (U, 0, 0, 0));
    probe(c, "child: F_OFD_GETLK 100-149 on fd 72", &p.ofd, libc::F_OFD_GETLK, lock(W, 100, 50), (R, 100, 50, -1));
    probe(c, "child: F_OFD_GETLK 10-19 on fd 75", &ofd, libc::F_OFD_GETLK, lock(W, 10, 10), (W, 10, 10, -1));
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let p = parent_setup();
    let kid = workload::fork_child("child", |link| child(link, &p));
    kid.line().or_fail("ready line of the child");
    let asleep = workload::wait_processes_in(&[kid.pid], &['S'], Duration::from_secs(5));
    if !asleep.is_empty() {
        s.checker.note(format!("child not asleep at READY (pid, state): {asleep:?}"));
    }
    s.ready();
    s.wait_for_wake();
    check_parent(&mut s.checker, &p, kid.pid);
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    kid.collect(c);
    s.finish()
}
