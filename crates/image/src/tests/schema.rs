//! The encoding of every record type is fixed: a sample of each, every field listed here set to a
//! value of its own, encodes to the bytes recorded in `golden/model.hex`. Moving types between the
//! files of `model` must not change them; a new field left out of its `fill_struct!` line keeps its
//! default and the bytes stay as they are. `STASIS_BLESS=1` rewrites the file (only for a deliberate
//! change of the format, which the format's version rules forbid for an existing field).

use std::fmt::Write as _;

use prost::Message;

use crate::model::*;

/// A value for every field, different for each `seed`.
trait Fill: Sized {
    fn fill(seed: u64) -> Self;
}

macro_rules! fill_int {
    ($($t:ty),*) => {$(
        impl Fill for $t {
            fn fill(seed: u64) -> Self {
                (seed % 120 + 1) as $t
            }
        }
    )*};
}
fill_int!(u8, u32, u64, i32, i64);

impl Fill for bool {
    fn fill(_: u64) -> Self {
        true
    }
}

impl Fill for String {
    fn fill(seed: u64) -> Self {
        format!("s{seed}")
    }
}

impl<T: Fill> Fill for Option<T> {
    fn fill(seed: u64) -> Self {
        Some(T::fill(seed))
    }
}

impl<T: Fill> Fill for Vec<T> {
    fn fill(seed: u64) -> Self {
        vec![T::fill(seed), T::fill(seed + 1)]
    }
}

macro_rules! fill_struct {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl Fill for $name {
            #[allow(unused_assignments)]
            fn fill(seed: u64) -> Self {
                let mut n = seed * 7;
                let mut out = $name::default();
                $(n += 1; out.$field = Fill::fill(n);)*
                out
            }
        }
    };
}

macro_rules! fill_oneof {
    ($name:ident { $($variant:ident),* $(,)? }) => {
        impl Fill for $name {
            fn fill(seed: u64) -> Self {
                let variants: &[fn(u64) -> $name] = &[$(|s| $name::$variant(Fill::fill(s))),*];
                variants[seed as usize % variants.len()](seed)
            }
        }
    };
}

