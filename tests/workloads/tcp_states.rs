//! TCP connections frozen half-closed, both ends in the process, on loopback (the dump needs
//! `--tcp-established`).
//!
//! IPv4: the client wrote "before fin" and shut down writing (FIN-WAIT-2); the server (CLOSE-WAIT)
//! has not read it, nor the FIN, and answered "reply", which the client has not read. IPv6: the
//! server shut down writing with nothing queued (FIN-WAIT-2), the client (CLOSE-WAIT) has not read
//! the end of the stream.
//!
//! After the wake: each end reads what was queued, then the end of the stream where the peer had
//! shut down; the half still open carries new bytes; writing on a shut-down half fails with EPIPE;
//! closing the other halves ends the streams.
//!
//! With arguments `syn-sent PORT`: a connect in progress (see [`syn_sent`]).

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

const SYN_SENT: u8 = 2;
const FIN_WAIT2: u8 = 5;
const CLOSE_WAIT: u8 = 8;

/// The TCP state of `s` (`tcpi_state`).
fn state(s: &TcpStream) -> Option<u8> {
    raw::tcp_state(s.as_fd()).ok()
}

/// Wait (at most 30 s) until `s` is in `want`.
fn wait_state(s: &TcpStream, want: u8) -> Option<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(s) != Some(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    state(s)
}

fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().or_fail("addr")).or_fail("connect");
    let (a, _) = l.accept().or_fail("accept");
    (c, a)
}

/// Everything until the end of the stream, within 30 s.
fn read_to_end(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn read_n(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = vec![0; n];
    s.read_exact(&mut out)?;
    Ok(out)
}

fn main() {
    let mut s = workload::start();
    if workload::arg::<String>(1, String::new()) == "syn-sent" {
        syn_sent(s, workload::arg(2, 0));
    }
    let l4 = TcpListener::bind("127.0.0.1:0").or_fail("bind");
    let l6 = TcpListener::bind("[::1]:0").or_fail("bind");
    let (mut c4, mut s4) = pair(&l4);
    c4.write_all(b"before fin").or_fail("write");
    c4.shutdown(Shutdown::Write).or_fail("shutdown");
    s4.write_all(b"reply").or_fail("write");
    let (mut c6, mut s6) = pair(&l6);
    s6.shutdown(Shutdown::Write).or_fail("shutdown");
    let states = [(&c4, FIN_WAIT2), (&s4, CLOSE_WAIT), (&s6, FIN_WAIT2), (&c6, CLOSE_WAIT)];
    for (sock, want) in states {
        if wait_state(sock, want) != Some(want) {
            workload::skip(&format!("a connection did not reach state {want}: {:?}", state(sock)));
        }
    }
    // Until the peer's data is in (it is acknowledged before the FIN, and read from the queue).
    let deadline = Instant::now() + Duration::from_secs(30);
    while c4.peek(&mut [0u8; 5]).unwrap_or(0) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for (i, (sock, want)) in states.iter().enumerate() {
        // Our FIN-WAIT-2 comes back as FIN-WAIT-1 until the peer acknowledges the FIN again.
        c.same(&format!("connection end {i}: state"), &Some(*want), &wait_state(sock, *want));
    }
    c.same("the IPv4 server reads the stream to its end", &Some(b"before fin".to_vec()), &read_to_end(&mut s4).ok());
    c.same("the IPv4 client reads the reply", &Some(b"reply".to_vec()), &read_n(&mut c4, 5).ok());
    c.ok("the IPv4 server writes on", s4.write_all(b"after restore"));
    c.same("the IPv4 client reads it", &Some(b"after restore".to_vec()), &read_n(&mut c4, 13).ok());
    let refused = c4.write_all(b"x").map_err(|e| e.raw_os_error());
    c.same("the IPv4 client's shut-down half refuses to write", &Err(Some(libc::EPIPE)), &refused);
    check_ends(c, &mut c4, &mut s4, &mut c6, &mut s6);
    s.finish()
}

fn check_ends(c: &mut Checker, c4: &mut TcpStream, s4: &mut TcpStream, c6: &mut TcpStream, s6: &mut TcpStream) {
    c.ok("the IPv4 server shuts down writing", s4.shutdown(Shutdown::Write));
    c.same("the IPv4 client reads the end", &Some(Vec::new()), &read_to_end(c4).ok());
    c.same("the IPv6 client reads the end at once", &Some(Vec::new()), &read_to_end(c6).ok());
    c.ok("the IPv6 client writes", c6.write_all(b"late"));
    c.same("the IPv6 server reads it", &Some(b"late".to_vec()), &read_n(s6, 4).ok());
    c.ok("the IPv6 client shuts down writing", c6.shutdown(Shutdown::Write));
    c.same("the IPv6 server reads the end", &Some(Vec::new()), &read_to_end(s6).ok());
}

/// `syn-sent PORT`: a non-blocking connect to 127.0.0.1:PORT, whose listener (the test's) has a
/// full accept queue, so the SYN goes unanswered. After the wake (the test has emptied the queue)
/// the connect completes within 60 s.
fn syn_sent(mut s: workload::Session, port: u16) -> ! {
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let fd = raw::tcp_socket(libc::AF_INET).or_fail("socket");
    let sock = TcpStream::from(fd);
    sock.set_nonblocking(true).or_fail("nonblocking");
    match raw::connect_inet(sock.as_fd(), to) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        other => workload::skip(&format!("connect to the full listener: {other:?}")),
    }
    if state(&sock) != Some(SYN_SENT) {
        workload::skip(&format!("the connect is in state {:?}, not SYN-SENT", state(&sock)));
    }
    let local = sock.local_addr().or_fail("local address");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("the connecting socket's address", &local, &sock.local_addr().or_fail("local address"));
    let writable = raw::poll_writable(sock.as_fd(), 60_000);
    c.same("the connect completes", &Some(true), &writable.ok());
    c.same("SO_ERROR", &Some(0), &raw::get_opt(sock.as_fd(), libc::SO_ERROR).ok());
    c.same("the peer", &Some(to), &sock.peer_addr().ok());
    c.same("the state", &Some(1), &state(&sock));
    s.finish()
}
