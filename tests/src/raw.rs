//! Every unsafe operation of the test package: thin wrappers around libc calls, raw system calls
//! and the inline assembly the register workload needs.
//!
//! This module (with its child modules `signal`, `mem`, `process` and `regs`) is the only place in
//! the `stasis-tests` package allowed to use `unsafe`; the workloads and the harness call the safe
//! wrappers re-exported here. Each unsafe block states why it is sound in a `// SAFETY:` comment.
//! Wrappers return `std::io::Result` with the errno of the failed call.
#![allow(unsafe_code)]

mod aio;
mod events;
mod files;
mod inet;
mod mem;
mod netlink;
mod ns;
mod packet;
mod process;
mod regs;
mod seccomp;
mod signal;
mod socket;
mod sysv;
mod tty;
mod watch;

pub use aio::*;
pub use events::*;
pub use files::*;
pub use inet::*;
pub use mem::*;
pub use netlink::*;
pub use ns::*;
pub use packet::*;
pub use process::*;
pub use regs::*;
pub use seccomp::*;
pub use signal::*;
pub use socket::*;
pub use sysv::*;
pub use tty::*;
pub use watch::*;

use std::io;

/// Turns a libc "-1 and errno" return value into an `io::Result`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns a `syscall(2)` "-1 and errno" return value into an `io::Result`.
fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
