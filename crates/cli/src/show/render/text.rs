//! The text summary of `stasis show`: the image header, namespaces and SysV IPC objects, then per
//! process its tasks, memory areas, fds, signals, credentials and limits.

use std::fmt::Write;

use super::names;
use super::{Loaded, Process};
use stasis_image::model::{FileTable, Inventory, PageMap, TaskCore, Vma};
use stasis_image::{ImageDir, ImageError, PAGE_SIZE};

/// A human-readable summary of the image for a terminal: the header (root pid, tool and format
/// version, kernel, creation time), then for each process its command, threads, memory areas (with
/// the pages dumped from each), fds, signal handlers, credentials and limits.
pub fn render_text(dir: &ImageDir) -> Result<String, ImageError> {
    let image = Loaded::load(dir)?;
    let mut out = String::new();
    header(&mut out, dir, &image.inventory, image.processes.len());
    for h in &image.pstree.group_helpers {
        let _ = writeln!(out, "  group {} leader exited: made again by a helper forked by {}", h.pid, h.parent);
    }
    for h in &image.pstree.session_helpers {
        let _ = writeln!(out, "  session {} leader exited: made again by a helper forked by {}", h.pid, h.parent);
    }
    for ns in &image.pstree.namespaces {
        let _ = writeln!(out, "  {}", namespace_line(ns));
        for c in &ns.conntrack {
            let _ = writeln!(out, "    {}", conntrack_line(c));
        }
    }
    if let Some(mnt) = &image.pstree.mounts {
        mount_lines(&mut out, mnt);
    }
    sysv_lines(&mut out, &image.ipc);
    if let Some(set) = &image.pstree.cgroups {
        cgroup_lines(&mut out, set);
    }
    for process in &image.processes {
        render_process(&mut out, process, &image.files);
    }
    Ok(out)
}

/// The tree's mount namespace: one line per mount, `  mount 31 (in 27) /m/t tmpfs tmpfs-of-t
/// root / [ro,nosuid] shared:2 new: 6 entries, 4 KiB of data`.
fn mount_lines(out: &mut String, ns: &stasis_image::model::MountNs) {
    let _ = writeln!(out, "  mnt namespace {}: {} mounts", ns.inode, ns.mounts.len());
    for m in &ns.mounts {
        let mut tags = Vec::new();
        if m.shared != 0 {
            tags.push(format!("shared:{}", m.shared));
        }
        if m.master != 0 {
            tags.push(format!("master:{}", m.master));
        }
        if m.unbindable {
            tags.push("unbindable".into());
        }
        let how = match m.how.as_str() {
            "bind" => format!("bind of mount {}", m.bind_of),
            "external" if m.external_auto => format!("external, found by itself ({})", m.external_key),
            "external" => format!("external ({})", m.external_key),
            "new" if m.fstype == "tmpfs" => {
                let bytes: usize = m.contents.iter().flat_map(|n| &n.data).map(|d| d.data.len()).sum();
                format!("new: {} entries, {} of data", m.contents.len(), names::bytes(bytes as u64))
            }
            "new" if m.proc_of_tree => "new, of the root's PID namespace".to_string(),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "    mount {} (in {}) {} {} {} root {} attrs {:#x} [{}] {} {how}",
            m.id,
            m.parent,
            m.point,
            m.fstype,
            m.source,
            m.root,
            m.attrs,
            m.options,
            tags.join(" ")
        );
    }
}

/// The SysV objects of `ipc.img`: one line per segment, semaphore set and message queue.
fn sysv_lines(out: &mut String, ipc: &stasis_image::model::IpcImage) {
    for s in &ipc.shm {
        let _ = writeln!(
            out,
            "  sysv shm {} key {:#x} mode {:o} owner {}:{} {}",
            s.id,
            s.key,
            s.mode,
            s.uid,
            s.gid,
            names::bytes(s.size)
        );
    }
    for s in &ipc.sem {
        let _ = writeln!(
            out,
            "  sysv sem {} key {:#x} mode {:o} owner {}:{} values {:?}",
            s.id, s.key, s.mode, s.uid, s.gid, s.values
        );
    }
    for q in &ipc.msg {
        let types: Vec<i64> = q.messages.iter().map(|m| m.mtype).collect();
        let bytes: usize = q.messages.iter().map(|m| m.text.len()).sum();
        let _ =
            writeln!(
            out,
            "  sysv msg {} key {:#x} mode {:o} owner {}:{} qbytes {} messages {} ({bytes} bytes) of types {types:?}",
            q.id, q.key, q.mode, q.uid, q.gid, q.qbytes, q.messages.len()
        );
    }
}

