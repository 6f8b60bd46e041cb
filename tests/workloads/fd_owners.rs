//! The I/O signal settings of open file descriptions (`F_SETOWN_EX`, `F_SETSIG`, `O_ASYNC`) survive,
//! and the signals still reach their owners: the root and its child block the signals and wait
//! for them with `sigtimedwait` after the wake.
//!
//! - pipe A: `O_ASYNC`, owner the root process, signal SIGRTMIN+1; the root writes to it and gets it;
//! - a unix socket pair: `O_ASYNC` on one end, owner the root's thread (`F_OWNER_TID`), SIGRTMIN+2;
//! - pipe B (shared with the child): `O_ASYNC`, owner the child (set by the root after the fork),
//!   default SIGIO; the root writes, the child gets SIGIO;
//! - pipe C: `O_ASYNC`, owner the process group of both (`F_OWNER_PGRP`), SIGRTMIN+3; the root
//!   writes, both get it;
//! - a UDP socket: `O_ASYNC`, owner the root process, SIGRTMIN+4; a datagram sent to it after the
//!   wake brings the signal;
//! - a TCP listener: `O_ASYNC`, owner the child (set by the root), SIGRTMIN+5; the root connects
//!   to it after the wake, the child gets the signal;
//! - a regular file: an owner without `O_ASYNC` (only read back);
//! - `/proc/self/status` and a POSIX message queue: an owner and a signal, with `O_ASYNC` (only read
//!   back: neither sends I/O signals).
//!
//! Every fd's owner, signal and `O_ASYNC` are read back and compared too.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, Checker, OrFail, TreeParent, WAKE};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

const TID: i32 = 0;
const PID: i32 = 1;
const PGRP: i32 = 2;
const WAIT: Duration = Duration::from_secs(20);

/// (owner kind, owner id, signal, O_ASYNC) of `fd`.
fn settings(fd: BorrowedFd<'_>) -> (i32, i32, i32, bool) {
    let (kind, pid) = raw::get_owner(fd).or_fail("F_GETOWN_EX");
    let sig = raw::get_io_signal(fd).or_fail("F_GETSIG");
    let fl = raw::get_fl(fd).or_fail("F_GETFL");
    (kind, pid, sig, fl & libc::O_ASYNC != 0)
}

fn arm(fd: BorrowedFd<'_>, kind: i32, pid: i32, sig: i32) {
    if sig != 0 {
        raw::set_io_signal(fd, sig).or_fail("F_SETSIG");
    }
    raw::set_owner(fd, kind, pid).or_fail("F_SETOWN_EX");
    raw::set_fl(fd, raw::get_fl(fd).or_fail("F_GETFL") | libc::O_ASYNC).or_fail("O_ASYNC");
}

/// Waits for `sig`; checks it came.
fn expect_signal(c: &mut Checker, what: &str, sig: i32) {
    match raw::sigtimedwait(SigSet::of(&[sig]), WAIT) {
        Ok(info) => c.same(&format!("{what}: signal"), &sig, &info.signo),
        Err(e) => c.check(false, || format!("{what}: signal {sig} not received within {WAIT:?}: {e}")),
    }
}

