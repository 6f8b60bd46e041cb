//! The lazy-pages daemon (`stasis lazy-pages -D DIR`): it serves the pages of a lazily restored
//! tree (see [`crate::mem::lazy`] for the restoring side) from the image's page files.
//!
//! It listens on `DIR/lazy-pages.socket` for one restore, which hands it the userfaultfd of each
//! lazy process. From then on it answers every fault with the page's saved bytes (`UFFDIO_COPY`,
//! a few pages around the fault) or, for a page that was never saved, a zero page; between faults
//! it copies the remaining runs in the background. It follows the tree: a fork hands it the
//! child's userfaultfd with the parent's remaining pages, `mremap` moves them, `munmap` and
//! `madvise(MADV_DONTNEED)` drop them, an exited process is dropped. Each chunk of a page file is
//! checked against its checksum before its first page is served. Once the restore is done and
//! every saved page is in, it exits (the areas then fault as ordinary memory).
//!
//! If the page source fails (a chunk that does not match, a read error), the daemon kills the
//! lazily restored processes and their descendants with SIGKILL: a wrong page is never served, and
//! no process is left waiting for a page that will not come. If the daemon itself dies, its
//! keeper ([`keep`], a second process it starts) does the same: the keeper holds a copy of every
//! userfaultfd, so the faults of the tree stay pending (the kernel would otherwise turn them into
//! zero pages once the last copy closes) until it has killed the tree.

use crate::error::{Error, Result};
use crate::mem::lazy::{self, Run, MSG_DONE, MSG_UFFD};
use crate::pageserver::Connection;
use stasis_image::model::{MmImage, PageMap};
use stasis_image::{ImageDir, ImageKind, PAGE_DATA_OFFSET};
use stasis_sys::uffd_missing::{self as uffd, Msg};
use stasis_sys::Pid;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

const PAGE: u64 = 4096;
/// Pages copied for one fault, from the faulting page on (within its run).
const FAULT_PAGES: u64 = 16;
/// Bytes copied by one background step.
const BACKGROUND_BYTES: u64 = 2 << 20;

/// What one daemon run served.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LazyReport {
    /// Userfaultfds served (restored processes and their forks).
    pub processes: usize,
    /// Faults answered.
    pub faults: u64,
    /// Bytes copied in, on demand and in the background.
    pub bytes: u64,
}

/// A page file, its chunks checked on first use. With a page server, the local file is a cache
/// of it: a chunk is fetched before it is first checked.
struct Source {
    name: String,
    file: File,
    map: PageMap,
    checked: RefCell<Vec<bool>>,
    remote: Option<Rc<Connection>>,
}

impl Source {
    fn open(dir: &ImageDir, pid: i32, map: PageMap, remote: Option<Rc<Connection>>) -> Result<Source> {
        crate::mem::dedup::check_whole(pid, &map)?;
        let name = ImageKind::Pages.file_name(Some(pid));
        if stasis_image::compress::is_compressed(&map) {
            if remote.is_some() {
                let what = "a compressed page file fetched from a page server (--compress with lazy pages from a page server is not built)";
                return Err(Error::Incompatible { file: name, what: what.into() });
            }
            // Decompressed (and checked) whole, once: served from memory.
            let file = crate::mem::pages::open_raw(dir, pid, &map, None)?;
            let chunks = map.chunk_checksums.len();
            return Ok(Source { name, file, map, checked: RefCell::new(vec![true; chunks]), remote });
        }
        dir.open_pages(pid, &map)?;
        let path = dir.path().join(&name);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(Error::io(&path))?;
        let chunks = map.chunk_checksums.len();
        Ok(Source { name, file, map, checked: RefCell::new(vec![false; chunks]), remote })
    }

