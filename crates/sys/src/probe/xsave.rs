//! The CPU's XSAVE state: XCR0 (the feature bits the OS enabled for user space) and the size of
//! an XSAVE area, read with `xgetbv` and `cpuid`.

use super::Probed;

pub(super) fn probe_xsave() -> Probed {
    let x = xfeatures();
    if x == 0 {
        return Probed::no("the OS has not enabled XSAVE");
    }
    let names: Vec<&str> =
        XFEATURE_NAMES.iter().filter(|(bit, _)| x & (1 << bit) != 0).map(|&(_, name)| name).collect();
    Probed::yes(format!("XCR0 {x:#x} ({}), area {} bytes", names.join(" "), xsave_size()))
}

/// Names of the user xsave components (Intel SDM vol. 1, 13.1).
const XFEATURE_NAMES: [(u32, &str); 11] = [
    (0, "x87"),
    (1, "sse"),
    (2, "avx"),
    (3, "bndregs"),
    (4, "bndcsr"),
    (5, "opmask"),
    (6, "zmm_hi256"),
    (7, "hi16_zmm"),
    (9, "pkru"),
    (17, "xtilecfg"),
    (18, "xtiledata"),
];

/// XCR0, the xsave feature bits the OS enabled for user space (`xgetbv(0)`); 0 when the CPU or the
/// OS lacks XSAVE. Images record it; restore refuses an image whose features this CPU lacks.
#[cfg(target_arch = "x86_64")]
pub fn xfeatures() -> u64 {
    if !os_xsave() {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CPUID.1:ECX.OSXSAVE is set, so XGETBV with ECX = 0 is a valid instruction here; it
    // reads a register and touches no memory.
    unsafe {
        std::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        );
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// See the x86_64 version; other architectures have no XSAVE.
#[cfg(not(target_arch = "x86_64"))]
pub fn xfeatures() -> u64 {
    0
}

/// Size in bytes of the XSAVE area for the features enabled in XCR0 (CPUID.(0Dh,0):EBX), which is
/// the size of an `NT_X86_XSTATE` register set; 0 without XSAVE.
#[cfg(target_arch = "x86_64")]
pub fn xsave_size() -> u32 {
    if !os_xsave() {
        return 0;
    }
    cpuid(0xd, 0).ebx
}

/// See the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
pub fn xsave_size() -> u32 {
    0
}

/// CPUID.1:ECX bit 27: the OS enabled XSAVE, so XGETBV and leaf 0Dh are usable.
#[cfg(target_arch = "x86_64")]
fn os_xsave() -> bool {
    cpuid(0, 0).eax >= 0xd && cpuid(1, 0).ecx & (1 << 27) != 0
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid_count` is a safe function in newer toolchains
fn cpuid(leaf: u32, sub: u32) -> std::arch::x86_64::CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU and only reads registers.
    unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn xsave_has_x87_and_sse() {
        let x = xfeatures();
        if x == 0 {
            println!("SKIP: the OS has not enabled XSAVE on this CPU");
            return;
        }
        assert_eq!(x & 0b11, 0b11, "XCR0 {x:#x}");
        assert!(xsave_size() >= 576, "xsave area {} bytes", xsave_size());
    }
}
