//! Attributes of ptys. Arguments: the mode, then how many free pty indices to leave below its own
//! (see `raw::high_pty`).
//!
//! - `owner`: the slave's owner, group and mode set with fchown and fchmod (4321, 4322, 0640);
//!   after the restore `fstat` of the slave shows them.
//! - `hungup`: a slave whose master was closed (hung up: TIOCGEXCL gives EIO); after the restore it
//!   still is: a read gives EOF, a write and TIOCGEXCL give EIO.
//! - `foreground`: run as an ordinary user, the process leads its session with the slave as its
//!   controlling terminal and gives the foreground to its child's group; after the restore the
//!   child's group has it.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const OWNER: (u32, u32, u32) = (4321, 4322, 0o640);

fn owner_of(slave: &File) -> Option<(u32, u32, u32)> {
    slave.metadata().ok().map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
}

fn hungup_checks(c: &mut Checker, slave: &OwnedFd) {
    let mut f = File::from(slave.try_clone().or_fail("dup the slave"));
    let mut buf = [0u8; 16];
    let read = f.read(&mut buf).map_err(|e| e.raw_os_error());
    c.same("read of the hung-up slave", &Ok(0), &read);
    let write = f.write(b"x").map_err(|e| e.raw_os_error());
    c.same("write to the hung-up slave", &Err(Some(libc::EIO)), &write);
    let excl = raw::exclusive(slave.as_fd()).map_err(|e| e.raw_os_error());
    c.same("TIOCGEXCL on the hung-up slave", &Err(Some(libc::EIO)), &excl);
}

/// The child: a group of its own, which the parent gives the foreground; sleeps until woken.
fn job(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::setpgid(0, 0).or_fail("setpgid");
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let mode = workload::mode(1, &["owner", "hungup", "foreground"])
        .unwrap_or_else(|| workload::unknown_mode("", "owner|hungup|foreground"));
    let (master, name) = raw::high_pty(workload::arg(2, 0)).or_fail("open a pty");
    let mut master = Some(master);
    match mode {
        "owner" => {
            let slave = File::from(raw::open_terminal_noctty(&name).or_fail("open the slave"));
            std::os::unix::fs::fchown(&slave, Some(OWNER.0), Some(OWNER.1)).or_fail("fchown the slave");
            slave.set_permissions(std::fs::Permissions::from_mode(OWNER.2)).or_fail("fchmod the slave");
            s.ready();
            s.wait_for_wake();
            s.checker.same("the slave's owner, group and mode", &Some(OWNER), &owner_of(&slave));
        }
        "hungup" => {
            let slave = raw::open_terminal_noctty(&name).or_fail("open the slave");
            master = None;
            s.checker.same(
                "TIOCGEXCL once hung up",
                &Some(libc::EIO),
                &raw::exclusive(slave.as_fd()).err().and_then(|e| e.raw_os_error()),
            );
            s.ready();
            s.wait_for_wake();
            hungup_checks(&mut s.checker, &slave);
        }
        _ => {
            let slave = raw::open_terminal(&name).or_fail("open the slave as the controlling terminal");
            let child = workload::fork_child("job", job);
            child.expect_line(&mut s.checker, "ready", "ready");
            raw::set_foreground(slave.as_fd(), child.pid).or_fail("give the child's group the foreground");
            s.ready();
            s.wait_for_wake();
            let fg = raw::foreground(slave.as_fd()).ok();
            s.checker.same("the foreground group", &Some(child.pid), &fg);
            s.checker.ok("wake the child", raw::kill(child.pid, workload::WAKE));
            child.collect(&mut s.checker);
        }
    }
    // The master stays open to the end: closing it would hang up the terminal (SIGHUP).
    let _master = master;
    s.finish()
}
