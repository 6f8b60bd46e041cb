//! A tree in UTS and IPC namespaces of its own: the root unshares both (`CLONE_NEWUTS |
//! CLONE_NEWIPC`) and sets a host and domain name; in its IPC namespace it creates a SysV segment
//! (attached, with a pattern), a POSIX message queue holding one message, a SysV semaphore set
//! with values set and changed by semop, and a SysV message queue with a lowered byte limit holding
//! three messages of other types and lengths (one empty, one over the default msgmax, which it raised); then it forks a child
//! that unshares a UTS namespace of its own (so it is in a namespace other than its parent's) with
//! other names, and stays in its parent's IPC namespace.
//!
//! After the wake the root checks its names, that its UTS and IPC namespaces are still not those
//! it left, that the segment's key names its id, with its attachments and pattern, and that the
//! queue holds the message; that the semaphore set and the SysV queue have their ids, modes and
//! byte limit, the values and the messages (types, order, bytes), and that semop and msgrcv/msgsnd
//! still work on them; the child checks its names, that its UTS namespace is not its
//! parent's and its IPC namespace is (the segment's key names the same id there), and reports.

use stasis_tests::raw::{self, ShmAttached};
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;

const KEY: i32 = 0x4e53_0001;
const SIZE: usize = 64 << 10;
const SEED: u64 = 0x4e53_5553_0000_0001;
const QUEUE: &str = "/stasis-ns-queue";
const MESSAGE: &[u8] = b"queued in its own IPC namespace before the dump";
const PRIO: u32 = 3;
const SEM_KEY: i32 = 0x4e53_0002;
const SEM_VALUES: [u16; 3] = [7, 0, 32767];
/// After `semop(+2)` on the second semaphore.
const SEM_DUMPED: [u16; 3] = [7, 2, 32767];
const MSG_KEY: i32 = 0x4e53_0003;
const MSG_QBYTES: u64 = 12000;
/// The namespace's message size limit, raised from 8192 so that the long message fits.
const MSGMAX: &str = "10000";
const MSGMAX_PATH: &str = "/proc/sys/kernel/msgmax";
const DOMAIN: &str = "stasis-ns-domain";
const CHILD_HOST: &str = "stasis-ns-child";
const CHILD_DOMAIN: &str = "stasis-ns-child-domain";

fn host_of(pid: i32) -> String {
    format!("stasis-ns-{pid}")
}

fn unshare_or_skip(flags: i32) {
    match raw::unshare(flags) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => workload::skip("unshare needs CAP_SYS_ADMIN"),
        Err(e) => Err::<(), _>(e).or_fail(&format!("unshare({flags:#x})")),
    }
}

/// The namespace `name` of the caller is (`same`) or is not that of `pid`.
fn check_ns(c: &mut Checker, who: &str, name: &str, pid: i32, same: bool) {
    let (mine, theirs) = (raw::ns_link(0, name), raw::ns_link(pid, name));
    let ok = matches!((&mine, &theirs), (Ok(a), Ok(b)) if (a == b) == same);
    let want = if same { "the same as" } else { "other than" };
    c.check(ok, || format!("{who}: {name} namespace {mine:?}, want {want} pid {pid}'s {theirs:?}"));
}

fn child(link: TreeParent, id: i32) -> i32 {
    unshare_or_skip(libc::CLONE_NEWUTS);
    raw::set_uts_names(CHILD_HOST, CHILD_DOMAIN).or_fail("child: setting its names");
    link.send("ready\n").or_fail("child: ready");
    let mut c = Checker::default();
    let go = link.line();
    c.check(go.as_deref().ok() == Some("go"), || format!("child: wake line {go:?}"));
    let names = raw::uts_names().map_err(|e| e.to_string());
    c.same("child: uname names", &Ok((CHILD_HOST.to_string(), CHILD_DOMAIN.to_string())), &names);
    let parent = std::os::unix::process::parent_id() as i32;
    check_ns(&mut c, "child", "uts", parent, false);
    check_ns(&mut c, "child", "ipc", parent, true);
    let found = raw::shmget(KEY, 0, 0).map_err(|e| e.to_string());
    c.same("child: segment id of the key", &Ok(id), &found);
    link.report(c)
}

fn main() {
    let mut s = workload::start();
    let host_ns = (raw::ns_link(0, "uts").or_fail("uts link"), raw::ns_link(0, "ipc").or_fail("ipc link"));
    unshare_or_skip(libc::CLONE_NEWUTS | libc::CLONE_NEWIPC);
    let host = host_of(s.pid());
    raw::set_uts_names(&host, DOMAIN).or_fail("setting the names");
    let id = raw::shmget(KEY, SIZE, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).or_fail("shmget");
    let seg = ShmAttached::attach(id).or_fail("shmat");
    for (i, w) in seg.words().iter().enumerate() {
        w.store(workload::pattern_word(SEED, i), SeqCst);
    }
    let queue = raw::mq_open(QUEUE, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600, 4, 128).or_fail("mq_open");
    raw::mq_send(queue.as_fd(), MESSAGE, PRIO).or_fail("mq_send");
    let sysv = make_sysv();
    let kid = workload::fork_child("child", |link| child(link, id));
    kid.expect_line(&mut s.checker, "ready", "ready");
    s.ready();
    s.wait_for_wake();
    verify(&mut s.checker, (&host, &host_ns), id, &seg, &queue);
    verify_sysv(&mut s.checker, sysv);
    kid.send("go\n").or_fail("waking the child");
    kid.collect(&mut s.checker);
    s.finish();
}

