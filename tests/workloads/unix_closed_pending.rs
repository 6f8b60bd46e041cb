//! A listener holding connections whose clients closed before they were accepted (a client that
//! connects and gives up at once, as `screen -ls` does on a busy machine), and one it accepted
//! from a client that said goodbye and closed since (a server whose last client just left): a
//! stream listener bound to a path and a seqpacket listener with an abstract name, each with the
//! accepted connection and three connections waiting, from a closed client, a client the workload
//! keeps, and a closed client again. After the wake the accepted connection reads the goodbye,
//! then EOF; each listener (non-blocking) accepts three connections in that order: EOF, the kept
//! client's bytes sent after the wake, EOF; and then none.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn connect(name: &[u8], ty: i32) -> OwnedFd {
    let c = raw::unix_socket(ty).or_fail("client socket");
    raw::connect(c.as_fd(), name).or_fail("connect");
    c
}

/// A listener of type `ty`, the connection it accepted from a client gone since, and its queue:
/// closed, kept (returned), closed.
fn listener(name: &[u8], ty: i32) -> (OwnedFd, OwnedFd, OwnedFd) {
    let l = raw::unix_socket(ty).or_fail("listener");
    raw::bind(l.as_fd(), name).or_fail("bind");
    raw::listen(l.as_fd(), 4).or_fail("listen");
    raw::set_fl(&l, raw::get_fl(&l).or_fail("F_GETFL") | libc::O_NONBLOCK).or_fail("O_NONBLOCK");
    let gone = connect(name, ty);
    let accepted = raw::accept(l.as_fd()).or_fail("accept the first client");
    raw::send_msg(gone.as_fd(), b"goodbye", None, &[], None).or_fail("send the goodbye");
    drop(gone);
    drop(connect(name, ty));
    let kept = connect(name, ty);
    drop(connect(name, ty));
    (l, kept, accepted)
}

/// The accepted connection reads the goodbye, then EOF.
fn check_accepted(c: &mut Checker, what: &str, a: BorrowedFd<'_>) {
    for want in [&b"goodbye"[..], b""] {
        let got = raw::recv_msg(a, 4096, libc::MSG_DONTWAIT).map(|m| m.data);
        c.same(
            &format!("{what}: the accepted connection whose client closed reads"),
            &Ok::<&[u8], String>(want),
            &got.as_deref().map_err(|e| e.to_string()),
        );
    }
}

fn check(c: &mut Checker, what: &str, l: BorrowedFd<'_>, kept: BorrowedFd<'_>) {
    raw::send_msg(kept, b"from the kept client", None, &[], None).or_fail("send");
    let want: [&[u8]; 3] = [b"", b"from the kept client", b""];
    for (i, want) in want.iter().enumerate() {
        let Some(a) = c.ok(&format!("{what}: accept {}", i + 1), raw::accept(l)) else { return };
        let got = raw::recv_msg(a.as_fd(), 4096, 0).map(|m| m.data);
        c.same(
            &format!("{what}: connection {} reads", i + 1),
            &Ok::<&[u8], String>(want),
            &got.as_deref().map_err(|e| e.to_string()),
        );
    }
    let more = raw::accept(l);
    let eagain = more.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EAGAIN);
    c.check(eagain, || format!("{what}: a fourth accept: {more:?}, want EAGAIN"));
}

fn main() {
    let mut s = workload::start();
    let pid = std::process::id();
    let stream_path = workload::work_dir().join(format!("closed-pending-{pid}.sock"));
    let stream_name = std::os::unix::ffi::OsStrExt::as_bytes(stream_path.as_os_str()).to_vec();
    let seq_name = format!("\0stasis-closed-pending-seq-{pid}").into_bytes();
    let (ls, ks, acs) = listener(&stream_name, libc::SOCK_STREAM);
    let (lq, kq, acq) = listener(&seq_name, libc::SOCK_SEQPACKET);
    s.ready();
    s.wait_for_wake();
    check_accepted(&mut s.checker, "stream", acs.as_fd());
    check_accepted(&mut s.checker, "seqpacket", acq.as_fd());
    check(&mut s.checker, "stream", ls.as_fd(), ks.as_fd());
    check(&mut s.checker, "seqpacket", lq.as_fd(), kq.as_fd());
    s.finish()
}
