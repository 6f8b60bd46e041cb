//! Files that outlive their names ("ghosts"): regular files unlinked while open or mapped, files
//! made with `O_TMPFILE` (never named), memfds, and device nodes unlinked while open.
//!
//! Dump reads a ghost's data once per object (device, inode), through a read-only description of
//! stasis' own (our copy of the fd reopened through `/proc/self/fd` with `O_NOATIME`, so a
//! write-only fd can be dumped and the access time stays), as the extents `SEEK_DATA`/`SEEK_HOLE`
//! report, so holes stay holes and `--ghost-limit` counts data, not the apparent size. The owner,
//! mode and access and modification times are kept (the change time cannot be set).
//!
//! Restore makes each object once ([`Ghosts`]): a file under its last name (or beside it if that
//! name is taken now), an `O_TMPFILE` file in its directory, a memfd with its name, a device node
//! with `mknod`; then its data, owner, mode, times and (memfd) seals. Every description is opened
//! from the object with its own flags (through `/proc/self/fd`, so an `O_RDONLY` description of a
//! memfd is one again), and named files and nodes are unlinked once all of `files.img` is open. An
//! fd of each object is kept for the mappings, which find it by (device, inode) at dump time.
//!
//! A ghost on hugetlbfs (told by `fstatfs`: an `MFD_HUGETLB` memfd, or a file of a hugetlbfs
//! mount) keeps its huge page size: dump reads it a huge page at a time, leaving out the all-zero
//! ones; restore makes it with that page size (a memfd) or on its mount again (a file, which fails
//! naming it when that is no hugetlbfs of that page size now) and writes its data through a
//! mapping of ours, as hugetlbfs has no `write(2)`.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{CharDevice, DataExtent, FileKind, RegularFile};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The objects made by a restore, by (device, inode) at dump time.
pub type Objects = HashMap<(u64, u64), OwnedFd>;

/// The entry of an unlinked file or memfd whose link reads `last_name (deleted)`.
pub fn dump_file(p: &Probe, last_name: &str, ghosts: &mut Vec<(u64, u64)>) -> Result<FileKind> {
    let memfd = last_name.starts_with("/memfd:");
    if p.meta.nlink() != 0 && !memfd {
        return Err(p.unsupported(format!("file {} that still has other names", p.link.display())));
    }
    let huge = hugetlb_page_size(p)?;
    let seals =
        if memfd { stasis_sys::fd::get_seals(p.file).map_err(Error::sys(p.pid.0, "reading memfd seals"))? } else { 0 };
    let (dev, ino) = (p.meta.dev(), p.meta.ino());
    let mut extents = Vec::new();
    if !ghosts.contains(&(dev, ino)) {
        extents = if huge != 0 { read_huge_pages(p, huge)? } else { read_data(p)? };
        ghosts.push((dev, ino));
    }
    let tmpfile = !memfd && Path::new(last_name).file_name().is_some_and(|n| n.to_string_lossy() == format!("#{ino}"));
    let m = p.meta;
    Ok(FileKind::Regular(RegularFile {
        path: last_name.to_string(),
        pos: p.pos,
        size: m.size(),
        mode: m.mode(),
        ghost: true,
        ino,
        memfd,
        seals,
        dev,
        uid: m.uid(),
        gid: m.gid(),
        atime_sec: m.atime(),
        atime_nsec: m.atime_nsec() as u32,
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        extents,
        tmpfile,
        hugetlb_page_size: huge,
        ..Default::default()
    }))
}

/// The huge page size of a file on hugetlbfs (its `st_blksize`), or 0 for a file elsewhere.
fn hugetlb_page_size(p: &Probe) -> Result<u64> {
    let fs = stasis_sys::anon::fs_type(p.file).map_err(Error::sys(p.pid.0, "fstatfs of an unlinked file"))?;
    if fs != stasis_sys::fd::HUGETLBFS_MAGIC {
        return Ok(0);
    }
    let size = p.meta.blksize();
    if !size.is_power_of_two() || size <= 4096 || !p.meta.size().is_multiple_of(size) {
        let what = format!("hugetlbfs file {} of {} bytes with a page size of {size}", p.link.display(), p.meta.size());
        return Err(p.unsupported(what));
    }
    Ok(size)
}

