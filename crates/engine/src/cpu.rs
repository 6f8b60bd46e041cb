//! The CPU a tree ran on: recorded at dump, required at restore as `--cpu-cap` says (CRIU's
//! capabilities). The dump always records everything: the XSAVE features its register state uses
//! (`Inventory.xfeatures`, and each thread's XSAVE area) and the feature flags of `/proc/cpuinfo`
//! (`Inventory.cpu_flags`). Restore checks `fpu`: every XSAVE feature the image uses is enabled here;
//! `cpu`: every flag of the dump's CPU is here too; `ins`: only the flags of instruction-set
//! extensions (what a program's code may use: a restore on a CPU without AVX2 would die of SIGILL
//! in glibc's string functions); `all` the three, `none` none. The default is CRIU 4.2's, `fpu,ins`. Whatever is asked, each
//! thread's XSAVE area must have this CPU's size, or its registers could not be set at all.

use crate::error::{Error, Result};
use crate::regs;
use stasis_image::model::TaskCore;
use stasis_image::{ImageDir, ImageKind};

/// What restore requires of this CPU (`--cpu-cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub fpu: bool,
    pub cpu: bool,
    pub ins: bool,
}

impl Default for Caps {
    /// CRIU 4.2's default, `fpu,ins`.
    fn default() -> Caps {
        Caps { fpu: true, cpu: false, ins: true }
    }
}

impl Caps {
    /// From the bits of CRIU's RPC `cpu_cap` (1 fpu, 2 cpu, 4 ins).
    pub fn from_bits(bits: u32) -> Caps {
        Caps { fpu: bits & 1 != 0, cpu: bits & 2 != 0, ins: bits & 4 != 0 }
    }

    /// As `--cpu-cap` spells it.
    pub fn words(self) -> String {
        let words: Vec<&str> = [(self.fpu, "fpu"), (self.cpu, "cpu"), (self.ins, "ins")]
            .into_iter()
            .filter_map(|(on, w)| on.then_some(w))
            .collect();
        if words.is_empty() {
            "none".into()
        } else {
            words.join(",")
        }
    }
}

impl std::str::FromStr for Caps {
    type Err = String;
    /// A comma-separated list of `fpu`, `cpu`, `ins`, `all`, `none`; empty means the default.
    fn from_str(s: &str) -> std::result::Result<Caps, String> {
        if s.is_empty() {
            return Ok(Caps::default());
        }
        let mut caps = Caps { fpu: false, cpu: false, ins: false };
        for word in s.split(',') {
            match word {
                "fpu" => caps.fpu = true,
                "cpu" => caps.cpu = true,
                "ins" => caps.ins = true,
                "all" => caps = Caps { fpu: true, cpu: true, ins: true },
                "none" => caps = Caps { fpu: false, cpu: false, ins: false },
                other => return Err(format!("{other:?} is not a CPU capability (fpu, cpu, ins, all, none)")),
            }
        }
        Ok(caps)
    }
}

/// The flags of `/proc/cpuinfo` that name instruction-set extensions (x86-64, as Linux 6.18 spells
/// them). A flag not listed (a CPU bug, a virtualisation or power feature) is checked by `cpu` only.
const INSTRUCTION_FLAGS: &[&str] = &[
    "cmov",
    "cx8",
    "cx16",
    "mmx",
    "sse",
    "sse2",
    "pni",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "sse4a",
    "popcnt",
    "abm",
    "aes",
    "pclmulqdq",
    "avx",
    "avx2",
    "f16c",
    "fma",
    "fma4",
    "xop",
    "tbm",
    "bmi1",
    "bmi2",
    "adx",
    "movbe",
    "rdrand",
    "rdseed",
    "lahf_lm",
    "lm",
    "rdtscp",
    "fsgsbase",
    "rdpid",
    "erms",
    "fsrm",
    "fzrm",
    "fsrs",
    "fsrc",
    "clflush",
    "clflushopt",
    "clwb",
    "clzero",
    "wbnoinvd",
    "xsave",
    "xsaveopt",
    "xsavec",
    "xsaves",
    "sha_ni",
    "sha512",
    "sm3",
    "sm4",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_vnni",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vp2intersect",
    "avx_vnni",
    "avx_ifma",
    "avx_ne_convert",
    "avx_vnni_int8",
    "avx_vnni_int16",
    "cmpccxadd",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "amx_complex",
    "movdiri",
    "movdir64b",
    "serialize",
    "cldemote",
    "waitpkg",
    "ptwrite",
    "prefetchi",
    "3dnowprefetch",
    "xgetbv1",
    "lzcnt",
    "hle",
    "rtm",
    "mpx",
];