/// The tree's cgroup v2 directories of `pstree.img`: one line per directory with its settings.
fn cgroup_lines(out: &mut String, set: &stasis_image::model::CgroupSet) {
    let plural = if set.dirs.len() == 1 { "y" } else { "ies" };
    let _ = writeln!(out, "  cgroups under {} ({} director{plural}):", set.root, set.dirs.len());
    for d in &set.dirs {
        let settings: Vec<String> = d.settings.iter().map(|s| format!("{}={}", s.name, s.value)).collect();
        let _ = writeln!(out, "    {}  {}", d.path, settings.join("  "));
    }
}

/// `net namespace 4026532178: lo 127.0.0.1/8; 1 routes, 412 sysctls, 2 nftables tables, 1 conntrack
/// entries`, `uts namespace ...: host "h"`, `user namespace ...: uids 0-100000 (1000 ids), gids ...
/// inside-outside, setgroups denied`.
fn namespace_line(ns: &stasis_image::model::Namespace) -> String {
    let what = match ns.kind.as_str() {
        "uts" => format!("host {:?}, domain {:?}", ns.hostname, ns.domainname),
        "cgroup" => format!("rooted at cgroup {}", ns.cgroup_root),
        "user" => {
            let map = |m: &[stasis_image::model::IdRange]| {
                m.iter().map(|r| format!("{}-{}", r.inside, r.outside)).collect::<Vec<_>>().join(",")
            };
            let count = |m: &[stasis_image::model::IdRange]| m.iter().map(|r| u64::from(r.count)).sum::<u64>();
            let setgroups = if ns.setgroups_deny { "denied" } else { "allowed" };
            format!(
                "uids {} ({} ids), gids {} ({} ids) inside-outside, setgroups {setgroups}",
                map(&ns.uid_map),
                count(&ns.uid_map),
                map(&ns.gid_map),
                count(&ns.gid_map)
            )
        }
        "net" if !ns.external_key.is_empty() => format!("external ({}), not saved", ns.external_key),
        "net" => {
            let links: Vec<String> = ns
                .links
                .iter()
                .map(|l| match l.peer.as_str() {
                    "" => format!("{} {}", l.name, l.addrs.join(" ")),
                    peer => format!("{} (peer {peer} outside) {}", l.name, l.addrs.join(" ")),
                })
                .collect();
            let tables = ns.nftables.lines().filter(|l| l.starts_with("table ")).count();
            let (routes, sysctls, ct) = (ns.routes.len(), ns.sysctls.len(), ns.conntrack.len());
            format!(
                "{}; {routes} routes, {sysctls} sysctls, {tables} nftables tables, {ct} conntrack entries",
                links.join("; ")
            )
        }
        _ => "made again at restore".to_string(),
    };
    format!("{} namespace {}: {}", ns.kind, ns.inode, what.trim())
}

