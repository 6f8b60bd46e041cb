//! The tree's mount namespace: its mounts read from the root's `/proc/PID/mountinfo` at the dump,
//! and the namespace made again at restore, before the root exists, with the new mount API.
//!
//! Dump: every process of the tree must be in the root's mount namespace (another one inside the
//! tree is refused by name). Each mount is recorded with its ids, mount point, root, type, source,
//! per-mount flags, superblock options and propagation, and how restore makes it again (the
//! `how` of [`Mount`]):
//! - `root`: the namespace's root mount, a copy of `--root PATH` at restore, or of stasis's own
//!   root when it was a copy of it at the dump;
//! - `host`: a copy of stasis's own mount at the same point (same device, root and type): what
//!   `unshare -m` leaves in a new namespace;
//! - `external`: `--external mnt[POINT]:KEY`, a copy of the path given at restore for KEY; with
//!   `--ext-mount-map auto`, also a mount of a filesystem stasis's namespace shows (at a point
//!   other than its own) that restore could not make otherwise, or a tmpfs: its key is that path
//!   (`external_auto`), which restore copies when no other path is given for it;
//! - `bind`: another mount of a filesystem already mounted in the namespace, made as a copy of that
//!   mount from its directory;
//! - `new`: a new superblock of tmpfs (with its whole contents, see [`tmpfs`]), proc (of stasis's
//!   PID namespace, or of the root's: `proc_of_tree`), sysfs, devpts (a new instance; refused when
//!   the tree holds its ptys), mqueue or cgroup2, with its options.
//!
//! `--enable-fs FS,...` (`all`) makes a mount of those types that fits none of the above `new`:
//! restore mounts its source again with its options; its contents are not saved, so a ramfs or
//! hugetlbfs is refused unless empty (see [`enabled_fs`]).
//!
//! `--skip-mnt POINT` leaves the mount at POINT and those under it out of the image (restore does
//! not make them); refused while a process of the tree holds a file (by the fd's `mnt_id`), a
//! mapping, its working or root directory on one of them.
//!
//! A tmpfs that stasis's namespace also shows is refused without `--ext-mount-map auto` or
//! `--external`: a new one would not share its files with that mount. Anything else is refused by
//! name, naming its mount point and type. Propagation is kept within
//! the namespace (peer groups and masters between its mounts). A peer group shared with stasis's
//! own namespace, or a master outside the namespace, is refused unless `--enable-external-sharing`
//! / `--enable-external-masters` allow it for a mount restore copies from an outside path (`root`,
//! `host`, `external`; a shared root cannot be): the copy joins that path's group, and stays its
//! peer or becomes its slave (`shared_outside`, `master_outside`).
//!
//! Restore ([`restore`]) builds the namespace on the calling thread, then goes back to stasis's:
//! the files are opened and the root is forked inside it ([`Built::inside`]); a proc of the root's
//! PID namespace and the mounts after it are made once the root exists ([`Built::finish`]).

pub mod restore;
mod tmpfs;

use crate::error::{Error, Result};
use stasis_image::model::{Mount, MountNs};
use stasis_sys::mount as sysmnt;
use stasis_sys::Pid;

pub use restore::Built;

/// Run `f` inside the restored namespace `built` if there is one (see [`Built::inside`]).
pub fn inside<T>(built: Option<&Built>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match built {
        Some(b) => b.inside(f),
        None => f(),
    }
}

/// The path through which stasis opens the file the restored task `pid` knows as `path` (a path
/// from its root, as `/proc/PID/maps` and `exe` show it): `path` itself when the task is in
/// stasis's mount namespace, else the same path below `/proc/PID/root` (its namespace's root).
pub fn seen_by(pid: Pid, path: &str) -> std::path::PathBuf {
    let ns = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
    if !path.starts_with('/') || ns(&format!("/proc/{pid}/ns/mnt")) == ns("/proc/self/ns/mnt") {
        return path.into();
    }
    format!("/proc/{pid}/root{path}").into()
}

