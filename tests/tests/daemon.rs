//! A daemon after the classic double fork (launcher, M calls setsid and forks D, M and the
//! launcher exit): D is in session M and group M, whose leader is dead, and its parent is this
//! test process, the child subreaper. The test dumps D (not the launcher it started, which has
//! exited), restores it with `-d` and checks from outside that D is back in session M and group M
//! with this process as its parent and that M's pid names no process, compares D's `/proc` state,
//! then wakes D, which checks the same from inside. The `standalone_*` test runs the workload
//! without stasis.

use stasis_tests::harness::{Case, Running, READY_TIMEOUT};
use stasis_tests::raw::Exit;
use stasis_tests::workload;

/// The parent, process group and session of `pid` (`/proc/PID/stat` fields 4, 5 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatIds {
    ppid: i32,
    pgrp: i32,
    session: i32,
}

/// The parent, group and session of `pid`, `None` if it does not exist.
fn stat_ids(pid: i32) -> Option<StatIds> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<i32> =
        stat.rsplit_once(')')?.1.split_whitespace().skip(1).take(3).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    Some(StatIds { ppid: fields[0], pgrp: fields[1], session: fields[2] })
}

/// Starts the workload, checks that its launcher exits 0 (after READY, once M is gone), and
/// adopts the daemon D named by the `DAEMON <pid>` line of the log; `None` if it skipped.
fn start_daemon(case: &Case) -> Option<Running> {
    let mut launcher = case.start()?;
    let exit = launcher.wait_exit(READY_TIMEOUT).unwrap_or_else(|e| case.fail(&e));
    if exit != Exit::Code(0) {
        case.fail(&format!("the launcher (pid {}) ended with {exit:?}:\n{}", launcher.pid(), launcher.log_text()));
    }
    let text = launcher.log_text();
    let pid = text.lines().find_map(|l| l.strip_prefix("DAEMON ")?.parse().ok());
    let pid = pid.unwrap_or_else(|| case.fail(&format!("no DAEMON line in the output:\n{text}")));
    let log = launcher.log_path().map(std::path::Path::to_path_buf);
    Some(Running::adopt(pid, case.workload.name(), log, case.workload.wakes()))
}

/// Checks from outside that `pid` is in the session and group of a leader that is gone, with
/// this process as its parent; returns the leader's pid.
fn expect_orphaned_session(case: &Case, pid: i32, when: &str) -> i32 {
    let ids = stat_ids(pid).unwrap_or_else(|| case.fail(&format!("{when}: no /proc/{pid}/stat")));
    let me = std::process::id() as i32;
    if ids.session == pid || ids.pgrp != ids.session || ids.ppid != me {
        case.fail(&format!(
            "{when}: pid {pid} has {ids:?}, expected the group and session of a leader other than itself, \
             parent {me} (this test process, the child subreaper)"
        ));
    }
    if std::path::Path::new(&format!("/proc/{}", ids.session)).exists() {
        case.fail(&format!("{when}: the session leader {} of pid {pid} exists: {ids:?}", ids.session));
    }
    ids.session
}

#[test]
fn daemon_in_a_session_whose_leader_exited() {
    let case = Case::new("daemon", workload!("daemon"));
    let Some(mut run) = start_daemon(&case) else { return };
    let pid = run.pid();
    let leader = expect_orphaned_session(&case, pid, "before the dump");
    let before = case.settled_snapshot(pid);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    case.expect_no_process_left(pid);
    let mut restored = case.restore_ok(&images, pid, &[]);
    let after = expect_orphaned_session(&case, pid, "after the restore");
    if after != leader {
        case.fail(&format!("pid {pid} is in session {after} after the restore, was in {leader}"));
    }
    case.compare(&before, pid);
    case.finish(&mut restored);
}

#[test]
fn standalone_daemon() {
    let case = Case::new("sa-daemon", workload!("daemon"));
    let Some(mut run) = start_daemon(&case) else { return };
    expect_orphaned_session(&case, run.pid(), "standalone");
    case.finish(&mut run);
}
