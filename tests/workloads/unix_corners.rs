//! Corner cases of UNIX socket names. Argument: the case.
//!
//! - `self_connected`: a datagram socket bound to an abstract name and connected to itself, with a
//!   message it sent itself queued; after the restore its name and peer are its own name, it reads
//!   the message and can send itself another.
//! - `removed_dir`: a stream socket bound in a directory removed since (its file unlinked first);
//!   after the restore its name is that path, and the directory is still gone.
//! - `path_in_turn`: two datagram sockets bound to one path in turn (the first one's file unlinked
//!   before the second bound it); after the restore both have the name, and the path reaches the
//!   second.
//! - `fifo_over`: a socket whose file was replaced by a FIFO; after the restore the socket keeps
//!   its name and the path is still the FIFO.
//! - `unconnected`: a stream socket never bound nor connected, and one bound but not listening;
//!   after the restore both are as they were (no peer; the second has its name).
//! - `epoll_scm`: an epoll watching a datagram socket that arrived over SCM_RIGHTS (the sender's
//!   copy closed), with a message queued on it; after the restore the epoll reports it readable
//!   with its data, and it reads the message.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

fn name_of(fd: &OwnedFd, peer: bool) -> Option<Vec<u8>> {
    raw::sock_name(fd.as_fd(), peer).ok()
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

enum Held {
    SelfConnected(OwnedFd, Vec<u8>),
    RemovedDir(OwnedFd, PathBuf),
    InTurn(OwnedFd, OwnedFd, PathBuf),
    FifoOver(OwnedFd, PathBuf),
    Unconnected(OwnedFd, OwnedFd, PathBuf),
    EpollScm(OwnedFd, OwnedFd, OwnedFd),
}

fn hold(mode: &str) -> Held {
    let dir = workload::work_dir();
    let pid = std::process::id();
    match mode {
        "self_connected" => {
            let name = format!("\0stasis-self-{pid}").into_bytes();
            let s = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
            raw::bind(s.as_fd(), &name).or_fail("bind");
            raw::connect(s.as_fd(), &name).or_fail("connect to itself");
            raw::send_msg(s.as_fd(), b"to myself", None, &[], None).or_fail("send to itself");
            Held::SelfConnected(s, name)
        }
        "removed_dir" => {
            let d = dir.join(format!("gone-{pid}"));
            std::fs::create_dir(&d).or_fail("mkdir");
            let path = d.join("s.sock");
            let s = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::bind(s.as_fd(), &bytes(&path)).or_fail("bind");
            std::fs::remove_file(&path).or_fail("unlink");
            std::fs::remove_dir(&d).or_fail("rmdir");
            Held::RemovedDir(s, path)
        }
        "path_in_turn" => {
            let path = dir.join(format!("turn-{pid}.sock"));
            let a = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
            raw::bind(a.as_fd(), &bytes(&path)).or_fail("bind the first");
            std::fs::remove_file(&path).or_fail("unlink");
            let b = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
            raw::bind(b.as_fd(), &bytes(&path)).or_fail("bind the second");
            Held::InTurn(a, b, path)
        }
        "fifo_over" => {
            let path = dir.join(format!("fifo-{pid}"));
            let s = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::bind(s.as_fd(), &bytes(&path)).or_fail("bind");
            std::fs::remove_file(&path).or_fail("unlink");
            raw::mkfifo(&path, 0o600).or_fail("mkfifo");
            Held::FifoOver(s, path)
        }
        "unconnected" => {
            let path = dir.join(format!("bound-{pid}.sock"));
            let a = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            let b = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::bind(b.as_fd(), &bytes(&path)).or_fail("bind");
            Held::Unconnected(a, b, path)
        }
        "epoll_scm" => {
            let (a, b) = raw::unix_pair(libc::SOCK_STREAM).or_fail("socketpair");
            let (c, d) = raw::unix_pair(libc::SOCK_DGRAM).or_fail("socketpair");
            raw::send_msg(a.as_fd(), b"fd", None, &[c.as_fd()], None).or_fail("send the socket");
            drop(c);
            let mut got = raw::recv_msg(b.as_fd(), 16, 0).or_fail("receive the socket");
            let c = got.fds.pop().ok_or("no fd arrived").or_fail("receive the socket");
            let ep = raw::epoll_create().or_fail("epoll_create");
            raw::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, c.as_raw_fd(), libc::EPOLLIN as u32, 77)
                .or_fail("epoll_ctl");
            raw::send_msg(d.as_fd(), b"ping", None, &[], None).or_fail("send ping");
            Held::EpollScm(ep, c, d)
        }
        other => {
            workload::unknown_mode(other, "self_connected|removed_dir|path_in_turn|fifo_over|unconnected|epoll_scm")
        }
    }
}

fn verify(c: &mut Checker, held: Held) {
    match held {
        Held::SelfConnected(s, name) => {
            c.same("own name", &Some(name.clone()), &name_of(&s, false));
            c.same("peer", &Some(name), &name_of(&s, true));
            let got = raw::recv_msg(s.as_fd(), 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
            c.same("queued message", &Some(b"to myself".to_vec()), &got);
            c.ok("send to itself again", raw::send_msg(s.as_fd(), b"again", None, &[], None));
        }
        Held::RemovedDir(s, path) => {
            c.same("name", &Some(bytes(&path)), &name_of(&s, false));
            c.check(!path.parent().expect("a dir").exists(), || "the removed directory is back".into());
        }
        Held::InTurn(a, b, path) => {
            c.same("first's name", &Some(bytes(&path)), &name_of(&a, false));
            c.same("second's name", &Some(bytes(&path)), &name_of(&b, false));
            let probe = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
            c.ok("send to the path", raw::send_msg(probe.as_fd(), b"hi", Some(&bytes(&path)), &[], None));
            let got = raw::recv_msg(b.as_fd(), 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
            c.same("the second got it", &Some(b"hi".to_vec()), &got);
        }
        Held::FifoOver(s, path) => {
            c.same("name", &Some(bytes(&path)), &name_of(&s, false));
            let fifo = std::fs::symlink_metadata(&path).map(|m| m.file_type().is_fifo()).ok();
            c.same("the path is a FIFO", &Some(true), &fifo);
        }
        Held::EpollScm(ep, sock, _peer) => {
            let ready = raw::epoll_wait(ep.as_fd(), 0).ok();
            c.same("epoll events", &Some(vec![(libc::EPOLLIN as u32, 77)]), &ready);
            let got = raw::recv_msg(sock.as_fd(), 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
            c.same("the message on the socket that arrived", &Some(b"ping".to_vec()), &got);
        }
        Held::Unconnected(a, b, path) => {
            c.same("unbound socket's name", &Some(Vec::new()), &name_of(&a, false));
            c.check(name_of(&a, true).is_none(), || "the unbound socket has a peer".into());
            c.same("bound socket's name", &Some(bytes(&path)), &name_of(&b, false));
            c.ok("listen on the bound socket", raw::listen(b.as_fd(), 1));
        }
    }
}

fn main() {
    let mut s = workload::start();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let held = hold(&mode);
    s.ready();
    s.wait_for_wake();
    verify(&mut s.checker, held);
    s.finish()
}
