//! The fd table of a process (`fds-PID.img`) and the open files of the image (`files.img`) other
//! than sockets and terminals.

use super::*;
use serde::Serialize;

/// `fds-PID.img`: the process's fd table.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FdTable {
    #[prost(message, repeated, tag = "1")]
    pub fds: Vec<FdEntry>,
    /// File locks (`--file-locks`) this process takes again at restore, through its fds: its own
    /// POSIX locks, and the flock, OFD locks and leases of descriptions it holds that it took (or,
    /// if their taker is not in the tree, that it was the first process found holding).
    #[prost(message, repeated, tag = "150")]
    pub locks: Vec<FileLock>,
}

/// What owns a file lock and how it is taken (`flock(2)`, `fcntl(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, Serialize)]
#[repr(i32)]
pub enum LockKind {
    /// `flock`: the open file description's.
    Flock = 0,
    /// `fcntl(F_SETLK)`: the process's.
    Posix = 1,
    /// `fcntl(F_OFD_SETLK)`: the open file description's.
    Ofd = 2,
    /// `fcntl(F_SETLEASE)`: the open file description's.
    Lease = 3,
}

/// One file lock, as `/proc/PID/fdinfo/FD` shows it (`lock:` lines).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileLock {
    #[prost(enumeration = "LockKind", tag = "1")]
    pub kind: i32,
    /// The fd of the process to take it through.
    #[prost(int32, tag = "2")]
    pub fd: i32,
    /// Exclusive (`F_WRLCK`, `LOCK_EX`), else shared (`F_RDLCK`, `LOCK_SH`).
    #[prost(bool, tag = "3")]
    pub write: bool,
    /// Byte range of a POSIX or OFD lock: first byte, and length (0: to the end of the file).
    #[prost(uint64, tag = "4")]
    pub start: u64,
    #[prost(uint64, tag = "5")]
    pub len: u64,
    /// The pid the kernel showed for it (-1 for OFD locks), for messages.
    #[prost(int32, tag = "6")]
    pub pid: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FdEntry {
    #[prost(int32, tag = "1")]
    pub fd: i32,
    /// `FileEntry::id` of the open file description.
    #[prost(uint32, tag = "2")]
    pub file_id: u32,
    #[prost(bool, tag = "3")]
    pub cloexec: bool,
}

/// `files.img`: every open file description of the image, each once.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileTable {
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<FileEntry>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// Open flags (`O_*`, as fdinfo shows them, without O_CLOEXEC).
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(oneof = "FileKind", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 101, 350, 351, 352")]
    pub kind: Option<FileKind>,
    /// Who gets the description's I/O signals (`F_GETOWN_EX`) and which signal (`F_GETSIG`);
    /// absent when neither is set.
    #[prost(message, optional, tag = "100")]
    pub owner: Option<FileOwner>,
}

/// The owner of an open file description's I/O signals (`fcntl(2)` `F_SETOWN_EX`, `F_SETSIG`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileOwner {
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The thread, process or process group; 0 for none.
    #[prost(int32, tag = "2")]
    pub pid: i32,
    /// The signal sent instead of SIGIO (`F_SETSIG`); 0 for SIGIO.
    #[prost(int32, tag = "3")]
    pub signal: i32,
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize)]
pub enum FileKind {
    #[prost(message, tag = "3")]
    Regular(RegularFile),
    #[prost(message, tag = "4")]
    Directory(DirectoryFile),
    #[prost(message, tag = "5")]
    CharDevice(CharDevice),
    #[prost(message, tag = "6")]
    Terminal(Terminal),
    #[prost(message, tag = "7")]
    Pipe(PipeEnd),
    #[prost(message, tag = "14")]
    Epoll(EpollFile),
    #[prost(message, tag = "15")]
    Inotify(InotifyFile),
    #[prost(message, tag = "16")]
    Fanotify(FanotifyFile),
    #[prost(message, tag = "17")]
    Fifo(FifoFile),
    #[prost(message, tag = "9")]
    EventFd(EventFd),
    #[prost(message, tag = "10")]
    SignalFd(SignalFd),
    #[prost(message, tag = "11")]
    TimerFd(TimerFd),
    #[prost(message, tag = "12")]
    PidFd(PidFd),
    #[prost(message, tag = "13")]
    Mqueue(Mqueue),
    #[prost(message, tag = "8")]
    UnixSocket(UnixSocket),
    #[prost(message, tag = "18")]
    Pty(PtyFile),
    #[prost(message, tag = "350")]
    InetSocket(InetSocket),
    #[prost(message, tag = "351")]
    NetlinkSocket(NetlinkSocket),
    #[prost(message, tag = "352")]
    PacketSocket(PacketSocket),
    #[prost(message, tag = "101")]
    ProcFile(ProcFile),
}

