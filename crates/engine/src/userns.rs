//! User namespaces: a tree whose root has a user namespace of its own (`unshare(CLONE_NEWUSER)`,
//! a child of stasis's), with its uid and gid maps and its `setgroups` setting, and the
//! namespaces of the root that it owns; their making at restore, and each task's entry into it.
//!
//! Dump: every process of the tree is in the root's user namespace; its parent must be stasis's
//! (nested user namespaces are refused). The root's other namespaces of its own (UTS, IPC,
//! network) must be owned by it; a mount, cgroup, PID or time namespace of its own, a namespace a
//! process other than the root made inside it, threads (the ids of a task made inside a user
//! namespace cannot be set at stasis's level: `clone3`'s `set_tid` needs CAP_CHECKPOINT_RESTORE
//! over every PID namespace it sets an id in) and a process sharing its fs context are refused by
//! name, as are helpers for sessions whose leader exited.
//!
//! Restore ([`Holder`]): a short-lived helper is cloned into a new user namespace, its maps are
//! written (`setgroups` first), and it unshares the root's other new namespaces, so that they are
//! owned by the new user namespace; the calling thread enters them in place of making its own,
//! and the root is forked into them. Tasks are
//! built in stasis's user namespace (so `clone3` may set their ids at every level), and each joins
//! the new one at the end of its build, after its children exist ([`Joined::join`]): its groups are
//! set before (as stasis's ids, which `setgroups` denied in the namespace would refuse), then
//! `setns(CLONE_NEWUSER)` and its ids and capabilities as seen inside (see [`crate::creds`]).

use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use stasis_image::model::{Creds, IdRange, Namespace, ProcessEntry, SHARES_FS};
use stasis_sys::inject::{Injector, SCRATCH_LEN};
use stasis_sys::ns::{self, Kind};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// The namespaces a root in a user namespace of its own may have of its own, owned by it.
const OWNED: [&str; 3] = ["uts", "ipc", "net"];

/// What the dump checks a user namespace against, per process of the tree (in `procs` order).
pub struct TreeFacts<'a> {
    pub procs: &'a [ProcessEntry],
    /// Whether each process has threads besides its main one.
    pub threaded: &'a [bool],
    /// The tree needs session or group helpers.
    pub helpers: bool,
    /// stasis's own namespaces.
    pub ours: &'a crate::ns::Ours,
}

