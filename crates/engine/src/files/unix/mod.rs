//! UNIX domain sockets: stream, datagram and seqpacket; unnamed, abstract or bound to a path;
//! listening with connections waiting to be accepted; connected, with the messages queued on them,
//! the files in flight in those messages (`SCM_RIGHTS`) and their credentials (`SCM_CREDENTIALS`);
//! shutdown state and the options a program can read back.
//!
//! Dump ([`dump`]) asks `unix_diag` once for every socket of the network namespace (names, peers,
//! pending connections, shutdown), peeks each socket's receive queue without consuming it (MSG_PEEK
//! with `SO_PEEK_OFF` stepping, the socket's own offset put back after), and dumps the files in
//! flight like any other open file description. [`check_peers`] then checks, tree-wide, that every
//! peer is in the image, or marks it external with `--ext-unix-sk`.
//!
//! Restore ([`restore`]) makes the sockets in the controller in two stages: [`Sockets`] (during
//! `open_all`) makes, binds and connects them: a connected pair as a `socketpair` (then bound), an
//! accepted connection by connecting to its listener and accepting, a pending connection by
//! connecting to its listener. [`Unfinished::finish`] runs once every process exists (a message's
//! credentials name a process of the tree, which must exist to be sent): it queues the messages
//! again, then sets the options and the shutdown state.

mod dump;
mod restore;

pub use dump::{check_peers, dump, is_unix, DumpState};
pub use restore::{Sockets, Unfinished};

use stasis_image::model::UnixSocket;

const SOCK_STREAM: u32 = libc::SOCK_STREAM as u32;
const SOCK_DGRAM: u32 = libc::SOCK_DGRAM as u32;
const SOCK_SEQPACKET: u32 = libc::SOCK_SEQPACKET as u32;
const ESTABLISHED: u32 = 1;
const LISTEN: u32 = 10;
const RCV_SHUTDOWN: u32 = 1;
const SEND_SHUTDOWN: u32 = 2;

/// `@name`, a path, or `unnamed`, for messages.
fn show_name(name: &[u8]) -> String {
    match name.split_first() {
        None => "unnamed".into(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        Some(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

/// `socket:[N] (name)`, for messages.
fn describe(u: &UnixSocket) -> String {
    format!("unix socket socket:[{}] ({})", u.ino, show_name(&u.name))
}

/// A stream or seqpacket socket: one connection, data as a byte stream or records.
fn connection_oriented(u: &UnixSocket) -> bool {
    u.sock_type == SOCK_STREAM || u.sock_type == SOCK_SEQPACKET
}

/// The address to reach `u` at from the controller: its name, or for a relative path name, the
/// path from its `bind_dir`.
fn address(u: &UnixSocket) -> Vec<u8> {
    if !is_path(&u.name) || u.name[0] == b'/' || u.bind_dir.is_empty() {
        return u.name.clone();
    }
    let mut a = u.bind_dir.as_bytes().to_vec();
    a.push(b'/');
    a.extend_from_slice(&u.name);
    a
}

/// The socket file of a path name (see [`address`]).
fn file_path(u: &UnixSocket) -> std::path::PathBuf {
    std::path::PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&address(u)))
}

/// A path name (not unnamed, not abstract).
fn is_path(name: &[u8]) -> bool {
    name.first().is_some_and(|&c| c != 0)
}

/// UNIX domain sockets, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "unix socket",
    dump: Some(super::kinds::Dumper {
        claims: |p| std::os::unix::fs::FileTypeExt::is_socket(&p.meta.file_type()) && is_unix(p.file),
        dump,
    }),
    configure: Some(|opts, ids| {
        let state = ids.state::<DumpState>();
        state.ext = opts.ext_unix_sk;
        state.ext_inodes = opts.ext_unix_inodes.clone();
    }),
    finish_dump: Some(|t| check_peers(t.files, t.ids)),
    opener: Some(|files, settings| Ok(Box::new(Sockets::new(files, settings.ext_unix_sk)))),
    finish_restore: Some(|later, files, fds| match later.take::<Unfinished>() {
        Some(unfinished) => unfinished.finish(files, fds),
        None => Ok(()),
    }),
};
