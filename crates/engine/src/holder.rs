//! The tracking holder: a small process a pre-dump leaves behind to keep the userfaultfds of the
//! tracked processes open between rounds (closing a userfaultfd ends its write tracking), so they
//! never sit in the program's own fd table.
//!
//! It is stasis itself, run as `stasis __track-holder DIR` with its stdin a `SOCK_SEQPACKET`
//! socket on which the pre-dump hands it a listening socket (bound to `DIR/track.sock`), then the
//! trackers in messages of up to [`BATCH`] processes: their PIDs (4 bytes each, little endian)
//! with, in flight, each one's userfaultfd and pidfd in that order; then `end`. It answers `ok`
//! once it holds them all. The next round connects to `DIR/track.sock`,
//! receives the same messages and an `end`; the holder then removes the socket and exits, and
//! from then on the fds are the new round's (a failed round drops them: tracking ends, nothing is
//! left behind). The holder also exits once every tracked process has exited.

use crate::error::{Error, Result};
use crate::mem::track::Tracker;
use crate::proc::{self, ProcRoot};
use stasis_sys::fd::poll;
use stasis_sys::socket::{self, recv, send};
use stasis_sys::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The holder's socket in the image directory of the pre-dump that started it.
pub const SOCKET: &str = "track.sock";
/// The hidden command of the `stasis` binary that runs [`serve`].
pub const COMMAND: &str = "__track-holder";

fn sys(what: &'static str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    Error::sys(std::process::id() as i32, what)
}

/// `/proc/self/fd/N/track.sock` for an open directory: short whatever the directory's path.
fn socket_name(dir: &std::fs::File) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd()).into_bytes()
}

fn open_dir(dir: &Path) -> Result<std::fs::File> {
    std::fs::File::open(dir).map_err(Error::io(dir))
}

/// Trackers per message: two fds each, within `SCM_MAX_FD`.
const BATCH: usize = socket::MAX_FDS / 2;
/// The largest message: the PIDs of a batch.
const MESSAGE: usize = BATCH * 4;

/// `send`, waiting while the peer's queue is full (a seqpacket socket queues few messages).
fn send_all(to: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    loop {
        match send(to, data, &[], fds, None) {
            Err(e) if e.errno() == libc::EAGAIN => {
                poll(&[to], libc::POLLOUT, -1).map_err(sys("poll"))?;
            }
            Err(e) => return Err(sys("handing over the userfaultfds")(e)),
            Ok(_) => return Ok(()),
        }
    }
}

fn send_trackers(to: BorrowedFd<'_>, trackers: &[Tracker]) -> Result<()> {
    for batch in trackers.chunks(BATCH) {
        let pids: Vec<u8> = batch.iter().flat_map(|t| t.pid.0.to_le_bytes()).collect();
        let fds: Vec<BorrowedFd> = batch.iter().flat_map(|t| [t.uffd.as_fd(), t.pidfd.as_fd()]).collect();
        send_all(to, &pids, &fds)?;
    }
    send_all(to, b"end", &[])
}

/// Receive trackers up to the `end` message (or the peer's close).
fn recv_trackers(from: BorrowedFd<'_>) -> Result<Vec<Tracker>> {
    let mut out = Vec::new();
    loop {
        let (data, fds) = recv(from, MESSAGE).map_err(sys("receiving the userfaultfds"))?;
        if data == b"end" || data.is_empty() {
            return Ok(out);
        }
        out.extend(trackers_of(&data, fds));
    }
}

/// The trackers of one message: PIDs with their fds in flight (pairs in the same order).
fn trackers_of(data: &[u8], fds: Vec<OwnedFd>) -> Vec<Tracker> {
    let mut fds = fds.into_iter();
    let mut out = Vec::new();
    for pid in data.chunks_exact(4) {
        let pid = i32::from_le_bytes(pid.try_into().expect("4 bytes"));
        match (fds.next(), fds.next()) {
            (Some(uffd), Some(pidfd)) => out.push(Tracker { pid: Pid(pid), uffd, pidfd }),
            _ => break,
        }
    }
    out
}

/// Start a holder for `trackers` in `dir`; returns its pid once it holds them.
pub fn spawn(dir: &Path, trackers: &[Tracker]) -> Result<u32> {
    let path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listening = socket::unix_socket(libc::SOCK_SEQPACKET).map_err(sys("socket"))?;
    let d = open_dir(dir)?;
    socket::bind(listening.as_fd(), &socket_name(&d))
        .map_err(|e| Error::Io { path: path.clone(), source: e.source })?;
    socket::listen(listening.as_fd(), 4).map_err(sys("listen"))?;
    let (ours, theirs) = socket::unix_socketpair(libc::SOCK_SEQPACKET).map_err(sys("socketpair"))?;
    let exe = std::env::current_exe().map_err(Error::io("/proc/self/exe"))?;
    let started = std::process::Command::new(&exe)
        .arg(COMMAND)
        // The real path: `dir` may be `/proc/self/fd/N` (CRIU's RPC hands the directory as an fd).
        .arg(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()))
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    let holder = started.map_err(Error::io(&exe))?;
    let handed = send_all(ours.as_fd(), b"L", &[listening.as_fd()])
        .and_then(|()| send_trackers(ours.as_fd(), trackers))
        .and_then(|()| recv(ours.as_fd(), 16).map_err(sys("waiting for the holder")));
    match handed {
        Ok((ok, _)) if ok == b"ok" => {
            log::info!(
                "write tracking of {} processes held by pid {} ({})",
                trackers.len(),
                holder.id(),
                path.display()
            );
            Ok(holder.id())
        }
        Ok(_) => Err(Error::Failed {
            pid: Pid(holder.id() as i32),
            what: "the tracking holder did not take the userfaultfds".into(),
        }),
        Err(e) => Err(e),
    }
}