fill_struct!(Inventory {
    format_major,
    format_minor,
    tool_version,
    kernel_release,
    xfeatures,
    cpu_flags,
    root_pid,
    files,
    created_unix_ms,
    page_size,
    shell_job,
    network_lock,
    pre_dump,
    parent_created_unix_ms
});
fill_struct!(NetworkLock { method, table });
fill_struct!(FileDigest { name, size, checksum });
fill_struct!(PsTree { processes, group_helpers, session_helpers, namespaces, cgroups, mounts });
fill_struct!(MountNs { inode, mounts });
fill_struct!(Mount {
    id,
    parent,
    point,
    root,
    fstype,
    source,
    dev,
    attrs,
    options,
    shared,
    master,
    unbindable,
    how,
    bind_of,
    external_key,
    contents,
    proc_of_tree,
    external_auto
});
fill_struct!(TmpfsNode { path, mode, uid, gid, atime_ns, mtime_ns, size, data, target, link_of, rdev });
fill_struct!(CgroupSet { root, dirs, v1 });
fill_struct!(CgroupV1Set { controllers, root, dirs });
fill_struct!(CgroupV1Path { controllers, path });
fill_struct!(CgroupDir { path, settings });
fill_struct!(CgroupSetting { name, value });
fill_struct!(SyscallDispatch { mode, selector, offset, len });
fill_struct!(LeaderHelper { pid, parent });
fill_struct!(ProcessEntry {
    pid,
    ppid,
    pgid,
    sid,
    threads,
    stopped,
    zombie,
    exit_status,
    shares,
    ctty,
    tty_fg_pgrp,
    stop_signal,
    nspid,
    uts_ns,
    ipc_ns,
    pid_ns,
    net_ns,
    pid_ns_for_children,
    time_ns,
    cgroup_ns
});
fill_struct!(Namespace {
    kind,
    inode,
    hostname,
    domainname,
    links,
    routes,
    sysctls,
    external_key,
    time_offsets,
    cgroup_root,
    cgroup_roots_v1,
    nftables,
    conntrack
});
fill_struct!(NetLink { name, kind, up, mtu, mac, peer, addrs });
fill_struct!(Sysctl { path, value });
fill_struct!(ConntrackEntry { family, original, reply, status, timeout, mark, zone, tcp });
fill_struct!(ConntrackTuple { src, dst, protocol, src_port, dst_port, icmp_id, icmp_type, icmp_code });
fill_struct!(ConntrackTcp { state, wscale_original, wscale_reply, flags_original, flags_reply });
fill_struct!(TaskCore {
    pid,
    comm,
    regs,
    xstate,
    sigmask,
    sigactions,
    altstack,
    pending,
    itimers,
    rlimits,
    creds,
    rseq,
    personality,
    umask,
    no_new_privs,
    pdeathsig,
    dumpable,
    cwd,
    root,
    timer_slack_ns,
    clear_child_tid,
    robust_list,
    robust_list_len,
    thp_disabled,
    nice,
    cpu_affinity,
    oom_score_adj,
    cgroup,
    cgroups_v1,
    sched_policy,
    sched_priority,
    child_subreaper,
    ioprio,
    mce_kill,
    tsc_mode,
    cpuid_faulting,
    mdwe,
    syscall_dispatch,
    posix_timers,
    seccomp_mode,
    seccomp_filters,
    loginuid,
    audit_session,
    nspid
});
fill_struct!(SeccompFilter { program, log });
fill_struct!(GpRegs {
    r15,
    r14,
    r13,
    r12,
    rbp,
    rbx,
    r11,
    r10,
    r9,
    r8,
    rax,
    rcx,
    rdx,
    rsi,
    rdi,
    orig_rax,
    rip,
    cs,
    eflags,
    rsp,
    ss,
    fs_base,
    gs_base,
    ds,
    es,
    fs,
    gs
});
fill_struct!(SigAction { signo, handler, flags, restorer, mask });
fill_struct!(AltStack { sp, flags, size });
fill_struct!(PendingSignal { shared, signo, siginfo });
fill_struct!(ITimer { which, interval_sec, interval_usec, value_sec, value_usec });
fill_struct!(RLimit { resource, cur, max });
fill_struct!(Creds {
    uid,
    euid,
    suid,
    fsuid,
    gid,
    egid,
    sgid,
    fsgid,
    groups,
    cap_inh,
    cap_prm,
    cap_eff,
    cap_bnd,
    cap_amb,
    securebits
});
fill_struct!(Rseq { ptr, len, signature });
fill_struct!(MmImage {
    vmas,
    fields,
    auxv,
    exe_path,
    vdso_checksum,
    guards,
    mlock_future,
    membarrier,
    ksm_merge_any,
    aio_rings
});
fill_struct!(AioRing { start, len, id, nr, head, tail, events });
fill_struct!(AioEvent { data, obj, res, res2 });
fill_struct!(Vma {
    start,
    end,
    prot,
    flags,
    kind,
    name,
    offset,
    dev,
    inode,
    madvise,
    locked,
    ghost,
    may,
    droppable,
    lock_on_fault,
    maybe_guard,
    hugetlb_page_size,
    sealed
});
fill_struct!(MmFields {
    start_code,
    end_code,
    start_data,
    end_data,
    start_brk,
    brk,
    start_stack,
    arg_start,
    arg_end,
    env_start,
    env_end
});
fill_struct!(PageMap {
    runs,
    chunk_size,
    chunk_checksums,
    total_pages,
    inherited,
    in_parent,
    tracked,
    punched,
    compression,
    frame_sizes
});
fill_struct!(PageRun { vaddr, nr_pages });
fill_struct!(FdTable { fds, locks });
fill_struct!(FileLock { kind, fd, write, start, len, pid });
fill_struct!(FdEntry { fd, file_id, cloexec });
fill_struct!(FileTable { files });
fill_struct!(FileEntry { id, flags, kind, owner });
fill_struct!(FileOwner { kind, pid, signal });
fill_oneof!(FileKind {
    Regular,
    Directory,
    CharDevice,
    Terminal,
    Pipe,
    Epoll,
    Inotify,
    Fanotify,
    Fifo,
    EventFd,
    SignalFd,
    TimerFd,
    PidFd,
    Mqueue,
    UnixSocket,
    Pty,
    InetSocket,
    NetlinkSocket,
    PacketSocket,
    ProcFile
});
fill_struct!(PacketSocket {
    ino,
    sock_type,
    protocol,
    bound_protocol,
    ifindex,
    fanout,
    memberships,
    options,
    rcvbuf,
    sndbuf,
    socket
});
fill_struct!(PacketMembership { ifindex, count, kind, address });
fill_struct!(NetlinkSocket {
    ino,
    sock_type,
    protocol,
    portid,
    groups,
    dst_portid,
    dst_groups,
    options,
    rcvbuf,
    sndbuf,
    socket
});
fill_struct!(SocketLevel { linger, rcvtimeo_us, sndtimeo_us, bound_device, filter, filter_locked, bytes_options });
fill_struct!(SockOptBytes { name, value });
fill_struct!(ProcFile { pid, rest, pos, ns_ino });
fill_struct!(PipeEnd { pipe_id, read_end, capacity, data, name, peer_closed, external, packets });
fill_struct!(UnixSocket {
    ino,
    sock_type,
    state,
    name,
    peer,
    external_peer,
    peer_name,
    backlog,
    icons,
    shutdown,
    queue,
    options,
    path_mode,
    path_uid,
    path_gid,
    path_present,
    bind_dir
});
fill_struct!(InetSocket {
    ino,
    family,
    sock_type,
    protocol,
    state,
    local_addr,
    local_port,
    remote_addr,
    remote_port,
    backlog,
    options,
    linger,
    rcvtimeo_us,
    sndtimeo_us,
    congestion,
    bound_device,
    rcvbuf,
    sndbuf,
    tcp,
    datagrams,
    shutdown,
    filter,
    filter_locked,
    memberships,
    icmp_filter,
    bytes_options
});
fill_struct!(Membership { group, ifindex, include, sources });
fill_struct!(Datagram { data, source_addr, source_port });
fill_struct!(SockOpt { name, value });
fill_struct!(TcpConnection {
    send_seq,
    recv_seq,
    send_queue,
    unsent,
    recv_queue,
    mss,
    wscale_ok,
    snd_wscale,
    rcv_wscale,
    sack,
    timestamps,
    timestamp,
    snd_wl1,
    snd_wnd,
    max_window,
    rcv_wnd,
    rcv_wup
});
fill_struct!(UnixMessage { data, fds, has_creds, pid, uid, gid, sender });
fill_struct!(SocketOptions {
    rcvbuf,
    sndbuf,
    passcred,
    peek_off,
    rcvtimeo_us,
    sndtimeo_us,
    rcvlowat,
    priority,
    mark,
    passsec,
    passpidfd,
    options,
    socket
});
fill_struct!(RegularFile {
    path,
    pos,
    size,
    mode,
    ghost,
    content,
    ino,
    memfd,
    seals,
    dev,
    uid,
    gid,
    atime_sec,
    atime_nsec,
    mtime_sec,
    mtime_nsec,
    extents,
    tmpfile,
    hugetlb_page_size
});
fill_struct!(DataExtent { offset, data });
fill_struct!(DirectoryFile { path, pos });
fill_struct!(CharDevice { path, rdev, ghost, mode, uid, gid, dev, ino });
fill_struct!(Terminal { path, rdev, external });
fill_struct!(PtyFile { index, master, path, exclusive, state, hung_up });
fill_struct!(PtyState {
    iflag,
    oflag,
    cflag,
    lflag,
    line,
    cc,
    ispeed,
    ospeed,
    rows,
    cols,
    xpixel,
    ypixel,
    locked,
    packet,
    slave_lines,
    slave_input,
    master_input,
    slave_closed,
    slave_uid,
    slave_gid,
    slave_mode
});
fill_struct!(EpollFile { watches });
fill_struct!(EpollWatch { tfd, events, data, file_id });
fill_struct!(InotifyFile { watches });
fill_struct!(InotifyWatch { wd, mask, path, ino });
fill_struct!(FanotifyFile { flags, event_flags, marks });
fill_struct!(FanotifyMark { kind, mflags, mask, ignored_mask, path });
fill_struct!(FifoFile { path, fifo_id, capacity, data, removed, mode, packets });
fill_struct!(EventFd { count, semaphore, id });
fill_struct!(SignalFd { sigmask });
fill_struct!(TimerFd { clockid, ticks, settime_flags, value_sec, value_nsec, interval_sec, interval_nsec });
fill_struct!(PidFd { pid, reaped_ino });
fill_struct!(Mqueue { name, maxmsg, msgsize, mode, uid, gid, messages, unlinked, ino });
fill_struct!(MqMessage { priority, data });
fill_struct!(PosixTimer {
    id,
    clockid,
    notify,
    signo,
    sigval,
    target,
    value_sec,
    value_nsec,
    interval_sec,
    interval_nsec,
    overrun
});
fill_struct!(IpcImage { shm, sem, msg, limits });
fill_struct!(SemSet { key, id, mode, uid, gid, values });
fill_struct!(MsgQueue { key, id, mode, uid, gid, qbytes, messages });
fill_struct!(SysvMessage { mtype, text });
fill_struct!(ShmSegment { key, id, size, mode, uid, gid, content, cpid, ctime });

