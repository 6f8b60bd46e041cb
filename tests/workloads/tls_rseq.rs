//! Segment bases and rseq survive: thread-local variables (read through the fs base) keep their
//! values, the fs and gs bases are unchanged (gs set to a known value), and glibc's rseq
//! registration is in place: the kernel keeps updating the area's cpu_id when the task moves
//! between CPUs, and calling rseq() with glibc's arguments fails with EBUSY.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::cell::{Cell, RefCell};

thread_local! {
    static TL_WORD: Cell<u64> = const { Cell::new(0) };
    static TL_BUF: RefCell<[u8; 4096]> = const { RefCell::new([0; 4096]) };
}

const GS_VALUE: u64 = 0x0000_5a5a_1234_5000;

/// Moves the task across the allowed CPUs and checks rseq's cpu_id follows.
fn check_cpu_id_follows(c: &mut Checker) {
    let Some(cpus) = c.ok("sched_getaffinity", raw::get_affinity()) else { return };
    if cpus.len() < 2 {
        c.note("one CPU only: cpu_id migration check skipped".into());
        return;
    }
    for &cpu in cpus.iter().take(2) {
        if c.ok("sched_setaffinity", raw::set_affinity(&[cpu])).is_none() {
            return;
        }
        std::thread::yield_now();
        let id = raw::rseq_cpu_id();
        c.check(id == Some(cpu as u32), || format!("rseq cpu_id {id:?} on cpu {cpu}: kernel not updating it"));
    }
    c.ok("sched_setaffinity", raw::set_affinity(&cpus));
}

fn main() {
    let mut s = workload::start();
    let Some((area, size)) = raw::glibc_rseq_area() else {
        workload::skip("glibc did not register rseq (__rseq_size is 0)");
    };
    match raw::rseq_probe_glibc() {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        other => workload::skip(&format!("rseq probe before dump gave {other:?}, not EBUSY")),
    }
    TL_WORD.with(|w| w.set(0x7157_7157_7157_7157));
    TL_BUF.with(|b| workload::pattern_fill(&mut b.borrow_mut()[..], 0x71));
    raw::set_gs_base(GS_VALUE).or_fail("arch_prctl(ARCH_SET_GS)");
    let fs = raw::fs_base().or_fail("arch_prctl(ARCH_GET_FS)");
    let tp = raw::thread_pointer();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("thread-local word", &0x7157_7157_7157_7157, &TL_WORD.with(|w| w.get()));
    let buf_ok = TL_BUF.with(|b| workload::pattern_mismatch(&b.borrow()[..], 0x71).is_none());
    c.check(buf_ok, || "thread-local buffer differs".into());
    c.same("fs base", &fs, &raw::fs_base().unwrap_or(0));
    c.same("thread pointer (fs:0)", &tp, &raw::thread_pointer());
    c.same("gs base", &GS_VALUE, &raw::gs_base().unwrap_or(0));
    c.same("glibc rseq area", &Some((area, size)), &raw::glibc_rseq_area());
    check_cpu_id_follows(c);
    match raw::rseq_probe_glibc() {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Ok(()) => c.check(false, || "rseq was not registered after restore (the probe registered it)".into()),
        Err(e) => c.check(false, || format!("rseq probe: {e} (registered with other arguments?)")),
    }
    s.finish()
}