    /// A page file being fetched, before the image is opened.
    fn open_unlisted(path: &Path, name: &str, map: PageMap, conn: &Rc<Connection>) -> Result<Source> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(Error::io(path))?;
        let chunks = map.chunk_checksums.len();
        let checked = RefCell::new(vec![false; chunks]);
        Ok(Source { name: name.to_owned(), file, map, checked, remote: Some(conn.clone()) })
    }

    /// Fetch chunk `c` from the page server into the local file.
    fn fetch(&self, conn: &Connection, c: u64) -> Result<()> {
        let chunk = self.map.chunk_size.max(1);
        let data_len = self.map.total_pages * PAGE;
        let (start, end) = (c * chunk, ((c + 1) * chunk).min(data_len));
        let bytes = conn.fetch(&self.name, PAGE_DATA_OFFSET + start, end.saturating_sub(start))?;
        self.file.write_all_at(&bytes, PAGE_DATA_OFFSET + start).map_err(Error::io(&self.name))
    }

    /// `len` bytes of the page file at `offset`, every chunk they touch checked.
    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.ensure(offset, len)?;
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(Error::io(&self.name))?;
        Ok(buf)
    }

    /// Every chunk that `len` bytes at `offset` touch is here (fetched) and checked.
    fn ensure(&self, offset: u64, len: u64) -> Result<()> {
        let data = offset - PAGE_DATA_OFFSET;
        let chunk = self.map.chunk_size.max(1);
        let data_len = self.map.total_pages * PAGE;
        for c in data / chunk..(data + len).div_ceil(chunk) {
            if self.checked.borrow().get(c as usize) == Some(&true) {
                continue;
            }
            if let Some(conn) = &self.remote {
                self.fetch(conn, c)?;
            }
            let sum = stasis_image::hash_chunk(&self.file, data_len, chunk, c).map_err(Error::io(&self.name))?;
            if self.map.chunk_checksums.get(c as usize) != Some(&sum) {
                return Err(Error::Incompatible {
                    file: self.name.clone(),
                    what: format!("chunk {c} does not match its checksum: its pages are not served"),
                });
            }
            self.checked.borrow_mut()[c as usize] = true;
        }
        Ok(())
    }
}

/// The pages one userfaultfd still waits for: runs by address.
#[derive(Clone, Default)]
struct Remaining(BTreeMap<u64, (u64, u64)>);

impl Remaining {
    fn from_runs(runs: &[Run]) -> Remaining {
        Remaining(runs.iter().map(|r| (r.vaddr, (r.pages, r.offset))).collect())
    }

    /// Take up to `max` pages from `addr` on, if `addr` is in a run: (address, pages, offset).
    fn take_at(&mut self, addr: u64, max: u64) -> Option<(u64, u64, u64)> {
        let (&start, &(pages, offset)) = self.0.range(..=addr).next_back()?;
        if addr >= start + pages * PAGE {
            return None;
        }
        let skip = (addr - start) / PAGE;
        let n = (pages - skip).min(max);
        self.cut(addr, addr + n * PAGE);
        Some((addr, n, offset + skip * PAGE))
    }

    /// The first `max_bytes` of the first run.
    fn take_first(&mut self, max_bytes: u64) -> Option<(u64, u64, u64)> {
        let (&start, _) = self.0.iter().next()?;
        self.take_at(start, max_bytes / PAGE)
    }

