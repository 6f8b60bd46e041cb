//! The tree the fault sweep (tests/faults.rs) dumps and restores again and again with a fault at
//! every injected call: a root with two threads (each with a signal mask of its own) and a child,
//! joined by a pipe, a UNIX socket pair and a pty, with bytes queued in each. Argument: how many
//! free pty indices to leave below its own (see `raw::high_pty`).
//!
//! The root holds the pty master, the pipe's write end and one end of the pair; the child the
//! slave, the read end and the other end. Before the dump the root queues a line on the pipe, the
//! pair and the slave, and the child one on the pair and the master. The child and the threads
//! wait without a timeout (the sweep takes as long as it takes). After the wake the root reads what
//! the child queued, lets the threads and the child go, and each checks what it reads and its mask.

use stasis_tests::raw;
use stasis_tests::workload::{self, read_line_within, Checker, OrFail, TreeParent};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// The waits for a go: long enough for any sweep.
const FOREVER: Duration = Duration::from_secs(3600);
/// The signals the two threads block besides the wake signal, one each.
const THREAD_SIGNALS: [i32; 2] = [libc::SIGUSR2, libc::SIGHUP];

/// The fds of the tree's objects in one process.
struct Ends {
    pipe: OwnedFd,
    sock: OwnedFd,
    tty: OwnedFd,
}

/// Reads up to 256 bytes from `fd` (blocking).
fn read_some(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = std::fs::File::from(fd.try_clone_to_owned()?).read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

fn write_all(fd: BorrowedFd<'_>, bytes: &[u8]) {
    std::fs::File::from(fd.try_clone_to_owned().or_fail("dup")).write_all(bytes).or_fail("write");
}

/// The child: queue its lines, say so, wait for the go, then check what the root queued.
fn child(ends: Ends, parent: TreeParent) -> i32 {
    let s = workload::start();
    write_all(ends.sock.as_fd(), b"child to root");
    write_all(ends.tty.as_fd(), b"slave to master\n");
    parent.send("queued\n").or_fail("tell the root");
    let go = read_line_within(&parent.down, FOREVER);
    let mut c = s.into_checker();
    c.same("go line", &Some("go".to_string()), &go.ok());
    c.same("pipe bytes", &Some(b"root to child by pipe".to_vec()), &read_some(ends.pipe.as_fd()).ok());
    c.same("pair bytes", &Some(b"root to child".to_vec()), &read_some(ends.sock.as_fd()).ok());
    c.same("slave line", &Some(b"master to slave\n".to_vec()), &read_some(ends.tty.as_fd()).ok());
    parent.report(c)
}

/// A thread: block `sig` too, tell the root, wait for its byte, then check the byte and its mask.
fn thread(sig: i32, byte: u8, ready: std::sync::mpsc::Sender<()>, go: OwnedFd) -> Checker {
    let mut c = Checker::default();
    let mask = raw::sigprocmask(libc::SIG_BLOCK, raw::SigSet::of(&[sig])).map(|_| raw::blocked_mask());
    let _ = ready.send(());
    let got = read_some(go.as_fd());
    c.same("go byte", &Some(vec![byte]), &got.ok());
    c.same("thread signal mask", &mask.ok(), &Some(raw::blocked_mask()));
    c
}

fn no_echo(m: BorrowedFd<'_>) {
    let mut t = raw::tcgetattr(m).or_fail("tcgetattr");
    t.c_lflag &= !libc::ECHO;
    raw::tcsetattr(m, &t).or_fail("tcsetattr");
}

fn main() {
    let mut s = workload::start();
    let (master, slave_name) = raw::high_pty(workload::arg(1, 0)).or_fail("open a pty");
    no_echo(master.as_fd());
    let slave = raw::open_terminal_noctty(&slave_name).or_fail("open the slave");
    let (pipe_r, pipe_w) = std::io::pipe().or_fail("pipe");
    let (sock_root, sock_child) = raw::unix_pair(libc::SOCK_STREAM).or_fail("socketpair");
    let ends = Ends { pipe: pipe_r.into(), sock: sock_child, tty: slave };
    let kid = workload::fork_child("child", move |p| child(ends, p));
    s.checker.same("child", &Some("queued".to_string()), &kid.line().ok());
    let pipe_w: OwnedFd = pipe_w.into();
    write_all(pipe_w.as_fd(), b"root to child by pipe");
    write_all(sock_root.as_fd(), b"root to child");
    write_all(master.as_fd(), b"master to slave\n");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = THREAD_SIGNALS
        .iter()
        .enumerate()
        .map(|(i, &sig)| {
            let (r, w) = std::io::pipe().or_fail("thread pipe");
            let ready = ready_tx.clone();
            let handle = std::thread::spawn(move || thread(sig, b'a' + i as u8, ready, r.into()));
            (handle, OwnedFd::from(w))
        })
        .collect();
    for _ in &threads {
        ready_rx.recv().or_fail("thread ready");
    }
    let tids = workload::own_threads().or_fail("threads");
    let awake = workload::wait_threads_sleeping(&tids[1..], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("threads not asleep at READY (tid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("pair bytes", &Some(b"child to root".to_vec()), &read_some(sock_root.as_fd()).ok());
    c.same("master line", &Some(b"slave to master\r\n".to_vec()), &read_some(master.as_fd()).ok());
    for (i, (handle, go)) in threads.into_iter().enumerate() {
        write_all(go.as_fd(), &[b'a' + i as u8]);
        match handle.join() {
            Ok(t) => c.absorb(&format!("thread {i}"), t),
            Err(_) => c.check(false, || format!("thread {i} panicked")),
        }
    }
    c.ok("go to the child", kid.send("go\n"));
    kid.collect(c);
    s.finish()
}
