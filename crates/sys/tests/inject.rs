//! The injection engine on a real process: seize a sleeping `sleep`, make it run system calls, put its
//! registers back, and check it carries on and exits normally.

use stasis_sys::inject::{CallCounter, Injector, SCRATCH_LEN};
use stasis_sys::remote::Remote;
use stasis_sys::{ptrace, Pid};
use std::process::Command;

fn vdso_of(pid: Pid) -> (u64, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps.lines().find(|l| l.ends_with("[vdso]")).expect("a vdso");
    let range = line.split_whitespace().next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap())
}

#[test]
fn injected_calls_run_in_the_task_and_leave_it_intact() {
    let mut child = Command::new("sleep").arg("1").spawn().unwrap();
    let pid = Pid(child.id() as i32);
    std::thread::sleep(std::time::Duration::from_millis(100));
    ptrace::seize(pid, ptrace::OPT_TRACESYSGOOD).unwrap();
    ptrace::interrupt(pid).unwrap();
    assert!(matches!(ptrace::wait(pid).unwrap(), ptrace::WaitStatus::Stopped { .. }));
    let regs = ptrace::get_regs(pid).unwrap();
    let mask = ptrace::get_sigmask(pid).unwrap();
    ptrace::set_sigmask(pid, u64::MAX).unwrap();

    let mut inj = Injector::new(pid, vdso_of(pid), None, SCRATCH_LEN, &CallCounter::new(None)).unwrap();
    assert_eq!(inj.getpid().unwrap(), pid);
    // An injected call that writes into the data area.
    assert_eq!(inj.sigaltstack_get().unwrap().flags, libc::SS_DISABLE);
    let err = inj.close(9999).unwrap_err();
    assert_eq!(err.to_string(), format!("pid {pid}: injected close(9999)"));
    inj.finish().unwrap();

    // nanosleep was interrupted: put the task back as it was, with the restart applied by hand.
    let mut back = regs;
    if back.orig_rax as i64 >= 0 && back.rax as i64 == -516 {
        back.rax = libc::SYS_restart_syscall as u64;
        back.rip -= 2;
    } else if back.orig_rax as i64 >= 0 && (-514..=-512).contains(&(back.rax as i64)) {
        back.rax = back.orig_rax;
        back.rip -= 2;
    }
    ptrace::set_regs(pid, &back).unwrap();
    ptrace::set_sigmask(pid, mask).unwrap();
    ptrace::detach(pid, 0).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "sleep did not carry on: {status:?}");
}

/// A `sleep 5`, seized and interrupted, every signal blocked.
fn seized_sleep() -> (std::process::Child, Pid) {
    let child = Command::new("sleep").arg("5").spawn().unwrap();
    let pid = Pid(child.id() as i32);
    std::thread::sleep(std::time::Duration::from_millis(100));
    ptrace::seize(pid, ptrace::OPT_TRACESYSGOOD).unwrap();
    ptrace::interrupt(pid).unwrap();
    ptrace::wait(pid).unwrap();
    ptrace::set_sigmask(pid, u64::MAX).unwrap();
    (child, pid)
}

#[test]
fn a_parked_task_is_adopted_by_another_thread() {
    let (mut child, pid) = seized_sleep();
    let inj = Injector::new(pid, vdso_of(pid), None, SCRATCH_LEN, &CallCounter::new(None)).unwrap();
    let scratch = inj.scratch();
    let parked = inj.park().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(state.contains(") S "), "a parked task sleeps untraced: {state}");
    // Another thread: ptrace requests for the task now come from it.
    std::thread::spawn(move || {
        let mut inj = parked.adopt(ptrace::OPT_TRACESYSGOOD).unwrap();
        assert_eq!(inj.scratch(), scratch);
        assert_eq!(inj.getpid().unwrap(), pid);
        inj.finish().unwrap();
    })
    .join()
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// `CallCounter` with a fault: the Nth call of the run, whichever injector makes it, fails without
/// running; the others run.
#[test]
fn the_nth_call_of_a_run_fails_when_asked() {
    let (mut child, pid) = seized_sleep();
    let calls = CallCounter::new(Some(3));
    // Call 1: the mmap of the scratch area.
    let mut inj = Injector::new(pid, vdso_of(pid), None, SCRATCH_LEN, &calls).unwrap();
    assert_eq!(inj.getpid().unwrap(), pid);
    let err = inj.umask(0o77).unwrap_err();
    assert!(err.is_fault());
    assert_eq!(err.to_string(), format!("pid {pid}: fault injected at call 3 of this run (umask(63), STASIS_FAULT)"));
    // Not run: the umask is still the one `sleep` had.
    let was = inj.umask(0o22).unwrap();
    inj.umask(was).unwrap();
    assert_ne!(was, 0o77);
    inj.finish().unwrap();
    assert_eq!(calls.count(), 6);
    let _ = child.kill();
    let _ = child.wait();
}

/// Not a test: prints what one injected call costs (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn injected_call_cost() {
    let (mut child, pid) = seized_sleep();
    let mut inj = Injector::new(pid, vdso_of(pid), None, SCRATCH_LEN, &CallCounter::new(None)).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..2000 {
        inj.getpid().unwrap();
    }
    println!("injected getpid: {:?} per call", t.elapsed() / 2000);
    drop(inj);
    let _ = child.kill();
    let _ = child.wait();
}
