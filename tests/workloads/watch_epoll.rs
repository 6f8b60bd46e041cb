//! An epoll instance over pipes and a FIFO keeps every item after restore, and keeps working:
//! items with their events and data (level-triggered, `EPOLLET`, a one-shot item that already fired
//! and is disarmed, `EPOLLEXCLUSIVE`), an item whose fd was closed since (its pipe held at another
//! number), and a second epoll watching the first. Before the wake it records the items as fdinfo
//! shows them; after, it checks they are the same, that events arrive with the registered data,
//! that `EPOLL_CTL_MOD` and `EPOLL_CTL_DEL` work on the original numbers (the closed one too, once
//! its number holds the pipe again), and runs an epoll loop over a pipe.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// The items of epoll `ep` as its fdinfo shows them: (tfd, events, data), sorted.
fn items(ep: BorrowedFd<'_>) -> Vec<(i32, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", ep.as_raw_fd())).or_fail("epoll fdinfo");
    let mut out: Vec<(i32, u32, u64)> = text
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let tfd = w[1].parse().or_fail("tfd");
            let events = u32::from_str_radix(w[3], 16).or_fail("events");
            let data = u64::from_str_radix(w[5], 16).or_fail("data");
            (tfd, events, data)
        })
        .collect();
    out.sort();
    out
}

fn wait(c: &mut Checker, ep: BorrowedFd<'_>, timeout_ms: i32) -> Vec<(u32, u64)> {
    c.ok("epoll_wait", raw::epoll_wait(ep, timeout_ms)).unwrap_or_default()
}

fn expect_event(c: &mut Checker, what: &str, got: &[(u32, u64)], events: u32, data: u64) {
    c.check(got.iter().any(|&(e, d)| d == data && e & events == events), || {
        format!("{what}: no event {events:#x} with data {data:#x} in {got:x?}")
    });
}

/// Waits on `ep` and expects an event `events` with `data`.
fn expect_wait(c: &mut Checker, what: &str, ep: BorrowedFd<'_>, timeout_ms: i32, events: u32, data: u64) {
    let got = wait(c, ep, timeout_ms);
    expect_event(c, what, &got, events, data);
}

/// Polls `ep` and expects no event with `data`.
fn expect_quiet(c: &mut Checker, what: &str, ep: BorrowedFd<'_>, data: u64) {
    let got = wait(c, ep, 0);
    expect_no_event(c, what, &got, data);
}

fn expect_no_event(c: &mut Checker, what: &str, got: &[(u32, u64)], data: u64) {
    c.check(!got.iter().any(|&(_, d)| d == data), || {
        format!("{what}: unexpected event with data {data:#x} in {got:x?}")
    });
}

fn pipe() -> (File, File) {
    let (r, w) = std::io::pipe().or_fail("pipe");
    (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)))
}

