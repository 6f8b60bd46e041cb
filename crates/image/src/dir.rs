//! An image directory: creating it, writing record files and committing the inventory; opening it
//! and verifying every file against the inventory; reading record files back.
//!
//! Invariant: an `inventory.img` exists only in a complete image. A stale one is removed before the
//! first file of a new image is written, and [`ImageDir::commit_inventory`] writes the new one last,
//! by rename. Until then, [`ImageDir::discard`] takes back what the new image made (see
//! [`crate::made`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use prost::Message;
use xxhash_rust::xxh3::xxh3_64;

use crate::framing::{check_encode_limits, check_version};
use crate::made::{self, Made, MadeState};
use crate::model::{FileDigest, Inventory};
use crate::{decode_records, encode_records, ImageError, ImageKind, MAX_RECORD_FILE_SIZE, PAGE_SIZE};

/// The name of the inventory file.
const INVENTORY: &str = "inventory.img";
/// The name the inventory is written under before it is renamed into place.
const INVENTORY_TMP: &str = "inventory.img.tmp";

/// Digests of the files written through one [`ImageDir`], by file name.
pub(crate) type Written = Arc<Mutex<BTreeMap<String, FileDigest>>>;

/// An image directory, being written (after [`ImageDir::create`]) or read (after
/// [`ImageDir::open`]).
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    inventory: OnceLock<Inventory>,
    written: Written,
    made: Made,
}

impl ImageDir {
    /// Create the directory for a new image: `mkdir -p` with mode 0700 (and chmod 0700 if it
    /// exists). A stale `inventory.img` is removed when the first file is written, so a
    /// half-overwritten image never looks complete.
    pub fn create(path: &Path) -> Result<ImageDir, ImageError> {
        let missing = made::missing_dirs(path);
        DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| ImageError::io(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| ImageError::io(path, e))?;
        let stale = [INVENTORY, INVENTORY_TMP].map(|name| path.join(name)).to_vec();
        Ok(ImageDir::new(path, OnceLock::new(), MadeState::new(missing, stale)))
    }

    /// Take back what this image made before its inventory was committed: the files that did not
    /// exist before it (never one that did) and the directories [`ImageDir::create`] made. A no-op
    /// after [`ImageDir::commit_inventory`]. Every file is tried; the first failure is returned.
    pub fn discard(&self) -> Result<(), ImageError> {
        made::discard(&self.made)
    }

