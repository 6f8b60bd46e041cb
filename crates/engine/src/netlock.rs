//! The network lock: from the freeze of a tree with established TCP connections until the restored
//! tree runs, every packet of those connections is dropped, so a peer sees silence and retransmits
//! instead of receiving a reset (the sockets are in repair mode meanwhile and send nothing).
//!
//! The mechanism is one nftables table per dump (family `inet`, named `stasis-PID-MS`), with an
//! `input` and an `output` chain at the `raw` priority, each holding two rules per connection (one per
//! direction, by 4-tuple) after one that accepts packets marked [`BYPASS_MARK`] (those a restore
//! sends a restored socket itself). It is made and changed with Debian's `nft` program (`nft -f -`). A whole
//! table is removed in one step and touches no rule of anyone else's. The table outlives the dump
//! (its name is in the inventory) and the restore removes it; `nft delete table inet NAME` removes a
//! lock left by a dump that is never restored.
//!
//! `--network-lock iptables` (CRIU's default) does the same with a chain of its own of the same
//! name in the `filter` table of iptables and of ip6tables, jumped to first from `INPUT` and
//! `OUTPUT`, made and removed with `iptables-restore --noflush` (Debian's iptables package, nft
//! backend or legacy); removing it deletes the two jumps, then the chain.
//!
//! [`Lock`] is a guard: dropped without [`Lock::keep`], it removes its table or chains.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// The packet mark (`SO_MARK`) of the packets a restore sends itself to a restored socket (a peer's
/// FIN, queued datagrams): the lock lets them through.
pub const BYPASS_MARK: u32 = 0x7374_6173;

/// How connections are locked (`--network-lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// An nftables table per dump (the default: Debian 12's firewall is nftables, and a table of our
    /// own is added and removed whole without touching other rules).
    #[default]
    Nftables,
    /// CRIU's default: a chain of the dump's own in iptables' and ip6tables' `filter` tables.
    Iptables,
    /// No lock: the user (or a container's network namespace) keeps the peers away.
    Skip,
}

impl Mode {
    /// The name in the inventory and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Nftables => "nftables",
            Mode::Iptables => "iptables",
            Mode::Skip => "skip",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "nftables" => Ok(Mode::Nftables),
            "iptables" => Ok(Mode::Iptables),
            "skip" => Ok(Mode::Skip),
            _ => Err(format!("{s:?} is not a network lock (nftables, iptables or skip)")),
        }
    }
}

/// One locked connection: its local and remote address.
pub type Conn = (SocketAddr, SocketAddr);

/// A network lock table (or pair of iptables chains), removed when dropped unless kept.
#[derive(Debug)]
pub struct Lock {
    table: String,
    /// Nftables or Iptables.
    mode: Mode,
    made: bool,
    kept: bool,
}

impl Lock {
    /// A lock for the dump of `root`, not made until the first connection is added.
    /// The name is at most 28 bytes, the limit of an iptables chain's: `stasis-` and two numbers of
    /// at most 7 and 13 digits.
    pub fn new(mode: Mode, root: i32) -> Option<Lock> {
        if mode == Mode::Skip {
            return None;
        }
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Some(Lock { table: format!("stasis-{root}-{ms}"), mode, made: false, kept: false })
    }

    /// The lock a dump left, named in its inventory with its method (`made`: it is there;
    /// otherwise it is made again with the connections added next). An unknown method is an error
    /// naming it.
    pub fn adopt(method: &str, table: &str, made: bool) -> std::result::Result<Lock, String> {
        let mode = match method {
            "" | "nftables" => Mode::Nftables,
            "iptables" => Mode::Iptables,
            other => return Err(format!("inventory: network_lock.method {other:?} is not nftables or iptables")),
        };
        Ok(Lock { table: table.to_string(), mode, made, kept: false })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// `nftables` or `iptables`.
    pub fn method(&self) -> &'static str {
        self.mode.name()
    }

