//! Credentials survive: supplementary groups, real/effective/saved uids and gids (non-root), the
//! filesystem ids, capabilities kept across the uid change with PR_SET_KEEPCAPS then trimmed with
//! capset (effective, permitted, inheritable), an ambient capability, a dropped bounding-set
//! capability, the keep-caps flag and the dumpable flag (set again after the uid change).

use stasis_tests::raw::{self, Caps};
use stasis_tests::workload::{self, OrFail};

const CAP_CHOWN: u64 = 0;
const CAP_KILL: u64 = 5;
const CAP_NET_BIND_SERVICE: u64 = 10;
const CAP_NET_RAW: u64 = 13;
const CAP_SYS_BOOT: u64 = 22;

fn bit(cap: u64) -> u64 {
    1 << cap
}

#[derive(Debug, PartialEq)]
struct Creds {
    uids: (u32, u32, u32),
    gids: (u32, u32, u32),
    fs: (u32, u32),
    groups: Vec<u32>,
    caps: Caps,
    ambient: Vec<i32>,
    bounding_sys_boot: i32,
    keepcaps: i32,
    dumpable: i32,
}

fn read_creds() -> std::io::Result<Creds> {
    let is_ambient = |cap| raw::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET as u64, cap);
    Ok(Creds {
        uids: raw::getresuid()?,
        gids: raw::getresgid()?,
        fs: raw::fs_ids(),
        groups: raw::getgroups()?,
        caps: raw::capget()?,
        ambient: vec![is_ambient(CAP_NET_BIND_SERVICE)?, is_ambient(CAP_NET_RAW)?],
        bounding_sys_boot: raw::prctl(libc::PR_CAPBSET_READ, CAP_SYS_BOOT, 0)?,
        keepcaps: raw::prctl(libc::PR_GET_KEEPCAPS, 0, 0)?,
        dumpable: raw::prctl(libc::PR_GET_DUMPABLE, 0, 0)?,
    })
}

fn main() {
    let mut s = workload::start();
    if raw::getresuid().or_fail("getresuid").1 != 0 {
        workload::skip("needs to start as root");
    }
    raw::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_BOOT, 0).or_fail("PR_CAPBSET_DROP");
    raw::setgroups(&[2001, 2002, 2003]).or_fail("setgroups");
    raw::setresgid(2000, 2001, 2002).or_fail("setresgid");
    raw::prctl(libc::PR_SET_KEEPCAPS, 1, 0).or_fail("PR_SET_KEEPCAPS");
    raw::setresuid(1000, 1001, 1002).or_fail("setresuid");
    let permitted = bit(CAP_CHOWN) | bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW);
    let caps = Caps {
        effective: bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE),
        permitted,
        inheritable: bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW),
    };
    raw::capset(caps).or_fail("capset");
    let raise = libc::PR_CAP_AMBIENT_RAISE as u64;
    raw::prctl(libc::PR_CAP_AMBIENT, raise, CAP_NET_BIND_SERVICE).or_fail("PR_CAP_AMBIENT_RAISE");
    raw::prctl(libc::PR_SET_DUMPABLE, 1, 0).or_fail("PR_SET_DUMPABLE");
    let before = read_creds().or_fail("read credentials");
    s.checker.same("capabilities as set", &caps, &before.caps);
    s.ready();
    s.wait_for_wake();
    match read_creds() {
        Ok(after) => {
            s.checker.same("uids (r, e, s)", &before.uids, &after.uids);
            s.checker.same("gids (r, e, s)", &before.gids, &after.gids);
            s.checker.same("fsuid, fsgid", &before.fs, &after.fs);
            s.checker.same("groups", &before.groups, &after.groups);
            s.checker.same("capabilities", &before.caps, &after.caps);
            s.checker.same("ambient NET_BIND_SERVICE, NET_RAW", &before.ambient, &after.ambient);
            s.checker.same("bounding set has SYS_BOOT", &before.bounding_sys_boot, &after.bounding_sys_boot);
            s.checker.same("keepcaps", &before.keepcaps, &after.keepcaps);
            s.checker.same("dumpable", &before.dumpable, &after.dumpable);
        }
        Err(e) => s.checker.check(false, || format!("reading credentials: {e}")),
    }
    s.finish()
}