    /// Forget `[start, end)`, splitting the runs it cuts.
    fn cut(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, (u64, u64))> =
            self.0.range(..end).rev().take_while(|(&s, &(p, _))| s + p * PAGE > start).map(|(&s, &v)| (s, v)).collect();
        for (s, (p, off)) in hit {
            self.0.remove(&s);
            let e = s + p * PAGE;
            if s < start {
                self.0.insert(s, ((start - s) / PAGE, off));
            }
            if end < e {
                self.0.insert(end, ((e - end) / PAGE, off + (end - s)));
            }
        }
    }

    /// `[from, from+len)` moved to `to`.
    fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved: Vec<(u64, (u64, u64))> = {
            let mut inner = self.clone();
            inner.cut(0, from);
            inner.cut(from + len, u64::MAX);
            inner.0.into_iter().collect()
        };
        self.cut(from, from + len);
        for (s, v) in moved {
            self.0.insert(s - from + to, v);
        }
    }

    /// `pages` pages at `addr` (from `offset` of the page file) are wanted again.
    fn put(&mut self, addr: u64, pages: u64, offset: u64) {
        if pages > 0 {
            self.0.insert(addr, (pages, offset));
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One userfaultfd being served.
struct Served {
    /// The restored process (0 for a fork of one: its pid is not told).
    pid: i32,
    uffd: OwnedFd,
    /// The saved pages not copied in yet.
    left: Remaining,
    /// The saved pages as the process's own events left them (copies aside): what a fork of it
    /// may still lack. A page of it that the fork has already is skipped by the copy (`EEXIST`).
    saved: Remaining,
    /// Faults whose answer the kernel deferred (`EAGAIN`, an event was pending): answered again.
    retry: Vec<u64>,
    /// A pidfd of the restored process, for killing it if its pages cannot come.
    pidfd: Option<OwnedFd>,
    source: Rc<Source>,
}

/// The daemon's state.
struct Daemon<'a> {
    dir: &'a ImageDir,
    served: Vec<Served>,
    report: LazyReport,
    /// The restore said every lazy process is handed over.
    done: bool,
    /// The keeper's end of our socket pair.
    keeper: Option<OwnedFd>,
    /// The page server the pages come from (see [`prepare_remote`]).
    remote: Option<Rc<Connection>>,
}

/// Serve the restore that connects to `listener` (a bound, listening `SOCK_SEQPACKET` socket),
/// from the image in `dir`, until every page is in.
///
/// `keeper` is our end of a socket pair whose other end a [`keep`] process reads.
/// With `remote` (after [`prepare_remote`]), the lazy pages come from that page server.
pub fn serve(
    listener: BorrowedFd<'_>,
    dir: &Path,
    keeper: Option<OwnedFd>,
    remote: Option<Rc<Connection>>,
) -> Result<LazyReport> {
    let image = ImageDir::open(dir)?;
    let sock = stasis_sys::socket::accept(listener).map_err(Error::sys(0, "accepting the restore"))?;
    log::info!("lazy-pages: the restore connected");
    let report = LazyReport::default();
    let mut d = Daemon { dir: &image, served: Vec::new(), report, done: false, keeper, remote };
    let result = d.run(sock.as_fd());
    match &result {
        Err(_) => d.kill_all(),
        Ok(()) => d.tell_keeper(0, MSG_DONE, &[]),
    }
    result.map(|()| d.report)
}

/// Before a lazy restore whose pages are on a page server (`lazy-pages --page-server`): make each
/// process's page file in `dir` (which holds the other images) at its full size, and fetch what the
/// restore reads itself: the header pages, every page of a process restored at once, the runs
/// outside the lazy areas of the others; each chunk checked. Returns the files made, which the
/// caller removes when the daemon is done (they are a cache, with holes where pages were never
/// fetched). On error nothing is left.
pub fn prepare_remote(dir: &Path, conn: &Rc<Connection>) -> Result<Vec<std::path::PathBuf>> {
    let mut made = Vec::new();
    let result = fetch_eager(dir, conn, &mut made);
    if result.is_err() {
        made.iter().for_each(|p| drop(std::fs::remove_file(p)));
    }
    result.map(|()| made)
}

fn fetch_eager(dir: &Path, conn: &Rc<Connection>, made: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let tree: stasis_image::model::PsTree = read_raw(dir, ImageKind::PsTree, None)?;
    let procs = lazy::with_memory(&tree.processes);
    for p in &procs {
        if p.pid <= 0 {
            return Err(Error::Incompatible { file: "pstree.img".into(), what: format!("pid {}", p.pid) });
        }
        let (mm, map): (MmImage, PageMap) =
            (read_raw(dir, ImageKind::Mm, Some(p.pid))?, read_raw(dir, ImageKind::PageMap, Some(p.pid))?);
        stasis_image::validate_pagemap(&ImageKind::PageMap.file_name(Some(p.pid)), &map)?;
        let name = ImageKind::Pages.file_name(Some(p.pid));
        let path = dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(&path))?;
        made.push(path.clone());
        file.set_len(PAGE_DATA_OFFSET + map.total_pages * PAGE).map_err(Error::io(&path))?;
        let header = conn.fetch(&name, 0, PAGE_DATA_OFFSET)?;
        file.write_all_at(&header, 0).map_err(Error::io(&path))?;
        let runs = match lazy::lazily_restored(p, &procs, &mm, &map) {
            true => lazy::split(&map, &lazy::lazy_areas(&mm)).0,
            false => lazy::split(&map, &[]).0,
        };
        drop(file);
        let source = Source::open_unlisted(&path, &name, map, conn)?;
        for r in runs {
            source.ensure(r.offset, r.pages * PAGE)?;
        }
    }
    Ok(())
}

