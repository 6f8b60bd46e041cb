//! POSIX message queues keep their attributes and messages with their priorities:
//! a queue (maxmsg 8, msgsize 64, mode 0640) open read-write and write-only non-blocking, holding
//! messages of priorities 1, 5, 3 and 5 (two of the same priority: their order must be kept); and a
//! queue unlinked while open, holding one message. After the wake-up: the attributes and flags are
//! the same, the four messages are received highest priority first in the order sent, the write-only
//! description still sends, the unlinked queue has its message and its name is still free.
//! With the argument `notify`, a notification is registered on the first queue (the dump must refuse
//! it).

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

const SENT: [(&str, u32); 4] = [("low", 1), ("high", 5), ("mid", 3), ("high-2", 5)];

fn main() {
    let mut s = workload::start();
    let notify = workload::mode(1, &["notify"]).is_some();
    let name = format!("/stasis-ev-{}", s.pid());
    let gone = format!("/stasis-ev-unlinked-{}", s.pid());
    let _ = raw::mq_unlink(&name);
    let _ = raw::mq_unlink(&gone);
    let old = raw::umask(0);
    let rw = raw::mq_open(&name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o640, 8, 64).or_fail("mq_open");
    raw::umask(old);
    let wo = raw::mq_open(&name, libc::O_WRONLY | libc::O_NONBLOCK, 0, 0, 0).or_fail("mq_open write-only");
    for (text, prio) in SENT {
        raw::mq_send(rw.as_fd(), text.as_bytes(), prio).or_fail("mq_send");
    }
    let un = raw::mq_open(&gone, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600, 2, 16).or_fail("mq_open 2");
    raw::mq_send(un.as_fd(), b"orphan", 9).or_fail("mq_send 2");
    raw::mq_unlink(&gone).or_fail("mq_unlink");
    let mode = std::fs::File::from(rw.try_clone().or_fail("dup")).metadata().map(|m| m.mode() & 0o7777).ok();
    // After the last close of any fd of the queue here: that removes the registration.
    if notify {
        raw::mq_notify_signal(rw.as_fd(), libc::SIGUSR2).or_fail("mq_notify");
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("attributes (flags, maxmsg, msgsize, curmsgs)", &Some((0, 8, 64, 4)), &raw::mq_getattr(rw.as_fd()).ok());
    c.same("write-only attributes", &Some((libc::O_NONBLOCK as i64, 8, 64, 4)), &raw::mq_getattr(wo.as_fd()).ok());
    let after = std::fs::File::from(rw.try_clone().or_fail("dup")).metadata().map(|m| m.mode() & 0o7777).ok();
    c.same("mode", &mode, &after);
    c.same("write-only access", &libc::O_WRONLY, &(raw::get_fl(wo.as_fd()).unwrap_or(-1) & libc::O_ACCMODE));
    let mut got = Vec::new();
    // As many as are queued (at most 4), so that a lost message fails the check rather than block.
    let queued = raw::mq_getattr(rw.as_fd()).map_or(0, |a| a.3.clamp(0, 4));
    for _ in 0..queued {
        match raw::mq_receive(rw.as_fd(), 64) {
            Ok((m, p)) => got.push((String::from_utf8_lossy(&m).into_owned(), p)),
            Err(e) => c.check(false, || format!("mq_receive: {e}")),
        }
    }
    let want: Vec<(String, u32)> =
        [("high", 5), ("high-2", 5), ("mid", 3), ("low", 1)].iter().map(|(t, p)| (t.to_string(), *p)).collect();
    c.same("messages received", &want, &got);
    c.ok("send through the write-only description", raw::mq_send(wo.as_fd(), b"after", 2));
    let r = raw::mq_receive(rw.as_fd(), 64).map(|(m, p)| (String::from_utf8_lossy(&m).into_owned(), p));
    c.same("message sent after the restore", &Some(("after".to_string(), 2)), &r.ok());
    c.same("unlinked queue attributes", &Some((0, 2, 16, 1)), &raw::mq_getattr(un.as_fd()).ok());
    let r = raw::mq_receive(un.as_fd(), 16).map(|(m, p)| (String::from_utf8_lossy(&m).into_owned(), p));
    c.same("unlinked queue message", &Some(("orphan".to_string(), 9)), &r.ok());
    let r = raw::mq_open(&gone, libc::O_RDONLY, 0, 0, 0);
    c.check(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENOENT)), || format!("unlinked name: {r:?}"));
    c.ok("mq_unlink", raw::mq_unlink(&name));
    s.finish()
}
