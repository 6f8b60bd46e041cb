//! The page server, both ends of a connection (protocol: [`stasis_image::wire`],
//! `docs/page-server.md`).
//!
//! [`receive`] is `stasis page-server`: it takes one dump's page files and keeps each nameless (an
//! `O_TMPFILE` file in the image directory) until the dump commits, so a dump that fails, a lost
//! connection or a killed server leave nothing in the directory. [`Connection`] is the dump's end:
//! it sends each finished page file, then commits just before the dump writes its inventory.

use crate::error::{Error, Result};
use stasis_image::wire::{self, Frame, WireError, MAX_DATA, WIRE_VERSION};
use stasis_image::{ImageKind, MAX_CHUNK_SIZE, PAGE_DATA_OFFSET, PAGE_SIZE};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// How long the dump waits for the page server to take a frame or answer one: a stopped server must
/// not keep the tree frozen for ever. Generous, since the server checksums a whole file before its
/// answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// With `STASIS_FAULT=page-server-stop-after-get`, the server stops once it served this much.
const FAULT_STOP_BYTES: u64 = 32 << 20;
/// How long a refusing server drains what the dump still sends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one page server run received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeReport {
    /// The dump's address.
    pub peer: String,
    /// The page files now in the directory.
    pub files: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
}

fn lost(peer: &str, what: &str) -> impl FnOnce(WireError) -> Error {
    let (peer, what) = (peer.to_owned(), what.to_owned());
    move |source| Error::PageServer { peer, what, source }
}

fn refused(peer: &str, what: String) -> Error {
    Error::PageServerRefused { peer: peer.to_owned(), what }
}

/// Accept one connection on `listener` and receive a dump's page files into `dir`.
pub fn serve(listener: &TcpListener, dir: &Path) -> Result<ServeReport> {
    let (stream, peer) = listener.accept().map_err(Error::io("the page server's listening socket"))?;
    let peer = peer.to_string();
    log::info!("page server: connection from {peer}");
    let result = receive(&stream, dir, &peer);
    if let Err(e) = &result {
        // Best effort: the dump learns why; its own error is about the connection otherwise. What
        // it still sends is read and dropped, so that it reads this before it sees the socket close.
        let _ = wire::write_frame(&mut &stream, &Frame::Error { message: format!("page server: {e}") });
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(DRAIN_TIMEOUT));
        let _ = std::io::copy(&mut &stream, &mut std::io::sink());
    }
    result
}

/// `stasis page-server --lazy-pages`: accept one connection on `listener` and answer its
/// [`Frame::Get`]s from the page files in `dir` (a lazy-pages daemon fetching the pages of a lazy
/// restore), until it closes.
pub fn serve_pages(listener: &TcpListener, dir: &Path) -> Result<ServeReport> {
    let (stream, peer) = listener.accept().map_err(Error::io("the page server's listening socket"))?;
    let peer = peer.to_string();
    log::info!("page server: serving pages to {peer}");
    let result = answer_gets(&stream, dir, &peer);
    if let Err(e) = &result {
        let _ = wire::write_frame(&mut &stream, &Frame::Error { message: format!("page server: {e}") });
    }
    result
}