/// One record file of the image, read before the image can be opened (its page files are not
/// there yet); [`ImageDir::open`] checks it against the inventory afterwards.
fn read_raw<M: prost::Message + Default>(dir: &Path, kind: ImageKind, pid: Option<i32>) -> Result<M> {
    let name = kind.file_name(pid);
    let path = dir.join(&name);
    let meta = std::fs::metadata(&path).map_err(Error::io(&path))?;
    if meta.len() > stasis_image::MAX_RECORD_FILE_SIZE {
        return Err(Error::Incompatible { file: name, what: "too large".into() });
    }
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    let mut records: Vec<M> = stasis_image::decode_records(&name, kind, &bytes)?;
    match (records.pop(), records.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => Err(Error::Incompatible { file: name, what: "not exactly one record".into() }),
    }
}

/// A socket pair for the daemon (first) and its keeper (second, the keeper's stdin).
pub fn keeper_pair() -> Result<(OwnedFd, OwnedFd)> {
    stasis_sys::socket::unix_socketpair(libc::SOCK_SEQPACKET).map_err(Error::sys(0, "making the keeper's socket"))
}

/// The keeper: hold the userfaultfds the daemon sends on `sock`, with their pids, until the
/// daemon says it is done (then let them go) or ends without saying so (then kill those
/// processes and their descendants).
pub fn keep(sock: BorrowedFd<'_>) -> Result<()> {
    // Each process by pidfd, opened while it is alive: a later process with its pid is never hit.
    let mut held: Vec<(i32, Option<OwnedFd>, OwnedFd)> = Vec::new();
    loop {
        let mut msg = [0u8; 8];
        let (n, mut fds) = stasis_sys::socket::recv_with_fds(sock, &mut msg).map_err(Error::sys(0, "keeper"))?;
        if n == 0 {
            log::warn!("lazy-pages keeper: the daemon is gone before every page was in");
            held.iter().for_each(|(pid, pidfd, _)| kill_tree(*pid, pidfd.as_ref()));
            return Ok(());
        }
        let pid = i32::from_le_bytes(msg[..4].try_into().expect("4 bytes"));
        match (u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes")), fds.pop()) {
            (MSG_DONE, _) => return Ok(()),
            (_, Some(fd)) => held.push((pid, open_pidfd(pid), fd)),
            _ => {}
        }
    }
}

fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    (pid > 0).then(|| stasis_sys::fd::pidfd_open(Pid(pid)).ok()).flatten()
}

