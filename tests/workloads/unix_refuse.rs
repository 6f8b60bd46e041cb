//! UNIX socket states the dump refuses by name, leaving the process running. Argument:
//! `unaccepted-data` (fd 40: a client that wrote 5 bytes on a connection its listener, fd 41, has
//! not accepted yet), `relative` (fd 42: a datagram socket bound to the relative path `rel.sock`, then the
//! process moved to another working directory, so that the path is relative to a directory stasis
//! cannot tell),
//! `oob` (fd 43: a stream socket holding "data" and an out-of-band byte) or `inflight-udp` (fd 44:
//! a stream socket with SO_PEEK_OFF 0 holding a message that carries a UDP socket holding bytes
//! under UDP_CORK, which stasis does not support). After the wake each socket must still work: the connection is accepted and
//! its bytes read; the datagram socket receives what is sent to it; the out-of-band byte and the
//! data are read; the peek offset and SO_PASSCRED (off) are as set, and the UDP socket arrives
//! and is still a datagram socket.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, OwnedFd};

fn main() {
    let mut s = workload::start();
    let mode: String = workload::arg(1, String::new());
    let mut keep: Vec<OwnedFd> = Vec::new();
    match mode.as_str() {
        "unaccepted-data" => {
            let name = format!("\0stasis-refuse-{}", std::process::id()).into_bytes();
            let l = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::bind(l.as_fd(), &name).or_fail("bind");
            raw::listen(l.as_fd(), 4).or_fail("listen");
            let c = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::connect(c.as_fd(), &name).or_fail("connect");
            raw::send_msg(c.as_fd(), b"early", None, &[], None).or_fail("send");
            keep.push(raw::dup_to(c.as_fd(), 40).or_fail("dup to 40"));
            keep.push(raw::dup_to(l.as_fd(), 41).or_fail("dup to 41"));
        }
        "relative" => {
            let d = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
            raw::bind(d.as_fd(), b"rel.sock").or_fail("bind");
            keep.push(raw::dup_to(d.as_fd(), 42).or_fail("dup to 42"));
            std::fs::create_dir("elsewhere").or_fail("mkdir");
            std::env::set_current_dir("elsewhere").or_fail("chdir");
        }
        "oob" => {
            let (a, b) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
            raw::send_msg(a.as_fd(), b"data", None, &[], None).or_fail("send");
            if let Err(e) = raw::send_oob(a.as_fd(), b'!') {
                workload::skip(&format!("MSG_OOB on unix sockets: {e}"));
            }
            keep.push(raw::dup_to(b.as_fd(), 43).or_fail("dup to 43"));
            keep.push(a);
        }
        "inflight-udp" => {
            let (a, b) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
            // Bytes held by UDP_CORK: a UDP socket stasis cannot save.
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").or_fail("udp bind");
            raw::set_opt_at(udp.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 1).or_fail("UDP_CORK");
            udp.send_to(b"held", udp.local_addr().or_fail("address")).or_fail("send");
            raw::send_msg(a.as_fd(), b"udp", None, &[udp.as_fd()], None).or_fail("send");
            raw::set_opt(b.as_fd(), raw::SO_PEEK_OFF, 0).or_fail("SO_PEEK_OFF");
            keep.push(raw::dup_to(b.as_fd(), 44).or_fail("dup to 44"));
            keep.push(a);
        }
        other => workload::unknown_mode(other, "see the match above"),
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    if mode == "unaccepted-data" {
        let conn = c.ok("accept", raw::accept(keep[1].as_fd()));
        let got = conn.and_then(|f| raw::recv_msg(f.as_fd(), 16, libc::MSG_DONTWAIT).ok()).map(|m| m.data);
        c.same("bytes of the waiting connection", &Some(b"early".to_vec()), &got);
    } else if mode == "inflight-udp" {
        let b = keep[0].as_fd();
        c.same("SO_PEEK_OFF", &Some(0), &raw::get_opt(b, raw::SO_PEEK_OFF).ok());
        c.same("SO_PASSCRED", &Some(0), &raw::get_opt(b, libc::SO_PASSCRED).ok());
        let m = raw::recv_msg(b, 16, libc::MSG_DONTWAIT);
        let fds = m.map(|m| m.fds).unwrap_or_default();
        c.same("fds in flight", &1, &fds.len());
        if let Some(fd) = fds.into_iter().next() {
            let ty = raw::get_opt(fd.as_fd(), libc::SO_TYPE).ok();
            c.same("the UDP socket in flight is a datagram socket", &Some(libc::SOCK_DGRAM), &ty);
        }
    } else if mode == "oob" {
        let oob = raw::recv_msg(keep[0].as_fd(), 1, libc::MSG_OOB | libc::MSG_DONTWAIT).map(|m| m.data).ok();
        c.same("out-of-band byte", &Some(b"!".to_vec()), &oob);
        let data = raw::recv_msg(keep[0].as_fd(), 16, libc::MSG_DONTWAIT).map(|m| m.data).ok();
        c.same("data", &Some(b"data".to_vec()), &data);
    } else {
        let tx = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
        c.ok("send to ../rel.sock", raw::send_msg(tx.as_fd(), b"hi", Some(b"../rel.sock"), &[], None));
        let got = raw::recv_msg(keep[0].as_fd(), 16, libc::MSG_DONTWAIT).map(|m| m.data).ok();
        c.same("datagram received", &Some(b"hi".to_vec()), &got);
    }
    s.finish()
}