/// Check the user namespaces of the tree (see the module docs) and describe the root's, if it has
/// one of its own.
pub fn dump(root: &ProcRoot, facts: &TreeFacts) -> Result<Option<Namespace>> {
    let procs = facts.procs;
    let first = &procs[0];
    if let Some(p) = procs.iter().find(|p| p.user_ns != first.user_ns) {
        let what = "a user namespace other than the root's (only the root's is made again)".into();
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    if first.user_ns == 0 {
        return Ok(None);
    }
    check_parent(first, facts.ours)?;
    check_owned(root, first, facts.ours)?;
    for (i, p) in procs.iter().enumerate() {
        check_process(p, procs.iter().take(i).find(|q| q.pid == p.ppid).filter(|_| i != 0), facts.threaded[i])?;
    }
    if facts.helpers {
        let what = "a process group or session whose leader exited, in a user namespace of its own".into();
        return Err(Error::Unsupported { pid: Pid(first.pid), what });
    }
    let path = |name: &str| root.pid_path(first.pid, name).display().to_string();
    let map = |name: &str| read_map(&path(name));
    let setgroups_path = path("setgroups");
    let setgroups = std::fs::read_to_string(&setgroups_path).map_err(Error::io(&setgroups_path))?;
    let n = Namespace {
        kind: "user".into(),
        inode: first.user_ns,
        uid_map: map("uid_map")?,
        gid_map: map("gid_map")?,
        setgroups_deny: setgroups.trim() == "deny",
        ..Default::default()
    };
    log::info!(
        "pid {}: user namespace {} of its own: uid map {:?}, gid map {:?}",
        first.pid,
        n.inode,
        n.uid_map,
        n.gid_map
    );
    Ok(Some(n))
}

/// The root's user namespace is a child of stasis's.
fn check_parent(first: &ProcessEntry, ours: &crate::ns::Ours) -> Result<()> {
    let pid = Pid(first.pid);
    let parent = ns::open_named(pid, "user")
        .and_then(|fd| ns::parent_inode(fd.as_fd()))
        .map_err(Error::sys(first.pid, "reading the parent of its user namespace"))?;
    if Some(parent) != ours.get("user") {
        let what = "a user namespace nested in another one than stasis's".into();
        return Err(Error::Unsupported { pid, what });
    }
    Ok(())
}

/// The root's namespaces of its own are owned by its user namespace; the kinds stasis cannot make
/// inside one are refused: a mount, cgroup or time namespace, and a PID namespace (its init's
/// children, forked inside the user namespace, could not be given their ids at stasis's level,
/// and one made before it joins would not be owned by it).
fn check_owned(root: &ProcRoot, first: &ProcessEntry, ours: &crate::ns::Ours) -> Result<()> {
    let pid = first.pid;
    let not_with_user = [
        ("mnt", ours.own(root, pid, "mnt")?),
        ("cgroup", first.cgroup_ns),
        ("time", first.time_ns),
        ("pid", first.pid_ns | first.pid_ns_for_children),
    ];
    if let Some((kind, _)) = not_with_user.iter().find(|(_, inode)| *inode != 0) {
        let what = format!("a {kind} namespace of its own with a user namespace of its own");
        return Err(Error::Unsupported { pid: Pid(pid), what });
    }
    let own = [first.uts_ns, first.ipc_ns, first.net_ns];
    for (kind, _) in OWNED.iter().zip(own).filter(|(_, inode)| *inode != 0) {
        let owner = ns::open_named(Pid(pid), kind)
            .and_then(|fd| ns::owner_inode(fd.as_fd()))
            .map_err(Error::sys(pid, "reading the owner of one of its namespaces"))?;
        if owner != first.user_ns {
            let what = format!("a {kind} namespace owned by user namespace {owner}, not by its own {}", first.user_ns);
            return Err(Error::Unsupported { pid: Pid(pid), what });
        }
    }
    Ok(())
}

/// A process of a tree in a user namespace: no threads, its own fs context, and (but the root) the
/// namespaces of its parent.
fn check_process(p: &ProcessEntry, parent: Option<&ProcessEntry>, threaded: bool) -> Result<()> {
    let refused = if threaded {
        "threads in a user namespace of its own (their ids cannot be set from inside it)".to_string()
    } else if p.shares & SHARES_FS != 0 {
        "an fs context shared with its parent (CLONE_FS) in a user namespace of its own".into()
    } else if let Some(q) = parent {
        let kinds = [
            ("uts", p.uts_ns != q.uts_ns),
            ("ipc", p.ipc_ns != q.ipc_ns),
            ("pid", p.pid_ns != q.pid_ns || p.pid_ns_for_children != 0),
            ("net", p.net_ns != q.net_ns),
            ("time", p.time_ns != q.time_ns),
            ("cgroup", p.cgroup_ns != q.cgroup_ns),
        ];
        match kinds.iter().find(|(_, differs)| *differs) {
            Some((kind, _)) => {
                format!("a {kind} namespace made inside the tree's user namespace by a process other than the root")
            }
            None => return Ok(()),
        }
    } else if p.pid_ns_for_children != 0 {
        "a PID namespace for its next children inside its user namespace".into()
    } else {
        return Ok(());
    };
    Err(Error::Unsupported { pid: Pid(p.pid), what: refused })
}

/// The lines of a uid or gid map (`inside outside count`).
fn read_map(path: &str) -> Result<Vec<IdRange>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    parse_map(&text).ok_or_else(|| Error::Incompatible {
        file: path.into(),
        what: format!("not `inside outside count` lines: {text:?}"),
    })
}

