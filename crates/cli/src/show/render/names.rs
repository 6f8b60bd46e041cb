//! Names and formats for the text summary: signals, resource limits, protections, open flags,
//! sizes and times.

use stasis_image::model::{
    FileEntry, FileKind, UnixSocket, VmaKind, FANOTIFY_MARK_FILESYSTEM, FANOTIFY_MARK_INODE, FANOTIFY_MARK_MOUNT,
};

const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

const RLIMITS: [&str; 16] = [
    "cpu",
    "fsize",
    "data",
    "stack",
    "core",
    "rss",
    "nproc",
    "nofile",
    "memlock",
    "as",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "rttime",
];

/// `SIGINT` for 2, `SIGRTMIN+3` for 37, `SIG99` for what has no name.
pub(super) fn signal(signo: i64) -> String {
    match signo {
        1..=31 => SIGNALS[(signo - 1) as usize].to_owned(),
        34..=64 => format!("SIGRTMIN+{}", signo - 34),
        _ => format!("SIG{signo}"),
    }
}

/// A signal handler address: `SIG_DFL`, `SIG_IGN` or the address.
pub(super) fn handler(address: u64) -> String {
    match address {
        0 => "SIG_DFL".into(),
        1 => "SIG_IGN".into(),
        _ => format!("{address:#x}"),
    }
}

/// `nofile` for `RLIMIT_NOFILE`.
pub(super) fn rlimit(resource: u32) -> String {
    match RLIMITS.get(resource as usize) {
        Some(name) => (*name).to_owned(),
        None => format!("resource {resource}"),
    }
}

