//! The register round trip of the `regs` workload: inline assembly loads known values into the
//! general purpose, x87, MXCSR and vector (AVX-512 or AVX) registers, spins on a memory flag a
//! signal handler sets, then stores every register back for comparison.

use std::mem::offset_of;
use std::sync::atomic::AtomicU8;

/// Register values loaded before and stored after the spin.
#[repr(C, align(64))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RegFile {
    /// rax, rbx, rcx, rbp, r8 .. r15.
    pub gp: [u64; 12],
    /// x87 control word.
    pub fcw: u16,
    _pad0: u16,
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 stack st(7) .. st(0) as f64 bit patterns (pushed in this order).
    pub x87: [u64; 8],
    /// AVX-512 opmask registers k0 .. k7.
    pub k: [u64; 8],
    _pad1: [u64; 3],
    /// zmm0 .. zmm31 (only ymm0 .. ymm15, the first 32 bytes of the first 16, on AVX machines).
    pub vec: [[u8; 64]; 32],
}

impl RegFile {
    /// A register file of zeros.
    pub fn zeroed() -> Self {
        RegFile { gp: [0; 12], fcw: 0, _pad0: 0, mxcsr: 0, x87: [0; 8], k: [0; 8], _pad1: [0; 3], vec: [[0; 64]; 32] }
    }
}

macro_rules! gp_load {
    () => {
        concat!(
            "mov rax, [rdi + 0]\n mov rbx, [rdi + 8]\n mov rcx, [rdi + 16]\n mov rbp, [rdi + 24]\n",
            "mov r8, [rdi + 32]\n mov r9, [rdi + 40]\n mov r10, [rdi + 48]\n mov r11, [rdi + 56]\n",
            "mov r12, [rdi + 64]\n mov r13, [rdi + 72]\n mov r14, [rdi + 80]\n mov r15, [rdi + 88]\n",
        )
    };
}

macro_rules! gp_store {
    () => {
        concat!(
            "mov [rsi + 0], rax\n mov [rsi + 8], rbx\n mov [rsi + 16], rcx\n mov [rsi + 24], rbp\n",
            "mov [rsi + 32], r8\n mov [rsi + 40], r9\n mov [rsi + 48], r10\n mov [rsi + 56], r11\n",
            "mov [rsi + 64], r12\n mov [rsi + 72], r13\n mov [rsi + 80], r14\n mov [rsi + 88], r15\n",
        )
    };
}

/// Loads x87 state and MXCSR from rdi.
macro_rules! fpu_load {
    () => {
        concat!(
            "fninit\n fldcw word ptr [rdi + {fcw}]\n",
            "fld qword ptr [rdi + {x87} + 0]\n fld qword ptr [rdi + {x87} + 8]\n",
            "fld qword ptr [rdi + {x87} + 16]\n fld qword ptr [rdi + {x87} + 24]\n",
            "fld qword ptr [rdi + {x87} + 32]\n fld qword ptr [rdi + {x87} + 40]\n",
            "fld qword ptr [rdi + {x87} + 48]\n fld qword ptr [rdi + {x87} + 56]\n",
            "ldmxcsr dword ptr [rdi + {mxcsr}]\n",
        )
    };
}

/// Stores x87 state and MXCSR to rsi, popping the stack in reverse so the layout matches the input.
macro_rules! fpu_store {
    () => {
        concat!(
            "stmxcsr dword ptr [rsi + {mxcsr}]\n fnstcw word ptr [rsi + {fcw}]\n",
            "fstp qword ptr [rsi + {x87} + 56]\n fstp qword ptr [rsi + {x87} + 48]\n",
            "fstp qword ptr [rsi + {x87} + 40]\n fstp qword ptr [rsi + {x87} + 32]\n",
            "fstp qword ptr [rsi + {x87} + 24]\n fstp qword ptr [rsi + {x87} + 16]\n",
            "fstp qword ptr [rsi + {x87} + 8]\n fstp qword ptr [rsi + {x87} + 0]\n",
        )
    };
}

