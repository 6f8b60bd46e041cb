//! CRIU's command line end to end: an option whose feature is not built fails naming it before
//! anything is touched (the tree runs on, the image directory stays empty, a restore leaves no
//! process), CRIU's moot options and spellings are accepted by a real dump and restore, relative
//! `--log-file` and `--pidfile` are taken from `--work-dir`, `pre-dump --stream` is refused (and `restore --auto-dedup`), and `check
//! --feature` answers for one feature.

use stasis_tests::harness::{Case, Running};
use stasis_tests::workload;
use std::path::Path;
use std::process::Output;

/// The names in `dir` (none if it does not exist).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn stasis(case: &Case, args: &[&str]) -> Output {
    case.stasis().command().args(args).output().expect("run stasis")
}

#[test]
fn unbuilt_options_fail_by_name_and_the_tree_runs_on() {
    let case = Case::new("cli_unbuilt", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    for (n, opt) in ["--unprivileged", "--stream", "--external=tty[88:1]", "--cgroup-props=x", "--skip-mnt=/x", "--tls"]
        .into_iter()
        .enumerate()
    {
        let images = case.images(&format!("images-{n}"));
        let r = case.dump(&run, &images, &[opt], &[]);
        case.expect_failed(&r, &format!("dump with {opt}"), &[&[opt.split('=').next().unwrap_or(opt)]]);
        if r.exit != stasis_tests::raw::Exit::Code(1) {
            case.fail(&format!("dump with {opt}: exit {:?}, expected 1", r.exit));
        }
        case.expect_untouched(&run);
        if !names(&images).is_empty() {
            case.fail(&format!("dump with {opt} left {:?} in {}", names(&images), images.display()));
        }
    }
    let pid = run.pid().to_string();
    let pre = case.images("pre");
    let out = stasis(&case, &["pre-dump", "-t", &pid, "-D", pre.to_str().expect("utf-8"), "--stream"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) || !stderr.contains("--stream") {
        case.fail(&format!("pre-dump --stream: {}, stderr: {stderr}", out.status));
    }
    if !names(&pre).is_empty() {
        case.fail(&format!("pre-dump --stream left {:?} in {}", names(&pre), pre.display()));
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn criu_spellings_dump_and_restore() {
    let case = Case::new("cli_criu", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = case.settled_snapshot(pid);
    let images = case.images("images");
    let moot = [
        "--link-remap",
        "--ghost-fiemap",
        "--no-ghost-fiemap",
        "--force-irmap",
        "--manage-cgroups=ignore",
        "--cpu-cap=fpu",
        "--timeout",
        "10",
        "--display-stats",
        "--log-pid",
        "--no-tcp-established",
        "--ghost-limit",
        "2M",
        "-v4",
    ];
    case.dump_ok(&run, &images, &moot);
    case.reap_dumped(&mut run);

    // A restore with an unbuilt option fails by name and leaves no process.
    let dir = images.to_str().expect("utf-8");
    for opt in ["--stream", "--unprivileged", "--auto-dedup"] {
        let out = stasis(&case, &["restore", "-D", dir, "-d", opt]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || !stderr.contains(opt.split('=').next().unwrap_or(opt)) {
            case.fail(&format!("restore with {opt}: {}, stderr: {stderr}", out.status));
        }
        case.expect_no_process_left(pid);
    }

    // --daemon, and a pid file and log file relative to the work directory.
    let work = case.images("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let w = work.to_str().expect("utf-8");
    let out =
        stasis(&case, &["restore", "-D", dir, "-W", w, "--daemon", "--pidfile", "root.pid", "-o", "r.log", "-v3"]);
    if !out.status.success() {
        case.fail(&format!("restore: {}, stderr: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let text = std::fs::read_to_string(work.join("root.pid")).unwrap_or_default();
    let mut restored = Running::adopt(pid, "basic", case.log_of_first_run(), true);
    if text.trim() != pid.to_string() || !work.join("r.log").exists() {
        case.fail(&format!("work dir holds {:?}, root.pid {text:?}, expected {pid}", names(&work)));
    }
    case.compare(&before, pid);
    case.finish(&mut restored);
}

#[test]
fn check_one_feature_and_version() {
    let case = Case::new("cli_check", workload!("basic"));
    let out = stasis(&case, &["check", "--feature", "kcmp"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("kcmp") || stdout.lines().count() != 1 {
        case.fail(&format!("check --feature kcmp: {}, stdout: {stdout}", out.status));
    }
    let out = stasis(&case, &["check", "--feature", "clone3_set_tid"]);
    if !out.status.success() {
        case.fail(&format!("check --feature clone3_set_tid (CRIU's spelling): {}", out.status));
    }
    let out = stasis(&case, &["check", "--feature", "no-such-feature"]);
    if out.status.code() != Some(1) {
        case.fail(&format!("check of an unknown feature: {}", out.status));
    }
    for args in [&["--version"][..], &["dump", "--version"], &["-V"]] {
        let out = stasis(&case, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.starts_with("stasis") || !stdout.contains(env!("CARGO_PKG_VERSION")) {
            case.fail(&format!("{args:?}: {}, stdout: {stdout}", out.status));
        }
    }
}
