//! Pidfds keep the process they refer to and their flags: one of a running child (`sleep`), one of
//! the process itself (PIDFD_NONBLOCK), a thread pidfd (PIDFD_THREAD) of the main thread, one of a
//! child that exited and is not reaped yet (a zombie of the tree), and one of a child already
//! reaped (`Pid: -1`). After the wake-up: fdinfo shows the same pids; the zombie's and the reaped
//! child's pidfds are readable (exited); the running child is killed through its pidfd and is then
//! reaped as killed by SIGKILL; the zombie is reaped with status 0.
//!
//! A forked child inherits the pidfd of the process (one description in two processes, naming the
//! child's parent), and opens a pidfd of its younger sibling (made after it: restore installs it in
//! a last pass); woken through its own pidfd with SIGUSR2, it checks that the pidfd names its
//! parent, is non-blocking and is still the parent's description (`kcmp`), that the other names its
//! sibling, kills the sibling through it, and exits 0 if all went well (its exit code and the
//! sibling's death are checked). With the argument `outside`, the process also holds a pidfd of pid 1 at
//! fd 44, which the dump must refuse.
//!
//! Pidfds of one reaped process are one pidfs inode: the process holds two descriptions (two
//! `pidfd_open`) of the reaped child, and one of another reaped child of which the forked child
//! holds a description of its own (at fd 50); after the wake-up each pair has one inode (`fstat`,
//! and `stat` of `/proc/CHILD/fd/50`).

use stasis_tests::raw::{self, Forked, SigSet};
use stasis_tests::workload::{self, fdinfo_field, OrFail};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

/// Wait for SIGUSR2 (again after the EINTR a checkpoint's freeze causes); its `sigqueue` value.
fn wait_usr2() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match raw::sigtimedwait(SigSet::of(&[libc::SIGUSR2]), left) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Ok(info) => return info.value,
            Err(_) => std::process::exit(2),
        }
    }
}

/// The forked child A. The first SIGUSR2 carries the pid of its younger sibling B: A opens a pidfd
/// of it and tells its parent (SIGUSR2). After the restore, the second SIGUSR2: A checks the pidfd
/// `fd` it inherited names its parent, is non-blocking (else exit code 1) and is the same
/// description as the parent's (`kcmp`, else 3), and that its pidfd of B names B (else 4); then it
/// kills B through that pidfd (else 5). Exit code 0 if all hold.
fn child(fd: &OwnedFd) -> ! {
    let pids = wait_usr2();
    let (sibling, gone) = ((pids >> 32) as i32, pids as u32 as i32);
    let sibling_fd = raw::pidfd_open(sibling, 0).unwrap_or_else(|_| std::process::exit(6));
    let gone_fd = raw::pidfd_open(gone, 0).unwrap_or_else(|_| std::process::exit(7));
    let _gone_fd = raw::dup_to(gone_fd.as_fd(), GONE_FD).unwrap_or_else(|_| std::process::exit(7));
    drop(gone_fd);
    let _ = raw::kill(raw::raw_getppid(), libc::SIGUSR2);
    wait_usr2();
    let names_parent = pid_of(fd) == Some(raw::raw_getppid().to_string());
    let nonblock = raw::get_fl(fd.as_fd()).unwrap_or(0) & libc::O_NONBLOCK != 0;
    let (me, parent, n) = (raw::raw_getpid(), raw::raw_getppid(), fd.as_raw_fd());
    let shared = raw::kcmp_files(me, parent, n, n).ok() == Some(0);
    let names_sibling = pid_of(&sibling_fd) == Some(sibling.to_string());
    let killed = raw::pidfd_send_signal(sibling_fd.as_fd(), libc::SIGKILL).is_ok();
    let code = [(!names_parent || !nonblock, 1), (!shared, 3), (!names_sibling, 4), (!killed, 5)]
        .iter()
        .find_map(|&(bad, code)| bad.then_some(code));
    std::process::exit(code.unwrap_or(0))
}

/// Where the forked child holds its pidfd of the reaped child it shares with its parent.
const GONE_FD: i32 = 50;