/// The entry of a device node unlinked while open (`last_name` its last name); `rdev` is one
/// stasis may open again.
pub fn dump_device(p: &Probe, last_name: &str) -> CharDevice {
    let m = p.meta;
    CharDevice {
        path: last_name.to_string(),
        rdev: m.rdev(),
        ghost: true,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// Where the probed fd names the fd or the mapping, for messages.
fn which(p: &Probe) -> String {
    if p.fd >= 0 {
        format!("fd {}", p.fd)
    } else {
        "a mapping".into()
    }
}

/// A read-only description of our own of the probed file (reads on it change neither the tree's
/// offsets nor the file's access time).
fn read_only_copy(p: &Probe) -> Result<File> {
    let own = format!("/proc/self/fd/{}", p.file.as_raw_fd());
    OpenOptions::new().read(true).custom_flags(libc::O_NOATIME | libc::O_CLOEXEC).open(&own).map_err(Error::io(p.link))
}

/// The data extents of the file behind the probed fd, read on a read-only description of our own.
fn read_data(p: &Probe) -> Result<Vec<DataExtent>> {
    let file = read_only_copy(p)?;
    let size = p.meta.size();
    let ranges = data_ranges(&file, size).map_err(Error::sys(p.pid.0, "finding the data of an unlinked file"))?;
    let data: u64 = ranges.iter().map(|(start, end)| end - start).sum();
    over_limit(p, data, size)?;
    let mut out = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        let mut bytes = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut bytes, start).map_err(Error::io(p.link))?;
        out.push(DataExtent { offset: start, data: bytes });
    }
    Ok(out)
}

/// The data of a hugetlbfs file (hugetlbfs has no `SEEK_HOLE`: all of it is data to lseek), read
/// a huge page at a time in chunks on a read-only description of our own (a read of a page the
/// file lacks gives zeros and takes none from the pool): the huge pages that are not all zeros, as
/// extents of whole huge pages.
fn read_huge_pages(p: &Probe, huge: u64) -> Result<Vec<DataExtent>> {
    const CHUNK: u64 = 1 << 20;
    let file = read_only_copy(p)?;
    let (size, mut data) = (p.meta.size(), 0u64);
    let mut out: Vec<DataExtent> = Vec::new();
    let mut chunk = vec![0u8; CHUNK.min(huge) as usize];
    for page in (0..size).step_by(huge as usize) {
        let mut bytes = Vec::new();
        for at in (page..page + huge).step_by(chunk.len()) {
            file.read_exact_at(&mut chunk, at).map_err(Error::io(p.link))?;
            if bytes.is_empty() && chunk.iter().all(|&b| b == 0) {
                continue;
            }
            if bytes.is_empty() {
                data += huge;
                over_limit(p, data, size)?;
                bytes.resize((at - page) as usize, 0);
            }
            bytes.extend_from_slice(&chunk);
        }
        match out.last_mut() {
            _ if bytes.is_empty() => {}
            Some(last) if last.offset + last.data.len() as u64 == page => last.data.append(&mut bytes),
            _ => out.push(DataExtent { offset: page, data: bytes }),
        }
    }
    Ok(out)
}

/// Fails when `data` bytes of an unlinked file (of `size`) are over `--ghost-limit`.
fn over_limit(p: &Probe, data: u64, size: u64) -> Result<()> {
    if data <= p.ghost_limit {
        return Ok(());
    }
    let what = format!(
        "{}: unlinked file {} holds {data} bytes of data (size {size}), over the limit of {} (raise it with --ghost-limit)",
        which(p),
        p.link.display(),
        p.ghost_limit
    );
    Err(Error::Failed { pid: p.pid, what })
}

