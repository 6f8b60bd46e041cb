//! Seccomp as a container runtime leaves it (runc without noNewPrivileges): a filter installed
//! while the process had CAP_SYS_ADMIN (`getppid` fails with errno 42), synchronised to its other
//! thread (TSYNC), then CAP_SYS_ADMIN dropped by both threads, no_new_privs never set. After the
//! restore each thread checks that the filter acts, that CAP_SYS_ADMIN is still not effective nor
//! permitted, and that no_new_privs is still off.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::sync::mpsc;

const CAP_SYS_ADMIN: u64 = 1 << 21;
const TSYNC: u32 = 1;

fn drop_sys_admin() {
    let mut caps = raw::capget().or_fail("capget");
    caps.effective &= !CAP_SYS_ADMIN;
    caps.permitted &= !CAP_SYS_ADMIN;
    raw::capset(caps).or_fail("capset without CAP_SYS_ADMIN");
}

/// This thread's state as the checks see it: getppid's errno, CAP_SYS_ADMIN effective or
/// permitted, and no_new_privs.
fn state() -> (i64, bool, i32) {
    let ret = raw::raw_syscall0(libc::SYS_getppid);
    let caps = raw::capget().or_fail("capget");
    let admin = (caps.effective | caps.permitted) & CAP_SYS_ADMIN != 0;
    let nnp = raw::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0).or_fail("PR_GET_NO_NEW_PRIVS");
    (ret, admin, nnp)
}

fn check(c: &mut Checker, who: &str, got: (i64, bool, i32)) {
    c.same(&format!("{who}: getppid, CAP_SYS_ADMIN, no_new_privs"), &(-42, false, 0), &got);
}

fn main() {
    let mut s = workload::start();
    let (go, wait) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let (to_thread, from_main) = go;
    let (to_main, from_thread) = wait;
    let (report_tx, report_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        from_main.recv().or_fail("waiting for the filter");
        drop_sys_admin();
        to_main.send(()).or_fail("telling the main thread");
        from_main.recv().or_fail("waiting for the wake");
        report_tx.send(state()).or_fail("reporting");
    });
    raw::seccomp_errno_filter(libc::SYS_getppid, 42, TSYNC).or_fail("the filter, with TSYNC");
    drop_sys_admin();
    to_thread.send(()).or_fail("starting the thread");
    from_thread.recv().or_fail("the thread dropping its capability");
    check(&mut s.checker, "main thread before the dump", state());
    s.ready();
    s.wait_for_wake();
    check(&mut s.checker, "main thread after the restore", state());
    to_thread.send(()).or_fail("waking the thread");
    check(&mut s.checker, "thread after the restore", report_rx.recv().or_fail("the thread's state"));
    thread.join().map_err(|_| "it panicked").or_fail("joining the thread");
    s.finish()
}
