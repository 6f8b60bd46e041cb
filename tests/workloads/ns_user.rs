//! A tree in a user namespace of its own. The program started by the harness forks a "mapper"
//! (still in stasis's user namespace, as root), unshares a user namespace and lets the mapper write
//! its maps (two ranges each, so only a writer with CAP_SETUID outside may write them), then makes
//! its other namespaces inside it, owned by it.
//!
//! Modes:
//! - `deny`: `setgroups` denied; the program is the root, keeps the ids it had (0 outside, not
//!   mapped: it is 65534 inside, with every capability there), unshares UTS and IPC namespaces,
//!   sets a host name and forks a child that takes mapped ids and drops its capabilities.
//! - `allow`: `setgroups` allowed; the root becomes root inside (ids and groups mapped) and
//!   unshares UTS, IPC and network namespaces; the same child.
//! - `pid`: `allow`, and the root unshares a PID namespace and forks its init, the process the
//!   test dumps: refused by name (the program waits for the init, passes the wake signal on to it
//!   and exits with its status).
//! - `thread`: `deny`, but the root starts a second thread: refused by name at dump.
//!
//! After the wake each process checks what it recorded before the dump: its uid and gid maps and
//! `setgroups`, its ids, groups and capabilities (and the bounding set), that its user namespace is
//! not the one the program started in, that its UTS and IPC (and network) namespaces are owned by
//! its user namespace; the child that it is in its parent's user namespace; that the root may still
//! set its host name (it has CAP_SYS_ADMIN over its UTS namespace) and the child may not.

use stasis_tests::raw::{self, Caps};
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};
use std::io::{Read, Write};
use std::time::Duration;

const UID_MAP: &str = "0 100000 1000\n1000 201000 100\n";
const GID_MAP: &str = "0 300000 1000\n1000 401000 100\n";
const HOST: &str = "stasis-userns";
const CHILD_IDS: (u32, u32) = (1001, 1002);
const ROOT_GROUPS: [u32; 2] = [0, 1005];

/// What a process can observe of its credentials and user namespace.
#[derive(Debug, PartialEq)]
struct Seen {
    uid_map: String,
    gid_map: String,
    setgroups: String,
    uids: (u32, u32, u32),
    gids: (u32, u32, u32),
    groups: Vec<u32>,
    caps: Caps,
    bounding: String,
}

fn status_line(key: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_string()
}

fn seen() -> std::io::Result<Seen> {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/self/{f}"));
    Ok(Seen {
        uid_map: read("uid_map")?,
        gid_map: read("gid_map")?,
        setgroups: read("setgroups")?,
        uids: raw::getresuid()?,
        gids: raw::getresgid()?,
        groups: raw::getgroups()?,
        caps: raw::capget()?,
        bounding: status_line("CapBnd:"),
    })
}

/// The kinds of namespace a process checks are owned by its user namespace.
fn owned_kinds(with_net: bool) -> &'static [&'static str] {
    if with_net {
        &["uts", "ipc", "net"]
    } else {
        &["uts", "ipc"]
    }
}

fn check_owned(c: &mut Checker, who: &str, kinds: &[&str]) {
    let user = raw::ns_inode("/proc/self/ns/user").map_err(|e| e.to_string());
    for kind in kinds {
        let owner = raw::ns_owner_inode(&format!("/proc/self/ns/{kind}")).map_err(|e| e.to_string());
        c.same(&format!("{who}: owner of its {kind} namespace (its user namespace)"), &user, &owner);
    }
}

/// The checks every process makes after the wake, against `before`.
fn check_after(c: &mut Checker, who: &str, before: &Seen, outside: &str, kinds: &[&str]) {
    match seen() {
        Ok(now) => c.same(&format!("{who}: credentials and maps"), before, &now),
        Err(e) => c.check(false, || format!("{who}: reading its credentials: {e}")),
    }
    let user = raw::ns_link(0, "user").map_err(|e| e.to_string());
    c.check(user.as_ref().is_ok_and(|l| l != outside), || format!("{who}: user namespace {user:?}, the one it left"));
    check_owned(c, who, kinds);
}

/// Fork the mapper, unshare a user namespace, and have its maps written.
fn enter_user_ns(setgroups: &str) {
    let (go_r, go_w) = std::io::pipe().or_fail("mapper's pipe");
    let parent = raw::raw_getpid();
    let mapper = match raw::fork().or_fail("fork the mapper") {
        raw::Forked::Child => mapper(go_r, parent, setgroups),
        raw::Forked::Parent(pid) => pid,
    };
    drop(go_r);
    match raw::unshare(libc::CLONE_NEWUSER) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => workload::skip("unshare(CLONE_NEWUSER) is not allowed"),
        Err(e) => Err::<(), _>(e).or_fail("unshare(CLONE_NEWUSER)"),
    }
    (&go_w).write_all(b"g").or_fail("waking the mapper");
    let exit = raw::waitpid(mapper).or_fail("reaping the mapper");
    if exit != raw::Exit::Code(0) {
        Err::<(), _>(format!("{exit:?}")).or_fail("the mapper writing the maps");
    }
}

