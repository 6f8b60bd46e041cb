//! Packet sockets on `lo` for an ethertype nothing else sends (0x88b5, IEEE local experimental):
//! two SOCK_RAW sockets in one fanout group (hash), one with PACKET_AUXDATA, PACKET_IGNORE_OUTGOING
//! and a multicast membership; a SOCK_DGRAM socket made with protocol 0 (receiving nothing) and
//! PACKET_VERSION 1.
//!
//! After the wake each socket has the same interface, protocol, options and fanout; a frame sent
//! on `lo` after the restore reaches the fanout group.
//!
//! With argument `ring`: a packet socket with a TPACKET RX ring (the dump must refuse it); after
//! the wake the ring is still set up.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const SOL_PACKET: i32 = 263;
const PROTO: u16 = 0x88b5;
const WATCHED: [(i32, i32); 6] = [
    (SOL_PACKET, 8),  // PACKET_AUXDATA
    (SOL_PACKET, 10), // PACKET_VERSION
    (SOL_PACKET, 18), // PACKET_FANOUT
    (SOL_PACKET, 23), // PACKET_IGNORE_OUTGOING
    (libc::SOL_SOCKET, libc::SO_TYPE),
    (libc::SOL_SOCKET, libc::SO_PROTOCOL),
];

fn state(fd: BorrowedFd<'_>) -> (Option<(i32, u16)>, Vec<Option<i32>>) {
    (raw::packet_name(fd).ok(), WATCHED.iter().map(|&(l, o)| raw::get_opt_at(fd, l, o).ok()).collect())
}

fn main() {
    let mut s = workload::start();
    if workload::arg::<String>(1, String::new()) == "ring" {
        ring(s);
    }
    let fanout = (std::process::id() & 0xffff) as i32;
    let grouped: Vec<OwnedFd> = (0..2)
        .map(|i| {
            let p = raw::packet_socket(libc::SOCK_RAW, PROTO).or_fail("socket");
            if i == 0 {
                raw::set_opt_at(p.as_fd(), SOL_PACKET, 8, 1).or_fail("PACKET_AUXDATA");
                raw::set_opt_at(p.as_fd(), SOL_PACKET, 23, 1).or_fail("PACKET_IGNORE_OUTGOING");
                // struct packet_mreq: ifindex, PACKET_MR_MULTICAST, alen 6, 01:00:5e:7f:00:01
                let mreq = [
                    &1i32.to_ne_bytes()[..],
                    &0u16.to_ne_bytes(),
                    &6u16.to_ne_bytes(),
                    &[1, 0, 0x5e, 0x7f, 0, 1, 0, 0],
                ]
                .concat();
                raw::set_opt_bytes(p.as_fd(), SOL_PACKET, 1, &mreq).or_fail("PACKET_ADD_MEMBERSHIP");
            }
            raw::packet_bind(p.as_fd(), 1, PROTO).or_fail("bind");
            raw::set_opt_at(p.as_fd(), SOL_PACKET, 18, fanout).or_fail("PACKET_FANOUT");
            p
        })
        .collect();
    let quiet = raw::packet_socket(libc::SOCK_DGRAM, 0).or_fail("socket");
    raw::set_opt_at(quiet.as_fd(), SOL_PACKET, 10, 1).or_fail("PACKET_VERSION");
    let all = [&grouped[0], &grouped[1], &quiet];
    let before: Vec<_> = all.iter().map(|f| state(f.as_fd())).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for (i, (f, b)) in all.iter().zip(&before).enumerate() {
        c.same(&format!("packet socket {i}: interface, protocol, options, fanout"), b, &state(f.as_fd()));
    }
    let sender = raw::packet_socket(libc::SOCK_RAW, PROTO).or_fail("socket");
    let frame = [&[0u8; 12][..], &PROTO.to_be_bytes(), b"stasis packet"].concat();
    c.ok("a frame sent on lo", raw::packet_send(sender.as_fd(), 1, PROTO, &frame));
    let got = (0..600).any(|_| grouped.iter().any(|g| raw::poll_readable(g.as_fd(), 50).unwrap_or(false)));
    c.check(got, || "no socket of the fanout group received the frame within 30 s".into());
    s.finish()
}

/// A packet socket with an RX ring, which a dump refuses.
fn ring(mut s: workload::Session) -> ! {
    let p = raw::packet_socket(libc::SOCK_RAW, PROTO).or_fail("socket");
    // struct tpacket_req: block size, block count, frame size, frame count
    let req: Vec<u8> = [4096u32, 1, 2048, 2].iter().flat_map(|w| w.to_ne_bytes()).collect();
    raw::set_opt_bytes(p.as_fd(), SOL_PACKET, 5, &req).or_fail("PACKET_RX_RING");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    // A second ring on the same socket is refused while the first is there.
    let again = raw::set_opt_bytes(p.as_fd(), SOL_PACKET, 5, &req).map_err(|e| e.raw_os_error());
    c.same("the ring is still set up", &Err(Some(libc::EBUSY)), &again);
    s.finish()
}
