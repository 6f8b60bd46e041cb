//! Probe of AIO (`io_setup(2)`, CONFIG_AIO), which restoring AIO contexts needs: a context made and
//! destroyed in this process, and the system-wide count of requests against its limit
//! (`/proc/sys/fs/aio-nr`, `aio-max-nr`: `io_setup` fails with EAGAIN beyond it).

use super::{read_trimmed, sys, Probed};

pub(super) fn probe_aio() -> Probed {
    let mut ctx: u64 = 0;
    // SAFETY: the kernel writes one aio_context_t at the address of `ctx`, which outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_io_setup, 1 as libc::c_long, &mut ctx as *mut u64) };
    if let Err(errno) = sys(ret) {
        return Probed::failed("io_setup", errno);
    }
    // SAFETY: destroys the context just made, which nothing else knows of; its ring is unmapped.
    let _ = sys(unsafe { libc::syscall(libc::SYS_io_destroy, ctx) });
    let used = read_trimmed("/proc/sys/fs/aio-nr").unwrap_or_else(|| "?".into());
    let max = read_trimmed("/proc/sys/fs/aio-max-nr").unwrap_or_else(|| "?".into());
    Probed::yes(format!("io_setup works; {used} of {max} requests in use (aio-nr of aio-max-nr)"))
}
