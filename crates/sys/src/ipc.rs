//! SysV IPC objects as the controller creates, fills, reads and removes them: shared memory
//! segments (shmget(2), shmctl(2), shmat(2), shmdt(2)), semaphore sets (semget(2), semctl(2)) and
//! message queues (msgget(2), msgctl(2), msgrcv(2) with MSG_COPY, msgsnd(2)).

use crate::{check, SysError};

/// `shmget(key, size, IPC_CREAT | IPC_EXCL | mode)`: a new segment; its id.
pub fn shm_create(key: i32, size: u64, mode: u32) -> Result<i32, SysError> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::shmget(key, size as usize, flags) };
    check("shmget", ret as libc::c_long).map(|id| id as i32)
}

/// `shmctl(IPC_SET)`: owner and permission bits.
pub fn shm_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), SysError> {
    // SAFETY: an all-zero shmid_ds is a valid value for the kernel to fill.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live local of the type IPC_STAT writes.
    check("shmctl(IPC_STAT)", unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: `ds` is a live local of the type IPC_SET reads.
    check("shmctl(IPC_SET)", unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) } as libc::c_long).map(drop)
}

/// `shmctl(IPC_RMID)`: the segment goes once nobody has it attached.
pub fn shm_remove(id: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID takes no buffer.
    check("shmctl(IPC_RMID)", unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)
        .map(drop)
}

/// A segment attached in our address space for the duration of a copy.
struct Attached {
    addr: *mut libc::c_void,
}

impl Attached {
    fn new(id: i32, flags: i32) -> Result<Attached, SysError> {
        // SAFETY: the kernel picks the address (NULL); the mapping is ours until shmdt.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(SysError::last("shmat"));
        }
        Ok(Attached { addr })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: `addr` came from shmat and is detached once.
        unsafe { libc::shmdt(self.addr) };
    }
}

/// The first `size` bytes of segment `id` (read-only attach, copy, detach).
pub fn shm_read(id: i32, size: u64) -> Result<Vec<u8>, SysError> {
    let at = Attached::new(id, libc::SHM_RDONLY)?;
    let mut out = vec![0u8; size as usize];
    // SAFETY: the segment is at least `size` bytes (the caller's size comes from the kernel) and stays
    // attached until `at` drops; `out` is a distinct buffer of `size` bytes.
    unsafe { std::ptr::copy_nonoverlapping(at.addr as *const u8, out.as_mut_ptr(), out.len()) };
    Ok(out)
}

/// Write `data` at the start of segment `id` (at most its size: the caller made it that big).
pub fn shm_write(id: i32, data: &[u8]) -> Result<(), SysError> {
    let at = Attached::new(id, 0)?;
    // SAFETY: the caller created the segment with at least `data.len()` bytes; it stays attached
    // until `at` drops; `data` is a distinct buffer.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at.addr as *mut u8, data.len()) };
    Ok(())
}

/// `msgrcv` flag: copy the message at an index without removing it (CONFIG_CHECKPOINT_RESTORE).
const MSG_COPY: i32 = 0o40000;

/// What `semctl(IPC_STAT)` or `msgctl(IPC_STAT)` shows of a semaphore set or a message queue.
#[derive(Debug, Clone, Copy)]
pub struct IpcStat {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// Semaphores in the set; for a queue, 0.
    pub nsems: u64,
    /// For a queue: its byte limit, the bytes and the number of messages in it.
    pub qbytes: u64,
    pub cbytes: u64,
    pub qnum: u64,
}

/// `semctl(IPC_STAT)` of set `id`.
pub fn sem_stat(id: i32) -> Result<IpcStat, SysError> {
    // SAFETY: an all-zero semid_ds is a valid value for the kernel to fill.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT takes a pointer to a live semid_ds (the union semun's `buf`).
    check("semctl(IPC_STAT)", unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    let p = &ds.sem_perm;
    let (key, uid, gid, mode) = (p.__key, p.uid, p.gid, u32::from(p.mode));
    Ok(IpcStat { key, uid, gid, mode, nsems: ds.sem_nsems as u64, qbytes: 0, cbytes: 0, qnum: 0 })
}

/// `semget(key, nsems, IPC_CREAT | IPC_EXCL | mode)`: a new set; its id.
pub fn sem_create(key: i32, nsems: u64, mode: u32) -> Result<i32, SysError> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: plain integer arguments.
    check("semget", unsafe { libc::semget(key, nsems as i32, flags) } as libc::c_long).map(|id| id as i32)
}