/// What the dump's options say of the tree's mounts.
#[derive(Clone, Copy, Default)]
pub struct Rules<'a> {
    /// `--external mnt[POINT]:KEY`: (POINT, KEY).
    pub external: &'a [(String, String)],
    /// `--skip-mnt POINT`.
    pub skip: &'a [String],
    /// `--enable-external-sharing`: a `root`, `host` or `external` mount may be in a peer group
    /// with mounts outside the namespace (restore makes it a peer of its copied path's mount).
    pub sharing: bool,
    /// `--enable-external-masters`: a `root`, `host` or `external` mount may be a slave of a peer
    /// group outside the namespace (restore makes it a slave of its copied path's group).
    pub masters: bool,
    /// `--ext-mount-map auto`: a mount restore could not make otherwise, or a tmpfs, whose
    /// filesystem stasis's namespace also shows is `external`, keyed by that path (see [`describe`]).
    pub auto: bool,
    /// `--enable-fs FS,...`: a mount of one of these types (`all`: any) that none of the other
    /// kinds fits is `new`: its source mounted again with its options, its contents not saved; a
    /// filesystem that keeps its files in memory (ramfs, hugetlbfs) only when it holds none.
    pub enable_fs: &'a [String],
}

/// The filesystem types made again as new superblocks.
const NEW_KINDS: [&str; 6] = ["tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup2"];

/// One line of `/proc/PID/mountinfo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    pub id: u32,
    pub parent: u32,
    pub dev: String,
    pub root: String,
    pub point: String,
    pub mount_opts: String,
    pub shared: u32,
    pub master: u32,
    pub propagate_from: u32,
    pub unbindable: bool,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the text of a mountinfo file; None names the bad line.
pub fn parse(text: &str) -> std::result::Result<Vec<Info>, String> {
    text.lines().filter(|l| !l.is_empty()).map(|l| parse_line(l).ok_or_else(|| l.to_string())).collect()
}

fn parse_line(line: &str) -> Option<Info> {
    let (left, right) = line.split_once(" - ")?;
    let f: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.splitn(3, ' ').collect();
    let mut info = Info {
        id: f.first()?.parse().ok()?,
        parent: f.get(1)?.parse().ok()?,
        dev: f.get(2)?.to_string(),
        root: unescape(f.get(3)?),
        point: unescape(f.get(4)?),
        mount_opts: f.get(5)?.to_string(),
        fstype: r.first()?.to_string(),
        source: unescape(r.get(1)?),
        super_opts: r.get(2).unwrap_or(&"").to_string(),
        ..Default::default()
    };
    for opt in &f[6..] {
        if let Some(n) = opt.strip_prefix("shared:") {
            info.shared = n.parse().ok()?;
        } else if let Some(n) = opt.strip_prefix("master:") {
            info.master = n.parse().ok()?;
        } else if let Some(n) = opt.strip_prefix("propagate_from:") {
            info.propagate_from = n.parse().ok()?;
        } else if *opt == "unbindable" {
            info.unbindable = true;
        }
    }
    Some(info)
}

/// The per-mount options of mountinfo as `MOUNT_ATTR_*` bits (no access-time option: strictatime).
pub fn attrs(mount_opts: &str) -> u64 {
    let mut out = sysmnt::ATTR_STRICTATIME;
    for o in mount_opts.split(',') {
        match o {
            "ro" => out |= sysmnt::ATTR_RDONLY,
            "nosuid" => out |= sysmnt::ATTR_NOSUID,
            "nodev" => out |= sysmnt::ATTR_NODEV,
            "noexec" => out |= sysmnt::ATTR_NOEXEC,
            "nodiratime" => out |= sysmnt::ATTR_NODIRATIME,
            "nosymfollow" => out |= sysmnt::ATTR_NOSYMFOLLOW,
            "relatime" => out = (out & !sysmnt::ATTR_ATIME_MASK) | sysmnt::ATTR_RELATIME,
            "noatime" => out = (out & !sysmnt::ATTR_ATIME_MASK) | sysmnt::ATTR_NOATIME,
            _ => {}
        }
    }
    out
}

