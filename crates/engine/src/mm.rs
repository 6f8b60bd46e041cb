//! The mm fields of a process: code/data/brk/stack/argument/environment bounds, the auxiliary vector
//! and the exe link, all set at once with `prctl(PR_SET_MM, PR_SET_MM_MAP)` (which, unlike the other
//! `PR_SET_MM` options, needs no CAP_SYS_RESOURCE). This is what makes `/proc/PID/{cmdline,environ,exe,
//! auxv}` and `brk()` behave after restore as before.

use crate::error::{Error, Result};
use crate::files::FdImporter;
use crate::proc::{self, ProcRoot};
use stasis_image::model::{MmFields, MmImage};
use stasis_sys::remote::{MmMap, Prctl, Remote};
use stasis_sys::Pid;
use std::os::fd::AsFd;

/// Words of auxv the kernel keeps (`AT_VECTOR_SIZE` on x86_64 is 2 * (2 + 20 + 1 + ...) = 50 ids).
const AUXV_MAX_WORDS: usize = 2 * 64;

/// The mm fields from `/proc/PID/stat`, and the current brk (asked of the task: stat only has its start).
pub fn dump_fields(inj: &mut dyn Remote, root: &ProcRoot, pid: Pid) -> Result<MmFields> {
    let s = proc::stat(root, pid.0)?;
    let brk = inj.brk(0)?;
    Ok(MmFields {
        start_code: s.start_code,
        end_code: s.end_code,
        start_data: s.start_data,
        end_data: s.end_data,
        start_brk: s.start_brk,
        brk,
        start_stack: s.start_stack,
        arg_start: s.arg_start,
        arg_end: s.arg_end,
        env_start: s.env_start,
        env_end: s.env_end,
    })
}

/// Set every mm field, the auxv and the exe link in one `PR_SET_MM_MAP`.
pub fn restore(inj: &mut dyn Remote, imp: &mut FdImporter, pid: Pid, mm: &MmImage) -> Result<()> {
    let f = mm.fields.clone().unwrap_or_default();
    if mm.auxv.len() > AUXV_MAX_WORDS || !mm.auxv.len().is_multiple_of(2) {
        return Err(Error::Incompatible {
            file: format!("mm-{pid}.img"),
            what: format!("field auxv: {} words is not a valid auxiliary vector", mm.auxv.len()),
        });
    }
    let exe = std::fs::File::open(crate::mnt::seen_by(pid, &mm.exe_path)).map_err(|source| Error::Step {
        pid,
        what: format!("the exe link {}", mm.exe_path),
        source: Box::new(Error::Io { path: mm.exe_path.clone().into(), source }),
    })?;
    // A child made by its restored parent already has the right exe link, and the kernel refuses to
    // replace one whose file is still mapped: leave it (-1) when it is the same file.
    let same_exe = same_file(&exe, &format!("/proc/{pid}/exe"));
    let exe_fd = if same_exe { None } else { Some(imp.import(inj, exe.as_fd())?) };
    let map = MmMap {
        start_code: f.start_code,
        end_code: f.end_code,
        start_data: f.start_data,
        end_data: f.end_data,
        start_brk: f.start_brk,
        brk: f.brk,
        start_stack: f.start_stack,
        arg_start: f.arg_start,
        arg_end: f.arg_end,
        env_start: f.env_start,
        env_end: f.env_end,
        auxv: &mm.auxv,
        exe_fd,
    };
    let set = inj.prctl(Prctl::SetMmMap(&map));
    if let Some(fd) = exe_fd {
        inj.close(fd)?;
    }
    set.map_err(|e| Error::Step { pid, what: "the mm fields (PR_SET_MM_MAP)".into(), source: Box::new(e.into()) })?;
    Ok(())
}

/// Whether `file` is the file `path` leads to (same device and inode).
fn same_file(file: &std::fs::File, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
