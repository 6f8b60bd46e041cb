//! Namespaces of the tree: which of its processes are in UTS, IPC, PID, network or time namespaces
//! other than stasis's, the names of each UTS namespace and the offsets of a time namespace (a
//! network namespace's state is [`crate::netns`]'s, a mount namespace's [`crate::mnt`]'s), and their
//! creation at restore. A user namespace is the root's only, see [`crate::userns`]; a cgroup
//! namespace is the root's only too, see [`crate::cgroups`]; a network or time namespace of a
//! process other than the root is refused by name.
//!
//! Dump records the inode of each process's UTS, IPC and PID namespace (0 for stasis's own) and
//! its ids in every nested PID namespace (`NSpid`). A process is in its parent's namespace, or in
//! a new one it is the first process of (the root, or a child its parent made with `CLONE_NEW*`);
//! a namespace reached otherwise (`setns` into a sibling's, back into stasis's) is refused. A new
//! PID namespace must have its init (pid 1) in the tree, as the process that made it: the root
//! itself, or a child of a process in the namespace above.
//!
//! Restore makes the root's new UTS, IPC and network namespaces on the calling thread (`unshare`,
//! see [`RootNs`]) before anything else, so the SysV objects, message queues and sockets are made
//! inside them and the root, forked from that thread, is born in them; a new PID namespace
//! is made by the root's `clone3` (`CLONE_NEWPID`, pid 1 at the inner level), a time namespace by
//! a helper that forks the root (see `restore::process::create_in_time_ns`). Children get
//! `CLONE_NEW*` flags where their namespace differs from their parent's, and every task is
//! created with its ids at each level (`clone3` `set_tid` with the whole chain). Calls injected
//! into a task of a nested PID namespace name processes by their ids there ([`local`]).

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{FdTable, Namespace, ProcessEntry};
use stasis_sys::ns::{self, Kind};
use stasis_sys::remote::{CloneArgs, Remote, MAX_INNER_LEVELS};
use stasis_sys::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Namespaces a tree may have of its own (a mount namespace is [`crate::mnt`]'s, a user
/// namespace [`crate::userns`]'s).
const KEPT: [&str; 10] =
    ["uts", "ipc", "net", "pid", "pid_for_children", "time", "time_for_children", "cgroup", "mnt", "user"];

/// The namespaces a tree's root has of its own (not stasis's): what its creation must make. Read
/// by front-ends (CLI, RPC) from an image with [`NsSet::of_root`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NsSet {
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    pub pid: bool,
    pub time: bool,
}

impl NsSet {
    /// The root's namespaces of its own, from its entry in `pstree.img`.
    pub fn of_root(root: &ProcessEntry) -> NsSet {
        let (uts, ipc, net, pid, time) = (root.uts_ns, root.ipc_ns, root.net_ns, root.pid_ns, root.time_ns);
        NsSet { uts: uts != 0, ipc: ipc != 0, net: net != 0, pid: pid != 0, time: time != 0 }
    }

    /// The root's namespaces of its own in the image at `dir` (for a front-end that must know them
    /// before the restore, such as CRIU's `setup-namespaces` round trip).
    pub fn of_image(dir: &std::path::Path) -> Result<NsSet> {
        let images = stasis_image::ImageDir::open(dir)?;
        let tree: stasis_image::model::PsTree = images.read_one(stasis_image::ImageKind::PsTree, None)?;
        let root = tree
            .processes
            .first()
            .ok_or_else(|| Error::Incompatible { file: "pstree.img".into(), what: "no process".into() })?;
        Ok(NsSet::of_root(root))
    }

    /// The kinds a thread unshares to make them (all but the PID namespace, made by `clone3`).
    fn unshared(self) -> Vec<Kind> {
        let kinds = [(self.uts, Kind::Uts), (self.ipc, Kind::Ipc), (self.net, Kind::Net)];
        kinds.into_iter().filter(|(on, _)| *on).map(|(_, k)| k).collect()
    }
}

