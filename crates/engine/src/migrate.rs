//! Live migration, both ends of its connection: `stasis migrate` sends each round of pre-copy (a
//! pre-dump's image directory) and then the final dump to `stasis serve`, which writes them as a
//! chain of parent images and restores the last one (see `docs/migration.md`).
//!
//! The page server's frames (`stasis_image::wire`) carry it: a [`Frame::Round`] starts round `k`,
//! each file of the round follows as open, data..., close (its size and the xxh3-64 of its bytes),
//! and a commit ends the round, answered by an ok. After the commit of the last round the receiver
//! restores the tree and answers [`Frame::Running`] with its root's pid, or an error.

use crate::error::{Error, Result};
use stasis_image::wire::{self, Frame, WireError, MAX_DATA};
use stasis_image::ImageKind;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3Default;

/// How long either side waits for the other to take a frame or answer one. The last answer comes
/// after a whole restore, hence generous.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

fn lost(peer: &str, what: &str) -> impl FnOnce(WireError) -> Error {
    let (peer, what) = (peer.to_owned(), what.to_owned());
    move |source| Error::Migration { peer, what, source }
}

fn refused(peer: &str, what: String) -> Error {
    Error::MigrationRefused { peer: peer.to_owned(), what }
}

/// Set up the connection (timeouts, hellos) as the page server's peers do, naming the peer as a
/// migration's.
fn greet(stream: &TcpStream, peer: &str, what: &str) -> Result<()> {
    crate::pageserver::greet(stream, peer, what).map_err(|e| match e {
        Error::PageServer { what, source, .. } => lost(peer, &what)(source),
        Error::PageServerRefused { what, .. } => refused(peer, what),
        other => other,
    })
}

/// What one round carried.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RoundSent {
    pub files: usize,
    pub bytes: u64,
}

/// The sending end (`stasis migrate`).
#[derive(Debug)]
pub struct Sender {
    stream: TcpStream,
    peer: String,
}