    /// Open an existing image for reading: load and validate `inventory.img` (missing means the image
    /// is incomplete), then check that every listed record file exists with the listed size and
    /// checksum, and every listed page file with the listed size (their data is checked by
    /// [`crate::verify_pages`]).
    pub fn open(path: &Path) -> Result<ImageDir, ImageError> {
        let bytes = match read_capped(&path.join(INVENTORY), INVENTORY) {
            Err(ImageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::Incomplete { dir: path.to_owned() })
            }
            other => other?,
        };
        let inventory = one_record(INVENTORY, decode_records(INVENTORY, ImageKind::Inventory, &bytes)?)?;
        validate_inventory(&inventory)?;
        for digest in &inventory.files {
            verify_listed_file(path, digest)?;
        }
        Ok(ImageDir::new(path, OnceLock::from(inventory), MadeState::new(vec![], vec![])))
    }

    fn new(path: &Path, inventory: OnceLock<Inventory>, made: Made) -> ImageDir {
        ImageDir { path: path.to_owned(), inventory, written: Arc::default(), made }
    }

    /// The image directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The inventory: `Some` after [`ImageDir::open`] and after [`ImageDir::commit_inventory`].
    pub fn inventory(&self) -> Option<&Inventory> {
        self.inventory.get()
    }

    /// Write the record file of `kind` (for process `pid` if the kind is per process) holding
    /// `records`, with mode 0600, replacing any old file. Returns its digest, which is also remembered
    /// for the inventory.
    pub fn write_records<M: Message>(
        &self,
        kind: ImageKind,
        pid: Option<i32>,
        records: &[M],
    ) -> Result<FileDigest, ImageError> {
        let name = record_file_name(kind, pid)?;
        check_encode_limits(&name, records)?;
        let bytes = encode_records(kind, records);
        let path = self.path.join(&name);
        let mut file = self.create_file(&path)?;
        file.write_all(&bytes).map_err(|e| ImageError::io(&path, e))?;
        let digest = FileDigest { name, size: bytes.len() as u64, checksum: xxh3_64(&bytes) };
        self.remember(digest.clone());
        Ok(digest)
    }

    /// Read and decode every record of the record file of `kind` (and `pid`). In an image opened with
    /// [`ImageDir::open`], the file must also match its inventory entry.
    pub fn read_records<M: Message + Default>(&self, kind: ImageKind, pid: Option<i32>) -> Result<Vec<M>, ImageError> {
        let name = record_file_name(kind, pid)?;
        let bytes = read_capped(&self.path.join(&name), &name)?;
        if kind != ImageKind::Inventory {
            if let Some(listed) = self.listed(&name)? {
                check_digest(&name, listed, bytes.len() as u64, xxh3_64(&bytes))?;
            }
        }
        decode_records(&name, kind, &bytes)
    }

    /// Read a record file that holds exactly one record.
    pub fn read_one<M: Message + Default>(&self, kind: ImageKind, pid: Option<i32>) -> Result<M, ImageError> {
        let records = self.read_records(kind, pid)?;
        one_record(&kind.file_name(pid), records)
    }

    /// Write `inventory.img`: its `files` are every digest this `ImageDir` wrote (sorted by name), its
    /// format version is ours and a zero `page_size` becomes [`PAGE_SIZE`]. It is written as
    /// `inventory.img.tmp` and renamed into place; with `fsync`, every listed file, the inventory and
    /// the directory are flushed to disk first.
    pub fn commit_inventory(&self, mut inventory: Inventory, fsync: bool) -> Result<(), ImageError> {
        inventory.files = self.lock_written().values().cloned().collect();
        inventory.format_major = crate::FORMAT_MAJOR.into();
        inventory.format_minor = crate::FORMAT_MINOR.into();
        if inventory.page_size == 0 {
            inventory.page_size = PAGE_SIZE as u32;
        }
        check_encode_limits(INVENTORY, std::slice::from_ref(&inventory))?;
        if fsync {
            for digest in &inventory.files {
                sync_path(&self.path.join(&digest.name))?;
            }
        }
        let tmp = self.path.join(INVENTORY_TMP);
        let mut file = self.create_file(&tmp)?;
        file.write_all(&encode_records(ImageKind::Inventory, std::slice::from_ref(&inventory)))
            .map_err(|e| ImageError::io(&tmp, e))?;
        if fsync {
            file.sync_all().map_err(|e| ImageError::io(&tmp, e))?;
        }
        let dest = self.path.join(INVENTORY);
        fs::rename(&tmp, &dest).map_err(|e| ImageError::io(&dest, e))?;
        made::keep(&self.made);
        if fsync {
            sync_path(&self.path)?;
        }
        let _ = self.inventory.set(inventory);
        Ok(())
    }

    /// Replace page maps of an opened image (`stasis dedup` punched pages out of its page files):
    /// each `pagemap-PID.img` is written again, and the inventory with the new digests of it and of
    /// `pages-PID.img` (whose size is unchanged). This `ImageDir` keeps the old inventory: open the
    /// image again to read it.
    pub fn replace_pagemaps(&self, maps: &[(i32, crate::model::PageMap)]) -> Result<(), ImageError> {
        let Some(inventory) = self.inventory().cloned() else {
            let problem = "page maps are replaced only in an opened image".to_owned();
            return Err(ImageError::Usage { file: INVENTORY.into(), problem });
        };
        for (pid, map) in maps {
            let name = ImageKind::PageMap.file_name(Some(*pid));
            crate::validate_pagemap(&name, map)?;
        }
        {
            let mut written = self.lock_written();
            written.clear();
            written.extend(inventory.files.iter().map(|d| (d.name.clone(), d.clone())));
        }
        for (pid, map) in maps {
            self.write_records(ImageKind::PageMap, Some(*pid), std::slice::from_ref(map))?;
            let pages = ImageKind::Pages.file_name(Some(*pid));
            if let Some(d) = self.lock_written().get_mut(&pages) {
                d.checksum = crate::chunk_list_checksum(&map.chunk_checksums);
            }
        }
        self.commit_inventory(inventory, false)
    }

    /// The inventory entry of `name`: `None` when there is no inventory (an image being written),
    /// an error when there is one and it does not list `name`.
    pub(crate) fn listed(&self, name: &str) -> Result<Option<&FileDigest>, ImageError> {
        let Some(inventory) = self.inventory.get() else {
            return Ok(None);
        };
        match inventory.files.iter().find(|d| d.name == name) {
            Some(digest) => Ok(Some(digest)),
            None => Err(ImageError::NotListed { file: name.to_owned() }),
        }
    }

    /// Create (or truncate) an image file of this image with mode 0600 (see [`made::create_file`]).
    pub(crate) fn create_file(&self, path: &Path) -> Result<File, ImageError> {
        made::create_file(&self.made, path)
    }

    /// The digest table shared with the page writers of this directory.
    pub(crate) fn written(&self) -> &Written {
        &self.written
    }

    pub(crate) fn remember(&self, digest: FileDigest) {
        self.lock_written().insert(digest.name.clone(), digest);
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FileDigest>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The name of the record file of `kind` and `pid`, checking that the pair makes sense.
fn record_file_name(kind: ImageKind, pid: Option<i32>) -> Result<String, ImageError> {
    let name = kind.file_name(pid);
    if !kind.is_record_file() {
        return Err(ImageError::Usage { file: name, problem: "page files are not record files".into() });
    }
    check_pid(kind, pid)?;
    Ok(name)
}

/// A per-process kind needs a positive pid; the other kinds take none.
pub(crate) fn check_pid(kind: ImageKind, pid: Option<i32>) -> Result<(), ImageError> {
    let ok = match pid {
        Some(pid) => kind.per_process() && pid > 0,
        None => !kind.per_process(),
    };
    if ok {
        return Ok(());
    }
    Err(ImageError::Usage {
        file: kind.file_name(pid),
        problem: match pid {
            Some(pid) if kind.per_process() => format!("pid {pid} is not positive"),
            Some(pid) => format!("pid {pid} given for a file that is not per process"),
            None => "a per-process file needs a pid".into(),
        },
    })
}

/// Exactly one record, or an error naming `file`.
fn one_record<M>(file: &str, mut records: Vec<M>) -> Result<M, ImageError> {
    match (records.pop(), records.is_empty()) {
        (Some(record), true) => Ok(record),
        (popped, _) => {
            Err(ImageError::RecordCount { file: file.to_owned(), count: records.len() + usize::from(popped.is_some()) })
        }
    }
}

/// Check what `open` can check of an inventory by itself: version, page size, file names.
fn validate_inventory(inventory: &Inventory) -> Result<(), ImageError> {
    check_version(INVENTORY, inventory.format_major, inventory.format_minor)?;
    if u64::from(inventory.page_size) != PAGE_SIZE {
        let problem = format!("{} where this stasis supports only {PAGE_SIZE}", inventory.page_size);
        return Err(ImageError::field(INVENTORY, "page_size", problem));
    }
    let mut seen = BTreeSet::new();
    for digest in &inventory.files {
        let name = digest.name.as_str();
        match ImageKind::parse_file_name(name) {
            Some((ImageKind::Inventory, _)) | None => {
                return Err(ImageError::field(INVENTORY, "files", format!("unexpected file name {name:?}")))
            }
            Some(_) if !seen.insert(name) => {
                return Err(ImageError::field(INVENTORY, "files", format!("{name} is listed twice")))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Check that the listed file exists with its listed size, and for a record file its checksum.
fn verify_listed_file(dir: &Path, digest: &FileDigest) -> Result<(), ImageError> {
    let name = digest.name.as_str();
    let path = dir.join(name);
    let meta = match fs::metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ImageError::Missing { file: name.to_owned() }),
        other => other.map_err(|e| ImageError::io(&path, e))?,
    };
    let is_pages = matches!(ImageKind::parse_file_name(name), Some((ImageKind::Pages, _)));
    if is_pages || meta.len() != digest.size {
        return check_size(name, meta.len(), digest.size, "inventory.img");
    }
    let bytes = read_capped(&path, name)?;
    check_digest(name, digest, bytes.len() as u64, xxh3_64(&bytes))
}

/// Check a file's size and checksum against its inventory entry.
pub(crate) fn check_digest(file: &str, listed: &FileDigest, size: u64, checksum: u64) -> Result<(), ImageError> {
    check_size(file, size, listed.size, "inventory.img")?;
    if checksum != listed.checksum {
        return Err(ImageError::Digest { file: file.to_owned(), actual: checksum, listed: listed.checksum });
    }
    Ok(())
}

/// A size check with an error naming where the expected size comes from.
pub(crate) fn check_size(
    file: &str,
    actual: u64,
    expected: u64,
    source_of_truth: &'static str,
) -> Result<(), ImageError> {
    if actual == expected {
        return Ok(());
    }
    Err(ImageError::Size { file: file.to_owned(), actual, expected, source_of_truth })
}

/// Read a record file whole, refusing one larger than [`MAX_RECORD_FILE_SIZE`] before allocating.
fn read_capped(path: &Path, name: &str) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let size = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
    if size > MAX_RECORD_FILE_SIZE {
        return Err(ImageError::TooLarge {
            file: name.to_owned(),
            what: "the file".into(),
            size,
            limit: MAX_RECORD_FILE_SIZE,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte more than the limit, so that a file growing while it is read is still caught.
    file.take(MAX_RECORD_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| ImageError::io(path, e))?;
    Ok(bytes)
}

/// fsync a file or directory by path.
fn sync_path(path: &Path) -> Result<(), ImageError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| ImageError::io(path, e))
}