/// `conntrack tcp 10.0.0.1:40000 -> 10.0.0.2:80, reply 10.0.0.2:80 -> 10.0.0.1:40000; mark 42,
/// status 0x18e, 431990 s left, ESTABLISHED`: an entry of a network namespace's conntrack table.
pub(super) fn conntrack_line(c: &stasis_image::model::ConntrackEntry) -> String {
    let end = |a: &str, port: u32, t: &stasis_image::model::ConntrackTuple| match t.protocol {
        1 | 58 => a.to_string(),
        _ if a.contains(':') => format!("[{a}]:{port}"),
        _ => format!("{a}:{port}"),
    };
    let side = |t: Option<&stasis_image::model::ConntrackTuple>| match t {
        None => "?".to_string(),
        Some(t) if matches!(t.protocol, 1 | 58) => {
            format!("{} -> {} id {} type {} code {}", t.src, t.dst, t.icmp_id, t.icmp_type, t.icmp_code)
        }
        Some(t) => format!("{} -> {}", end(&t.src, t.src_port, t), end(&t.dst, t.dst_port, t)),
    };
    let proto = match c.original.as_ref().map_or(0, |t| t.protocol) {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        136 => "udplite".to_string(),
        1 => "icmp".to_string(),
        58 => "icmpv6".to_string(),
        n => format!("protocol {n}"),
    };
    let zone = if c.zone != 0 { format!(", zone {}", c.zone) } else { String::new() };
    const TCP_STATES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    let tcp = c.tcp.as_ref().map_or(String::new(), |t| {
        format!(
            ", {}",
            TCP_STATES.get(t.state as usize).map_or_else(|| format!("state {}", t.state), |s| s.to_string())
        )
    });
    format!(
        "conntrack {proto} {}, reply {}; mark {}{zone}, status {:#x}, {} s left{tcp}",
        side(c.original.as_ref()),
        side(c.reply.as_ref()),
        c.mark,
        c.status,
        c.timeout
    )
}

fn header(out: &mut String, dir: &ImageDir, inv: &Inventory, processes: usize) {
    let _ = writeln!(out, "image {}", dir.path().display());
    let plural = if processes == 1 { "" } else { "es" };
    let _ = writeln!(out, "  root pid      {} ({processes} process{plural})", inv.root_pid);
    let _ = writeln!(
        out,
        "  written by    stasis {} (image format {}.{})",
        inv.tool_version, inv.format_major, inv.format_minor
    );
    let _ = writeln!(out, "  kernel        {}", inv.kernel_release);
    let _ = writeln!(out, "  created       {}", names::unix_ms(inv.created_unix_ms));
    let _ = writeln!(out, "  xfeatures     {:#x}", inv.xfeatures);
    if !inv.cpu_flags.is_empty() {
        let _ = writeln!(out, "  cpu flags     {} (checked by restore --cpu-cap=ins, cpu or all)", inv.cpu_flags.len());
    }
    let _ = writeln!(out, "  page size     {}", inv.page_size);
    let _ = writeln!(out, "  shell job     {}", if inv.shell_job { "yes" } else { "no" });
    if inv.pre_dump {
        let _ = writeln!(out, "  pre-dump      yes (memory only; the parent of a later dump)");
    }
    if inv.parent_created_unix_ms != 0 {
        let target = std::fs::read_link(dir.path().join("parent"))
            .map_or_else(|e| format!("<{e}>"), |p| p.display().to_string());
        let _ = writeln!(out, "  parent        {target} (created {})", names::unix_ms(inv.parent_created_unix_ms));
    }
    let total = inv.files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
    let _ = writeln!(out, "  files         {} ({})", inv.files.len(), names::bytes(total));
}

fn render_process(out: &mut String, p: &Process, files: &FileTable) {
    let e = &p.entry;
    let comm = p.cores.first().map_or("?", |c| c.comm.as_str());
    let stopped = if e.stopped { ", stopped" } else { "" };
    let _ = writeln!(out, "\nprocess {} ({comm}){stopped}", e.pid);
    let _ = writeln!(out, "  ppid {}  pgid {}  sid {}", e.ppid, e.pgid, e.sid);
    let own: Vec<String> = [("uts", e.uts_ns), ("ipc", e.ipc_ns), ("pid", e.pid_ns), ("net", e.net_ns)]
        .iter()
        .filter(|(_, inode)| *inode != 0)
        .map(|(kind, inode)| format!("{kind} {inode}"))
        .collect();
    if !own.is_empty() {
        let ids = if e.nspid.is_empty() { String::new() } else { format!("  pids by level {:?}", e.nspid) };
        let _ = writeln!(out, "  namespaces {}{ids}", own.join("  "));
    }
    if let Some(line) = super::pty::ctty_line(e) {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "  exe {}", p.mm.exe_path);
    if let Some(main) = p.cores.first() {
        let _ = writeln!(out, "  cwd {}  root {}", main.cwd, main.root);
        if !main.cgroup.is_empty() {
            let _ = writeln!(out, "  cgroup {}", main.cgroup);
        }
    }
    threads(out, &p.cores);
    memory(out, &p.mm.vmas, &p.pagemap);
    aio(out, &p.mm.aio_rings);
    fds(out, p, files);
    if let Some(main) = p.cores.first() {
        signals(out, main);
        super::anon::posix_timers(out, main);
        creds(out, main);
        limits(out, main);
    }
}

