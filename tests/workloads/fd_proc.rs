//! Fds on `/proc` of processes of the tree, and namespace fds. The root (named `fdp-root`) holds
//! `/proc/self/stat` read 3 bytes in, `/proc/A/status` of its child A (opened once A exists), and
//! the namespace fds `/proc/self/ns/{net,uts,ipc,pid_for_children}`; child A (`fdp-a`) holds
//! `/proc/PARENT/comm` and `/proc/B/status` of its younger sibling B (`fdp-b`, forked after A, so
//! the restore opens it in its last pass). After the wake-up each fd still has its link (same pid,
//! same path), reads the restored process's state (its name and pid), the stat fd goes on from its
//! offset, and each namespace fd is the namespace the process is in now (same inode as its
//! `/proc/self/ns/` link, and as before).

use stasis_tests::workload::{self, Checker, OrFail, TreeParent, WAKE};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// An fd on a `/proc` file and what it must show after the restore.
struct Held {
    what: String,
    file: File,
    link: String,
    /// Lines its contents (read from offset 0) must hold.
    want: Vec<String>,
}

fn link_of(f: &File) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).map(|p| p.display().to_string()).unwrap_or_default()
}

fn hold(what: &str, path: &str, want: Vec<String>) -> Held {
    let file = File::open(path).or_fail(path);
    Held { what: what.to_string(), link: link_of(&file), file, want }
}

/// `/proc/PID/status` of `pid`, named `name`.
fn hold_status(what: &str, pid: i32, name: &str) -> Held {
    hold(what, &format!("/proc/{pid}/status"), vec![format!("Name:\t{name}\n"), format!("\nPid:\t{pid}\n")])
}

fn check_held(c: &mut Checker, h: &Held) {
    c.same(&format!("{}: link", h.what), &h.link, &link_of(&h.file));
    let mut buf = vec![0u8; 8192];
    let text = h.file.read_at(&mut buf, 0).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    let holds = text.as_ref().is_ok_and(|t| h.want.iter().all(|w| t.contains(w)));
    c.check(holds, || format!("{}: reads {text:?}, which does not hold {:?}", h.what, h.want));
}

/// A namespace fd and its inode when opened.
struct Ns {
    name: &'static str,
    file: File,
    ino: u64,
}

fn hold_ns(name: &'static str) -> Ns {
    let file = File::open(format!("/proc/self/ns/{name}")).or_fail(name);
    let ino = file.metadata().or_fail("fstat a namespace fd").ino();
    Ns { name, file, ino }
}

fn check_ns(c: &mut Checker, ns: &Ns) {
    let now = std::fs::metadata(format!("/proc/self/ns/{ns}", ns = ns.name)).map(|m| m.ino()).ok();
    let fd = ns.file.metadata().map(|m| m.ino()).ok();
    c.same(&format!("namespace fd {}: inode, as the process's own link", ns.name), &now, &fd);
    c.same(&format!("namespace fd {}: inode, as before", ns.name), &Some(ns.ino), &fd);
}

/// Child A: holds its parent's comm, then its younger sibling's status once told its pid.
fn child_a(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    stasis_tests::raw::set_comm("fdp-a").or_fail("set the name");
    let ppid = std::os::unix::process::parent_id() as i32;
    let comm = hold("A: /proc/PARENT/comm", &format!("/proc/{ppid}/comm"), vec!["fdp-root\n".into()]);
    let line = parent.line().or_fail("the pid of B");
    let b: i32 = line.parse().or_fail("the pid of B");
    let sibling = hold_status("A: /proc/B/status", b, "fdp-b");
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    check_held(&mut s.checker, &comm);
    check_held(&mut s.checker, &sibling);
    parent.report(s.into_checker())
}

/// Child B: only sleeps until woken.
fn child_b(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    stasis_tests::raw::set_comm("fdp-b").or_fail("set the name");
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    stasis_tests::raw::set_comm("fdp-root").or_fail("set the name");
    let a = workload::fork_child("A", child_a);
    let b = workload::fork_child("B", child_b);
    b.expect_line(&mut s.checker, "ready", "ready");
    a.send(&format!("{}\n", b.pid)).or_fail("tell A the pid of B");
    a.expect_line(&mut s.checker, "ready", "ready");
    let status = hold_status("root: /proc/A/status", a.pid, "fdp-a");
    let mut stat = File::open("/proc/self/stat").or_fail("/proc/self/stat");
    let mut head = [0u8; 3];
    stat.read_exact(&mut head).or_fail("read the start of /proc/self/stat");
    let stat_link = link_of(&stat);
    let namespaces: Vec<Ns> = ["net", "uts", "ipc", "pid_for_children"].into_iter().map(hold_ns).collect();
    s.ready();
    s.wait_for_wake();
    // A still runs while its status is read.
    check_held(&mut s.checker, &status);
    for child in [&a, &b] {
        s.checker.ok(&format!("wake {}", child.name), stasis_tests::raw::kill(child.pid, WAKE));
    }
    let c = &mut s.checker;
    c.same("root: /proc/self/stat: link", &stat_link, &link_of(&stat));
    let mut rest = String::new();
    let read = stat.read_to_string(&mut rest);
    let full = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let upto_comm = |t: &str| t.split(')').next().map(str::to_string);
    c.check(read.is_ok() && upto_comm(&rest) == upto_comm(full.get(3..).unwrap_or("")), || {
        format!("root: /proc/self/stat from offset 3 reads {rest:?} ({read:?}); the file is {full:?}")
    });
    for ns in &namespaces {
        check_ns(c, ns);
    }
    a.collect(&mut s.checker);
    b.collect(&mut s.checker);
    s.finish()
}
