//! One open file description shared by a parent and two children keeps one offset: the root
//! opens a file, writes 37 bytes and dups the fd before forking; each child dups it again and
//! opens the same file a second time on its own (a description it must not share). After the wake
//! the root checks its two fds still at 37, seeks to 100, and then, one process at a time, each
//! checks that every fd of the shared description shows the offset the previous step left and
//! writes 10 bytes through one of them (child 1 through its own dup, child 2 through the inherited
//! fd, the root through its dup), so every process sees every other's moves. Finally each child
//! checks its private description did not move and the root checks the file's contents.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeChild, TreeParent, WAKE};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::time::Duration;

const CHILDREN: usize = 2;
const FIRST: &[u8; 37] = b"written by the root before the forks\n";
const ROOT_SEEK: u64 = 100;
const ROOT_LAST: &[u8; 10] = b"root:last\n";

fn child_chunk(i: usize) -> Vec<u8> {
    format!("child{i}:ok\n").into_bytes()
}

fn private_offset(i: usize) -> u64 {
    5 + 11 * i as u64
}

/// The offsets of `fds` (all of one description) as `lseek(fd, 0, SEEK_CUR)` reports them.
fn offsets(fds: &[&File]) -> Vec<Option<u64>> {
    fds.iter().map(|&(mut f)| f.stream_position().ok()).collect()
}

/// Checks every fd of `fds` is at `want`.
fn check_at(c: &mut Checker, what: &str, fds: &[&File], want: u64) {
    c.same(&format!("{what}: offsets of the shared description"), &vec![Some(want); fds.len()], &offsets(fds));
}

/// Child `i`: answers the root's `expect N [write]` lines until `end`.
fn child(i: usize, shared: &File, dup: &File, path: &std::path::Path, parent: TreeParent) -> i32 {
    let mut s = workload::start();
    let mine = shared.try_clone().or_fail("dup after fork");
    let mut private = OpenOptions::new().read(true).write(true).open(path).or_fail("open a private description");
    private.seek(SeekFrom::Start(private_offset(i))).or_fail("seek the private description");
    let fds = [shared, dup, &mine];
    if offsets(&fds) != vec![Some(FIRST.len() as u64); 3] {
        workload::say(&format!("FAIL: setup: child {i} offsets {:?}", offsets(&fds)));
        return 2;
    }
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    while let Some(line) = c.ok("line from the root", parent.line()) {
        if line == "end" {
            break;
        }
        let mut words = line.split_whitespace();
        let want: Option<u64> = words.nth(1).and_then(|n| n.parse().ok());
        let Some(want) = want else {
            c.check(false, || format!("unexpected line from the root {line:?}"));
            break;
        };
        check_at(c, &format!("step {line:?}"), &fds, want);
        if words.next() == Some("write") {
            let through = if i == 1 { &mine } else { shared };
            c.ok("write through the shared description", (&*through).write_all(&child_chunk(i)));
        }
        c.ok("answer the root", parent.send("done\n"));
    }
    c.same("offset of the private description", &Some(private_offset(i)), &private.stream_position().ok());
    parent.report(s.into_checker())
}

/// Sends `step` to `child`, waits for its `done`, and checks the root's fds at `after`.
fn step(c: &mut Checker, child: &TreeChild, step: &str, fds: &[&File], after: u64) {
    c.ok(&format!("send {step:?} to {}", child.name), child.send(&format!("{step}\n")));
    child.expect_line(c, &format!("answer to {step:?}"), "done");
    check_at(c, &format!("root after {} did {step:?}", child.name), fds, after);
}

/// The file's contents after every step.
fn expected_contents() -> Vec<u8> {
    let mut want = FIRST.to_vec();
    want.resize(ROOT_SEEK as usize, 0);
    want.extend(child_chunk(1));
    want.extend(child_chunk(2));
    want.extend(ROOT_LAST);
    want
}

/// After the wake: the root's part of the steps.
fn run_steps(c: &mut Checker, shared: &File, dup: &File, kids: &[TreeChild]) {
    let fds = [shared, dup];
    check_at(c, "root after the wake", &fds, FIRST.len() as u64);
    c.ok("lseek to 100", (&*shared).seek(SeekFrom::Start(ROOT_SEEK)));
    let chunk = child_chunk(1).len() as u64;
    step(c, &kids[0], &format!("expect {ROOT_SEEK} write"), &fds, ROOT_SEEK + chunk);
    step(c, &kids[1], &format!("expect {} write", ROOT_SEEK + chunk), &fds, ROOT_SEEK + 2 * chunk);
    step(c, &kids[0], &format!("expect {}", ROOT_SEEK + 2 * chunk), &fds, ROOT_SEEK + 2 * chunk);
    c.ok("root writes through its dup", (&*dup).write_all(ROOT_LAST));
    let end = ROOT_SEEK + 2 * chunk + ROOT_LAST.len() as u64;
    step(c, &kids[1], &format!("expect {end}"), &fds, end);
    for kid in kids {
        c.ok(&format!("end {}", kid.name), kid.send("end\n"));
    }
}

fn main() {
    let mut s = workload::start();
    let path = workload::work_dir().join("shared_offset.dat");
    let shared = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .or_fail("create the shared file");
    (&shared).write_all(FIRST).or_fail("first write");
    let dup = shared.try_clone().or_fail("dup");
    let kids: Vec<TreeChild> = (1..=CHILDREN)
        .map(|i| workload::fork_child(&format!("child {i}"), |link| child(i, &shared, &dup, &path, link)))
        .collect();
    for kid in &kids {
        kid.line().or_fail(&format!("ready line of {}", kid.name));
    }
    let pids: Vec<i32> = kids.iter().map(|k| k.pid).collect();
    let awake = workload::wait_processes_in(&pids, &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep at READY (pid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for kid in &kids {
        c.ok(&format!("wake {}", kid.name), raw::kill(kid.pid, WAKE));
    }
    run_steps(c, &shared, &dup, &kids);
    for kid in kids {
        kid.collect(c);
    }
    let want = expected_contents();
    let mut got = vec![0u8; want.len() + 16];
    let n = c.ok("pread the file", shared.read_at(&mut got, 0)).unwrap_or(0);
    c.same("file contents", &String::from_utf8_lossy(&want), &String::from_utf8_lossy(&got[..n]));
    s.finish()
}