/// stasis's own namespaces: the inode of each link of [`KEPT`].
pub struct Ours(Vec<(&'static str, Option<u64>)>);

impl Ours {
    pub fn read(root: &ProcRoot) -> Ours {
        let me = std::process::id() as i32;
        Ours(KEPT.iter().map(|&ns| (ns, proc::ns_inode(root, me, ns).ok())).collect())
    }

    pub(crate) fn get(&self, ns: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| *n == ns).and_then(|(_, i)| *i)
    }

    /// The inode of namespace `ns` of `pid`, 0 when it is ours.
    pub(crate) fn own(&self, root: &ProcRoot, pid: i32, ns: &str) -> Result<u64> {
        let inode = proc::ns_inode(root, pid, ns)?;
        Ok(if Some(inode) == self.get(ns) { 0 } else { inode })
    }
}

/// Fill the namespace fields of `p` (a live process; see the module docs).
pub fn dump_process(root: &ProcRoot, p: &mut ProcessEntry, ours: &Ours) -> Result<()> {
    p.uts_ns = ours.own(root, p.pid, "uts")?;
    p.ipc_ns = ours.own(root, p.pid, "ipc")?;
    p.pid_ns = ours.own(root, p.pid, "pid")?;
    p.net_ns = ours.own(root, p.pid, "net")?;
    p.time_ns = ours.own(root, p.pid, "time").unwrap_or(0);
    p.cgroup_ns = ours.own(root, p.pid, "cgroup").unwrap_or(0);
    p.user_ns = ours.own(root, p.pid, "user")?;
    let (own_pid, for_children) =
        (proc::ns_inode(root, p.pid, "pid")?, proc::ns_inode(root, p.pid, "pid_for_children")?);
    p.pid_ns_for_children = if for_children != own_pid { for_children } else { 0 };
    p.nspid = nested_ids(proc::status(root, p.pid)?.ns_tgid);
    Ok(())
}

/// A thread's ids in the nested PID namespaces (`NSpid`), empty in ours.
pub fn dump_thread(root: &ProcRoot, tid: i32) -> Result<Vec<i32>> {
    Ok(nested_ids(proc::status(root, tid)?.ns_pid))
}

fn nested_ids(ids: Vec<i32>) -> Vec<i32> {
    if ids.len() > 1 {
        ids
    } else {
        Vec::new()
    }
}

/// A zombie: in its parent's namespaces (its own links are gone), with its ids from its status.
pub fn dump_zombie(root: &ProcRoot, z: &mut ProcessEntry, parent: &ProcessEntry) {
    (z.uts_ns, z.ipc_ns, z.pid_ns, z.net_ns) = (parent.uts_ns, parent.ipc_ns, parent.pid_ns, parent.net_ns);
    (z.time_ns, z.cgroup_ns, z.user_ns) = (parent.time_ns, parent.cgroup_ns, parent.user_ns);
    z.nspid = proc::status(root, z.pid).map(|s| nested_ids(s.ns_tgid)).unwrap_or_default();
}

/// Check how every process of the tree (parents before children) came into its namespaces, and
/// describe each namespace of the tree's own (see the module docs). `helpers`: the tree needs
/// session or group helpers, which are not made inside a nested PID namespace. `veths`: the
/// veths named with `--external veth[NAME]:PEER` (see [`crate::netns`]) and the network
/// namespaces named with `--external net[INODE]:KEY`.
pub fn dump_tree(procs: &[ProcessEntry], helpers: bool, external: &External) -> Result<Vec<Namespace>> {
    let mut made: Vec<Namespace> = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let parent = procs[..i].iter().find(|q| q.pid == p.ppid).filter(|_| i != 0);
        for (kind, mine, theirs) in [
            ("uts", p.uts_ns, parent.map_or(0, |q| q.uts_ns)),
            ("ipc", p.ipc_ns, parent.map_or(0, |q| q.ipc_ns)),
            ("pid", p.pid_ns, parent.map_or(0, |q| q.pid_ns)),
            ("net", p.net_ns, parent.map_or(0, |q| q.net_ns)),
            ("time", p.time_ns, parent.map_or(0, |q| q.time_ns)),
            ("cgroup", p.cgroup_ns, parent.map_or(0, |q| q.cgroup_ns)),
        ] {
            if mine == theirs {
                continue;
            }
            check_entry(p, parent, kind, mine, &made)?;
            if kind == "time" {
                made.push(dump_time(p, i, mine)?);
                continue;
            }
            if kind == "cgroup" {
                made.push(dump_cgroup(p, i, mine)?);
                continue;
            }
            if kind == "net" {
                if i != 0 {
                    let what = "a network namespace other than the root's".into();
                    return Err(Error::Unsupported { pid: Pid(p.pid), what });
                }
                if let Some((_, key)) = external.netns.iter().find(|(inode, _)| *inode == mine) {
                    log::info!("pid {}: network namespace {mine} is external ({key}): not saved", p.pid);
                    made.push(Namespace {
                        kind: "net".into(),
                        inode: mine,
                        external_key: key.clone(),
                        ..Default::default()
                    });
                    continue;
                }
                if external.empty_net {
                    log::info!("pid {}: network namespace {mine} saved empty (--empty-ns net)", p.pid);
                    made.push(Namespace { kind: "net".into(), inode: mine, ..Default::default() });
                    continue;
                }
                let veths = &external.veths;
                let dumped = ns::run_in(Pid(p.pid), Kind::Net, || crate::netns::dump(p.pid, mine, veths))
                    .map_err(Error::sys(p.pid, "entering its network namespace"))??;
                made.push(dumped);
                continue;
            }
            let mut ns = Namespace { kind: kind.into(), inode: mine, ..Default::default() };
            if kind == "uts" {
                let names = ns::run_in(Pid(p.pid), Kind::Uts, ns::uts_names)
                    .and_then(|r| r)
                    .map_err(Error::sys(p.pid, "reading the names of its UTS namespace"))?;
                (ns.hostname, ns.domainname) = names;
            }
            made.push(ns);
        }
        check_nested(p)?;
        check_for_children(p, procs)?;
    }
    if helpers && procs.iter().any(|p| p.pid_ns != 0) {
        let what = "a process group or session whose leader exited, in a PID namespace of the tree".into();
        return Err(Error::Unsupported { pid: Pid(procs[0].pid), what });
    }
    Ok(made)
}