/// The mounts of `infos` with each parent before its children, the namespace's root first, in
/// mountinfo order otherwise (a mount stacked on another at the same point comes after it). None
/// when the mounts do not hang from one root.
fn ordered(infos: &[Info]) -> Option<Vec<Info>> {
    let ids: Vec<u32> = infos.iter().map(|i| i.id).collect();
    let roots: Vec<&Info> = infos.iter().filter(|i| !ids.contains(&i.parent) || i.parent == i.id).collect();
    let [root] = roots[..] else { return None };
    let mut out = vec![root.clone()];
    let mut left: Vec<&Info> = infos.iter().filter(|i| i.id != root.id).collect();
    while !left.is_empty() {
        let before = left.len();
        let mut rest = Vec::new();
        for i in left {
            if out.iter().any(|o| o.id == i.parent) {
                out.push(i.clone());
            } else {
                rest.push(i);
            }
        }
        if rest.len() == before {
            return None;
        }
        left = rest;
    }
    Some(out)
}

/// `/proc/PID/ns/mnt`'s inode.
fn ns_inode(pid: i32) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = format!("/proc/{pid}/ns/mnt");
    Ok(std::fs::metadata(&path).map_err(Error::io(&path))?.ino())
}

fn read_mountinfo(pid: &str) -> Result<Vec<Info>> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    parse(&text).map_err(|line| Error::Failed {
        pid: Pid(pid.parse().unwrap_or(0)),
        what: format!("{path}: a line not as the kernel prints it: {line:?}"),
    })
}

/// Before the tree is frozen: the mounts of `pid`'s mount namespace, if it has one of its own,
/// are all of kinds stasis makes again (see [`dump`]; the tree then runs on untouched).
pub fn precheck(pid: i32, rules: Rules) -> Result<()> {
    if ns_inode(pid)? == ns_inode(std::process::id() as i32)? {
        no_own_ns(pid, rules.external, rules.skip)?;
    } else {
        let (mounts, skipped) = plan(pid, rules)?;
        // The terminals' own stage would fail on such a pty first, less clearly.
        let pids = descendants(pid);
        check_ptys(&pids, &mounts)?;
        check_skipped(&pids, &skipped)?;
        check_files_inside(&pids)?;
    }
    Ok(())
}

/// Mount options name mounts of the tree's own mount namespace: refused when it has none.
fn no_own_ns(pid: i32, external: &[(String, String)], skip: &[String]) -> Result<()> {
    let named = external.first().map(|(point, _)| format!("--external mnt[{point}]"));
    match named.or_else(|| skip.first().map(|point| format!("--skip-mnt {point}"))) {
        Some(option) => {
            let what = format!("{option}: the tree has no mount namespace of its own");
            Err(Error::Failed { pid: Pid(pid), what })
        }
        None => Ok(()),
    }
}

/// `pid` and its descendants as they are now (the tree before it is frozen).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        let tasks = std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten();
        for t in tasks {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(text.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
        i += 1;
    }
    out
}

fn read(path: String) -> Result<String> {
    std::fs::read_to_string(&path).map_err(Error::io(path))
}

/// The id of `pid` in its own PID namespace (the last of `NSpid`).
fn local_pid(pid: i32) -> Result<i32> {
    let status = read(format!("/proc/{pid}/status"))?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
    Ok(line.split_whitespace().last().and_then(|p| p.parse().ok()).unwrap_or(pid))
}

/// The start time of a `/proc/PID/stat` line (field 22, after the command in parentheses).
fn start_time(stat: &str) -> Option<u64> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn inode_of(path: String) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&path).map(|m| m.ino()).map_err(Error::io(path))
}

/// The inode of the root's PID namespace when it is not stasis's.
fn own_pid_ns(pid: i32) -> Result<Option<u64>> {
    let theirs = inode_of(format!("/proc/{pid}/ns/pid"))?;
    Ok((theirs != inode_of(format!("/proc/{}/ns/pid", std::process::id()))?).then_some(theirs))
}

