//! Credentials: real/effective/saved/fs user and group ids, supplementary groups, the five capability
//! sets and the securebits. Restored last of the task state, in an order that keeps the privileges
//! each step needs: bounding set first, ids with `SECBIT_NO_SETUID_FIXUP` so capabilities survive the
//! uid change, then the target securebits, then capset, then the ambient set.

use crate::error::{Error, Result};
use crate::proc;
use crate::scratch::write_u64s;
use stasis_image::model::Creds;
use stasis_sys::inject::Injector;
use stasis_sys::Pid;

const PR_CAPBSET_DROP: u64 = 24;
const PR_GET_SECUREBITS: u64 = 27;
const PR_SET_SECUREBITS: u64 = 28;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const NGROUPS_MAX: usize = 65536;

/// The credentials of the task the injector runs in, from its `/proc/TID/status` (`s`) and its
/// securebits.
pub fn dump(inj: &mut Injector, s: &proc::Status) -> Result<Creds> {
    let securebits = inj.call("prctl(PR_GET_SECUREBITS)", libc::SYS_prctl, [PR_GET_SECUREBITS, 0, 0, 0, 0, 0])?;
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

pub fn restore(inj: &mut Injector, pid: Pid, c: &Creds) -> Result<()> {
    if has_already(pid, c) {
        return Ok(());
    }
    let step = |what: &str| {
        let what = format!("credentials ({what})");
        move |e: stasis_sys::inject::InjectError| Error::Step { pid: pid.0, what, source: Box::new(e.into()) }
    };
    let prctl = libc::SYS_prctl;
    for cap in (0..=last_cap()).filter(|cap| c.cap_bnd & (1 << cap) == 0) {
        inj.call("prctl(PR_CAPBSET_DROP)", prctl, [PR_CAPBSET_DROP, cap as u64, 0, 0, 0, 0])
            .map_err(step("bounding set"))?;
    }
    let keep = c.securebits as u64 | SECBIT_NO_SETUID_FIXUP;
    inj.call("prctl(PR_SET_SECUREBITS)", prctl, [PR_SET_SECUREBITS, keep, 0, 0, 0, 0]).map_err(step("securebits"))?;
    if c.groups.len() > NGROUPS_MAX || c.groups.len() * 4 > inj.data_len() as usize {
        return Err(Error::Failed { pid: pid.0, what: format!("{} supplementary groups is too many", c.groups.len()) });
    }
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let data = inj.data();
    inj.write(data, &groups)?;
    inj.call("setgroups", libc::SYS_setgroups, [c.groups.len() as u64, data, 0, 0, 0, 0]).map_err(step("groups"))?;
    let (g, u) = ([c.gid, c.egid, c.sgid], [c.uid, c.euid, c.suid]);
    inj.call("setresgid", libc::SYS_setresgid, [g[0] as u64, g[1] as u64, g[2] as u64, 0, 0, 0])
        .map_err(step("gids"))?;
    inj.call("setresuid", libc::SYS_setresuid, [u[0] as u64, u[1] as u64, u[2] as u64, 0, 0, 0])
        .map_err(step("uids"))?;
    inj.call("setfsgid", libc::SYS_setfsgid, [c.fsgid as u64, 0, 0, 0, 0, 0])?;
    inj.call("setfsuid", libc::SYS_setfsuid, [c.fsuid as u64, 0, 0, 0, 0, 0])?;
    let bits = c.securebits as u64;
    inj.call("prctl(PR_SET_SECUREBITS)", prctl, [PR_SET_SECUREBITS, bits, 0, 0, 0, 0]).map_err(step("securebits"))?;
    capset(inj, c).map_err(step("capabilities"))?;
    for cap in (0..=last_cap()).filter(|cap| c.cap_amb & (1 << cap) != 0) {
        let args = [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap as u64, 0, 0, 0];
        inj.call("prctl(PR_CAP_AMBIENT_RAISE)", prctl, args).map_err(step("ambient capabilities"))?;
    }
    Ok(())
}

/// `capset(2)` with a version 3 header: two `{effective, permitted, inheritable}` u32 triples.
fn capset(inj: &mut Injector, c: &Creds) -> std::result::Result<(), stasis_sys::inject::InjectError> {
    let data = inj.data();
    let lo = |v: u64| v as u32 as u64;
    let hi = |v: u64| v >> 32;
    let header = CAPABILITY_VERSION_3 as u64; // version, pid 0
    let d0 = lo(c.cap_eff) | (lo(c.cap_prm) << 32);
    let d1 = lo(c.cap_inh) | (hi(c.cap_eff) << 32);
    let d2 = hi(c.cap_prm) | (hi(c.cap_inh) << 32);
    let head_addr = data;
    let data_addr = data + 8;
    if write_u64s(inj, data, &[header, d0, d1, d2]).is_err() {
        return Err(stasis_sys::inject::InjectError::Memory {
            pid: inj.pid(),
            addr: data,
            source: std::io::Error::other("cannot write capset arguments"),
        });
    }
    inj.call("capset", libc::SYS_capset, [head_addr, data_addr, 0, 0, 0, 0]).map(drop)
}
