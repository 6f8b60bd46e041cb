//! Uprobes (`--allow-uprobes`): a process whose own uprobe was hit has a uprobes area; it is dumped
//! and restored only with the option, the area left out (the kernel maps it again), and the
//! restored process checks its probed function still runs and the probe still fires. Without the
//! option the dump and the restore are refused by name; a return probe whose function is running
//! is refused even with it. The workload registers its probe itself (tracefs) and removes it.

use stasis_tests::harness::Case;
use stasis_tests::workload;

const ALLOW: &str = "--allow-uprobes";
const TRACING: &str = "/sys/kernel/tracing";

/// Removes the workload's probe (`uprobes/stasis_PID`) if it is still registered when the test
/// ends: a workload that failed or was killed could not.
struct ProbeCleanup(i32);

impl Drop for ProbeCleanup {
    fn drop(&mut self) {
        let name = format!("stasis_{}", self.0);
        let events = std::fs::read_to_string(format!("{TRACING}/uprobe_events")).unwrap_or_default();
        if events.contains(&format!("uprobes/{name} ")) {
            let _ = std::fs::write(format!("{TRACING}/events/uprobes/{name}/enable"), "0");
            let remove = std::fs::OpenOptions::new().append(true).open(format!("{TRACING}/uprobe_events"));
            let _ =
                remove.and_then(|mut f| std::io::Write::write_all(&mut f, format!("-:uprobes/{name}\n").as_bytes()));
        }
    }
}

#[test]
fn a_process_with_a_uprobe_is_restored_with_allow_uprobes() {
    let case = Case::new("uprobe_entry", workload!("uprobed").arg("entry"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let _cleanup = ProbeCleanup(pid);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[ALLOW]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, pid, &[ALLOW]);
    case.finish(&mut restored);
}

#[test]
fn without_allow_uprobes_the_dump_and_the_restore_are_refused_by_name() {
    let case = Case::new("uprobe_refused", workload!("uprobed").arg("entry"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let _cleanup = ProbeCleanup(pid);
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump without --allow-uprobes", &[&["uprobes area"], &[ALLOW]]);
    case.expect_untouched(&run);
    case.dump_ok(&run, &images, &[ALLOW]);
    case.reap_dumped(&mut run);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore without --allow-uprobes", &[&["uprobes area"], &[ALLOW]]);
    case.expect_no_process_left(pid);
    let mut restored = case.restore_ok(&images, pid, &[ALLOW]);
    case.finish(&mut restored);
}

#[test]
fn a_running_return_probe_is_refused_by_name() {
    let case = Case::new("uprobe_return", workload!("uprobed").arg("return"));
    let Some(mut run) = case.start() else { return };
    let _cleanup = ProbeCleanup(run.pid());
    let r = case.dump(&run, &case.images("images"), &[ALLOW], &[]);
    case.expect_failed(&r, "dump with a return probe running", &[&["return probe"], &["uprobes area"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}
