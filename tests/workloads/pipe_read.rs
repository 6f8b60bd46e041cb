//! A task blocked in read() on an empty pipe whose both ends it holds resumes correctly: an
//! ITIMER_REAL timer (N seconds, argument, default 10) fires SIGALRM, whose SA_RESTART handler
//! writes one byte into the pipe; the read must return exactly that byte, without EINTR, no sooner
//! than N seconds after it started. Finishes by itself.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, OrFail};
use std::io::Read;
use std::time::Duration;

fn main() {
    let mut s = workload::start();
    let secs: u64 = arg(1, 10);
    let (mut reader, writer) = std::io::pipe().or_fail("pipe");
    raw::set_pipe_writer_handler(libc::SIGALRM, writer.into(), 0x5a, true).or_fail("SIGALRM handler");
    let t0 = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime");
    raw::setitimer(libc::ITIMER_REAL, Duration::from_secs(secs), Duration::ZERO).or_fail("setitimer");
    s.ready();
    let mut buf = [0u8; 16];
    let mut eintr = 0;
    let n = loop {
        match reader.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => eintr += 1,
            other => break other,
        }
    };
    let elapsed = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime") - t0;
    s.checker.same("read() EINTR count", &0, &eintr);
    match n {
        Ok(n) => s.checker.same("bytes read", &[0x5a][..], &buf[..n]),
        Err(e) => s.checker.check(false, || format!("read: {e}")),
    }
    s.checker.same("SIGALRM count", &1, &raw::handler_record(libc::SIGALRM).count);
    let want = Duration::from_secs(secs);
    s.checker.check(elapsed >= want, || format!("read returned after {elapsed:?}, the alarm was {want:?}"));
    s.finish()
}
