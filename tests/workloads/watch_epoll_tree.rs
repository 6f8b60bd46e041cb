//! An epoll item whose file only another process holds.
//!
//! `child` (default): the root adds a pipe's read end to an epoll, forks a child (which keeps the
//! pipe's ends and the epoll), and closes its own read end: the item's number is closed in the root,
//! and its file is held by the child only. After the wake the root writes into the pipe and the
//! item reports, with its data, in the root and in the child (the epoll is shared); the child then
//! reads the byte through its read end.
//!
//! `outside`: the pipe's ends are held only by a process outside the tree (a grandchild whose
//! parent exited); the dump must refuse the epoll (prints `fd N`). After the wake the root kills it.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, fork_child, say, Checker, OrFail, WAKE};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const DATA: u64 = 0x77;

fn has(got: &[(u32, u64)]) -> bool {
    got.iter().any(|&(e, d)| d == DATA && e & libc::EPOLLIN as u32 != 0)
}

fn main() {
    let mut s = workload::start();
    let ep = raw::epoll_create().or_fail("epoll_create");
    let (r, w) = std::io::pipe().or_fail("pipe");
    let (r, mut w) = (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)));
    raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, r.as_raw_fd(), libc::EPOLLIN as u32, DATA).or_fail("add");
    if arg::<String>(1, String::new()) == "outside" {
        let mid = fork_child("middle", move |link| match raw::fork().or_fail("fork") {
            raw::Forked::Child => {
                drop(link);
                raw::sigprocmask(libc::SIG_BLOCK, raw::SigSet::of(&[WAKE])).or_fail("block");
                loop {
                    raw::pause();
                }
            }
            raw::Forked::Parent(pid) => link.send(&format!("{pid}\n")).map_or(1, |()| 0),
        });
        let grandchild: i32 = mid.line().or_fail("grandchild pid").parse().or_fail("grandchild pid");
        let _ = workload::wait_exit_within(mid.pid, std::time::Duration::from_secs(10));
        drop(mid);
        drop((r, w));
        say(&format!("fd {}", ep.as_raw_fd()));
        s.ready();
        s.wait_for_wake();
        s.checker.ok("kill the grandchild", raw::kill(grandchild, libc::SIGKILL));
        s.finish()
    }
    let child = fork_child("child", |link| {
        let mut c = Checker::default();
        let mut r = &r;
        link.send("ready\n").or_fail("send");
        let go = link.line();
        c.same("line from the root", &Ok("go".to_string()), &go.map_err(|e| e.to_string()));
        let got = c.ok("epoll_wait (child)", raw::epoll_wait(ep.as_fd(), 1000)).unwrap_or_default();
        c.check(has(&got), || format!("child: no event with data {DATA:#x} in {got:x?}"));
        let mut b = [0u8; 4];
        let n = c.ok("read", r.read(&mut b)).unwrap_or(0);
        c.same("byte", &b"!"[..], &b[..n]);
        link.report(c)
    });
    drop(r);
    let ready = child.line();
    s.checker.same("child", &Ok("ready".to_string()), &ready.map_err(|e| e.to_string()));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("write", w.write_all(b"!"));
    let got = c.ok("epoll_wait", raw::epoll_wait(ep.as_fd(), 1000)).unwrap_or_default();
    c.check(has(&got), || format!("no event with data {DATA:#x} in {got:x?}"));
    c.ok("send go", child.send("go\n"));
    let mut c2 = Checker::default();
    child.collect(&mut c2);
    c.absorb("tree", c2);
    s.finish()
}
