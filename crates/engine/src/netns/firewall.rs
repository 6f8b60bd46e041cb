//! The firewall of a network namespace of the tree: its nftables tables, iptables-nft's among them
//! (Debian 12's `iptables` is iptables-nft), but the network locks of stasis ([`crate::netlock`]).
//!
//! Dump runs `nft list table FAMILY NAME` for each table from the thread in the namespace and
//! keeps the text, the form `nft -f` loads back (counters, quotas and set elements included). What
//! that text would not give back is refused by name: a rule with an xtables extension (an
//! iptables-nft match or target nft has no expression for: `nft` prints a translation, or
//! nothing, where the kernel holds the extension, so the rule would come back changed or
//! shortened), text that `nft -c -f` does not take back, and rules of legacy iptables, ip6tables
//! or arptables (`/proc/thread-self/net/*_tables_names` lists the tables the namespace used;
//! `iptables-legacy-save` shows their rules: tables without rules and with every policy ACCEPT are
//! as good as none).
//!
//! Restore loads the text with `nft -f -` into the new namespace once the tree's sockets are made
//! (the datagrams and FINs a restore sends them must not meet the tree's own rules) and before
//! any process of the tree runs, lists the tables again and fails, naming the table, if they are
//! not what was dumped (the time left of set elements with a timeout aside).

use crate::error::{Error, Result};
use stasis_sys::Pid;
use std::io::Write;
use std::process::{Command, Stdio};

/// The name prefix of the network lock's tables, which are not the tree's.
const LOCK_PREFIX: &str = "stasis-";

/// The legacy (`x_tables`) table lists of a namespace and the tool that shows their rules.
const LEGACY: [(&str, &str); 3] = [
    ("ip_tables_names", "iptables-legacy-save"),
    ("ip6_tables_names", "ip6tables-legacy-save"),
    ("arp_tables_names", ""),
];

/// Run `nft ARGS` (from the calling thread, so in its network namespace) with `input` on its
/// standard input; its standard output, or `None` if `nft` is not installed.
fn nft(pid: i32, args: &[&str], input: Option<&str>) -> Result<Option<String>> {
    let mut cmd = Command::new("nft");
    cmd.args(args).stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("nft (nftables)")(e)),
    };
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(Error::io("nft (nftables): its standard input"))?;
    }
    let out = child.wait_with_output().map_err(Error::io("nft (nftables)"))?;
    if !out.status.success() {
        let what = format!(
            "network namespace: nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Err(Error::Failed { pid: Pid(pid), what });
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The tables of the namespace (family, name) but the network locks; `None` without `nft`.
fn tables(pid: i32) -> Result<Option<Vec<(String, String)>>> {
    let Some(list) = nft(pid, &["list", "tables"], None)? else { return Ok(None) };
    let named = |l: &str| {
        let mut w = l.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (Some("table"), Some(family), Some(name)) => Some((family.to_string(), name.to_string())),
            _ => None,
        }
    };
    Ok(Some(list.lines().filter_map(named).filter(|(_, name)| !name.starts_with(LOCK_PREFIX)).collect()))
}

/// Each table of `tables` as `nft list table` prints it, one after the other.
fn listing(pid: i32, tables: &[(String, String)]) -> Result<String> {
    let mut text = String::new();
    for (family, name) in tables {
        text.push_str(&nft(pid, &["list", "table", family, name], None)?.unwrap_or_default());
    }
    Ok(text)
}

/// The nftables tables of the calling thread's network namespace, as text `nft -f` loads back
/// (empty when there is none, or `nft` is not installed: then nothing here could have made one).
pub fn dump(pid: i32) -> Result<String> {
    refuse_legacy(pid)?;
    let Some(tables) = tables(pid)? else {
        log::info!("pid {pid}: nft is not installed: its network namespace's nftables tables are not looked for");
        return Ok(String::new());
    };
    for (family, name) in &tables {
        let json = nft(pid, &["-j", "list", "table", family, name], None)?.unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| Error::Failed {
            pid: Pid(pid),
            what: format!("network namespace: nft -j list table {family} {name}: output is not the JSON expected: {e}"),
        })?;
        if let Some((chain, ext)) = xt_expression(&value) {
            let what = format!(
                "nftables table {family} {name}: chain {chain} has a rule with the xtables extension {ext} \
                 (an iptables-nft rule nft cannot print whole) in its network namespace"
            );
            return Err(Error::Unsupported { pid: Pid(pid), what });
        }
    }
    let text = listing(pid, &tables)?;
    if !text.is_empty() {
        if let Err(Error::Failed { what, .. }) = nft(pid, &["-c", "-f", "-"], Some(&text)) {
            let what = format!("nftables ruleset of its network namespace that nft does not take back ({what})");
            return Err(Error::Unsupported { pid: Pid(pid), what });
        }
    }
    Ok(text)
}

