//! `stasis show`: every record of an image as one JSON value, or a summary for a terminal.
//!
//! Both read the whole image through [`ImageDir`], so they check what any reader checks (headers,
//! checksums, the inventory, page maps) and fail with the same errors on a damaged image.

mod anon;
mod names;
mod pty;
mod text;

#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::{Map, Value};

use stasis_image::model::{FdTable, FileTable, Inventory, MmImage, PageMap, ProcessEntry, PsTree, TaskCore};
use stasis_image::{validate_pagemap, ImageDir, ImageError, ImageKind, PAGE_SIZE};

pub use text::render_text;

/// Every record file of one process.
pub(crate) struct Process {
    pub(crate) entry: ProcessEntry,
    pub(crate) cores: Vec<TaskCore>,
    pub(crate) mm: MmImage,
    pub(crate) pagemap: PageMap,
    pub(crate) fds: FdTable,
}

/// The decoded record files of an image.
pub(crate) struct Loaded {
    pub(crate) inventory: Inventory,
    pub(crate) pstree: PsTree,
    pub(crate) processes: Vec<Process>,
    pub(crate) files: FileTable,
    pub(crate) ipc: stasis_image::model::IpcImage,
}

impl Loaded {
    /// Read the inventory, the process tree, every process's files and `files.img`.
    pub(crate) fn load(dir: &ImageDir) -> Result<Loaded, ImageError> {
        let inventory = match dir.inventory() {
            Some(inventory) => inventory.clone(),
            None => dir.read_one(ImageKind::Inventory, None)?,
        };
        let pstree: PsTree = dir.read_one(ImageKind::PsTree, None)?;
        // Zombies have no file of their own: their pstree entry is all there is.
        let live = pstree.processes.iter().filter(|e| !e.zombie);
        let processes = live.map(|entry| load_process(dir, entry)).collect::<Result<_, _>>()?;
        let files = dir.read_one(ImageKind::Files, None)?;
        let ipc = dir.read_one(ImageKind::Ipc, None)?;
        Ok(Loaded { inventory, pstree, processes, files, ipc })
    }
}

fn load_process(dir: &ImageDir, entry: &ProcessEntry) -> Result<Process, ImageError> {
    let pid = Some(entry.pid);
    let pagemap: PageMap = dir.read_one(ImageKind::PageMap, pid)?;
    validate_pagemap(&ImageKind::PageMap.file_name(pid), &pagemap)?;
    Ok(Process {
        entry: entry.clone(),
        cores: dir.read_records(ImageKind::Core, pid)?,
        mm: dir.read_one(ImageKind::Mm, pid)?,
        pagemap,
        fds: dir.read_one(ImageKind::Fds, pid)?,
    })
}

/// Decode every file of the image into one JSON value:
/// `{ "inventory", "pstree", "processes": { "PID": { "core": [..], "mm", "pagemap": summary, "fds" } },
/// "files" }`. The page map is summarized (runs, pages, bytes, chunks), not listed.
pub fn to_json(dir: &ImageDir) -> Result<Value, ImageError> {
    let image = Loaded::load(dir)?;
    let mut processes = Map::new();
    for p in &image.processes {
        let mut process = Map::new();
        process.insert("core".into(), value(&p.cores));
        process.insert("mm".into(), value(&p.mm));
        process.insert("pagemap".into(), pagemap_summary(&p.pagemap));
        process.insert("fds".into(), value(&p.fds));
        processes.insert(p.entry.pid.to_string(), Value::Object(process));
    }
    let mut root = Map::new();
    root.insert("inventory".into(), value(&image.inventory));
    root.insert("pstree".into(), value(&image.pstree));
    root.insert("processes".into(), Value::Object(processes));
    root.insert("files".into(), value(&image.files));
    root.insert("ipc".into(), value(&image.ipc));
    Ok(Value::Object(root))
}

/// The page map in a few numbers.
fn pagemap_summary(map: &PageMap) -> Value {
    let mut summary = Map::new();
    summary.insert("runs".into(), map.runs.len().into());
    summary.insert("total_pages".into(), map.total_pages.into());
    summary.insert("bytes".into(), map.total_pages.saturating_mul(PAGE_SIZE).into());
    summary.insert("chunk_size".into(), map.chunk_size.into());
    summary.insert("chunks".into(), map.chunk_checksums.len().into());
    let in_parent: u64 = map.in_parent.iter().map(|r| r.nr_pages).sum();
    summary.insert("in_parent_pages".into(), in_parent.into());
    summary.insert("tracked_ranges".into(), map.tracked.len().into());
    let punched: u64 = map.punched.iter().map(|r| r.nr_pages).sum();
    summary.insert("punched_pages".into(), punched.into());
    let compressed = stasis_image::compress::is_compressed(map);
    summary.insert("compression".into(), if compressed { "zstd" } else { "none" }.into());
    let stored = stasis_image::compress::stored_bytes(map);
    summary.insert("stored_bytes".into(), stored.into());
    if compressed {
        summary.insert("frame_sizes".into(), map.frame_sizes.clone().into());
    }
    Value::Object(summary)
}

/// A record as JSON. The model types serialize without error; should one ever fail, the error text
/// stands in for it rather than a panic.
fn value<T: Serialize>(record: &T) -> Value {
    serde_json::to_value(record).unwrap_or_else(|e| Value::String(format!("cannot serialize: {e}")))
}
