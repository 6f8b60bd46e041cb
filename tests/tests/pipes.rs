//! Pipes: several descriptions of one end with their own flags, ends whose other end is closed
//! everywhere, and ends leading outside the tree (a stdout read by the test, handed back with
//! `--inherit-fd`; an idle stdin reported by the dump).

use stasis_tests::harness::{checkpoint_restore, init, Case, Running, EXIT_TIMEOUT, READY_TIMEOUT};
use stasis_tests::workload;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

#[test]
fn pipe_end_descriptions_keep_their_flags() {
    checkpoint_restore("pipe_flags", workload!("pipe_ends").arg("flags"));
}

/// A pipe in packet mode keeps its packet boundaries (they were merged into one packet).
#[test]
fn a_packet_mode_pipe_keeps_its_packets() {
    checkpoint_restore("pipe_packets", workload!("pipe_ends").arg("packets"));
}

#[test]
fn pipe_ends_whose_other_end_is_closed() {
    checkpoint_restore("pipe_closed", workload!("pipe_ends").arg("closed"));
}

/// Starts `case`'s workload with `stdin`, `stdout` (stderr discarded) and waits for READY in `log`.
fn start_with(case: &Case, stdin: Stdio, stdout: Stdio, log: &std::path::Path) -> Option<Running> {
    let mut cmd = case.workload.command(&case.dir);
    cmd.stdin(stdin).stdout(stdout).stderr(Stdio::null());
    let run = Running::spawn(&mut cmd, case.workload.name(), Some(log.to_path_buf()), true)
        .unwrap_or_else(|e| case.fail(&format!("spawn: {e}")));
    match run.wait_ready(READY_TIMEOUT) {
        Ok(None) => Some(run),
        Ok(Some(reason)) => {
            stasis_tests::harness::skip(&reason);
            None
        }
        Err(e) => case.fail(&e),
    }
}

/// The workload's stdout is a pipe the test reads (a thread copies it to the log the harness
/// watches); the dump reports it, the restore gets the test's copy of the write end with
/// `--inherit-fd`, and the line written after the restore reaches the test.
#[test]
fn stdout_pipe_to_a_reader_outside_is_handed_back() {
    init();
    let case = Case::new("pipe_stdout", workload!("pipe_ends").arg("stdout"));
    let log = case.dir.unique("pipe_ends", "log");
    case.dir.watch_log(&log);
    let (reader, writer) = std::io::pipe().expect("pipe");
    let ino =
        reader.as_fd().try_clone_to_owned().map(std::fs::File::from).and_then(|f| f.metadata()).expect("stat").ino();
    let ours = writer.try_clone().expect("keep a write end");
    let copy_log = log.clone();
    let copier = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut reader = reader;
        let mut buf = [0u8; 4096];
        let mut out = std::fs::File::create(&copy_log).expect("log");
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            out.write_all(&buf[..n]).expect("copy to the log");
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let Some(mut run) = start_with(&case, Stdio::null(), writer.into(), &log) else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump failed:\n{}", r.describe()));
    }
    let key = format!("pipe:[{ino}]");
    if !r.stdout.contains(&format!("\"{key}\"")) {
        case.fail(&format!("the dump report does not list {key} as leading outside:\n{}", r.stdout));
    }
    case.reap_dumped(&mut run);
    let arg = format!("fd[7]:{key}");
    let mut restored = case.restore_ok_passing(&images, run.pid(), &["--inherit-fd", &arg], ours.as_fd(), 7);
    // The verdict is read once the pipe is closed: the copier's log may lag behind the exit.
    restored.signal(libc::SIGUSR1).expect("wake the restored workload");
    let exit = restored.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|e| case.fail(&e));
    drop(ours);
    let text = copier.join().expect("copier");
    for want in ["line before the dump", "line after the restore"] {
        if !text.lines().any(|l| l == want) {
            case.fail(&format!("the test did not read {want:?} from the pipe:\n{text}"));
        }
    }
    if let Err(e) = restored.check_verdict(exit) {
        case.fail(&e);
    }
}

/// The workload's stdin is a pipe whose writer (the test) never writes: the dump succeeds and
/// reports it, the restore gives a fresh pipe end.
#[test]
fn idle_inherited_pipe() {
    init();
    let case = Case::new("pipe_idle", workload!("pipe_ends").arg("idle"));
    let log = case.dir.unique("pipe_ends", "log");
    case.dir.watch_log(&log);
    let (reader, writer) = std::io::pipe().expect("pipe");
    let out = std::fs::File::create(&log).expect("log");
    let Some(mut run) = start_with(&case, reader.into(), out.into(), &log) else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump failed:\n{}", r.describe()));
    }
    if !r.stdout.contains("whose writer is outside the tree") {
        case.fail(&format!("the dump report lists no fd leading outside:\n{}", r.stdout));
    }
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);
    drop(writer);
}