/// A process whose next children go to another PID namespace (it unshared one) has the init of
/// that namespace among its children: restore points it there again (see [`enter_for_children`]).
fn check_for_children(p: &ProcessEntry, procs: &[ProcessEntry]) -> Result<()> {
    let ns = p.pid_ns_for_children;
    if ns != 0 && !procs.iter().any(|c| c.ppid == p.pid && c.pid_ns == ns && c.nspid.last() == Some(&1)) {
        let what = "a PID namespace for its next children (unshare(CLONE_NEWPID)) whose init is not its child".into();
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    Ok(())
}

/// After its children are made: a process whose next children went to the PID namespace of its
/// child `init` (see [`check_for_children`]) enters it for them again (`setns` on a pidfd of the
/// child, with `CLONE_NEWPID`).
pub fn enter_for_children(inj: &mut dyn Remote, p: &ProcessEntry, procs: &[&ProcessEntry]) -> Result<()> {
    let ns = p.pid_ns_for_children;
    let Some(init) = procs.iter().find(|c| ns != 0 && c.ppid == p.pid && c.pid_ns == ns) else { return Ok(()) };
    let level = p.nspid.len().max(1) - 1;
    let seen = Pid(init.nspid.get(level).copied().unwrap_or(init.pid));
    let fd = inj.pidfd_open(seen, 0)?;
    let entered = inj.setns(fd, libc::CLONE_NEWPID);
    inj.close(fd)?;
    entered.map_err(|e| Error::Step {
        pid: Pid(p.pid),
        what: format!("the PID namespace of its next children (that of its child {})", init.pid),
        source: Box::new(e.into()),
    })
}

/// What a process in a nested PID namespace may not have: more levels than `clone3` is given, an fd
/// table shared with its parent (the controller's pidfd it inherits is closed by its parent), a
/// terminal it leads a session for.
fn check_nested(p: &ProcessEntry) -> Result<()> {
    let refused = if p.nspid.len() > MAX_INNER_LEVELS + 1 {
        format!("{} nested PID namespaces (at most {MAX_INNER_LEVELS})", p.nspid.len() - 1)
    } else if p.nspid.is_empty() {
        return Ok(());
    } else if p.shares & stasis_image::model::SHARES_FILES != 0 {
        "an fd table shared with its parent in a PID namespace of the tree".into()
    } else if p.sid == p.pid && p.ctty != 0 {
        "a controlling terminal of its session in a PID namespace of the tree".into()
    } else {
        return Ok(());
    };
    Err(Error::Unsupported { pid: Pid(p.pid), what: refused })
}

/// The root's cgroup namespace with its root (see [`crate::cgroups::ns_root`]). A child in a
/// cgroup namespace other than its parent's is refused: its parent, running its own code by then,
/// would have to unshare it in the right cgroup.
fn dump_cgroup(p: &ProcessEntry, i: usize, inode: u64) -> Result<Namespace> {
    if i != 0 {
        let what = "a cgroup namespace other than its parent's (only the root's is made again)".into();
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    let (cgroup_root, cgroup_roots_v1) = crate::cgroups::ns_root(Pid(p.pid))?;
    log::info!("pid {}: cgroup namespace {inode} rooted at {cgroup_root}", p.pid);
    Ok(Namespace { kind: "cgroup".into(), inode, cgroup_root, cgroup_roots_v1, ..Default::default() })
}

/// The root's cgroup namespace in the image, if it has one of its own.
pub fn cgroup_root<'a>(root: &ProcessEntry, namespaces: &'a [Namespace]) -> Result<Option<&'a Namespace>> {
    if root.cgroup_ns == 0 {
        return Ok(None);
    }
    find(namespaces, "cgroup", root.cgroup_ns, root.pid).map(Some)
}

