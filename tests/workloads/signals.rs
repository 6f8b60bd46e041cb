//! Signal state survives: handlers with SA_SIGINFO, SA_RESTART, SA_ONSTACK, SA_NODEFER and
//! SA_RESETHAND and their masks, ignored signals, the blocked mask, the alternate stack, and
//! pending signals: process-wide (kill, sigqueue) and thread-directed (tgkill, rt_tgsigqueueinfo),
//! including two queued instances of one RT signal with different values. After the wake-up the
//! whole disposition table must be unchanged, sigtimedwait must return every pending signal with
//! its code, sender and value, and delivering signals must run the handlers with the right stack
//! and mask.

use stasis_tests::raw::{self, Mapping, SigSet};
use stasis_tests::workload::{self, Checker, OrFail, WAKE};
use std::time::Duration;

const ALT_SIZE: usize = 64 * 1024;

struct Setup {
    rt: i32,
    /// The si_code this kernel gives tgkill'ed signals (SI_TKILL; 6.18 reports SI_USER).
    tkill_code: i32,
    pid: i32,
    tid: i32,
    alt: &'static Mapping,
}

fn handlers(rt: i32) {
    let info = raw::set_info_recording_handler;
    info(libc::SIGUSR2, libc::SA_RESTART, SigSet::of(&[libc::SIGINT])).or_fail("SIGUSR2");
    let hup_flags = libc::SA_ONSTACK | libc::SA_NODEFER;
    raw::set_recording_handler(libc::SIGHUP, hup_flags, SigSet::of(&[libc::SIGQUIT, libc::SIGTERM])).or_fail("SIGHUP");
    info(libc::SIGINT, libc::SA_RESETHAND, SigSet::empty()).or_fail("SIGINT");
    info(rt + 3, libc::SA_RESTART | libc::SA_ONSTACK, SigSet::of(&[rt + 4])).or_fail("SIGRTMIN+3");
    for sig in [libc::SIGQUIT, libc::SIGTSTP, libc::SIGURG, rt + 6] {
        raw::set_ignored(sig).or_fail("SIG_IGN");
    }
}

fn queue_pending(s: &Setup) {
    let (pid, tid, rt) = (s.pid, s.tid, s.rt);
    let blocked = SigSet::of(&[WAKE, libc::SIGTERM, libc::SIGWINCH, rt + 2, rt + 5]);
    raw::sigprocmask(libc::SIG_BLOCK, blocked).or_fail("block");
    raw::kill(pid, libc::SIGTERM).or_fail("kill SIGTERM");
    raw::tgkill(pid, tid, libc::SIGWINCH).or_fail("tgkill SIGWINCH");
    raw::sigqueue(pid, rt + 2, 0xdead_0001).or_fail("sigqueue 1");
    raw::sigqueue(pid, rt + 2, 0xdead_0002).or_fail("sigqueue 2");
    raw::tgsigqueue(pid, tid, rt + 5, 0xbeef).or_fail("rt_tgsigqueueinfo");
}

/// Learns the si_code of a tgkill'ed signal on this kernel (SIGPWR, blocked meanwhile).
fn probe_tkill_code(pid: i32, tid: i32) -> i32 {
    let set = SigSet::of(&[libc::SIGPWR]);
    raw::sigprocmask(libc::SIG_BLOCK, set).or_fail("block SIGPWR");
    raw::tgkill(pid, tid, libc::SIGPWR).or_fail("tgkill SIGPWR");
    let info = raw::sigtimedwait(set, Duration::ZERO).or_fail("sigtimedwait SIGPWR");
    raw::sigprocmask(libc::SIG_UNBLOCK, set).or_fail("unblock SIGPWR");
    info.code
}

fn actions() -> Vec<(i32, Option<raw::Action>)> {
    (1..=64).map(|sig| (sig, raw::get_action(sig).ok())).collect()
}

fn status_pending() -> (String, String) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| text.lines().find(|l| l.starts_with(k)).unwrap_or("").to_string();
    (field("ShdPnd:"), field("SigPnd:"))
}

fn dequeue(c: &mut Checker, sig: i32, code: i32, pid: i32, value: Option<u64>) {
    match raw::sigtimedwait(SigSet::of(&[sig]), Duration::ZERO) {
        Ok(info) => {
            c.same(&format!("signal {sig} si_code"), &code, &info.code);
            c.same(&format!("signal {sig} si_pid"), &pid, &info.pid);
            if let Some(v) = value {
                c.same(&format!("signal {sig} si_value"), &format!("{v:#x}"), &format!("{:#x}", info.value));
            }
        }
        Err(e) => c.check(false, || format!("signal {sig} not pending after restore: {e}")),
    }
}