/// Each mount of the mount namespace of `root` and how it is made again (without contents), and
/// the mounts `--skip-mnt` leaves out (those at a point of `skip`, and the mounts under them).
fn plan(root: i32, rules: Rules) -> Result<(Vec<Mount>, Vec<Info>)> {
    let (external, skip) = (rules.external, rules.skip);
    // Its mountinfo is relative to its root: the namespace's own, or it could not be made again.
    let link = format!("/proc/{root}/root");
    let dir = std::fs::read_link(&link).map_err(Error::io(&link))?;
    if dir != std::path::Path::new("/") {
        let what = format!("a root directory {} other than its mount namespace's root", dir.display());
        return Err(Error::Unsupported { pid: Pid(root), what });
    }
    let pid_ns = own_pid_ns(root)?;
    let infos = read_mountinfo(&root.to_string())?;
    let host = read_mountinfo("self")?;
    let infos = ordered(&infos).ok_or_else(|| Error::Unsupported {
        pid: Pid(root),
        what: "a mount namespace whose mounts do not hang from one root mount".into(),
    })?;
    let (infos, skipped) = leave_out(root, infos, skip)?;
    let mut mounts: Vec<Mount> = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let m = describe(root, info, i == 0, (&mounts, &infos), (&host, rules), pid_ns)?;
        mounts.push(m);
    }
    // As CRIU: engines name every path they may have bind-mounted (runc its masked paths).
    for (point, _) in external.iter().filter(|(p, _)| !mounts.iter().any(|m| &m.point == p)) {
        log::info!("pid {root}: --external mnt[{point}]: no mount at {point} in its mount namespace (ignored)");
    }
    Ok((mounts, skipped))
}

/// `infos` (parents first) without the mounts at a point of `skip` and those under them, and
/// those left out; the namespace's root mount cannot be.
fn leave_out(root: i32, infos: Vec<Info>, skip: &[String]) -> Result<(Vec<Info>, Vec<Info>)> {
    let (mut kept, mut out) = (Vec::new(), Vec::<Info>::new());
    for (i, info) in infos.into_iter().enumerate() {
        let named = skip.iter().any(|p| p.trim_end_matches('/') == info.point.trim_end_matches('/'));
        if named && i == 0 {
            let what = format!("--skip-mnt {}: the root mount of its mount namespace", info.point);
            return Err(Error::Failed { pid: Pid(root), what });
        }
        if named || out.iter().any(|o| o.id == info.parent) {
            log::info!("pid {root}: the mount at {} is not saved (--skip-mnt)", info.point);
            out.push(info);
        } else {
            kept.push(info);
        }
    }
    for p in skip.iter().filter(|p| !out.iter().any(|o| o.point.trim_end_matches('/') == p.trim_end_matches('/'))) {
        log::info!("pid {root}: --skip-mnt {p}: no mount at {p} in its mount namespace (ignored)");
    }
    Ok((kept, out))
}

/// A mount `--skip-mnt` leaves out must not be in use by the tree: no open file, mapping, working
/// or root directory of it (restore would find another file at that path, or none).
fn check_skipped(pids: &[i32], skipped: &[Info]) -> Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    let under = |path: &str| {
        skipped.iter().find(|m| {
            let point = m.point.trim_end_matches('/');
            path == point || path.starts_with(&format!("{point}/"))
        })
    };
    let refuse = |pid: i32, what: String, m: &Info| Error::Unsupported {
        pid: Pid(pid),
        what: format!("{what} on the mount at {} that --skip-mnt leaves out", m.point),
    };
    for &pid in pids {
        let Some(entries) = fd_dir(pid, "fdinfo")? else { continue };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let id = text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse::<u32>().ok());
            if let Some(m) = id.and_then(|id| skipped.iter().find(|m| m.id == id)) {
                return Err(refuse(pid, format!("fd {}: a file", entry.file_name().to_string_lossy()), m));
            }
        }
        for link in ["cwd", "root"] {
            let path = std::fs::read_link(format!("/proc/{pid}/{link}")).unwrap_or_default();
            if let Some(m) = under(&path.to_string_lossy()) {
                return Err(refuse(pid, format!("its {link} {}", path.display()), m));
            }
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        for line in maps.lines() {
            let path = line.splitn(6, ' ').nth(5).unwrap_or("").trim_start();
            if let Some(m) = path.starts_with('/').then(|| under(path)).flatten() {
                return Err(refuse(pid, format!("a mapping of {path}"), m));
            }
        }
    }
    Ok(())
}