/// The inode of the file at `path` (a pidfd through `/proc/PID/fd/N`), or of our pidfd `fd`.
fn ino_of(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

fn fd_ino(fd: &OwnedFd) -> Option<u64> {
    ino_of(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Wait up to 10 s for `pid` to exit.
fn wait_exit(pid: i32) -> Option<raw::Exit> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(exit)) = raw::try_waitpid(pid) {
            return Some(exit);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn pid_of(fd: &OwnedFd) -> Option<String> {
    fdinfo_field(fd.as_raw_fd(), "Pid")
}

fn main() {
    let mut s = workload::start();
    let outside = workload::mode(1, &["outside"]).is_some();
    let mut running = Command::new("sleep").arg("1000").spawn().or_fail("spawn sleep");
    let running_fd = raw::pidfd_open(running.id() as i32, 0).or_fail("pidfd of sleep");
    let self_fd = raw::pidfd_open(s.pid(), libc::O_NONBLOCK as u32).or_fail("pidfd of self");
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[libc::SIGUSR2])).or_fail("block SIGUSR2");
    let forked = match raw::fork().or_fail("fork") {
        Forked::Child => child(&self_fd),
        Forked::Parent(pid) => pid,
    };
    let forked_fd = raw::pidfd_open(forked, 0).or_fail("pidfd of the forked child");
    let younger = match raw::fork().or_fail("fork") {
        Forked::Child => loop {
            std::thread::sleep(Duration::from_secs(1000));
        },
        Forked::Parent(pid) => pid,
    };
    let mut gone = Command::new("true").spawn().or_fail("spawn true");
    let gone_fd = raw::pidfd_open(gone.id() as i32, 0).or_fail("pidfd of true");
    let pids = (younger as u64) << 32 | gone.id() as u64;
    raw::sigqueue(forked, libc::SIGUSR2, pids).or_fail("tell the child its sibling and the short-lived child");
    raw::sigtimedwait(SigSet::of(&[libc::SIGUSR2]), Duration::from_secs(10))
        .or_fail("the child's pidfd of its sibling");
    gone.wait().or_fail("reap true");
    // PIDFD_THREAD is O_EXCL.
    let thread_fd = raw::pidfd_open(s.tid(), libc::O_EXCL as u32).or_fail("thread pidfd of the main thread");
    let mut zombie = Command::new("true").spawn().or_fail("spawn true");
    let zombie_fd = raw::pidfd_open(zombie.id() as i32, 0).or_fail("pidfd of true");
    raw::poll_readable(zombie_fd.as_fd(), 10_000).or_fail("wait for true to exit");
    let mut reaped = Command::new("true").spawn().or_fail("spawn true");
    let reaped_fd = raw::pidfd_open(reaped.id() as i32, 0).or_fail("pidfd of true");
    let reaped_fd2 = raw::pidfd_open(reaped.id() as i32, 0).or_fail("a second pidfd of true");
    reaped.wait().or_fail("reap true");
    let same_inodes = || {
        let theirs = ino_of(&format!("/proc/{forked}/fd/{GONE_FD}"));
        [fd_ino(&reaped_fd) == fd_ino(&reaped_fd2), fd_ino(&gone_fd).is_some() && fd_ino(&gone_fd) == theirs]
    };
    if same_inodes() != [true, true] {
        Err::<(), _>(format!("{:?}", same_inodes())).or_fail("pidfds of one reaped process share an inode");
    }
    let _init_fd = outside.then(|| {
        let fd = raw::pidfd_open(1, 0).or_fail("pidfd of init");
        raw::dup_to(fd.as_fd(), 44).or_fail("dup to 44")
    });
    let before = [pid_of(&running_fd), pid_of(&self_fd), pid_of(&zombie_fd), pid_of(&reaped_fd)];
    workload::say(&format!("CHILD {}", running.id()));
    s.ready();
    s.wait_for_wake();
    let me = s.tid();
    let c = &mut s.checker;
    let after = [pid_of(&running_fd), pid_of(&self_fd), pid_of(&zombie_fd), pid_of(&reaped_fd)];
    c.same("Pid: of the running child, self, the zombie, the reaped child", &before, &after);
    c.same("reaped child's Pid:", &Some("-1".to_string()), &after[3]);
    c.same("Pid: of the second pidfd of the reaped child", &after[3], &pid_of(&reaped_fd2));
    c.same(
        "one inode: two pidfds of a reaped child here; one here and one in the forked child",
        &[true, true],
        &same_inodes(),
    );
    c.same(
        "pidfd of self: O_NONBLOCK",
        &libc::O_NONBLOCK,
        &(raw::get_fl(self_fd.as_fd()).unwrap_or(0) & libc::O_NONBLOCK),
    );
    let excl = raw::get_fl(thread_fd.as_fd()).unwrap_or(0) & libc::O_EXCL;
    c.same("thread pidfd: PIDFD_THREAD (O_EXCL)", &libc::O_EXCL, &excl);
    c.same("thread pidfd: Pid:", &Some(me.to_string()), &pid_of(&thread_fd));
    c.same("pidfd of sleep: O_NONBLOCK", &0, &(raw::get_fl(running_fd.as_fd()).unwrap_or(-1) & libc::O_NONBLOCK));
    c.same("the zombie's pidfd is readable", &Some(true), &raw::poll_readable(zombie_fd.as_fd(), 0).ok());
    c.same("the reaped child's pidfd is readable", &Some(true), &raw::poll_readable(reaped_fd.as_fd(), 0).ok());
    c.same("the running child's pidfd is not readable", &Some(false), &raw::poll_readable(running_fd.as_fd(), 0).ok());
    c.ok("pidfd_send_signal(SIGKILL) to sleep", raw::pidfd_send_signal(running_fd.as_fd(), libc::SIGKILL));
    c.same("sleep's pidfd readable once killed", &Some(true), &raw::poll_readable(running_fd.as_fd(), 10_000).ok());
    let status = running.wait().map(|st| std::os::unix::process::ExitStatusExt::signal(&st));
    c.same("sleep killed by", &Some(libc::SIGKILL), &status.ok().flatten());
    let status = zombie.wait().map(|st| st.code());
    c.same("the zombie's exit code", &Some(0), &status.ok().flatten());
    c.ok("pidfd_send_signal(SIGUSR2) to the forked child", raw::pidfd_send_signal(forked_fd.as_fd(), libc::SIGUSR2));
    let exit = wait_exit(forked);
    c.same(
        "the younger child, killed by its sibling through a pidfd",
        &Some(raw::Exit::Signal(libc::SIGKILL)),
        &wait_exit(younger),
    );
    c.same(
        "the forked child's check of the pidfd it inherited (0: names its parent)",
        &Some(raw::Exit::Code(0)),
        &exit,
    );
    std::thread::sleep(Duration::from_millis(1));
    s.finish()
}