fn answer_gets(stream: &TcpStream, dir: &Path, peer: &str) -> Result<ServeReport> {
    hello(stream, peer)?;
    let mut report = ServeReport { peer: peer.to_owned(), files: Vec::new(), bytes: 0 };
    let mut open: std::collections::HashMap<String, (File, u64)> = Default::default();
    let mut out = BufWriter::with_capacity(MAX_DATA + 64, stream);
    loop {
        let frame = match wire::read_frame(&mut &*stream) {
            Err(WireError::Closed) => return Ok(report),
            other => other.map_err(lost(peer, "serving pages"))?,
        };
        let Frame::Get { name, offset, len } = frame else {
            return Err(refused(peer, format!("unexpected {} frame", frame.name())));
        };
        if !open.contains_key(&name) {
            if !matches!(ImageKind::parse_file_name(&name), Some((ImageKind::Pages, Some(_)))) {
                return Err(refused(peer, format!("{name:?} is not the name of a page file")));
            }
            let file = File::open(dir.join(&name)).map_err(Error::io(dir.join(&name)))?;
            let size = file.metadata().map_err(Error::io(dir.join(&name)))?.len();
            report.files.push(name.clone());
            open.insert(name.clone(), (file, size));
        }
        let (file, size) = &open[&name];
        if len as usize > MAX_DATA || offset.checked_add(len.into()).is_none_or(|end| end > *size) {
            return Err(refused(peer, format!("{name}: {len} bytes at {offset} are not in its {size} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset).map_err(Error::io(dir.join(&name)))?;
        if crate::fault::armed("page-server-stop-after-get") && report.bytes >= FAULT_STOP_BYTES {
            // For the test of a page source lost mid-restore: it waits, stopped, for its SIGKILL.
            log::warn!("STASIS_FAULT: page server stopping itself");
            let _ = stasis_sys::process::kill(stasis_sys::Pid::this(), libc::SIGSTOP);
        }
        wire::write_data(&mut out, offset, &buf)
            .and_then(|()| out.flush())
            .map_err(|e| lost(peer, "answering")(e.into()))?;
        report.bytes += u64::from(len);
    }
}

/// A page file being received: nameless until the commit.
struct Incoming {
    name: String,
    file: File,
    size: u64,
}

/// The receiving side of one connection: hello, then files, then the commit.
fn receive(stream: &TcpStream, dir: &Path, peer: &str) -> Result<ServeReport> {
    hello(stream, peer)?;
    let mut done: Vec<Incoming> = Vec::new();
    let mut open: Option<Incoming> = None;
    loop {
        let frame = wire::read_frame(&mut &*stream).map_err(lost(peer, "receiving the pages"))?;
        match frame {
            Frame::Open { name } => {
                if let Some(o) = &open {
                    return Err(refused(peer, format!("{name} opened while {} is open", o.name)));
                }
                open = Some(open_incoming(dir, &name, &done, peer)?);
            }
            Frame::Data { offset, bytes } => {
                let o = open.as_mut().ok_or_else(|| refused(peer, "data with no file open".into()))?;
                take_data(o, offset, &bytes, peer)?;
            }
            Frame::Close { size, chunk_size, checksums } => {
                let o = open.take().ok_or_else(|| refused(peer, "close with no file open".into()))?;
                check_file(&o, size, chunk_size, &checksums, peer)?;
                log::info!("page server: {} received, {size} bytes", o.name);
                done.push(o);
                answer(stream, peer)?;
            }
            Frame::Commit if open.is_none() => {
                let report = commit(dir, done, peer)?;
                answer(stream, peer)?;
                return Ok(report);
            }
            Frame::Error { message } => return Err(refused(peer, format!("the dump gave up: {message}"))),
            other => return Err(refused(peer, format!("unexpected {} frame", other.name()))),
        }
    }
}

/// Exchange [`Frame::Hello`]s: both sides must speak [`WIRE_VERSION`].
/// Set up a connection of the wire protocol, on either side: read and write timeouts of
/// `PEER_TIMEOUT` (a failure to set them is named as `what`), then hellos.
pub(crate) fn greet(stream: &TcpStream, peer: &str, what: &str) -> Result<()> {
    let timeouts = stream.set_read_timeout(Some(PEER_TIMEOUT)).and(stream.set_write_timeout(Some(PEER_TIMEOUT)));
    timeouts.map_err(|e| lost(peer, what)(e.into()))?;
    hello(stream, peer)
}

fn hello(stream: &TcpStream, peer: &str) -> Result<()> {
    wire::write_frame(&mut &*stream, &Frame::Hello { version: WIRE_VERSION })
        .map_err(|e| lost(peer, "greeting")(e.into()))?;
    match wire::read_frame(&mut &*stream).map_err(lost(peer, "greeting"))? {
        Frame::Hello { version: WIRE_VERSION } => Ok(()),
        Frame::Hello { version } => Err(refused(peer, format!("protocol version {version}, not {WIRE_VERSION}"))),
        Frame::Error { message } => Err(refused(peer, message)),
        other => Err(refused(peer, format!("{} frame instead of hello", other.name()))),
    }
}

fn answer(stream: &TcpStream, peer: &str) -> Result<()> {
    wire::write_frame(&mut &*stream, &Frame::Ok).map_err(|e| lost(peer, "answering")(e.into()))
}

/// A new nameless file in `dir` for the page file `name` (`pages-PID.img`, not received yet).
fn open_incoming(dir: &Path, name: &str, done: &[Incoming], peer: &str) -> Result<Incoming> {
    if !matches!(ImageKind::parse_file_name(name), Some((ImageKind::Pages, Some(_)))) {
        return Err(refused(peer, format!("{name:?} is not the name of a page file")));
    }
    if done.iter().any(|d| d.name == name) {
        return Err(refused(peer, format!("{name} sent twice")));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .map_err(Error::io(dir.join(name)))?;
    Ok(Incoming { name: name.to_owned(), file, size: 0 })
}

fn take_data(o: &mut Incoming, offset: u64, bytes: &[u8], peer: &str) -> Result<()> {
    if offset != o.size {
        return Err(refused(peer, format!("{}: data at offset {offset}, expected {}", o.name, o.size)));
    }
    o.file.write_all_at(bytes, offset).map_err(Error::io(&o.name))?;
    o.size += bytes.len() as u64;
    if crate::fault::armed("page-server-stop-mid-file") {
        // For the test of a server killed mid-dump: it waits, stopped, for its SIGKILL.
        log::warn!("STASIS_FAULT: page server stopping itself in {}", o.name);
        let _ = stasis_sys::process::kill(stasis_sys::Pid::this(), libc::SIGSTOP);
    }
    Ok(())
}

/// The received file has the announced size, and its page data the announced chunk checksums.
fn check_file(o: &Incoming, size: u64, chunk_size: u64, checksums: &[u64], peer: &str) -> Result<()> {
    let name = &o.name;
    if size != o.size || size < PAGE_DATA_OFFSET {
        return Err(refused(peer, format!("{name}: {} bytes received, {size} announced", o.size)));
    }
    let data_len = size - PAGE_DATA_OFFSET;
    let chunk_ok = chunk_size != 0 && chunk_size.is_multiple_of(PAGE_SIZE) && chunk_size <= MAX_CHUNK_SIZE;
    if data_len != 0 && !chunk_ok {
        return Err(refused(peer, format!("{name}: bad chunk size {chunk_size}")));
    }
    let computed = stasis_image::hash_chunks(&o.file, data_len, chunk_size).map_err(Error::io(name))?;
    if let Some(chunk) = computed.iter().zip(checksums).position(|(a, b)| a != b) {
        return Err(refused(peer, format!("{name}: chunk {chunk} does not match its checksum")));
    }
    if computed.len() != checksums.len() {
        return Err(refused(peer, format!("{name}: {} checksums for {} chunks", checksums.len(), computed.len())));
    }
    Ok(())
}

/// Give every received file its name in `dir`, replacing an older file of that name.
fn commit(dir: &Path, done: Vec<Incoming>, peer: &str) -> Result<ServeReport> {
    let mut report = ServeReport { peer: peer.to_owned(), files: Vec::new(), bytes: 0 };
    for o in done {
        let dest = dir.join(&o.name);
        match std::fs::remove_file(&dest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&dest)(e)),
            _ => {}
        }
        stasis_sys::fd::link_tmpfile(o.file.as_fd(), &dest)
            .map_err(|e| Error::Io { path: dest.clone(), source: e.source })?;
        report.files.push(o.name);
        report.bytes += o.size;
    }
    Ok(report)
}

/// The dump's connection to a page server.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: String,
}

impl Connection {
    /// Connect to the page server at `address`:`port` and exchange hellos.
    pub fn connect(address: &str, port: u16) -> Result<Connection> {
        let peer = format!("{address}:{port}");
        let stream = TcpStream::connect((address, port)).map_err(|e| lost(&peer, "connecting")(e.into()))?;
        Self::start(stream, peer)
    }

    /// Use `fd`, a stream socket the caller connected to the page server (`--ps-socket`), and
    /// exchange hellos.
    pub fn over(fd: &std::os::fd::OwnedFd) -> Result<Connection> {
        let peer = format!("on --ps-socket {}", std::os::fd::AsRawFd::as_raw_fd(fd));
        let own = fd.try_clone().map_err(|e| lost(&peer, "taking the socket")(e.into()))?;
        Self::start(TcpStream::from(own), peer)
    }

    /// No Nagle (a TCP socket only), then timeouts and hellos on `stream`.
    fn start(stream: TcpStream, peer: String) -> Result<Connection> {
        let _ = stream.set_nodelay(true);
        greet(&stream, &peer, "connecting")?;
        log::info!("connected to the page server {peer}");
        Ok(Connection { stream, peer })
    }

    /// Where it is connected to.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Send the page file `name`: the `size` bytes of `file`, whose page data has `checksums` in
    /// chunks of `chunk_size`; returns once the server has checked it.
    pub fn send_file(&self, name: &str, file: &File, size: u64, chunk_size: u64, checksums: &[u64]) -> Result<()> {
        let what = format!("sending {name}");
        let sent = || -> std::io::Result<()> {
            let mut out = BufWriter::with_capacity(MAX_DATA + 64, &self.stream);
            wire::write_frame(&mut out, &Frame::Open { name: name.to_owned() })?;
            let mut buf = vec![0u8; MAX_DATA.min(size as usize)];
            let mut at = 0;
            while at < size {
                let n = (size - at).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..n], at)?;
                wire::write_data(&mut out, at, &buf[..n])?;
                at += n as u64;
            }
            let close = Frame::Close { size, chunk_size, checksums: checksums.to_vec() };
            wire::write_frame(&mut out, &close)?;
            out.flush()
        };
        sent().map_err(|e| self.failed(&what, e.into()))?;
        self.expect_ok(&what)
    }

    /// `len` bytes of the page file `name` at `offset`, from a page server serving pages.
    pub fn fetch(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let what = format!("fetching {len} bytes of {name} at {offset}");
        let pieces: Vec<(u64, u32)> = (0..len.div_ceil(MAX_DATA as u64))
            .map(|i| (offset + i * MAX_DATA as u64, (len - i * MAX_DATA as u64).min(MAX_DATA as u64) as u32))
            .collect();
        let asked = || -> std::io::Result<()> {
            let mut out = BufWriter::new(&self.stream);
            for &(offset, len) in &pieces {
                wire::write_frame(&mut out, &Frame::Get { name: name.to_owned(), offset, len })?;
            }
            out.flush()
        };
        asked().map_err(|e| self.failed(&what, e.into()))?;
        let mut bytes = Vec::with_capacity(len as usize);
        for &(at, n) in &pieces {
            match wire::read_frame(&mut &self.stream) {
                Ok(Frame::Data { offset, bytes: got }) if offset == at && got.len() == n as usize => bytes.extend(got),
                Ok(Frame::Error { message }) => return Err(refused(&self.peer, format!("{what}: {message}"))),
                Ok(other) => return Err(refused(&self.peer, format!("{what}: unexpected {} frame", other.name()))),
                Err(e) => return Err(lost(&self.peer, &what)(e)),
            }
        }
        Ok(bytes)
    }

    /// Every page file is sent: the server names them in its directory.
    pub fn commit(&self) -> Result<()> {
        wire::write_frame(&mut &self.stream, &Frame::Commit).map_err(|e| self.failed("committing", e.into()))?;
        self.expect_ok("committing")
    }

    fn expect_ok(&self, what: &str) -> Result<()> {
        match wire::read_frame(&mut &self.stream) {
            Ok(Frame::Ok) => Ok(()),
            Ok(Frame::Error { message }) => Err(refused(&self.peer, format!("{what}: {message}"))),
            Ok(other) => Err(refused(&self.peer, format!("{what}: unexpected {} frame", other.name()))),
            Err(e) => Err(lost(&self.peer, what)(e)),
        }
    }

    /// A failed write: the server may have said why before it closed.
    fn failed(&self, what: &str, e: WireError) -> Error {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
        match wire::read_frame(&mut &self.stream) {
            Ok(Frame::Error { message }) => refused(&self.peer, format!("{what}: {message}")),
            _ => lost(&self.peer, what)(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page file of `pages` pages of data, and its chunk checksums in chunks of 8 KiB.
    fn page_file(dir: &Path, pages: u64) -> (File, u64, Vec<u64>) {
        let path = dir.join("source");
        let bytes: Vec<u8> = (0..PAGE_DATA_OFFSET + pages * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let sums = stasis_image::hash_chunks(&file, pages * PAGE_SIZE, 8192).unwrap();
        (file, bytes.len() as u64, sums)
    }

    fn server(dir: &Path) -> (u16, std::thread::JoinHandle<Result<ServeReport>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = dir.to_owned();
        (port, std::thread::spawn(move || serve(&listener, &dir)))
    }

    #[test]
    fn a_committed_file_is_named_and_whole() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (file, size, sums) = page_file(src.path(), 300);
        let (port, handle) = server(dst.path());
        let conn = Connection::connect("127.0.0.1", port).unwrap();
        conn.send_file("pages-42.img", &file, size, 8192, &sums).unwrap();
        conn.commit().unwrap();
        let report = handle.join().unwrap().unwrap();
        assert_eq!(report.files, ["pages-42.img"]);
        let got = std::fs::read(dst.path().join("pages-42.img")).unwrap();
        assert_eq!(got, std::fs::read(src.path().join("source")).unwrap());
    }

    #[test]
    fn nothing_stays_without_a_commit() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (file, size, sums) = page_file(src.path(), 3);
        let (port, handle) = server(dst.path());
        let conn = Connection::connect("127.0.0.1", port).unwrap();
        conn.send_file("pages-7.img", &file, size, 8192, &sums).unwrap();
        drop(conn);
        let err = handle.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("receiving the pages"), "{err}");
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_wrong_checksum_and_a_bad_name_are_refused_by_name() {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (file, size, mut sums) = page_file(src.path(), 3);
        sums[1] ^= 1;
        let (port, handle) = server(dst.path());
        let conn = Connection::connect("127.0.0.1", port).unwrap();
        let err = conn.send_file("pages-7.img", &file, size, 8192, &sums).unwrap_err();
        assert!(err.to_string().contains("pages-7.img: chunk 1 does not match its checksum"), "{err}");
        drop(conn);
        assert!(handle.join().unwrap().is_err());
        let (port, handle) = server(dst.path());
        let conn = Connection::connect("127.0.0.1", port).unwrap();
        let err = conn.send_file("../core-7.img", &file, size, 8192, &sums).unwrap_err();
        assert!(err.to_string().contains("is not the name of a page file"), "{err}");
        drop(conn);
        assert!(handle.join().unwrap().is_err());
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }
}
