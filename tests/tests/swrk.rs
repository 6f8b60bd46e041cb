//! CRIU's RPC (`stasis swrk FD`), driven as runc and go-criu drive `criu swrk`: VERSION, CHECK,
//! FEATURE_CHECK, a DUMP of a real workload and its RESTORE as a sibling (a child of the caller),
//! the NOTIFY round trips in CRIU's order, refusals that leave the workload untouched, malformed
//! requests, the `criu` name through a symlink, and a PRE_DUMP then an incremental DUMP.

use stasis_rpc::{stats, CriuFeatures, CriuOpts, CriuReqType};
use stasis_tests::harness::{request, Case, Stasis, SwrkClient, TestDir};
use stasis_tests::raw::{self, Exit};
use stasis_tests::workload;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

/// Options of a request on the image directory `images` (opened by the caller: `dir_fd`).
fn opts_for(dir_fd: &File) -> CriuOpts {
    CriuOpts { images_dir_fd: dir_fd.as_raw_fd(), log_level: Some(4), ..Default::default() }
}

fn open_dir(case: &Case, label: &str) -> (std::path::PathBuf, File) {
    let images = case.images(label);
    std::fs::create_dir_all(&images).expect("create image dir");
    let fd = File::open(&images).expect("open image dir");
    (images, fd)
}

#[test]
fn version_check_and_feature_check() {
    let dir = TestDir::new("swrk_version");
    let c = SwrkClient::start_stasis(&dir);
    let mut req = request(CriuReqType::Version, None);
    req.keep_open = Some(true);
    let v = c.call(&req);
    assert!(v.success, "VERSION failed: {:?}", v.cr_errmsg);
    let version = v.version.expect("a criu_version");
    assert_eq!((version.major_number, version.minor_number), (4, 2));
    let mut check = request(CriuReqType::Check, None);
    check.keep_open = Some(true);
    let r = c.call(&check);
    assert!(r.success, "CHECK failed: {:?}", r.cr_errmsg);
    let mut fc = request(CriuReqType::FeatureCheck, None);
    fc.features = Some(CriuFeatures { mem_track: Some(true), lazy_pages: Some(true), pidfd_store: None });
    let r = c.call(&fc);
    assert!(r.success, "FEATURE_CHECK failed: {:?}", r.cr_errmsg);
    let f = r.features.expect("features");
    // Write tracking is there where the kernel has asynchronous userfaultfd write-protect.
    let tracks = Stasis::locate().command().args(["check", "--feature", "uffd-wp-async"]).output().expect("check");
    assert_eq!(
        (f.mem_track, f.lazy_pages, f.pidfd_store),
        (Some(tracks.status.success()), Some(tracks.status.success()), None)
    );
    assert_eq!(c.finish(), Exit::Code(0));
}

#[test]
fn dump_and_restore_as_sibling_with_notifications() {
    let case = Case::new("swrk_dump_restore", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = case.settled_snapshot(pid);
    let (images, dir_fd) = open_dir(&case, "images");
    let mut opts = opts_for(&dir_fd);
    opts.pid = Some(pid);
    opts.log_file = Some("dump.log".into());
    opts.notify_scripts = Some(true);
    case.dir.watch_log(&images.join("dump.log"));
    let c = SwrkClient::start_stasis(&case.dir);
    let mut seen = Vec::new();
    let r = c.call_notified(&request(CriuReqType::Dump, Some(opts.clone())), &mut seen, |_| true);
    assert!(r.success, "DUMP failed: {:?}", r.cr_errmsg);
    assert_eq!(seen, ["pre-dump", "network-lock", "post-dump"]);
    assert_eq!(c.finish(), Exit::Code(0));
    case.reap_dumped(&mut run);
    let dump_stats = stats::parse_file(&std::fs::read(images.join("stats-dump")).expect("stats-dump"));
    assert!(dump_stats.expect("stats-dump parses").dump.is_some_and(|d| d.pages_written > 0));

    let (status_r, status_w) = raw::unix_pair(libc::SOCK_STREAM).expect("status socketpair");
    opts.pid = None;
    opts.log_file = Some("restore.log".into());
    opts.rst_sibling = Some(true);
    opts.status_fd = Some(status_w.as_raw_fd());
    // The log and stats-restore go to the work directory, as CRIU puts them.
    let (work, work_fd) = open_dir(&case, "swrk-work");
    opts.work_dir_fd = Some(work_fd.as_raw_fd());
    case.dir.watch_log(&work.join("restore.log"));
    let c = SwrkClient::start_stasis(&case.dir);
    let mut seen = Vec::new();
    let r = c.call_notified(&request(CriuReqType::Restore, Some(opts)), &mut seen, |_| true);
    assert!(r.success, "RESTORE failed: {:?}", r.cr_errmsg);
    assert_eq!(r.restore.map(|r| r.pid), Some(pid));
    let want = ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "network-unlock"];
    assert_eq!(seen, want);
    assert_eq!(c.finish(), Exit::Code(0));
    let restore_stats = stats::parse_file(&std::fs::read(work.join("stats-restore")).expect("stats-restore"));
    assert!(restore_stats.expect("stats-restore parses").restore.is_some());
    assert!(work.join("restore.log").exists(), "no restore.log in the work directory");
    drop(status_w);
    assert!(raw::poll_readable(status_r.as_fd(), 10_000).unwrap_or(false), "nothing on status_fd");
    assert_eq!(raw::recv_msg(status_r.as_fd(), 8, 0).map(|m| m.data).ok(), Some(vec![0u8]));
    // A sibling of swrk: our child, which we reap.
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()))
    });
    assert_eq!(ppid, Some(std::process::id()), "the restored root is not a child of the swrk caller");
    let mut restored = stasis_tests::harness::Running::adopt(pid, "basic", case.log_of_first_run(), true);
    case.compare(&before, pid);
    case.finish(&mut restored);
}

