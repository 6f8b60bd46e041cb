//! Restore, stage by stage: read and check the image, open its files in the controller, create the
//! task with its PID, rebuild its memory, mm fields, fds, signals, timers, limits and credentials by
//! injected calls, then set its registers and let it go. Any error kills the new task: nothing is left
//! behind, stopped or running.

use crate::error::{Error, Result};
use crate::files::{self, FdImporter};
use crate::proc::{self, ProcRoot};
use crate::threads::{self, NewThread};
use crate::{creds, fault, mem, misc, mm, regs, signals, timers};
use crate::{Progress, RestoreOptions, RestoreReport};
use stasis_image::model::{FdTable, FileTable, MmImage, PageMap, ProcessEntry, PsTree, TaskCore};
use stasis_image::{ImageDir, ImageKind};
use stasis_sys::inject::{Injector, SCRATCH_LEN};
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::{process, Pid};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

/// The image of one process, read and checked.
struct Image {
    process: ProcessEntry,
    /// The main thread, with the process-wide state.
    core: TaskCore,
    /// The other threads.
    threads: Vec<TaskCore>,
    mm: MmImage,
    pagemap: PageMap,
    fds: FdTable,
    files: FileTable,
}

/// A restored process, running.
#[derive(Debug)]
pub struct Restored {
    pub report: RestoreReport,
    pid: Pid,
}

impl Restored {
    pub fn pid(&self) -> i32 {
        self.pid.0
    }

    /// Wait for the restored process to end: its exit code, or 128 + the signal that killed it.
    pub fn wait(self) -> Result<i32> {
        loop {
            match ptrace::wait(self.pid).map_err(Error::sys(self.pid.0, "waiting for the restored process"))? {
                WaitStatus::Exited(code) => return Ok(code),
                WaitStatus::Signaled(sig) => return Ok(128 + sig),
                _ => {}
            }
        }
    }

    /// Leave the process running on its own.
    pub fn detach(self) {}
}

/// Kills the process being restored unless defused, and reaps each of its threads: a failed restore
/// leaves nothing behind.
struct KillOnDrop(Option<Pid>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let mut tids: Vec<Pid> =
                proc::threads(&ProcRoot::system(), pid.0).unwrap_or_default().into_iter().map(Pid).collect();
            tids.sort_by_key(|t| *t != pid);
            if tids.is_empty() {
                tids.push(pid);
            }
            let _ = process::kill(pid, libc::SIGKILL);
            crate::task::reap(&tids);
        }
    }
}

pub fn restore(opts: &RestoreOptions, progress: &mut dyn FnMut(Progress)) -> Result<Restored> {
    let start = Instant::now();
    let dir = ImageDir::open(&opts.dir)?;
    let img = load(&dir)?;
    check_cpu(&dir, &img)?;
    let pid = Pid(img.process.pid);
    check_pid_free(pid)?;
    let opened = files::open_all(&img.files.files, opts.shell_job)?;
    let pages = dir.open_pages(pid.0, &img.pagemap)?;
    let verifier = spawn_verifier(&pages, pid, &img.pagemap)?;
    let scratch = scratch_address(&img.mm, pid)?;
    let child = process::spawn_traced(pid).map_err(|e| spawn_error(pid, e))?;
    let mut guard = KillOnDrop(Some(child));
    ptrace::set_sigmask(child, u64::MAX).map_err(Error::sys(pid.0, "blocking signals"))?;
    misc::restore_from_outside(child, &img.core);
    let (inj, threads) = build(child, scratch, &img, &opened, &pages, opts.detached, progress)?;
    verifier.join().map_err(|_| Error::Failed { pid: pid.0, what: "page verification panicked".into() })??;
    release(inj, threads, child, &img)?;
    guard.0 = None;
    let report = RestoreReport { pid: pid.0, total: start.elapsed(), pages: img.pagemap.total_pages };
    Ok(Restored { report, pid: child })
}

/// Stage 1: read every file of the image (checksums are verified on the way).
fn load(dir: &ImageDir) -> Result<Image> {
    let tree: PsTree = dir.read_one(ImageKind::PsTree, None)?;
    let process = match tree.processes.as_slice() {
        [p] => p.clone(),
        ps => {
            return Err(Error::Incompatible {
                file: "pstree.img".into(),
                what: format!("{} processes: only single-process images can be restored yet", ps.len()),
            })
        }
    };
    let pid = Some(process.pid);
    let mut cores: Vec<TaskCore> = dir.read_records(ImageKind::Core, pid)?;
    if cores.is_empty() || cores[0].pid != process.pid || cores.len() != process.threads.len() {
        let what = format!("{} thread records for the {} threads of pstree.img", cores.len(), process.threads.len());
        return Err(Error::Incompatible { file: ImageKind::Core.file_name(pid), what });
    }
    let threads = cores.split_off(1);
    Ok(Image {
        core: cores.remove(0),
        threads,
        mm: dir.read_one(ImageKind::Mm, pid)?,
        pagemap: dir.read_one(ImageKind::PageMap, pid)?,
        fds: dir.read_one(ImageKind::Fds, pid)?,
        files: dir.read_one(ImageKind::Files, None)?,
        process,
    })
}