/// A file of a process's `/proc/PID/` directory, or a namespace fd (nsfs, `TYPE:[INODE]`, as
/// `/proc/PID/ns/NAME` opens one), opened again at restore as `/proc/PID/REST` once process `pid`
/// exists (it may be a process of the image, made later than the holder).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ProcFile {
    /// The process (or thread) whose directory it is in.
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// The path below `/proc/PID`, starting with `/` (`/status`, `/ns/net`).
    #[prost(string, tag = "2")]
    pub rest: String,
    /// The file offset.
    #[prost(uint64, tag = "3")]
    pub pos: u64,
    /// Of a namespace fd: the namespace's inode at dump (0 for other files).
    #[prost(uint64, tag = "4")]
    pub ns_ino: u64,
}

/// One end of a pipe. Both ends of a pipe share `pipe_id`; the data buffered in the pipe is stored
/// once, with its read end.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PipeEnd {
    /// The pipe's inode number at dump time (`pipe:[N]`).
    #[prost(uint64, tag = "1")]
    pub pipe_id: u64,
    #[prost(bool, tag = "2")]
    pub read_end: bool,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    #[prost(uint32, tag = "3")]
    pub capacity: u32,
    /// Bytes queued in the pipe (read end only).
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// `pipe:[N]`, as /proc shows it.
    #[prost(string, tag = "5")]
    pub name: String,
    /// The other end was closed by every process, in the tree and outside (no writer of a read end:
    /// a read gives EOF once the data is read; no reader of a write end: a write gives EPIPE).
    #[prost(bool, tag = "100")]
    pub peer_closed: bool,
    /// The other end is open, but outside the dumped tree: restore gives a fresh pipe (whose other
    /// end nobody holds) unless `--inherit-fd` hands in a descriptor for this end.
    #[prost(bool, tag = "101")]
    pub external: bool,
    /// The sizes of the packets `data` holds, in order, when the pipe is in packet mode (written
    /// through an O_DIRECT end: each write one packet, each read at most one); empty otherwise.
    #[prost(uint32, repeated, tag = "102")]
    pub packets: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RegularFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub pos: u64,
    /// Size and mode at dump time, checked at restore.
    #[prost(uint64, tag = "3")]
    pub size: u64,
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    /// The file was unlinked while open (`path` is its last name): restore makes it again from
    /// `content` and unlinks it.
    #[prost(bool, tag = "5")]
    pub ghost: bool,
    /// An unlinked file's bytes, held by the first entry of its inode (`ino`) only.
    #[prost(bytes = "vec", tag = "6")]
    #[serde(serialize_with = "hex_bytes")]
    pub content: Vec<u8>,
    /// Inode number at dump time: descriptions of one unlinked file share it.
    #[prost(uint64, tag = "7")]
    pub ino: u64,
    /// The unlinked file is a memfd (`path` is `/memfd:NAME`), with these seals (`F_GET_SEALS`).
    #[prost(bool, tag = "8")]
    pub memfd: bool,
    #[prost(int32, tag = "9")]
    pub seals: i32,
    /// Unlinked files and memfds: the device at dump time (`st_dev`; with `ino` the object's
    /// identity), the owner, and the access and modification times (`st_atim`, `st_mtim`).
    #[prost(uint64, tag = "150")]
    pub dev: u64,
    #[prost(uint32, tag = "151")]
    pub uid: u32,
    #[prost(uint32, tag = "152")]
    pub gid: u32,
    #[prost(int64, tag = "153")]
    pub atime_sec: i64,
    #[prost(uint32, tag = "154")]
    pub atime_nsec: u32,
    #[prost(int64, tag = "155")]
    pub mtime_sec: i64,
    #[prost(uint32, tag = "156")]
    pub mtime_nsec: u32,
    /// An unlinked file's data, as the extents `SEEK_DATA`/`SEEK_HOLE` give, held (like `content`,
    /// which images made before it used instead) by the first entry of the object only; what lies
    /// between them up to `size` is a hole.
    #[prost(message, repeated, tag = "157")]
    pub extents: Vec<DataExtent>,
    /// The file never had a name: it was made with `O_TMPFILE` in the directory `path` names
    /// (`DIR/#INODE`, as /proc shows it).
    #[prost(bool, tag = "158")]
    pub tmpfile: bool,
    /// The unlinked file is on hugetlbfs (an `MFD_HUGETLB` memfd): its huge page size in bytes
    /// (`st_blksize`, 2 MiB or 1 GiB). Restore makes it with that page size and writes its data
    /// through a mapping (hugetlbfs has no `write`); `extents` then cover whole huge pages, and a
    /// huge page that read as zeros is a hole. Zero for other files.
    #[prost(uint64, tag = "159")]
    pub hugetlb_page_size: u64,
}