/// The root's time namespace with its offsets. A child in a time namespace other than its
/// parent's is refused, as CRIU does: its offsets must be written before any task is in it, which
/// the parent, already running in its own, cannot do for it.
fn dump_time(p: &ProcessEntry, i: usize, inode: u64) -> Result<Namespace> {
    if i != 0 {
        let what = "a time namespace other than its parent's (it cannot be made again)".into();
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    let path = format!("/proc/{}/timens_offsets", p.pid);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let offsets = parse_time_offsets(&text).ok_or_else(|| Error::Failed {
        pid: Pid(p.pid),
        what: format!("{path}: not `monotonic S NS` and `boottime S NS` lines: {text:?}"),
    })?;
    Ok(Namespace { kind: "time".into(), inode, time_offsets: offsets.to_vec(), ..Default::default() })
}

/// `monotonic S NS` and `boottime S NS` lines (`/proc/PID/timens_offsets`): [mono s, mono ns,
/// boot s, boot ns].
fn parse_time_offsets(text: &str) -> Option<[i64; 4]> {
    let mut out = [0i64; 4];
    let mut seen = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let at = match f.first() {
            Some(&"monotonic") => 0,
            Some(&"boottime") => 2,
            _ => continue,
        };
        out[at] = f.get(1)?.parse().ok()?;
        out[at + 1] = f.get(2)?.parse().ok()?;
        seen += 1;
    }
    (seen == 2).then_some(out)
}

/// The text to write to `/proc/PID/timens_offsets` for the time namespace of `root`.
pub fn time_offsets_text(root: &ProcessEntry, namespaces: &[Namespace]) -> Result<String> {
    let n = find(namespaces, "time", root.time_ns, root.pid)?;
    match n.time_offsets[..] {
        [ms, mns, bs, bns] => Ok(format!("monotonic {ms} {mns}\nboottime {bs} {bns}\n")),
        _ => Err(Error::Incompatible {
            file: "pstree.img".into(),
            what: format!("pid {}: time namespace {}: field time_offsets has not 4 values", root.pid, n.inode),
        }),
    }
}

/// What the command line says is outside the image: veths' peers, network namespaces.
#[derive(Default)]
pub struct External {
    pub veths: Vec<(String, String)>,
    pub netns: Vec<(u64, String)>,
    /// `--empty-ns net`: the network namespace is saved empty.
    pub empty_net: bool,
}