fn threads(out: &mut String, cores: &[TaskCore]) {
    let _ = writeln!(out, "  threads ({}):", cores.len());
    for core in cores {
        let (ip, sp) = core.regs.as_ref().map_or((0, 0), |r| (r.rip, r.rsp));
        let _ = writeln!(
            out,
            "    {:<8} {:<16} ip {ip:#018x}  sp {sp:#018x}  sigmask {:#x}",
            core.pid, core.comm, core.sigmask
        );
    }
}

fn memory(out: &mut String, vmas: &[Vma], map: &PageMap) {
    let dumped = map.total_pages.saturating_mul(PAGE_SIZE);
    let _ =
        writeln!(out, "  memory ({} areas, {} pages dumped = {}):", vmas.len(), map.total_pages, names::bytes(dumped));
    let in_parent: u64 = map.in_parent.iter().map(|r| r.nr_pages).sum();
    if in_parent != 0 || !map.tracked.is_empty() {
        let tracked = map.tracked.len();
        let _ = writeln!(
            out,
            "    {in_parent} more pages in the parent image; {tracked} areas write-tracked for the next round"
        );
    }
    if stasis_image::compress::is_compressed(map) {
        let stored = stasis_image::compress::stored_bytes(map);
        let ratio = if stored == 0 { 0.0 } else { dumped as f64 / stored as f64 };
        let _ = writeln!(
            out,
            "    compressed (zstd, {} frames): {} stored, ratio {ratio:.2}",
            map.frame_sizes.len(),
            names::bytes(stored)
        );
    }
    let punched: u64 = map.punched.iter().map(|r| r.nr_pages).sum();
    if punched != 0 {
        let _ =
            writeln!(out, "    {punched} of them punched out (deduplicated): a newer image of the chain holds them");
    }
    let _ = writeln!(out, "    {:<33} {:<4} {:<24} {:<8} {:>8}  name", "start-end", "prot", "flags", "kind", "pages");
    for vma in vmas {
        let _ = writeln!(
            out,
            "    {:016x}-{:016x} {:<4} {:<24} {:<8} {:>8}  {}",
            vma.start,
            vma.end,
            names::prot(vma.prot),
            names::vma_flags(vma.flags, vma.locked),
            names::vma_kind(vma.kind),
            pages_in(map, vma.start, vma.end),
            vma.name
        );
    }
}

fn aio(out: &mut String, rings: &[stasis_image::model::AioRing]) {
    if rings.is_empty() {
        return;
    }
    let _ = writeln!(out, "  aio contexts ({}):", rings.len());
    for r in rings {
        let _ = writeln!(
            out,
            "    {:#018x} slot {:<4} {} events  head {:<5} tail {:<5} {} pending",
            r.start,
            r.id,
            r.nr,
            r.head,
            r.tail,
            r.events.len()
        );
    }
}

/// How many pages of `map` lie in `[start, end)`. The runs are ascending and disjoint (the page map
/// was validated), so the search starts at the first run that ends after `start`.
fn pages_in(map: &PageMap, start: u64, end: u64) -> u64 {
    let run_end = |vaddr: u64, nr: u64| vaddr.saturating_add(nr.saturating_mul(PAGE_SIZE));
    let first = map.runs.partition_point(|r| run_end(r.vaddr, r.nr_pages) <= start);
    let mut pages = 0u64;
    for run in map.runs.iter().skip(first).take_while(|r| r.vaddr < end) {
        let lo = run.vaddr.max(start);
        let hi = run_end(run.vaddr, run.nr_pages).min(end);
        pages = pages.saturating_add(hi.saturating_sub(lo) / PAGE_SIZE);
    }
    pages
}