/// A limit value, `unlimited` for `RLIM_INFINITY`.
pub(super) fn limit_value(value: u64) -> String {
    if value == u64::MAX {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

/// `rw-` for `PROT_READ|PROT_WRITE`.
pub(super) fn prot(prot: u32) -> String {
    let bit = |mask: u32, c: char| if prot & mask != 0 { c } else { '-' };
    format!("{}{}{}", bit(1, 'r'), bit(2, 'w'), bit(4, 'x'))
}

/// `private,growsdown,locked`: the sharing, growth and lock state of an area.
pub(super) fn vma_flags(flags: u32, locked: bool) -> String {
    let mut out = if flags & 1 != 0 { "shared" } else { "private" }.to_owned();
    if flags & 0x100 != 0 {
        out.push_str(",growsdown");
    }
    if flags & 0x4000 != 0 {
        out.push_str(",noreserve");
    }
    if locked {
        out.push_str(",locked");
    }
    out
}

/// The name of a `Vma::kind` value.
pub(super) fn vma_kind(kind: i32) -> String {
    match VmaKind::try_from(kind) {
        Ok(VmaKind::Anon) => "anon".into(),
        Ok(VmaKind::File) => "file".into(),
        Ok(VmaKind::SharedAnon) => "shmem".into(),
        Ok(VmaKind::Vdso) => "vdso".into(),
        Ok(VmaKind::Vvar) => "vvar".into(),
        Ok(VmaKind::VvarVclock) => "vclock".into(),
        Ok(VmaKind::Vsyscall) => "vsyscall".into(),
        Ok(VmaKind::SysvShm) => "sysv-shm".into(),
        Ok(VmaKind::AioRing) => "aio-ring".into(),
        Ok(VmaKind::Uprobes) => "uprobes (not saved)".into(),
        Err(_) => format!("kind {kind}"),
    }
}

/// The kind, path and position of an open file.
pub(super) fn file_kind(file: &FileEntry) -> (&'static str, &str, Option<u64>) {
    match &file.kind {
        Some(FileKind::Regular(f)) => ("file", &f.path, Some(f.pos)),
        Some(FileKind::Directory(d)) => ("dir", &d.path, Some(d.pos)),
        Some(FileKind::CharDevice(c)) => ("chrdev", &c.path, None),
        Some(FileKind::Terminal(t)) if t.external => ("tty (external)", &t.path, None),
        Some(FileKind::Terminal(t)) => ("tty", &t.path, None),
        Some(FileKind::Pipe(p)) if p.read_end => ("pipe (read end)", &p.name, None),
        Some(FileKind::Pipe(p)) => ("pipe (write end)", &p.name, None),
        Some(FileKind::Epoll(_)) => ("epoll", "anon_inode:[eventpoll]", None),
        Some(FileKind::Inotify(_)) => ("inotify", "anon_inode:inotify", None),
        Some(FileKind::Fanotify(_)) => ("fanotify", "anon_inode:[fanotify]", None),
        Some(FileKind::Fifo(f)) if f.removed => ("fifo (removed)", &f.path, None),
        Some(FileKind::Fifo(f)) => ("fifo", &f.path, None),
        Some(FileKind::EventFd(_)) => ("eventfd", "", None),
        Some(FileKind::SignalFd(_)) => ("signalfd", "", None),
        Some(FileKind::TimerFd(_)) => ("timerfd", "", None),
        Some(FileKind::PidFd(_)) => ("pidfd", "", None),
        Some(FileKind::Mqueue(m)) => ("mqueue", &m.name, None),
        Some(FileKind::UnixSocket(u)) => (unix_kind(u), "", None),
        Some(FileKind::Pty(p)) if p.master => ("pty master", &p.path, None),
        Some(FileKind::Pty(p)) => ("pty slave", &p.path, None),
        Some(FileKind::InetSocket(i)) => (inet_kind(i), "", None),
        Some(FileKind::NetlinkSocket(_)) => ("netlink", "", None),
        Some(FileKind::PacketSocket(_)) => ("packet", "", None),
        Some(FileKind::ProcFile(p)) if p.ns_ino != 0 => ("namespace", &p.rest, None),
        Some(FileKind::ProcFile(p)) => ("proc file", &p.rest, Some(p.pos)),
        None => ("unknown", "", None),
    }
}

/// Lines about what a file watches or holds (epoll items, inotify watches, fanotify marks, FIFO
/// data), printed under its fd.
pub(super) fn file_details(file: &FileEntry) -> Vec<String> {
    match &file.kind {
        Some(FileKind::Epoll(e)) => e
            .watches
            .iter()
            .map(|w| format!("watches fd {} (file id {}) events {:#x} data {:#x}", w.tfd, w.file_id, w.events, w.data))
            .collect(),
        Some(FileKind::Inotify(i)) => {
            i.watches.iter().map(|w| format!("wd {} mask {:#x} {}", w.wd, w.mask, w.path)).collect()
        }
        Some(FileKind::Fanotify(f)) => {
            let mut out = vec![format!("flags {:#x} event flags {:#x}", f.flags, f.event_flags)];
            out.extend(f.marks.iter().map(|m| {
                let kind = match m.kind {
                    FANOTIFY_MARK_INODE => "inode",
                    FANOTIFY_MARK_MOUNT => "mount",
                    FANOTIFY_MARK_FILESYSTEM => "filesystem",
                    _ => "mark",
                };
                format!(
                    "{kind} mark {} mask {:#x} ignored {:#x} mflags {:#x}",
                    m.path, m.mask, m.ignored_mask, m.mflags
                )
            }));
            out
        }
        Some(FileKind::Fifo(f)) if !f.data.is_empty() || f.capacity != 0 => {
            vec![format!("capacity {}, {} bytes queued", f.capacity, f.data.len())]
        }
        Some(FileKind::Pty(_)) => super::pty::file_details(file),
        Some(FileKind::InetSocket(i)) => vec![inet_socket(i)],
        Some(FileKind::NetlinkSocket(n)) => vec![netlink_socket(n)],
        Some(FileKind::PacketSocket(p)) => vec![format!(
            "socket:[{}] type {} protocol {:#06x} interface {} fanout {:#x} memberships {}{}",
            p.ino,
            p.sock_type,
            u16::from_be(p.bound_protocol as u16),
            p.ifindex,
            p.fanout,
            p.memberships.len(),
            socket_level(p.socket.as_ref())
        )],
        Some(FileKind::ProcFile(p)) => vec![format!("of pid {}", p.pid)],
        _ => Vec::new(),
    }
}

/// `unix stream`, `unix dgram`, `unix seqpacket`, or `unix listen`.
fn unix_kind(u: &UnixSocket) -> &'static str {
    match (u.state, u.sock_type) {
        (10, _) => "unix listen",
        (_, 1) => "unix stream",
        (_, 2) => "unix dgram",
        (_, 5) => "unix seqpacket",
        _ => "unix",
    }
}

/// A UNIX socket's address for display: `@abstract`, a path, or `(unnamed)`.
pub(super) fn unix_name(name: &[u8]) -> String {
    match name.split_first() {
        None => "(unnamed)".into(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

/// `tcp`, `tcp6`, `udp`, `udp6`, `udplite`, `udplite6`.
fn inet_kind(i: &stasis_image::model::InetSocket) -> &'static str {
    match (i.protocol, i.family == 10) {
        (17, false) => "udp",
        (17, true) => "udp6",
        (136, false) => "udplite",
        (136, true) => "udplite6",
        (_, false) => "tcp",
        (_, true) => "tcp6",
    }
}

/// One line on a TCP or UDP socket: addresses, state, bytes queued both ways (datagrams queued
/// with their sources), shutdown, the options set.
pub(super) fn inet_socket(i: &stasis_image::model::InetSocket) -> String {
    let at = |addr: &str, port: u32| match addr.contains(':') {
        true => format!("[{addr}]:{port}"),
        false => format!("{addr}:{port}"),
    };
    let udp = i.protocol == 17 || i.protocol == 136;
    let state = match i.state {
        1 if udp => "connected",
        1 => "established",
        2 => "syn-sent",
        4 => "fin-wait-1",
        5 => "fin-wait-2",
        7 if i.local_port == 0 => "unbound",
        7 => "bound",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        _ => "other",
    };
    let mut out = format!("socket:[{}] {state} {}", i.ino, at(&i.local_addr, i.local_port));
    if !i.remote_addr.is_empty() {
        out.push_str(&format!(" -> {}", at(&i.remote_addr, i.remote_port)));
    }
    if i.state == 10 {
        out.push_str(&format!(" backlog {}", i.backlog));
    }
    if let Some(t) = &i.tcp {
        out.push_str(&format!(
            " send queue {} bytes ({} unsent) receive queue {} bytes",
            t.send_queue.len(),
            t.unsent,
            t.recv_queue.len()
        ));
    }
    if !i.datagrams.is_empty() {
        let bytes: usize = i.datagrams.iter().map(|d| d.data.len()).sum();
        let mut from: Vec<String> = i.datagrams.iter().map(|d| at(&d.source_addr, d.source_port)).collect();
        from.dedup();
        out.push_str(&format!(
            " receive queue {} datagrams, {bytes} bytes, from {}",
            i.datagrams.len(),
            from.join(" ")
        ));
    }
    if i.shutdown != 0 {
        out.push_str(&format!(" shutdown {}", ["", "rd", "wr", "rdwr"][(i.shutdown & 3) as usize]));
    }
    if !i.filter.is_empty() {
        let locked = if i.filter_locked { " locked" } else { "" };
        out.push_str(&format!(" filter {} instructions{locked}", i.filter.len() / 8));
    }
    for m in &i.memberships {
        let mode = if m.include { "include" } else { "exclude" };
        out.push_str(&format!(" member {} on if {} ({mode} [{}])", m.group, m.ifindex, m.sources.join(" ")));
    }
    let default = |o: &&stasis_image::model::SockOpt| o.value == 0 || o.name == "SO_PEEK_OFF" && o.value == -1;
    let set: Vec<String> =
        i.options.iter().filter(|o| !default(o)).map(|o| format!("{}={}", o.name, o.value)).collect();
    if !set.is_empty() {
        out.push_str(&format!(" [{}]", set.join(" ")));
    }
    out
}

/// One line on a UNIX socket: inode, name, peer, pending connections, queue, shutdown.
pub(super) fn unix_socket(u: &UnixSocket) -> String {
    let mut out = format!("socket:[{}] {}", u.ino, unix_name(&u.name));
    if u.peer != 0 || u.external_peer {
        let ext = if u.external_peer { format!(" (external, {})", unix_name(&u.peer_name)) } else { String::new() };
        out.push_str(&format!(" peer socket:[{}]{ext}", u.peer));
    }
    if u.state == 10 {
        out.push_str(&format!(" backlog {} pending {:?}", u.backlog, u.icons));
    }
    if !u.queue.is_empty() {
        let bytes: usize = u.queue.iter().map(|m| m.data.len()).sum();
        let fds: usize = u.queue.iter().map(|m| m.fds.len()).sum();
        out.push_str(&format!(" queued {} messages, {bytes} bytes, {fds} fds", u.queue.len()));
    }
    if u.shutdown != 0 {
        let s = ["", "rd", "wr", "rdwr"][(u.shutdown & 3) as usize];
        out.push_str(&format!(" shutdown {s}"));
    }
    out
}

/// Open flags as names: `O_RDWR|O_APPEND|O_NONBLOCK`.
pub(super) fn open_flags(flags: u32) -> String {
    const NAMED: [(u32, &str); 7] = [
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o400000, "O_NOATIME"),
        (0o4010000, "O_SYNC"),
    ];
    let mut out = match flags & 3 {
        0 => "O_RDONLY".to_owned(),
        1 => "O_WRONLY".to_owned(),
        2 => "O_RDWR".to_owned(),
        _ => "O_ACCMODE".to_owned(),
    };
    let mut rest = flags & !3 & !0o100000; // O_LARGEFILE says nothing on x86_64
    for (mask, name) in NAMED.iter().rev() {
        if rest & mask == *mask {
            out.push('|');
            out.push_str(name);
            rest &= !mask;
        }
    }
    if rest != 0 {
        out.push_str(&format!("|{rest:#o}"));
    }
    out
}

/// `12 KiB`, `3.5 MiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds since the epoch as `2026-03-21 12:34:56 UTC`.
pub(super) fn unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_formats() {
        assert_eq!(signal(2), "SIGINT");
        assert_eq!(signal(31), "SIGSYS");
        assert_eq!(signal(36), "SIGRTMIN+2");
        assert_eq!(signal(0), "SIG0");
        assert_eq!(rlimit(7), "nofile");
        assert_eq!(rlimit(99), "resource 99");
        assert_eq!(prot(3), "rw-");
        assert_eq!(prot(5), "r-x");
        assert_eq!(vma_flags(2, false), "private");
        assert_eq!(vma_flags(1 | 0x100, true), "shared,growsdown,locked");
        assert_eq!(open_flags(0o2 | 0o4000 | 0o100000), "O_RDWR|O_NONBLOCK");
        assert_eq!(open_flags(0o4010001), "O_WRONLY|O_SYNC");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(unix_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_ms(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
        assert!(unix_ms(u64::MAX).ends_with("UTC"));
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;
    use stasis_image::model::{EpollFile, EpollWatch, FanotifyFile, FanotifyMark, FifoFile};

    #[test]
    fn details_of_watching_files() {
        let epoll = FileEntry {
            id: 3,
            owner: None,
            flags: 2,
            kind: Some(FileKind::Epoll(EpollFile {
                watches: vec![EpollWatch { tfd: 9, events: 0x19, data: 0xc4, file_id: 12 }],
            })),
        };
        assert_eq!(file_kind(&epoll).0, "epoll");
        assert_eq!(file_details(&epoll), ["watches fd 9 (file id 12) events 0x19 data 0xc4"]);
        let fan = FileEntry {
            id: 4,
            owner: None,
            flags: 0,
            kind: Some(FileKind::Fanotify(FanotifyFile {
                flags: 2,
                event_flags: 0x8000,
                marks: vec![FanotifyMark {
                    kind: FANOTIFY_MARK_MOUNT,
                    mflags: 0,
                    mask: 8,
                    ignored_mask: 0,
                    path: "/mnt".into(),
                }],
            })),
        };
        assert_eq!(
            file_details(&fan),
            ["flags 0x2 event flags 0x8000", "mount mark /mnt mask 0x8 ignored 0x0 mflags 0x0"]
        );
        let fifo = |removed, data: &[u8]| FileEntry {
            id: 5,
            owner: None,
            flags: 0,
            kind: Some(FileKind::Fifo(FifoFile {
                path: "/tmp/f".into(),
                fifo_id: 1,
                capacity: if data.is_empty() { 0 } else { 4096 },
                data: data.to_vec(),
                removed,
                mode: 0o600,
                packets: vec![],
            })),
        };
        assert_eq!(file_kind(&fifo(true, b"")).0, "fifo (removed)");
        assert_eq!(file_details(&fifo(false, b"abc")), ["capacity 4096, 3 bytes queued"]);
        assert!(file_details(&fifo(false, b"")).is_empty());
    }
}

/// The socket-level settings of a packet or netlink socket that are set: ` filter N instructions
/// locked linger 3 device lo`, or nothing.
fn socket_level(l: Option<&stasis_image::model::SocketLevel>) -> String {
    let Some(l) = l else { return String::new() };
    let mut out = String::new();
    if !l.filter.is_empty() {
        let locked = if l.filter_locked { " locked" } else { "" };
        out.push_str(&format!(" filter {} instructions{locked}", l.filter.len() / 8));
    }
    if l.linger >= 0 {
        out.push_str(&format!(" linger {}", l.linger));
    }
    if !l.bound_device.is_empty() {
        out.push_str(&format!(" device {}", l.bound_device));
    }
    out
}

/// One line on a netlink socket: protocol, port id, groups, destination, options set.
fn netlink_socket(n: &stasis_image::model::NetlinkSocket) -> String {
    let proto = match n.protocol {
        0 => "route".to_string(),
        4 => "sock_diag".to_string(),
        15 => "uevent".to_string(),
        p => format!("protocol {p}"),
    };
    let mut out = format!("socket:[{}] {proto} portid {} groups {:?}", n.ino, n.portid, n.groups);
    if n.dst_portid != 0 || n.dst_groups != 0 {
        out.push_str(&format!(" -> portid {} groups {:#x}", n.dst_portid, n.dst_groups));
    }
    out.push_str(&socket_level(n.socket.as_ref()));
    let set: Vec<String> =
        n.options.iter().filter(|o| o.value != 0).map(|o| format!("{}={}", o.name, o.value)).collect();
    if !set.is_empty() {
        out.push_str(&format!(" [{}]", set.join(" ")));
    }
    out
}