/// `p` is the first process in namespace `inode` of `kind`, which its parent is not in: it must be
/// a new namespace (and, for a PID namespace, `p` its init).
fn check_entry(
    p: &ProcessEntry,
    parent: Option<&ProcessEntry>,
    kind: &str,
    inode: u64,
    made: &[Namespace],
) -> Result<()> {
    let whose = parent.map_or("stasis's".to_string(), |q| format!("its parent {}'s", q.pid));
    if inode == 0 || made.iter().any(|n| n.kind == kind && n.inode == inode) {
        let what = format!("a {kind} namespace other than {whose} that it did not create (entered with setns)");
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    if kind == "pid" {
        let above = parent.map_or(1, |q| q.nspid.len().max(1));
        if p.nspid.last() != Some(&1) || p.nspid.len() != above + 1 {
            let what = format!(
                "a PID namespace (ids {:?}) whose init is not in the tree, or nested below one that has none",
                p.nspid
            );
            return Err(Error::Unsupported { pid: Pid(p.pid), what });
        }
    }
    Ok(())
}

/// Refuse the IPC namespaces of processes other than the root's that hold SysV objects (which
/// only the root's namespace gets back), and message queues open in them.
pub fn check_other_ipc(procs: &[ProcessEntry], mqueue_holders: &[i32]) -> Result<()> {
    let root_ipc = procs[0].ipc_ns;
    for p in procs.iter().filter(|p| p.ipc_ns != root_ipc) {
        if mqueue_holders.contains(&p.pid) {
            let what = "a POSIX message queue in an IPC namespace other than the root's".into();
            return Err(Error::Unsupported { pid: Pid(p.pid), what });
        }
        let objects = ns::run_in(Pid(p.pid), Kind::Ipc, crate::ipc::count_objects)
            .map_err(Error::sys(p.pid, "entering its IPC namespace"))??;
        if objects > 0 {
            let what = format!("{objects} SysV IPC objects in an IPC namespace other than the root's");
            return Err(Error::Unsupported { pid: Pid(p.pid), what });
        }
    }
    Ok(())
}

/// The calling thread in the root's IPC and network namespaces for the rest of a dump (its
/// queues and SysV objects are read there, and its sockets listed by `sock_diag`), back in its own
/// when dropped. None when the root shares both of ours.
pub fn enter_root_ns(root: &ProcRoot, pid: i32, ours: &Ours) -> Result<Option<Entered>> {
    let mut kinds = Vec::new();
    if ours.own(root, pid, "ipc")? != 0 {
        kinds.push(Kind::Ipc);
    }
    if ours.own(root, pid, "net")? != 0 {
        kinds.push(Kind::Net);
    }
    if kinds.is_empty() {
        return Ok(None);
    }
    let saved = ns::Saved::save(&kinds).map_err(Error::sys(pid, "keeping our namespaces"))?;
    let entered = Entered { saved, pid };
    for k in kinds {
        ns::enter(Pid(pid), k).map_err(Error::sys(pid, "entering its IPC or network namespace"))?;
    }
    Ok(Some(entered))
}

/// The calling thread in other namespaces until dropped (see [`enter_root_ipc`], [`RootNs`]).
pub struct Entered {
    saved: ns::Saved,
    pid: i32,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = self.saved.restore() {
            // The thread would make the next dump or restore in the wrong namespaces.
            panic!("pid {}: could not go back to stasis's namespaces: {e}", self.pid);
        }
    }
}

/// The root's new UTS and IPC namespaces, made by the calling thread (see the module docs), which
/// goes back to its own when this is dropped: after the restore, or when it fails (the namespaces
/// then go with the killed tree).
pub struct RootNs {
    pub set: NsSet,
    _entered: Option<Entered>,
    /// The root's pid and the nftables tables of its new network namespace, loaded by
    /// [`RootNs::load_firewall`].
    firewall: (i32, String),
    /// The conntrack entries of its new network namespace, made by [`RootNs::load_firewall`].
    conntrack: Vec<stasis_image::model::ConntrackEntry>,
    /// The root's new user namespace (see [`crate::userns`]).
    user: Option<crate::userns::Joined>,
}

impl RootNs {
    fn none(set: NsSet, pid: i32) -> RootNs {
        RootNs { set, _entered: None, firewall: (pid, String::new()), conntrack: Vec::new(), user: None }
    }

    /// The root's new user namespace, which every task joins at the end of its build.
    pub fn user(&self) -> Option<&crate::userns::Joined> {
        self.user.as_ref()
    }

    /// Load the firewall of the root's new network namespace (see [`crate::netns`]), then make
    /// its conntrack entries: once the tree's sockets are made in it, before any of its processes
    /// runs (and before its TCP connections leave repair mode, which sends a packet).
    pub fn load_firewall(&self) -> Result<()> {
        let (pid, tables) = &self.firewall;
        crate::netns::restore_firewall(*pid, tables)?;
        crate::netns::restore_conntrack(*pid, &self.conntrack)
    }
}

