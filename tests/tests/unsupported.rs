//! What stasis does not support makes the dump fail cleanly: the message names the thing, and the
//! process keeps running untouched (it still passes when woken afterwards).

use stasis_tests::harness::{Case, Running};
use stasis_tests::workload;

/// The value after `prefix` on a line of the workload's output.
fn reported(run: &Running, prefix: &str) -> String {
    let log = run.log_text();
    log.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_default().trim().to_string()
}

/// Starts `unsupported <mode>`, expects the dump to fail with a message matching `needles` (see
/// `Case::expect_failed`; `{x}` in a needle is replaced by the value the workload printed after
/// `x `), then checks the workload is untouched and passes.
fn refused(test: &str, mode: &str, needles: &[&[&str]]) {
    let case = Case::new(test, workload!("unsupported").arg(mode));
    let Some(mut run) = case.start() else { return };
    let needles: Vec<Vec<String>> = needles.iter().map(|g| g.iter().map(|n| expand(n, &run)).collect()).collect();
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let groups: Vec<Vec<&str>> = needles.iter().map(|g| g.iter().map(String::as_str).collect()).collect();
    let groups: Vec<&[&str]> = groups.iter().map(Vec::as_slice).collect();
    case.expect_failed(&r, &format!("dump of a process holding {mode}"), &groups);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

fn expand(needle: &str, run: &Running) -> String {
    match needle.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
        Some(key) => reported(run, &format!("{key} ")),
        None => needle.to_string(),
    }
}

#[test]
fn udp_socket() {
    refused("unsupported_udp", "udp", &[&["fd 42"], &["udp socket"], &["127.0.0.1:"], &["UDP_CORK"]]);
}

/// A working directory removed since the process entered it is refused by name.
#[test]
fn removed_working_directory() {
    refused("unsupported_cwd_removed", "cwd_removed", &[&["working directory removed"], &["gone-"]]);
}

#[test]
fn userfaultfd() {
    refused("unsupported_userfaultfd", "userfaultfd", &[&["fd 43", "fd: 43", "fd=43"], &["userfaultfd"]]);
}

/// A child with a pending SIGTRAP (left by a tracer's exec) is refused by pid: stasis' injected
/// calls stop with SIGTRAP, which would swallow it. The child still has it pending afterwards.
#[test]
fn pending_sigtrap() {
    refused("unsupported_sigtrap", "sigtrap", &[&["pending SIGTRAP"], &["{CHILD}"]]);
}

/// A time namespace made for children that the process did not fork into yet cannot be made
/// again: refused by name; a child forked after the failed dump is still put in it.
#[test]
fn time_namespace_for_children() {
    refused("unsupported_timens_children", "timens_children", &[&["time namespace for its children"]]);
}

/// A child in a time namespace other than its parent's is refused by pid.
#[test]
fn child_in_a_time_namespace() {
    refused("unsupported_timens_child", "timens_child", &[&["time namespace"], &["{CHILD}"]]);
}

/// An fd of a namespace no process of the tree is in cannot be opened again: refused by name.
#[test]
fn namespace_fd_of_no_process_of_the_tree() {
    refused("unsupported_netns_fd", "netns_fd", &[&["fd 45"], &["net namespace"], &["no process of the tree"]]);
}

/// A parent waiting in vfork() for its child cannot be frozen until the child execs or exits: the
/// dump is refused by name at once (it used to wait forever), and both run on; once the child is
/// woken and exits, the parent checks its status (C, built by the test).
#[test]
fn a_parent_waiting_in_vfork() {
    let mut case = Case::new("vfork_wait", workload!("basic"));
    match stasis_tests::harness::static_c_workload(&case.dir, "vfork_wait") {
        Ok(w) => case.workload = w.self_finishing(),
        Err(reason) => return stasis_tests::harness::skip(&reason),
    }
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &[], &[]);
    case.expect_failed(&r, "dump of a vfork parent", &[&["vfork"], &[&run.pid().to_string()]]);
    let children = stasis_tests::harness::tree_pids(run.pid());
    for &child in children.iter().filter(|&&p| p != run.pid()) {
        stasis_tests::raw::kill(child, libc::SIGUSR1)
            .unwrap_or_else(|e| case.fail(&format!("SIGUSR1 to {child}: {e}")));
    }
    case.finish(&mut run);
}
