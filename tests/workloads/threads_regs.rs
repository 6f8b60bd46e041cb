//! Every thread's registers survive when the dump catches the threads in user space: four threads
//! each load their own known values into the general purpose, x87, MXCSR and vector registers
//! (zmm0-31 and k0-7 with AVX-512, else ymm0-15) with inline assembly and spin on a flag; the main
//! thread waits for the wake-up in sigsuspend, then sets the flag; each thread stores its
//! registers back and the main thread compares them with that thread's input.

use stasis_tests::raw::{self, RegFile};
use stasis_tests::workload::{self, pattern_word, Checker};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const THREADS: usize = 4;

static GO: AtomicU8 = AtomicU8::new(0);
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// Thread `t`'s register values, as far as this CPU has them.
fn input(t: usize, avx512: bool) -> RegFile {
    let seed = 0x1000 * (t as u64 + 1);
    let mut r = RegFile::zeroed();
    for (i, g) in r.gp.iter_mut().enumerate() {
        *g = pattern_word(seed + 0x6e, i);
    }
    r.fcw = [0x0c7f, 0x037f, 0x087f, 0x047f][t % 4]; // rounding and precision differ per thread
    r.mxcsr = [0xdfc0, 0x1f80, 0x3f80, 0x5fc0][t % 4];
    for (i, x) in r.x87.iter_mut().enumerate() {
        *x = (1.5f64 + i as f64 * 1000.25 + t as f64 * 7.0).to_bits();
    }
    for (i, v) in r.vec.iter_mut().enumerate() {
        workload::pattern_fill(v, seed + 0x7a + i as u64);
    }
    if avx512 {
        for (i, k) in r.k.iter_mut().enumerate() {
            *k = pattern_word(seed + 0x6b, i);
        }
    } else {
        for (i, v) in r.vec.iter_mut().enumerate() {
            v[if i < 16 { 32 } else { 0 }..].fill(0);
        }
    }
    r
}

fn spin(t: usize, avx512: bool) -> RegFile {
    let want = input(t, avx512);
    SPINNING.fetch_add(1, Ordering::SeqCst);
    if avx512 {
        raw::spin_with_registers_avx512(&want, &GO)
    } else {
        raw::spin_with_registers_avx(&want, &GO)
    }
}

fn compare(c: &mut Checker, want: &RegFile, got: &RegFile, reg: &str) {
    let names = ["rax", "rbx", "rcx", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    for (i, name) in names.iter().enumerate() {
        c.same(name, &format!("{:#x}", want.gp[i]), &format!("{:#x}", got.gp[i]));
    }
    c.same("x87 control word", &format!("{:#x}", want.fcw), &format!("{:#x}", got.fcw));
    c.same("mxcsr", &format!("{:#x}", want.mxcsr), &format!("{:#x}", got.mxcsr));
    for i in 0..8 {
        let (w, g) = (f64::from_bits(want.x87[i]), f64::from_bits(got.x87[i]));
        c.same(&format!("x87 st({})", 7 - i), &w, &g);
        c.same(&format!("k{i}"), &format!("{:#x}", want.k[i]), &format!("{:#x}", got.k[i]));
    }
    for i in 0..32 {
        let bad = want.vec[i].iter().zip(&got.vec[i]).position(|(a, b)| a != b);
        c.check(bad.is_none(), || format!("{reg}{i} differs from byte {bad:?}: {:02x?}", &got.vec[i][..]));
    }
}

fn main() {
    let mut s = workload::start();
    let avx512 = std::arch::is_x86_feature_detected!("avx512bw");
    if !avx512 && !std::arch::is_x86_feature_detected!("avx") {
        workload::skip("the CPU has no AVX");
    }
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            // The main thread gone means it already failed; nothing is left to tell.
            std::thread::spawn(move || {
                let _ = tx.send((t, spin(t, avx512)));
            })
        })
        .collect();
    while SPINNING.load(Ordering::SeqCst) < THREADS {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the last thread time to get from the counter into its loop.
    std::thread::sleep(Duration::from_millis(50));
    s.ready();
    s.wait_for_wake();
    GO.store(1, Ordering::SeqCst);
    let reg = if avx512 { "zmm" } else { "ymm" };
    for _ in 0..THREADS {
        let Ok((t, got)) = rx.recv_timeout(Duration::from_secs(20)) else {
            s.checker.check(false, || "a thread did not leave its spin loop".into());
            break;
        };
        let mut c = Checker::default();
        compare(&mut c, &input(t, avx512), &got, reg);
        s.checker.absorb(&format!("thread {t}"), c);
    }
    for (t, h) in handles.into_iter().enumerate() {
        let joined = raw::timed_join(h, Duration::from_secs(10));
        s.checker.check(joined.is_ok(), || format!("join of thread {t}: {joined:?}"));
    }
    s.checker.note(format!("vector registers checked: {reg}"));
    s.finish()
}