/// `semctl(GETALL)`: the value of every semaphore of set `id`, which has `nsems`.
pub fn sem_values(id: i32, nsems: u64) -> Result<Vec<u16>, SysError> {
    let mut out = vec![0u16; nsems as usize];
    // SAFETY: GETALL writes nsems unsigned shorts to `array`, which has room for them.
    check("semctl(GETALL)", unsafe { libc::semctl(id, 0, libc::GETALL, out.as_mut_ptr()) } as libc::c_long)?;
    Ok(out)
}

/// `semctl(SETALL)`: every semaphore's value (`values` has one per semaphore of the set).
pub fn sem_set_values(id: i32, values: &[u16]) -> Result<(), SysError> {
    // SAFETY: SETALL reads nsems unsigned shorts from `array`; the caller made the set that big.
    check("semctl(SETALL)", unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) } as libc::c_long).map(drop)
}

/// `semctl(IPC_SET)`: owner and permission bits.
pub fn sem_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> Result<(), SysError> {
    // SAFETY: an all-zero semid_ds is a valid value for IPC_SET, which reads only sem_perm.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: IPC_SET takes a pointer to a live semid_ds.
    check("semctl(IPC_SET)", unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds) } as libc::c_long).map(drop)
}

/// `semctl(IPC_RMID)`.
pub fn sem_remove(id: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID takes no argument.
    check("semctl(IPC_RMID)", unsafe { libc::semctl(id, 0, libc::IPC_RMID) } as libc::c_long).map(drop)
}

/// `msgctl(IPC_STAT)` of queue `id`.
pub fn msg_stat(id: i32) -> Result<IpcStat, SysError> {
    // SAFETY: an all-zero msqid_ds is a valid value for the kernel to fill.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live local of the type IPC_STAT writes.
    check("msgctl(IPC_STAT)", unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    let p = &ds.msg_perm;
    let (key, uid, gid, mode) = (p.__key, p.uid, p.gid, u32::from(p.mode));
    let (qbytes, cbytes, qnum) = (ds.msg_qbytes as u64, ds.__msg_cbytes, ds.msg_qnum as u64);
    Ok(IpcStat { key, uid, gid, mode, nsems: 0, qbytes, cbytes, qnum })
}

/// `msgget(key, IPC_CREAT | IPC_EXCL | mode)`: a new queue; its id.
pub fn msg_create(key: i32, mode: u32) -> Result<i32, SysError> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: plain integer arguments.
    check("msgget", unsafe { libc::msgget(key, flags) } as libc::c_long).map(|id| id as i32)
}

/// `msgctl(IPC_SET)`: owner, permission bits and byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<(), SysError> {
    // SAFETY: an all-zero msqid_ds is a valid value for IPC_SET, which reads msg_perm and msg_qbytes.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as libc::c_ushort;
    ds.msg_qbytes = qbytes as libc::msglen_t;
    // SAFETY: `ds` is a live local of the type IPC_SET reads.
    check("msgctl(IPC_SET)", unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) } as libc::c_long).map(drop)
}

/// `msgctl(IPC_RMID)`.
pub fn msg_remove(id: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID takes no buffer.
    check("msgctl(IPC_RMID)", unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)
        .map(drop)
}

/// The type and text of message `index` (from 0) of queue `id`, left in the queue
/// (`msgrcv(MSG_COPY | IPC_NOWAIT)`); `max` bounds the text. ENOSYS: a kernel without
/// CONFIG_CHECKPOINT_RESTORE.
pub fn msg_copy(id: i32, index: u64, max: usize) -> Result<(i64, Vec<u8>), SysError> {
    let mut buf = vec![0u8; std::mem::size_of::<libc::c_long>() + max];
    let flags = MSG_COPY | libc::IPC_NOWAIT;
    // SAFETY: `buf` holds a long (the type) and `max` bytes of text, as msgrcv writes them.
    let ret = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, index as libc::c_long, flags) };
    let len = check("msgrcv(MSG_COPY)", ret as libc::c_long)? as usize;
    let (head, text) = buf.split_at(std::mem::size_of::<libc::c_long>());
    let mtype = libc::c_long::from_ne_bytes(head.try_into().expect("a long's bytes"));
    Ok((mtype, text[..len].to_vec()))
}

/// `msgsnd(IPC_NOWAIT)`: a message of type `mtype` at the end of queue `id`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> Result<(), SysError> {
    let mut buf = Vec::with_capacity(std::mem::size_of::<libc::c_long>() + text.len());
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` holds a long (the type) then `text.len()` bytes, as msgsnd reads them.
    let ret = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) };
    check("msgsnd", ret as libc::c_long).map(drop)
}
