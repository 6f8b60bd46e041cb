//! Holds something stasis does not support, so that the dump must fail cleanly and leave the
//! process untouched. Argument: `udp` (a bound UDP socket at fd 42 holding
//! bytes under UDP_CORK, sent to itself once uncorked after the wake), `cwd_removed` (a working
//! directory removed after the chdir; it must still be the cwd after the wake), `userfaultfd` (a
//! userfaultfd at fd 43, whose one-time `UFFDIO_API` handshake is done after the wake-up),
//! `sigtrap` (a child with a pending, blocked SIGTRAP: it was traced by us (PTRACE_TRACEME) when
//! it exec'ed, then detached; it must still have it pending and blocked after the wake-up),
//! `timens_children` (a time namespace for our children made by unshare(CLONE_NEWTIME), forked
//! into later: a child forked after the wake-up must see its offset), `timens_child` (a child in
//! such a namespace, ours switched back), `netns_fd` (an fd of a network namespace no process
//! of the tree is in, at fd 45: its only process was killed), `thread` (a second thread; supported now, so used as a
//! checkpoint and restore test) or `child` (a child process; supported too, likewise). After the
//! wake-up the held thing must still work.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

enum Held {
    Udp(UdpSocket),
    Userfault(std::os::fd::OwnedFd),
    Thread(std::thread::JoinHandle<u64>, Arc<AtomicBool>),
    Child(std::process::Child),
    Cwd(u64),
    Trapped(std::process::Child),
    TimeForChildren,
    NetNs(std::fs::File),
}