fn parse_map(text: &str) -> Option<Vec<IdRange>> {
    text.lines()
        .map(|line| {
            match line.split_whitespace().map(str::parse).collect::<std::result::Result<Vec<u32>, _>>().ok()?[..] {
                [inside, outside, count] => Some(IdRange { inside, outside, count }),
                _ => None,
            }
        })
        .collect()
}

fn map_text(map: &[IdRange]) -> String {
    map.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect()
}

/// The id inside the namespace of stasis's id `id`, if the map has it.
fn inside(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter().find(|r| id >= r.outside && (id - r.outside) < r.count).map(|r| r.inside + (id - r.outside))
}

/// The root's user namespace in the image, if it has one of its own.
pub fn of_root<'a>(root: &ProcessEntry, namespaces: &'a [Namespace]) -> Result<Option<&'a Namespace>> {
    if root.user_ns == 0 {
        return Ok(None);
    }
    namespaces.iter().find(|n| n.kind == "user" && n.inode == root.user_ns).map(Some).ok_or_else(|| {
        Error::Incompatible {
            file: "pstree.img".into(),
            what: format!("pid {}: field user_ns {} names no user namespace of the image", root.pid, root.user_ns),
        }
    })
}

/// A helper in the root's new user namespace, holding the root's other new namespaces until the
/// calling thread has entered them (see the module docs). Killed if dropped unfinished.
pub struct Holder {
    inj: Option<Injector>,
    pid: Pid,
    root: i32,
}

impl Holder {
    /// Clone the helper into a new user namespace with the maps of `n`, then make it unshare
    /// `kinds` (owned by the new namespace). `root`: the pid of the tree's root, for errors.
    pub fn make(root: i32, n: &Namespace, kinds: &[Kind]) -> Result<Holder> {
        let pid = stasis_sys::process::spawn_traced_in(Pid(0), libc::CLONE_NEWUSER as u64, &[]).map_err(|e| {
            Error::Failed { pid: Pid(root), what: format!("creating the helper of its user namespace: {e}") }
        })?;
        let code = crate::mem::gadget::current_code_area(pid);
        let calls = crate::fault::calls("restore-call");
        let inj = code.and_then(|code| Ok(Injector::new(pid, code, None, SCRATCH_LEN, &calls)?));
        let mut holder = Holder { inj: None, pid, root };
        holder.inj = Some(inj.inspect_err(|_| holder.kill())?);
        holder.write_maps(n)?;
        let flags = kinds.iter().fold(0, |acc, k| acc | k.flag());
        if flags != 0 {
            let inj = holder.inj.as_mut().expect("set above");
            inj.unshare(flags).map_err(|e| Error::Step {
                pid,
                what: format!("making the namespaces of root {root} in its user namespace (helper)"),
                source: Box::new(e.into()),
            })?;
        }
        Ok(holder)
    }

    fn write_maps(&self, n: &Namespace) -> Result<()> {
        let setgroups = if n.setgroups_deny { "deny" } else { "allow" };
        for (file, text) in
            [("setgroups", setgroups.to_string()), ("uid_map", map_text(&n.uid_map)), ("gid_map", map_text(&n.gid_map))]
        {
            let path = format!("/proc/{}/{file}", self.pid);
            std::fs::write(&path, &text).map_err(|e| Error::Failed {
                pid: Pid(self.root),
                what: format!("writing {text:?} to {path} (its user namespace): {e}"),
            })?;
        }
        Ok(())
    }

    /// The calling thread enters the helper's namespace of `kind`.
    pub fn enter(&self, kind: Kind) -> Result<()> {
        let what = format!("entering the {} namespace made in its user namespace by helper {}", kind.link(), self.pid);
        ns::enter(self.pid, kind).map_err(|e| Error::Failed { pid: Pid(self.root), what: format!("{what}: {e}") })
    }