/// The tree's own mount namespace (see the module docs), None when it is stasis's; `pids`: every
/// process of the tree, the root first; `rules`: what the options say of its mounts.
pub fn dump(pids: &[i32], rules: Rules) -> Result<Option<MountNs>> {
    let root = pids[0];
    let ours = ns_inode(std::process::id() as i32)?;
    let theirs = ns_inode(root)?;
    for &pid in &pids[1..] {
        if ns_inode(pid)? != theirs {
            let what = "a mount namespace other than the root's".into();
            return Err(Error::Unsupported { pid: Pid(pid), what });
        }
    }
    if theirs == ours {
        return no_own_ns(root, rules.external, rules.skip).map(|()| None);
    }
    let (mut mounts, skipped) = plan(root, rules)?;
    check_ptys(pids, &mounts)?;
    check_skipped(pids, &skipped)?;
    check_files_inside(pids)?;
    for m in mounts.iter_mut().filter(|m| m.how == "new" && m.fstype == "tmpfs") {
        m.contents = tmpfs::dump(root, m)?;
    }
    log::info!("pid {root}: mount namespace {theirs} with {} mounts", mounts.len());
    Ok(Some(MountNs { inode: theirs, mounts }))
}

/// One mount and how it is made again (see the module docs); `done`: the mounts before it.
fn describe(
    pid: i32,
    info: &Info,
    is_root: bool,
    (done, infos): (&[Mount], &[Info]),
    (host, rules): (&[Info], Rules),
    pid_ns: Option<u64>,
) -> Result<Mount> {
    let refuse =
        |why: String| Error::Unsupported { pid: Pid(pid), what: format!("the mount at {}: {why}", info.point) };
    if info.propagate_from != 0 {
        return Err(refuse(format!("propagation from peer group {} outside the namespace", info.propagate_from)));
    }
    let mut m = Mount {
        id: info.id,
        parent: info.parent,
        point: info.point.clone(),
        root: info.root.clone(),
        fstype: info.fstype.clone(),
        source: info.source.clone(),
        dev: info.dev.clone(),
        attrs: attrs(&info.mount_opts),
        options: info.super_opts.clone(),
        shared: info.shared,
        master: info.master,
        unbindable: info.unbindable,
        ..Default::default()
    };
    let same_in_host = |h: &&Info| h.dev == info.dev && h.root == info.root && h.fstype == info.fstype;
    if let Some((_, key)) = rules.external.iter().find(|(p, _)| *p == info.point) {
        (m.how, m.external_key) = ("external".into(), key.clone());
    } else if is_root {
        m.how = "root".into();
        // Restore takes stasis's own root when --root is not given: only faithful if it was that.
        m.bind_of = u32::from(host.iter().filter(|h| h.point == "/").any(|h| same_in_host(&h)));
    } else if let Some(src) = bind_source(info, done) {
        (m.how, m.bind_of) = ("bind".into(), src);
    } else if host.iter().filter(|h| h.point == info.point).any(|h| same_in_host(&h)) {
        m.how = "host".into();
    } else if let Some(path) = seen_outside(info, host).filter(|_| rules.auto || info.fstype == "tmpfs") {
        if !rules.auto {
            return Err(refuse(format!(
                "a tmpfs also mounted in stasis's mount namespace (at {path}): a new one would not share its files; \
                 name it with --external mnt[{}]:KEY, or give --ext-mount-map auto",
                info.point
            )));
        }
        (m.how, m.external_key, m.external_auto) = ("external".into(), path, true);
    } else if NEW_KINDS.contains(&info.fstype.as_str()) {
        if info.root != "/" {
            return Err(refuse(format!(
                "a part ({}) of a {} whose root is not mounted in the namespace",
                info.root, info.fstype
            )));
        }
        if info.fstype == "proc" {
            // It shows the root under the root's id in the root's PID namespace: a proc of that
            // namespace (stasis's or the tree's), made again with it.
            let local = local_pid(pid)?;
            let seen = std::fs::read_to_string(format!("/proc/{pid}/root{}/{local}/stat", info.point));
            if seen.ok().and_then(|t| start_time(&t)) != start_time(&read(format!("/proc/{pid}/stat"))?) {
                return Err(refuse("a proc of a PID namespace other than the root's".into()));
            }
            m.proc_of_tree = pid_ns.is_some();
        }
        m.how = "new".into();
    } else if rules.enable_fs.iter().any(|f| f == "all" || *f == info.fstype) {
        enabled_fs(pid, info).map_err(refuse)?;
        m.how = "new".into();
    } else {
        return Err(refuse(format!(
            "a {} filesystem (source {}): only tmpfs, proc, sysfs, devpts, mqueue, cgroup2, bind mounts, --enable-fs {}, \
             --external mnt[{}]:KEY and, for a filesystem stasis's mount namespace shows too, --ext-mount-map auto",
            info.fstype, info.source, info.fstype, info.point
        )));
    }
    (m.shared_outside, m.master_outside) = outside_propagation(info, &m, infos, (host, rules)).map_err(refuse)?;
    Ok(m)
}