/// Make the root's new UTS, IPC and network namespaces on the calling thread, with the UTS names
/// and the network devices, addresses, routes and sysctls of the image (`opts.ext_veths`: the veth
/// peer names given at restore, see [`crate::netns::restore`]); or join the existing ones of
/// `opts.join_ns` (as they are), and an external network namespace given by `--inherit-fd`.
pub fn enter_root(root: &ProcessEntry, namespaces: &[Namespace], opts: &crate::RestoreOptions) -> Result<RootNs> {
    let set = NsSet::of_root(root);
    let pid = root.pid;
    check_joins(pid, set, &opts.join_ns)?;
    let user = crate::userns::of_root(root, namespaces)?;
    let kinds = set.unshared();
    if kinds.is_empty() && user.is_none() {
        return Ok(RootNs::none(set, pid));
    }
    let host_net = ns::open_own(Kind::Net).map_err(Error::sys(pid, "keeping our network namespace"))?;
    let saved = ns::Saved::save(&kinds).map_err(Error::sys(pid, "keeping our namespaces"))?;
    let entered = Entered { saved, pid };
    let net = set.net.then(|| find(namespaces, "net", root.net_ns, pid)).transpose()?;
    let mut fresh = Vec::new();
    for k in kinds {
        match joined(k, net, opts)? {
            Some(fd) => ns::setns(fd.as_fd(), k).map_err(Error::sys(pid, "joining an existing namespace"))?,
            None => fresh.push(k),
        }
    }
    let user = match user {
        None => {
            ns::unshare(&fresh).map_err(Error::sys(pid, "making its namespaces"))?;
            None
        }
        Some(n) => Some(made_in_user_ns(pid, n, &fresh)?),
    };
    if fresh.contains(&Kind::Uts) {
        let n = find(namespaces, "uts", root.uts_ns, pid)?;
        ns::set_uts_names(&n.hostname, &n.domainname).map_err(Error::sys(pid, "setting its UTS names"))?;
    }
    let (mut firewall, mut conntrack) = ((pid, String::new()), Vec::new());
    if let Some(n) = net.filter(|_| fresh.contains(&Kind::Net)) {
        crate::netns::restore(pid, n, host_net.as_fd(), (&opts.ext_veths, opts.weak_sysctls))?;
        firewall.1.clone_from(&n.nftables);
        conntrack.clone_from(&n.conntrack);
    }
    log::info!("pid {pid}: restored in namespaces of its own: {set:?} (new: {fresh:?})");
    Ok(RootNs { set, _entered: Some(entered), firewall, conntrack, user })
}

/// The root's new user namespace `n` with its other new namespaces `fresh` made inside it by a
/// helper, which the calling thread enters (see [`crate::userns`]).
fn made_in_user_ns(pid: i32, n: &Namespace, fresh: &[Kind]) -> Result<crate::userns::Joined> {
    let holder = crate::userns::Holder::make(pid, n, fresh)?;
    for &k in fresh {
        holder.enter(k)?;
    }
    holder.finish(n)
}

/// `--join-ns` names kinds the root has of its own and stasis can join (UTS, IPC, network).
fn check_joins(pid: i32, set: NsSet, join: &[(String, std::sync::Arc<OwnedFd>)]) -> Result<()> {
    for (kind, _) in join {
        let own = match kind.as_str() {
            "uts" => set.uts,
            "ipc" => set.ipc,
            "net" => set.net,
            other => {
                let what = format!("--join-ns {other}: joining a {other} namespace (only uts, ipc and net)");
                return Err(Error::Unsupported { pid: Pid(pid), what });
            }
        };
        if !own {
            let what = format!("--join-ns {kind}: the root had no {kind} namespace of its own at the dump");
            return Err(Error::Failed { pid: Pid(pid), what });
        }
    }
    Ok(())
}

/// The existing namespace of kind `k` the root joins: `--join-ns`, or for an external network
/// namespace (`net`'s `external_key`) the `--inherit-fd` of its key, which must be given.
fn joined<'a>(k: Kind, net: Option<&Namespace>, opts: &'a crate::RestoreOptions) -> Result<Option<&'a OwnedFd>> {
    if let Some((_, fd)) = opts.join_ns.iter().find(|(kind, _)| kind == k.link()) {
        return Ok(Some(fd));
    }
    let Some(key) = net.filter(|_| k == Kind::Net).map(|n| n.external_key.as_str()).filter(|key| !key.is_empty())
    else {
        return Ok(None);
    };
    match opts.inherit_fds.iter().find(|i| i.key == key) {
        Some(i) => Ok(Some(&i.fd)),
        None => Err(Error::Incompatible {
            file: "pstree.img".into(),
            what: format!("the network namespace is external ({key}): give it with --inherit-fd fd[N]:{key} or --join-ns net:PATH"),
        }),
    }
}