/// The (start, end) ranges below `size` that hold data, by `SEEK_DATA` and `SEEK_HOLE`.
pub(crate) fn data_ranges(file: &File, size: u64) -> std::result::Result<Vec<(u64, u64)>, stasis_sys::SysError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let Some(start) = stasis_sys::fd::seek_extent(file.as_fd(), at, true)? else { break };
        if start >= size {
            break;
        }
        let end = stasis_sys::fd::seek_extent(file.as_fd(), start, false)?.unwrap_or(size).min(size);
        out.push((start, end));
        at = end;
    }
    Ok(out)
}

/// One object made again: its fd (the description `memfd_create` or `open(O_TMPFILE)` made, for
/// those), and the name to unlink (none for memfds and `O_TMPFILE` files).
struct Made {
    fd: OwnedFd,
    path: Option<PathBuf>,
    /// That description of a memfd or `O_TMPFILE` file was handed out to a process.
    given: bool,
}

/// `O_TMPFILE` as the flags of its description show it (`__O_TMPFILE | O_DIRECTORY`).
const O_TMPFILE: u32 = libc::O_TMPFILE as u32;

/// The description `memfd_create` or `open(O_TMPFILE)` made, shared (a dup), at the saved offset
/// and with the saved status flags.
fn own_description(fd: &OwnedFd, r: &RegularFile, flags: u32) -> Result<OwnedFd> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::from(fd.try_clone().map_err(Error::io(&r.path))?);
    f.seek(SeekFrom::Start(r.pos)).map_err(Error::io(&r.path))?;
    let status = (flags as i32) & (libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_DIRECT);
    if status != 0 {
        stasis_sys::fd::set_status_flags(f.as_fd(), status)
            .map_err(|e| Error::Io { path: r.path.clone().into(), source: e.source })?;
    }
    Ok(f.into())
}

/// Unlinked files, memfds and device nodes made again at restore (see the module docs).
#[derive(Default)]
pub struct Ghosts {
    made: HashMap<(u64, u64), Made>,
}

impl Ghosts {
    /// A new description of the file `r` stands for (made on first use), with `flags`.
    pub fn open(&mut self, r: &RegularFile, flags: u32) -> Result<OwnedFd> {
        let key = (r.dev, r.ino);
        let made = match self.made.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(if r.memfd { make_memfd(r)? } else { make_file(r, flags)? }),
        };
        // The description open(O_TMPFILE) made: the only one whose flags say O_TMPFILE.
        let tmpfile_own = r.tmpfile && flags & O_TMPFILE == O_TMPFILE;
        // A memfd's own description (memfd_create's) is not counted as a writer of the file, as a
        // reopened read-write one is: `execveat` of it works, where a reopened writer makes it fail
        // with ETXTBSY. The first read-write description of a memfd is taken for its own.
        let memfd_own = r.memfd && flags as i32 & libc::O_ACCMODE == libc::O_RDWR;
        if (tmpfile_own || memfd_own) && !made.given {
            made.given = true;
            return own_description(&made.fd, r, flags);
        }
        let plain = RegularFile {
            path: format!("/proc/self/fd/{}", made.fd.as_raw_fd()),
            ghost: false,
            extents: Vec::new(),
            ..r.clone()
        };
        super::regular::open_file(&plain, flags & !O_TMPFILE)
    }

    /// A new description of the device node `c` stands for (made on first use), with `flags`.
    pub fn open_device(&mut self, c: &CharDevice, flags: u32) -> Result<OwnedFd> {
        let key = (c.dev, c.ino);
        let made = match self.made.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(make_node(c)?),
        };
        let path = format!("/proc/self/fd/{}", made.fd.as_raw_fd());
        super::chardev::open_device(&CharDevice { path, ..c.clone() }, flags, false)
    }

    /// The objects; the named ones are unlinked now.
    pub fn into_objects(mut self) -> Objects {
        std::mem::take(&mut self.made)
            .into_iter()
            .map(|(key, m)| {
                if let Some(p) = &m.path {
                    unlink(p);
                }
                (key, m.fd)
            })
            .collect()
    }
}

