//! Incremental dumps without soft-dirty: `pre-dump` saves the memory while the tree runs on and
//! tracks its writes (userfaultfd write-protect in async mode, read back by PAGEMAP_SCAN); the
//! workload writes known patterns between rounds; `dump --prev-images-dir ../PRE --track-mem`
//! saves only what was written since, and restore follows the chain of `parent` links. The page
//! counts come from `--json` (never from timing). The tracking holder left by a pre-dump must be
//! gone once the next round took the tracking, also when that round failed.

use stasis_tests::harness::{number_deleted, skip, tree_pids, Case, Running, Snapshot};
use stasis_tests::raw;
use stasis_tests::workload;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The unsigned number after `"name": ` in a JSON report.
fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = json.find(&key).unwrap_or_else(|| panic!("no {name} in {json}")) + key.len();
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a number")
}

/// What a pre-dump or dump reported.
struct Report {
    pages: u64,
    in_parent: u64,
    tracked: u64,
    holder: i32,
    /// Pages punched out of parent images (`--auto-dedup`).
    deduped: u64,
}

fn report(json: &str) -> Report {
    Report {
        pages: field(json, "pages"),
        in_parent: field(json, "pages_in_parent"),
        tracked: field(json, "tracked_processes"),
        holder: field(json, "holder_pid") as i32,
        deduped: field(json, "pages_deduped"),
    }
}

/// Skip unless this kernel has asynchronous userfaultfd write-protect.
fn kernel_tracks(case: &Case) -> bool {
    let out = case.stasis().command().args(["check", "--feature", "uffd-wp-async"]).output().expect("run stasis check");
    if !out.status.success() {
        skip(&format!("no UFFD_FEATURE_WP_ASYNC here: {}", String::from_utf8_lossy(&out.stdout)));
        return false;
    }
    true
}

/// `stasis pre-dump -t PID -D images [--prev-images-dir prev] --json`, which must succeed.
fn pre_dump(case: &Case, run: &Running, images: &Path, prev: Option<&str>) -> Report {
    match prev {
        Some(p) => pre_dump_with(case, run, images, &["--prev-images-dir", p]),
        None => pre_dump_with(case, run, images, &[]),
    }
}

