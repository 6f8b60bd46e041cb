//! POSIX message queue descriptions (`mq_open`): the queue's name, attributes (maxmsg, msgsize),
//! owner and mode, and its messages with their priorities; O_NONBLOCK and the access mode are in the
//! entry's flags.
//!
//! Dump reads the messages in the controller without losing them: on a description of its own (by
//! name, or our copy of an unlinked queue's), it receives every message, then sends them all back
//! in the order received (highest priority first, oldest first within a priority), which is the
//! queue's order again; it sends them back also when a receive fails. A queue with a notification
//! registered (`mq_notify`) is refused: sending back into an empty queue would fire it, and the
//! registration cannot be made again from outside.
//!
//! Restore makes the queue once per inode (removing a queue of that name that is there, the dumped
//! one as it was left), fills it, opens each description by name with its flags; a queue that was
//! unlinked is made under its old name if that is free (else a temporary one) and unlinked again
//! once every description of the image is open, or when the restore fails.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FileKind, MqMessage, Mqueue};
use stasis_sys::anon::{self, MqAttr, MQUEUE_MAGIC};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

const DELETED: &str = " (deleted)";

/// The fd is a message queue (a regular file of the mqueue filesystem).
pub fn is_mqueue(p: &Probe) -> bool {
    p.meta.is_file() && anon::fs_type(p.file).is_ok_and(|t| t == MQUEUE_MAGIC)
}

pub fn dump(p: &Probe) -> Result<FileKind> {
    let link = p.link.to_string_lossy();
    let unlinked = link.ends_with(DELETED) || p.meta.nlink() == 0;
    let name = link.strip_suffix(DELETED).unwrap_or(&link).to_string();
    let sys = |what| Error::sys(p.pid.0, what);
    let attr = anon::mq_getattr(p.file).map_err(sys("reading a message queue's attributes"))?;
    let own;
    let reader = if unlinked {
        if p.flags & libc::O_ACCMODE as u32 != libc::O_RDWR as u32 {
            return Err(p.unsupported(format!("message queue {name}, unlinked and open for one direction only")));
        }
        p.file
    } else {
        own = anon::mq_open(&name, libc::O_RDWR, 0, None).map_err(sys("opening a message queue"))?;
        own.as_fd()
    };
    check_notify(p, reader, &name)?;
    let messages = peek(p, reader, &attr)?;
    Ok(FileKind::Mqueue(Mqueue {
        name,
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        mode: p.meta.mode() & 0o7777,
        uid: p.meta.uid(),
        gid: p.meta.gid(),
        messages,
        unlinked,
        ino: p.meta.ino(),
    }))
}

/// Refuse a queue with a notification registered: reading the queue file (with `pread`, at offset
/// 0, through a readable description) shows `NOTIFY_PID:`.
fn check_notify(p: &Probe, reader: BorrowedFd<'_>, name: &str) -> Result<()> {
    let copy = std::fs::File::from(reader.try_clone_to_owned().map_err(Error::io(p.link))?);
    let mut buf = [0u8; 256];
    let n = copy.read_at(&mut buf, 0).map_err(Error::io(p.link))?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let pid = text.split_whitespace().find_map(|w| w.strip_prefix("NOTIFY_PID:")).and_then(|v| v.parse::<i32>().ok());
    match pid {
        Some(0) => Ok(()),
        Some(who) => Err(p.unsupported(format!("message queue {name} with a notification (mq_notify) for pid {who}"))),
        None => Err(p.unsupported(format!("message queue {name} whose state cannot be read ({})", text.trim()))),
    }
}

