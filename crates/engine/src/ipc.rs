//! SysV IPC: the shared memory segments the checkpointed processes have attached or created, with
//! their key, id, size, owner, permissions and contents. Restore makes each again with its id (through
//! `/proc/sys/kernel/shm_next_id`), fills it, and the processes attach it where they had it (see
//! `mem`). Segments of other processes are left alone; semaphore sets and message queues are those
//! of a tree's own IPC namespace (`sysv`).
//!
//! Killing the processes does not remove their segments, so on the machine of the dump a segment is
//! usually still there at restore. One with the same key, id, size, permissions, owner, creator and
//! change time that nobody has attached is the segment itself: restore uses it (writing the saved
//! contents into it, which is what the processes had at the dump) instead of refusing. Any other
//! segment holding the id or the key makes the restore fail, naming both.

use crate::error::{Error, Result};
use stasis_image::model::{IpcImage, ShmSegment};
use stasis_sys::{ipc, Pid};

const SHM_LIST: &str = "/proc/sysvipc/shm";
const SEM_LIST: &str = "/proc/sysvipc/sem";
const MSG_LIST: &str = "/proc/sysvipc/msg";
const SHM_NEXT_ID: &str = "/proc/sys/kernel/shm_next_id";
/// A segment removed (IPC_RMID) while still attached.
const SHM_DEST: u32 = 0o1000;
/// Contents live in `ipc.img`, whose records are bounded.
const MAX_SEGMENT: u64 = 32 << 20;

/// One line of `/proc/sysvipc/shm`.
struct Listed {
    key: i32,
    id: i32,
    mode: u32,
    size: u64,
    cpid: i32,
    nattch: u64,
    uid: u32,
    gid: u32,
    ctime: i64,
}

fn listed() -> Result<Vec<Listed>> {
    let text = std::fs::read_to_string(SHM_LIST).map_err(Error::io(SHM_LIST))?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
        let (Some(key), Some(id), Some(size), Some(cpid), Some(nattch), Some(uid), Some(gid), Some(ctime)) =
            (num(0), num(1), num(3), num(4), num(6), num(7), num(8), num(13))
        else {
            continue;
        };
        let Some(mode) = f.get(2).and_then(|m| u32::from_str_radix(m, 8).ok()) else { continue };
        let (key, id, size, cpid, nattch) = (key as i32, id as i32, size as u64, cpid as i32, nattch as u64);
        out.push(Listed { key, id, mode, size, cpid, nattch, uid: uid as u32, gid: gid as u32, ctime });
    }
    Ok(out)
}

/// The SysV objects (segments, semaphore sets, message queues) of the calling thread's IPC
/// namespace.
pub fn count_objects() -> Result<usize> {
    let mut n = 0;
    for list in [SHM_LIST, SEM_LIST, MSG_LIST] {
        let text = std::fs::read_to_string(list).map_err(Error::io(list))?;
        n += text.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    }
    Ok(n)
}

