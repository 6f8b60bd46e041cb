//! `stasis-bench-tree N`: a tree of N processes, the root and N-1 children of it. The root starts
//! each child as this same program in its `child` mode (`stasis-bench-tree child`), which sleeps
//! until killed; every child has `/dev/null` as stdin, stdout and stderr and no other fd. Once
//! `/proc/ROOT/task/ROOT/children` lists N-1 children and each of them sleeps, the root prints
//! `READY` and sleeps until killed. The workload of the tree part of `stasis-bench`.
//!
//! The children are spawned, not forked: a fork of a Rust program needs unsafe code, which the bench
//! does not have. std's `Command` opens its own pipe close-on-exec, so no pipe reaches a child.

use std::io::Write;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use stasis_bench::procs;
use stasis_bench::tree::MAX_PROCESSES;
use stasis_bench::workload::READY;

/// How long the children may take to start and fall asleep.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let processes = match args.as_slice() {
        [mode] if mode == "child" => sleep_forever(),
        [count] => match count.parse::<u32>() {
            Ok(n) if (1..=MAX_PROCESSES).contains(&n) => n,
            _ => return usage(&format!("N must be a number from 1 to {MAX_PROCESSES}, not {count:?}")),
        },
        _ => return usage("expected one argument"),
    };
    let mut children = Vec::new();
    let started = start_children(processes - 1, &mut children).and_then(|()| settle(&children));
    if let Err(problem) = started {
        eprintln!("stasis-bench-tree: {problem}");
        for child in &mut children {
            // Best effort: take the children along.
            let _ = child.kill();
            let _ = child.wait();
        }
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    sleep_forever()
}

/// Starts `count` children, each this program in its `child` mode, pushing each onto `children`.
fn start_children(count: u32, children: &mut Vec<Child>) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    for index in 1..=count {
        let child = Command::new(&exe)
            .arg("child")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start child {index} of {count}: {e}"))?;
        children.push(child);
    }
    Ok(())
}

/// Waits until this process's children file lists every child and every child sleeps.
fn settle(children: &[Child]) -> Result<(), String> {
    let me = i32::try_from(std::process::id()).expect("pids fit in i32");
    let start = Instant::now();
    loop {
        let listed = procs::children(me).map_err(|e| format!("cannot list the children of pid {me}: {e}"))?;
        let asleep =
            children.iter().all(|c| i32::try_from(c.id()).is_ok_and(|pid| procs::state(pid).ok() == Some('S')));
        if listed.len() == children.len() && asleep {
            return Ok(());
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            let n = children.len();
            return Err(format!("{} of {n} children listed, not all asleep after {SETTLE_TIMEOUT:?}", listed.len()));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("stasis-bench-tree: {problem}\nusage: stasis-bench-tree N");
    ExitCode::from(2)
}