/// Every message of the queue, received then sent back in the same order.
fn peek(p: &Probe, fd: BorrowedFd<'_>, attr: &MqAttr) -> Result<Vec<MqMessage>> {
    let mut got = Vec::new();
    let mut failed = None;
    for _ in 0..attr.curmsgs {
        match anon::mq_receive_now(fd, attr.msgsize as usize) {
            Ok(Some((data, priority))) => got.push(MqMessage { priority, data }),
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    for m in &got {
        anon::mq_send_now(fd, &m.data, m.priority)
            .map_err(Error::sys(p.pid.0, "putting a message back in its queue"))?;
    }
    match failed {
        Some(e) => Err(Error::Sys { pid: p.pid, what: "reading a message queue", source: e }),
        None => Ok(got),
    }
}

/// Queues made again at restore, by inode at dump time: the name each is open under, and whether
/// it was unlinked at dump. Dropping it (once every description is open, or on an error) unlinks
/// those, so a failed restore leaves no name behind either.
#[derive(Default)]
pub struct Mqueues {
    made: HashMap<u64, (String, bool)>,
}

impl Mqueues {
    /// Our fd for one description, making the queue on first use.
    pub fn open(&mut self, m: &Mqueue, flags: u32) -> Result<OwnedFd> {
        let io = |e: stasis_sys::SysError| Error::Io { path: m.name.clone().into(), source: e.source };
        let name = match self.made.get(&m.ino) {
            Some((n, _)) => n.clone(),
            None => {
                let name = make(m).map_err(io)?;
                self.made.insert(m.ino, (name.clone(), m.unlinked));
                name
            }
        };
        let keep = (libc::O_ACCMODE | libc::O_NONBLOCK) as u32;
        anon::mq_open(&name, (flags & keep) as i32, 0, None).map_err(io)
    }
}

impl Drop for Mqueues {
    fn drop(&mut self) {
        for (name, _) in self.made.values().filter(|(_, unlinked)| *unlinked) {
            if let Err(e) = anon::mq_unlink(name) {
                log::warn!("{name}: could not unlink the message queue made for an unlinked one: {e}");
            }
        }
    }
}

/// Make the queue with its attributes, owner, mode and messages; returns the name it has. A queue
/// that was unlinked gets its old name if that is free (so /proc shows the same name), else a
/// temporary one.
fn make(m: &Mqueue) -> Result<String, stasis_sys::SysError> {
    let attr = MqAttr { maxmsg: m.maxmsg, msgsize: m.msgsize, ..Default::default() };
    let create =
        |name: &str| anon::mq_open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, m.mode & 0o777, Some(attr));
    let (name, fd) = if m.unlinked {
        match create(&m.name) {
            Err(e) if e.errno() == libc::EEXIST => {
                let tmp = format!("/.stasis-mq-{}-{}", std::process::id(), m.ino);
                (tmp.clone(), create(&tmp)?)
            }
            made => (m.name.clone(), made?),
        }
    } else {
        match anon::mq_unlink(&m.name) {
            Err(e) if e.errno() != libc::ENOENT => return Err(e),
            _ => {}
        }
        (m.name.clone(), create(&m.name)?)
    };
    let file = std::fs::File::from(fd);
    let as_sys = |call| move |e: std::io::Error| stasis_sys::SysError { call, source: e };
    file.set_permissions(std::fs::Permissions::from_mode(m.mode & 0o7777)).map_err(as_sys("fchmod"))?;
    std::os::unix::fs::fchown(&file, Some(m.uid), Some(m.gid)).map_err(as_sys("fchown"))?;
    for msg in &m.messages {
        anon::mq_send_now(file.as_fd(), &msg.data, msg.priority)?;
    }
    Ok(name)
}

/// POSIX message queues, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "mqueue",
    dump: Some(super::kinds::Dumper { claims: is_mqueue, dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, _| Ok(Box::new(Mqueues::default()))),
    finish_restore: None,
};

impl super::kinds::Opener for Mqueues {
    fn open(&mut self, f: &stasis_image::model::FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Mqueue(m)) => Some(self.open(m, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &stasis_image::model::FileEntry) {}

    fn opened(
        self: Box<Self>,
        _: &[stasis_image::model::FileEntry],
        _: &HashMap<u32, OwnedFd>,
        _: &mut super::kinds::Later,
    ) -> Result<()> {
        // Dropped: the names of the queues that had none are removed.
        Ok(())
    }
}
