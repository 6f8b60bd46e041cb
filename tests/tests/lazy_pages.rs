//! Lazy restore: `stasis lazy-pages` serves the pages of `restore --lazy-pages` through
//! userfaultfd. A 256 MiB heap restored lazily verifies itself, and so does a compressed image
//! (`--compress`); a daemon killed mid-restore takes
//! the restored tree with it (killed, never left hanging nor run on zero pages); fork, mremap,
//! munmap and madvise(DONTNEED) of a lazily restored process meet pages still missing; a restore
//! with no daemon fails naming it and leaves nothing behind.

use stasis_tests::harness::{proc_state, skip, wait_child, Case, EXIT_TIMEOUT, STASIS_TIMEOUT};
use stasis_tests::raw::{self, Exit};
use stasis_tests::workload;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `stasis lazy-pages -D images --json`, killed on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(case: &Case, images: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = case.dir.unique("lazy-pages", "log");
        case.dir.watch_log(&log);
        let mut cmd = case.stasis().command();
        cmd.args(["lazy-pages", "--json", "-vv", "-D"]).arg(images).arg("-o").arg(&log);
        cmd.envs(env.iter().copied()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("start stasis lazy-pages");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        stdout.read_line(&mut line).expect("read the daemon's first line");
        if !line.starts_with("lazy-pages listening on ") {
            case.fail(&format!("lazy-pages printed {line:?}"));
        }
        child.stdout = Some(stdout.into_inner());
        Daemon { child }
    }

    /// Its exit and the rest of its stdout (the JSON report).
    fn wait(&mut self) -> (Exit, String) {
        let mut rest = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut rest);
        }
        (wait_child(&mut self.child, STASIS_TIMEOUT).0, rest)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why lazy restore cannot be tested here, if it cannot.
fn no_userfaultfd() -> Option<String> {
    raw::userfaultfd().err().map(|e| format!("userfaultfd(2) fails here ({e}): lazy restore cannot work"))
}

#[test]
fn a_256_mib_heap_restored_lazily_verifies_itself() {
    if let Some(reason) = no_userfaultfd() {
        return skip(&reason);
    }
    let case = Case::new("lazy_256", workload!("mem_big").arg("256"));
    let Some(report) = lazy_round_trip(&case) else { return };
    let field = |name: &str| -> u64 {
        let at = report.find(&format!("\"{name}\": ")).map(|i| i + name.len() + 4).unwrap_or(report.len());
        report[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
    };
    if field("bytes") < 256 << 20 || field("processes") != 1 {
        case.fail(&format!("the daemon did not serve the heap: {report}"));
    }
    if case.images("images").join("lazy-pages.socket").exists() {
        case.fail("lazy-pages left its socket");
    }
}

#[test]
fn a_compressed_image_restored_lazily_verifies_itself() {
    if let Some(reason) = no_userfaultfd() {
        return skip(&reason);
    }
    let case = Case::new("lazy_compressed", workload!("mem_mixed"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--compress"]);
    case.reap_dumped(&mut run);
    let mut daemon = Daemon::start(&case, &images, &[]);
    let mut restored = case.restore_ok(&images, run.pid(), &["--lazy-pages"]);
    case.finish(&mut restored);
    let (exit, report) = daemon.wait();
    if exit != Exit::Code(0) || !report.contains("\"processes\": 1") || report.contains("\"bytes\": 0,") {
        case.fail(&format!("lazy-pages ended with {exit:?}, stdout: {report}"));
    }
}

#[test]
fn a_lazy_pages_daemon_killed_mid_restore_takes_the_tree_with_it() {
    if let Some(reason) = no_userfaultfd() {
        return skip(&reason);
    }
    let case = Case::new("lazy_killed", workload!("mem_big").arg("64"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    // The daemon serves nothing and stops itself once the restore is done; it is killed there.
    let daemon = Daemon::start(&case, &images, &[("STASIS_FAULT", "lazy-pages-stop-after-restore")]);
    let mut restored = case.restore_ok(&images, run.pid(), &["--lazy-pages"]);
    let pid = daemon.child.id() as i32;
    let deadline = Instant::now() + STASIS_TIMEOUT;
    while proc_state(pid).is_none_or(|(s, _)| s != 'T') {
        if Instant::now() > deadline {
            case.fail("lazy-pages never stopped after the restore");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Woken, the heap check faults on pages that never come.
    let _ = restored.signal(libc::SIGUSR1);
    raw::kill(pid, libc::SIGKILL).expect("kill lazy-pages");
    drop(daemon);
    match restored.wait_exit(EXIT_TIMEOUT) {
        Ok(Exit::Signal(libc::SIGKILL)) => {}
        other => case.fail(&format!("the restored process ended with {other:?}, expected SIGKILL")),
    }
    case.expect_no_process_left(run.pid());
}

#[test]
fn fork_mremap_munmap_and_madvise_of_a_lazily_restored_process() {
    if let Some(reason) = no_userfaultfd() {
        return skip(&reason);
    }
    let case = Case::new("lazy_events", workload!("lazy_events").arg("16"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    // Only faults bring pages in, so every event meets pages still missing.
    let _daemon = Daemon::start(&case, &images, &[("STASIS_FAULT", "lazy-pages-on-demand-only")]);
    let mut restored = case.restore_ok(&images, run.pid(), &["--lazy-pages"]);
    case.finish(&mut restored);
}

#[test]
fn a_lazy_restore_without_a_daemon_fails_naming_it() {
    let case = Case::new("lazy_no_daemon", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &["--lazy-pages"], &[]);
    case.expect_failed(&r, "restore --lazy-pages without a daemon", &[&["lazy-pages.socket"], &["stasis lazy-pages"]]);
    case.expect_no_process_left(run.pid());
}

/// A childless process with AIO contexts restored lazily: the rings are made again before the
/// daemon serves the pages, and the process finds every pending event.
#[test]
fn aio_contexts_of_a_process_restored_lazily() {
    if let Some(reason) = no_userfaultfd() {
        return skip(&reason);
    }
    lazy_round_trip(&Case::new("lazy_aio", workload!("aio").arg("rings-alone")));
}

/// Dump `case`'s workload, restore it lazily from a daemon and check its PASS and the daemon's
/// exit; the daemon's report, or None if the workload skipped.
fn lazy_round_trip(case: &Case) -> Option<String> {
    let mut run = case.start()?;
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut daemon = Daemon::start(case, &images, &[]);
    let mut restored = case.restore_ok(&images, run.pid(), &["--lazy-pages"]);
    case.finish(&mut restored);
    let (exit, report) = daemon.wait();
    if exit != Exit::Code(0) {
        case.fail(&format!("lazy-pages ended with {exit:?}, stdout: {report}"));
    }
    Some(report)
}