fn main() {
    let mut s = workload::start();
    let ep = raw::epoll_create().or_fail("epoll_create");
    let add = |fd: i32, events: u32, data: u64| raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, fd, events, data);
    let (mut a_r, mut a_w) = pipe();
    add(a_r.as_raw_fd(), IN, 0xa1).or_fail("add A");
    let (_b_r, b_w) = pipe();
    add(b_w.as_raw_fd(), OUT | ET, 0xb2).or_fail("add B");
    let fifo_path = workload::work_dir().join("epoll.fifo");
    let _ = std::fs::remove_file(&fifo_path);
    raw::mkfifo(&fifo_path, 0o600).or_fail("mkfifo");
    let mut fifo = OpenOptions::new().read(true).write(true).open(&fifo_path).or_fail("open FIFO");
    add(fifo.as_raw_fd(), IN | ONESHOT, 0xf3).or_fail("add FIFO");
    let (c_r, mut c_w) = pipe();
    let closed = c_r.as_raw_fd();
    add(closed, IN, 0xc4).or_fail("add C");
    let c_kept = c_r.try_clone().or_fail("dup C");
    drop(c_r);
    let (mut d_r, mut d_w) = pipe();
    add(d_r.as_raw_fd(), IN | EXCLUSIVE, 0xd5).or_fail("add D");
    let ep2 = raw::epoll_create().or_fail("epoll_create (outer)");
    raw::epoll_ctl(ep2.as_fd(), libc::EPOLL_CTL_ADD, ep.as_raw_fd(), IN, 0xe6).or_fail("add the epoll");
    a_w.write_all(b"a").or_fail("write A");
    fifo.write_all(b"fifo").or_fail("write FIFO");
    let first = wait(&mut s.checker, ep.as_fd(), 0);
    expect_event(&mut s.checker, "before: A", &first, IN, 0xa1);
    expect_event(&mut s.checker, "before: one-shot FIFO", &first, IN, 0xf3);
    let before = items(ep.as_fd());
    s.checker.same("items before the wake", &5, &before.len());
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    // A fired one-shot item keeps only its flag bits; epoll_ctl always adds EPOLLERR and EPOLLHUP,
    // so a restored one has those two armed (a known difference, documented); nothing else may differ.
    let private = (libc::EPOLLONESHOT | libc::EPOLLET | libc::EPOLLWAKEUP | libc::EPOLLEXCLUSIVE) as u32;
    let err_hup = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
    let want: Vec<_> =
        before.iter().map(|&(t, e, d)| (t, if e & !private == 0 { e | err_hup } else { e }, d)).collect();
    let after = items(ep.as_fd());
    c.check(after == before || after == want, || {
        format!("items (tfd, events, data): before {before:x?}, after {after:x?}")
    });

    let got = wait(c, ep.as_fd(), 0);
    expect_event(c, "A, level-triggered with data queued", &got, IN, 0xa1);
    expect_no_event(c, "FIFO one-shot item, fired before the checkpoint", &got, 0xf3);
    expect_no_event(c, "C, empty", &got, 0xc4);
    expect_no_event(c, "D, empty", &got, 0xd5);
    expect_wait(c, "the epoll watching the epoll", ep2.as_fd(), 0, IN, 0xe6);

    c.ok("MOD the FIFO", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_MOD, fifo.as_raw_fd(), IN | ONESHOT, 0xf4));
    expect_wait(c, "FIFO re-armed", ep.as_fd(), 1000, IN, 0xf4);
    let mut buf = [0u8; 16];
    let n = c.ok("read FIFO", fifo.read(&mut buf)).unwrap_or(0);
    c.same("FIFO data", &b"fifo"[..], &buf[..n]);

    c.ok("write D", d_w.write_all(b"d"));
    expect_wait(c, "D (EPOLLEXCLUSIVE)", ep.as_fd(), 1000, IN, 0xd5);
    c.ok("read D", d_r.read(&mut buf));
    // D took C's closed number: putting C back there closes D, whose item goes with it.
    c.same("D's number", &closed, &d_r.as_raw_fd());
    let _ = d_r.into_raw_fd();
    c.ok("write C", c_w.write_all(b"c"));
    expect_wait(c, "C, watched under a closed number", ep.as_fd(), 1000, IN, 0xc4);
    c.ok("dup2 C back to its number", raw::dup2_number(c_kept.as_raw_fd(), closed));
    c.ok("DEL C on its original number", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_DEL, closed, 0, 0));
    expect_quiet(c, "C deleted", ep.as_fd(), 0xc4);
    c.ok("close C's number", raw::close_number(closed));

    c.ok("MOD B", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_MOD, b_w.as_raw_fd(), OUT, 0xb8));
    expect_wait(c, "B after MOD", ep.as_fd(), 1000, OUT, 0xb8);
    c.ok("DEL B", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_DEL, b_w.as_raw_fd(), 0, 0));

    c.ok("DEL A", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_DEL, a_r.as_raw_fd(), 0, 0));
    c.ok("ADD A again", raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, a_r.as_raw_fd(), IN, 0xa7));
    let n = c.ok("read A", a_r.read(&mut buf)).unwrap_or(0);
    c.same("A data", &b"a"[..], &buf[..n]);
    for i in 0..5u8 {
        expect_quiet(c, &format!("loop {i}: A drained"), ep.as_fd(), 0xa7);
        c.ok("write A", a_w.write_all(&[i]));
        expect_wait(c, &format!("loop {i}: A"), ep.as_fd(), 1000, IN, 0xa7);
        let n = c.ok("read A", a_r.read(&mut buf)).unwrap_or(0);
        c.same(&format!("loop {i}: byte"), &[i][..], &buf[..n]);
    }
    let _ = std::fs::remove_file(&fifo_path);
    s.finish()
}