/// Whether the peer group and the master of mount `m` are outside the namespace (in stasis's
/// namespace, or for a master, in no mount of the namespace), which only a copy of an outside path
/// can keep (restore makes it a peer or a slave of that path's group), and only with
/// `--enable-external-sharing` / `--enable-external-masters`; the reason otherwise.
fn outside_propagation(
    info: &Info,
    m: &Mount,
    infos: &[Info],
    (host, rules): (&[Info], Rules),
) -> std::result::Result<(bool, bool), String> {
    let in_host = |g: u32| g != 0 && host.iter().any(|h| h.shared == g);
    let shared_out = in_host(info.shared);
    let master_out = info.master != 0 && (in_host(info.master) || !infos.iter().any(|i| i.shared == info.master));
    if !shared_out && !master_out {
        return Ok((false, false));
    }
    let copy = matches!(m.how.as_str(), "root" | "host" | "external");
    let (option, what, group) = match shared_out {
        true => ("--enable-external-sharing", "a peer group", info.shared),
        false => ("--enable-external-masters", "a master peer group", info.master),
    };
    if shared_out && !rules.sharing || master_out && !rules.masters {
        return Err(format!("{what} {group} outside the namespace (shared with stasis's mount namespace or beyond; {option} allows it for the root, external mounts and copies of stasis's)"));
    }
    if !copy {
        return Err(format!("{what} {group} outside the namespace: only the root, an external mount or a copy of stasis's can keep it ({option})"));
    }
    if shared_out && m.how == "root" {
        return Err(format!("{what} {group} outside the namespace: the root mount cannot stay shared (pivot_root refuses a shared root)"));
    }
    // The copy restore makes joins the group of the mount it copies: at the dump, for a copy of
    // stasis's own mount, that is this group (a path given at restore is checked there).
    let source = match m.how.as_str() {
        "host" => host.iter().rev().find(|h| h.point == info.point),
        "root" if m.bind_of == 1 => host.iter().rev().find(|h| h.point == "/"),
        _ => None,
    };
    if let Some(h) = source {
        let joins = |g: u32| h.shared == g || h.master == g;
        if shared_out && h.shared != info.shared || master_out && !joins(info.master) {
            return Err(format!(
                "{what} {group} outside the namespace, other than that of stasis's mount at {} (shared:{} master:{})",
                h.point, h.shared, h.master
            ));
        }
    }
    Ok((shared_out, master_out))
}

/// Filesystems that hold their files in memory: a new superblock of one is empty.
const IN_MEMORY: [&str; 2] = ["ramfs", "hugetlbfs"];

