//! Mounts with the new mount API: `open_tree(2)` clones of a mount, `fsopen(2)`/`fsconfig(2)`/
//! `fsmount(2)` for a new superblock, `move_mount(2)` to attach a detached mount, `mount_setattr(2)`
//! for per-mount flags and propagation; `pivot_root(2)`, `umount2(2)`, and the calling thread's own
//! mount namespace (`unshare(CLONE_FS | CLONE_NEWNS)`, `setns(CLONE_NEWNS)`).
//!
//! A thread of a multi-threaded process may change its mount namespace only once it has a
//! filesystem context of its own (`CLONE_FS` unshared): [`unshare_ns`] and [`enter_ns`] do that.

use crate::{check, SysError};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `MOUNT_ATTR_*` bits of `mount_setattr(2)`.
pub const ATTR_RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
pub const ATTR_NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
pub const ATTR_NODEV: u64 = libc::MOUNT_ATTR_NODEV;
pub const ATTR_NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;
/// The access-time mode: a value under [`ATTR_ATIME_MASK`], not a bit.
pub const ATTR_ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;
pub const ATTR_RELATIME: u64 = libc::MOUNT_ATTR_RELATIME;
pub const ATTR_NOATIME: u64 = libc::MOUNT_ATTR_NOATIME;
pub const ATTR_STRICTATIME: u64 = libc::MOUNT_ATTR_STRICTATIME;
pub const ATTR_NODIRATIME: u64 = libc::MOUNT_ATTR_NODIRATIME;
pub const ATTR_NOSYMFOLLOW: u64 = libc::MOUNT_ATTR_NOSYMFOLLOW;

/// A mount's propagation type (`mount_setattr(2)`'s `propagation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Private,
    Shared,
    Slave,
    Unbindable,
}

impl Propagation {
    fn flag(self) -> u64 {
        let flag: libc::c_ulong = match self {
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Shared => libc::MS_SHARED,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Unbindable => libc::MS_UNBINDABLE,
        };
        flag
    }
}

fn cstr(call: &'static str, s: &[u8]) -> Result<CString, SysError> {
    CString::new(s).map_err(|_| SysError::from_errno(call, libc::EINVAL))
}

fn path_c(call: &'static str, path: &Path) -> Result<CString, SysError> {
    use std::os::unix::ffi::OsStrExt;
    cstr(call, path.as_os_str().as_bytes())
}

fn owned(call: &'static str, ret: libc::c_long) -> Result<OwnedFd, SysError> {
    let fd = check(call, ret)?;
    // SAFETY: the call returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)`: a detached copy of the mount
/// at `path` (only that mount, not those below it), seen from its directory at `path`.
pub fn clone_tree(path: &Path) -> Result<OwnedFd, SysError> {
    let p = path_c("open_tree", path)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: `p` is a valid C string for the call; the flags ask for a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) };
    owned("open_tree", ret)
}

/// `fsopen(fstype)`, `fsconfig` of each `(key, value)` (a flag when the value is None) and of the
/// fd option `fd_option` (`FSCONFIG_SET_FD`: proc's `pidns`), then `FSCONFIG_CMD_CREATE` and
/// `fsmount`: a detached mount of a new superblock.
pub fn new_fs(
    fstype: &str,
    source: &str,
    options: &[(String, Option<String>)],
    fd_option: Option<(&str, BorrowedFd<'_>)>,
) -> Result<OwnedFd, SysError> {
    let t = cstr("fsopen", fstype.as_bytes())?;
    // SAFETY: `t` is a valid C string for the call.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) };
    let fs = owned("fsopen", ret)?;
    if !source.is_empty() {
        set_string(fs.as_raw_fd(), "source", Some(source))?;
    }
    for (key, value) in options {
        set_string(fs.as_raw_fd(), key, value.as_deref())?;
    }
    if let Some((key, fd)) = fd_option {
        let k = cstr("fsconfig", key.as_bytes())?;
        // SAFETY: `fs` is an open fs context, `k` a valid C string, `fd` open for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_FD,
                k.as_ptr(),
                std::ptr::null::<u8>(),
                fd.as_raw_fd(),
            )
        };
        check("fsconfig(FSCONFIG_SET_FD)", ret)?;
    }
    // SAFETY: `fs` is an open fs context; the command takes no key or value.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check("fsconfig(FSCONFIG_CMD_CREATE)", ret)?;
    // SAFETY: `fs` is an fs context with a created superblock.
    let ret = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, 0) };
    owned("fsmount", ret)
}

