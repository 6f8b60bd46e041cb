//! Namespaces from the controller's side: the calling thread enters another process's namespace
//! (`setns(2)`) or makes new ones of its own (`unshare(2)`), and comes back to the ones it had
//! ([`Saved`]); the names of a UTS namespace (`uname(2)`, `sethostname(2)`, `setdomainname(2)`).
//!
//! Only the kinds a thread of a multi-threaded process may change alone are offered (UTS, IPC,
//! network and the PID namespace of its future children): `setns` and `unshare` of a mount or user namespace
//! need a single-threaded caller or an unshared fs context.

use crate::{check, Pid, SysError};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A kind of namespace a thread may enter or make alone: its `/proc/PID/ns/` link and its flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Uts,
    Ipc,
    Net,
    /// The PID namespace of the thread's future children (`pid_for_children`).
    PidForChildren,
    Cgroup,
}

impl Kind {
    /// The name of the link in `/proc/PID/ns/`.
    pub fn link(self) -> &'static str {
        match self {
            Kind::Uts => "uts",
            Kind::Ipc => "ipc",
            Kind::Net => "net",
            Kind::PidForChildren => "pid_for_children",
            Kind::Cgroup => "cgroup",
        }
    }

    /// The `CLONE_NEW*` flag of the kind.
    pub fn flag(self) -> i32 {
        match self {
            Kind::Uts => libc::CLONE_NEWUTS,
            Kind::Ipc => libc::CLONE_NEWIPC,
            Kind::Net => libc::CLONE_NEWNET,
            Kind::PidForChildren => libc::CLONE_NEWPID,
            Kind::Cgroup => libc::CLONE_NEWCGROUP,
        }
    }
}

/// Open namespace link `kind` of `pid` (`/proc/PID/ns/NAME`).
pub fn open(pid: Pid, kind: Kind) -> Result<OwnedFd, SysError> {
    open_path(&format!("/proc/{pid}/ns/{}", kind.link()))
}

fn open_path(path: &str) -> Result<OwnedFd, SysError> {
    File::open(path).map(OwnedFd::from).map_err(|source| SysError { call: "open(/proc/PID/ns/NAME)", source })
}

/// `setns(2)`: the calling thread enters the namespace `fd` (of kind `kind`).
pub fn setns(fd: BorrowedFd<'_>, kind: Kind) -> Result<(), SysError> {
    // SAFETY: plain integer arguments; `fd` is open for the call.
    let ret = unsafe { libc::setns(fd.as_raw_fd(), kind.flag()) };
    check("setns", ret as libc::c_long).map(drop)
}

/// The calling thread enters namespace `kind` of `pid`.
pub fn enter(pid: Pid, kind: Kind) -> Result<(), SysError> {
    setns(open(pid, kind)?.as_fd(), kind)
}

/// `unshare(2)` of `kinds` for the calling thread: new namespaces (for `PidForChildren`, one for
/// its next children).
pub fn unshare(kinds: &[Kind]) -> Result<(), SysError> {
    let flags = kinds.iter().fold(0, |acc, k| acc | k.flag());
    // SAFETY: plain integer argument; only namespace flags a thread may unshare alone are passed.
    let ret = unsafe { libc::unshare(flags) };
    check("unshare", ret as libc::c_long).map(drop)
}

/// Open namespace link `name` of `pid` (`/proc/PID/ns/NAME`): any kind, the user namespace too,
/// for [`owner_inode`], [`parent_inode`] or a task's `setns`.
pub fn open_named(pid: Pid, name: &str) -> Result<OwnedFd, SysError> {
    open_path(&format!("/proc/{pid}/ns/{name}"))
}

/// `NS_GET_USERNS` (`_IO(0xb7, 0x1)`) and `NS_GET_PARENT` (`_IO(0xb7, 0x2)`) of ioctl_ns(2).
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;

/// The inode of the user namespace that owns namespace `fd` (`NS_GET_USERNS`).
pub fn owner_inode(fd: BorrowedFd<'_>) -> Result<u64, SysError> {
    related_inode(fd, NS_GET_USERNS, "ioctl(NS_GET_USERNS)")
}