/// Bytes of a file at an offset.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DataExtent {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DirectoryFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub pos: u64,
}

/// A character device stasis reopens by path (`/dev/null`, `/dev/zero`, `/dev/urandom`, ...).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CharDevice {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub rdev: u64,
    /// The device node was unlinked while open (`path` is its last name): restore makes it again
    /// there (`mknod` with `rdev` and `mode`, then the owner), opens it and unlinks it.
    #[prost(bool, tag = "150")]
    pub ghost: bool,
    #[prost(uint32, tag = "151")]
    pub mode: u32,
    #[prost(uint32, tag = "152")]
    pub uid: u32,
    #[prost(uint32, tag = "153")]
    pub gid: u32,
    /// The node's own device and inode at dump time: descriptions of one unlinked node share them.
    #[prost(uint64, tag = "154")]
    pub dev: u64,
    #[prost(uint64, tag = "155")]
    pub ino: u64,
}

/// A terminal the task had open. With `--shell-job` it is external: restore connects it to the
/// terminal stasis runs from.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Terminal {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub rdev: u64,
    #[prost(bool, tag = "3")]
    pub external: bool,
}

/// An epoll instance and every file it watches.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EpollFile {
    #[prost(message, repeated, tag = "1")]
    pub watches: Vec<EpollWatch>,
}

/// One item of an epoll instance: the file with id `file_id`, registered under fd number `tfd` (the
/// number it had in the process that added it, which may since have closed it).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EpollWatch {
    #[prost(int32, tag = "1")]
    pub tfd: i32,
    /// `EPOLLIN`, ..., `EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`, `EPOLLWAKEUP`, as fdinfo shows
    /// them (a fired one-shot item has only its flag bits left).
    #[prost(uint32, tag = "2")]
    pub events: u32,
    #[prost(uint64, tag = "3")]
    pub data: u64,
    /// The watched file, an entry of `files.img`.
    #[prost(uint32, tag = "4")]
    pub file_id: u32,
}

/// An inotify instance (`IN_NONBLOCK` is in the entry's flags) and its watches.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InotifyFile {
    #[prost(message, repeated, tag = "1")]
    pub watches: Vec<InotifyWatch>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InotifyWatch {
    /// Watch descriptor; restore gives each watch the same one.
    #[prost(int32, tag = "1")]
    pub wd: i32,
    #[prost(uint32, tag = "2")]
    pub mask: u32,
    /// The watched file's path, resolved at dump from its file handle.
    #[prost(string, tag = "3")]
    pub path: String,
    /// Its inode number at dump time.
    #[prost(uint64, tag = "4")]
    pub ino: u64,
}

/// A fanotify group: its `fanotify_init` flags and event flags, and its marks.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FanotifyFile {
    #[prost(uint32, tag = "1")]
    pub flags: u32,
    #[prost(uint32, tag = "2")]
    pub event_flags: u32,
    #[prost(message, repeated, tag = "3")]
    pub marks: Vec<FanotifyMark>,
}

/// One fanotify mark: on an inode, a mount or a filesystem (`kind`, `FANOTIFY_MARK_*`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FanotifyMark {
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// `FAN_MARK_*` flags kept with the mark (`FAN_MARK_IGNORED_SURV_MODIFY`, `FAN_MARK_EVICTABLE`).
    #[prost(uint32, tag = "2")]
    pub mflags: u32,
    #[prost(uint64, tag = "3")]
    pub mask: u64,
    #[prost(uint64, tag = "4")]
    pub ignored_mask: u64,
    /// The marked inode, or the mount point (mount and filesystem marks).
    #[prost(string, tag = "5")]
    pub path: String,
}