/// SIGKILL the process `pid` (if `pidfd` says it is still the one) and its descendants.
fn kill_tree(pid: i32, pidfd: Option<&OwnedFd>) {
    let Some(pidfd) = pidfd else { return };
    if stasis_sys::process::pidfd_send_signal(pidfd.as_fd(), 0).is_err() {
        return;
    }
    let children = crate::proc::children(&crate::proc::ProcRoot::system(), pid).unwrap_or_default();
    let children: Vec<(i32, Option<OwnedFd>)> = children.into_iter().map(|c| (c, open_pidfd(c))).collect();
    log::warn!("lazy-pages: killing pid {pid}: its pages cannot be served");
    let _ = stasis_sys::process::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    for (c, fd) in &children {
        kill_tree(*c, fd.as_ref());
    }
}

/// A listening `SOCK_SEQPACKET` socket at `path` for the restore (a stale socket there is
/// replaced).
pub fn listen(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let failed = |e: stasis_sys::SysError| Error::Io { path: path.to_owned(), source: e.source };
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(Error::io(path))?;
        }
        Ok(_) => {
            let e = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a socket");
            return Err(Error::io(path)(e));
        }
        Err(_) => {}
    }
    let sock = stasis_sys::socket::unix_socket(libc::SOCK_SEQPACKET).map_err(failed)?;
    stasis_sys::socket::bind(sock.as_fd(), path.as_os_str().as_bytes()).map_err(failed)?;
    stasis_sys::socket::listen(sock.as_fd(), 1).map_err(failed)?;
    Ok(sock)
}