#[test]
fn refused_notification_fails_the_dump_and_leaves_the_workload_running() {
    let case = Case::new("swrk_notify_refused", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let (images, dir_fd) = open_dir(&case, "images");
    let mut opts = opts_for(&dir_fd);
    opts.pid = Some(run.pid());
    opts.notify_scripts = Some(true);
    let c = SwrkClient::start_stasis(&case.dir);
    let mut seen = Vec::new();
    let r = c.call_notified(&request(CriuReqType::Dump, Some(opts)), &mut seen, |s| s != "post-dump");
    assert!(!r.success, "the dump succeeded though post-dump was refused");
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("post-dump"), "the error does not name post-dump: {msg}");
    assert_eq!(seen, ["pre-dump", "network-lock", "post-dump"]);
    assert_eq!(c.finish(), Exit::Code(0));
    case.expect_untouched(&run);
    assert!(!images.join("inventory.img").exists(), "a failed dump left an inventory");
    run.signal(workload::WAKE).expect("wake");
    case.finish(&mut run);
}

#[test]
fn leave_running_dump_notifies_network_unlock_once_the_tree_runs() {
    let case = Case::new("swrk_leave_running", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let (images, dir_fd) = open_dir(&case, "images");
    let mut opts = opts_for(&dir_fd);
    opts.pid = Some(run.pid());
    opts.leave_running = Some(true);
    opts.notify_scripts = Some(true);
    let c = SwrkClient::start_stasis(&case.dir);
    let mut seen = Vec::new();
    let r = c.call_notified(&request(CriuReqType::Dump, Some(opts)), &mut seen, |_| true);
    assert!(r.success, "DUMP failed: {:?}", r.cr_errmsg);
    assert_eq!(seen, ["pre-dump", "network-lock", "post-dump", "network-unlock"]);
    assert_eq!(c.finish(), Exit::Code(0));
    case.expect_untouched(&run);
    assert!(images.join("inventory.img").exists(), "no image after a successful dump");
    run.signal(workload::WAKE).expect("wake");
    case.finish(&mut run);
}

#[test]
fn unsupported_option_is_refused_by_name_and_the_workload_keeps_running() {
    let case = Case::new("swrk_unsupported", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let (images, dir_fd) = open_dir(&case, "images");
    let mut opts = opts_for(&dir_fd);
    opts.pid = Some(run.pid());
    opts.tls = Some(true);
    let c = SwrkClient::start_stasis(&case.dir);
    let r = c.call(&request(CriuReqType::Dump, Some(opts.clone())));
    assert!(!r.success);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("--tls"), "the refusal does not name the option: {msg}");
    assert_eq!(c.finish(), Exit::Code(0));
    case.expect_untouched(&run);
    assert!(std::fs::read_dir(&images).map(|d| d.count()).unwrap_or(0) == 0, "the refused dump wrote files");
    let c = SwrkClient::start_stasis(&case.dir);
    let r = c.call(&request(CriuReqType::PreDump, Some(opts)));
    assert!(!r.success && r.cr_errmsg.unwrap_or_default().contains("--tls"));
    assert_eq!(c.finish(), Exit::Code(0));
    case.expect_untouched(&run);
    assert!(std::fs::read_dir(&images).map(|d| d.count()).unwrap_or(0) == 0, "the refused pre-dump wrote files");
    run.signal(workload::WAKE).expect("wake");
    case.finish(&mut run);
}

#[test]
fn malformed_requests_get_a_clear_error() {
    let dir = TestDir::new("swrk_malformed");
    let c = SwrkClient::start_stasis(&dir);
    c.send_bytes(&[0xff, 0xff, 0xff]);
    let r = c.recv();
    assert!(!r.success);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("malformed criu_req"), "unclear error: {msg}");
    assert_eq!(c.finish(), Exit::Code(1));
    let c = SwrkClient::start_stasis(&dir);
    let r = c.call(&request(CriuReqType::Dump, None));
    assert!(!r.success && r.cr_errmsg.unwrap_or_default().contains("criu_opts"));
    assert_eq!(c.finish(), Exit::Code(0));
    let c = SwrkClient::start_stasis(&dir);
    let bad_fd = CriuOpts { images_dir_fd: 1_000_000, pid: Some(1), ..Default::default() };
    let r = c.call(&request(CriuReqType::Dump, Some(bad_fd)));
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(!r.success && msg.contains("images_dir_fd: fd 1000000 of the caller"), "unclear error: {msg}");
    assert_eq!(c.finish(), Exit::Code(0));
    let c = SwrkClient::start_stasis(&dir);
    let mut unknown = request(CriuReqType::Empty, None);
    unknown.r#type = 77;
    let r = c.call(&unknown);
    assert!(!r.success && r.cr_errmsg.unwrap_or_default().contains("unknown request type 77"));
    assert_eq!(c.finish(), Exit::Code(0));
}