/// The first xtables expression (`{"xt": {"type": "match", "name": "comment"}}`) of a table's
/// JSON listing: (its chain, `match comment`).
fn xt_expression(listing: &serde_json::Value) -> Option<(String, String)> {
    fn find(v: &serde_json::Value) -> Option<&serde_json::Value> {
        match v {
            serde_json::Value::Object(m) => m.get("xt").or_else(|| m.values().find_map(find)),
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    listing["nftables"].as_array()?.iter().find_map(|item| {
        let rule = item.get("rule")?;
        let xt = find(&rule["expr"])?;
        let chain = rule["chain"].as_str().unwrap_or("?").to_string();
        Some((chain, format!("{} {}", xt["type"].as_str().unwrap_or("?"), xt["name"].as_str().unwrap_or("?"))))
    })
}

/// Legacy iptables, ip6tables or arptables rules in the namespace are refused by name.
fn refuse_legacy(pid: i32) -> Result<()> {
    for (list, save) in LEGACY {
        let Ok(names) = std::fs::read_to_string(format!("/proc/thread-self/net/{list}")) else { continue };
        let names: Vec<&str> = names.split_whitespace().collect();
        if names.is_empty() {
            continue;
        }
        let refuse = |why: String| {
            let what =
                format!("legacy x_tables firewall rules in its network namespace ({list}: {}): {why}", names.join(" "));
            Err(Error::Unsupported { pid: Pid(pid), what })
        };
        if save.is_empty() {
            return refuse("they are not saved".into());
        }
        let out = match Command::new(save).stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => out,
            Ok(out) => return refuse(format!("{save} failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => return refuse(format!("{save} cannot be run to read them: {e}")),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = text.lines().find(|l| is_legacy_rule(l)) {
            return refuse(format!("{save} shows `{}`, and they are not saved", line.trim()));
        }
    }
    Ok(())
}

/// A line of `iptables-legacy-save` that is a rule, or a policy other than ACCEPT.
fn is_legacy_rule(line: &str) -> bool {
    let mut w = line.split_whitespace();
    match w.next() {
        Some(first) if first.starts_with(':') => !matches!(w.next(), Some("ACCEPT" | "-")),
        Some(first) => first == "-A" || first == "-I",
        None => false,
    }
}

/// Load the tables `text` (of [`dump`]) into the calling thread's network namespace, and check
/// that they are the ones dumped.
pub fn restore(pid: i32, text: &str) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let missing = || Error::Failed {
        pid: Pid(pid),
        what: "its network namespace had nftables tables, and nft (Debian's nftables package) is not installed".into(),
    };
    nft(pid, &["-f", "-"], Some(text))?.ok_or_else(missing)?;
    let tables = tables(pid)?.ok_or_else(missing)?;
    let now = listing(pid, &tables)?;
    if comparable(&now) != comparable(text) {
        let first =
            |t: &str| t.lines().find(|l| l.starts_with("table ")).unwrap_or("").trim_end_matches(" {").to_string();
        let what = format!(
            "nftables ruleset of its network namespace: loaded back, it is not the one dumped (dumped from {:?}, now from {:?})",
            first(text),
            first(&now)
        );
        return Err(Error::Failed { pid: Pid(pid), what });
    }
    log::info!("pid {pid}: nftables tables of its network namespace loaded ({} bytes)", text.len());
    Ok(())
}

/// The words of a listing without the time left of set elements (`expires 9s`), which runs on.
fn comparable(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "expires" {
            words.next();
        } else {
            out.push(w.trim_end_matches(','));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rules_and_policies_are_told_from_empty_tables() {
        assert!(!is_legacy_rule(":INPUT ACCEPT [0:0]"));
        assert!(!is_legacy_rule(":MINE - [0:0]"));
        assert!(!is_legacy_rule("*filter"));
        assert!(!is_legacy_rule("COMMIT"));
        assert!(is_legacy_rule(":FORWARD DROP [0:0]"));
        assert!(is_legacy_rule("-A INPUT -p tcp -m tcp --dport 9 -j DROP"));
    }

    #[test]
    fn an_xtables_expression_is_found_with_its_chain() {
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "expr": [{"counter": null}, {"accept": null}]}},
            {"rule": {"family": "ip", "table": "filter", "chain": "FWD", "expr": [{"xt": {"type": "target", "name": "REJECT"}}]}},
        ]});
        assert_eq!(xt_expression(&listing), Some(("FWD".into(), "target REJECT".into())));
        assert_eq!(xt_expression(&serde_json::json!({"nftables": []})), None);
    }

    #[test]
    fn the_time_left_of_set_elements_is_not_compared() {
        let a = "elements = { 10.0.0.1 timeout 1m expires 59s880ms, 10.0.0.2 }";
        let b = "elements = { 10.0.0.1 timeout 1m expires 41s, 10.0.0.2 }";
        assert_eq!(comparable(a), comparable(b));
        assert_ne!(comparable(a), comparable("elements = { 10.0.0.1 timeout 1m, 10.0.0.3 }"));
    }
}
