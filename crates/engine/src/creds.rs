//! Credentials: real/effective/saved/fs user and group ids, supplementary groups, the five capability
//! sets and the securebits. Restored last of the task state, in an order that keeps the privileges
//! each step needs: bounding set first, ids with `SECBIT_NO_SETUID_FIXUP` so capabilities survive the
//! uid change, then the target securebits, then capset, then the ambient set.

use crate::error::{Error, Result};
use crate::proc;
use stasis_image::model::Creds;
use stasis_sys::inject::InjectError;
use stasis_sys::remote::{CapSets, Prctl, Remote};
use stasis_sys::Pid;

const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
const NGROUPS_MAX: usize = 65536;

/// The credentials of the task the injector runs in, from its `/proc/TID/status` (`s`) and its
/// securebits.
pub fn dump(inj: &mut dyn Remote, s: &proc::Status) -> Result<Creds> {
    let securebits = inj.prctl(Prctl::GetSecurebits)?;
    Ok(from_status(s, securebits as u32))
}

fn from_status(s: &proc::Status, securebits: u32) -> Creds {
    Creds {
        uid: s.uid[0],
        euid: s.uid[1],
        suid: s.uid[2],
        fsuid: s.uid[3],
        gid: s.gid[0],
        egid: s.gid[1],
        sgid: s.gid[2],
        fsgid: s.gid[3],
        groups: s.groups.clone(),
        cap_inh: s.cap_inh,
        cap_prm: s.cap_prm,
        cap_eff: s.cap_eff,
        cap_bnd: s.cap_bnd,
        cap_amb: s.cap_amb,
        securebits,
    }
}

/// Whether task `tid`, a copy of stasis (or of a parent that had stasis' credentials still), has
/// credentials `c` already: then none is set. Its securebits are ours, as it has not changed them.
fn has_already(tid: Pid, c: &Creds) -> bool {
    let ours = stasis_sys::process::own_securebits();
    let now = proc::status(&proc::ProcRoot::system(), tid.0);
    matches!((ours, now), (Ok(bits), Ok(s)) if from_status(&s, bits) == *c)
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

pub fn restore(inj: &mut dyn Remote, pid: Pid, c: &Creds) -> Result<()> {
    if has_already(pid, c) {
        return Ok(());
    }
    set(inj, pid, c, last_cap(), true)
}

/// [`restore`] in a task that has just joined a user namespace (see [`crate::userns`]): every set
/// is full there, so all are set; `c`'s ids are those seen inside (`u32::MAX`: kept), and its
/// groups were set before it joined.
pub fn restore_in_user_ns(inj: &mut dyn Remote, pid: Pid, c: &Creds) -> Result<()> {
    set(inj, pid, c, last_cap(), false)
}

/// Set credentials `c` in this order: bounding set (capabilities 0 to `last_cap`), securebits with
/// `SECBIT_NO_SETUID_FIXUP`, groups (with `groups`), gids, uids, fs ids, the saved securebits,
/// capset, ambient set.
fn set(inj: &mut dyn Remote, pid: Pid, c: &Creds, last_cap: u32, groups: bool) -> Result<()> {
    let step = |what: &str| {
        let what = format!("credentials ({what})");
        move |e: InjectError| Error::Step { pid, what, source: Box::new(e.into()) }
    };
    for cap in (0..=last_cap).filter(|cap| c.cap_bnd & (1 << cap) == 0) {
        inj.prctl(Prctl::CapbsetDrop(cap)).map_err(step("bounding set"))?;
    }
    let keep = c.securebits | SECBIT_NO_SETUID_FIXUP;
    inj.prctl(Prctl::SetSecurebits(keep)).map_err(step("securebits"))?;
    if c.groups.len() > NGROUPS_MAX {
        return Err(Error::Failed { pid, what: format!("{} supplementary groups is too many", c.groups.len()) });
    }
    if groups {
        inj.setgroups(&c.groups).map_err(step("groups"))?;
    }
    inj.setresgid(c.gid, c.egid, c.sgid).map_err(step("gids"))?;
    inj.setresuid(c.uid, c.euid, c.suid).map_err(step("uids"))?;
    inj.setfsgid(c.fsgid)?;
    inj.setfsuid(c.fsuid)?;
    inj.prctl(Prctl::SetSecurebits(c.securebits)).map_err(step("securebits"))?;
    let caps = CapSets { effective: c.cap_eff, permitted: c.cap_prm, inheritable: c.cap_inh };
    inj.capset(&caps).map_err(step("capabilities"))?;
    for cap in (0..=last_cap).filter(|cap| c.cap_amb & (1 << cap) != 0) {
        inj.prctl(Prctl::CapAmbientRaise(cap)).map_err(step("ambient capabilities"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::set;
    use stasis_image::model::Creds;
    use stasis_sys::remote::fake::FakeTask;
    use stasis_sys::Pid;

    fn user() -> Creds {
        Creds {
            uid: 1000,
            euid: 1001,
            suid: 1002,
            fsuid: 1001,
            gid: 100,
            egid: 101,
            sgid: 102,
            fsgid: 101,
            groups: vec![4, 27],
            cap_inh: 0,
            cap_prm: 1 << 33 | 1 << 12,
            cap_eff: 1 << 12,
            cap_bnd: !(1 << 2),
            cap_amb: 1 << 12,
            securebits: 0,
        }
    }

    /// Privileges first lost last: the bounding set drop and the securebits that keep capabilities
    /// across the uid change come before any id; groups before gids before uids; capabilities once
    /// the ids are set; the ambient set after them.
    #[test]
    fn credentials_are_set_in_an_order_that_keeps_the_privileges_each_step_needs() {
        let mut t = FakeTask::new(Pid(500));
        set(&mut t, Pid(500), &user(), 40, true).expect("fake calls succeed");
        let log = t.log();
        let names: Vec<String> = log.iter().map(|c| c.split(',').next().unwrap_or("").to_string()).collect();
        assert_eq!(
            names,
            [
                "prctl(PR_CAPBSET_DROP",
                "prctl(PR_SET_SECUREBITS",
                "setgroups(2",
                "setresgid(100",
                "setresuid(1000",
                "setfsgid(101)",
                "setfsuid(1001)",
                "prctl(PR_SET_SECUREBITS",
                "capset(0x7f0000001000",
                "prctl(PR_CAP_AMBIENT_RAISE",
            ]
        );
        assert_eq!(log[0], "prctl(PR_CAPBSET_DROP, 2, 0, 0, 0)");
        assert_eq!(log[1], "prctl(PR_SET_SECUREBITS, 4, 0, 0, 0)");
        assert_eq!(log[4], "setresuid(1000, 1001, 1002)");
        assert_eq!(log[9], "prctl(PR_CAP_AMBIENT_RAISE, 2, 12, 0, 0)");
    }

    /// A failed step names the credentials it was setting, and nothing after it is tried.
    #[test]
    fn a_failed_step_stops_the_restore_and_is_named() {
        let mut t = FakeTask::new(Pid(500));
        t.fail("setresuid", libc::EPERM);
        let err = set(&mut t, Pid(500), &user(), 40, true).expect_err("setresuid fails");
        assert_eq!(err.to_string(), "pid 500: restoring credentials (uids)");
        assert_eq!(t.names().last(), Some(&"setresuid"));
    }
}