/// `stasis pre-dump -t PID -D images --json <extra>`, which must succeed.
fn pre_dump_with(case: &Case, run: &Running, images: &Path, extra: &[&str]) -> Report {
    let log = case.dir.unique("pre-dump", "log");
    let mut cmd = case.stasis().command();
    cmd.args(["pre-dump", "-t", &run.pid().to_string(), "--json", "-vv", "-D"]).arg(images).arg("-o").arg(&log);
    cmd.args(extra);
    case.dir.watch_log(&log);
    let out = cmd.output().expect("run stasis pre-dump");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        case.fail(&format!(
            "pre-dump into {}: {}\n{stdout}\n{}",
            images.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    case.expect_untouched(run);
    report(&stdout)
}

/// Round `k` of the workload's writes (SIGUSR2), waited for by its `ROUND k` line.
fn round(case: &Case, run: &Running, k: u32) {
    run.signal(libc::SIGUSR2).unwrap_or_else(|e| case.fail(&format!("SIGUSR2: {e}")));
    let want = format!("ROUND {k}");
    let deadline = Instant::now() + WAIT;
    while !run.log_text().lines().any(|l| l == want) {
        if Instant::now() > deadline {
            case.fail(&format!("no {want} from the workload within {WAIT:?}:\n{}", run.log_text()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last dump, incremental on `prev`; its report.
fn dump_on(case: &Case, run: &Running, images: &Path, prev: &str, env: &[(&str, &str)]) -> (bool, Report, String) {
    let r = case.dump(run, images, &["--prev-images-dir", prev, "--track-mem", "--json"], env);
    let ok = r.success();
    let rep = if ok { report(&r.stdout) } else { Report { pages: 0, in_parent: 0, tracked: 0, holder: 0, deduped: 0 } };
    (ok, rep, r.describe())
}

/// The holder process `pid` (our child: this test process is the subreaper) ends and is reaped.
fn holder_gone(case: &Case, pid: i32) {
    let deadline = Instant::now() + WAIT;
    loop {
        match raw::try_waitpid(pid) {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => case.fail(&format!("the tracking holder pid {pid} is still there")),
            // Not our child (reparented elsewhere): it is gone once its /proc entry is.
            Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => return,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => case.fail(&format!("the tracking holder pid {pid}: {e}")),
        }
    }
}

/// A much smaller second round: at most a third of the full one's pages, at least half of them in
/// the parent.
fn expect_fewer(case: &Case, what: &str, full: &Report, incremental: &Report) {
    eprintln!("{what}: {} pages ({} in parent) after a full {}", incremental.pages, incremental.in_parent, full.pages);
    // Huge pages may make a write count for 512 pages: a third leaves room for that.
    if incremental.pages * 3 > full.pages || incremental.in_parent < full.pages / 2 || incremental.tracked == 0 {
        case.fail(&format!(
            "{what}: {} pages written ({} in parent, {} processes tracked) after a full {} pages",
            incremental.pages, incremental.in_parent, incremental.tracked, full.pages
        ));
    }
}

/// Kill-after-dump, restore, and the workload's own verdict.
fn restore_and_verify(case: &Case, run: &mut Running, images: &Path) {
    let pid = run.pid();
    case.reap_dumped(run);
    let mut restored = case.restore_ok(images, pid, &[]);
    case.finish(&mut restored);
}

fn show_ok(case: &Case, images: &Path, needle: &str) {
    let out = case.stasis().command().arg("show").arg(images).output().expect("run stasis show");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(needle) {
        case.fail(&format!("stasis show {}: {}, no {needle:?} in:\n{text}", images.display(), out.status));
    }
}

#[test]
fn pre_dump_then_a_dump_of_only_the_written_pages() {
    let case = Case::new("incr_simple", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pre = case.images("pre");
    let full = pre_dump(&case, &run, &pre, None);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    expect_fewer(&case, "the dump after a pre-dump", &full, &inc);
    holder_gone(&case, full.holder);
    let link = std::fs::read_link(last.join("parent")).unwrap_or_else(|e| case.fail(&format!("parent link: {e}")));
    if link != Path::new("../pre") {
        case.fail(&format!("the parent link holds {}", link.display()));
    }
    show_ok(&case, &last, "more pages in the parent image");
    show_ok(&case, &pre, "pre-dump      yes");
    let json = case.stasis().command().args(["show", "--json"]).arg(&last).output().expect("run stasis show --json");
    let json = String::from_utf8_lossy(&json.stdout);
    if field(&json, "in_parent_pages") != inc.in_parent {
        case.fail(&format!("stasis show --json does not say {} pages in parent:\n{json}", inc.in_parent));
    }
    // A pre-dump alone is not an image to restore.
    let (r, _) = case.stasis().restore_detached(&case.dir, &pre, &[], &[]);
    if r.success() || !r.stderr.contains("pre-dump") {
        case.fail(&format!("restore of a pre-dump was not refused by name:\n{}", r.describe()));
    }
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn a_chain_of_three_with_areas_unmapped_mapped_and_grown_between_rounds() {
    let case = Case::new("incr_chain", workload!("mem_rounds").arg("layout"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let full = pre_dump(&case, &run, &case.images("pre1"), None);
    round(&case, &run, 1);
    let second = pre_dump(&case, &run, &case.images("pre2"), Some("../pre1"));
    expect_fewer(&case, "the second pre-dump", &full, &second);
    holder_gone(&case, full.holder);
    round(&case, &run, 2);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../pre2", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    expect_fewer(&case, "the dump after two pre-dumps", &full, &inc);
    holder_gone(&case, second.holder);
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn a_tree_with_a_child_forked_between_rounds() {
    let case = Case::new("incr_tree", workload!("mem_rounds").arg("tree"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let full = pre_dump(&case, &run, &case.images("pre"), None);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    expect_fewer(&case, "the dump of the tree", &full, &inc);
    if inc.tracked != 2 {
        case.fail(&format!("{} processes tracked, expected the root and its first child", inc.tracked));
    }
    holder_gone(&case, full.holder);
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn a_failed_incremental_dump_leaves_the_tree_running_and_no_holder() {
    let case = Case::new("incr_failed", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pre = case.images("pre");
    let full = pre_dump(&case, &run, &pre, None);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, _, why) = dump_on(&case, &run, &last, "../pre", &[("STASIS_FAULT", "dump-fail-before-pages")]);
    if ok {
        case.fail(&format!("the dump with a fault injected succeeded:\n{why}"));
    }
    case.expect_untouched(&run);
    holder_gone(&case, full.holder);
    if pre.join("track.sock").exists() {
        case.fail("the holder's socket is left in the pre-dump directory");
    }
    let names: Vec<_> =
        std::fs::read_dir(&last).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    if !names.is_empty() {
        case.fail(&format!("the failed dump left {names:?}"));
    }
    // The tracking ended with the holder: no area of the workload is registered any more.
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", run.pid())).unwrap_or_default();
    if smaps.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw")) {
        case.fail("areas of the workload are still write-protect registered");
    }
    round(&case, &run, 2);
    case.finish(&mut run);
}

#[test]
fn a_failed_pre_dump_round_leaves_the_tree_running_and_no_holder() {
    let case = Case::new("incr_failed_pre", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let full = pre_dump(&case, &run, &case.images("pre1"), None);
    round(&case, &run, 1);
    let pre2 = case.images("pre2");
    let log = case.dir.unique("pre-dump", "log");
    let out = case
        .stasis()
        .command()
        .args(["pre-dump", "-t", &run.pid().to_string(), "--prev-images-dir", "../pre1", "-D"])
        .arg(&pre2)
        .arg("-o")
        .arg(&log)
        .env("STASIS_FAULT", "pre-dump-fail-after-resume")
        .output()
        .expect("run stasis pre-dump");
    if out.status.success() {
        case.fail("the pre-dump with a fault injected succeeded");
    }
    case.expect_untouched(&run);
    holder_gone(&case, full.holder);
    let names: Vec<_> =
        std::fs::read_dir(&pre2).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    if !names.is_empty() {
        case.fail(&format!("the failed pre-dump left {names:?}"));
    }
    round(&case, &run, 2);
    case.finish(&mut run);
}

#[test]
fn a_dump_left_running_with_track_mem_is_the_parent_of_the_next() {
    let case = Case::new("incr_leave_running", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let first = case.images("first");
    let r = case.dump(&run, &first, &["-R", "--track-mem", "--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump -R --track-mem failed:\n{}", r.describe()));
    }
    let full = report(&r.stdout);
    case.expect_untouched(&run);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../first", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    expect_fewer(&case, "the dump after a dump -R --track-mem", &full, &inc);
    holder_gone(&case, full.holder);
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn a_second_thread_writing_between_rounds() {
    let case = Case::new("incr_threads", workload!("mem_rounds").arg("threads"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let full = pre_dump(&case, &run, &case.images("pre"), None);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    expect_fewer(&case, "the dump of two threads", &full, &inc);
    holder_gone(&case, full.holder);
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn a_process_with_its_own_userfaultfd_is_not_tracked_and_dumped_in_full() {
    let case = Case::new("incr_own_uffd", workload!("mem_rounds").arg("own-uffd"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let log = case.dir.unique("pre-dump", "log");
    let out = case
        .stasis()
        .command()
        .args(["pre-dump", "-t", &run.pid().to_string(), "--json", "-D"])
        .arg(case.images("pre"))
        .arg("-o")
        .arg(&log)
        .output()
        .expect("run stasis pre-dump");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !out.status.success() || !text.contains("write tracking refused: the process uses userfaultfd itself") {
        case.fail(&format!("pre-dump: {}, log:\n{text}", out.status));
    }
    let full = report(&String::from_utf8_lossy(&out.stdout));
    holder_gone(&case, full.holder);
    // Round 1 closes the workload's userfaultfd, so that its fds can be dumped.
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(&case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("the full dump failed:\n{why}"));
    }
    if inc.in_parent != 0 || inc.tracked != 0 || inc.pages < full.pages / 2 {
        case.fail(&format!(
            "{} pages saved, {} in parent, after a pre-dump of {}",
            inc.pages, inc.in_parent, full.pages
        ));
    }
    restore_and_verify(&case, &mut run, &last);
}

/// A tree through pre-dump, dump on it and restore, compared process by process (the inodes of
/// deleted objects numbered by appearance, so that shared memory must be one object again).
fn tree_round_trip(case: &Case, processes: usize) {
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != processes {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected {processes}", pids.len()));
    }
    let numbered = |mut snaps: Vec<Snapshot>| {
        number_deleted(&mut snaps);
        snaps
    };
    let before = numbered(pids.iter().map(|&p| case.settled_snapshot(p)).collect());
    let full = pre_dump(case, &run, &case.images("pre"), None);
    let last = case.images("last");
    let (ok, inc, why) = dump_on(case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    if inc.tracked != processes as u64 || inc.in_parent == 0 {
        case.fail(&format!("{} of {processes} processes tracked, {} pages in parent", inc.tracked, inc.in_parent));
    }
    holder_gone(case, full.holder);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&last, root, &[]);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = numbered(pids.iter().map(|&p| case.snapshot(p)).collect());
        let diffs: Vec<String> = (before.iter().zip(&now).zip(&pids))
            .filter_map(|((b, a), pid)| b.diff(a).map(|d| format!("state of pid {pid} differs after restore:\n{d}")))
            .collect();
        if diffs.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            case.fail(&diffs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    case.finish(&mut restored);
}

#[test]
fn a_prefork_server_of_nine_processes_through_an_incremental_dump() {
    let case = Case::new("incr_prefork", workload!("tree_prefork"));
    if kernel_tracks(&case) {
        tree_round_trip(&case, 9);
    }
}

#[test]
fn shared_anonymous_memory_of_a_tree_through_an_incremental_dump() {
    let case = Case::new("incr_tree_shm", workload!("tree_shm"));
    if kernel_tracks(&case) {
        tree_round_trip(&case, 5);
    }
}

#[test]
fn a_missing_replaced_or_damaged_parent_is_refused_by_name() {
    let case = Case::new("incr_bad_parent", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let pre = case.images("pre");
    let full = pre_dump(&case, &run, &pre, None);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, _, why) = dump_on(&case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    holder_gone(&case, full.holder);
    case.reap_dumped(&mut run);
    let away = case.images("away");
    std::fs::rename(&pre, &away).unwrap_or_else(|e| case.fail(&format!("rename: {e}")));
    let (r, _) = case.stasis().restore_detached(&case.dir, &last, &[], &[]);
    case.expect_failed(&r, "restore without its parent", &[&["parent"]]);
    case.expect_no_process_left(pid);
    // Another image where the parent was: refused as replaced.
    let other = case.start().unwrap_or_else(|| case.fail("second start"));
    let again = pre_dump(&case, &other, &pre, None);
    let mut other = other;
    other.kill_and_reap();
    holder_gone(&case, again.holder);
    let (r, _) = case.stasis().restore_detached(&case.dir, &last, &[], &[]);
    case.expect_failed(&r, "restore with a replaced parent", &[&["replaced"]]);
    case.expect_no_process_left(pid);
    std::fs::remove_dir_all(&pre).unwrap_or_else(|e| case.fail(&format!("remove: {e}")));
    std::fs::rename(&away, &pre).unwrap_or_else(|e| case.fail(&format!("rename back: {e}")));
    // A damaged page of the parent (the restore checks the chunks it reads from it while the tasks
    // are built): refused naming the parent's page file, nothing left.
    let pages = pre.join(format!("pages-{pid}.img"));
    let kept = std::fs::read(&pages).unwrap_or_else(|e| case.fail(&format!("read {}: {e}", pages.display())));
    let mut damaged = kept.clone();
    damaged.iter_mut().skip(4096).step_by(4096).for_each(|b| *b ^= 0x5a);
    std::fs::write(&pages, &damaged).unwrap_or_else(|e| case.fail(&format!("damage {}: {e}", pages.display())));
    let (r, _) = case.stasis().restore_detached(&case.dir, &last, &[], &[]);
    case.expect_failed(&r, "restore with a damaged parent page", &[&["checksum"], &["parent/pages-"]]);
    case.expect_no_process_left(pid);
    std::fs::write(&pages, &kept).unwrap_or_else(|e| case.fail(&format!("repair {}: {e}", pages.display())));
    let mut restored = case.restore_ok(&last, pid, &[]);
    case.finish(&mut restored);
}

/// No area of `pid` is write-protect registered (no tracking left).
fn untracked(case: &Case, pid: i32, when: &str) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    if smaps.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw")) {
        case.fail(&format!("{when}: areas of pid {pid} are still write-protect registered"));
    }
}

/// A plain dump (no --prev-images-dir) of a tree a pre-dump tracks.
fn plain_dump_of_a_tracked_tree(case: &Case, run: &Running, extra: &[&str]) -> (Report, Report) {
    let pre = case.images("pre");
    let full = pre_dump(case, run, &pre, None);
    round(case, run, 1);
    let last = case.images("last");
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = case.dump(run, &last, &args, &[]);
    if !r.success() {
        case.fail(&format!("a plain dump of a tracked tree failed:\n{}", r.describe()));
    }
    let dumped = report(&r.stdout);
    if dumped.in_parent != 0 || dumped.tracked != 0 || dumped.pages < full.pages / 2 || last.join("parent").exists() {
        case.fail(&format!(
            "the plain dump saved {} pages ({} in parent, {} processes tracked) after a pre-dump of {}",
            dumped.pages, dumped.in_parent, dumped.tracked, full.pages
        ));
    }
    holder_gone(case, full.holder);
    if pre.join("track.sock").exists() {
        case.fail("the holder's socket is left in the pre-dump directory");
    }
    (full, dumped)
}

#[test]
fn a_plain_dump_of_a_tracked_tree_is_a_full_dump_and_ends_the_tracking() {
    let case = Case::new("incr_plain_dump", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    plain_dump_of_a_tracked_tree(&case, &run, &[]);
    let pid = run.pid();
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&case.images("last"), pid, &[]);
    untracked(&case, pid, "after the restore");
    case.finish(&mut restored);
}

#[test]
fn a_plain_dump_left_running_of_a_tracked_tree_leaves_no_tracking() {
    let case = Case::new("incr_plain_dump_r", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    plain_dump_of_a_tracked_tree(&case, &run, &["-R"]);
    case.expect_untouched(&run);
    untracked(&case, run.pid(), "after dump -R");
    round(&case, &run, 2);
    case.finish(&mut run);
}

/// The 512-byte blocks allocated to the page file of `pid` in `images`.
fn page_blocks(case: &Case, images: &Path, pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let path = images.join(format!("pages-{pid}.img"));
    std::fs::metadata(&path).map(|m| m.blocks()).unwrap_or_else(|e| case.fail(&format!("{}: {e}", path.display())))
}

/// The parent's page file gave back the blocks of the `deduped` pages (8 blocks each; a little
/// slack for the filesystem's extent blocks).
fn expect_shrunk(case: &Case, what: &str, before: u64, after: u64, deduped: u64) {
    eprintln!("{what}: {before} blocks before, {after} after, {deduped} pages deduplicated");
    if deduped == 0 || after + deduped * 8 > before + 64 {
        case.fail(&format!("{what}: {before} blocks before the dedup, {after} after, for {deduped} pages punched"));
    }
}

#[test]
fn auto_dedup_punches_the_pages_a_newer_image_saved_out_of_its_parents() {
    let case = Case::new("incr_auto_dedup", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let pre1 = case.images("pre1");
    let first = pre_dump(&case, &run, &pre1, None);
    round(&case, &run, 1);
    let before1 = page_blocks(&case, &pre1, pid);
    let pre2 = case.images("pre2");
    let second = pre_dump_with(&case, &run, &pre2, &["--prev-images-dir", "../pre1", "--auto-dedup"]);
    holder_gone(&case, first.holder);
    round(&case, &run, 2);
    let after1 = page_blocks(&case, &pre1, pid);
    // The last dump punches out of pre2, and out of pre1 what pre2 left in it.
    let before2 = after1 + page_blocks(&case, &pre2, pid);
    let last = case.images("last");
    let r = case.dump(&run, &last, &["--prev-images-dir", "../pre2", "--track-mem", "--auto-dedup", "--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump --auto-dedup failed:\n{}", r.describe()));
    }
    holder_gone(&case, second.holder);
    let last_report = report(&r.stdout);
    let after2 = page_blocks(&case, &pre1, pid) + page_blocks(&case, &pre2, pid);
    expect_shrunk(&case, "pre1 after pre2 --auto-dedup", before1, after1, second.deduped);
    expect_shrunk(&case, "pre1 and pre2 after the last dump --auto-dedup", before2, after2, last_report.deduped);
    // Most of what a round rewrote was in the parent before.
    if second.deduped * 2 < second.pages || last_report.deduped * 2 < last_report.pages {
        case.fail(&format!(
            "pre2 saved {} pages and deduplicated {}; the last dump saved {} and deduplicated {}",
            second.pages, second.deduped, last_report.pages, last_report.deduped
        ));
    }
    show_ok(&case, &pre2, "punched");
    restore_and_verify(&case, &mut run, &last);
}

#[test]
fn dedup_of_a_chain_and_the_punched_parent_is_refused_by_name() {
    let case = Case::new("incr_dedup", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let first = case.images("first");
    let r = case.dump(&run, &first, &["-R", "--track-mem", "--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump -R --track-mem failed:\n{}", r.describe()));
    }
    let full = report(&r.stdout);
    round(&case, &run, 1);
    let last = case.images("last");
    let (ok, _, why) = dump_on(&case, &run, &last, "../first", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    holder_gone(&case, full.holder);
    let before = page_blocks(&case, &first, pid);
    let out = case.stasis().command().args(["dedup", "--json", "-D"]).arg(&last).output().expect("run stasis dedup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        case.fail(&format!("stasis dedup: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let deduped = field(&stdout, "pages");
    expect_shrunk(&case, "the parent after stasis dedup", before, page_blocks(&case, &first, pid), deduped);
    // A second dedup finds nothing more to punch.
    let again = case.stasis().command().args(["dedup", "--json", "-D"]).arg(&last).output().expect("run stasis dedup");
    if field(&String::from_utf8_lossy(&again.stdout), "pages") != 0 {
        case.fail("a second stasis dedup punched pages again");
    }
    case.reap_dumped(&mut run);
    // The parent, a complete image, lost pages to the newer one: its restore is refused by name.
    let (r, _) = case.stasis().restore_detached(&case.dir, &first, &[], &[]);
    case.expect_failed(&r, "restore of a deduplicated parent", &[&["punched"]]);
    case.expect_no_process_left(pid);
    let mut restored = case.restore_ok(&last, pid, &[]);
    case.finish(&mut restored);
}

#[test]
fn a_compressed_pre_dump_chain_is_restored() {
    let case = Case::new("incr_compressed", workload!("mem_rounds").arg("simple"));
    if !kernel_tracks(&case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let pre1 = case.images("pre1");
    let first = pre_dump_with(&case, &run, &pre1, &["--compress"]);
    round(&case, &run, 1);
    let pre2 = case.images("pre2");
    let second = pre_dump_with(&case, &run, &pre2, &["--prev-images-dir", "../pre1", "--compress"]);
    holder_gone(&case, first.holder);
    round(&case, &run, 2);
    let last = case.images("last");
    let r = case.dump(&run, &last, &["--prev-images-dir", "../pre2", "--track-mem", "--compress", "--json"], &[]);
    if !r.success() {
        case.fail(&format!("compressed incremental dump failed:\n{}", r.describe()));
    }
    expect_fewer(&case, "the compressed dump after two pre-dumps", &first, &report(&r.stdout));
    holder_gone(&case, second.holder);
    show_ok(&case, &pre1, "compressed (zstd");
    show_ok(&case, &last, "compressed (zstd");
    restore_and_verify(&case, &mut run, &last);
}

/// Sealed areas (`mseal`) in a parent and a child go through a pre-dump (write tracking armed on
/// them) and an incremental dump, and come back sealed with their bytes.
#[test]
fn sealed_areas_through_a_pre_dump_and_an_incremental_dump() {
    pre_dump_incremental_dump_restore(&Case::new("incr_sealed", workload!("mem_flags").arg("sealed")));
}

/// `case`'s workload through a pre-dump and an incremental dump on it, restored and verified.
fn pre_dump_incremental_dump_restore(case: &Case) {
    if !kernel_tracks(case) {
        return;
    }
    let Some(mut run) = case.start() else { return };
    let full = pre_dump(case, &run, &case.images("pre"), None);
    let last = case.images("last");
    let (ok, _, why) = dump_on(case, &run, &last, "../pre", &[]);
    if !ok {
        case.fail(&format!("incremental dump failed:\n{why}"));
    }
    holder_gone(case, full.holder);
    restore_and_verify(case, &mut run, &last);
}

/// AIO contexts in a parent and a child go through a pre-dump and an incremental dump: the rings
/// (never write-tracked, never saved as memory) come back with their pending events.
#[test]
fn aio_contexts_through_a_pre_dump_and_an_incremental_dump() {
    pre_dump_incremental_dump_restore(&Case::new("incr_aio", workload!("aio").arg("rings")));
}