/// `FanotifyMark::kind` values.
pub const FANOTIFY_MARK_INODE: u32 = 0;
pub const FANOTIFY_MARK_MOUNT: u32 = 1;
pub const FANOTIFY_MARK_FILESYSTEM: u32 = 2;

/// A FIFO (named pipe) opened by path. Descriptions of one FIFO share `fifo_id`; the bytes queued in
/// it are stored once, with the first of them.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FifoFile {
    #[prost(string, tag = "1")]
    pub path: String,
    /// The FIFO's inode number at dump time.
    #[prost(uint64, tag = "2")]
    pub fifo_id: u64,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    #[prost(uint32, tag = "3")]
    pub capacity: u32,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// The FIFO's path was removed while it was open (`path` is its last name): restore makes a FIFO
    /// there with `mode`, opens every description of it, and removes it again.
    #[prost(bool, tag = "5")]
    pub removed: bool,
    #[prost(uint32, tag = "6")]
    pub mode: u32,
    /// Packet sizes of `data` for a FIFO in packet mode (as `PipeEnd.packets`).
    #[prost(uint32, repeated, tag = "7")]
    pub packets: Vec<u32>,
}

/// An eventfd: its counter and mode (EFD_NONBLOCK is in `FileEntry::flags`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EventFd {
    #[prost(uint64, tag = "1")]
    pub count: u64,
    /// EFD_SEMAPHORE.
    #[prost(bool, tag = "2")]
    pub semaphore: bool,
    /// `eventfd-id` at dump time (informational: the kernel picks a new one at restore).
    #[prost(uint32, tag = "3")]
    pub id: u32,
}

/// A signalfd: the signals it reads (bit `n-1` for signal `n`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SignalFd {
    #[prost(uint64, tag = "1")]
    pub sigmask: u64,
}

/// A timerfd. `value` is the time left to the next expiry at the checkpoint (zero: disarmed);
/// restore counts it from the moment of restore.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TimerFd {
    #[prost(int32, tag = "1")]
    pub clockid: i32,
    /// Expirations not yet read.
    #[prost(uint64, tag = "2")]
    pub ticks: u64,
    /// TFD_TIMER_ABSTIME (1), TFD_TIMER_CANCEL_ON_SET (2), as the last `timerfd_settime` gave them.
    #[prost(uint32, tag = "3")]
    pub settime_flags: u32,
    #[prost(int64, tag = "4")]
    pub value_sec: i64,
    #[prost(int64, tag = "5")]
    pub value_nsec: i64,
    #[prost(int64, tag = "6")]
    pub interval_sec: i64,
    #[prost(int64, tag = "7")]
    pub interval_nsec: i64,
}

/// A pidfd. PIDFD_NONBLOCK (O_NONBLOCK) and PIDFD_THREAD (O_EXCL) are in `FileEntry::flags`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PidFd {
    /// The process (or thread) it refers to, a process of the image; -1 if it had exited and was
    /// reaped.
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// Of a reaped process (`pid` -1): its pidfs inode number at dump, which every pidfd of that
    /// process shares; restore makes one exited process for all the pidfds that had the same
    /// inode. 0 in older images (each pidfd then gets its own).
    #[prost(uint64, tag = "100")]
    pub reaped_ino: u64,
}

/// A POSIX message queue description (`mq_open`), with the queue's attributes and messages.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Mqueue {
    /// `/NAME`, as `mq_open` takes it.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub maxmsg: i64,
    #[prost(int64, tag = "3")]
    pub msgsize: i64,
    /// Permission bits, owner and group of the queue.
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    /// The queued messages in the order they are received (highest priority first, oldest first).
    #[prost(message, repeated, tag = "7")]
    pub messages: Vec<MqMessage>,
    /// The queue had been unlinked (`mq_unlink`) while open.
    #[prost(bool, tag = "8")]
    pub unlinked: bool,
    /// The queue's inode at dump time: descriptions of one queue share it.
    #[prost(uint64, tag = "9")]
    pub ino: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MqMessage {
    #[prost(uint32, tag = "1")]
    pub priority: u32,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
}