fn fds(out: &mut String, p: &Process, files: &FileTable) {
    let _ = writeln!(out, "  fds ({}):", p.fds.fds.len());
    for fd in &p.fds.fds {
        let cloexec = if fd.cloexec { " cloexec" } else { "" };
        match files.files.iter().find(|f| f.id == fd.file_id) {
            Some(file) => {
                let (kind, path, pos) = names::file_kind(file);
                let pos = pos.map_or(String::new(), |pos| format!(" pos {pos}"));
                let flags = names::open_flags(file.flags);
                let detail = super::anon::file_detail(file);
                let _ = writeln!(out, "    {:>4} -> {kind:<8} {path}{pos} {flags}{cloexec}{detail}", fd.fd);
                for line in names::file_details(file) {
                    let _ = writeln!(out, "            {line}");
                }
                if let Some(stasis_image::model::FileKind::UnixSocket(u)) = &file.kind {
                    let _ = writeln!(out, "            {}", names::unix_socket(u));
                }
            }
            None => {
                let _ = writeln!(out, "    {:>4} -> file id {} (not in files.img)", fd.fd, fd.file_id);
            }
        }
    }
}

fn signals(out: &mut String, core: &TaskCore) {
    let caught: Vec<_> = core.sigactions.iter().filter(|a| a.handler != 0).collect();
    let _ = writeln!(out, "  signals: blocked {:#x}, {} handlers set", core.sigmask, caught.len());
    for action in caught {
        let _ = writeln!(
            out,
            "    {:<12} {}  flags {:#x}  mask {:#x}",
            names::signal(action.signo.into()),
            names::handler(action.handler),
            action.flags,
            action.mask
        );
    }
    for pending in &core.pending {
        let queue = if pending.shared { "process" } else { "thread" };
        let _ = writeln!(out, "    pending {} ({queue})", names::signal(pending.signo.into()));
    }
}

fn creds(out: &mut String, core: &TaskCore) {
    let Some(c) = &core.creds else {
        return;
    };
    let _ = writeln!(
        out,
        "  creds: uid {}/{}/{}/{}  gid {}/{}/{}/{}  groups {:?}",
        c.uid, c.euid, c.suid, c.fsuid, c.gid, c.egid, c.sgid, c.fsgid, c.groups
    );
    let _ = writeln!(
        out,
        "    caps eff {:#x} prm {:#x} inh {:#x} bnd {:#x} amb {:#x}  securebits {:#x}",
        c.cap_eff, c.cap_prm, c.cap_inh, c.cap_bnd, c.cap_amb, c.securebits
    );
}

fn limits(out: &mut String, core: &TaskCore) {
    if core.rlimits.is_empty() {
        return;
    }
    let _ = writeln!(out, "  limits:");
    for limit in &core.rlimits {
        let _ = writeln!(
            out,
            "    {:<12} {:>20} {:>20}",
            names::rlimit(limit.resource),
            names::limit_value(limit.cur),
            names::limit_value(limit.max)
        );
    }
}

#[cfg(test)]
mod tests {
    use stasis_image::model::{IpcImage, MsgQueue, SemSet, SysvMessage};

    #[test]
    fn sysv_sets_and_queues_are_listed() {
        let sem = SemSet { key: 0x10, id: 3, mode: 0o640, uid: 1, gid: 2, values: vec![7, 0] };
        let messages = vec![SysvMessage { mtype: 5, text: b"abc".to_vec() }, SysvMessage { mtype: 2, text: vec![] }];
        let msg = MsgQueue { key: 0x11, id: 4, mode: 0o620, uid: 0, gid: 0, qbytes: 12000, messages };
        let mut out = String::new();
        super::sysv_lines(&mut out, &IpcImage { shm: vec![], sem: vec![sem], msg: vec![msg], limits: vec![] });
        let want = "  sysv sem 3 key 0x10 mode 640 owner 1:2 values [7, 0]\n  sysv msg 4 key 0x11 mode 620 owner 0:0 \
                    qbytes 12000 messages 2 (3 bytes) of types [5, 2]\n";
        assert_eq!(out, want);
    }
}
