//! Conntrack entries of the tree's network namespace: a connection through a stateful firewall
//! (`ct state established` accepted, new connections only to the server's port, policy drop,
//! `nf_conntrack_tcp_loose` 0) carries data both ways after a dump with `--tcp-established`, a kill
//! and a restore, which it does only if its entry came back; and a second dump of the restored
//! tree lists the entry with the tuples and mark of the first (`stasis show`). The same with the
//! client dialing a port a nat chain maps to the server's (DNAT), whose entry keeps its mapping.
//! An entry with a helper is refused by name, and the tree runs on.

use stasis_tests::harness::{standalone, Case};
use stasis_tests::workload;
use std::path::Path;

/// The conntrack entries of the image at `images` for TCP port `port`, as `stasis show` prints
/// them, up to their mark (`conntrack tcp A -> B, reply C -> D; mark M`): what a restore keeps.
fn entries_of(case: &Case, images: &Path, port: u16) -> Vec<String> {
    let out = case.stasis().command().arg("show").arg(images).output().expect("stasis show");
    let text = String::from_utf8_lossy(&out.stdout);
    let to_port = format!(":{port},");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("conntrack tcp ") && l.contains(&to_port))
        .map(|l| l.split_once(", status").map_or(l, |(kept, _)| kept).to_string())
        .collect()
}

#[test]
fn a_connection_through_a_stateful_firewall_keeps_its_entry() {
    through_a_stateful_firewall(Case::new("conntrack_established", workload!("ns_conntrack")));
}

#[test]
fn a_connection_through_a_dnat_mapping_keeps_it() {
    through_a_stateful_firewall(Case::new("conntrack_dnat", workload!("ns_conntrack").arg("dnat")));
}

/// The workload alone, without stasis: its connection through the DNAT mapping carries its lines.
#[test]
fn the_workload_alone() {
    standalone("conntrack_standalone", workload!("ns_conntrack").arg("dnat"));
}

#[test]
fn an_entry_with_a_helper_is_refused_by_name() {
    let case = Case::new("conntrack_helper", workload!("ns_conntrack").arg("helper"));
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &["--tcp-established"], &[]);
    let needles: &[&[&str]] = &[&["conntrack entry tcp 127.0.0.1:"], &["with the helper ftp"]];
    case.expect_failed(&r, "dump of a conntrack entry with a helper", needles);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// The workload `ns_conntrack` (its `PORT` line: the port the client dials) dumped, killed,
/// restored, dumped again with `--leave-running` and woken.
fn through_a_stateful_firewall(case: Case) {
    let Some(mut run) = case.start() else { return };
    let text = run.log_text();
    let Some(port) = text.lines().find_map(|l| l.strip_prefix("PORT ")).and_then(|p| p.trim().parse().ok()) else {
        case.fail(&format!("no `PORT <port>` line:\n{text}"))
    };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--tcp-established"]);
    let dumped = entries_of(&case, &images, port);
    if dumped.len() != 1 || !dumped[0].ends_with("; mark 42") {
        case.fail(&format!("conntrack entries of port {port} in the image: {dumped:?}, want one with mark 42"));
    }
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &["--tcp-established"]);
    let again = case.images("again");
    case.dump_ok(&restored, &again, &["--tcp-established", "--leave-running"]);
    let listed = entries_of(&case, &again, port);
    if listed != dumped {
        case.fail(&format!("conntrack entries after the restore {listed:?}, before {dumped:?}"));
    }
    case.finish(&mut restored);
}