/// Take the trackers held for the image in `prev` (its holder exits). `None`, with the reason
/// logged, when there is no holder (it exited with the tracked processes, or was never started).
pub fn take(prev: &Path) -> Result<Option<Vec<Tracker>>> {
    let d = open_dir(prev)?;
    let conn = socket::unix_socket(libc::SOCK_SEQPACKET).map_err(sys("socket"))?;
    if let Err(e) = socket::connect(conn.as_fd(), &socket_name(&d)) {
        log::warn!(
            "{}: no write tracking from this image ({}: {}): every page is saved",
            prev.join(SOCKET).display(),
            e,
            e.source
        );
        return Ok(None);
    }
    Ok(Some(recv_trackers(conn.as_fd())?))
}

/// The image directories of the running holders that track any of `pids`: processes whose
/// command line is `stasis __track-holder DIR` holding a pidfd of one of them.
pub fn holding(root: &ProcRoot, pids: &[i32]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.path()) else { return Vec::new() };
    let ours = std::env::current_exe().ok();
    let mut dirs = Vec::new();
    for h in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        // Only stasis processes: their command line is read (which needs the process's mm).
        let exe = proc::link(root, h, "exe").ok();
        let is_stasis = (exe.is_some() && exe == ours) || proc::comm(root, h).is_ok_and(|c| c == "stasis");
        if !is_stasis {
            continue;
        }
        let Ok(cmdline) = std::fs::read(root.pid_path(h, "cmdline")) else { continue };
        let mut args = cmdline.split(|&b| b == 0);
        let (Some(_), Some(command), Some(dir)) = (args.next(), args.next(), args.next()) else { continue };
        if command != COMMAND.as_bytes() {
            continue;
        }
        let tracks = proc::fds(root, h).unwrap_or_default().into_iter().any(|(fd, target)| {
            target.as_os_str() == "anon_inode:[pidfd]"
                && proc::fdinfo(root, h, fd)
                    .ok()
                    .and_then(|i| i.get("Pid").and_then(|p| p.parse::<i32>().ok()))
                    .is_some_and(|p| pids.contains(&p))
        });
        if tracks {
            use std::os::unix::ffi::OsStrExt;
            dirs.push(PathBuf::from(std::ffi::OsStr::from_bytes(dir)));
        }
    }
    dirs
}

/// The holder's main: see the module doc. Returns when it is done.
pub fn serve(control: OwnedFd, dir: PathBuf) -> Result<()> {
    let (_, mut fds) = recv(control.as_fd(), 16).map_err(sys("receiving the holder socket"))?;
    let listening = fds.pop().ok_or_else(|| Error::Failed { pid: Pid(0), what: "no holder socket".into() })?;
    let mut trackers = recv_trackers(control.as_fd())?;
    send_all(control.as_fd(), b"ok", &[])?;
    drop(control);
    let served = hold(&listening, &mut trackers);
    let _ = std::fs::remove_file(dir.join(SOCKET));
    served
}

/// Wait for the next round (hand it every tracker) or for every tracked process to exit.
fn hold(listening: &OwnedFd, trackers: &mut Vec<Tracker>) -> Result<()> {
    while !trackers.is_empty() {
        let mut set: Vec<BorrowedFd> = vec![listening.as_fd()];
        set.extend(trackers.iter().map(|t| t.pidfd.as_fd()));
        let ready = poll(&set, libc::POLLIN, -1).map_err(sys("poll"))?;
        if ready[0] != 0 {
            let conn = socket::accept(listening.as_fd()).map_err(sys("accept"))?;
            send_trackers(conn.as_fd(), trackers)?;
            // Wait until the round has read them all (it closes its end).
            let _ = recv(conn.as_fd(), 16);
            return Ok(());
        }
        let exited: Vec<bool> = ready[1..].iter().map(|&r| r != 0).collect();
        let mut i = 0;
        trackers.retain(|_| {
            i += 1;
            !exited[i - 1]
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trackers cross a socket in batches, in order, with their fds.
    #[test]
    fn trackers_cross_in_batches() {
        let null = || std::fs::File::open("/dev/null").map(OwnedFd::from).expect("open /dev/null");
        let trackers: Vec<Tracker> = (0..300).map(|i| Tracker { pid: Pid(i), uffd: null(), pidfd: null() }).collect();
        let (a, b) = socket::unix_socketpair(libc::SOCK_SEQPACKET).expect("socketpair");
        let got = std::thread::scope(|s| {
            let reader = s.spawn(|| recv_trackers(b.as_fd()));
            send_trackers(a.as_fd(), &trackers).expect("send");
            reader.join().expect("join").expect("recv")
        });
        let pids: Vec<i32> = got.iter().map(|t| t.pid.0).collect();
        assert_eq!(pids, (0..300).collect::<Vec<_>>());
    }
}
