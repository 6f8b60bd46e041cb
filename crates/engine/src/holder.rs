//! The tracking holder: a small process a pre-dump leaves behind to keep the userfaultfds of the
//! tracked processes open between rounds (closing a userfaultfd ends its write tracking), so they
//! never sit in the program's own fd table.
//!
//! It is stasis itself, run as `stasis __track-holder DIR` with its stdin a `SOCK_SEQPACKET`
//! socket on which the pre-dump hands it a listening socket (bound to `DIR/track.sock`), then one
//! message per process: the PID (4 bytes, little endian) with the userfaultfd and a pidfd in
//! flight. It answers `ok` once it holds them all. The next round connects to `DIR/track.sock`,
//! receives the same messages and an `end`; the holder then removes the socket and exits, and
//! from then on the fds are the new round's (a failed round drops them: tracking ends, nothing is
//! left behind). The holder also exits once every tracked process has exited.

use crate::error::{Error, Result};
use crate::mem::track::Tracker;
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

fn send_trackers(to: BorrowedFd<'_>, trackers: &[Tracker]) -> Result<()> {
    for t in trackers {
        send(to, &t.pid.0.to_le_bytes(), &[], &[t.uffd.as_fd(), t.pidfd.as_fd()], None)
            .map_err(sys("handing over a userfaultfd"))?;
    }
    Ok(())
}

/// One message of trackers: `Some` tracker, or `None` at the end of the list.
fn tracker_of(data: &[u8], fds: Vec<OwnedFd>) -> Option<Tracker> {
    let pid = i32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let [uffd, pidfd]: [OwnedFd; 2] = fds.try_into().ok()?;
    Some(Tracker { pid: Pid(pid), uffd, pidfd })
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
        .arg(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    let holder = started.map_err(Error::io(&exe))?;
    let handed = send(ours.as_fd(), b"L", &[], &[listening.as_fd()], None)
        .map_err(sys("handing over the holder socket"))
        .and_then(|_| send_trackers(ours.as_fd(), trackers))
        .and_then(|()| send(ours.as_fd(), b"end", &[], &[], None).map_err(sys("sendmsg")).map(drop))
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
            pid: holder.id() as i32,
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
    let mut out = Vec::new();
    loop {
        let (data, fds) = recv(conn.as_fd(), 16).map_err(sys("receiving the userfaultfds"))?;
        if data == b"end" || data.is_empty() {
            break;
        }
        out.extend(tracker_of(&data, fds));
    }
    Ok(Some(out))
}

/// The holder's main: see the module doc. Returns when it is done.
pub fn serve(control: OwnedFd, dir: PathBuf) -> Result<()> {
    let (_, mut fds) = recv(control.as_fd(), 16).map_err(sys("receiving the holder socket"))?;
    let listening = fds.pop().ok_or_else(|| Error::Failed { pid: 0, what: "no holder socket".into() })?;
    let mut trackers = Vec::new();
    loop {
        let (data, fds) = recv(control.as_fd(), 16).map_err(sys("receiving the userfaultfds"))?;
        if data == b"end" || data.is_empty() {
            break;
        }
        trackers.extend(tracker_of(&data, fds));
    }
    send(control.as_fd(), b"ok", &[], &[], None).map_err(sys("sendmsg"))?;
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
            send(conn.as_fd(), b"end", &[], &[], None).map_err(sys("sendmsg"))?;
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
