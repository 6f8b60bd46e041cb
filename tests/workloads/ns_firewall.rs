//! A firewall in a network namespace of the workload's own: it unshares one (`CLONE_NEWNET`), sets
//! the loopback up, listens on two TCP ports of 127.0.0.1 (the kernel's picks), and loads an
//! nftables table `stasis_fw` with a set `blocked` holding the first port and an input chain whose
//! rule rejects (TCP reset, counted) what goes to a port of the set; and with Debian's iptables
//! (iptables-nft) a rule dropping a third port and a chain of its own. Before the READY it checks
//! that the rules act (a connect to the blocked port is refused, one to the open port accepted)
//! and keeps `nft list ruleset` and `iptables -S`.
//!
//! After the wake the ruleset (the counter's packets included) and `iptables -S` are the same, a
//! connect to the blocked port is still refused, and one to the open port is accepted.

use stasis_tests::workload::{self, Checker, OrFail};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(cmd: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let what = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(input.unwrap_or("").as_bytes()).map_err(|e| format!("{what}: {e}"))?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ruleset() -> Result<String, String> {
    run("nft", &["list", "ruleset"], None)
}

fn iptables_rules() -> Result<String, String> {
    run("iptables", &["-S"], None)
}

/// A connect to `port` of 127.0.0.1: Ok if accepted (then accepted here), else the error kind.
fn connect(listener: Option<&TcpListener>, port: u16) -> Result<(), std::io::ErrorKind> {
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let conn = TcpStream::connect_timeout(&to, Duration::from_secs(30)).map_err(|e| e.kind())?;
    if let Some(l) = listener {
        l.accept().map_err(|e| e.kind())?;
    }
    drop(conn);
    Ok(())
}

fn main() {
    let mut s = workload::start();
    workload::unshare_net();
    if ruleset().is_err() {
        workload::skip("nft (Debian's nftables package) cannot list the ruleset here");
    }
    if iptables_rules().is_err() {
        workload::skip("iptables (Debian's iptables package) cannot list the rules here");
    }
    run("ip", &["link", "set", "lo", "up"], None).or_fail("lo up");
    let blocked = TcpListener::bind("127.0.0.1:0").or_fail("listen");
    let open = TcpListener::bind("127.0.0.1:0").or_fail("listen");
    let (blocked_port, open_port) =
        (blocked.local_addr().or_fail("port").port(), open.local_addr().or_fail("port").port());
    let dropped = blocked_port.wrapping_add(1);
    let table = format!(
        "table inet stasis_fw {{\n\
         \tset blocked {{ type inet_service; elements = {{ {blocked_port} }} }}\n\
         \tchain input {{ type filter hook input priority 0; policy accept;\n\
         \t\ttcp dport @blocked counter reject with tcp reset\n\
         \t}}\n\
         }}\n"
    );
    run("nft", &["-f", "-"], Some(&table)).or_fail("nft -f (the table stasis_fw)");
    let dport = dropped.to_string();
    run("iptables", &["-A", "INPUT", "-p", "tcp", "--dport", &dport, "-j", "DROP"], None).or_fail("iptables -A");
    run("iptables", &["-N", "STASIS_MINE"], None).or_fail("iptables -N");
    run("iptables", &["-A", "STASIS_MINE", "-s", "192.0.2.0/24", "-j", "DROP"], None).or_fail("iptables -A");
    connect(Some(&open), open_port).or_fail("connect to the open port before the dump");
    match connect(None, blocked_port) {
        Err(std::io::ErrorKind::ConnectionRefused) => {}
        other => Err::<(), _>(format!("{other:?}")).or_fail("connect to the blocked port before the dump (refused)"),
    }
    let rules_before = ruleset().or_fail("nft list ruleset");
    let ipt_before = iptables_rules().or_fail("iptables -S");
    s.ready();
    s.wait_for_wake();
    let c: &mut Checker = &mut s.checker;
    c.same("nft list ruleset", &Ok(rules_before), &ruleset());
    c.same("iptables -S", &Ok(ipt_before), &iptables_rules());
    c.same(
        "connect to the blocked port after the restore",
        &Err(std::io::ErrorKind::ConnectionRefused),
        &connect(None, blocked_port),
    );
    c.same("connect to the open port after the restore", &Ok(()), &connect(Some(&open), open_port));
    s.finish()
}
