//! A server in a network namespace of its own, reached through a veth from outside: the workload
//! keeps a handle on the namespace it started in, unshares a new one (`CLONE_NEWNET`), creates a
//! veth `vin0` there whose peer `snPID` goes to the namespace it left, sets an IPv4 and an IPv6
//! address on `vin0` (in 10.192.0.0/10 and fd00:213::/32, picked from its pid so that parallel
//! runs differ), sets it and the loopback up, adds a route (192.0.2.0/24 via the peer) and a
//! sysctl (`net.ipv4.ip_default_ttl` = 77), and listens on TCP port 8080 of its IPv4 address. It
//! prints `NET <peer> <peer address> <own address>` and READY; the harness gives the peer its
//! address outside.
//!
//! After the wake it checks the addresses, the route, the sysctl and that the loopback is up,
//! accepts the connection the harness made after the restore, reads `ping` and answers
//! `pong <pid>`.

use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::Command;

const PORT: u16 = 8080;
const TTL: &str = "77";
const ROUTE: &str = "192.0.2.0/24";

/// The /30 of this run, one per pid below 2^20 (so no two live runs share one): 10.A.B.C with A in
/// 192..=255, the peer at C+1 and the workload at C+2.
fn addrs(pid: i32) -> (String, String, String) {
    let (a, b, c) = (192 + ((pid >> 14) & 0x3f), (pid >> 6) & 0xff, (pid & 0x3f) << 2);
    (
        format!("10.{a}.{b}.{}", c + 1),
        format!("10.{a}.{b}.{}", c + 2),
        format!("fd00:213:{:x}:{:x}::2", pid >> 16, pid & 0xffff),
    )
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let mut s = workload::start();
    let pid = s.pid();
    let outside = std::fs::File::open("/proc/self/ns/net").or_fail("our network namespace");
    workload::unshare_net();
    let peer = format!("sn{pid}");
    let (peer_addr, own, own6) = addrs(pid);
    let netns = format!("/proc/{pid}/fd/{}", outside.as_raw_fd());
    ip(&["link", "add", "vin0", "type", "veth", "peer", "name", &peer, "netns", &netns]).or_fail("veth");
    drop(outside);
    ip(&["addr", "add", &format!("{own}/30"), "dev", "vin0"]).or_fail("IPv4 address");
    ip(&["addr", "add", &format!("{own6}/64"), "dev", "vin0", "nodad"]).or_fail("IPv6 address");
    ip(&["link", "set", "vin0", "up"]).or_fail("vin0 up");
    ip(&["link", "set", "lo", "up"]).or_fail("lo up");
    ip(&["route", "add", ROUTE, "via", &peer_addr]).or_fail("route");
    std::fs::write("/proc/sys/net/ipv4/ip_default_ttl", TTL).or_fail("ip_default_ttl");
    let listener = std::net::TcpListener::bind((own.as_str(), PORT)).or_fail("listen");
    workload::say(&format!("NET {peer} {peer_addr} {own}"));
    s.ready();
    s.wait_for_wake();
    verify(&mut s.checker, &peer_addr, &own, &own6);
    serve(&mut s.checker, &listener, pid);
    s.finish();
}

fn verify(c: &mut Checker, peer_addr: &str, own: &str, own6: &str) {
    let addrs = ip(&["-o", "addr", "show", "dev", "vin0"]);
    for want in [format!("inet {own}/30"), format!("inet6 {own6}/64")] {
        c.check(addrs.as_ref().is_ok_and(|a| a.contains(&want)), || format!("vin0 addresses {addrs:?}: no {want}"));
    }
    let route = ip(&["route", "show", ROUTE]);
    let want = format!("{ROUTE} via {peer_addr} dev vin0");
    c.check(route.as_ref().is_ok_and(|r| r.contains(&want)), || format!("route {route:?}, want {want:?}"));
    let ttl = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").map(|t| t.trim().to_string());
    c.same("net.ipv4.ip_default_ttl", &Ok(TTL.to_string()), &ttl.map_err(|e| e.to_string()));
    let lo = ip(&["-o", "link", "show", "lo"]);
    c.check(lo.as_ref().is_ok_and(|l| l.contains(",UP")), || format!("lo not up: {lo:?}"));
}

fn serve(c: &mut Checker, listener: &std::net::TcpListener, pid: i32) {
    let (conn, from) = match listener.accept() {
        Ok(accepted) => accepted,
        Err(e) => return c.check(false, || format!("accept: {e}")),
    };
    let _ = conn.set_read_timeout(Some(workload::TREE_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new(&conn).read_line(&mut line);
    c.check(read.is_ok() && line == "ping\n", || format!("from {from}: read {read:?} {line:?}"));
    let wrote = (&conn).write_all(format!("pong {pid}\n").as_bytes());
    c.check(wrote.is_ok(), || format!("answer to {from}: {wrote:?}"));
}