#[test]
fn installed_as_criu() {
    let dir = TestDir::new("swrk_criu_name");
    let criu = dir.join("criu");
    std::os::unix::fs::symlink(Stasis::locate().bin(), &criu).expect("symlink criu");
    let out = std::process::Command::new(&criu).arg("--version").output().expect("criu --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("Version: 4.2\n"), "criu --version printed {text:?}");
    let c = SwrkClient::start(&dir, &criu);
    let v = c.call(&request(CriuReqType::Version, None));
    assert!(v.success && v.version.is_some_and(|v| v.major_number == 4));
    assert_eq!(c.finish(), Exit::Code(0));
}

#[test]
fn cli_action_scripts_run_at_the_same_points() {
    let case = Case::new("cli_action_script", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let trace = case.dir.join("actions.txt");
    let script = format!("echo \"$CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID\" >> {}", trace.display());
    // A script that fails at post-dump fails the dump there, the workload untouched.
    let refuse = format!("{script}; [ \"$CRTOOLS_SCRIPT_ACTION\" != post-dump ]");
    let images = case.images("refused");
    let r = case.dump(&run, &images, &["--action-script", &refuse], &[]);
    assert!(!r.success() && r.stderr.contains("post-dump"), "{}", r.describe());
    case.expect_untouched(&run);
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--action-script", &script]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, pid, &["--action-script", &script]);
    case.finish(&mut restored);
    let text = std::fs::read_to_string(&trace).expect("the scripts' trace");
    let seen: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap_or_default()).collect();
    let want = [
        ["pre-dump", "network-lock", "post-dump"].as_slice(),
        &["pre-dump", "network-lock", "post-dump"],
        &["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "network-unlock"],
    ]
    .concat();
    assert_eq!(seen, want);
    assert!(text.lines().all(|l| l.ends_with(&format!(" {pid}"))), "CRTOOLS_INIT_PID is not the root: {text}");
}

/// runc's `checkpoint --pre-dump`, then `checkpoint --parent-path`: PRE_DUMP, then a DUMP with
/// `parent_img` and `track_mem`, which saves only the pages written since; the image restores.
#[test]
fn pre_dump_then_an_incremental_dump() {
    let case = Case::new("swrk_pre_dump", workload!("mem_rounds").arg("simple"));
    let tracks = Stasis::locate().command().args(["check", "--feature", "uffd-wp-async"]).output().expect("check");
    if !tracks.status.success() {
        return stasis_tests::harness::skip("no asynchronous userfaultfd write-protect on this kernel");
    }
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let (pre, pre_fd) = open_dir(&case, "pre");
    let mut opts = opts_for(&pre_fd);
    opts.pid = Some(pid);
    let c = SwrkClient::start_stasis(&case.dir);
    let r = c.call(&request(CriuReqType::PreDump, Some(opts)));
    assert!(r.success, "PRE_DUMP failed: {:?}", r.cr_errmsg);
    assert_eq!(c.finish(), Exit::Code(0));
    case.expect_untouched(&run);
    let pre_stats = stats::parse_file(&std::fs::read(pre.join("stats-dump")).expect("stats-dump")).expect("parses");
    let full = pre_stats.dump.expect("dump stats").pages_written;
    run.signal(libc::SIGUSR2).expect("SIGUSR2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !run.log_text().lines().any(|l| l == "ROUND 1") {
        assert!(std::time::Instant::now() < deadline, "no ROUND 1: {}", run.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (last, last_fd) = open_dir(&case, "last");
    let mut opts = opts_for(&last_fd);
    opts.pid = Some(pid);
    opts.parent_img = Some("../pre".into());
    opts.track_mem = Some(true);
    let c = SwrkClient::start_stasis(&case.dir);
    let r = c.call(&request(CriuReqType::Dump, Some(opts)));
    assert!(r.success, "DUMP failed: {:?}", r.cr_errmsg);
    assert_eq!(c.finish(), Exit::Code(0));
    case.reap_dumped(&mut run);
    let stats = stats::parse_file(&std::fs::read(last.join("stats-dump")).expect("stats-dump")).expect("parses");
    let written = stats.dump.expect("dump stats").pages_written;
    assert!(written * 3 < full, "the incremental dump wrote {written} pages after a pre-dump of {full}");
    assert_eq!(std::fs::read_link(last.join("parent")).ok(), Some("../pre".into()));
    let mut restored = case.restore_ok(&last, pid, &[]);
    case.finish(&mut restored);
}
