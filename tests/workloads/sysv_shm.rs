//! SysV shared memory segments: the root creates segment A (a key made from its pid, 64 KiB, mode
//! 0640), attaches it and writes a pattern; creates segment B (`IPC_PRIVATE`, 8 KiB, mode 0600),
//! attaches it, writes another pattern and detaches it again (so only its id keeps it); then forks
//! a child, which keeps A attached where the root has it. The root prints `SHM A <id>` and
//! `SHM B <id>` before READY, so that a test can remove the originals between the dump and the
//! restore.
//!
//! After the wake the root checks A by IPC_STAT (key, mode, size, two attachments), that its key
//! still names its id, that its attachment is where it was and its contents; checks B by IPC_STAT
//! (no key, mode, size, no attachment), attaches it again by its id and checks its contents. It
//! then writes a new generation into A and wakes the child, which checks it sees it (one segment
//! shared, not a copy each), answers through A and reports; the root reaps the child, checks the
//! answer, removes both segments (IPC_RMID) and checks they are gone once detached.

use stasis_tests::raw::{self, ShmAttached};
use stasis_tests::workload::{self, Checker, OrFail, TreeParent, WAKE};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

const A_SIZE: usize = 64 << 10;
const A_MODE: u32 = 0o640;
const B_SIZE: usize = 8 << 10;
const B_MODE: u32 = 0o600;
/// A's key is this with the root's pid in the low bits (pids are below 2^22).
const KEY_BASE: i32 = 0x5300_0000;
const SEED_A: u64 = 0x5379_5641_0000_00a1;
const SEED_B: u64 = 0x5379_5642_0000_00b2;

/// A's words: the generation (the root's), the child's answer, then the pattern.
const W_GEN: usize = 0;
const W_ANSWER: usize = 1;
const W_PATTERN: usize = 2;
/// The generation written before the dump, and the one the root writes after the wake.
const BEFORE: u64 = 0x0bef_0e00;
const GO: u64 = 0x0060_0d00_0003;
/// The child's answer through A.
const ANSWER: u64 = 0x0a45_5e00_0001;

/// Creates a segment with `key` of `size` bytes and `mode` (`IPC_CREAT | IPC_EXCL`).
fn create(key: i32, size: usize, mode: u32) -> i32 {
    let id = raw::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | mode as i32);
    if matches!(&id, Err(e) if e.raw_os_error() == Some(libc::ENOSYS)) {
        workload::skip("no SysV IPC in this kernel");
    }
    id.or_fail(&format!("shmget key {key:#x} of {size} bytes"))
}

/// Fills `words` from index `from` with the pattern `seed`.
fn fill(words: &[std::sync::atomic::AtomicU64], from: usize, seed: u64) {
    for (i, w) in words[from..].iter().enumerate() {
        w.store(workload::pattern_word(seed, i), SeqCst);
    }
}

/// Checks `words` from index `from` hold the pattern `seed`.
fn check_pattern(c: &mut Checker, what: &str, words: &[std::sync::atomic::AtomicU64], from: usize, seed: u64) {
    let words = &words[from..];
    let off = words.iter().enumerate().position(|(i, w)| w.load(SeqCst) != workload::pattern_word(seed, i));
    c.check(off.is_none(), || format!("{what}: pattern differs at word {} of {}", off.unwrap_or(0), words.len()));
}

/// Checks `seg` is attached at its address as SysV segment `key`, read and write, shared.
fn check_attachment(c: &mut Checker, what: &str, seg: &ShmAttached, key: i32) {
    let m = workload::own_map_at(seg.addr() as u64);
    let want = format!("/SYSV{key:08x}");
    c.check(
        m.as_ref().is_some_and(|m| {
            m.start == seg.addr() as u64
                && m.end == (seg.addr() + seg.len()) as u64
                && m.perms == "rw-s"
                && m.path.starts_with(&want)
        }),
        || format!("{what}: maps entry at {:#x}: {m:?}, want {} bytes rw-s {want}", seg.addr(), seg.len()),
    );
}

