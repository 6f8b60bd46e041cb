//! Connected UNIX sockets keep their data, names and pending connections: a stream socketpair with
//! bytes queued both ways; a seqpacket socketpair with three records of different sizes; a
//! listener bound to a path (mode 0640) with one accepted connection (the client bound to an
//! abstract name, bytes queued both ways) and two connections waiting to be accepted; an abstract
//! listener with one waiting. After the wake every name (getsockname/getpeername) and the path's
//! mode must be as before, every queue must hold exactly its bytes (records with their boundaries),
//! and the waiting connections are accepted in their order and talked over both ways.
//!
//! Also: a connection accepted from an abstract listener that was then closed (the accepted end
//! keeps the name, which is free again: a new socket can bind it), one whose client then wrote
//! and closed (its data, then EOF), and a listener whose socket file was unlinked after listen
//! (the path stays absent; its waiting connection is accepted).

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

fn send(fd: BorrowedFd<'_>, data: &[u8]) {
    let n = raw::send_msg(fd, data, None, &[], None).or_fail("send");
    assert_eq!(n, data.len(), "short send");
}

/// Everything queued on `fd` now (non-blocking), message by message.
fn drain(fd: BorrowedFd<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(m) = raw::recv_msg(fd, 1 << 20, libc::MSG_DONTWAIT) {
        if m.data.is_empty() {
            break;
        }
        out.push(m.data);
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn names(fd: BorrowedFd<'_>) -> (Vec<u8>, Vec<u8>) {
    (raw::sock_name(fd, false).unwrap_or_default(), raw::sock_name(fd, true).unwrap_or_default())
}

fn main() {
    let mut s = workload::start();
    let pid = std::process::id();
    // Stream socketpair, bytes both ways.
    let (sa, sb) = raw::unix_pair(libc::SOCK_STREAM).or_fail("stream pair");
    let (a_to_b, b_to_a) = (pattern(5000, 1), pattern(777, 2));
    send(sa.as_fd(), &a_to_b[..3000]);
    send(sa.as_fd(), &a_to_b[3000..]);
    send(sb.as_fd(), &b_to_a);
    // Seqpacket socketpair, three records.
    let (qa, qb) = raw::unix_pair(libc::SOCK_SEQPACKET).or_fail("seqpacket pair");
    let records = [pattern(1, 3), pattern(70_000, 4), pattern(333, 5)];
    for r in &records {
        send(qa.as_fd(), r);
    }
    send(qb.as_fd(), b"back");
    // Path listener with one accepted connection and two pending.
    let dir = std::env::current_dir().or_fail("cwd");
    let path = dir.join("listener.sock");
    let path_bytes = path.as_os_str().as_encoded_bytes().to_vec();
    let l = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::bind(l.as_fd(), &path_bytes).or_fail("bind path");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).or_fail("chmod");
    raw::listen(l.as_fd(), 8).or_fail("listen");
    let c1 = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    let c1_name = format!("\0stasis-conn-client-{pid}").into_bytes();
    raw::bind(c1.as_fd(), &c1_name).or_fail("bind abstract");
    raw::connect(c1.as_fd(), &path_bytes).or_fail("connect c1");
    let s1 = raw::accept(l.as_fd()).or_fail("accept s1");
    send(c1.as_fd(), b"request from the client");
    send(s1.as_fd(), b"reply from the server");
    let pending: Vec<OwnedFd> = (0..2)
        .map(|_| {
            let c = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
            raw::connect(c.as_fd(), &path_bytes).or_fail("connect pending");
            c
        })
        .collect();
    // Abstract listener with one pending.
    let al_name = format!("\0stasis-conn-listener-{pid}").into_bytes();
    let al = raw::unix_socket(libc::SOCK_SEQPACKET).or_fail("socket");
    raw::bind(al.as_fd(), &al_name).or_fail("bind abstract listener");
    raw::listen(al.as_fd(), 3).or_fail("listen");
    let ap = raw::unix_socket(libc::SOCK_SEQPACKET).or_fail("socket");
    raw::connect(ap.as_fd(), &al_name).or_fail("connect to the abstract listener");
    // Accepted from a listener closed since; one of them orphaned by its client.
    let gone_name = format!("\0stasis-conn-closed-listener-{pid}").into_bytes();
    let gl = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::bind(gl.as_fd(), &gone_name).or_fail("bind");
    raw::listen(gl.as_fd(), 2).or_fail("listen");
    let c2 = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::connect(c2.as_fd(), &gone_name).or_fail("connect c2");
    let s2 = raw::accept(gl.as_fd()).or_fail("accept s2");
    let c3 = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::connect(c3.as_fd(), &gone_name).or_fail("connect c3");
    let s3 = raw::accept(gl.as_fd()).or_fail("accept s3");
    drop(gl);
    send(c2.as_fd(), b"to s2");
    send(s2.as_fd(), b"to c2");
    send(c3.as_fd(), b"last from c3");
    drop(c3);
    // A listener whose file is unlinked.
    let hidden = dir.join("hidden.sock");
    let hidden_bytes = hidden.as_os_str().as_encoded_bytes().to_vec();
    let hl = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::bind(hl.as_fd(), &hidden_bytes).or_fail("bind hidden");
    raw::listen(hl.as_fd(), 2).or_fail("listen");
    let hc = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::connect(hc.as_fd(), &hidden_bytes).or_fail("connect hidden");
    std::fs::remove_file(&hidden).or_fail("unlink hidden");
    let all: Vec<BorrowedFd<'_>> =
        [&sa, &sb, &qa, &qb, &l, &c1, &s1, &pending[0], &pending[1], &al, &ap, &c2, &s2, &s3, &hl, &hc]
            .into_iter()
            .map(|f| f.as_fd())
            .collect();
    let before: Vec<_> = all.iter().map(|&f| names(f)).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let after: Vec<_> = all.iter().map(|&f| names(f)).collect();
    c.same("getsockname/getpeername of every socket", &before, &after);
    let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777).ok();
    c.same("mode of the listener's socket file", &Some(0o640), &mode);
    c.same("stream a->b", &a_to_b, &drain(sb.as_fd()).concat());
    c.same("stream b->a", &b_to_a, &drain(sa.as_fd()).concat());
    c.same("seqpacket records a->b", &records.to_vec(), &drain(qb.as_fd()));
    c.same("seqpacket records b->a", &vec![b"back".to_vec()], &drain(qa.as_fd()));
    c.same("accepted connection: to the server", &b"request from the client".to_vec(), &drain(s1.as_fd()).concat());
    c.same("accepted connection: to the client", &b"reply from the server".to_vec(), &drain(c1.as_fd()).concat());
    talk_pending(c, &l, &pending);
    talk_pending(c, &al, std::slice::from_ref(&ap));
    talk_pending(c, &hl, std::slice::from_ref(&hc));
    c.check(!hidden.exists(), || format!("{} exists after the restore", hidden.display()));
    c.same("accepted, listener closed: to s2", &b"to s2".to_vec(), &drain(s2.as_fd()).concat());
    c.same("accepted, listener closed: to c2", &b"to c2".to_vec(), &drain(c2.as_fd()).concat());
    c.same("accepted, client closed: its data", &b"last from c3".to_vec(), &drain(s3.as_fd()).concat());
    let eof = raw::recv_msg(s3.as_fd(), 8, libc::MSG_DONTWAIT).map(|m| m.data.len()).ok();
    c.same("accepted, client closed: then EOF", &Some(0), &eof);
    let again = raw::unix_socket(libc::SOCK_STREAM).and_then(|f| raw::bind(f.as_fd(), &gone_name));
    c.ok("binding the closed listener's name again", again);
    s.finish()
}

/// Accept the connections waiting on `l` and check they are `clients`, in order, both ways.
fn talk_pending(c: &mut Checker, l: &OwnedFd, clients: &[OwnedFd]) {
    for (i, client) in clients.iter().enumerate() {
        let Some(conn) = c.ok("accept a waiting connection", raw::accept(l.as_fd())) else { return };
        let hello = format!("hello {i}").into_bytes();
        send(client.as_fd(), &hello);
        c.same(&format!("waiting connection {i}: client to server"), &vec![hello], &drain(conn.as_fd()));
        send(conn.as_fd(), b"welcome");
        c.same(
            &format!("waiting connection {i}: server to client"),
            &vec![b"welcome".to_vec()],
            &drain(client.as_fd()),
        );
    }
}