/// `(type, seed, encoded bytes)` of the sample of every record type, and of a file entry of each
/// kind.
fn samples() -> Vec<(&'static str, u64, Vec<u8>)> {
    let mut out = Vec::new();
    macro_rules! sample {
        ($($t:ident)*) => {$(
            out.push((stringify!($t), 0, $t::fill(0).encode_to_vec()));
        )*};
    }
    sample!(
        Inventory NetworkLock FileDigest PsTree MountNs Mount TmpfsNode CgroupSet CgroupV1Set CgroupV1Path CgroupDir CgroupSetting
        SyscallDispatch LeaderHelper ProcessEntry Namespace NetLink Sysctl ConntrackEntry ConntrackTuple ConntrackTcp TaskCore SeccompFilter GpRegs
        SigAction AltStack PendingSignal ITimer RLimit Creds Rseq MmImage Vma MmFields PageMap PageRun AioRing AioEvent
        FdTable FileLock FdEntry FileTable FileEntry FileOwner PacketSocket PacketMembership NetlinkSocket
        SocketLevel SockOptBytes ProcFile PipeEnd UnixSocket InetSocket Membership Datagram SockOpt
        TcpConnection UnixMessage SocketOptions RegularFile DataExtent DirectoryFile CharDevice Terminal
        PtyFile PtyState EpollFile EpollWatch InotifyFile InotifyWatch FanotifyFile FanotifyMark FifoFile
        EventFd SignalFd TimerFd PidFd Mqueue MqMessage PosixTimer IpcImage SemSet MsgQueue SysvMessage
        ShmSegment
    );
    for seed in 1..20 {
        out.push(("FileEntry", seed, FileEntry::fill(seed).encode_to_vec()));
    }
    out
}

#[test]
fn encoding_of_every_record_type_is_unchanged() {
    let mut text = String::new();
    for (name, seed, bytes) in samples() {
        write!(text, "{name} {seed} ").unwrap();
        for b in bytes {
            write!(text, "{b:02x}").unwrap();
        }
        text.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tests/golden/model.hex");
    if std::env::var_os("STASIS_BLESS").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    for (want, got) in golden.lines().zip(text.lines()) {
        assert_eq!(want, got, "the encoding of a record type changed");
    }
    assert_eq!(golden.lines().count(), text.lines().count(), "the list of sampled record types changed");
}
