//! SysV semaphore sets and message queues of a tree in an IPC namespace of its own: every one of
//! the namespace's belongs to the tree. Dump saves each with its key, id, owner, permissions and
//! contents (every semaphore's value; a queue's byte limit and every message's type and text in
//! order, copied without consuming them by `msgrcv(MSG_COPY)`). Restore, in the new IPC namespace,
//! makes each again with its id (`/proc/sys/kernel/{sem,msg}_next_id`), after setting the
//! namespace's SysV limits (`msgmax`, `sem`, `shmmax`...) to those of the dump.
//!
//! Not restored, as the kernel gives no way to set them: the times of the last operations and
//! changes, the creator's uid/gid (the restorer's), the last pids. Per-process undo lists
//! (`SEM_UNDO`) are not saved: the kernel shows no process's adjustments (kcmp(KCMP_SYSVSEM) tells
//! only whether two processes share a list, not whether it is empty), so a tree that holds undo
//! adjustments at the dump has none after the restore: its exit no longer reverts them.
//!
//! In stasis's own IPC namespace nothing ties a set or a queue to a process: they are left alone.

use crate::error::{Error, Result};
use stasis_image::model::{MsgQueue, SemSet, Sysctl, SysvMessage};
use stasis_sys::{ipc, Pid};

const SEM_LIST: &str = "/proc/sysvipc/sem";
const MSG_LIST: &str = "/proc/sysvipc/msg";
const SEM_NEXT_ID: &str = "/proc/sys/kernel/sem_next_id";
const MSG_NEXT_ID: &str = "/proc/sys/kernel/msg_next_id";

/// The SysV limits of an IPC namespace, in `/proc/sys/kernel`.
const LIMITS: [&str; 8] = ["msgmax", "msgmnb", "msgmni", "sem", "shmmax", "shmall", "shmmni", "shm_rmid_forced"];

/// The limits of the calling thread's IPC namespace.
pub fn dump_limits() -> Result<Vec<Sysctl>> {
    let read = |name: &str| {
        let path = format!("/proc/sys/kernel/{name}");
        let value = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        Ok(Sysctl { path: name.to_string(), value: value.trim().to_string() })
    };
    LIMITS.iter().map(|n| read(n)).collect()
}

/// The limits set in the calling thread's (new) IPC namespace, before its objects are made.
pub fn restore_limits(limits: &[Sysctl]) -> Result<()> {
    for l in limits {
        if !LIMITS.contains(&l.path.as_str()) {
            return Err(Error::Incompatible {
                file: "ipc.img".into(),
                what: format!("unknown IPC limit {:?}", l.path),
            });
        }
        let path = format!("/proc/sys/kernel/{}", l.path);
        // A fresh namespace has the defaults: most limits are written only when changed (in an IPC
        // namespace of a user namespace, only the namespace's root or CAP_SYS_RESOURCE may).
        if std::fs::read_to_string(&path).is_ok_and(|now| now.trim() == l.value.trim()) {
            continue;
        }
        std::fs::write(&path, &l.value).map_err(Error::io(&path))?;
    }
    Ok(())
}

/// The ids (second column) in a `/proc/sysvipc` list.
fn ids(list: &str) -> Result<Vec<i32>> {
    let text = std::fs::read_to_string(list).map_err(Error::io(list))?;
    Ok(text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect())
}

/// Every semaphore set of the calling thread's IPC namespace.
pub fn dump_sems(root_pid: i32) -> Result<Vec<SemSet>> {
    let mut out = Vec::new();
    for id in ids(SEM_LIST)? {
        let st = ipc::sem_stat(id).map_err(sys_err(root_pid, format!("reading SysV semaphore set {id}")))?;
        let values = ipc::sem_values(id, st.nsems)
            .map_err(sys_err(root_pid, format!("reading SysV semaphore set {id}'s values")))?;
        let values = values.into_iter().map(u32::from).collect();
        out.push(SemSet { key: st.key, id, mode: st.mode & 0o777, uid: st.uid, gid: st.gid, values });
    }
    Ok(out)
}

/// Every message queue of the calling thread's IPC namespace, with its messages.
pub fn dump_msgs(root_pid: i32) -> Result<Vec<MsgQueue>> {
    let mut out = Vec::new();
    for id in ids(MSG_LIST)? {
        let st = ipc::msg_stat(id).map_err(sys_err(root_pid, format!("reading SysV message queue {id}")))?;
        let messages = (0..st.qnum).map(|i| copy_message(root_pid, id, i, st.cbytes)).collect::<Result<_>>()?;
        let (key, mode, uid, gid, qbytes) = (st.key, st.mode & 0o777, st.uid, st.gid, st.qbytes);
        out.push(MsgQueue { key, id, mode, uid, gid, qbytes, messages });
    }
    Ok(out)
}

