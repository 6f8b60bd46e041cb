//! An event loop over epoll that keeps working across a checkpoint: one epoll watches a pipe, an
//! eventfd, a periodic timerfd and a stream socket (a socketpair's end), each with its own data tag.
//! Before the dump the pipe holds "ping", the eventfd counts 3 and the socket holds "sock", none
//! read yet. After the wake the loop runs until it has seen, through `epoll_wait` only: the queued
//! pipe bytes, the eventfd counter, the socket bytes, two timer expirations (each timerfd read
//! returning at least one tick), then fresh data written after the restore on the pipe and the
//! socket's peer, and an `EPOLL_CTL_DEL` of the eventfd, after which it gives no more events.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

const PIPE: u64 = 0x11;
const EVENT: u64 = 0x22;
const TIMER: u64 = 0x33;
const SOCK: u64 = 0x44;
const IN: u32 = libc::EPOLLIN as u32;

/// What the loop has seen.
#[derive(Default, Debug)]
struct Seen {
    pipe: Vec<u8>,
    event: u64,
    ticks: u64,
    sock: Vec<u8>,
}

fn read_some(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut f = std::fs::File::from(fd.try_clone_to_owned().or_fail("dup"));
    let n = f.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

fn read_u64(fd: BorrowedFd<'_>) -> u64 {
    let bytes = read_some(fd);
    bytes.get(..8).map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Runs the loop until `done(seen)` or `limit`; each event is handled by its tag.
fn run(c: &mut Checker, ep: BorrowedFd<'_>, fds: [BorrowedFd<'_>; 4], seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let limit = Instant::now() + Duration::from_secs(5);
    while !done(seen) {
        if Instant::now() > limit {
            c.check(false, || format!("the loop did not see everything within 5 s: {seen:?}"));
            return;
        }
        let events = match raw::epoll_wait(ep, 200) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return c.check(false, || format!("epoll_wait: {e}")),
        };
        for (_, tag) in events {
            match tag {
                PIPE => seen.pipe.extend(read_some(fds[0])),
                EVENT => seen.event += read_u64(fds[1]),
                TIMER => seen.ticks += read_u64(fds[2]),
                SOCK => seen.sock.extend(read_some(fds[3])),
                other => c.check(false, || format!("event with an unknown tag {other:#x}")),
            }
        }
    }
}

fn main() {
    let mut s = workload::start();
    let ep = raw::epoll_create().or_fail("epoll_create");
    let (pipe_r, mut pipe_w) = std::io::pipe().or_fail("pipe");
    let event = raw::eventfd_with(0, libc::EFD_NONBLOCK).or_fail("eventfd");
    let timer = raw::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK).or_fail("timerfd");
    let (sock, peer) = raw::unix_pair(libc::SOCK_STREAM).or_fail("socketpair");
    for (fd, tag) in
        [(pipe_r.as_raw_fd(), PIPE), (event.as_raw_fd(), EVENT), (timer.as_raw_fd(), TIMER), (sock.as_raw_fd(), SOCK)]
    {
        raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, fd, IN, tag).or_fail("epoll_ctl ADD");
    }
    set_nonblocking(pipe_r.as_fd());
    set_nonblocking(sock.as_fd());
    pipe_w.write_all(b"ping").or_fail("write the pipe");
    std::fs::File::from(event.try_clone().or_fail("dup")).write_all(&3u64.to_ne_bytes()).or_fail("eventfd write");
    std::fs::File::from(peer.try_clone().or_fail("dup")).write_all(b"sock").or_fail("socket write");
    let period = Duration::from_millis(100);
    raw::timerfd_settime(timer.as_fd(), 0, Duration::from_secs(3600), period).or_fail("timerfd_settime");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    // The timer runs from now on: its time left (an hour) would never come, so re-arm it short.
    raw::timerfd_settime(timer.as_fd(), 0, period, period).or_fail("timerfd_settime after the wake");
    let fds = [pipe_r.as_fd(), event.as_fd(), timer.as_fd(), sock.as_fd()];
    let mut seen = Seen::default();
    run(c, ep.as_fd(), fds, &mut seen, |s| s.pipe == b"ping" && s.event == 3 && s.sock == b"sock" && s.ticks >= 2);
    c.same("pipe bytes queued at the checkpoint", &b"ping".to_vec(), &seen.pipe);
    c.same("eventfd counter at the checkpoint", &3, &seen.event);
    c.same("socket bytes queued at the checkpoint", &b"sock".to_vec(), &seen.sock);
    c.check(seen.ticks >= 2, || format!("timer expirations after restore: {}", seen.ticks));
    // New data after the restore arrives through the same items.
    pipe_w.write_all(b"-pong").or_fail("write the pipe again");
    std::fs::File::from(peer.try_clone().or_fail("dup")).write_all(b"-more").or_fail("socket write again");
    run(c, ep.as_fd(), fds, &mut seen, |s| s.pipe == b"ping-pong" && s.sock == b"sock-more");
    c.same("pipe bytes after restore", &b"ping-pong".to_vec(), &seen.pipe);
    c.same("socket bytes after restore", &b"sock-more".to_vec(), &seen.sock);
    // EPOLL_CTL_DEL by the original number, then the eventfd is silent.
    c.ok("EPOLL_CTL_DEL of the eventfd", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_DEL, event.as_raw_fd(), 0, 0));
    raw::timerfd_settime(timer.as_fd(), 0, Duration::ZERO, Duration::ZERO).or_fail("disarm the timer");
    std::fs::File::from(event.try_clone().or_fail("dup")).write_all(&1u64.to_ne_bytes()).or_fail("eventfd write");
    let late = raw::epoll_wait(ep.as_fd(), 300).unwrap_or_default();
    c.check(!late.iter().any(|&(_, tag)| tag == EVENT), || format!("an event from the deleted eventfd: {late:?}"));
    s.finish()
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    let flags = raw::get_fl(fd).or_fail("F_GETFL");
    raw::set_fl(fd, flags | libc::O_NONBLOCK).or_fail("F_SETFL");
}