/// An fd (at 45) of a network namespace whose only process, a child, is gone.
fn orphan_netns() -> Held {
    let child = match raw::fork().or_fail("fork") {
        raw::Forked::Child => {
            let code = if raw::unshare(libc::CLONE_NEWNET).is_ok() { 0 } else { 1 };
            std::thread::sleep(Duration::from_secs(if code == 0 { 1000 } else { 0 }));
            std::process::exit(code)
        }
        raw::Forked::Parent(pid) => pid,
    };
    let ours = std::fs::metadata("/proc/self/ns/net").or_fail("our netns").ino();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let path = format!("/proc/{child}/ns/net");
    while std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(ours) == ours {
        if std::time::Instant::now() > deadline || raw::try_waitpid(child).ok().flatten().is_some() {
            workload::skip("the child could not make a network namespace");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ns = std::fs::File::open(&path).or_fail("open the child's netns");
    let _ = raw::kill(child, libc::SIGKILL);
    let _ = workload::wait_exit_within(child, Duration::from_secs(20));
    let at45 = raw::dup_to(std::os::fd::AsFd::as_fd(&ns), 45).or_fail("dup to 45");
    Held::NetNs(std::fs::File::from(at45))
}

/// The offset of CLOCK_MONOTONIC in the time namespaces the `timens_*` modes make.
const TIMENS_OFFSET_SECS: u64 = 1_000_000;

/// `sigtrap_child`: the child of the `sigtrap` mode, which only sleeps.
fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

/// Whether `pid`'s status line `key` (a signal set in hex) holds SIGTRAP.
fn has_sigtrap(pid: u32, key: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let set = status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("0");
    u64::from_str_radix(set, 16).is_ok_and(|bits| bits & (1 << (libc::SIGTRAP - 1)) != 0)
}

fn trapped_child() -> Held {
    let mut cmd = std::process::Command::new(std::env::current_exe().or_fail("current_exe"));
    cmd.arg("sigtrap_child");
    raw::traced_with_sigtrap_blocked_on_spawn(&mut cmd);
    let child = cmd.spawn().or_fail("spawn the traced child");
    let pid = child.id();
    // Its exec queued the SIGTRAP (blocked: no stop for it); then stop it and let it go.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !has_sigtrap(pid, "ShdPnd:") && !has_sigtrap(pid, "SigPnd:") {
        if std::time::Instant::now() > deadline {
            Err::<(), _>("no SIGTRAP pending after its exec").or_fail("the traced child");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    raw::kill(pid as i32, libc::SIGSTOP).or_fail("SIGSTOP to the traced child");
    raw::wait_stopped_and_detach(pid as i32).or_fail("detach from the traced child");
    workload::say(&format!("CHILD {pid}"));
    Held::Trapped(child)
}

/// A new time namespace for our children, CLOCK_MONOTONIC moved on by [`TIMENS_OFFSET_SECS`].
fn unshare_time() {
    if let Err(e) = raw::unshare(libc::CLONE_NEWTIME) {
        workload::skip(&format!("unshare(CLONE_NEWTIME): {e}"));
    }
    let offsets = format!("monotonic {TIMENS_OFFSET_SECS} 0\n");
    std::fs::write("/proc/self/timens_offsets", offsets).or_fail("write /proc/self/timens_offsets");
}

/// Seconds of CLOCK_MONOTONIC as a child forked now sees them (our `monotonic` mode).
fn child_monotonic() -> u64 {
    let out = std::process::Command::new(std::env::current_exe().or_fail("current_exe"))
        .arg("monotonic")
        .output()
        .or_fail("run a child reading CLOCK_MONOTONIC");
    String::from_utf8_lossy(&out.stdout).trim().parse().or_fail("the child's CLOCK_MONOTONIC")
}

fn monotonic_secs() -> u64 {
    raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime").as_secs()
}

/// A child in a time namespace of its own; ours for children switched back to our own.
fn child_in_timens() -> Held {
    let own = std::fs::File::open("/proc/self/ns/time").or_fail("open /proc/self/ns/time");
    unshare_time();
    let child = std::process::Command::new("sleep").arg("1000").spawn().or_fail("spawn sleep");
    raw::setns(own.as_fd(), libc::CLONE_NEWTIME).or_fail("setns back to our time namespace");
    workload::say(&format!("CHILD {}", child.id()));
    Held::Child(child)
}

fn hold(mode: &str) -> Held {
    match mode {
        "udp" => {
            // Bytes held by UDP_CORK (to itself): what stasis cannot save of a UDP socket.
            let u = UdpSocket::bind("127.0.0.1:0").or_fail("bind");
            raw::set_opt_at(u.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 1).or_fail("UDP_CORK");
            let me = u.local_addr().or_fail("address");
            u.send_to(b"pi", me).and_then(|_| u.send_to(b"ng", me)).or_fail("send");
            let at42 = raw::dup_to(u.as_fd(), 42).or_fail("dup to 42");
            Held::Udp(UdpSocket::from(at42))
        }
        "cwd_removed" => {
            let gone = workload::work_dir().join(format!("gone-{}", std::process::id()));
            std::fs::create_dir(&gone).or_fail("mkdir");
            std::env::set_current_dir(&gone).or_fail("chdir");
            std::fs::remove_dir(&gone).or_fail("rmdir");
            Held::Cwd(std::fs::metadata(".").or_fail("stat the cwd").ino())
        }
        "userfaultfd" => {
            let u = raw::userfaultfd().or_fail("userfaultfd");
            Held::Userfault(raw::dup_to(u.as_fd(), 43).or_fail("dup to 43"))
        }
        "thread" => {
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::channel();
            let flag = stop.clone();
            let handle = std::thread::spawn(move || {
                let _ = tx.send(raw::raw_gettid());
                let mut ticks = 0u64;
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    ticks += 1;
                }
                ticks
            });
            workload::say(&format!("THREAD {}", rx.recv().or_fail("thread tid")));
            Held::Thread(handle, stop)
        }
        "child" => {
            let child = std::process::Command::new("sleep").arg("1000").spawn().or_fail("spawn sleep");
            workload::say(&format!("CHILD {}", child.id()));
            Held::Child(child)
        }
        "sigtrap" => trapped_child(),
        "timens_children" => {
            unshare_time();
            Held::TimeForChildren
        }
        "timens_child" => child_in_timens(),
        "netns_fd" => orphan_netns(),
        other => Err::<Held, _>(other.to_string()).or_fail(
            "unknown mode (udp|cwd_removed|userfaultfd|sigtrap|timens_children|timens_child|netns_fd|thread|child)",
        ),
    }
}

fn verify(c: &mut Checker, held: Held) {
    match held {
        Held::Udp(u) => {
            let mut buf = [0u8; 8];
            u.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
            let uncorked = raw::set_opt_at(u.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 0);
            let echoed = uncorked.and_then(|()| u.recv(&mut buf));
            c.check(matches!(echoed, Ok(4)), || format!("udp socket at fd 42 no longer works: {echoed:?}"));
        }
        Held::Userfault(u) => {
            c.ok("UFFDIO_API on the userfaultfd at fd 43", raw::uffdio_api(u.as_fd()));
        }
        Held::Thread(handle, stop) => {
            c.check(!handle.is_finished(), || "the second thread is gone".into());
            stop.store(true, Ordering::SeqCst);
            let ticks = handle.join();
            c.check(matches!(ticks, Ok(t) if t > 0), || format!("thread result {ticks:?}"));
        }
        Held::Cwd(ino) => {
            let now = std::fs::metadata(".").map(|m| (m.ino(), m.nlink()));
            c.check(matches!(now, Ok((i, 0)) if i == ino), || format!("cwd (inode, links) {now:?}, want ({ino}, 0)"));
        }
        Held::Trapped(mut child) => {
            let pid = child.id();
            let pending = has_sigtrap(pid, "ShdPnd:") || has_sigtrap(pid, "SigPnd:");
            c.check(pending, || format!("pid {pid}: SIGTRAP is no longer pending"));
            c.check(has_sigtrap(pid, "SigBlk:"), || format!("pid {pid}: SIGTRAP is no longer blocked"));
            let state = child.try_wait();
            c.check(matches!(state, Ok(None)), || format!("the traced child is no longer running: {state:?}"));
            let _ = child.kill();
            let _ = child.wait();
        }
        Held::NetNs(ns) => {
            let ino = ns.metadata().map(|m| m.ino()).ok();
            let ours = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
            c.check(ino.is_some() && ino != ours, || format!("the netns fd at 45: inode {ino:?}, ours {ours:?}"));
        }
        Held::TimeForChildren => {
            let (ours, theirs) = (monotonic_secs(), child_monotonic());
            let moved = theirs >= ours + TIMENS_OFFSET_SECS / 2;
            c.check(moved, || {
                format!("a new child's CLOCK_MONOTONIC is {theirs} s, ours {ours} s: not in the namespace")
            });
        }
        Held::Child(mut child) => {
            let state = child.try_wait();
            c.check(matches!(state, Ok(None)), || format!("child is no longer running: {state:?}"));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("sigtrap_child") => sleep_forever(),
        Some("monotonic") => {
            println!("{}", monotonic_secs());
            return;
        }
        _ => {}
    }
    let mut s = workload::start();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let held = hold(&mode);
    s.ready();
    s.wait_for_wake();
    verify(&mut s.checker, held);
    s.finish()
}
