//! SysV semaphore sets and message queues (semget(2), semctl(2), semop(2), msgget(2), msgctl(2),
//! msgsnd(2), msgrcv(2)).

use super::{cvt, cvt_long};
use std::io;

/// `semget(key, nsems, flags)`: the id of set `key` (flags 0: an existing one).
pub fn semget(key: i32, nsems: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::semget(key, nsems, flags) })
}

/// `semctl(GETALL)`: the values of the `nsems` semaphores of set `id`.
pub fn sem_values(id: i32, nsems: usize) -> io::Result<Vec<u16>> {
    let mut out = vec![0u16; nsems];
    // SAFETY: GETALL writes one unsigned short per semaphore of the set; the caller gives its size.
    cvt(unsafe { libc::semctl(id, 0, libc::GETALL, out.as_mut_ptr()) })?;
    Ok(out)
}

/// `semctl(SETALL)`: every semaphore's value.
pub fn sem_set_values(id: i32, values: &[u16]) -> io::Result<()> {
    // SAFETY: SETALL reads one unsigned short per semaphore; `values` has one for each.
    cvt(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) }).map(drop)
}

/// `semctl(IPC_STAT)`: (permission bits, number of semaphores) of set `id`.
pub fn sem_stat(id: i32) -> io::Result<(u32, u64)> {
    let mut ds = std::mem::MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: `ds` is a live local of the type IPC_STAT fills in.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is valid for every (integer) field, and the kernel filled it in.
    let ds = unsafe { ds.assume_init() };
    Ok((u32::from(ds.sem_perm.mode) & 0o777, ds.sem_nsems))
}

/// `semop` of one operation `op` on semaphore `num`, with `IPC_NOWAIT`.
pub fn semop_nowait(id: i32, num: u16, op: i16) -> io::Result<()> {
    let mut sop = libc::sembuf { sem_num: num, sem_op: op, sem_flg: libc::IPC_NOWAIT as i16 };
    // SAFETY: one live sembuf.
    cvt(unsafe { libc::semop(id, &mut sop, 1) }).map(drop)
}

/// `msgget(key, flags)`.
pub fn msgget(key: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// `msgctl(IPC_STAT)`: (permission bits, byte limit, number of messages) of queue `id`.
pub fn msg_stat(id: i32) -> io::Result<(u32, u64, u64)> {
    let mut ds = std::mem::MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: `ds` is a live local of the type IPC_STAT fills in.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is valid for every (integer) field, and the kernel filled it in.
    let ds = unsafe { ds.assume_init() };
    Ok((u32::from(ds.msg_perm.mode) & 0o777, ds.msg_qbytes, ds.msg_qnum))
}

/// `msgctl(IPC_SET)` of the byte limit only (owner and mode as they are).
pub fn msg_set_qbytes(id: i32, qbytes: u64) -> io::Result<()> {
    let mut ds = std::mem::MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: `ds` is a live local of the type IPC_STAT fills in and IPC_SET reads.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is valid for every (integer) field, and the kernel filled it in.
    let mut ds = unsafe { ds.assume_init() };
    ds.msg_qbytes = qbytes as libc::msglen_t;
    // SAFETY: as above.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `msgsnd(IPC_NOWAIT)` of a message of type `mtype`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = (mtype as libc::c_long).to_ne_bytes().to_vec();
    buf.extend_from_slice(text);
    // SAFETY: `buf` is a long then `text.len()` bytes, the layout msgsnd reads.
    cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) }).map(drop)
}

/// `msgrcv(IPC_NOWAIT)` of the first message (type 0) of at most `max` bytes: (type, text).
pub fn msg_receive(id: i32, max: usize) -> io::Result<(i64, Vec<u8>)> {
    let word = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; word + max];
    // SAFETY: `buf` has room for a long and `max` bytes, as msgrcv writes them.
    let n = cvt_long(unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, 0, libc::IPC_NOWAIT) } as libc::c_long)?;
    let mtype = libc::c_long::from_ne_bytes(buf[..word].try_into().expect("a long"));
    Ok((mtype, buf[word..word + n as usize].to_vec()))
}
