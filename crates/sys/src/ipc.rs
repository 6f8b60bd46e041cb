//! SysV shared memory segments, as the controller creates, fills, reads and removes them
//! (shmget(2), shmctl(2), shmat(2), shmdt(2)).

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
