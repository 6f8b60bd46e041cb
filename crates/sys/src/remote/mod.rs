//! Typed remote system calls: every call stasis makes a traced task execute, one method each.
//!
//! A method owns the marshalling of its arguments into the task's data area (see
//! [`crate::inject`]), the reading back of what the kernel wrote there, and the mapping of a failed
//! call to an error that names the pid, the call and its arguments (`pid 42: injected dup3(9, 3,
//! 0x80000)`). The engine asks `remote.dup3(..)`; it never builds a syscall number or an argument
//! array: a [`Call`] can only be made in this crate.
//!
//! Two traits split the work: [`Target`] is what a task offers (run one [`Call`], reach its data
//! area), implemented by the real [`crate::inject::Injector`] and by the recording [`fake::FakeTask`];
//! [`Remote`] holds the typed calls and comes with every `Target`, so restore logic written against
//! `&mut dyn Remote` runs unchanged on the fake in unit tests (as youki's `Syscall` trait and its
//! `TestHelperSyscall` do).

mod calls;
pub mod fake;
mod types;

pub use calls::Remote;
pub(crate) use calls::{exit_group as calls_exit_group, tgkill as calls_tgkill, vmsplice as calls_vmsplice};
pub use types::{
    AltStack, CapSets, CloneArgs, IntervalTimer, IoEvent, Iocb, MmMap, Prctl, SigAction, SigEvent, MAX_INNER_LEVELS,
};

use crate::inject::InjectError;
use crate::Pid;
use std::fmt;

/// One system call to inject: its number, arguments and a name for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    name: &'static str,
    nr: i64,
    args: [u64; 6],
    nargs: u8,
    /// An argument shown by its name (a prctl option, an fcntl command, an ioctl request).
    named: Option<(u8, &'static str)>,
}

impl Call {
    /// Call `nr` (`name` in messages) with `args` (at most six).
    pub(crate) fn new(name: &'static str, nr: i64, args: &[u64]) -> Call {
        assert!(args.len() <= 6, "{name}: a system call takes at most six arguments");
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        Call { name, nr, args: all, nargs: args.len() as u8, named: None }
    }

    /// Show argument `at` as `what` in messages.
    pub(crate) fn naming(mut self, at: u8, what: &'static str) -> Call {
        self.named = Some((at, what));
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn nr(&self) -> i64 {
        self.nr
    }

    /// The arguments passed (only as many as the call takes).
    pub fn args(&self) -> &[u64] {
        &self.args[..self.nargs as usize]
    }

    /// All six argument registers, unused ones zero.
    pub(crate) fn registers(&self) -> [u64; 6] {
        self.args
    }
}

impl fmt::Display for Call {
    /// `name(arg, ...)`: small numbers in decimal, others (addresses, flags) in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, &a) in self.args().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match self.named {
                Some((at, what)) if at as usize == i => f.write_str(what)?,
                _ if a < 0x10000 => write!(f, "{a}")?,
                _ if (a as i64) < 0 && (a as i64) > -0x10000 => write!(f, "{}", a as i64)?,
                _ => write!(f, "{a:#x}")?,
            }
        }
        f.write_str(")")
    }
}

/// A task that runs system calls for us: the transport under [`Remote`].
pub trait Target {
    fn pid(&self) -> Pid;
    /// Start of the data area arguments are marshalled into.
    fn data(&self) -> u64;
    /// Size of the data area.
    fn data_len(&self) -> u64;
    /// Write into the task's memory.
    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError>;
    /// Read from the task's memory.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError>;
    /// Run `call` in the task; its raw result (a negative errno on failure).
    fn run(&mut self, call: Call) -> Result<i64, InjectError>;
}

/// Run `call`; a result in `-4095..0` becomes [`InjectError::Failed`] naming the call.
pub(crate) fn checked<T: Target + ?Sized>(t: &mut T, call: Call) -> Result<u64, InjectError> {
    let ret = t.run(call)?;
    if (-4095..0).contains(&ret) {
        let source = std::io::Error::from_raw_os_error(-ret as i32);
        return Err(InjectError::Failed { pid: t.pid(), call: Box::new(call), source });
    }
    Ok(ret as u64)
}

/// Write `bytes` at offset `off` of the data area, refusing what does not fit.
pub(crate) fn put<T: Target + ?Sized>(t: &T, call: &'static str, off: u64, bytes: &[u8]) -> Result<u64, InjectError> {
    let end = off + bytes.len() as u64;
    if end > t.data_len() {
        return Err(InjectError::TooBig { pid: t.pid(), call, len: end, room: t.data_len() });
    }
    let addr = t.data() + off;
    t.write(addr, bytes)?;
    Ok(addr)
}

/// [`put`] for little-endian 64-bit words.
pub(crate) fn put_u64s<T: Target + ?Sized>(
    t: &T,
    call: &'static str,
    off: u64,
    words: &[u64],
) -> Result<u64, InjectError> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    put(t, call, off, &bytes)
}

/// Read `n` little-endian 64-bit words at `addr`.
pub(crate) fn get_u64s<T: Target + ?Sized>(t: &T, addr: u64, n: usize) -> Result<Vec<u64>, InjectError> {
    let mut bytes = vec![0u8; n * 8];
    t.read(addr, &mut bytes)?;
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

#[cfg(test)]
mod tests {
    use super::Call;

    #[test]
    fn a_call_shows_its_arguments_and_named_ones() {
        let c =
            Call::new("fcntl", libc::SYS_fcntl, &[5, libc::F_DUPFD_CLOEXEC as u64, 1030]).naming(1, "F_DUPFD_CLOEXEC");
        assert_eq!(c.to_string(), "fcntl(5, F_DUPFD_CLOEXEC, 1030)");
        let m = Call::new("munmap", libc::SYS_munmap, &[0x7f00_0000_0000, 4096]);
        assert_eq!(m.to_string(), "munmap(0x7f0000000000, 4096)");
        assert_eq!(Call::new("close", libc::SYS_close, &[u64::MAX]).to_string(), "close(-1)");
        assert_eq!(m.args(), &[0x7f00_0000_0000, 4096]);
    }
}