impl Drop for Ghosts {
    /// The names exist only while the descriptions are being opened.
    fn drop(&mut self) {
        for p in self.made.values().filter_map(|m| m.path.as_ref()) {
            unlink(p);
        }
    }
}

fn unlink(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::warn!("could not unlink {} again: {e}", path.display());
    }
}

/// `path`, or beside it if that name is taken here.
fn free_name(path: &str, ino: u64) -> PathBuf {
    let p = PathBuf::from(path);
    if p.symlink_metadata().is_ok() {
        return format!("{path}.stasis-ghost-{ino}").into();
    }
    p
}

/// `flags` are those of the first description opened: an `O_TMPFILE` file is made with its access
/// mode if that description is the one `open(O_TMPFILE)` made.
fn make_file(r: &RegularFile, flags: u32) -> Result<Made> {
    if r.tmpfile {
        let dir = Path::new(&r.path).parent().unwrap_or(Path::new("/"));
        let acc = if flags & O_TMPFILE == O_TMPFILE { flags as i32 & libc::O_ACCMODE } else { libc::O_RDWR };
        let f = OpenOptions::new()
            .read(acc == libc::O_RDWR)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(dir)
            .map_err(Error::io(dir))?;
        let rw = format!("/proc/self/fd/{}", f.as_raw_fd());
        fill(&OpenOptions::new().read(true).write(true).open(&rw).map_err(Error::io(&rw))?, r)?;
        return Ok(Made { fd: f.into(), path: None, given: false });
    }
    let path = free_name(&r.path, r.ino);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(Error::io(&path))?;
    if let Err(e) = fill(&f, r) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Made { fd: f.into(), path: Some(path), given: false })
}

fn make_memfd(r: &RegularFile) -> Result<Made> {
    let name = r.path.strip_prefix("/memfd:").unwrap_or(&r.path);
    let io = |e: stasis_sys::SysError| Error::Io { path: r.path.clone().into(), source: e.source };
    let f = match r.hugetlb_page_size {
        0 => File::from(stasis_sys::fd::memfd_create(name).map_err(io)?),
        huge => File::from(stasis_sys::fd::memfd_create_hugetlb(name, huge).map_err(io)?),
    };
    fill(&f, r)?;
    let seals = r.seals & !libc::F_SEAL_SEAL;
    if seals != 0 {
        stasis_sys::fd::add_seals(f.as_fd(), seals).map_err(io)?;
    }
    if r.seals & libc::F_SEAL_SEAL != 0 {
        stasis_sys::fd::add_seals(f.as_fd(), libc::F_SEAL_SEAL).map_err(io)?;
    }
    Ok(Made { fd: f.into(), path: None, given: false })
}

/// The data of `r` written into `f`, then its size, owner, mode and times.
fn fill(f: &File, r: &RegularFile) -> Result<()> {
    let written = (|| {
        if r.hugetlb_page_size != 0 {
            fill_huge_pages(f, r)?;
        } else {
            f.write_all_at(&r.content, 0)?;
            for e in &r.extents {
                f.write_all_at(&e.data, e.offset)?;
            }
        }
        f.set_len(r.size)?;
        set_attributes(f, r.uid, r.gid, r.mode)?;
        f.set_times(times(r))
    })();
    written.map_err(Error::io(&r.path))
}

