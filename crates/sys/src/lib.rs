//! Every raw system call, ioctl and ptrace request stasis makes, and the injection engine that makes a
//! stopped task execute a system call. This is the only crate with `unsafe` code; each block states
//! the invariant it relies on in a `// SAFETY:` comment.
//!
//! Wrappers take `BorrowedFd`/`AsFd` and return `OwnedFd`; processes are named by [`Pid`]. Each wrapper
//! names the system call and the man page it follows.

pub mod anon;
pub mod conntrack;
pub mod fd;
pub mod inet;
pub mod inet_diag;
pub mod inject;
pub mod ipc;
pub mod mem;
pub mod mount;
pub mod netlink;
mod nlmsg;
pub mod ns;
pub mod packet;
pub mod probe;
pub mod process;
pub mod ptrace;
pub mod remote;
mod sock_diag;
pub mod socket;
pub mod tty;
pub mod uffd;
pub mod uffd_missing;
pub mod unix_diag;
pub mod watch;

use std::fmt;

/// A process or thread id in the caller's PID namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub i32);

impl Pid {
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// The calling process.
    pub fn this() -> Pid {
        Pid(std::process::id() as i32)
    }
}

impl From<i32> for Pid {
    fn from(raw: i32) -> Pid {
        Pid(raw)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A failed system call: which call, and the errno as the source.
#[derive(Debug, thiserror::Error)]
#[error("{call}")]
pub struct SysError {
    pub call: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl SysError {
    /// Build from the calling thread's errno.
    pub fn last(call: &'static str) -> SysError {
        SysError { call, source: std::io::Error::last_os_error() }
    }

    pub fn from_errno(call: &'static str, errno: i32) -> SysError {
        SysError { call, source: std::io::Error::from_raw_os_error(errno) }
    }

    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(0)
    }
}

/// Turn a `-1 and errno` return into a `Result`.
pub(crate) fn check(call: &'static str, ret: libc::c_long) -> Result<libc::c_long, SysError> {
    if ret < 0 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}