impl Sender {
    /// Connect to `stasis serve` at `to` (`HOST:PORT`, `[V6]:PORT`) and exchange hellos.
    pub fn connect(to: &str) -> Result<Sender> {
        let peer = to.to_owned();
        let stream = TcpStream::connect(to).map_err(|e| lost(&peer, "connecting")(e.into()))?;
        let _ = stream.set_nodelay(true);
        greet(&stream, &peer, "connecting")?;
        log::info!("migrate: connected to {peer}");
        Ok(Sender { stream, peer })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Send the image in `dir` as round `index` (its regular files; the `parent` link and sockets
    /// stay), and wait for the receiver's ok. The last round is answered by [`Sender::running`].
    /// With `page_source`, the page files stay: they are served from that port of ours (see
    /// [`Sender::page_listener`]).
    pub fn send_round(&self, index: u32, last: bool, dir: &Path, page_source: Option<u16>) -> Result<RoundSent> {
        let what = format!("sending round {index} ({})", dir.display());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
            let entry = entry.map_err(Error::io(dir))?;
            let is_file = entry.file_type().map_err(Error::io(entry.path()))?.is_file();
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                let page_file = matches!(ImageKind::parse_file_name(name), Some((ImageKind::Pages, _)));
                if !(page_file && page_source.is_some()) {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        let mut sent = RoundSent::default();
        let mut out = BufWriter::with_capacity(MAX_DATA + 64, &self.stream);
        let mut buf = vec![0u8; MAX_DATA];
        let mut send = || -> std::result::Result<(), Error> {
            if let Some(port) = page_source {
                wire::write_frame(&mut out, &Frame::PageSource { port }).map_err(|e| self.failed(&what, e.into()))?;
            }
            wire::write_frame(&mut out, &Frame::Round { index, last }).map_err(|e| self.failed(&what, e.into()))?;
            for name in &names {
                let path = dir.join(name);
                let file = File::open(&path).map_err(Error::io(&path))?;
                let size = file.metadata().map_err(Error::io(&path))?.len();
                let failed = |e: std::io::Error| self.failed(&what, e.into());
                wire::write_frame(&mut out, &Frame::Open { name: name.clone() }).map_err(failed)?;
                let mut hasher = Xxh3Default::new();
                let mut at = 0;
                while at < size {
                    let n = (size - at).min(MAX_DATA as u64) as usize;
                    file.read_exact_at(&mut buf[..n], at).map_err(Error::io(&path))?;
                    hasher.update(&buf[..n]);
                    wire::write_data(&mut out, at, &buf[..n]).map_err(|e| self.failed(&what, e.into()))?;
                    at += n as u64;
                }
                let close = Frame::Close { size, chunk_size: 0, checksums: vec![hasher.digest()] };
                wire::write_frame(&mut out, &close).map_err(|e| self.failed(&what, e.into()))?;
                sent.files += 1;
                sent.bytes += size;
            }
            wire::write_frame(&mut out, &Frame::Commit).map_err(|e| self.failed(&what, e.into()))?;
            out.flush().map_err(|e| self.failed(&what, e.into()))
        };
        send()?;
        drop(out);
        if !last {
            match wire::read_frame(&mut &self.stream) {
                Ok(Frame::Ok) => {}
                other => return Err(self.unexpected(&what, other)),
            }
        }
        Ok(sent)
    }

    /// A listener on our address of this connection (port 0: any), for [`Sender::send_round`]'s
    /// page source: give it to [`crate::pageserver::serve_pages`] with the image directory.
    /// Returns it with its port.
    pub fn page_listener(&self) -> Result<(TcpListener, u16)> {
        let ours = self.stream.local_addr().map_err(|e| lost(&self.peer, "our address")(e.into()))?;
        let what = "the page source's listening socket";
        let listener = TcpListener::bind((ours.ip(), 0)).map_err(Error::io(what))?;
        let port = listener.local_addr().map_err(Error::io(what))?.port();
        Ok((listener, port))
    }

    /// After the last round: the pid of the tree's root once it runs on the other side, with the
    /// other side's stages (none from a receiver that does not time them).
    pub fn running(&self) -> Result<(i32, Option<RemoteStages>)> {
        let what = "waiting for the restore on the other side";
        match wire::read_frame(&mut &self.stream) {
            Ok(Frame::Running { pid, stages_us }) => Ok((pid, RemoteStages::from_micros(&stages_us))),
            other => Err(self.unexpected(what, other)),
        }
    }

    fn unexpected(&self, what: &str, got: std::result::Result<Frame, WireError>) -> Error {
        match got {
            Ok(Frame::Error { message }) => refused(&self.peer, format!("{what}: {message}")),
            Ok(other) => refused(&self.peer, format!("{what}: unexpected {} frame", other.name())),
            Err(e) => lost(&self.peer, what)(e),
        }
    }

    /// A failed write: the receiver may have said why before it closed.
    fn failed(&self, what: &str, e: WireError) -> Error {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let got = wire::read_frame(&mut &self.stream);
        let _ = self.stream.set_read_timeout(Some(PEER_TIMEOUT));
        match got {
            Ok(Frame::Error { message }) => refused(&self.peer, format!("{what}: {message}")),
            _ => lost(&self.peer, what)(e),
        }
    }
}

/// How long the receiver's stages of the last round took: the round received (from its round frame
/// to its commit), then the restore's stages ([`crate::RestoreStages`]).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RemoteStages {
    pub receive: Duration,
    pub restore: crate::RestoreStages,
}

impl RemoteStages {
    fn micros(&self) -> Vec<u64> {
        let r = &self.restore;
        [self.receive, r.prepare, r.setup, r.tasks, r.finish]
            .iter()
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .collect()
    }

    fn from_micros(us: &[u64]) -> Option<RemoteStages> {
        let d = |i: usize| us.get(i).map(|&t| Duration::from_micros(t));
        let restore = crate::RestoreStages { prepare: d(1)?, setup: d(2)?, tasks: d(3)?, finish: d(4)? };
        Some(RemoteStages { receive: d(0)?, restore })
    }
}

/// What one migration brought to `stasis serve`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    pub peer: String,
    /// The rounds, each an image directory `DIR/K`; the last one is the one restored.
    pub rounds: u32,
    pub files: usize,
    pub bytes: u64,
    /// The last round's directory.
    pub image: PathBuf,
    /// Where the last round's pages are served (`migrate --lazy`): the sender's address and port.
    pub page_source: Option<(String, u16)>,
    /// From the last round's frame to its commit.
    pub last_round: Duration,
}

/// `stasis serve`: accept one migration on `listener` into `dir` (round `K` in `DIR/K`, with a
/// `parent` link to `../K-1`), then call `restore` on the last round's directory; its `Ok((pid,
/// stages))` is sent as [`Frame::Running`] with the time the last round took to arrive. `restore` gets the report so far. On any error the rounds
/// received are removed and the sender is told why.
pub fn receive(
    listener: &TcpListener,
    dir: &Path,
    restore: &mut dyn FnMut(&Received) -> Result<(i32, crate::RestoreStages)>,
) -> Result<(Received, i32)> {
    let (stream, peer) = listener.accept().map_err(Error::io("the listening socket of stasis serve"))?;
    let peer = peer.to_string();
    log::info!("serve: migration from {peer}");
    let _ = stream.set_nodelay(true);
    let mut made = Vec::new();
    let result = receive_rounds(&stream, dir, &peer, &mut made).and_then(|got| {
        log::info!("serve: {} rounds received from {peer}, restoring {}", got.rounds, got.image.display());
        if crate::fault::armed("serve-die-before-restore") {
            // For the test of a receiver lost mid-migration: the sender sees the connection drop.
            // (An exit, not a signal: serve may be the init of its PID namespace, which ignores them.)
            log::warn!("STASIS_FAULT: serve dying before the restore");
            std::process::exit(137);
        }
        let (pid, stages) = restore(&got)?;
        Ok((got, pid, stages))
    });
    match &result {
        Ok((got, pid, restore)) => {
            let stages_us = RemoteStages { receive: got.last_round, restore: *restore }.micros();
            let _ = wire::write_frame(&mut &stream, &Frame::Running { pid: *pid, stages_us });
        }
        Err(e) => {
            let _ = wire::write_frame(&mut &stream, &Frame::Error { message: format!("serve: {e}") });
            for d in made.iter().rev() {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    log::warn!("serve: {} could not be removed: {e}", d.display());
                }
            }
        }
    }
    result.map(|(got, pid, _)| (got, pid))
}