/// The CPU must have every XSAVE feature the image's register state uses.
fn check_cpu(dir: &ImageDir, img: &Image) -> Result<()> {
    let need = dir.inventory().map_or(0, |i| i.xfeatures) | regs::xstate_features(&img.core.xstate);
    let have = stasis_sys::probe::xfeatures();
    if need & !have != 0 {
        return Err(Error::Incompatible {
            file: "inventory.img".into(),
            what: format!("field xfeatures: the image needs XSAVE features {need:#x}, this CPU has {have:#x}"),
        });
    }
    let want = stasis_sys::probe::xsave_size() as usize;
    for t in std::iter::once(&img.core).chain(&img.threads) {
        if t.xstate.len() != want {
            return Err(Error::Incompatible {
                file: ImageKind::Core.file_name(Some(img.process.pid)),
                what: format!(
                    "thread {}: field xstate: {} bytes, but this CPU's XSAVE area is {want} bytes",
                    t.pid,
                    t.xstate.len()
                ),
            });
        }
    }
    Ok(())
}

fn check_pid_free(pid: Pid) -> Result<()> {
    let root = ProcRoot::system();
    match proc::stat(&root, pid.0) {
        Ok(s) => Err(Error::PidTaken { pid: pid.0, holder: holder(&s) }),
        Err(_) => Ok(()),
    }
}

fn holder(s: &proc::Stat) -> String {
    let zombie = if s.state == 'Z' { ", a zombie its parent has not reaped" } else { "" };
    format!("'{}' (state {}, parent {}{zombie})", s.comm, s.state, s.ppid)
}

fn spawn_error(pid: Pid, e: process::SpawnError) -> Error {
    if let process::SpawnError::Clone { source, .. } = &e {
        if source.errno() == libc::EEXIST {
            let who =
                proc::stat(&ProcRoot::system(), pid.0).map(|s| holder(&s)).unwrap_or_else(|_| "another process".into());
            return Error::PidTaken { pid: pid.0, holder: who };
        }
    }
    Error::Failed { pid: pid.0, what: format!("creating the process: {e}") }
}

/// Check the page data in parallel with the restore; joined before the process is let go.
fn spawn_verifier(pages: &File, pid: Pid, map: &PageMap) -> Result<std::thread::JoinHandle<Result<()>>> {
    let file = pages.try_clone().map_err(Error::io(ImageKind::Pages.file_name(Some(pid.0))))?;
    let map = map.clone();
    let name = ImageKind::Pages.file_name(Some(pid.0));
    Ok(std::thread::spawn(move || Ok(stasis_image::verify_pages(&file, &name, &map)?)))
}

/// A place for the scratch area that is free both in the image's layout and in ours (the new task
/// starts as a copy of us).
fn scratch_address(mm: &MmImage, pid: Pid) -> Result<u64> {
    let mut busy: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    busy.extend(proc::maps(&ProcRoot::system(), std::process::id() as i32)?.iter().map(|e| (e.start, e.end)));
    mem::find_free(&busy, SCRATCH_LEN)
        .ok_or(Error::Failed { pid: pid.0, what: "no free address for the scratch area".into() })
}

/// Stages 3 to 8, in the new task.
fn build(
    child: Pid,
    scratch: u64,
    img: &Image,
    opened: &HashMap<u32, OwnedFd>,
    pages: &File,
    detached: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Injector, Vec<NewThread>)> {
    let vdso = current_vdso(child)?;
    let mut inj = Injector::new(child, vdso, Some(scratch), SCRATCH_LEN)?;
    match build_in(&mut inj, child, img, opened, pages, detached, progress) {
        Ok(threads) => Ok((inj, threads)),
        Err(e) => {
            // The task is about to be killed: no point unmapping anything in it.
            inj.abandon();
            Err(e)
        }
    }
}