/// Checks segment `id` by IPC_STAT: key, permissions, size and attachments.
fn check_stat(c: &mut Checker, what: &str, id: i32, want: (i32, u32, usize, u64)) {
    let got = c.ok(&format!("{what}: IPC_STAT of id {id}"), raw::shm_stat(id));
    let got = got.map(|s| (s.key, s.mode & 0o777, s.size, s.nattch));
    c.same(&format!("{what}: (key, mode, size, attachments) of id {id}"), &Some(want), &got);
}

/// The child: keeps A attached (inherited), waits for the wake, checks it sees the root's new
/// generation and the pattern, answers through A and reports.
fn child(a: &ShmAttached, key: i32, parent: TreeParent) -> i32 {
    let mut s = workload::start();
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    check_attachment(c, "A in the child", a, key);
    let words = a.words();
    c.same("generation in A seen by the child (shared, not a copy)", &GO, &words[W_GEN].load(SeqCst));
    check_pattern(c, "A in the child", words, W_PATTERN, SEED_A);
    words[W_ANSWER].store(ANSWER, SeqCst);
    parent.report(s.into_checker())
}

/// After the wake: A as before the dump, where it was.
fn check_a(c: &mut Checker, a: &ShmAttached, id: i32, key: i32) {
    let by_key = raw::shmget(key, 0, 0);
    c.check(matches!(by_key, Ok(i) if i == id), || format!("A: key {key:#x} names {by_key:?}, want id {id}"));
    check_stat(c, "A", id, (key, A_MODE, A_SIZE, 2));
    check_attachment(c, "A in the root", a, key);
    let words = a.words();
    c.same("A: generation", &BEFORE, &words[W_GEN].load(SeqCst));
    c.same("A: answer word before the child's answer", &0, &words[W_ANSWER].load(SeqCst));
    check_pattern(c, "A in the root", words, W_PATTERN, SEED_A);
}

/// After the wake: B as before the dump, attached again by its id.
fn check_b(c: &mut Checker, id: i32) {
    check_stat(c, "B", id, (libc::IPC_PRIVATE, B_MODE, B_SIZE, 0));
    if let Some(b) = c.ok(&format!("B: attach id {id}"), ShmAttached::attach(id)) {
        check_pattern(c, "B", b.words(), 0, SEED_B);
        c.ok("B: detach", b.detach());
    }
}

/// Removes segment `id` and checks it is gone (nothing has it attached any more).
fn remove(c: &mut Checker, what: &str, id: i32) {
    c.ok(&format!("{what}: IPC_RMID of id {id}"), raw::shm_remove(id));
    let after = raw::shm_stat(id);
    c.check(after.is_err(), || format!("{what}: id {id} still exists after IPC_RMID: {after:?}"));
}

fn main() {
    let mut s = workload::start();
    let key = KEY_BASE | s.pid();
    let id_a = create(key, A_SIZE, A_MODE);
    let a = ShmAttached::attach(id_a).or_fail("attach A");
    a.words()[W_GEN].store(BEFORE, SeqCst);
    fill(a.words(), W_PATTERN, SEED_A);
    let id_b = create(libc::IPC_PRIVATE, B_SIZE, B_MODE);
    let b = ShmAttached::attach(id_b).or_fail("attach B");
    fill(b.words(), 0, SEED_B);
    b.detach().or_fail("detach B");
    let kid = workload::fork_child("child", |link| child(&a, key, link));
    kid.line().or_fail("ready line of the child");
    let awake = workload::wait_processes_in(&[kid.pid], &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("child not asleep at READY (pid, state): {awake:?}"));
    }
    workload::say(&format!("SHM A {id_a}"));
    workload::say(&format!("SHM B {id_b}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    check_a(c, &a, id_a, key);
    check_b(c, id_b);
    a.words()[W_GEN].store(GO, SeqCst);
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    kid.collect(c);
    c.same("A: the child's answer (shared, not a copy)", &ANSWER, &a.words()[W_ANSWER].load(SeqCst));
    c.ok("A: detach", a.detach());
    remove(c, "A", id_a);
    remove(c, "B", id_b);
    s.finish()
}
