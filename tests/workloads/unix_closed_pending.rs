//! A listener holding connections whose clients closed before they were accepted (a client that
//! connects and gives up at once, as `screen -ls` does on a busy machine): a stream listener and a
//! seqpacket listener, each with three connections waiting, from a closed client, a client the
//! workload keeps, and a closed client again. After the wake each listener (non-blocking) accepts
//! three connections in that order: EOF, the kept client's bytes sent after the wake, EOF; and
//! then none.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn connect(name: &[u8], ty: i32) -> OwnedFd {
    let c = raw::unix_socket(ty).or_fail("client socket");
    raw::connect(c.as_fd(), name).or_fail("connect");
    c
}

/// A listener of type `ty` with its queue: closed, kept (returned), closed.
fn listener(name: &[u8], ty: i32) -> (OwnedFd, OwnedFd) {
    let l = raw::unix_socket(ty).or_fail("listener");
    raw::bind(l.as_fd(), name).or_fail("bind");
    raw::listen(l.as_fd(), 4).or_fail("listen");
    raw::set_fl(&l, raw::get_fl(&l).or_fail("F_GETFL") | libc::O_NONBLOCK).or_fail("O_NONBLOCK");
    drop(connect(name, ty));
    let kept = connect(name, ty);
    drop(connect(name, ty));
    (l, kept)
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
    let stream_name = format!("\0stasis-closed-pending-stream-{pid}").into_bytes();
    let seq_name = format!("\0stasis-closed-pending-seq-{pid}").into_bytes();
    let (ls, ks) = listener(&stream_name, libc::SOCK_STREAM);
    let (lq, kq) = listener(&seq_name, libc::SOCK_SEQPACKET);
    s.ready();
    s.wait_for_wake();
    check(&mut s.checker, "stream", ls.as_fd(), ks.as_fd());
    check(&mut s.checker, "seqpacket", lq.as_fd(), kq.as_fd());
    s.finish()
}
