//! Pseudo-terminals held by the tree: a terminal process with the pty master, a session on the
//! slave with a foreground and a background job (termios, window size, packet mode, queued data
//! both ways, /dev/tty, job control after the restore), and an interactive bash on a pty.

use stasis_tests::harness::{
    checkpoint_restore, processes_of, standalone, Case, Pty, Running, EXIT_TIMEOUT, READY_TIMEOUT,
};
use stasis_tests::raw;
use stasis_tests::raw::Exit;
use stasis_tests::workload;

#[test]
fn pty_session_with_job_control() {
    // Index 24 up: the ptys of other tests, which take the lowest free ones, leave it free.
    checkpoint_restore("tty_pty", workload!("tty_pty").arg("24"));
}

#[test]
fn standalone_pty_session_with_job_control() {
    standalone("sa-tty_pty", workload!("tty_pty"));
}

#[test]
fn interactive_bash_keeps_its_variable_and_jobs() {
    // Index 40 up (see above).
    checkpoint_restore("tty_bash", workload!("tty_bash").arg("40"));
}

#[test]
fn interactive_bash_with_readline() {
    // Index 44 up (see above).
    checkpoint_restore("tty_bash_readline", workload!("tty_bash").arg("44").arg("readline"));
}

#[test]
fn standalone_interactive_bash_with_readline() {
    standalone("sa-tty_bash_readline", workload!("tty_bash").arg("0").arg("readline"));
}

#[test]
fn standalone_interactive_bash() {
    standalone("sa-tty_bash", workload!("tty_bash"));
}

/// A job on a terminal whose master is outside the tree (the harness's pty), dumped without
/// `--shell-job`: refused, naming the pid, the fd and the terminal; the job runs on and passes.
#[test]
fn terminal_outside_the_tree_is_refused_without_shell_job() {
    let case = Case::new("tty_refused", workload!("tty").shell_job());
    let mut pty = Pty::open().unwrap_or_else(|e| case.fail(&format!("openpty: {e}")));
    let mut cmd = case.workload.command(&case.dir);
    pty.attach(&mut cmd).unwrap_or_else(|e| case.fail(&format!("pty stdio: {e}")));
    let mut run = Running::spawn(&mut cmd, case.workload.name(), None, true)
        .unwrap_or_else(|e| case.fail(&format!("spawn: {e}")));
    pty.close_slave();
    pty.wait_for_line("READY", READY_TIMEOUT).unwrap_or_else(|e| case.fail(&e));
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let pid = run.pid().to_string();
    case.expect_failed(
        &r,
        "dump of a job on a terminal without --shell-job",
        &[&[&pid], &["fd 0"], &["/dev/pts/"], &["master is not in the dump"], &["--shell-job"]],
    );
    case.expect_untouched(&run);
    run.signal(libc::SIGUSR1).unwrap_or_else(|e| case.fail(&format!("SIGUSR1: {e}")));
    let exit = run.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|e| case.fail(&e));
    if exit != Exit::Code(0) {
        case.fail(&format!("the job ended with {exit:?}; its terminal shows:\n{}", pty.text()));
    }
    pty.wait_for_line("PASS", READY_TIMEOUT).unwrap_or_else(|e| case.fail(&format!("verdict on the terminal: {e}")));
}

/// A dump that fails after it has read the bytes queued in the pty (`STASIS_FAULT=
/// dump-fail-after-memory`) has pushed them back: the session, woken afterwards, passes.
#[test]
fn queued_bytes_kept_by_a_failed_dump() {
    let case = Case::new("tty_pty_failed_dump", workload!("tty_pty").arg("28"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[("STASIS_FAULT", "dump-fail-after-memory")]);
    case.expect_failed(&r, "dump with a fault injected", &[&["dump-fail-after-memory"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// `--leave-running`: the bytes read from the pty are back, the session goes on and passes.
#[test]
fn leave_running_keeps_the_queued_bytes() {
    let case = Case::new("tty_pty_leave_running", workload!("tty_pty").arg("32"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--leave-running"]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// Restore fails cleanly, naming the pty, when its index is taken on this machine.
#[test]
fn restore_refused_while_the_pty_index_is_taken() {
    // The lowest free indices: this test takes every free index up to the workload's, which must not
    // be one another test's restore needs (those are above 24).
    let case = Case::new("tty_pty_index_taken", workload!("tty_pty").arg("0"));
    let Some(mut run) = case.start() else { return };
    let log = run.log_text();
    let name = log.lines().find_map(|l| l.strip_prefix("pty ")).unwrap_or_default().trim().to_string();
    if !name.starts_with("/dev/pts/") {
        case.fail(&format!("the workload did not print its pty: {log:?}"));
    }
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let held = hold_pty_index(&case, &name);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore while the pty index is taken", &[&[name.as_str()], &["in use"]]);
    let left = processes_of(&case.dir);
    if !left.is_empty() {
        case.fail(&format!("the failed restore left processes {left:?}"));
    }
    drop(held);
}

/// Hold the pty `name` (and the free ones below it, which the kernel hands out first). Another
/// test running meanwhile may hold `name` for a while: a new pty above it is closed again and the
/// open retried, so only the indices up to `name` are ever held, for up to 30 s.
fn hold_pty_index(case: &Case, name: &str) -> Vec<std::os::fd::OwnedFd> {
    let index = |n: &str| n.strip_prefix("/dev/pts/").and_then(|i| i.parse::<u32>().ok());
    let want = index(name).unwrap_or_else(|| case.fail(&format!("not a pty name: {name}")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut held = Vec::new();
    loop {
        let (m, n) = raw::open_pty().unwrap_or_else(|e| case.fail(&format!("open a pty: {e}")));
        match index(&n) {
            Some(i) if i == want => {
                held.push(m);
                return held;
            }
            Some(i) if i < want => held.push(m),
            _ => {
                drop(m);
                if std::time::Instant::now() > deadline {
                    case.fail(&format!("{name} stayed taken by someone else for 30 s"));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// The slave's owner, group and mode (fchown, fchmod) are restored.
#[test]
fn pty_slave_owner_and_mode() {
    // Index 48 up (see above).
    checkpoint_restore("tty_attrs_owner", workload!("tty_attrs").arg("owner").arg("48"));
}

/// A slave whose master was closed (hung up) is dumped, and is hung up after the restore.
#[test]
fn hung_up_pty_slave() {
    checkpoint_restore("tty_attrs_hungup", workload!("tty_attrs").arg("hungup").arg("50"));
}

/// A session of an ordinary user (nobody) gets its terminal's foreground group back.
#[test]
fn foreground_group_of_an_ordinary_user() {
    let w = workload!("tty_attrs").arg("foreground").arg("52").user(65534, 65534);
    checkpoint_restore("tty_attrs_foreground", w);
}
