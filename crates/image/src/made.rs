//! What one image being written has made in its directory, so that a dump that fails before its
//! inventory is committed can take back exactly that: the files that did not exist before (never a
//! file that was there already) and the directories `mkdir -p` made. The stale inventory of an
//! earlier image is removed only when the first file is written, so a dump refused before writing
//! anything leaves the directory, and an earlier image in it, as they were.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::ImageError;

/// The record of what an [`crate::ImageDir`] made, shared with its page writers.
pub(crate) type Made = Arc<Mutex<MadeState>>;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct MadeState {
    /// The directories `create` made, deepest first.
    dirs: Vec<PathBuf>,
    /// The files made that did not exist before, in the order they were made.
    files: Vec<PathBuf>,
    /// The stale inventory files to remove before the first file is written; empty once removed.
    stale: Vec<PathBuf>,
}

impl MadeState {
    /// A record for an image in `path`, whose missing directories (deepest first) are `dirs`, and
    /// whose `stale` files go before the first write.
    pub(crate) fn new(dirs: Vec<PathBuf>, stale: Vec<PathBuf>) -> Made {
        Arc::new(Mutex::new(MadeState { dirs, files: Vec::new(), stale }))
    }
}

/// The directories among `path` and its ancestors that do not exist yet, deepest first.
pub(crate) fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect()
}

/// Create (or truncate) the image file `path` with mode 0600, first removing the stale inventory
/// if this is the first file; a file that did not exist before is recorded in `made`.
pub(crate) fn create_file(made: &Made, path: &Path) -> Result<File, ImageError> {
    let mut state = made.lock().unwrap_or_else(PoisonError::into_inner);
    for stale in std::mem::take(&mut state.stale) {
        match fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(ImageError::io(stale, e)),
            _ => {}
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).read(true).mode(0o600);
    let file = match options.clone().create_new(true).open(path) {
        Ok(file) => {
            state.files.push(path.to_path_buf());
            file
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            options.truncate(true).open(path).map_err(|e| ImageError::io(path, e))?
        }
        Err(e) => return Err(ImageError::io(path, e)),
    };
    file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| ImageError::io(path, e))?;
    Ok(file)
}

/// Remove every file and directory recorded in `made` (files first, newest first; a directory only
/// if it is empty by then) and forget them. Returns the first failure, after trying them all.
pub(crate) fn discard(made: &Made) -> Result<(), ImageError> {
    let mut state = made.lock().unwrap_or_else(PoisonError::into_inner);
    let mut first = None;
    for file in std::mem::take(&mut state.files).into_iter().rev() {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                first.get_or_insert(ImageError::io(file, e));
            }
            _ => {}
        }
    }
    for dir in std::mem::take(&mut state.dirs) {
        if let Err(e) = fs::remove_dir(&dir) {
            // Not empty: something else was put there, which is not ours to remove.
            if !matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) {
                first.get_or_insert(ImageError::io(dir, e));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Forget what was made (the image is complete): nothing is removed any more.
pub(crate) fn keep(made: &Made) {
    let mut state = made.lock().unwrap_or_else(PoisonError::into_inner);
    state.files.clear();
    state.dirs.clear();
}
