//! Memory state of the whole address space rather than of one area: `mlockall(MCL_FUTURE)` (with
//! `MCL_ONFAULT`), KSM's merge-any mode (`prctl(PR_SET_MEMORY_MERGE)`) and the `membarrier`
//! registrations.
//!
//! Dump: `MCL_FUTURE` has no getter; it shows as `lo` (and `lf`) on every area mapped after it,
//! so on the scratch area the dump itself mapped. Merge-any is `ksm_merge_any` in
//! `/proc/PID/ksm_stat`. The registrations come from an injected
//! `membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)` (Linux 6.3).
//! Restore sets them last, after the process has forked its children (a child inherits
//! registrations and merge-any through fork, and must have only its own) and mapped all it maps.

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::MmImage;
use stasis_sys::inject::{InjectError, Injector};
use stasis_sys::remote::{Prctl, Remote};
use stasis_sys::Pid;

const MCL_FUTURE: u32 = 2;
const MCL_ONFAULT: u32 = 4;
const MEMBARRIER_CMD_GET_REGISTRATIONS: u32 = 1 << 9;
/// The `MEMBARRIER_CMD_REGISTER_*` commands: global expedited, private expedited, its sync-core
/// and rseq flavours.
const MEMBARRIER_REGISTER: [u32; 4] = [1 << 2, 1 << 4, 1 << 6, 1 << 8];

/// Fill the mm-wide fields of `mm` for the stopped process `pid` (through its injector, whose
/// scratch area may have merged with a neighbour of the same flags: the area holding it is read).
pub fn dump(inj: &mut Injector, root: &ProcRoot, pid: Pid, mm: &mut MmImage) -> Result<()> {
    let scratch = inj.scratch().0;
    let area = proc::smaps_at(root, pid.0, scratch)?.ok_or_else(|| Error::Failed {
        pid,
        what: format!("no area holds the scratch area at {scratch:#x} in smaps"),
    })?;
    if area.vm_flags.has("lo") {
        mm.mlock_future = MCL_FUTURE | if area.vm_flags.has("lf") { MCL_ONFAULT } else { 0 };
    }
    mm.ksm_merge_any = ksm_merge_any(root, pid)?;
    mm.membarrier = match inj.membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) {
        Ok(mask) => mask as u32,
        Err(InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            return Err(Error::Unsupported {
                pid,
                what: "a kernel without MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3): its membarrier registrations cannot be read".into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(bit) = (0..32).map(|b| 1u32 << b).find(|b| mm.membarrier & b != 0 && !MEMBARRIER_REGISTER.contains(b)) {
        return Err(Error::Unsupported { pid, what: format!("membarrier registration {bit:#x}") });
    }
    Ok(())
}

/// `ksm_merge_any: yes` in `/proc/PID/ksm_stat` (absent without KSM: no).
fn ksm_merge_any(root: &ProcRoot, pid: Pid) -> Result<bool> {
    let path = root.pid_path(pid.0, "ksm_stat");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().any(|l| l.split_whitespace().eq(["ksm_merge_any:", "yes"]))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path)(e)),
    }
}

/// Set the mm-wide state of `mm` again, once the process maps all it will and has its children.
pub fn restore(inj: &mut dyn Remote, mm: &MmImage) -> Result<()> {
    for bit in MEMBARRIER_REGISTER.into_iter().filter(|b| mm.membarrier & b != 0) {
        inj.membarrier(bit)?;
    }
    if mm.ksm_merge_any {
        inj.prctl(Prctl::SetMemoryMerge(true))?;
    }
    if mm.mlock_future != 0 {
        inj.mlockall(mm.mlock_future as i32)?;
    }
    Ok(())
}
