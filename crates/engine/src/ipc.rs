//! SysV IPC: the shared memory segments the checkpointed processes have attached or created, with
//! their key, id, size, owner, permissions and contents. Restore makes each again with its id (through
//! `/proc/sys/kernel/shm_next_id`), fills it, and the processes attach it where they had it (see
//! `mem`). Segments of other processes are left alone; semaphores and message queues are not handled
//! yet.

use crate::error::{Error, Result};
use stasis_image::model::{IpcImage, ShmSegment};
use stasis_sys::ipc;

const SHM_LIST: &str = "/proc/sysvipc/shm";
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
    uid: u32,
    gid: u32,
}

fn listed() -> Result<Vec<Listed>> {
    let text = std::fs::read_to_string(SHM_LIST).map_err(Error::io(SHM_LIST))?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
        let (Some(key), Some(id), Some(size), Some(cpid), Some(uid), Some(gid)) =
            (num(0), num(1), num(3), num(4), num(7), num(8))
        else {
            continue;
        };
        let Some(mode) = f.get(2).and_then(|m| u32::from_str_radix(m, 8).ok()) else { continue };
        let (key, id, size, cpid) = (key as i32, id as i32, size as u64, cpid as i32);
        out.push(Listed { key, id, mode, size, cpid, uid: uid as u32, gid: gid as u32 });
    }
    Ok(out)
}

/// The segments attached by (`attached` ids) or created by (`pids`) the checkpointed processes.
pub fn dump(root_pid: i32, pids: &[i32], attached: &[u64]) -> Result<IpcImage> {
    let mut shm = Vec::new();
    for l in listed()? {
        if !attached.contains(&(l.id as u64)) && !pids.contains(&l.cpid) {
            continue;
        }
        if l.size > MAX_SEGMENT {
            let what = format!("SysV shared memory segment {} of {} bytes (over {MAX_SEGMENT})", l.id, l.size);
            return Err(Error::Unsupported { pid: root_pid, what });
        }
        let content =
            ipc::shm_read(l.id, l.size).map_err(Error::sys(root_pid, "reading a SysV shared memory segment"))?;
        shm.push(ShmSegment { key: l.key, id: l.id, size: l.size, mode: l.mode, uid: l.uid, gid: l.gid, content });
    }
    Ok(IpcImage { shm })
}

/// Segments made by a restore; removed again if it fails.
pub struct Made {
    ids: Vec<i32>,
    done: bool,
}

/// Make every segment again with its id, contents, owner and permissions.
pub fn restore(img: &IpcImage, root_pid: i32) -> Result<Made> {
    let mut made = Made { ids: Vec::new(), done: false };
    let existing = listed()?;
    for s in &img.shm {
        if let Some(e) = existing.iter().find(|e| e.id == s.id || (s.key != 0 && e.key == s.key)) {
            let what = format!(
                "SysV shared memory segment {} (key {}) is taken here by id {} (key {})",
                s.id, s.key, e.id, e.key
            );
            return Err(Error::Failed { pid: root_pid, what });
        }
        std::fs::write(SHM_NEXT_ID, s.id.to_string()).map_err(Error::io(SHM_NEXT_ID))?;
        let id = ipc::shm_create(s.key, s.size, s.mode);
        let _ = std::fs::write(SHM_NEXT_ID, "-1");
        let id = id.map_err(Error::sys(root_pid, "creating a SysV shared memory segment"))?;
        made.ids.push(id);
        if id != s.id {
            return Err(Error::Failed { pid: root_pid, what: format!("SysV segment {} was created as {id}", s.id) });
        }
        let fill = ipc::shm_write(id, &s.content).and_then(|()| ipc::shm_set_owner(id, s.uid, s.gid, s.mode));
        fill.map_err(Error::sys(root_pid, "filling a SysV shared memory segment"))?;
    }
    Ok(made)
}

impl Made {
    /// Once every process has attached its segments: remove again those that had been removed while
    /// attached.
    pub fn finish(mut self, img: &IpcImage) {
        self.done = true;
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