fn main() {
    let mut s = workload::start();
    let rt = raw::sigrtmin();
    let all = [libc::SIGIO, rt + 1, rt + 2, rt + 3, rt + 4, rt + 5];
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&all)).or_fail("block the I/O signals");
    let pgrp = raw::getpgid(0).or_fail("getpgid");
    let (a_r, mut a_w) = std::io::pipe().or_fail("pipe A");
    let (b_r, mut b_w) = std::io::pipe().or_fail("pipe B");
    let (c_r, mut c_w) = std::io::pipe().or_fail("pipe C");
    let (s0, s1) = raw::unix_pair(libc::SOCK_STREAM).or_fail("socketpair");
    let file = std::fs::File::create(workload::work_dir().join("owned.txt")).or_fail("regular file");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").or_fail("UDP socket");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").or_fail("TCP listener");
    arm(udp.as_fd(), PID, s.pid(), rt + 4);
    let status = std::fs::File::open("/proc/self/status").or_fail("/proc/self/status");
    arm(status.as_fd(), PID, s.pid(), rt + 1);
    let mq_name = format!("stasis-fd-owners-{}", s.pid());
    let mq = raw::mq_open(&mq_name, libc::O_CREAT | libc::O_RDWR, 0o600, 4, 64).or_fail("mq_open");
    raw::mq_unlink(&mq_name).or_fail("mq_unlink");
    arm(mq.as_fd(), PGRP, pgrp, rt + 2);
    arm(a_r.as_fd(), PID, s.pid(), rt + 1);
    arm(s0.as_fd(), TID, s.tid(), rt + 2);
    arm(c_r.as_fd(), PGRP, pgrp, rt + 3);
    raw::set_fl(b_r.as_fd(), raw::get_fl(&b_r).or_fail("F_GETFL") | libc::O_ASYNC).or_fail("O_ASYNC on B");
    raw::set_owner(&file, PID, s.pid()).or_fail("F_SETOWN_EX on a file");
    let child = workload::fork_child("child", |parent| child(parent, rt + 3, rt + 5));
    raw::set_owner(&b_r, PID, child.pid).or_fail("F_SETOWN_EX to the child");
    arm(listener.as_fd(), PID, child.pid, rt + 5);
    let fds: Vec<(&str, BorrowedFd)> = vec![
        ("pipe A", a_r.as_fd()),
        ("socket", s0.as_fd()),
        ("pipe B", b_r.as_fd()),
        ("pipe C", c_r.as_fd()),
        ("file", file.as_fd()),
        ("UDP socket", udp.as_fd()),
        ("TCP listener", listener.as_fd()),
        ("/proc/self/status", status.as_fd()),
        ("message queue", mq.as_fd()),
    ];
    let before: Vec<_> = fds.iter().map(|(_, fd)| settings(*fd)).collect();
    child.expect_line(&mut s.checker, "setup", "ready");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(child.pid, WAKE));
    for ((what, fd), want) in fds.iter().zip(&before) {
        c.same(&format!("{what}: owner, signal, O_ASYNC"), want, &settings(*fd));
    }
    a_w.write_all(b"a").or_fail("write to pipe A");
    expect_signal(c, "pipe A (owner: this process)", rt + 1);
    (&std::fs::File::from(s1)).write_all(b"s").or_fail("write to the socket");
    expect_signal(c, "socket (owner: this thread)", rt + 2);
    c_w.write_all(b"c").or_fail("write to pipe C");
    expect_signal(c, "pipe C (owner: the process group)", rt + 3);
    let to = udp.local_addr().or_fail("UDP address");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").or_fail("UDP sender");
    sender.send_to(b"u", to).or_fail("send to the UDP socket");
    expect_signal(c, "UDP socket (owner: this process)", rt + 4);
    let _client = std::net::TcpStream::connect(listener.local_addr().or_fail("listener address")).or_fail("connect");
    b_w.write_all(b"b").or_fail("write to pipe B");
    child.send("written\n").or_fail("tell the child");
    child.collect(c);
    drop(b_r);
    s.finish()
}

/// The child: once the root wrote, SIGIO (pipe B, it owns), SIGRTMIN+3 (pipe C, its group) and
/// SIGRTMIN+5 (the TCP listener it owns, connected to).
fn child(parent: TreeParent, group_sig: i32, listener_sig: i32) -> i32 {
    let mut s = workload::start();
    parent.send("ready\n").or_fail("ready");
    s.wait_for_wake();
    let mut c = Checker::default();
    let written = parent.line().or_fail("written line");
    c.same("root's line", "written", written.as_str());
    expect_signal(&mut c, "pipe B (owner: the child)", libc::SIGIO);
    expect_signal(&mut c, "pipe C (owner: the process group)", group_sig);
    expect_signal(&mut c, "TCP listener (owner: the child)", listener_sig);
    parent.report(c)
}