fn find<'a>(namespaces: &'a [Namespace], kind: &str, inode: u64, pid: i32) -> Result<&'a Namespace> {
    namespaces.iter().find(|n| n.kind == kind && n.inode == inode).ok_or_else(|| Error::Incompatible {
        file: "pstree.img".into(),
        what: format!("pid {pid}: its {kind} namespace {inode} is not in field namespaces"),
    })
}

/// The root's `clone3` flags and ids in the nested PID namespaces (innermost first).
pub fn root_clone(root: &ProcessEntry) -> (u64, Vec<i32>) {
    let flags = if root.pid_ns != 0 { libc::CLONE_NEWPID as u64 } else { 0 };
    (flags, inner_ids(&root.nspid))
}

/// The ids of a task below stasis's level, innermost first (`set_tid[0..]`).
fn inner_ids(nspid: &[i32]) -> Vec<i32> {
    nspid.iter().skip(1).rev().copied().collect()
}

/// `clone3` arguments making `child` in `parent` (`flags`: what it shares with it), with the
/// `CLONE_NEW*` flags of its namespaces of its own, and the id `clone3` returns in the parent.
pub fn clone_args(child: &ProcessEntry, parent: &ProcessEntry, flags: u64, exit_signal: u64) -> (CloneArgs, Pid) {
    let new = [
        (child.uts_ns != parent.uts_ns, libc::CLONE_NEWUTS),
        (child.ipc_ns != parent.ipc_ns, libc::CLONE_NEWIPC),
        (child.pid_ns != parent.pid_ns, libc::CLONE_NEWPID),
        (child.net_ns != parent.net_ns, libc::CLONE_NEWNET),
    ];
    let flags = new.iter().filter(|(on, _)| *on).fold(flags, |acc, (_, f)| acc | *f as u64);
    let args =
        CloneArgs { flags, exit_signal, set_tid: Some(Pid(child.pid)), inner_tids: inner(&child.nspid), child_tid: 0 };
    // Seen from the parent's PID namespace (that of its level).
    let level = parent.nspid.len().max(1) - 1;
    (args, Pid(child.nspid.get(level).copied().unwrap_or(child.pid)))
}

/// `clone3` arguments for thread `tid` (ids `nspid`) with `flags`, and the id it returns.
pub fn thread_args(tid: i32, nspid: &[i32], flags: u64) -> (CloneArgs, Pid) {
    let args = CloneArgs { flags, exit_signal: 0, set_tid: Some(Pid(tid)), inner_tids: inner(nspid), child_tid: 0 };
    (args, local(nspid, Pid(tid)))
}

fn inner(nspid: &[i32]) -> [i32; MAX_INNER_LEVELS] {
    let mut out = [0; MAX_INNER_LEVELS];
    for (slot, id) in out.iter_mut().zip(inner_ids(nspid)) {
        *slot = id;
    }
    out
}

/// The id of a task (`pid` in stasis's namespace, `nspid` its chain) in its own PID namespace:
/// what calls injected into the task itself or its namespace's processes use.
pub fn local(nspid: &[i32], pid: Pid) -> Pid {
    nspid.last().map_or(pid, |&id| Pid(id))
}

/// Process group `pgid` (stasis's id) as seen by `p`, a process of `procs`: None when no process of
/// the tree in `p`'s PID namespace has that id (a group outside the namespace).
pub fn local_pgid(procs: &[&ProcessEntry], p: &ProcessEntry, pgid: i32) -> Option<i32> {
    if p.nspid.is_empty() {
        return Some(pgid);
    }
    let leader = procs.iter().find(|q| q.pid == pgid && q.pid_ns == p.pid_ns)?;
    leader.nspid.last().copied()
}

