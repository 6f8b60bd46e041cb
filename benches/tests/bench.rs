//! End-to-end runs of the two binaries: the workload, the limits, and the stasis rounds driven
//! against a stand-in for stasis (a shell script that kills the workload at "dump" and starts a
//! `sleep` at "restore"), so the bench's plumbing is tested whether or not the engine works yet.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BENCH: &str = env!("CARGO_BIN_EXE_stasis-bench");
const MEMHOG: &str = env!("CARGO_BIN_EXE_stasis-bench-memhog");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stasis-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_bench(args: &[&str]) -> (std::process::ExitStatus, serde_json::Value, String) {
    let out = Command::new(BENCH).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status, json, stderr)
}

#[test]
fn memhog_prints_ready_and_sleeps() {
    let mut child = Command::new(MEMHOG).arg("8").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "READY\n");
    let status: String = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib >= 8 * 1024, "RssAnon {rss_kib} kB");
    assert!(child.try_wait().unwrap().is_none(), "memhog exited");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn memhog_rejects_bad_arguments() {
    for args in [&[][..], &["0"], &["many"], &["1", "2"]] {
        let status = Command::new(MEMHOG).args(args).status().unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn limits_only_run_reports_both_limits() {
    let dir = scratch("limits");
    let dir_arg = dir.to_str().unwrap();
    let args = ["--limits-only", "--rounds", "3", "--size-mib", "16", "--dir", dir_arg, "--json"];
    let (status, json, stderr) = run_bench(&args);
    assert!(status.success(), "{stderr}");
    assert_eq!(json["rounds"], 3);
    assert!(json["limits"]["write_secs"].as_f64().unwrap() > 0.0);
    assert!(json["limits"]["read_gib_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(json["samples"]["read_limit_secs"].as_array().unwrap().len(), 3);
    assert_eq!(json["stasis"]["status"], "skipped");
    assert_eq!(stderr.matches("round ").count(), 3, "{stderr}");
    assert!(!dir.join("dd.img").exists(), "dd.img left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn limits_only_table() {
    let dir = scratch("table");
    let args = ["--limits-only", "--rounds", "1", "--size-mib", "4", "--dir"];
    let out = Command::new(BENCH).args(args).arg(&dir).output().unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("write limit (dd)"), "{table}");
    assert!(table.contains("read limit"), "{table}");
    assert!(table.contains("stasis: skipped (--limits-only)"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for `stasis dump/restore --json`.
const FAKE_STASIS: &str = r#"#!/bin/sh
set -e
cmd=$1
case "$cmd" in
dump)
    pid=$3 dir=$5
    mkdir -p "$dir"
    head -c 1048576 /dev/urandom > "$dir/pages.img"
    kill -KILL "$pid"
    echo "{\"pid\":$pid,\"frozen\":{\"secs\":0,\"nanos\":25000000},\"total\":{\"secs\":0,\"nanos\":3},\"pages\":256,\"image_bytes\":1048576,\"left_running\":false}"
    ;;
restore)
    test -f "$3/pages.img"
    sleep 1000 </dev/null >/dev/null 2>&1 &
    echo "{\"pid\":$!,\"total\":{\"secs\":0,\"nanos\":5},\"pages\":256}"
    ;;
*) exit 2 ;;
esac
"#;

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn stasis_rounds_against_a_stand_in() {
    let dir = scratch("fake");
    let fake = write_script(&dir, "fake-stasis", FAKE_STASIS);
    let work = dir.join("work");
    let (status, json, stderr) = run_bench(&[
        "--stasis",
        fake.to_str().unwrap(),
        "--no-criu",
        "--rounds",
        "2",
        "--size-mib",
        "8",
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert!(status.success(), "{stderr}");
    let stasis = &json["stasis"];
    assert_eq!(stasis["status"], "measured", "{json}");
    assert_eq!(stasis["frozen_secs"], 0.025);
    assert!(stasis["image_bytes"].as_u64().unwrap() >= 1 << 20);
    assert!(stasis["dump_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(json["criu"]["status"], "skipped");
    assert_eq!(json["samples"]["stasis"]["restore_secs"].as_array().unwrap().len(), 2);
    assert!(!work.join("img").exists(), "image left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_stasis_is_reported_and_fails_the_run() {
    let dir = scratch("failing");
    let fake = write_script(&dir, "broken-stasis", "#!/bin/sh\necho 'pid 1: no such luck' >&2\nexit 1\n");
    let work = dir.join("work");
    let (status, json, stderr) = run_bench(&[
        "--stasis",
        fake.to_str().unwrap(),
        "--no-criu",
        "--rounds",
        "2",
        "--size-mib",
        "4",
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(json["stasis"]["status"], "failed");
    let error = json["stasis"]["error"].as_str().unwrap();
    assert!(error.contains("failed (exit status: 1): pid 1: no such luck"), "{error}");
    assert!(stderr.contains("stasis failed"), "{stderr}");
    // The limits are still measured in every round.
    assert_eq!(json["samples"]["write_limit_secs"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let status = Command::new(BENCH).arg("--rounds").arg("0").status().unwrap();
    assert_eq!(status.code(), Some(2));
}
