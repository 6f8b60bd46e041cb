//! Signal fds keep their mask and flags, and read signals as before: a blocking signalfd for SIGUSR2
//! (with one SIGUSR2 queued before the checkpoint, value 7), a non-blocking one for SIGRTMIN+1 and
//! SIGRTMIN+2. After the wake-up: the queued SIGUSR2 is read with its value; the non-blocking one
//! reads nothing (EAGAIN); then a SIGRTMIN+1 sent after the restore (value 42) is read from it.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, fdinfo_field, Checker, OrFail};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// (signo, si_code, value) of a `struct signalfd_siginfo`.
fn parse(b: &[u8]) -> Option<(u32, i32, u64)> {
    if b.len() != 128 {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let ptr = u64::from_ne_bytes(b[48..56].try_into().expect("8 bytes"));
    Some((u32_at(0), u32_at(8) as i32, ptr))
}

fn check_mask(c: &mut Checker, name: &str, fd: &OwnedFd, mask: SigSet) {
    let shown = fdinfo_field(fd.as_raw_fd(), "sigmask").and_then(|v| u64::from_str_radix(&v, 16).ok());
    c.same(&format!("{name} sigmask"), &Some(mask.bits()), &shown);
}

fn main() {
    let mut s = workload::start();
    let (rt1, rt2) = (raw::sigrtmin() + 1, raw::sigrtmin() + 2);
    let usr2 = SigSet::of(&[libc::SIGUSR2]);
    let rt = SigSet::of(&[rt1, rt2]);
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[libc::SIGUSR2, rt1, rt2])).or_fail("block");
    let blocking = raw::signalfd(usr2, 0).or_fail("signalfd");
    let nonblocking = raw::signalfd(rt, libc::SFD_NONBLOCK).or_fail("signalfd nonblock");
    raw::sigqueue(s.pid(), libc::SIGUSR2, 7).or_fail("sigqueue SIGUSR2");
    s.ready();
    s.wait_for_wake();
    let me = s.pid();
    let c = &mut s.checker;
    check_mask(c, "blocking", &blocking, usr2);
    check_mask(c, "nonblocking", &nonblocking, rt);
    let fl = |fd: &OwnedFd| raw::get_fl(fd.as_fd()).unwrap_or(-1) & libc::O_NONBLOCK != 0;
    c.same("blocking O_NONBLOCK", &false, &fl(&blocking));
    c.same("nonblocking O_NONBLOCK", &true, &fl(&nonblocking));
    let got = raw::read_bytes(blocking.as_fd(), 128);
    let want = Some((libc::SIGUSR2 as u32, libc::SI_QUEUE, 7));
    c.same("SIGUSR2 queued before the checkpoint", &want, &got.as_deref().ok().and_then(parse));
    let r = raw::read_bytes(nonblocking.as_fd(), 128);
    c.check(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)), || format!("empty signalfd read: {r:?}"));
    c.ok("sigqueue after restore", raw::sigqueue(me, rt1, 42));
    let got = raw::read_bytes(nonblocking.as_fd(), 128);
    let want = Some((rt1 as u32, libc::SI_QUEUE, 42));
    c.same("SIGRTMIN+1 sent after the restore", &want, &got.as_deref().ok().and_then(parse));
    s.finish()
}