fn check_pending(c: &mut Checker, s: &Setup) {
    let (rt, pid) = (s.rt, s.pid);
    let want = SigSet::of(&[libc::SIGTERM, libc::SIGWINCH, rt + 2, rt + 5]);
    c.same("sigpending", &want, &raw::sigpending().unwrap_or_default());
    dequeue(c, rt + 2, libc::SI_QUEUE, pid, Some(0xdead_0001));
    dequeue(c, rt + 2, libc::SI_QUEUE, pid, Some(0xdead_0002));
    dequeue(c, rt + 5, libc::SI_QUEUE, pid, Some(0xbeef));
    dequeue(c, libc::SIGTERM, libc::SI_USER, pid, None);
    dequeue(c, libc::SIGWINCH, s.tkill_code, pid, None);
    c.same("sigpending after dequeueing", &SigSet::empty(), &raw::sigpending().unwrap_or_default());
}

fn on_altstack(s: &Setup, sp: u64) -> bool {
    let base = s.alt.addr() as u64;
    (base..base + ALT_SIZE as u64).contains(&sp)
}

fn check_delivery(c: &mut Checker, s: &Setup) {
    let (rt, pid) = (s.rt, s.pid);
    c.ok("tgkill SIGHUP", raw::tgkill(pid, s.tid, libc::SIGHUP));
    let hup = raw::handler_record(libc::SIGHUP);
    c.same("SIGHUP handler runs", &1, &hup.count);
    c.check(on_altstack(s, hup.sp), || {
        format!("SIGHUP handler (SA_ONSTACK) ran at sp {:#x}, not on the altstack", hup.sp)
    });
    let m = hup.mask;
    c.check(m.contains(libc::SIGQUIT) && m.contains(libc::SIGTERM) && !m.contains(libc::SIGHUP), || {
        format!("SIGHUP handler mask {m:?}: want SIGQUIT, SIGTERM (sa_mask) and not SIGHUP (SA_NODEFER)")
    });

    c.ok("sigqueue SIGUSR2", raw::sigqueue(pid, libc::SIGUSR2, 0x2222));
    let usr2 = raw::handler_record(libc::SIGUSR2);
    c.check(usr2.count == 1 && usr2.value == 0x2222 && usr2.code == libc::SI_QUEUE, || {
        format!("SIGUSR2 handler saw {usr2:?}")
    });
    c.check(usr2.mask.contains(libc::SIGINT) && usr2.mask.contains(libc::SIGUSR2), || {
        format!("SIGUSR2 handler mask {:?}", usr2.mask)
    });
    c.check(!on_altstack(s, usr2.sp), || "SIGUSR2 handler (no SA_ONSTACK) ran on the altstack".into());

    c.ok("sigqueue SIGRTMIN+3", raw::sigqueue(pid, rt + 3, 0x3333));
    let r3 = raw::handler_record(rt + 3);
    c.check(r3.count == 1 && r3.value == 0x3333, || format!("SIGRTMIN+3 handler saw {r3:?}"));
    c.check(on_altstack(s, r3.sp), || "SIGRTMIN+3 handler (SA_ONSTACK) not on the altstack".into());
    c.check(r3.mask.contains(rt + 4), || format!("SIGRTMIN+3 handler mask {:?} lacks SIGRTMIN+4", r3.mask));

    c.ok("sigqueue SIGINT", raw::sigqueue(pid, libc::SIGINT, 0x1111));
    let int = raw::handler_record(libc::SIGINT);
    c.check(int.count == 1 && int.value == 0x1111, || format!("SIGINT handler saw {int:?}"));
    let after = raw::get_action(libc::SIGINT).map(|a| a.handler);
    c.check(matches!(after, Ok(h) if h == libc::SIG_DFL), || {
        format!("SIGINT (SA_RESETHAND) handler after delivery: {after:?}")
    });

    for sig in [libc::SIGQUIT, libc::SIGTSTP, rt + 6] {
        c.ok("kill ignored signal", raw::kill(pid, sig));
    }
    c.same("sigpending after ignored signals", &SigSet::empty(), &raw::sigpending().unwrap_or_default());
}

fn main() {
    let mut s = workload::start();
    let rt = raw::sigrtmin();
    let alt: &'static Mapping =
        Box::leak(Box::new(Mapping::anon(ALT_SIZE, libc::PROT_READ | libc::PROT_WRITE).or_fail("mmap")));
    raw::set_altstack(alt).or_fail("sigaltstack");
    let tkill_code = probe_tkill_code(s.pid(), s.tid());
    let setup = Setup { rt, tkill_code, pid: s.pid(), tid: s.tid(), alt };
    handlers(rt);
    queue_pending(&setup);
    let table = actions();
    let altstack = raw::get_altstack().or_fail("sigaltstack query");
    let mask = raw::blocked_mask();
    let pending = status_pending();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("blocked mask", &mask, &raw::blocked_mask());
    c.same("alternate stack", &altstack, &raw::get_altstack().unwrap_or(raw::AltStack { sp: 0, size: 0, flags: -1 }));
    for ((sig, before), (_, after)) in table.iter().zip(actions()) {
        c.same(&format!("sigaction({sig})"), before, &after);
    }
    c.same("ShdPnd/SigPnd in /proc/self/status", &pending, &status_pending());
    check_pending(c, &setup);
    check_delivery(c, &setup);
    s.finish()
}