/// `host_ns`: the UTS and IPC namespace links from before the `unshare`, which must not be ours.
fn verify(c: &mut Checker, (host, host_ns): (&str, &(String, String)), id: i32, seg: &ShmAttached, queue: &OwnedFd) {
    let names = raw::uts_names().map_err(|e| e.to_string());
    c.same("uname names", &Ok((host.to_string(), DOMAIN.to_string())), &names);
    for (name, outside) in [("uts", &host_ns.0), ("ipc", &host_ns.1)] {
        let now = raw::ns_link(0, name).map_err(|e| e.to_string());
        c.check(now.as_ref().is_ok_and(|l| l != outside), || format!("{name} namespace {now:?}: the one it left"));
    }
    let found = raw::shmget(KEY, 0, 0).map_err(|e| e.to_string());
    c.same("segment id of the key", &Ok(id), &found);
    let stat = raw::shm_stat(id).map(|st| (st.key, st.size, st.nattch)).map_err(|e| e.to_string());
    c.same("segment key, size, attachments", &Ok((KEY, SIZE, 2)), &stat);
    let bad = seg.words().iter().enumerate().position(|(i, w)| w.load(SeqCst) != workload::pattern_word(SEED, i));
    c.check(bad.is_none(), || format!("segment pattern differs at word {bad:?}"));
    let got = raw::mq_receive(queue.as_fd(), 128).map_err(|e| e.to_string());
    c.same("queued message", &Ok((MESSAGE.to_vec(), PRIO)), &got);
}

/// The SysV messages queued before the dump: (type, text).
fn messages() -> Vec<(i64, Vec<u8>)> {
    let long: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![(5, b"first, of type 5".to_vec()), (2, Vec::new()), (9, long)]
}

/// A semaphore set and a message queue in the new IPC namespace: their ids.
fn make_sysv() -> (i32, i32) {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL;
    let sem = raw::semget(SEM_KEY, SEM_VALUES.len() as i32, flags | 0o640).or_fail("semget");
    raw::sem_set_values(sem, &SEM_VALUES).or_fail("semctl(SETALL)");
    raw::semop_nowait(sem, 1, 2).or_fail("semop(+2)");
    std::fs::write(MSGMAX_PATH, MSGMAX).or_fail("raising msgmax");
    let msg = raw::msgget(MSG_KEY, flags | 0o620).or_fail("msgget");
    raw::msg_set_qbytes(msg, MSG_QBYTES).or_fail("msgctl(IPC_SET)");
    for (mtype, text) in messages() {
        raw::msg_send(msg, mtype, &text).or_fail("msgsnd");
    }
    (sem, msg)
}

fn verify_sysv(c: &mut Checker, (sem, msg): (i32, i32)) {
    let err = |e: std::io::Error| e.to_string();
    c.same("semaphore set id of the key", &Ok(sem), &raw::semget(SEM_KEY, 0, 0).map_err(err));
    c.same("semaphore set mode, nsems", &Ok((0o640, 3)), &raw::sem_stat(sem).map_err(err));
    c.same("semaphore values", &Ok(SEM_DUMPED.to_vec()), &raw::sem_values(sem, 3).map_err(err));
    c.same("semop(-7) on the first", &Ok(()), &raw::semop_nowait(sem, 0, -7).map_err(err));
    let again = raw::semop_nowait(sem, 0, -1).map_err(|e| e.raw_os_error());
    c.same("semop(-1) on the emptied first", &Err(Some(libc::EAGAIN)), &again);
    c.same("semaphore values after semop", &Ok(vec![0, 2, 32767]), &raw::sem_values(sem, 3).map_err(err));
    let msgmax = std::fs::read_to_string(MSGMAX_PATH).map(|v| v.trim().to_string()).map_err(err);
    c.same("the namespace's msgmax", &Ok(MSGMAX.to_string()), &msgmax);
    c.same("message queue id of the key", &Ok(msg), &raw::msgget(MSG_KEY, 0).map_err(err));
    c.same("message queue mode, qbytes, messages", &Ok((0o620, MSG_QBYTES, 3)), &raw::msg_stat(msg).map_err(err));
    for (i, want) in messages().into_iter().enumerate() {
        c.same(&format!("SysV message {i}"), &Ok(want), &raw::msg_receive(msg, 16384).map_err(err));
    }
    let none = raw::msg_receive(msg, 16384).map_err(|e| e.raw_os_error());
    c.same("SysV queue after the messages", &Err(Some(libc::ENOMSG)), &none);
    raw::msg_send(msg, 4, b"after the restore").or_fail("msgsnd after the restore");
    let back = raw::msg_receive(msg, 16384).map_err(err);
    c.same("SysV message sent after the restore", &Ok((4, b"after the restore".to_vec())), &back);
}
