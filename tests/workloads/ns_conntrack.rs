//! A TCP connection through a stateful firewall in a network namespace of the workload's own: it
//! unshares one (`CLONE_NEWNET`), sets the loopback up and `net.netfilter.nf_conntrack_tcp_loose`
//! to 0 (a packet of a connection conntrack has no entry for is invalid, not picked up), listens
//! on a TCP port of 127.0.0.1 (the kernel's pick) and loads an nftables table whose input chain
//! drops by default but `ct state established,related` and new connections to that port, and
//! whose output chain marks the entry of a new connection to it (`ct mark set 42`). It connects to
//! the port, accepts, and sends a line each way; it prints `PORT <port>` and READY.
//!
//! With the argument `dnat` the client connects to another port (a listener that never accepts), which
//! an output nat chain maps to the server's (`dnat ip to 127.0.0.1:PORT`); `PORT` is the port the
//! client dials.
//!
//! With the argument `helper` the output chain also gives the connection's entry the FTP helper
//! (`ct helper set`), which ctnetlink cannot set back (the dump must refuse it).
//!
//! After the wake `nf_conntrack_tcp_loose` is still 0 and the connection carries a line each way
//! again: its packets pass the firewall (and reach the server) only if its conntrack entry came
//! back with it, its NAT mapping too.

use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

const LOOSE: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose";
/// The mark the output chain gives the connection's entry.
const MARK: u32 = 42;

fn nft(input: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(input.as_bytes()).map_err(|e| format!("nft: {e}"))?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft -f: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The nat table mapping `from` to the server's `port`.
fn nat_table(from: u16, port: u16) -> String {
    format!(
        "table ip stasis_ct_nat {{\n\
         \tchain output {{ type nat hook output priority -100; policy accept;\n\
         \t\ttcp dport {from} dnat ip to 127.0.0.1:{port}\n\
         \t}}\n\
         }}\n"
    )
}

fn table(port: u16, helper: bool) -> String {
    let (object, assign) = match helper {
        true => (
            "\tct helper ftp-std { type \"ftp\" protocol tcp; }\n".to_string(),
            format!("\t\ttcp dport {port} ct helper set \"ftp-std\"\n"),
        ),
        false => (String::new(), String::new()),
    };
    format!(
        "table inet stasis_ct {{\n{object}\
         \tchain input {{ type filter hook input priority 0; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\ttcp dport {port} ct state new accept\n\
         \t}}\n\
         \tchain output {{ type filter hook output priority 0; policy accept;\n\
         \t\ttcp dport {port} ct state new ct mark set {MARK}\n{assign}\
         \t}}\n\
         }}\n"
    )
}

/// Send `line` on `from` and read it on `to` (at most [`workload::TREE_TIMEOUT`]).
fn carry(from: &TcpStream, to: &TcpStream, line: &str) -> Result<(), String> {
    (&*from).write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("send {line:?}: {e}"))?;
    to.set_read_timeout(Some(workload::TREE_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut got = String::new();
    BufReader::new(to).read_line(&mut got).map_err(|e| format!("receive {line:?}: {e}"))?;
    if got != format!("{line}\n") {
        return Err(format!("received {got:?}, sent {line:?}"));
    }
    Ok(())
}

fn main() {
    let mut s = workload::start();
    workload::unshare_net();
    if std::fs::metadata(LOOSE).is_err() {
        workload::skip("no conntrack in this kernel (no net.netfilter.nf_conntrack_tcp_loose)");
    }
    if Command::new("nft").args(["list", "tables"]).output().map_or(true, |o| !o.status.success()) {
        workload::skip("nft (Debian's nftables package) cannot list tables here");
    }
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status();
    if !up.as_ref().is_ok_and(|s| s.success()) {
        Err::<(), _>(format!("{up:?}")).or_fail("ip link set lo up");
    }
    std::fs::write(LOOSE, "0").or_fail("nf_conntrack_tcp_loose = 0");
    let listener = TcpListener::bind("127.0.0.1:0").or_fail("listen");
    let port = listener.local_addr().or_fail("port").port();
    let mode = std::env::args().nth(1).unwrap_or_default();
    match nft(&table(port, mode == "helper")) {
        Err(e) if mode == "helper" => workload::skip(&format!("no FTP conntrack helper here ({e})")),
        loaded => loaded.or_fail("nft -f (the table stasis_ct)"),
    }
    // With `dnat`: a port of its own (so no one else takes it) that the nat table maps to the
    // server's; the listener on it never accepts.
    let reserved = (mode == "dnat").then(|| TcpListener::bind("127.0.0.1:0").or_fail("listen (the dialed port)"));
    let dialed_port = match &reserved {
        Some(l) => {
            let p = l.local_addr().or_fail("port").port();
            nft(&nat_table(p, port)).or_fail("nft -f (the table stasis_ct_nat)");
            p
        }
        None => port,
    };
    let client = TcpStream::connect(("127.0.0.1", dialed_port)).or_fail("connect");
    let (server, _) = listener.accept().or_fail("accept");
    carry(&client, &server, "hello server").or_fail("before the dump");
    carry(&server, &client, "hello client").or_fail("before the dump");
    workload::say(&format!("PORT {dialed_port}"));
    s.ready();
    s.wait_for_wake();
    let c: &mut Checker = &mut s.checker;
    let loose = std::fs::read_to_string(LOOSE).map(|v| v.trim().to_string()).map_err(|e| e.to_string());
    c.same("nf_conntrack_tcp_loose", &Ok("0".to_string()), &loose);
    c.same("client to server after the restore", &Ok(()), &carry(&client, &server, "ping"));
    c.same("server to client after the restore", &Ok(()), &carry(&server, &client, "pong"));
    s.finish()
}