/// The data of a hugetlbfs file (an `MFD_HUGETLB` memfd): its size first, then each extent (whole
/// huge pages within the size, as the dump saved them) through a shared mapping of ours, as
/// hugetlbfs has no `write`. The mapping reserves its pages (ENOMEM if the pool is short).
fn fill_huge_pages(f: &File, r: &RegularFile) -> std::io::Result<()> {
    let huge = r.hugetlb_page_size;
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    if !huge.is_power_of_two() || !r.size.is_multiple_of(huge) || !r.content.is_empty() {
        return Err(bad(format!("size {} or contents do not fit huge pages of {huge} bytes", r.size)));
    }
    // A file made again under its last name is on hugetlbfs only if its mount is there still.
    let fs = stasis_sys::anon::fs_type(f.as_fd()).map_err(|e| e.source)?;
    let blksize = f.metadata()?.blksize();
    if fs != stasis_sys::fd::HUGETLBFS_MAGIC || blksize != huge {
        return Err(bad(format!(
            "made again on a filesystem that is not hugetlbfs of {huge}-byte pages (f_type {fs:#x}, st_blksize {blksize})"
        )));
    }
    f.set_len(r.size)?;
    for e in &r.extents {
        let len = e.data.len() as u64;
        if !e.offset.is_multiple_of(huge) || len == 0 || e.offset.checked_add(len).is_none_or(|end| end > r.size) {
            return Err(bad(format!("data at {} ({len} bytes) is not whole huge pages of the file", e.offset)));
        }
        let map_len = len.div_ceil(huge) * huge;
        stasis_sys::fd::write_mapped(f.as_fd(), e.offset, &e.data, map_len).map_err(|e| e.source)?;
    }
    Ok(())
}

/// Owner, then the mode (a change of owner clears the set-id bits).
fn set_attributes(f: &File, uid: u32, gid: u32, mode: u32) -> std::io::Result<()> {
    std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
}

fn times(r: &RegularFile) -> std::fs::FileTimes {
    let at = |sec: i64, nsec: u32| {
        let d = std::time::Duration::new(sec.unsigned_abs(), nsec);
        if sec >= 0 {
            std::time::UNIX_EPOCH + d
        } else {
            std::time::UNIX_EPOCH - d
        }
    };
    std::fs::FileTimes::new().set_accessed(at(r.atime_sec, r.atime_nsec)).set_modified(at(r.mtime_sec, r.mtime_nsec))
}

fn make_node(c: &CharDevice) -> Result<Made> {
    let path = free_name(&c.path, c.ino);
    let sys = |e: stasis_sys::SysError| Error::Io { path: path.clone(), source: e.source };
    stasis_sys::fd::mknod(&path, libc::S_IFCHR | 0o600, c.rdev).map_err(sys)?;
    let opened = OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_CLOEXEC).open(&path);
    let done = opened.and_then(|f| {
        std::os::unix::fs::chown(&path, Some(c.uid), Some(c.gid))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(c.mode & 0o7777))?;
        Ok(f)
    });
    match done {
        Ok(f) => Ok(Made { fd: f.into(), path: Some(path), given: false }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(Error::Io { path, source: e })
        }
    }
}

/// Unlinked files, memfds and device nodes whose name was removed, in the table of kinds: dumped
/// by [`super::regular`], [`super::fifo`] and [`super::chardev`], made again here.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "unlinked file",
    dump: None,
    configure: None,
    finish_dump: None,
    opener: Some(|_, _| Ok(Box::new(Ghosts::default()))),
    finish_restore: None,
};

/// Unlinked files and FIFOs (device, inode) whose bytes a dump saved already.
#[derive(Default)]
pub struct Saved(pub Vec<(u64, u64)>);

impl super::kinds::Opener for Ghosts {
    fn open(&mut self, f: &stasis_image::model::FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Regular(r)) if r.ghost => Some(self.open(r, f.flags)),
            Some(FileKind::CharDevice(c)) if c.ghost => Some(self.open_device(c, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &stasis_image::model::FileEntry) {}

    fn opened(
        self: Box<Self>,
        _: &[stasis_image::model::FileEntry],
        _: &HashMap<u32, OwnedFd>,
        later: &mut super::kinds::Later,
    ) -> Result<()> {
        later.shared.put(self.into_objects());
        Ok(())
    }
}