/// In a tree with PID namespaces (`root.pid`, or a process with ids in nested ones: `nested`), a
/// pidfd of ours above every fd number of the tables `fds`, for the tasks to inherit.
pub fn controller_pidfd(fds: &[&FdTable], root: &RootNs, nested: bool) -> Result<Option<OwnedFd>> {
    if !root.set.pid && !nested {
        return Ok(None);
    }
    let min = fds.iter().flat_map(|t| t.fds.iter().map(|f| f.fd)).max().unwrap_or(2) + 1;
    let me = Pid::this();
    let fd = stasis_sys::fd::pidfd_open(me).map_err(Error::sys(me.0, "opening a pidfd of stasis"))?;
    stasis_sys::fd::dup_above(fd.as_fd(), min).map(Some).map_err(Error::sys(me.0, "moving a pidfd of stasis"))
}

/// After `child` was made with a new UTS namespace: its names from the image.
pub fn set_child_names(child: Pid, img: &ProcessEntry, namespaces: &[Namespace]) -> Result<()> {
    let n = find(namespaces, "uts", img.uts_ns, img.pid)?;
    let (host, domain) = (n.hostname.clone(), n.domainname.clone());
    ns::run_in(child, Kind::Uts, move || ns::set_uts_names(&host, &domain))
        .and_then(|r| r)
        .map_err(Error::sys(child.0, "setting the names of its UTS namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32, ppid: i32, pid_ns: u64, nspid: &[i32]) -> ProcessEntry {
        ProcessEntry { pid, ppid, pid_ns, nspid: nspid.to_vec(), ..Default::default() }
    }

    #[test]
    fn a_child_in_its_parents_pid_namespace_gets_its_whole_chain() {
        let root = entry(500, 1, 77, &[500, 1]);
        let child = entry(501, 500, 77, &[501, 2]);
        let (args, seen) = clone_args(&child, &root, 0, 17);
        assert_eq!(args.set_tid_array(), [2, 501]);
        assert_eq!(args.flags, 0);
        assert_eq!(seen, Pid(2));
    }

    #[test]
    fn a_child_that_is_the_init_of_a_new_pid_namespace_is_cloned_with_clone_newpid() {
        let root = entry(500, 1, 0, &[]);
        let child = entry(501, 500, 78, &[501, 1]);
        let (args, seen) = clone_args(&child, &root, 0, 17);
        assert_eq!(args.set_tid_array(), [1, 501]);
        assert_eq!(args.flags, libc::CLONE_NEWPID as u64);
        assert_eq!(seen, Pid(501));
        assert!(dump_tree(&[root, child], false, &External::default()).is_ok());
    }

    #[test]
    fn a_pid_namespace_whose_init_is_outside_the_tree_is_refused() {
        let root = entry(500, 1, 77, &[500, 3]);
        let e = dump_tree(&[root], false, &External::default()).expect_err("no init");
        assert!(e.to_string().contains("whose init is not in the tree"), "{e}");
    }

    #[test]
    fn a_namespace_entered_with_setns_is_refused() {
        let root = ProcessEntry { pid: 10, ipc_ns: 5, ..Default::default() };
        let a = ProcessEntry { pid: 11, ppid: 10, ipc_ns: 6, ..Default::default() };
        let back = ProcessEntry { pid: 12, ppid: 11, ipc_ns: 5, ..Default::default() };
        let e = dump_tree(&[root, a, back], false, &External::default()).expect_err("entered");
        assert!(e.to_string().contains("pid 12: a ipc namespace other than its parent 11's"), "{e}");
    }

    #[test]
    fn time_offsets_are_read_as_the_kernel_prints_them() {
        assert_eq!(parse_time_offsets("monotonic 100 5\nboottime -3 0\n"), Some([100, 5, -3, 0]));
        assert_eq!(parse_time_offsets("monotonic 1 2\n"), None);
        let root = ProcessEntry { pid: 5, time_ns: 9, ..Default::default() };
        let ns = Namespace { kind: "time".into(), inode: 9, time_offsets: vec![100, 5, -3, 0], ..Default::default() };
        assert_eq!(time_offsets_text(&root, &[ns]).expect("text"), "monotonic 100 5\nboottime -3 0\n");
    }

    #[test]
    fn groups_are_named_by_their_ids_inside_the_namespace() {
        let root = entry(500, 1, 77, &[500, 1]);
        let child = ProcessEntry { pgid: 500, ..entry(501, 500, 77, &[501, 2]) };
        let procs = [&root, &child];
        assert_eq!(local_pgid(&procs, &child, 500), Some(1));
        assert_eq!(local_pgid(&procs, &child, 400), None);
        assert_eq!(local(&child.nspid, Pid(501)), Pid(2));
    }
}