/// A mount `--enable-fs` names is made again by mounting its source anew: only the whole
/// filesystem, and for one that keeps its files in memory, only while it holds none (they are
/// not saved); the reason otherwise.
fn enabled_fs(pid: i32, info: &Info) -> std::result::Result<(), String> {
    if info.root != "/" {
        return Err(format!(
            "a part ({}) of a {}: --enable-fs mounts a whole filesystem again",
            info.root, info.fstype
        ));
    }
    if !IN_MEMORY.contains(&info.fstype.as_str()) {
        return Ok(());
    }
    let dir = format!("/proc/{pid}/root{}", info.point);
    let mut entries = std::fs::read_dir(&dir).map_err(|e| format!("listing {dir}: {e}"))?;
    match entries.next() {
        None => Ok(()),
        Some(_) => {
            Err(format!("a {} holding files, which --enable-fs does not save (a new one would be empty)", info.fstype))
        }
    }
}

/// The path in stasis's mount namespace of the directory `info` mounts, if that namespace shows
/// it: a mount there of the same filesystem whose root is at or above `info`'s, and which is not
/// covered at that path (the path is on `info`'s device).
fn seen_outside(info: &Info, host: &[Info]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (major, minor) = info.dev.split_once(':')?;
    let dev = libc::makedev(major.parse().ok()?, minor.parse().ok()?);
    host.iter().rev().filter(|h| h.dev == info.dev && h.fstype == info.fstype).find_map(|h| {
        let below = match h.root.as_str() {
            "/" => info.root.as_str(),
            root if info.root == root => "",
            root => info.root.strip_prefix(root).filter(|rest| rest.starts_with('/'))?,
        };
        let below = below.trim_start_matches('/');
        let path = match below.is_empty() {
            true => std::path::PathBuf::from(&h.point),
            false => std::path::Path::new(&h.point).join(below),
        };
        let shown = std::fs::metadata(&path).is_ok_and(|m| m.dev() == dev);
        shown.then(|| path.display().to_string())
    })
}

/// The earlier mount a bind mount is copied from: of the same filesystem, with a root at or above
/// its own; a member of its peer group or of its master's if there is one.
fn bind_source(info: &Info, done: &[Mount]) -> Option<u32> {
    let covers = |m: &&Mount| {
        m.dev == info.dev && (m.root == "/" || info.root == m.root || info.root.starts_with(&format!("{}/", m.root)))
    };
    let group = [info.shared, info.master].into_iter().find(|&g| g != 0 && done.iter().any(|m| m.shared == g));
    let candidates = done.iter().filter(covers);
    match group {
        Some(g) => candidates.filter(|m| m.shared == g).map(|m| m.id).next(),
        None => candidates.map(|m| m.id).next(),
    }
}

