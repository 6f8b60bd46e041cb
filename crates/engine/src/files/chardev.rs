//! Character devices: the memory devices (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`,
//! `/dev/urandom`) reopened by path, and terminals. A terminal is only taken with `--shell-job`: it is
//! then external, and restore connects the fd to the terminal stasis itself runs on.

use super::Probe;
use crate::error::{Error, Result};
use crate::proc::fdinfo_fields::{major, minor};
use stasis_image::model::{CharDevice, FileKind, Terminal};
use stasis_sys::fd::is_tty;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const MEM_MAJOR: u64 = 1;
const MEM_MINORS: [u64; 5] = [3, 5, 7, 8, 9];
const TTY_MAJOR: u64 = 4;
const TTYAUX_MAJOR: u64 = 5;
const PTS_MAJORS: std::ops::RangeInclusive<u64> = 136..=143;

pub fn dump(p: &Probe) -> Result<FileKind> {
    if let Some(pty) = super::tty::dump(p)? {
        return Ok(pty);
    }
    let rdev = p.meta.rdev();
    let (maj, min) = (major(rdev), minor(rdev));
    let path = p.link.to_string_lossy().into_owned();
    if maj == MEM_MAJOR && MEM_MINORS.contains(&min) {
        if let Some(last_name) = path.strip_suffix(" (deleted)") {
            return Ok(FileKind::CharDevice(super::ghost::dump_device(p, last_name)));
        }
        return Ok(FileKind::CharDevice(CharDevice { path, rdev, ..Default::default() }));
    }
    let terminal = PTS_MAJORS.contains(&maj) || maj == TTY_MAJOR || (maj == TTYAUX_MAJOR && min <= 1);
    if terminal && p.shell_job {
        return Ok(FileKind::Terminal(Terminal { path, rdev, external: true }));
    }
    if terminal {
        return Err(p.unsupported(format!(
            "terminal {path} (dump with --shell-job to restore it onto the terminal stasis runs from)"
        )));
    }
    Err(p.unsupported(format!("character device {path} ({maj}:{min})")))
}

/// The device node of `c` opened at its path, which must be the same device here; with `evasive`
/// (`--evasive-devices`, as CRIU), a path that is gone or another device here is replaced by any
/// node of the same device under `/dev`.
pub fn open_device(c: &CharDevice, flags: u32, evasive: bool) -> Result<OwnedFd> {
    let opened = open_checked(&c.path, flags, c.rdev);
    if !evasive {
        return opened;
    }
    match opened {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let Some(other) = find_node(Path::new("/dev"), c.rdev, 3) else { return Err(e) };
            log::info!("{}: opened as {} (--evasive-devices; {e})", c.path, other.display());
            open_checked(&other.to_string_lossy(), flags, c.rdev)
        }
    }
}

/// The node at `path` opened with `flags`, if it is the device `want`.
fn open_checked(path: &str, flags: u32, want: u64) -> Result<OwnedFd> {
    let fd = super::regular::open_path(path, flags)?;
    let rdev =
        std::fs::File::from(fd.try_clone().map_err(Error::io(path))?).metadata().map_err(Error::io(path))?.rdev();
    if rdev != want {
        return Err(Error::Incompatible {
            file: "files.img".into(),
            what: format!(
                "{path} is device {}:{} here, {}:{} in the image",
                major(rdev),
                minor(rdev),
                major(want),
                minor(want)
            ),
        });
    }
    Ok(fd)
}

/// A character device node of device `rdev` in `dir` or below it (`depth` levels), sorted names
/// first so that the choice does not change from one run to the next.
fn find_node(dir: &Path, rdev: u64, depth: u32) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    let is_it =
        |p: &PathBuf| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == rdev);
    if let Some(found) = entries.iter().find(|p| is_it(p)) {
        return Some(found.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .find_map(|p| find_node(p, rdev, depth - 1))
}

/// The terminal stasis runs on: the first of our stdin, stdout, stderr that is a terminal, else
/// `/dev/tty`.
pub fn open_terminal(t: &Terminal, shell_job: bool) -> Result<OwnedFd> {
    if !shell_job {
        return Err(Error::Incompatible {
            file: "files.img".into(),
            what: format!(
                "the process had the terminal {} (restore with --shell-job to attach it to this terminal)",
                t.path
            ),
        });
    }
    for fd in [std::io::stdin().as_fd(), std::io::stdout().as_fd(), std::io::stderr().as_fd()] {
        if is_tty(fd) {
            return dup(fd);
        }
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|source| Error::Io { path: "/dev/tty (restore --shell-job needs a terminal)".into(), source })?;
    Ok(tty.into())
}

fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned().map_err(Error::io("our terminal"))
}

/// Device nodes and terminals, in the table of kinds (ptys are [`super::tty`]'s, device nodes
/// whose name was removed [`super::ghost`]'s).
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "character device",
    dump: Some(super::kinds::Dumper { claims: |p| p.meta.file_type().is_char_device(), dump: dump_and_note }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open, settings))),
    finish_restore: None,
};

/// [`dump`], noting a pty end (held by an fd) for [`super::tty::resolve`].
fn dump_and_note(p: &Probe, ids: &mut super::FileIds) -> Result<FileKind> {
    let kind = dump(p)?;
    if p.fd >= 0 {
        super::tty::note(&kind, p.id, p, &mut ids.state::<super::tty::Seens>().0)?;
    }
    Ok(kind)
}

fn open(f: &stasis_image::model::FileEntry, settings: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::CharDevice(c)) if !c.ghost => Some(open_device(c, f.flags, settings.evasive_devices)),
        Some(FileKind::Terminal(t)) => Some(open_terminal(t, settings.shell_job)),
        _ => None,
    }
}