/// Expands `pre N mid N post` for each register number N, one instruction per line.
macro_rules! per_reg {
    ($pre:literal, $mid:literal, $post:literal; $($n:literal),*) => {
        concat!($($pre, $n, $mid, $n, $post, "\n"),*)
    };
}

/// Spin until `*flag` (rdx) becomes non-zero.
macro_rules! spin {
    () => {
        "2:\n pause\n cmp byte ptr [rdx], 0\n je 2b\n"
    };
}

/// Back to default FPU state and MXCSR, upper vector halves cleared.
macro_rules! reset {
    () => {
        "fninit\n push 0x1f80\n ldmxcsr dword ptr [rsp]\n pop rax\n vzeroupper\n"
    };
}

/// Loads `input` into the registers (zmm0-31 and k0-7), spins until `flag` is set, stores every
/// register into the returned file.
///
/// # Panics
/// If the CPU lacks AVX-512F or AVX-512BW (callers check first).
pub fn spin_with_registers_avx512(input: &RegFile, flag: &AtomicU8) -> RegFile {
    assert!(std::arch::is_x86_feature_detected!("avx512bw"), "no avx512bw");
    let mut out = RegFile::zeroed();
    // SAFETY: rdi/rsi/rdx point to live, suitably sized buffers; rbx and rbp are saved and
    // restored with push/pop; every other register written is declared clobbered (r12-r15
    // explicitly, the rest by clobber_abi; LLVM never allocates zmm16-31, k0-7 or upper vector
    // halves without AVX-512 enabled); the FPU control word, MXCSR and upper vector halves are
    // reset to their defaults before returning. The CPU supports the instructions (checked).
    unsafe {
        std::arch::asm!(
            "push rbx", "push rbp",
            per_reg!("vmovdqu64 zmm", ", [rdi + {v} + 64*", "]";
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
            per_reg!("kmovq k", ", [rdi + {k} + 8*", "]"; 0, 1, 2, 3, 4, 5, 6, 7),
            fpu_load!(),
            gp_load!(),
            spin!(),
            gp_store!(),
            fpu_store!(),
            per_reg!("kmovq [rsi + {k} + 8*", "], k", ""; 0, 1, 2, 3, 4, 5, 6, 7),
            per_reg!("vmovdqu64 [rsi + {v} + 64*", "], zmm", "";
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
            reset!(),
            "pop rbp", "pop rbx",
            in("rdi") input, in("rsi") &mut out, in("rdx") flag,
            v = const offset_of!(RegFile, vec),
            k = const offset_of!(RegFile, k),
            x87 = const offset_of!(RegFile, x87),
            fcw = const offset_of!(RegFile, fcw),
            mxcsr = const offset_of!(RegFile, mxcsr),
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("C"),
        );
    }
    out
}

/// Like [`spin_with_registers_avx512`] for AVX machines: ymm0-15 (into the first 32 bytes of
/// `vec[0..16]`), no opmask registers.
///
/// # Panics
/// If the CPU lacks AVX (callers check first).
pub fn spin_with_registers_avx(input: &RegFile, flag: &AtomicU8) -> RegFile {
    assert!(std::arch::is_x86_feature_detected!("avx"), "no avx");
    let mut out = RegFile::zeroed();
    // SAFETY: as for spin_with_registers_avx512, with AVX instructions only.
    unsafe {
        std::arch::asm!(
            "push rbx", "push rbp",
            per_reg!("vmovdqu ymm", ", [rdi + {v} + 64*", "]";
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            fpu_load!(),
            gp_load!(),
            spin!(),
            gp_store!(),
            fpu_store!(),
            per_reg!("vmovdqu [rsi + {v} + 64*", "], ymm", "";
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            reset!(),
            "pop rbp", "pop rbx",
            in("rdi") input, in("rsi") &mut out, in("rdx") flag,
            v = const offset_of!(RegFile, vec),
            x87 = const offset_of!(RegFile, x87),
            fcw = const offset_of!(RegFile, fcw),
            mxcsr = const offset_of!(RegFile, mxcsr),
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("C"),
        );
    }
    out
}