impl Daemon<'_> {
    fn run(&mut self, sock: BorrowedFd<'_>) -> Result<()> {
        let mut restore_open = true;
        loop {
            let done = self.done;
            self.served.retain(|s| !(s.left.is_empty() && s.retry.is_empty() && done));
            if self.done && self.served.is_empty() {
                return Ok(());
            }
            let busy = self.served.iter().any(|s| !s.left.is_empty());
            let mut fds: Vec<BorrowedFd<'_>> = self.served.iter().map(|s| s.uffd.as_fd()).collect();
            if restore_open {
                fds.push(sock);
            }
            let ready = uffd::poll_in(&fds, if busy { 0 } else { 1000 }).map_err(Error::sys(0, "poll"))?;
            drop(fds);
            if restore_open && ready.last() == Some(&true) {
                restore_open = self.restore_message(sock)?;
            }
            for i in 0..self.served.len() {
                if ready.get(i) == Some(&true) {
                    self.events(i)?;
                }
            }
            for i in 0..self.served.len() {
                for page in std::mem::take(&mut self.served[i].retry) {
                    self.fault(i, page)?;
                }
            }
            self.background()?;
        }
    }

    /// One message of the restore; false once it closed its end.
    fn restore_message(&mut self, sock: BorrowedFd<'_>) -> Result<bool> {
        let mut msg = [0u8; 8];
        let (n, mut fds) =
            stasis_sys::socket::recv_with_fds(sock, &mut msg).map_err(Error::sys(0, "reading the restore's socket"))?;
        if n == 0 {
            if !self.done {
                return Err(Error::Failed { pid: Pid(0), what: "the restore ended before it finished".into() });
            }
            return Ok(false);
        }
        let pid = i32::from_le_bytes(msg[..4].try_into().expect("4 bytes"));
        let kind = u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes"));
        let answer = match (kind, fds.pop()) {
            (MSG_DONE, _) => {
                self.done = true;
                Ok(())
            }
            (MSG_UFFD, Some(fd)) if n == 8 => self.adopt(pid, fd),
            _ => Err(Error::Failed {
                pid: Pid(pid),
                what: format!("bad message from the restore ({n} bytes, kind {kind})"),
            }),
        };
        let reply = match &answer {
            Ok(()) => vec![0u8],
            Err(e) => format!("lazy-pages: {e}").into_bytes(),
        };
        let _ = stasis_sys::socket::send(sock, &reply, &[], &[], None);
        answer.map(|()| true)
    }

    /// Serve `uffd` of restored process `pid` from its page file.
    fn adopt(&mut self, pid: i32, uffd: OwnedFd) -> Result<()> {
        let mm: MmImage = self.dir.read_one(ImageKind::Mm, Some(pid))?;
        let map: PageMap = self.dir.read_one(ImageKind::PageMap, Some(pid))?;
        let (_, runs) = lazy::split(&map, &lazy::lazy_areas(&mm));
        let source = Rc::new(Source::open(self.dir, pid, map, self.remote.clone())?);
        log::info!("lazy-pages: serving pid {pid}, {} runs", runs.len());
        self.tell_keeper(pid, MSG_UFFD, &[uffd.as_fd()]);
        let left = Remaining::from_runs(&runs);
        let pidfd = open_pidfd(pid);
        self.served.push(Served { pid, uffd, saved: left.clone(), left, retry: Vec::new(), pidfd, source });
        self.report.processes += 1;
        Ok(())
    }

    /// Every message waiting on userfaultfd `i`.
    fn events(&mut self, i: usize) -> Result<()> {
        loop {
            let msg = match uffd::read_msg(self.served[i].uffd.as_fd()) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) if e.errno() == libc::EBADF => return Ok(()),
                Err(e) => return Err(Error::sys(self.served[i].pid, "reading its userfaultfd")(e)),
            };
            match msg {
                Msg::PageFault { address } => self.fault(i, address & !(PAGE - 1))?,
                Msg::Fork { ufd } => {
                    let s = &self.served[i];
                    let (left, saved) = (s.saved.clone(), s.saved.clone());
                    let source = s.source.clone();
                    let child = Served { pid: 0, uffd: ufd, left, saved, retry: Vec::new(), pidfd: None, source };
                    log::info!("lazy-pages: pid {} forked; serving the child too", s.pid);
                    self.tell_keeper(0, MSG_UFFD, &[child.uffd.as_fd()]);
                    self.served.push(child);
                    self.report.processes += 1;
                }
                Msg::Remap { from, to, len } => {
                    self.served[i].left.remap(from, to, len);
                    self.served[i].saved.remap(from, to, len);
                }
                Msg::Remove { start, end } | Msg::Unmap { start, end } => {
                    self.served[i].left.cut(start, end);
                    self.served[i].saved.cut(start, end);
                }
                Msg::Other(kind) => log::warn!("lazy-pages: userfaultfd event {kind:#x} ignored"),
            }
        }
    }

    /// Answer a fault at `page`: its run's pages from there on, or a zero page.
    fn fault(&mut self, i: usize, page: u64) -> Result<()> {
        self.report.faults += 1;
        let s = &mut self.served[i];
        match s.left.take_at(page, FAULT_PAGES) {
            Some(piece) => {
                if !self.copy(i, piece)? {
                    self.served[i].retry.push(page);
                }
                Ok(())
            }
            None => {
                match uffd::zeropage(s.uffd.as_fd(), page, PAGE) {
                    Err(e) if e.errno() == libc::EAGAIN => s.retry.push(page),
                    Err(e) => {
                        // Present already (another thread's fault), or gone: wake whoever waits.
                        log::debug!("lazy-pages: zero page at {page:#x}: {e}");
                        let _ = uffd::wake(s.uffd.as_fd(), page, PAGE);
                    }
                    Ok(()) => {}
                }
                Ok(())
            }
        }
    }

    /// A background step: the next piece of the first userfaultfd with pages left.
    fn background(&mut self) -> Result<()> {
        if crate::fault::armed("lazy-pages-on-demand-only") {
            // For the test of the tree's events: pages come only when faulted.
            return Ok(());
        }
        if crate::fault::armed("lazy-pages-stop-after-restore") {
            // For the test of a daemon killed mid-restore: it serves nothing, and once the restore
            // is done it waits, stopped, for its SIGKILL.
            if self.done {
                log::warn!("STASIS_FAULT: lazy-pages stopping itself");
                let _ = stasis_sys::process::kill(Pid::this(), libc::SIGSTOP);
            }
            return Ok(());
        }
        let Some(i) = self.served.iter().position(|s| !s.left.is_empty()) else { return Ok(()) };
        match self.served[i].left.take_first(BACKGROUND_BYTES) {
            Some(piece) => self.copy(i, piece).map(drop),
            None => Ok(()),
        }
    }

    /// Copy `pages` pages from `offset` of the page file to `addr`, page by page past pages that
    /// are present already. False when the kernel deferred the copy (`EAGAIN`: an event of the
    /// process is pending): what was not copied is left for later.
    fn copy(&mut self, i: usize, (addr, pages, offset): (u64, u64, u64)) -> Result<bool> {
        let s = &mut self.served[i];
        let bytes = s.source.read(offset, pages * PAGE)?;
        let len = bytes.len() as u64;
        let mut done = 0u64;
        while done < len {
            match uffd::copy(s.uffd.as_fd(), addr + done, &bytes[done as usize..]) {
                Ok(n) if n > 0 => done += n,
                Ok(_) => done += PAGE,
                Err((e, n)) if e.errno() == libc::EEXIST => done += n + PAGE,
                Err((e, n)) if e.errno() == libc::EAGAIN => {
                    let at = done + n;
                    s.left.put(addr + at, (len - at) / PAGE, offset + at);
                    self.report.bytes += at;
                    return Ok(false);
                }
                Err((e, _)) if e.errno() == libc::ESRCH => {
                    // The process exited (or exec'd): its address space is gone.
                    log::info!("lazy-pages: pid {}: gone, its pages dropped", s.pid);
                    s.left = Remaining::default();
                    return Ok(true);
                }
                Err((e, _)) if matches!(e.errno(), libc::ENOENT | libc::EFAULT) => {
                    // The page's area went away before its event was read.
                    log::debug!("lazy-pages: pid {}: {e} at {:#x}: skipped", s.pid, addr + done);
                    done += PAGE;
                }
                Err((e, _)) => return Err(Error::sys(s.pid, "copying pages in (UFFDIO_COPY)")(e)),
            }
        }
        self.report.bytes += len;
        Ok(true)
    }

    /// The page source failed: kill every process served and its descendants, so none runs on
    /// without its pages or waits for them for ever.
    fn kill_all(&self) {
        self.served.iter().for_each(|s| kill_tree(s.pid, s.pidfd.as_ref()));
    }

    /// A message to the keeper (best effort: a lost keeper only loses the guard against our death).
    fn tell_keeper(&self, pid: i32, kind: u32, fds: &[BorrowedFd<'_>]) {
        if let Some(k) = &self.keeper {
            let mut msg = pid.to_le_bytes().to_vec();
            msg.extend(kind.to_le_bytes());
            if let Err(e) = stasis_sys::socket::send(k.as_fd(), &msg, &[], fds, None) {
                log::warn!("lazy-pages: the keeper did not take pid {pid}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Remaining;

    const P: u64 = 4096;

    #[test]
    fn runs_are_cut_taken_and_moved() {
        let mut r = Remaining(std::iter::once((0x10000, (8, 0x1000))).collect());
        assert_eq!(r.take_at(0x12000, 2), Some((0x12000, 2, 0x3000)));
        assert_eq!(r.0.get(&0x10000), Some(&(2, 0x1000)));
        assert_eq!(r.0.get(&0x14000), Some(&(4, 0x5000)));
        assert_eq!(r.take_at(0x12000, 1), None);
        r.cut(0x15000, 0x16000);
        assert_eq!(r.0.get(&0x14000), Some(&(1, 0x5000)));
        assert_eq!(r.0.get(&0x16000), Some(&(2, 0x7000)));
        r.remap(0x16000, 0x40000, 2 * P);
        assert_eq!(r.0.get(&0x40000), Some(&(2, 0x7000)));
        assert_eq!(r.take_first(P * 16), Some((0x10000, 2, 0x1000)));
    }
}
