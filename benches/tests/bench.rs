//! End-to-end runs of the four binaries: the three workloads, the limits, and the stasis rounds
//! driven against a stand-in for stasis (a shell script that kills the workload and its children at
//! "dump" and, at "restore", starts a fresh `stasis-bench-threads` with as many threads as the dumped
//! process had, or a fresh `stasis-bench-tree` with as many processes), so the bench's plumbing is
//! tested whether or not the engine works yet.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BENCH: &str = env!("CARGO_BIN_EXE_stasis-bench");
const MEMHOG: &str = env!("CARGO_BIN_EXE_stasis-bench-memhog");
const THREADS: &str = env!("CARGO_BIN_EXE_stasis-bench-threads");
const TREE: &str = env!("CARGO_BIN_EXE_stasis-bench-tree");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stasis-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_bench(args: &[&str]) -> (std::process::ExitStatus, serde_json::Value, String) {
    let out = Command::new(BENCH).args(args).env("FAKE_THREADS", THREADS).env("FAKE_TREE", TREE).output().unwrap();
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

fn task_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

#[test]
fn threads_workload_prints_ready_with_all_its_threads() {
    let mut child = Command::new(THREADS).arg("5").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "READY\n");
    assert_eq!(task_count(child.id()), 5);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert!(status.lines().any(|l| l == "Threads:\t5"), "{status}");
    assert!(child.try_wait().unwrap().is_none(), "the threads workload exited");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn threads_workload_with_one_thread() {
    let mut child = Command::new(THREADS).arg("1").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!((line.as_str(), task_count(child.id())), ("READY\n", 1));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn threads_workload_rejects_bad_arguments() {
    for args in [&[][..], &["0"], &["many"], &["4097"], &["1", "2"]] {
        let status = Command::new(THREADS).args(args).stderr(Stdio::null()).status().unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

/// The pids of `/proc/PID/task/PID/children`.
fn children(pid: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    text.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// What each fd of `pid` points to.
fn fd_targets(pid: u32) -> Vec<(String, PathBuf)> {
    let mut fds: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read_link(e.path()).unwrap()))
        .collect();
    fds.sort();
    fds
}

/// A tree started by a test: the root and its children, killed and waited for on drop, so that a
/// failed assertion leaves nothing behind.
struct Tree {
    root: std::process::Child,
    kids: Vec<u32>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let pids: Vec<u32> = self.kids.iter().copied().chain([self.root.id()]).collect();
        let _ = Command::new("kill").arg("-KILL").args(pids.iter().map(u32::to_string)).status();
        let _ = self.root.wait();
        let start = std::time::Instant::now();
        while pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "{pids:?} still there");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[test]
fn tree_workload_prints_ready_with_its_sleeping_children() {
    let root = Command::new(TREE).arg("5").stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut tree = Tree { root, kids: Vec::new() };
    let mut line = String::new();
    BufReader::new(tree.root.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let pid = tree.root.id();
    tree.kids = children(pid);
    assert_eq!(line, "READY\n");
    assert_eq!(tree.kids.len(), 4, "{:?}", tree.kids);
    // Stdio to /dev/null, and nothing else but what whoever ran the tests left inheritable.
    let null = PathBuf::from("/dev/null");
    let mut expected: Vec<_> = ["0", "1", "2"].iter().map(|fd| (fd.to_string(), null.clone())).collect();
    expected.extend(stasis_bench::procs::inherited_fds().into_iter().map(|(fd, t)| (fd.to_string(), t.into())));
    expected.sort();
    for &kid in &tree.kids {
        assert_eq!(fd_targets(kid), expected, "pid {kid}");
        let stat = std::fs::read_to_string(format!("/proc/{kid}/stat")).unwrap();
        assert!(stat.contains(") S "), "{stat}");
        assert_eq!(task_count(kid), 1);
    }
    assert_eq!(task_count(pid), 1);
    assert!(tree.root.try_wait().unwrap().is_none(), "the tree's root exited");
}

#[test]
fn tree_workload_of_one_process_and_bad_arguments() {
    let mut root = Command::new(TREE).arg("1").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(root.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!((line.as_str(), children(root.id()).len()), ("READY\n", 0));
    root.kill().unwrap();
    root.wait().unwrap();
    for args in [&[][..], &["0"], &["many"], &["1025"], &["1", "2"]] {
        let status = Command::new(TREE).args(args).stderr(Stdio::null()).status().unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn limits_only_run_reports_both_limits_and_every_way_of_reading() {
    let dir = scratch("limits");
    let dir_arg = dir.to_str().unwrap();
    let args = ["--limits-only", "--rounds", "3", "--size-mib", "16", "--dir", dir_arg, "--json"];
    let (status, json, stderr) = run_bench(&args);
    assert!(status.success(), "{stderr}");
    assert_eq!(json["rounds"], 3);
    assert!(json["limits"]["write_secs"].as_f64().unwrap() > 0.0);
    assert!(json["limits"]["read_gib_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(json["samples"]["read_limit_secs"].as_array().unwrap().len(), 3);
    // The limit of each round is the fastest of the four ways of reading.
    let samples = &json["samples"];
    let ways = ["read_single_secs", "read_parallel_secs", "read_populated_secs", "read_parallel_populated_secs"];
    for i in 0..3 {
        let best = ways.iter().map(|w| samples[w][i].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
        assert_eq!(samples["read_limit_secs"][i].as_f64(), Some(best), "{samples}");
    }
    for way in ways {
        assert!(json["limits"][way].as_f64().unwrap() > 0.0, "{way}");
    }
    assert_eq!(json["stasis"]["status"], "skipped");
    assert_eq!(json["threads"]["status"], "skipped");
    assert_eq!(json["threads"]["reason"], "--limits-only");
    assert_eq!(json["tree"]["reason"], "--limits-only");
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
    assert!(table.contains("threads: skipped (--limits-only)"), "{table}");
    assert!(table.contains("tree: skipped (--limits-only)"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for `stasis dump/restore --json`; "restore" starts `$FAKE_TREE N` for an image named
/// `tree-imgs/*`, N being the processes of the dumped tree, and `$FAKE_THREADS N` for any other, N being
/// the threads of the dumped process.
const FAKE_STASIS: &str = r#"#!/bin/sh
set -e
cmd=$1
case "$cmd" in
dump)
    pid=$3 dir=$5
    mkdir -p "$dir"
    head -c 1048576 /dev/urandom > "$dir/pages.img"
    awk '/^Threads:/ { print $2 }' "/proc/$pid/status" > "$dir/threads"
    children=$(cat "/proc/$pid/task/$pid/children")
    echo $children | wc -w > "$dir/children"
    kill -KILL "$pid" $children
    echo "{\"pid\":$pid,\"frozen\":{\"secs\":0,\"nanos\":25000000},\"total\":{\"secs\":0,\"nanos\":3},\"pages\":256,\"image_bytes\":1048576,\"left_running\":false}"
    ;;
restore)
    test -f "$3/pages.img"
    case "$3" in
    *tree-imgs/*) "$FAKE_TREE" "$(($(cat "$3/children") + 1))" </dev/null >"$3/restored.log" 2>/dev/null & ;;
    *) "$FAKE_THREADS" "$(cat "$3/threads")" </dev/null >"$3/restored.log" 2>/dev/null & ;;
    esac
    until grep -q READY "$3/restored.log"; do sleep 0.01; done
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
fn a_criu_that_cannot_run_is_named_and_the_rest_goes_on() {
    let dir = scratch("nocriu");
    let fake = write_script(&dir, "fake-stasis", FAKE_STASIS);
    let work = dir.join("work");
    let (status, json, stderr) = run_bench(&[
        "--stasis",
        fake.to_str().unwrap(),
        "--criu",
        "/nonexistent/criu",
        "--only",
        "threads",
        "--rounds",
        "1",
        "--threads",
        "2",
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("CRIU is not measured: cannot run /nonexistent/criu"), "{stderr}");
    assert_eq!(json["threads"]["status"], "measured", "{json}");
    assert!(json["threads"]["criu"].is_null(), "{json}");
    assert!(json["memory_vs_criu"].is_null(), "{json}");
    std::fs::remove_dir_all(&dir).unwrap();
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
        "--threads",
        "3",
        "--tree",
        "3",
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
    let threads = &json["threads"];
    assert_eq!(threads["status"], "measured", "{json}");
    assert_eq!(threads["threads"], 3);
    assert_eq!(threads["process"]["frozen_secs"], 0.025);
    assert!(threads["per_thread"]["restore_secs"].as_f64().unwrap() > 0.0);
    assert!(threads["added_per_thread"]["dump_secs"].is_f64());
    assert_eq!(json["samples"]["threads"]["baseline"]["dump_secs"].as_array().unwrap().len(), 2);
    assert_eq!(stderr.matches("3 threads dump ").count(), 2, "{stderr}");
    assert!(!work.join("thr-img").exists(), "threads image left behind");
    let tree = &json["tree"];
    assert_eq!(tree["status"], "measured", "{json}");
    assert_eq!(tree["processes"], 3);
    assert_eq!(tree["tree"]["frozen_secs"], 0.025);
    assert!(tree["dump_restore_per_process_secs"].as_f64().unwrap() > 0.0);
    assert!(tree["within_target"].is_boolean());
    assert!(tree["added_per_process"]["dump_secs"].is_f64());
    assert_eq!(json["samples"]["tree"]["tree"]["restore_secs"].as_array().unwrap().len(), 2);
    assert_eq!(stderr.matches("tree of 3 dump ").count(), 2, "{stderr}");
    assert!(!work.join("tree-imgs").exists(), "tree images left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tree_only_against_a_stand_in() {
    let dir = scratch("tree-only");
    let fake = write_script(&dir, "fake-stasis", FAKE_STASIS);
    let work = dir.join("work");
    let args = ["--only", "tree", "--tree", "6", "--rounds", "1", "--stasis", fake.to_str().unwrap()];
    let out = Command::new(BENCH).args(args).arg("--dir").arg(&work).env("FAKE_TREE", TREE).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("tree: stasis on a tree of 6 processes and on 1"), "{table}");
    assert!(table.contains("added process, (t(6) - t(1)) / 5"), "{table}");
    assert!(table.contains("dump + restore per process"), "{table}");
    assert!(table.contains("threads: skipped (--only tree)"), "{table}");
    assert!(!table.contains("write limit"), "{table}");
    assert!(!stderr.contains("dd write") && !stderr.contains("threads dump"), "{stderr}");
    assert!(!work.join("tree-imgs").exists() && !work.join("tree.log").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in whose restore starts a tree with one child too few.
const SHORT_TREE: &str = r#"#!/bin/sh
set -e
case "$1" in
dump)
    mkdir -p "$5"
    children=$(cat "/proc/$3/task/$3/children")
    echo $children | wc -w > "$5/children"
    kill -KILL "$3" $children
    echo '{"frozen":{"secs":0,"nanos":1}}'
    ;;
restore)
    n=$(cat "$3/children"); [ "$n" -ge 1 ] || n=1
    "$FAKE_TREE" "$n" </dev/null >"$3/restored.log" 2>/dev/null &
    until grep -q READY "$3/restored.log"; do sleep 0.01; done
    echo "{\"pid\":$!}"
    ;;
esac
"#;

#[test]
fn a_restore_with_missing_children_fails_the_tree_part() {
    let dir = scratch("short-tree");
    let fake = write_script(&dir, "short-stasis", SHORT_TREE);
    let work = dir.join("work");
    let (status, json, stderr) = run_bench(&[
        "--only",
        "tree",
        "--tree",
        "4",
        "--rounds",
        "2",
        "--stasis",
        fake.to_str().unwrap(),
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(json["tree"]["status"], "failed");
    let error = json["tree"]["error"].as_str().unwrap();
    assert!(error.contains("has 2 children after the restore, expected 3"), "{error}");
    assert_eq!(stderr.matches("tree FAILED").count(), 1, "{stderr}");
    assert!(stderr.contains("tree failed"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn threads_only_against_a_stand_in() {
    let dir = scratch("threads-only");
    let fake = write_script(&dir, "fake-stasis", FAKE_STASIS);
    let work = dir.join("work");
    let args = ["--only", "threads", "--threads", "4", "--rounds", "1", "--stasis", fake.to_str().unwrap()];
    let out = Command::new(BENCH).args(args).arg("--dir").arg(&work).env("FAKE_THREADS", THREADS).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("threads: stasis on 4 threads and on 1"), "{table}");
    assert!(table.contains("added thread, (t(4) - t(1)) / 3"), "{table}");
    assert!(!table.contains("write limit"), "{table}");
    assert!(!stderr.contains("dd write"), "{stderr}");
    assert!(!work.join("thr-img").exists() && !work.join("dd.img").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in whose restore starts a process with one thread too few.
const SHORT_RESTORE: &str = r#"#!/bin/sh
set -e
case "$1" in
dump)
    mkdir -p "$5"
    awk '/^Threads:/ { print $2 - 1 }' "/proc/$3/status" > "$5/threads"
    kill -KILL "$3"
    echo '{"frozen":{"secs":0,"nanos":1}}'
    ;;
restore)
    n=$(cat "$3/threads"); [ "$n" -ge 1 ] || n=1
    "$FAKE_THREADS" "$n" </dev/null >"$3/restored.log" 2>/dev/null &
    until grep -q READY "$3/restored.log"; do sleep 0.01; done
    echo "{\"pid\":$!}"
    ;;
esac
"#;

#[test]
fn a_restore_with_missing_threads_fails_the_threads_part() {
    let dir = scratch("short");
    let fake = write_script(&dir, "short-stasis", SHORT_RESTORE);
    let work = dir.join("work");
    let (status, json, stderr) = run_bench(&[
        "--only",
        "threads",
        "--threads",
        "3",
        "--rounds",
        "2",
        "--stasis",
        fake.to_str().unwrap(),
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(json["threads"]["status"], "failed");
    let error = json["threads"]["error"].as_str().unwrap();
    assert!(error.contains("threads after the restore, expected 3"), "{error}");
    assert_eq!(stderr.matches("threads FAILED").count(), 1, "{stderr}");
    assert!(stderr.contains("threads failed"), "{stderr}");
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
    assert_eq!(json["threads"]["status"], "failed");
    assert_eq!(json["tree"]["status"], "failed");
    // The limits are still measured in every round.
    assert_eq!(json["samples"]["write_limit_secs"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let status = Command::new(BENCH).arg("--rounds").arg("0").status().unwrap();
    assert_eq!(status.code(), Some(2));
}
