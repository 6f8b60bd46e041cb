//! Where injection finds the `syscall` instruction its first and last calls go through: the
//! `[vdso]`, or, in a process that unmapped it, the first `syscall` (0f 05) in one of its own
//! executable areas (any occurrence works: the task stops at the syscall exit, before whatever
//! follows could run).

use crate::error::{Error, Result};
use crate::mem::{is_special, vdso_range};
use crate::proc::{self, ProcRoot};
use stasis_image::model::Vma;
use stasis_sys::mem::ProcMem;
use stasis_sys::Pid;

/// Bytes read at a time while looking for the instruction.
const CHUNK: usize = 64 << 10;

/// A range of `pid` holding a `syscall` instruction, given its areas `vmas`: its `[vdso]`, else the
/// two bytes of the first instruction found in an executable area.
pub fn code_area(pid: Pid, vmas: &[Vma]) -> Result<(u64, u64)> {
    if let Some(vdso) = vdso_range(vmas) {
        return Ok(vdso);
    }
    let exec = vmas.iter().filter(|v| !is_special(v) && v.prot & libc::PROT_EXEC as u32 != 0);
    find(pid, exec.map(|v| (v.start, v.end)))
}

/// Like [`code_area`], from the areas `pid` has now (`/proc/PID/maps`).
pub fn current_code_area(pid: Pid) -> Result<(u64, u64)> {
    let maps = proc::maps(&ProcRoot::system(), pid.0)?;
    if let Some(v) = maps.iter().find(|e| e.name == "[vdso]") {
        return Ok((v.start, v.end));
    }
    let exec = maps.iter().filter(|e| e.prot & libc::PROT_EXEC as u32 != 0 && e.name != "[vsyscall]");
    find(pid, exec.map(|e| (e.start, e.end)))
}

fn find(pid: Pid, areas: impl Iterator<Item = (u64, u64)>) -> Result<(u64, u64)> {
    let mem = ProcMem::open(pid).map_err(Error::io(format!("/proc/{pid}/mem")))?;
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in areas {
        let mut at = start;
        while at + 1 < end {
            let n = ((end - at) as usize).min(CHUNK);
            // An area that cannot be read (a hole in a file mapping past its end) is passed over.
            if mem.read(at, &mut buf[..n]).is_err() {
                break;
            }
            if let Some(i) = buf[..n].windows(2).position(|w| w == [0x0f, 0x05]) {
                return Ok((at + i as u64, at + i as u64 + 2));
            }
            // One byte back, for an instruction across two chunks.
            at += n as u64 - 1;
        }
    }
    Err(Error::Unsupported {
        pid,
        what: "a process with neither a vDSO nor a syscall instruction in its executable areas".into(),
    })
}
