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
//! [`Lock`] is a guard: dropped without [`Lock::keep`], it removes its table.

use crate::error::{Error, Result};
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
    /// CRIU's default; not implemented here: asking for it fails when a connection needs a lock.
    Iptables,
    /// No lock: the user (or a container's network namespace) keeps the peers away.
    Skip,
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

/// A network lock table, removed when dropped unless kept.
#[derive(Debug)]
pub struct Lock {
    table: String,
    made: bool,
    kept: bool,
}

impl Lock {
    /// A lock for the dump of `root`, not made until the first connection is added.
    pub fn new(mode: Mode, root: i32) -> Result<Option<Lock>> {
        match mode {
            Mode::Skip => Ok(None),
            Mode::Iptables => Err(Error::Failed {
                pid: stasis_sys::Pid(root),
                what: "the iptables network lock is not implemented: use --network-lock nftables or skip".into(),
            }),
            Mode::Nftables => {
                let ms =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                Ok(Some(Lock { table: format!("stasis-{root}-{ms}"), made: false, kept: false }))
            }
        }
    }

    /// The lock a dump left, named in its inventory (`made`: it is there; otherwise it is made again
    /// with the connections added next).
    pub fn adopt(table: &str, made: bool) -> Lock {
        Lock { table: table.to_string(), made, kept: false }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether the table of `table` exists now.
    pub fn exists(table: &str) -> bool {
        Command::new("nft")
            .args(["list", "table", "inet", table])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Drop every packet of `conn` from now on, both directions (the table is made first if needed).
    pub fn add(&mut self, conn: &Conn) -> std::result::Result<(), String> {
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
        match nft(&format!("delete table inet {}\n", self.table)) {
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

/// Run `nft -f -` on `script`; the error is nft's message.
fn nft(script: &str) -> std::result::Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft (install Debian's nftables package): {e}"))?;
    let fed = child.stdin.take().expect("piped").write_all(script.as_bytes());
    let out = child.wait_with_output().map_err(|e| format!("waiting for nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    fed.map_err(|e| format!("writing to nft: {e}"))
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
    }
}
