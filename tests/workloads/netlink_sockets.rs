//! Netlink sockets: a route socket bound by the kernel's pick of port id with groups 23 (in the
//! address) and 33 (past the 32 the address holds, joined with NETLINK_ADD_MEMBERSHIP), with
//! NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK and a 64 KiB SO_RCVBUF; a sock_diag socket never
//! bound; a uevent socket bound without groups (groups that fire when other tests make devices
//! would queue messages a dump must refuse). The groups are ones no event here sends to (DCB and
//! bridge VLANs).
//!
//! After the wake each socket has the same port id, groups and options; the route socket answers a
//! request for `lo`; the sock_diag socket is still unbound.
//!
//! With argument `unread`: a route socket whose reply to a request was not read (a dump must
//! refuse it); after the wake the reply is still there.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const SOL_NETLINK: i32 = 270;
const WATCHED: [(i32, i32); 6] = [
    (SOL_NETLINK, 11), // NETLINK_EXT_ACK
    (SOL_NETLINK, 12), // NETLINK_GET_STRICT_CHK
    (SOL_NETLINK, 5),  // NETLINK_NO_ENOBUFS
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_PROTOCOL),
    (libc::SOL_SOCKET, libc::SO_TYPE),
];

/// (port id and group bitmap, memberships, the watched options).
type State = (Option<(u32, u32)>, Option<[u32; 2]>, Vec<Option<i32>>);

fn state(fd: BorrowedFd<'_>) -> State {
    let opts = WATCHED.iter().map(|&(l, o)| raw::get_opt_at(fd, l, o).ok()).collect();
    (raw::netlink_name(fd).ok(), raw::netlink_groups(fd).ok(), opts)
}

fn main() {
    let mut s = workload::start();
    if workload::arg::<String>(1, String::new()) == "unread" {
        unread(s);
    }
    let route = raw::netlink_socket(libc::SOCK_RAW, libc::NETLINK_ROUTE).or_fail("socket");
    for (l, o, v) in [(SOL_NETLINK, 11, 1), (SOL_NETLINK, 12, 1), (libc::SOL_SOCKET, libc::SO_RCVBUF, 65536)] {
        raw::set_opt_at(route.as_fd(), l, o, v).or_fail("setsockopt");
    }
    raw::netlink_bind(route.as_fd(), 0, 1 << 22).or_fail("bind");
    raw::set_opt_at(route.as_fd(), SOL_NETLINK, 1, 33).or_fail("NETLINK_ADD_MEMBERSHIP");
    let diag = raw::netlink_socket(libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG).or_fail("socket");
    let uevent = raw::netlink_socket(libc::SOCK_DGRAM, libc::NETLINK_KOBJECT_UEVENT).or_fail("socket");
    raw::netlink_bind(uevent.as_fd(), 0, 0).or_fail("bind");
    let all: [&OwnedFd; 3] = [&route, &diag, &uevent];
    let before: Vec<_> = all.iter().map(|f| state(f.as_fd())).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for (i, (f, b)) in all.iter().zip(&before).enumerate() {
        c.same(&format!("netlink socket {i}: port id, groups, options"), b, &state(f.as_fd()));
    }
    c.same("the route socket answers for lo", &Some(16), &raw::rtm_getlink(route.as_fd(), 1).ok());
    c.same("the sock_diag socket is unbound", &Some(0), &raw::netlink_name(diag.as_fd()).ok().map(|n| n.0));
    s.finish()
}

/// A route socket holding the kernel's reply, unread.
fn unread(mut s: workload::Session) -> ! {
    let route = raw::netlink_socket(libc::SOCK_RAW, libc::NETLINK_ROUTE).or_fail("socket");
    let first = raw::rtm_getlink(route.as_fd(), 1).or_fail("RTM_GETLINK");
    // A second request whose reply stays queued.
    let pending = raw::netlink_socket(libc::SOCK_RAW, libc::NETLINK_ROUTE).or_fail("socket");
    let _ = first;
    raw::rtm_getlink_send(pending.as_fd(), 1).or_fail("send");
    if !raw::poll_readable(pending.as_fd(), 30_000).unwrap_or(false) {
        workload::skip("no reply to RTM_GETLINK within 30 s");
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("the reply is still queued", &Some(true), &raw::poll_readable(pending.as_fd(), 0).ok());
    s.finish()
}