/// The segments attached by (`attached` ids) or created by (`pids`) the checkpointed processes;
/// with `whole_ns` (the tree has an IPC namespace of its own, which the calling thread is in),
/// every segment, semaphore set and message queue of the namespace (see `sysv`).
pub fn dump(root_pid: i32, pids: &[i32], attached: &[u64], whole_ns: bool) -> Result<IpcImage> {
    let mut shm = Vec::new();
    for l in listed()? {
        if !whole_ns && !attached.contains(&(l.id as u64)) && !pids.contains(&l.cpid) {
            continue;
        }
        if l.size > MAX_SEGMENT {
            let what = format!("SysV shared memory segment {} of {} bytes (over {MAX_SEGMENT})", l.id, l.size);
            return Err(Error::Unsupported { pid: Pid(root_pid), what });
        }
        let content =
            ipc::shm_read(l.id, l.size).map_err(Error::sys(root_pid, "reading a SysV shared memory segment"))?;
        let (key, id, size, mode, uid, gid, cpid, ctime) = (l.key, l.id, l.size, l.mode, l.uid, l.gid, l.cpid, l.ctime);
        shm.push(ShmSegment { key, id, size, mode, uid, gid, content, cpid, ctime });
    }
    let (sem, msg, limits) = if whole_ns {
        (crate::sysv::dump_sems(root_pid)?, crate::sysv::dump_msgs(root_pid)?, crate::sysv::dump_limits()?)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    Ok(IpcImage { shm, sem, msg, limits })
}

/// Segments made by a restore; removed again if it fails. Segments found in place are not removed.
pub struct Made {
    ids: Vec<i32>,
    done: bool,
    /// The semaphore sets and message queues made.
    sysv: Option<crate::sysv::Made>,
}

/// Make every segment again with its id, contents, owner and permissions, or use the segment itself
/// where the dump left it (see the module docs).
pub fn restore(img: &IpcImage, root_pid: i32) -> Result<Made> {
    let mut made = Made { ids: Vec::new(), done: false, sysv: None };
    let existing = listed()?;
    for s in &img.shm {
        match existing.iter().find(|e| e.id == s.id || (s.key != 0 && e.key == s.key)) {
            Some(e) => reuse(s, e, root_pid)?,
            None => create(s, root_pid, &mut made)?,
        }
    }
    made.sysv = Some(crate::sysv::restore(&img.sem, &img.msg, root_pid)?);
    Ok(made)
}

/// Why `e`, found here with the id or key of `s`, is not the segment of the dump; None if it is.
fn differs(s: &ShmSegment, e: &Listed) -> Option<String> {
    let checks: [(&str, bool); 8] = [
        ("id", e.id == s.id),
        ("key", e.key == s.key),
        ("size", e.size == s.size),
        ("mode", e.mode & 0o777 == s.mode & 0o777),
        ("owner", (e.uid, e.gid) == (s.uid, s.gid)),
        ("creator pid", s.cpid == 0 || e.cpid == s.cpid),
        ("change time", s.ctime == 0 || e.ctime == s.ctime),
        ("attach count", e.nattch == 0),
    ];
    let bad: Vec<&str> = checks.iter().filter(|(_, same)| !same).map(|(what, _)| *what).collect();
    if bad.is_empty() {
        return None;
    }
    Some(if e.nattch != 0 && bad.len() == 1 {
        format!("attached by {} processes", e.nattch)
    } else {
        format!("another segment: its {} differ", bad.join(", "))
    })
}

/// The segment of the dump, still here: filled with the saved contents.
fn reuse(s: &ShmSegment, e: &Listed, root_pid: i32) -> Result<()> {
    if let Some(why) = differs(s, e) {
        let what = format!(
            "SysV shared memory segment {} (key {}) is taken here by id {} (key {}): {why}",
            s.id, s.key, e.id, e.key
        );
        return Err(Error::Failed { pid: Pid(root_pid), what });
    }
    log::info!("SysV segment {} (key {}) is still here, unattached: using it", s.id, s.key);
    ipc::shm_write(s.id, &s.content).map_err(Error::sys(root_pid, "filling a SysV shared memory segment"))
}

fn create(s: &ShmSegment, root_pid: i32, made: &mut Made) -> Result<()> {
    std::fs::write(SHM_NEXT_ID, s.id.to_string()).map_err(Error::io(SHM_NEXT_ID))?;
    let id = ipc::shm_create(s.key, s.size, s.mode);
    let _ = std::fs::write(SHM_NEXT_ID, "-1");
    let id = id.map_err(Error::sys(root_pid, "creating a SysV shared memory segment"))?;
    made.ids.push(id);
    if id != s.id {
        return Err(Error::Failed { pid: Pid(root_pid), what: format!("SysV segment {} was created as {id}", s.id) });
    }
    let fill = ipc::shm_write(id, &s.content).and_then(|()| ipc::shm_set_owner(id, s.uid, s.gid, s.mode));
    fill.map_err(Error::sys(root_pid, "filling a SysV shared memory segment"))
}

impl Made {
    /// Once every process has attached its segments: remove again those that had been removed while
    /// attached.
    pub fn finish(mut self, img: &IpcImage) {
        self.done = true;
        if let Some(sysv) = self.sysv.take() {
            sysv.keep();
        }
        for s in img.shm.iter().filter(|s| s.mode & SHM_DEST != 0) {
            if let Err(e) = ipc::shm_remove(s.id) {
                log::warn!("SysV segment {}: could not mark it removed again: {e}", s.id);
            }
        }
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if !self.done {
            for &id in &self.ids {
                let _ = ipc::shm_remove(id);
            }
        }
    }
}
