//! Registers survive: general purpose registers, x87 stack and control word, MXCSR and the vector
//! registers (zmm0-31 and k0-7 with AVX-512, else ymm0-15) are loaded with known values by inline
//! assembly that then spins on a flag the SIGUSR1 handler sets; after the spin every register is
//! stored and compared. The dump catches the task in that user-space loop.

use stasis_tests::raw::{self, RegFile};
use stasis_tests::workload::{self, pattern_word, OrFail, WAKE};

fn input() -> RegFile {
    let mut r = RegFile::zeroed();
    for (i, g) in r.gp.iter_mut().enumerate() {
        *g = pattern_word(0x6e6e, i);
    }
    r.fcw = 0x0c7f; // round toward zero, single precision, all exceptions masked
    r.mxcsr = 0xdfc0; // flush to zero, round up, denormals are zero, all masked
    for (i, x) in r.x87.iter_mut().enumerate() {
        *x = (1.5f64 + i as f64 * 1000.25).to_bits();
    }
    for (i, k) in r.k.iter_mut().enumerate() {
        *k = pattern_word(0x6b6b, i);
    }
    for (i, v) in r.vec.iter_mut().enumerate() {
        workload::pattern_fill(v, 0x7a7a + i as u64);
    }
    r
}

fn main() {
    let mut s = workload::start();
    let avx512 = std::arch::is_x86_feature_detected!("avx512bw");
    if !avx512 && !std::arch::is_x86_feature_detected!("avx") {
        workload::skip("the CPU has no AVX");
    }
    let mut want = input();
    if !avx512 {
        want.k = [0; 8];
        for (i, v) in want.vec.iter_mut().enumerate() {
            let keep = if i < 16 { 32 } else { 0 };
            v[keep..].fill(0);
        }
    }
    raw::sigprocmask(libc::SIG_UNBLOCK, raw::SigSet::of(&[WAKE])).or_fail("unblock SIGUSR1");
    s.ready();
    let got = if avx512 {
        raw::spin_with_registers_avx512(&want, raw::signal_flag(WAKE))
    } else {
        raw::spin_with_registers_avx(&want, raw::signal_flag(WAKE))
    };
    let names = ["rax", "rbx", "rcx", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    for (i, name) in names.iter().enumerate() {
        s.checker.same(name, &format!("{:#x}", want.gp[i]), &format!("{:#x}", got.gp[i]));
    }
    s.checker.same("x87 control word", &format!("{:#x}", want.fcw), &format!("{:#x}", got.fcw));
    s.checker.same("mxcsr", &format!("{:#x}", want.mxcsr), &format!("{:#x}", got.mxcsr));
    for i in 0..8 {
        let (w, g) = (f64::from_bits(want.x87[i]), f64::from_bits(got.x87[i]));
        s.checker.same(&format!("x87 st({})", 7 - i), &w, &g);
        s.checker.same(&format!("k{i}"), &format!("{:#x}", want.k[i]), &format!("{:#x}", got.k[i]));
    }
    let reg = if avx512 { "zmm" } else { "ymm" };
    for i in 0..32 {
        let bad = want.vec[i].iter().zip(&got.vec[i]).position(|(a, b)| a != b);
        s.checker.check(bad.is_none(), || format!("{reg}{i} differs from byte {bad:?}: {:02x?}", &got.vec[i][..]));
    }
    s.checker.note(format!("vector registers checked: {reg}"));
    s.finish()
}