/// The inode of the parent of user (or PID) namespace `fd` (`NS_GET_PARENT`); `EPERM` when the
/// parent is outside the caller's own user namespace.
pub fn parent_inode(fd: BorrowedFd<'_>) -> Result<u64, SysError> {
    related_inode(fd, NS_GET_PARENT, "ioctl(NS_GET_PARENT)")
}

fn related_inode(fd: BorrowedFd<'_>, request: libc::c_ulong, call: &'static str) -> Result<u64, SysError> {
    // SAFETY: the ioctl takes no argument and returns a new fd, which is owned below.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request) };
    let raw = check(call, ret as libc::c_long)? as i32;
    // SAFETY: `raw` is a new fd returned to us by the ioctl, owned by nothing else.
    let related = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let meta = File::from(related).metadata().map_err(|source| SysError { call: "fstat", source })?;
    Ok(std::os::unix::fs::MetadataExt::ino(&meta))
}

/// The calling thread's own namespace of `kind` (`/proc/thread-self/ns/NAME`).
pub fn open_own(kind: Kind) -> Result<OwnedFd, SysError> {
    open_path(&format!("/proc/thread-self/ns/{}", kind.link()))
}

/// The calling thread's namespaces of some kinds, to come back to (see [`Saved::restore`]).
pub struct Saved {
    fds: Vec<(OwnedFd, Kind)>,
}

impl Saved {
    /// Keep the calling thread's namespaces of `kinds` (`/proc/thread-self/ns/NAME`).
    pub fn save(kinds: &[Kind]) -> Result<Saved, SysError> {
        let fds = kinds
            .iter()
            .map(|&k| Ok((open_path(&format!("/proc/thread-self/ns/{}", k.link()))?, k)))
            .collect::<Result<_, SysError>>()?;
        Ok(Saved { fds })
    }

    /// Go back to the kept namespaces.
    pub fn restore(&self) -> Result<(), SysError> {
        self.fds.iter().try_for_each(|(fd, k)| setns(fd.as_fd(), *k))
    }
}

/// The host and domain names of the calling thread's UTS namespace (`uname(2)`).
pub fn uts_names() -> Result<(String, String), SysError> {
    // SAFETY: utsname is plain data, all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    let ret = unsafe { libc::uname(&mut u) };
    check("uname", ret as libc::c_long)?;
    Ok((field(&u.nodename), field(&u.domainname)))
}

fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Set the host and domain names of the calling thread's UTS namespace (`sethostname(2)`,
/// `setdomainname(2)`).
pub fn set_uts_names(host: &str, domain: &str) -> Result<(), SysError> {
    let bad = |call| SysError::from_errno(call, libc::EINVAL);
    let host_c = CString::new(host).map_err(|_| bad("sethostname"))?;
    let domain_c = CString::new(domain).map_err(|_| bad("setdomainname"))?;
    // SAFETY: the pointer and length describe `host_c`, alive for the call.
    let ret = unsafe { libc::sethostname(host_c.as_ptr(), host.len()) };
    check("sethostname", ret as libc::c_long)?;
    // SAFETY: the pointer and length describe `domain_c`, alive for the call.
    let ret = unsafe { libc::setdomainname(domain_c.as_ptr(), domain.len()) };
    check("setdomainname", ret as libc::c_long).map(drop)
}

/// Run `f` on a new thread that first entered the namespace `fd` of kind `kind` (the caller's own
/// thread keeps its namespaces).
pub fn run_in_fd<T: Send>(fd: BorrowedFd<'_>, kind: Kind, f: impl FnOnce() -> T + Send) -> Result<T, SysError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(fd, kind)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Run `f` on a new thread that first entered namespace `kind` of `pid` (the caller's own thread
/// keeps its namespaces).
pub fn run_in<T: Send>(pid: Pid, kind: Kind, f: impl FnOnce() -> T + Send) -> Result<T, SysError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(pid, kind)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