fn receive_rounds(stream: &TcpStream, dir: &Path, peer: &str, made: &mut Vec<PathBuf>) -> Result<Received> {
    greet(stream, peer, "accepting")?;
    let mut got = Received {
        peer: peer.to_owned(),
        rounds: 0,
        files: 0,
        bytes: 0,
        image: dir.to_owned(),
        page_source: None,
        last_round: Duration::ZERO,
    };
    loop {
        let mut frame = wire::read_frame(&mut &*stream).map_err(lost(peer, "receiving a round"))?;
        if let Frame::PageSource { port } = frame {
            let ip = stream.peer_addr().map_err(|e| lost(peer, "the sender's address")(e.into()))?.ip();
            got.page_source = Some((ip.to_string(), port));
            frame = wire::read_frame(&mut &*stream).map_err(lost(peer, "receiving a round"))?;
        }
        let (index, last) = match frame {
            Frame::Round { index, last } if index == got.rounds + 1 && (last || got.page_source.is_none()) => {
                (index, last)
            }
            Frame::Round { index, .. } => {
                return Err(refused(peer, format!("round {index} after round {}", got.rounds)));
            }
            Frame::Error { message } => return Err(refused(peer, format!("the sender gave up: {message}"))),
            other => return Err(refused(peer, format!("unexpected {} frame", other.name()))),
        };
        let began = std::time::Instant::now();
        let round = dir.join(index.to_string());
        std::fs::create_dir(&round).map_err(Error::io(&round))?;
        made.push(round.clone());
        if index > 1 {
            let link = round.join("parent");
            std::os::unix::fs::symlink(format!("../{}", index - 1), &link).map_err(Error::io(&link))?;
        }
        let (files, bytes) = receive_files(stream, &round, peer)?;
        log::info!("serve: round {index}: {files} files, {bytes} bytes");
        got.rounds = index;
        got.files += files;
        got.bytes += bytes;
        got.image = round;
        got.last_round = began.elapsed();
        if last {
            return Ok(got);
        }
        if crate::fault::armed("serve-die-after-round-1") {
            log::warn!("STASIS_FAULT: serve dying after round {index}");
            std::process::exit(137);
        }
        wire::write_frame(&mut &*stream, &Frame::Ok).map_err(|e| lost(peer, "answering")(e.into()))?;
    }
}