    /// The user namespace, kept open; the helper exits.
    pub fn finish(mut self, n: &Namespace) -> Result<Joined> {
        let fd = ns::open_named(self.pid, "user").map_err(Error::sys(self.root, "keeping its user namespace"))?;
        let inj = self.inj.take().expect("made with one");
        crate::session::end_helper(inj)?;
        Ok(Joined { fd, ns: n.clone() })
    }

    fn kill(&mut self) {
        if let Some(inj) = self.inj.take() {
            inj.abandon();
        }
        let _ = stasis_sys::process::kill(self.pid, libc::SIGKILL);
        crate::task::reap(&[self.pid]);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.inj.is_some() {
            self.kill();
        }
    }
}

/// The root's new user namespace, which every task joins at the end of its build.
pub struct Joined {
    fd: OwnedFd,
    ns: Namespace,
}

impl Joined {
    /// Task `pid` (single-threaded, its children made) joins the namespace: its groups set first as
    /// stasis's ids, then `setns`, then its credentials `c` as seen inside.
    pub fn join(&self, inj: &mut dyn Remote, pid: Pid, min_fd: i32, c: &Creds) -> Result<()> {
        let step = |what: &'static str| {
            move |e: stasis_sys::inject::InjectError| Error::Step { pid, what: what.into(), source: Box::new(e.into()) }
        };
        let inside = self.inside(pid, c)?;
        inj.setgroups(&c.groups).map_err(step("supplementary groups (before joining its user namespace)"))?;
        let mut imp = crate::files::FdImporter::new(inj, min_fd)?;
        let fd = imp.import(inj, self.fd.as_fd())?;
        let joined = inj.setns(fd, libc::CLONE_NEWUSER).map_err(step("joining its user namespace"));
        inj.close(fd)?;
        imp.close(inj)?;
        joined?;
        crate::creds::restore_in_user_ns(inj, pid, &inside)
    }

    /// Credentials `c` (stasis's ids) as seen inside the namespace. An id the maps lack is the one
    /// the task has from stasis (root's), which is kept (`u32::MAX`: unchanged); another is refused.
    fn inside(&self, pid: Pid, c: &Creds) -> Result<Creds> {
        let (uids, gids) = (&self.ns.uid_map, &self.ns.gid_map);
        let id = |map: &[IdRange], what: &str, v: u32| match inside(map, v) {
            Some(i) => Ok(i),
            None if v == 0 => Ok(u32::MAX),
            None => Err(Error::Failed { pid, what: format!("{what} {v} is not mapped in its user namespace") }),
        };
        Ok(Creds {
            uid: id(uids, "uid", c.uid)?,
            euid: id(uids, "uid", c.euid)?,
            suid: id(uids, "uid", c.suid)?,
            fsuid: id(uids, "uid", c.fsuid)?,
            gid: id(gids, "gid", c.gid)?,
            egid: id(gids, "gid", c.egid)?,
            sgid: id(gids, "gid", c.sgid)?,
            fsgid: id(gids, "gid", c.fsgid)?,
            ..c.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{inside, parse_map};
    use stasis_image::model::IdRange;

    #[test]
    fn maps_parse_and_translate() {
        let map = parse_map("         0     100000       1000\n      1000     201000        10\n").unwrap();
        assert_eq!(
            map,
            vec![
                IdRange { inside: 0, outside: 100000, count: 1000 },
                IdRange { inside: 1000, outside: 201000, count: 10 }
            ]
        );
        assert_eq!(inside(&map, 100000), Some(0));
        assert_eq!(inside(&map, 100999), Some(999));
        assert_eq!(inside(&map, 201009), Some(1009));
        assert_eq!(inside(&map, 201010), None);
        assert_eq!(inside(&map, 0), None);
        assert!(parse_map("0 1\n").is_none());
    }
}