/// The entries of `/proc/PID/DIR` (`fd`, `fdinfo`); None for a process that exited before the
/// tree was frozen.
fn fd_dir(pid: i32, dir: &str) -> Result<Option<std::fs::ReadDir>> {
    let path = format!("/proc/{pid}/{dir}");
    match std::fs::read_dir(&path) {
        Ok(e) => Ok(Some(e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// Every file the tree's processes hold open by a path (an fd whose link is a path, not a memfd's
/// nor an unlinked file's) is that same file at that path in the tree's namespace, where restore
/// opens it again. One that is not (a file of stasis's namespace the tree was handed, such as
/// runc's stdout redirected to a host file) is refused by name, before the tree is touched: a
/// container killed by its dump would be lost.
fn check_files_inside(pids: &[i32]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for &pid in pids {
        let Some(entries) = fd_dir(pid, "fd")? else { continue };
        for entry in entries.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else { continue };
            let path = link.to_string_lossy();
            if !path.starts_with('/') || path.starts_with("/memfd:") || path.ends_with(" (deleted)") {
                continue;
            }
            let Ok(file) = std::fs::metadata(entry.path()) else { continue };
            let there = std::fs::metadata(format!("/proc/{pid}/root{path}"));
            if there.is_ok_and(|m| (m.dev(), m.ino()) == (file.dev(), file.ino())) {
                continue;
            }
            let fd = entry.file_name().to_string_lossy().into_owned();
            let what = format!(
                "fd {fd} on {path}, a file that is not at that path in its mount namespace (it was opened outside it): it could not be opened again there"
            );
            return Err(Error::Unsupported { pid: Pid(pid), what });
        }
    }
    Ok(())
}

/// A devpts of the namespace whose ptys the tree holds is refused.
fn check_ptys(pids: &[i32], mounts: &[Mount]) -> Result<()> {
    for m in mounts.iter().filter(|m| m.fstype == "devpts" && m.how == "new") {
        let prefix = format!("{}/", m.point.trim_end_matches('/'));
        for &pid in pids {
            let Some(entries) = fd_dir(pid, "fd")? else { continue };
            for entry in entries.flatten() {
                let Ok(link) = std::fs::read_link(entry.path()) else { continue };
                if link.to_string_lossy().starts_with(&prefix) {
                    let what = format!(
                        "fd {}: a terminal {} of the devpts instance mounted at {} in its mount namespace",
                        entry.file_name().to_string_lossy(),
                        link.display(),
                        m.point
                    );
                    return Err(Error::Unsupported { pid: Pid(pid), what });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_read_with_their_propagation() {
        let text = "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                    37 36 0:40 / /mnt\\040x/t ro,nosuid,relatime unbindable - tmpfs none rw,size=64k,mode=700\n";
        let v = parse(text).expect("parsed");
        assert_eq!((v[0].id, v[0].parent, v[0].master, v[0].shared), (36, 35, 1, 7));
        assert_eq!((v[0].root.as_str(), v[0].point.as_str()), ("/mnt1", "/mnt x"));
        assert_eq!(v[0].super_opts, "rw,errors=continue");
        assert!(v[1].unbindable);
        assert_eq!(attrs(&v[1].mount_opts), sysmnt::ATTR_RDONLY | sysmnt::ATTR_NOSUID | sysmnt::ATTR_RELATIME);
        assert_eq!(attrs("rw,noatime"), sysmnt::ATTR_NOATIME);
        assert_eq!(attrs("rw"), sysmnt::ATTR_STRICTATIME);
    }

    #[test]
    fn mounts_are_ordered_parents_first() {
        let text =
            "10 1 0:1 / / rw - ext4 /dev/x rw\n12 11 0:3 / /a/b rw - tmpfs t rw\n11 10 0:2 / /a rw - tmpfs t rw\n";
        let v = ordered(&parse(text).expect("parsed")).expect("one root");
        assert_eq!(v.iter().map(|i| i.id).collect::<Vec<_>>(), [10, 11, 12]);
        let two = "10 1 0:1 / / rw - ext4 /dev/x rw\n11 2 0:2 / /a rw - tmpfs t rw\n";
        assert!(ordered(&parse(two).expect("parsed")).is_none());
    }

    #[test]
    fn skip_mnt_leaves_out_a_mount_and_those_under_it() {
        let text = "10 1 0:1 / / rw - ext4 /dev/x rw\n11 10 0:2 / /a rw - tmpfs t rw\n\
                    12 11 0:3 / /a/b rw - tmpfs t rw\n13 10 0:4 / /c rw - tmpfs t rw\n";
        let infos = ordered(&parse(text).expect("parsed")).expect("one root");
        let (kept, out) = leave_out(1, infos.clone(), &["/a/".into(), "/none".into()]).expect("left out");
        assert_eq!(kept.iter().map(|i| i.id).collect::<Vec<_>>(), [10, 13]);
        assert_eq!(out.iter().map(|i| i.id).collect::<Vec<_>>(), [11, 12]);
        assert!(leave_out(1, infos, &["/".into()]).is_err());
    }

    #[test]
    fn a_bind_mount_is_copied_from_a_member_of_its_peer_group() {
        let m =
            |id, root: &str, shared| Mount { id, dev: "0:5".into(), root: root.into(), shared, ..Default::default() };
        let done = [m(1, "/", 0), m(2, "/", 9)];
        let slave = Info { dev: "0:5".into(), root: "/d".into(), master: 9, ..Default::default() };
        assert_eq!(bind_source(&slave, &done), Some(2));
        let plain = Info { dev: "0:5".into(), root: "/d".into(), ..Default::default() };
        assert_eq!(bind_source(&plain, &done), Some(1));
        let other = Info { dev: "0:6".into(), root: "/".into(), ..Default::default() };
        assert_eq!(bind_source(&other, &done), None);
    }
}