/// The files of one round, up to its commit, each checked against its size and checksum.
fn receive_files(stream: &TcpStream, round: &Path, peer: &str) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut open: Option<(String, File, u64, Xxh3Default)> = None;
    loop {
        match wire::read_frame(&mut &*stream).map_err(lost(peer, "receiving the images"))? {
            Frame::Open { name } if open.is_none() => {
                if ImageKind::parse_file_name(&name).is_none() {
                    return Err(refused(peer, format!("{name:?} is not the name of an image file")));
                }
                let path = round.join(&name);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(Error::io(&path))?;
                open = Some((name, file, 0, Xxh3Default::new()));
            }
            Frame::Data { offset, bytes: data } => {
                let Some((name, file, size, hasher)) = open.as_mut() else {
                    return Err(refused(peer, "data with no file open".into()));
                };
                if offset != *size {
                    return Err(refused(peer, format!("{name}: data at offset {offset}, expected {size}")));
                }
                file.write_all_at(&data, offset).map_err(Error::io(round.join(&*name)))?;
                hasher.update(&data);
                *size += data.len() as u64;
            }
            Frame::Close { size, checksums, .. } => {
                let Some((name, _, received, hasher)) = open.take() else {
                    return Err(refused(peer, "close with no file open".into()));
                };
                if size != received {
                    return Err(refused(peer, format!("{name}: {received} bytes received, {size} announced")));
                }
                if checksums != [hasher.digest()] {
                    return Err(refused(peer, format!("{name}: its bytes do not match their checksum")));
                }
                files += 1;
                bytes += size;
            }
            Frame::Commit if open.is_none() => return Ok((files, bytes)),
            Frame::Error { message } => return Err(refused(peer, format!("the sender gave up: {message}"))),
            other => return Err(refused(peer, format!("unexpected {} frame", other.name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_arrive_as_a_parent_chain_and_a_failed_restore_leaves_nothing() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (round, text) in [("1", "first"), ("2", "second")] {
            std::fs::create_dir(src.path().join(round)).unwrap();
            std::fs::write(src.path().join(round).join("inventory.img"), text.repeat(100_000)).unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap().to_string();
        let dir = dst.path().to_owned();
        let server = std::thread::spawn(move || {
            receive(&listener, &dir, &mut |got| {
                assert_eq!(std::fs::read_link(got.image.join("parent")).unwrap(), Path::new("../1"));
                Ok((42, crate::RestoreStages::default()))
            })
        });
        let sender = Sender::connect(&to).unwrap();
        assert_eq!(sender.send_round(1, false, &src.path().join("1"), None).unwrap().files, 1);
        sender.send_round(2, true, &src.path().join("2"), None).unwrap();
        let (pid, stages) = sender.running().unwrap();
        assert_eq!(pid, 42);
        assert!(stages.is_some());
        let (got, pid) = server.join().unwrap().unwrap();
        assert_eq!((got.rounds, pid), (2, 42));
        let back = std::fs::read_to_string(dst.path().join("2/inventory.img")).unwrap();
        assert_eq!(back, "second".repeat(100_000));

        let (dst, listener) = (tempfile::tempdir().unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
        let to = listener.local_addr().unwrap().to_string();
        let dir = dst.path().to_owned();
        let server = std::thread::spawn(move || {
            receive(&listener, &dir, &mut |_| Err(Error::Unsupported { pid: stasis_sys::Pid(7), what: "x".into() }))
        });
        let sender = Sender::connect(&to).unwrap();
        sender.send_round(1, true, &src.path().join("1"), None).unwrap();
        let err = sender.running().unwrap_err();
        assert!(err.to_string().contains("serve:"), "{err}");
        assert!(server.join().unwrap().is_err());
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }
}