fn mapper(mut go: std::io::PipeReader, parent: i32, setgroups: &str) -> ! {
    let mut byte = [0u8];
    let ok = go.read_exact(&mut byte).is_ok()
        && [("setgroups", setgroups), ("uid_map", UID_MAP), ("gid_map", GID_MAP)]
            .iter()
            .all(|(f, text)| std::fs::write(format!("/proc/{parent}/{f}"), text).is_ok());
    std::process::exit(if ok { 0 } else { 1 })
}

fn unshare(flags: i32) {
    raw::unshare(flags).or_fail(&format!("unshare({flags:#x}) inside the user namespace"));
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let outside = raw::ns_link(0, "user").or_fail("user namespace link");
    match mode.as_str() {
        "deny" | "thread" => {
            enter_user_ns("deny");
            unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWIPC);
            root(&outside, false, mode == "thread")
        }
        "allow" | "pid" => {
            enter_user_ns("allow");
            raw::setgroups(&ROOT_GROUPS).or_fail("setgroups inside");
            raw::setresgid(0, 0, 0).or_fail("setresgid inside");
            raw::setresuid(0, 0, 0).or_fail("setresuid inside");
            unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET);
            if mode == "allow" {
                root(&outside, true, false);
            }
            unshare(libc::CLONE_NEWPID);
            // Records the wake signal (not blocked here), which it passes on to the init.
            let waker = workload::start();
            raw::sigprocmask(libc::SIG_UNBLOCK, raw::SigSet::of(&[libc::SIGUSR1])).or_fail("unblock SIGUSR1");
            match raw::fork().or_fail("fork the init") {
                raw::Forked::Child => root(&outside, true, false),
                raw::Forked::Parent(pid) => std::process::exit(match wait_for(pid, &waker) {
                    Some(raw::Exit::Code(c)) => c,
                    _ => 1,
                }),
            }
        }
        other => workload::unknown_mode(other, "deny, allow, pid, thread"),
    }
}

/// Reaps `pid`, passing the wake signal on to it when it comes.
fn wait_for(pid: i32, waker: &workload::Session) -> Option<raw::Exit> {
    let mut passed = false;
    loop {
        if waker.woke() && !passed {
            passed = raw::kill(pid, libc::SIGUSR1).is_ok();
        }
        match raw::try_waitpid(pid) {
            Ok(Some(exit)) => return Some(exit),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

fn root(outside: &str, with_net: bool, thread: bool) -> ! {
    let mut s = workload::start();
    raw::set_uts_names(HOST, "").or_fail("sethostname inside");
    let kinds = owned_kinds(with_net);
    check_owned(&mut s.checker, "root", kinds);
    let before = seen().or_fail("reading its credentials");
    let out = outside.to_string();
    let kid = workload::fork_child("child", move |link| child(link, &out, with_net));
    kid.expect_line(&mut s.checker, "ready", "ready");
    let _spinner = thread.then(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
        })
    });
    s.ready();
    s.wait_for_wake();
    check_after(&mut s.checker, "root", &before, outside, kinds);
    let again = raw::set_uts_names(HOST, "").map_err(|e| e.raw_os_error());
    s.checker.same("root: sethostname (CAP_SYS_ADMIN over its UTS namespace)", &Ok(()), &again);
    // The child compares its user namespace with ours (its pid may be another PID namespace's).
    let mine = raw::ns_link(0, "user").or_fail("root: user namespace link after the wake");
    kid.send(&format!("go {mine}\n")).or_fail("waking the child");
    kid.collect(&mut s.checker);
    s.finish()
}

fn child(link: TreeParent, outside: &str, with_net: bool) -> i32 {
    let mut c = Checker::default();
    raw::setresgid(CHILD_IDS.1, CHILD_IDS.1, CHILD_IDS.1).or_fail("child: setresgid inside");
    raw::setresuid(CHILD_IDS.0, CHILD_IDS.0, CHILD_IDS.0).or_fail("child: setresuid inside");
    // A uid change keeps the capabilities of a process that was not the namespace's root (deny
    // mode); drop them. Dumpable again (the uid change cleared it).
    raw::capset(Caps { effective: 0, permitted: 0, inheritable: 0 }).or_fail("child: capset");
    raw::prctl(libc::PR_SET_DUMPABLE, 1, 0).or_fail("child: PR_SET_DUMPABLE");
    let before = seen().or_fail("child: reading its credentials");
    c.same("child: no capabilities left after the uid change", &0, &before.caps.effective);
    link.send("ready\n").or_fail("child: ready");
    let go = link.line();
    let parents = go.as_deref().ok().and_then(|l| l.strip_prefix("go ")).map(str::to_string);
    c.check(parents.is_some(), || format!("child: wake line {go:?}"));
    let mine = raw::ns_link(0, "user").ok();
    c.same("child: its user namespace, its parent's", &parents, &mine);
    check_after(&mut c, "child", &before, outside, owned_kinds(with_net));
    let denied = raw::set_uts_names(HOST, "").map_err(|e| e.raw_os_error());
    c.same("child: sethostname without capabilities", &Err(Some(libc::EPERM)), &denied);
    link.report(c)
}