    /// Whether the lock exists now (its nftables table, or its iptables chain).
    pub fn exists(&self) -> bool {
        let args: &[&str] = match self.mode {
            Mode::Iptables => &["iptables", "-w", "-n", "-L", &self.table],
            _ => &["nft", "list", "table", "inet", &self.table],
        };
        Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Drop every packet of `conn` from now on, both directions (the table is made first if needed).
    pub fn add(&mut self, conn: &Conn) -> std::result::Result<(), String> {
        if self.mode == Mode::Iptables {
            return self.add_iptables(conn);
        }
        let mut script = String::new();
        if !self.made {
            script.push_str(&self.create_script());
        }
        for chain in ["input", "output"] {
            for (from, to) in [(conn.0, conn.1), (conn.1, conn.0)] {
                script.push_str(&format!("add rule inet {} {chain} {} drop\n", self.table, rule(from, to)));
            }
        }
        self.made = true;
        nft(&script).map_err(|what| format!("network lock {}: locking {} -> {}: {what}", self.table, conn.0, conn.1))
    }

    /// [`Lock::add`] with iptables: the chains are made in both families the first time (a v4
    /// connection's packets never meet the v6 chain, but removal stays one step for both).
    fn add_iptables(&mut self, conn: &Conn) -> std::result::Result<(), String> {
        let chain = self.table.clone();
        if !self.made {
            for family in Family::BOTH {
                let script = format!(
                    "*filter\n:{chain} - [0:0]\n-I INPUT 1 -j {chain}\n-I OUTPUT 1 -j {chain}\n\
                     -A {chain} -m mark --mark {BYPASS_MARK:#x} -j RETURN\nCOMMIT\n"
                );
                if let Err(what) = iptables_restore(family, &script) {
                    self.made = true;
                    self.unlock();
                    return Err(format!("network lock {chain}: making it: {what}"));
                }
            }
            self.made = true;
        }
        let family = if stasis_sys::inet::wire_ip(conn.0.ip()).is_ipv4() { Family::V4 } else { Family::V6 };
        let mut script = String::from("*filter\n");
        for (from, to) in [(conn.0, conn.1), (conn.1, conn.0)] {
            script.push_str(&format!("-A {chain} {} -j DROP\n", ipt_rule(from, to)));
        }
        script.push_str("COMMIT\n");
        iptables_restore(family, &script)
            .map_err(|what| format!("network lock {chain}: locking {} -> {}: {what}", conn.0, conn.1))
    }

    fn create_script(&self) -> String {
        let t = &self.table;
        format!(
            "add table inet {t}\n\
             add chain inet {t} input {{ type filter hook input priority raw; policy accept; }}\n\
             add chain inet {t} output {{ type filter hook output priority raw; policy accept; }}\n\
             add rule inet {t} input meta mark {BYPASS_MARK:#x} accept\n\
             add rule inet {t} output meta mark {BYPASS_MARK:#x} accept\n"
        )
    }

    /// Leave the table in place (the restore removes it).
    pub fn keep(mut self) -> String {
        self.kept = true;
        std::mem::take(&mut self.table)
    }

    /// Remove the table now.
    pub fn remove(mut self) {
        self.unlock();
    }

    fn unlock(&mut self) {
        if self.kept || !self.made {
            return;
        }
        self.made = false;
        let removed = match self.mode {
            Mode::Iptables => {
                let chain = &self.table;
                let script =
                    format!("*filter\n-D INPUT -j {chain}\n-D OUTPUT -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n");
                // Both families, the second even when the first failed.
                let results: Vec<_> = Family::BOTH.iter().map(|&f| iptables_restore(f, &script)).collect();
                results.into_iter().collect::<std::result::Result<Vec<()>, String>>().map(drop)
            }
            _ => nft(&format!("delete table inet {}\n", self.table)),
        };
        match removed {
            Ok(()) => log::info!("network lock {} removed", self.table),
            Err(e) => log::warn!("network lock {}: removing it failed: {e}", self.table),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// The nft match of packets from `from` to `to`.
fn rule(from: SocketAddr, to: SocketAddr) -> String {
    let (fip, tip) = (stasis_sys::inet::wire_ip(from.ip()), stasis_sys::inet::wire_ip(to.ip()));
    let proto = if matches!(fip, IpAddr::V4(_)) { "ip" } else { "ip6" };
    format!("{proto} saddr {fip} {proto} daddr {tip} tcp sport {} tcp dport {}", from.port(), to.port())
}

/// The iptables match of packets from `from` to `to`.
fn ipt_rule(from: SocketAddr, to: SocketAddr) -> String {
    let (fip, tip) = (stasis_sys::inet::wire_ip(from.ip()), stasis_sys::inet::wire_ip(to.ip()));
    format!("-p tcp -s {fip} --sport {} -d {tip} --dport {}", from.port(), to.port())
}

/// The iptables of one address family.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    const BOTH: [Family; 2] = [Family::V4, Family::V6];
}

/// Run `iptables-restore --noflush` (or ip6tables-restore) on `script`, waiting for the xtables
/// lock; the error is the program's message.
fn iptables_restore(family: Family, script: &str) -> std::result::Result<(), String> {
    let program = match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    };
    feed(program, &["--noflush", "-w"], script, "Debian's iptables package")
}

/// Run `nft -f -` on `script`; the error is nft's message.
fn nft(script: &str) -> std::result::Result<(), String> {
    feed("nft", &["-f", "-"], script, "Debian's nftables package")
}

/// Run `program args` with `script` on its standard input; the error is its message.
fn feed(program: &str, args: &[&str], script: &str, package: &str) -> std::result::Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program} (install {package}): {e}"))?;
    let fed = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let out = child.wait_with_output().map_err(|e| format!("waiting for {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    fed.map_err(|e| format!("writing to {program}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_the_wire_family() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(rule(a, b), "ip saddr 127.0.0.1 ip daddr 127.0.0.1 tcp sport 80 tcp dport 4000");
        let c: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(rule(c, c), "ip6 saddr ::1 ip6 daddr ::1 tcp sport 1 tcp dport 1");
        assert!("bogus".parse::<Mode>().is_err());
        assert_eq!(ipt_rule(a, b), "-p tcp -s 127.0.0.1 --sport 80 -d 127.0.0.1 --dport 4000");
        assert!(Lock::adopt("ipchains", "t", true).is_err());
        assert_eq!(Lock::new(Mode::Iptables, 4_194_304).unwrap().table().len(), 28);
    }
}
