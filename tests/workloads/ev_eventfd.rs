//! Event fds keep their counter, EFD_SEMAPHORE and EFD_NONBLOCK: a blocking counter of 7, a
//! non-blocking semaphore of 3, an empty non-blocking one, and one with a counter above 2^32 (set
//! by a write: `eventfd()` only takes 32 bits). After the wake-up each reads back exactly as
//! before, and each still works (write then read).

use stasis_tests::raw;
use stasis_tests::workload::{self, fdinfo_field, Checker, OrFail};
use std::os::fd::{AsFd, OwnedFd};

const BIG: u64 = (1 << 40) + 5;

fn check_flags(c: &mut Checker, name: &str, fd: &OwnedFd, nonblock: bool, semaphore: bool) {
    let fl = raw::get_fl(fd.as_fd()).unwrap_or(-1);
    c.same(&format!("{name} O_NONBLOCK"), &nonblock, &(fl & libc::O_NONBLOCK != 0));
    let sem = fdinfo_field(std::os::fd::AsRawFd::as_raw_fd(fd), "eventfd-semaphore");
    c.same(&format!("{name} eventfd-semaphore"), &Some(if semaphore { "1" } else { "0" }.to_string()), &sem);
}

fn main() {
    let mut s = workload::start();
    let plain = raw::eventfd_with(7, 0).or_fail("eventfd");
    let sem = raw::eventfd_with(3, libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK).or_fail("eventfd semaphore");
    let empty = raw::eventfd_with(0, libc::EFD_NONBLOCK).or_fail("eventfd empty");
    let big = raw::eventfd_with(0, 0).or_fail("eventfd big");
    raw::write_u64(big.as_fd(), BIG).or_fail("write big");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    check_flags(c, "plain", &plain, false, false);
    check_flags(c, "semaphore", &sem, true, true);
    check_flags(c, "empty", &empty, true, false);
    check_flags(c, "big", &big, false, false);
    let r = raw::read_u64(plain.as_fd());
    c.same("plain counter", &7, &r.unwrap_or(0));
    for i in 0..3 {
        let r = raw::read_u64(sem.as_fd());
        c.same(&format!("semaphore read {i}"), &1, &r.unwrap_or(0));
    }
    let r = raw::read_u64(sem.as_fd());
    c.check(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)), || format!("4th semaphore read: {r:?}"));
    let r = raw::read_u64(empty.as_fd());
    c.check(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)), || format!("empty eventfd read: {r:?}"));
    let r = raw::read_u64(big.as_fd());
    c.same("big counter", &BIG, &r.unwrap_or(0));
    for (name, fd) in [("plain", &plain), ("empty", &empty), ("big", &big)] {
        c.ok(&format!("{name} write"), raw::write_u64(fd.as_fd(), 11));
        let r = raw::read_u64(fd.as_fd());
        c.same(&format!("{name} counter after a write"), &11, &r.unwrap_or(0));
    }
    s.finish()
}
