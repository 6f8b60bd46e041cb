//! A recording fake [`Target`] for unit tests of restore and dump logic without a kernel: it keeps
//! every [`Call`] it is asked to run, answers each with a scripted result (0 when none is
//! scripted), and has a data area of plain memory that the typed calls marshal into.

use super::{Call, Target};
use crate::inject::InjectError;
use crate::Pid;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

/// Where the fake's data area starts.
pub const FAKE_DATA: u64 = 0x7f00_0000_1000;
/// Size of the fake's data area (as a real one: 15 pages).
pub const FAKE_DATA_LEN: u64 = 15 * 4096;

/// A task that runs nothing and records everything.
pub struct FakeTask {
    pid: Pid,
    mem: RefCell<Vec<u8>>,
    calls: Vec<Call>,
    /// Raw results by call name, taken in order; `None` for an injected fault.
    script: HashMap<&'static str, VecDeque<Option<i64>>>,
}

impl FakeTask {
    pub fn new(pid: Pid) -> FakeTask {
        FakeTask { pid, mem: RefCell::new(vec![0; FAKE_DATA_LEN as usize]), calls: Vec::new(), script: HashMap::new() }
    }

    /// The next call named `name` returns `raw` (a negative errno to fail).
    pub fn reply(&mut self, name: &'static str, raw: i64) -> &mut FakeTask {
        self.script.entry(name).or_default().push_back(Some(raw));
        self
    }

    /// The next call named `name` fails as a fault injected at call `n` would
    /// ([`InjectError::Fault`]).
    pub fn fault(&mut self, name: &'static str) -> &mut FakeTask {
        self.script.entry(name).or_default().push_back(None);
        self
    }

    /// The next call named `name` fails with `errno`.
    pub fn fail(&mut self, name: &'static str, errno: i32) -> &mut FakeTask {
        self.reply(name, -(errno as i64))
    }

    /// Every call run so far, in order.
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// Every call run so far as `name(args)`, the way errors show them.
    pub fn log(&self) -> Vec<String> {
        self.calls.iter().map(|c| c.to_string()).collect()
    }

    /// The names of the calls run so far.
    pub fn names(&self) -> Vec<&'static str> {
        self.calls.iter().map(|c| c.name()).collect()
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, InjectError> {
        let start = addr.checked_sub(FAKE_DATA).filter(|s| s + len as u64 <= FAKE_DATA_LEN);
        let fault =
            || InjectError::Memory { pid: self.pid, addr, source: std::io::Error::from_raw_os_error(libc::EFAULT) };
        let start = start.ok_or_else(fault)? as usize;
        Ok(start..start + len)
    }
}

impl Target for FakeTask {
    fn pid(&self) -> Pid {
        self.pid
    }

    fn data(&self) -> u64 {
        FAKE_DATA
    }

    fn data_len(&self) -> u64 {
        FAKE_DATA_LEN
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        let r = self.range(addr, bytes.len())?;
        self.mem.borrow_mut()[r].copy_from_slice(bytes);
        Ok(())
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.mem.borrow()[r]);
        Ok(())
    }

    fn run(&mut self, call: Call) -> Result<i64, InjectError> {
        self.calls.push(call);
        match self.script.get_mut(call.name()).and_then(VecDeque::pop_front) {
            Some(Some(raw)) => Ok(raw),
            Some(None) => Err(InjectError::Fault { pid: self.pid, call: Box::new(call), n: self.calls.len() as u64 }),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FakeTask, FAKE_DATA};
    use crate::remote::{CloneArgs, Prctl, Remote, SigAction};
    use crate::Pid;

    #[test]
    fn records_calls_and_marshals_arguments() {
        let mut t = FakeTask::new(Pid(42));
        t.reply("clone3", 77);
        let act = SigAction { handler: 0x401000, flags: 4, restorer: 0x402000, mask: 1 };
        t.rt_sigaction_set(10, &act).expect("fake never fails unasked");
        assert_eq!(t.rt_sigaction_get(10).expect("read back"), act);
        let got = t
            .clone3(&CloneArgs { flags: 0, exit_signal: 17, set_tid: Some(Pid(77)), ..Default::default() })
            .expect("scripted");
        assert_eq!(got, Pid(77));
        t.prctl(Prctl::SetName("worker")).expect("prctl");
        assert_eq!(t.names(), ["rt_sigaction", "rt_sigaction", "clone3", "prctl"]);
        assert_eq!(t.log()[3], format!("prctl(PR_SET_NAME, {FAKE_DATA:#x}, 0, 0, 0)"));
    }

    #[test]
    fn a_scripted_errno_names_the_call_and_its_arguments() {
        let mut t = FakeTask::new(Pid(42));
        t.fail("dup3", libc::EBADF);
        let e = t.dup3(9, 3, libc::O_CLOEXEC).expect_err("scripted to fail");
        assert_eq!(e.to_string(), "pid 42: injected dup3(9, 3, 0x80000)");
        assert_eq!(t.rt_sigtimedwait_poll(1 << 16).expect("no signal"), Some(0));
        t.fail("rt_sigtimedwait", libc::EAGAIN);
        assert_eq!(t.rt_sigtimedwait_poll(1 << 16).expect("EAGAIN is none"), None);
    }
}