/// Message `index` of queue `id`, left in place; no message is longer than the queue's `cbytes`.
fn copy_message(root_pid: i32, id: i32, index: u64, cbytes: u64) -> Result<SysvMessage> {
    match ipc::msg_copy(id, index, cbytes as usize) {
        Ok((mtype, text)) => Ok(SysvMessage { mtype, text }),
        Err(e) if e.errno() == libc::ENOSYS => Err(Error::Unsupported {
            pid: Pid(root_pid),
            what: format!(
                "SysV message queue {id} with messages on a kernel without msgrcv(MSG_COPY) \
                 (CONFIG_CHECKPOINT_RESTORE)"
            ),
        }),
        Err(e) => Err(sys_err(root_pid, format!("copying message {index} of SysV message queue {id}"))(e)),
    }
}

/// Sets and queues made by a restore; removed again if it fails.
#[derive(Default)]
pub struct Made {
    sems: Vec<i32>,
    msgs: Vec<i32>,
    done: bool,
}

impl Made {
    /// The restore went through: keep them.
    pub fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if !self.done {
            self.sems.iter().for_each(|&id| drop(ipc::sem_remove(id)));
            self.msgs.iter().for_each(|&id| drop(ipc::msg_remove(id)));
        }
    }
}

/// Make every set and queue again, in the calling thread's (new) IPC namespace.
pub fn restore(sems: &[SemSet], msgs: &[MsgQueue], root_pid: i32) -> Result<Made> {
    let mut made = Made::default();
    for s in sems {
        let what = format!("making SysV semaphore set {} (key {})", s.id, s.key);
        let id = with_next_id(SEM_NEXT_ID, s.id, || ipc::sem_create(s.key, s.values.len() as u64, 0o600))
            .map_err(sys_err(root_pid, what.clone()))?;
        made.sems.push(id);
        same_id("semaphore set", s.id, id, root_pid)?;
        let values: Vec<u16> = s.values.iter().map(|&v| v as u16).collect();
        ipc::sem_set_values(id, &values)
            .and_then(|()| ipc::sem_set_owner(id, s.uid, s.gid, s.mode))
            .map_err(sys_err(root_pid, what.clone()))?;
    }
    for q in msgs {
        let what = format!("making SysV message queue {} (key {})", q.id, q.key);
        let id = with_next_id(MSG_NEXT_ID, q.id, || ipc::msg_create(q.key, 0o600))
            .map_err(sys_err(root_pid, what.clone()))?;
        made.msgs.push(id);
        same_id("message queue", q.id, id, root_pid)?;
        let fill = || -> std::result::Result<(), stasis_sys::SysError> {
            // The byte limit first: the saved messages may be more than the default limit allows.
            ipc::msg_set(id, 0, 0, 0o600, q.qbytes.max(queued(q)))?;
            q.messages.iter().try_for_each(|m| ipc::msg_send(id, m.mtype, &m.text))?;
            ipc::msg_set(id, q.uid, q.gid, q.mode, q.qbytes)
        };
        fill().map_err(sys_err(root_pid, what.clone()))?;
    }
    Ok(made)
}

fn queued(q: &MsgQueue) -> u64 {
    q.messages.iter().map(|m| m.text.len() as u64).sum()
}

/// `make()` with the namespace's next id set to `id`, reset after.
fn with_next_id(
    knob: &str,
    id: i32,
    make: impl FnOnce() -> std::result::Result<i32, stasis_sys::SysError>,
) -> std::result::Result<i32, stasis_sys::SysError> {
    std::fs::write(knob, id.to_string()).map_err(|e| stasis_sys::SysError { call: "writing *_next_id", source: e })?;
    let made = make();
    let _ = std::fs::write(knob, "-1");
    made
}

fn same_id(what: &str, want: i32, got: i32, root_pid: i32) -> Result<()> {
    if want == got {
        return Ok(());
    }
    Err(Error::Failed { pid: Pid(root_pid), what: format!("SysV {what} {want} was created as {got}") })
}

/// A failed call on a named object: the error names the object and the call.
fn sys_err(root_pid: i32, what: String) -> impl FnOnce(stasis_sys::SysError) -> Error {
    move |e| Error::Failed { pid: Pid(root_pid), what: format!("{what}: {}: {}", e.call, e.source) }
}