fn build_in(
    inj_ref: &mut Injector,
    child: Pid,
    img: &Image,
    opened: &HashMap<u32, OwnedFd>,
    pages: &File,
    detached: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<NewThread>> {
    misc::unregister_inherited_rseq(inj_ref, child)?;
    inj_ref.call("close_range", libc::SYS_close_range, [0, u32::MAX as u64, 0, 0, 0, 0])?;
    let max_fd = img.fds.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    let mut imp = FdImporter::new(inj_ref, max_fd + 1)?;
    restore_memory(inj_ref, &mut imp, child, img, pages, progress)?;
    fault::check("restore-fail-after-memory")?;
    mm::restore(inj_ref, &mut imp, child, &img.mm)?;
    files::install(inj_ref, &mut imp, child, &img.fds, opened)?;
    imp.close(inj_ref)?;
    restore_task_state(inj_ref, child, img, detached)
}

fn current_vdso(pid: Pid) -> Result<(u64, u64)> {
    let maps = proc::maps(&ProcRoot::system(), pid.0)?;
    maps.iter()
        .find(|e| e.name == "[vdso]")
        .map(|e| (e.start, e.end))
        .ok_or(Error::Failed { pid: pid.0, what: "this kernel gave the new process no vDSO".into() })
}

/// Stage 4: layout, pages, final protections.
fn restore_memory(
    inj: &mut Injector,
    imp: &mut FdImporter,
    pid: Pid,
    img: &Image,
    pages: &File,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let filled = mem::with_pages(&img.mm, &img.pagemap);
    mem::restore_layout(inj, imp, pid, &img.mm, &filled)?;
    if let Some(vdso) = mem::vdso_range(&img.mm.vmas) {
        if mem::vdso_checksum(inj, vdso)? != img.mm.vdso_checksum {
            return Err(Error::Failed {
                pid: pid.0,
                what: "this kernel's vDSO differs from the image's: restore on the kernel the image was made on".into(),
            });
        }
    }
    let task_fd = imp.import(inj, pages.as_fd())?;
    mem::pages::fill(inj, task_fd, &img.pagemap, progress)?;
    inj.call("close", libc::SYS_close, [task_fd as u64, 0, 0, 0, 0, 0])?;
    mem::finish_layout(inj, &img.mm, &filled)
}

/// Stages 7 and 8: signals, timers, limits and the rest, the session, queued signals; then the other
/// threads (while the main thread may still make threads with chosen TIDs); then the main thread's
/// credentials.
fn restore_task_state(inj: &mut Injector, pid: Pid, img: &Image, detached: bool) -> Result<Vec<NewThread>> {
    let core = &img.core;
    signals::restore_actions(inj, &core.sigactions)?;
    if let Some(ss) = &core.altstack {
        signals::restore_altstack(inj, ss)?;
    }
    timers::restore(inj, &core.itimers)?;
    misc::restore(inj, core)?;
    restore_session(inj, &img.process)?;
    signals::restore_pending(inj, pid, pid, &core.pending)?;
    let made = create_threads(inj, pid, img, detached)?;
    let rest = restore_main_creds(inj, pid, core, detached);
    if let Err(e) = rest {
        made.into_iter().for_each(NewThread::abandon);
        return Err(e);
    }
    Ok(made)
}

fn restore_main_creds(inj: &mut Injector, pid: Pid, core: &TaskCore, detached: bool) -> Result<()> {
    if let Some(c) = &core.creds {
        creds::restore(inj, pid, c)?;
    }
    misc::restore_after_creds(inj, core, detached)
}

fn create_threads(inj: &mut Injector, pid: Pid, img: &Image, detached: bool) -> Result<Vec<NewThread>> {
    if img.threads.is_empty() {
        return Ok(Vec::new());
    }
    let options = ptrace::OPT_TRACESYSGOOD | ptrace::OPT_EXITKILL | ptrace::OPT_TRACECLONE;
    ptrace::set_options(pid, options).map_err(Error::sys(pid.0, "tracing new threads"))?;
    let vdso = mem::vdso_range(&img.mm.vmas)
        .ok_or(Error::Incompatible { file: ImageKind::Mm.file_name(Some(pid.0)), what: "no [vdso] area".into() })?;
    let mut made = Vec::new();
    for t in &img.threads {
        match threads::create(inj, pid, t, vdso, detached) {
            Ok(n) => made.push(n),
            Err(e) => {
                made.into_iter().for_each(NewThread::abandon);
                return Err(e);
            }
        }
    }
    Ok(made)
}

/// A session or group leader becomes one again; otherwise the process stays in ours (as with
/// `--shell-job`, it joins the session stasis runs in).
fn restore_session(inj: &mut Injector, p: &ProcessEntry) -> Result<()> {
    if p.sid == p.pid {
        inj.call("setsid", libc::SYS_setsid, [0; 6])?;
    } else if p.pgid == p.pid {
        inj.call("setpgid", libc::SYS_setpgid, [0; 6])?;
    }
    Ok(())
}

/// Stage 9: each thread's last injected call removes its scratch area; then registers, mask, and go;
/// the other threads first, the main thread last.
fn release(inj: Injector, threads: Vec<NewThread>, pid: Pid, img: &Image) -> Result<()> {
    for (t, core) in threads.into_iter().zip(&img.threads) {
        t.release(core, img.process.stopped)?;
    }
    inj.finish()?;
    let gp = img.core.regs.clone().unwrap_or_default();
    regs::restore(pid, &gp, &img.core.xstate)?;
    ptrace::set_sigmask(pid, img.core.sigmask).map_err(Error::sys(pid.0, "setting the signal mask"))?;
    let sig = if img.process.stopped { libc::SIGSTOP } else { 0 };
    ptrace::detach(pid, sig).map_err(Error::sys(pid.0, "detaching"))
}