/// `fspick` of the mount at `point`, `fsconfig` of the flag `ro`, then `FSCONFIG_CMD_RECONFIGURE`:
/// its superblock made read-only (after a new one was filled).
pub fn superblock_read_only(point: &Path) -> Result<(), SysError> {
    let p = path_c("fspick", point)?;
    // SAFETY: `p` is a valid C string for the call; the flag asks for a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_fspick, libc::AT_FDCWD, p.as_ptr(), libc::FSPICK_CLOEXEC) };
    let fs = owned("fspick", ret)?;
    set_string(fs.as_raw_fd(), "ro", None)?;
    // SAFETY: `fs` is an fs context of a mounted superblock; the command takes no key or value.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_RECONFIGURE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check("fsconfig(FSCONFIG_CMD_RECONFIGURE)", ret).map(drop)
}

fn set_string(fs: i32, key: &str, value: Option<&str>) -> Result<(), SysError> {
    let k = cstr("fsconfig", key.as_bytes())?;
    let ret = match value {
        Some(v) => {
            let v = cstr("fsconfig", v.as_bytes())?;
            // SAFETY: `fs` is an open fs context; `k` and `v` are valid C strings for the call.
            unsafe { libc::syscall(libc::SYS_fsconfig, fs, libc::FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) }
        }
        // SAFETY: `fs` is an open fs context; `k` is a valid C string, a flag takes no value.
        None => unsafe {
            libc::syscall(libc::SYS_fsconfig, fs, libc::FSCONFIG_SET_FLAG, k.as_ptr(), std::ptr::null::<u8>(), 0)
        },
    };
    check("fsconfig", ret).map(drop)
}

/// `move_mount(mnt, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH)`: attach the detached mount `mnt`
/// at `to`.
pub fn attach(mnt: BorrowedFd<'_>, to: &Path) -> Result<(), SysError> {
    let to = path_c("move_mount", to)?;
    let empty = c"";
    // SAFETY: `mnt` is open; both strings are valid C strings for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check("move_mount", ret).map(drop)
}

/// `mount_setattr(2)` on the mount at `path` (`AT_RECURSIVE` with `recursive`): set the `set`
/// attributes and clear `clear` (both `ATTR_*`; an access-time mode is changed by clearing
/// [`ATTR_ATIME_MASK`]), and the propagation type if given.
pub fn set_attr(
    path: &Path,
    set: u64,
    clear: u64,
    propagation: Option<Propagation>,
    recursive: bool,
) -> Result<(), SysError> {
    let p = path_c("mount_setattr", path)?;
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: propagation.map_or(0, Propagation::flag),
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 } | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: `p` is a valid C string, `attr` a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            p.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check("mount_setattr", ret).map(drop)
}

/// `unshare(CLONE_FS | CLONE_NEWNS)`: the calling thread in a new mount namespace, a copy of its
/// own, with a filesystem context of its own.
pub fn unshare_ns() -> Result<(), SysError> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) };
    check("unshare(CLONE_NEWNS)", ret as libc::c_long).map(drop)
}

/// `setns(fd, CLONE_NEWNS)` after `unshare(CLONE_FS)`: the calling thread enters the mount
/// namespace `fd` (its root and working directory become that namespace's root).
pub fn enter_ns(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::unshare(libc::CLONE_FS) };
    check("unshare(CLONE_FS)", ret as libc::c_long)?;
    // SAFETY: plain integer arguments; `fd` is open for the call.
    let ret = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) };
    check("setns(CLONE_NEWNS)", ret as libc::c_long).map(drop)
}

/// `pivot_root(".", ".")` then `umount2(".", MNT_DETACH)`: the mount of the working directory
/// becomes the root of the calling thread's mount namespace and the old root is detached.
pub fn pivot_here() -> Result<(), SysError> {
    let dot = c".";
    // SAFETY: both arguments are valid C strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check("pivot_root", ret)?;
    // SAFETY: a valid C string and a flag.
    let ret = unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) };
    check("umount2", ret as libc::c_long).map(drop)
}

/// `chroot(2)` to `path` for the calling thread (its filesystem context).
pub fn chroot(path: &Path) -> Result<(), SysError> {
    let p = path_c("chroot", path)?;
    // SAFETY: `p` is a valid C string for the call.
    let ret = unsafe { libc::chroot(p.as_ptr()) };
    check("chroot", ret as libc::c_long).map(drop)
}

/// `fchdir(2)`.
pub fn fchdir(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: plain integer argument; `fd` is open for the call.
    let ret = unsafe { libc::fchdir(fd.as_raw_fd()) };
    check("fchdir", ret as libc::c_long).map(drop)
}
