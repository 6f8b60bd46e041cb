//! The uprobes area (`[uprobes]`): the page the kernel maps into a process the first time one of
//! its uprobes is hit, to run probed instructions out of line and to hold the return trampoline of
//! return probes. The kernel makes it again by itself the next time a probe is hit, so it is never
//! saved as memory (its kind is [`VmaKind::Uprobes`], one of the special areas).
//!
//! As CRIU does, a process that has one is dumped only with `--allow-uprobes`, and an image that
//! has one is restored only with it: the probes are the caller's, and the breakpoints they wrote
//! into the process's code are saved with its pages, so they must still be registered when it
//! runs again. Refused by name even then: a thread stopped inside the area (running a probed
//! instruction out of line), and a return address into it on a thread's stack (a return probe's
//! function still running: the restored process would return into a page that is not there).

use crate::error::{Error, Result};
use stasis_image::model::{TaskCore, Vma, VmaKind};
use stasis_sys::Pid;

/// The part of a thread's stack searched for return addresses into the area, above its stack
/// pointer.
const STACK_SCAN: u64 = 1 << 20;

fn area(vmas: &[Vma]) -> Option<&Vma> {
    vmas.iter().find(|v| super::kind(v) == VmaKind::Uprobes)
}

/// Whether an image has a uprobes area in any process (see the module docs).
pub fn any(vmas: &[Vma]) -> bool {
    area(vmas).is_some()
}

/// Check the uprobes area of process `pid` (its areas `vmas`, its threads `tasks`, stopped) at
/// dump; `allow`: `--allow-uprobes`.
pub fn check_dump(pid: Pid, vmas: &[Vma], tasks: &[&TaskCore], allow: bool) -> Result<()> {
    let Some(xol) = area(vmas) else { return Ok(()) };
    let range = format!("{:#x}-{:#x}", xol.start, xol.end);
    let inside = |addr: u64| addr >= xol.start && addr < xol.end;
    if !allow {
        let what = format!("a uprobes area {range} (a uprobe was hit in it), without --allow-uprobes");
        return Err(Error::Unsupported { pid, what });
    }
    let mem = stasis_sys::mem::ProcMem::open(pid).map_err(Error::io(&format!("/proc/{pid}/mem")))?;
    for t in tasks {
        let Some(regs) = &t.regs else { continue };
        if inside(regs.rip) {
            let what = format!("thread {} stopped at {:#x} in the uprobes area {range}", t.pid, regs.rip);
            return Err(Error::Unsupported { pid, what });
        }
        if let Some(at) = return_into(&mem, vmas, regs.rsp, inside) {
            let what = format!(
                "thread {} returns into the uprobes area {range} (a return probe's function is running: stack word at {at:#x})",
                t.pid
            );
            return Err(Error::Unsupported { pid, what });
        }
    }
    Ok(())
}

/// The address of the first word of the stack above `sp` (in its area, at most [`STACK_SCAN`]
/// bytes) that `inside` takes.
fn return_into(mem: &stasis_sys::mem::ProcMem, vmas: &[Vma], sp: u64, inside: impl Fn(u64) -> bool) -> Option<u64> {
    let stack = vmas.iter().find(|v| sp >= v.start && sp < v.end)?;
    let start = sp & !7;
    let len = (stack.end - start).min(STACK_SCAN) as usize;
    let mut buf = vec![0u8; len];
    mem.read(start, &mut buf).ok()?;
    buf.chunks_exact(8)
        .position(|w| inside(u64::from_ne_bytes(w.try_into().expect("8 bytes"))))
        .map(|i| start + 8 * i as u64)
}

/// Refuse to restore an image with a uprobes area without `--allow-uprobes` (`allow`).
pub fn check_restore(pid: i32, vmas: &[Vma], allow: bool) -> Result<()> {
    match area(vmas) {
        Some(xol) if !allow => Err(Error::Incompatible {
            file: format!("mm-{pid}.img"),
            what: format!(
                "pid {pid} had a uprobes area at {:#x}-{:#x}: restore it with --allow-uprobes, its probes still registered",
                xol.start, xol.end
            ),
        }),
        _ => Ok(()),
    }
}