/// The feature flags of this machine's first CPU in `/proc/cpuinfo` (empty if it cannot be read).
pub fn flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = text.lines().find_map(|l| l.strip_prefix("flags").and_then(|r| r.trim_start().strip_prefix(':')));
    line.map(|l| l.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

/// The flags of `dumped` that `caps` requires and `here` lacks.
pub fn missing<'a>(dumped: &'a [String], here: &[String], caps: Caps) -> Vec<&'a str> {
    let required = |f: &str| caps.cpu || (caps.ins && INSTRUCTION_FLAGS.contains(&f));
    dumped.iter().map(String::as_str).filter(|f| required(f) && !here.iter().any(|h| h == f)).collect()
}

/// Check this CPU against the image: what `caps` asks (see the module docs), and each thread's
/// XSAVE area size in any case. `tasks`: every process's pid with its tasks.
pub fn check<'a>(dir: &ImageDir, tasks: impl Iterator<Item = (i32, Vec<&'a TaskCore>)>, caps: Caps) -> Result<()> {
    let have = stasis_sys::probe::xfeatures();
    let want = stasis_sys::probe::xsave_size() as usize;
    let inventory = dir.inventory();
    let incompatible = |file: String, what: String| Error::Incompatible { file, what };
    if caps.cpu || caps.ins {
        let dumped = inventory.map(|i| i.cpu_flags.as_slice()).unwrap_or_default();
        let lacking = missing(dumped, &flags(), caps);
        if !lacking.is_empty() {
            let what = format!("field cpu_flags: this CPU lacks {} of the dump's CPU (--cpu-cap)", lacking.join(" "));
            return Err(incompatible("inventory.img".into(), what));
        }
    }
    for (pid, threads) in tasks {
        let need =
            inventory.map_or(0, |i| i.xfeatures) | threads.first().map_or(0, |t| regs::xstate_features(&t.xstate));
        if caps.fpu && need & !have != 0 {
            let what = format!("field xfeatures: the image needs XSAVE features {need:#x}, this CPU has {have:#x}");
            return Err(incompatible("inventory.img".into(), what));
        }
        if let Some(t) = threads.iter().find(|t| t.xstate.len() != want) {
            let what = format!(
                "thread {}: field xstate: {} bytes, but this CPU's XSAVE area is {want} bytes",
                t.pid,
                t.xstate.len()
            );
            return Err(incompatible(ImageKind::Core.file_name(Some(pid)), what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn caps_parse_as_criu_spells_them() {
        assert_eq!("".parse::<Caps>(), Ok(Caps::default()));
        assert_eq!("fpu,ins".parse::<Caps>(), Ok(Caps { fpu: true, cpu: false, ins: true }));
        assert_eq!("all".parse::<Caps>(), Ok(Caps { fpu: true, cpu: true, ins: true }));
        assert_eq!("none".parse::<Caps>(), Ok(Caps { fpu: false, cpu: false, ins: false }));
        assert!("gpu".parse::<Caps>().is_err());
    }

    #[test]
    fn ins_checks_instruction_flags_only_and_cpu_every_flag() {
        let dumped = strings(&["fpu", "avx2", "hypervisor", "sha_ni"]);
        let here = strings(&["fpu", "sha_ni"]);
        let ins = Caps { fpu: false, cpu: false, ins: true };
        assert_eq!(missing(&dumped, &here, ins), vec!["avx2"]);
        let cpu = Caps { fpu: false, cpu: true, ins: false };
        assert_eq!(missing(&dumped, &here, cpu), vec!["avx2", "hypervisor"]);
        assert!(missing(&dumped, &here, Caps { fpu: true, cpu: false, ins: false }).is_empty());
        assert_eq!(missing(&dumped, &here, Caps::default()), vec!["avx2"]);
    }
}
