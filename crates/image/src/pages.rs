//! Page files (`pages-PID.img`) and the checks that tie them to their page map.
//!
//! A page file is a header page (the common 16-byte header, then the number of pages as a `u64`,
//! then zeros up to [`PAGE_DATA_OFFSET`]) followed by the pages of the map's runs back to back. The
//! data is checksummed in chunks of `PageMap::chunk_size` bytes, the checksums kept in the page map;
//! the inventory's digest of a page file is the xxh3-64 of those checksums.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::dir::{check_pid, check_size, Written};
use crate::framing::{check_header, encode_header};
use crate::model::{FileDigest, PageMap};
use crate::{ImageDir, ImageError, ImageKind, HEADER_LEN, MAX_CHUNK_SIZE, PAGE_DATA_OFFSET, PAGE_SIZE};

/// Offset of the page count in the header page.
const NR_PAGES_OFFSET: u64 = HEADER_LEN as u64;
/// How much page data is read at a time while hashing.
const READ_BLOCK: u64 = 1 << 16;
/// From this much page data on, chunks are hashed by two threads.
const PARALLEL_THRESHOLD: u64 = 32 << 20;

/// A page file being written: the caller writes the page data into [`PageWriter::file`] (from
/// [`PAGE_DATA_OFFSET`] on, where the file is positioned) and then calls [`PageWriter::finish`].
#[derive(Debug)]
pub struct PageWriter {
    file: File,
    path: PathBuf,
    name: String,
    chunk_size: u64,
    written: Written,
}

impl ImageDir {
    /// Create `pages-PID.img` (mode 0600) with its header page written and the file positioned at
    /// [`PAGE_DATA_OFFSET`]. `chunk_size` must be a nonzero multiple of [`PAGE_SIZE`], at most
    /// [`MAX_CHUNK_SIZE`].
    pub fn create_pages(&self, pid: i32, chunk_size: u64) -> Result<PageWriter, ImageError> {
        check_pid(ImageKind::Pages, Some(pid))?;
        let name = ImageKind::Pages.file_name(Some(pid));
        check_chunk_size(&name, chunk_size)?;
        let path = self.path().join(&name);
        let file = self.create_file(&path)?;
        self.page_writer(file, path, name, chunk_size)
    }

    /// Like [`ImageDir::create_pages`], but the page file is written into `file` (a staging memfd,
    /// for a page file that goes elsewhere: a page server) instead of this directory. The inventory
    /// still lists it as `pages-PID.img`.
    pub fn stage_pages(&self, pid: i32, chunk_size: u64, file: File) -> Result<PageWriter, ImageError> {
        check_pid(ImageKind::Pages, Some(pid))?;
        let name = ImageKind::Pages.file_name(Some(pid));
        check_chunk_size(&name, chunk_size)?;
        let path = PathBuf::from(format!("{name} (staged for the page server)"));
        self.page_writer(file, path, name, chunk_size)
    }

    fn page_writer(&self, file: File, path: PathBuf, name: String, chunk_size: u64) -> Result<PageWriter, ImageError> {
        let mut header = vec![0u8; PAGE_DATA_OFFSET as usize];
        header[..HEADER_LEN].copy_from_slice(&encode_header(ImageKind::Pages));
        file.write_all_at(&header, 0)
            .and_then(|()| (&file).seek(SeekFrom::Start(PAGE_DATA_OFFSET)).map(drop))
            .map_err(|e| ImageError::io(&path, e))?;
        Ok(PageWriter { file, path, name, chunk_size, written: self.written().clone() })
    }

    /// Open `pages-PID.img` for reading, positioned at [`PAGE_DATA_OFFSET`], after checking `map`
    /// (see [`validate_pagemap`]), the file's header page, that its size fits `map`, and in an opened
    /// image that its inventory entry matches `map`'s chunk checksums.
    pub fn open_pages(&self, pid: i32, map: &PageMap) -> Result<File, ImageError> {
        check_pid(ImageKind::Pages, Some(pid))?;
        validate_pagemap(&ImageKind::PageMap.file_name(Some(pid)), map)?;
        let name = ImageKind::Pages.file_name(Some(pid));
        let path = self.path().join(&name);
        let file = File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        let size = file.metadata().map_err(|e| ImageError::io(&path, e))?.len();
        if let Some(listed) = self.listed(&name)? {
            check_size(&name, size, listed.size, "inventory.img")?;
            let checksum = chunk_list_checksum(&map.chunk_checksums);
            if checksum != listed.checksum {
                return Err(ImageError::Digest { file: name, actual: checksum, listed: listed.checksum });
            }
        }
        check_page_header(&file, &path, &name, size, map.total_pages)?;
        let expected = if crate::compress::is_compressed(map) {
            crate::compress::compressed_file_size(map)
        } else {
            page_file_size(map.total_pages)
        };
        check_size(&name, size, expected, "the page map")?;
        (&file).seek(SeekFrom::Start(PAGE_DATA_OFFSET)).map_err(|e| ImageError::io(&path, e))?;
        Ok(file)
    }
}

impl PageWriter {
    /// The page file, positioned at [`PAGE_DATA_OFFSET`] when the writer was created.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Finish the page file once `data_len` bytes of pages have been written from
    /// [`PAGE_DATA_OFFSET`] on: compute the chunk checksums, fill the page count into the header
    /// page, and record the file's digest for the inventory. Returns the chunk checksums (for the
    /// page map) and the digest.
    pub fn finish(self, data_len: u64) -> Result<(Vec<u64>, FileDigest), ImageError> {
        self.check_len(data_len)?;
        let checksums =
            hash_chunks(&self.file, data_len, self.chunk_size).map_err(|e| ImageError::io(&self.path, e))?;
        self.seal(data_len, checksums)
    }

    /// Like [`PageWriter::finish`], with the chunk checksums already computed by the caller (with
    /// [`hash_chunk`], while the data was being written). Their number must match `data_len`.
    pub fn finish_with(self, data_len: u64, checksums: Vec<u64>) -> Result<(Vec<u64>, FileDigest), ImageError> {
        self.check_len(data_len)?;
        let want = if self.chunk_size == 0 { 0 } else { data_len.div_ceil(self.chunk_size) };
        if checksums.len() as u64 != want {
            let problem = format!("{} chunk checksums for {want} chunks", checksums.len());
            return Err(ImageError::Usage { file: self.name.clone(), problem });
        }
        self.seal(data_len, checksums)
    }

    fn check_len(&self, data_len: u64) -> Result<(), ImageError> {
        let usage = |problem: String| ImageError::Usage { file: self.name.clone(), problem };
        if !data_len.is_multiple_of(PAGE_SIZE) {
            return Err(usage(format!("data length {data_len} is not a multiple of the page size")));
        }
        let size = self.file.metadata().map_err(|e| ImageError::io(&self.path, e))?.len();
        let expected = PAGE_DATA_OFFSET.saturating_add(data_len);
        if size != expected {
            return Err(usage(format!("the file is {size} bytes, but {data_len} bytes of data make {expected}")));
        }
        Ok(())
    }

    /// Fill the page count into the header page and record the digest for the inventory.
    fn seal(self, data_len: u64, checksums: Vec<u64>) -> Result<(Vec<u64>, FileDigest), ImageError> {
        let size = PAGE_DATA_OFFSET + data_len;
        let nr_pages = data_len / PAGE_SIZE;
        self.file.write_all_at(&nr_pages.to_le_bytes(), NR_PAGES_OFFSET).map_err(|e| ImageError::io(&self.path, e))?;
        let digest = FileDigest { name: self.name.clone(), size, checksum: chunk_list_checksum(&checksums) };
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        written.insert(self.name.clone(), digest.clone());
        Ok((checksums, digest))
    }
}

/// The checksum of chunk number `chunk` of a page file's data (`data_len` bytes from
/// [`PAGE_DATA_OFFSET`], in chunks of `chunk_size`): the one definition every writer and reader uses.
pub fn hash_chunk(file: &File, data_len: u64, chunk_size: u64, chunk: u64) -> std::io::Result<u64> {
    Ok(hash_chunk_range(file, data_len, chunk_size, chunk..chunk + 1)?.pop().unwrap_or(0))
}

/// Verify the data of an opened page file (`file_name`, for messages) against `map`'s chunk
/// checksums. The error names the first chunk that does not match.
pub fn verify_pages(file: &File, file_name: &str, map: &PageMap) -> Result<(), ImageError> {
    let data_len = check_map_and_size(file, file_name, map)?;
    let io_err = |e| ImageError::io(file_name, e);
    let computed = hash_chunks(file, data_len, map.chunk_size).map_err(io_err)?;
    let bad = computed.iter().zip(&map.chunk_checksums).position(|(a, b)| a != b);
    match bad {
        None => Ok(()),
        Some(chunk) => Err(ImageError::ChunkChecksum {
            file: file_name.to_owned(),
            chunk,
            offset: PAGE_DATA_OFFSET + chunk as u64 * map.chunk_size,
        }),
    }
}

/// [`verify_pages`] for the chunks `wanted` alone (by index, ascending): the page map and the
/// file's size are checked as there, and only those chunks are read and hashed. For a parent image
/// of which a restore reads a few pages; an empty `wanted` checks the map and the size only.
pub fn verify_page_chunks(file: &File, file_name: &str, map: &PageMap, wanted: &[u64]) -> Result<(), ImageError> {
    let data_len = check_map_and_size(file, file_name, map)?;
    let io_err = |e| ImageError::io(file_name, e);
    let mut i = 0;
    while i < wanted.len() {
        // Chunks next to each other are hashed in one pass.
        let mut j = i + 1;
        while j < wanted.len() && wanted[j] == wanted[j - 1] + 1 {
            j += 1;
        }
        let (first, end) = (wanted[i], wanted[j - 1] + 1);
        let computed = hash_chunk_range(file, data_len, map.chunk_size, first..end).map_err(io_err)?;
        for (k, sum) in (first..end).zip(computed) {
            if map.chunk_checksums.get(k as usize) != Some(&sum) {
                return Err(ImageError::ChunkChecksum {
                    file: file_name.to_owned(),
                    chunk: k as usize,
                    offset: PAGE_DATA_OFFSET + k * map.chunk_size,
                });
            }
        }
        i = j;
    }
    Ok(())
}

/// The page map checked on its own, and the page file's size against it: the length of the page
/// data.
fn check_map_and_size(file: &File, file_name: &str, map: &PageMap) -> Result<u64, ImageError> {
    let map_name = match file_name.strip_prefix("pages-") {
        Some(rest) => format!("pagemap-{rest}"),
        None => file_name.to_owned(),
    };
    let data_len = validate_pagemap(&map_name, map)?;
    let size = file.metadata().map_err(|e| ImageError::io(file_name, e))?.len();
    check_size(file_name, size, page_file_size(map.total_pages), "the page map")?;
    Ok(data_len)
}

/// Check a page map on its own (`file_name` is the page map's, for messages): the chunk size, that
/// the runs are page aligned, ascending, non-overlapping and add up to `total_pages`, and that there
/// is one checksum per chunk. Returns the length of the page data in bytes.
///
/// A map without pages may have a zero `chunk_size`.
pub fn validate_pagemap(file_name: &str, map: &PageMap) -> Result<u64, ImageError> {
    let pages = check_runs(file_name, "runs", &map.runs)?;
    // Pages inherited from the parent are not in the page file, but restore walks them all the same.
    check_runs(file_name, "inherited", &map.inherited)?;
    check_runs(file_name, "in_parent", &map.in_parent)?;
    check_disjoint(file_name, &map.runs, &map.in_parent)?;
    check_runs(file_name, "punched", &map.punched)?;
    check_within(file_name, &map.punched, &map.runs)?;
    crate::compress::check_frames(file_name, map)?;
    if pages != map.total_pages {
        let problem = format!("{} does not match the runs ({pages} pages)", map.total_pages);
        return Err(ImageError::field(file_name, "total_pages", problem));
    }
    let data_len = pages
        .checked_mul(PAGE_SIZE)
        .filter(|len| len.checked_add(PAGE_DATA_OFFSET).is_some())
        .ok_or_else(|| ImageError::field(file_name, "total_pages", format!("{pages} pages overflow")))?;
    if data_len == 0 && map.chunk_size == 0 && map.chunk_checksums.is_empty() {
        return Ok(0);
    }
    check_chunk_size(file_name, map.chunk_size)?;
    let chunks = data_len.div_ceil(map.chunk_size);
    if chunks != map.chunk_checksums.len() as u64 {
        let problem = format!(
            "{} checksums, but {data_len} bytes in chunks of {} make {chunks}",
            map.chunk_checksums.len(),
            map.chunk_size
        );
        return Err(ImageError::field(file_name, "chunk_checksums", problem));
    }
    Ok(data_len)
}

/// Check the runs of `map` and return their total number of pages.
fn check_runs(file_name: &str, field: &'static str, runs: &[crate::model::PageRun]) -> Result<u64, ImageError> {
    let mut pages: u64 = 0;
    let mut prev_end: u64 = 0;
    for (i, run) in runs.iter().enumerate() {
        let bad = |problem: String| ImageError::field(file_name, field, format!("run {i}: {problem}"));
        if !run.vaddr.is_multiple_of(PAGE_SIZE) {
            return Err(bad(format!("vaddr {:#x} is not page aligned", run.vaddr)));
        }
        if run.nr_pages == 0 {
            return Err(bad("no pages".into()));
        }
        let end = run
            .nr_pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| run.vaddr.checked_add(len))
            .ok_or_else(|| bad(format!("{} pages at {:#x} overflow", run.nr_pages, run.vaddr)))?;
        if run.vaddr < prev_end {
            return Err(bad(format!("vaddr {:#x} is below the end of the run before", run.vaddr)));
        }
        prev_end = end;
        pages = pages.checked_add(run.nr_pages).ok_or_else(|| bad("the page count overflows".into()))?;
    }
    Ok(pages)
}

/// The address just past run `r` (saturating: a run this large fails `check_runs`).
fn run_end(r: &crate::model::PageRun) -> u64 {
    r.vaddr.saturating_add(r.nr_pages.saturating_mul(PAGE_SIZE))
}

/// No page is both in the page file and in the parent image.
fn check_disjoint(
    file_name: &str,
    runs: &[crate::model::PageRun],
    in_parent: &[crate::model::PageRun],
) -> Result<(), ImageError> {
    let end = run_end;
    let mut j = 0;
    for r in runs {
        while j < in_parent.len() && end(&in_parent[j]) <= r.vaddr {
            j += 1;
        }
        if let Some(p) = in_parent.get(j).filter(|p| p.vaddr < end(r)) {
            let problem = format!("run at {:#x} overlaps the run at {:#x} of runs", p.vaddr, r.vaddr);
            return Err(ImageError::field(file_name, "in_parent", problem));
        }
    }
    Ok(())
}

/// Every page of `inner` (sorted) is a page of `outer` (sorted, checked).
fn check_within(
    file_name: &str,
    inner: &[crate::model::PageRun],
    outer: &[crate::model::PageRun],
) -> Result<(), ImageError> {
    let end = run_end;
    let mut j = 0;
    for r in inner {
        let mut at = r.vaddr;
        while at < end(r) {
            while j < outer.len() && end(&outer[j]) <= at {
                j += 1;
            }
            match outer.get(j).filter(|o| o.vaddr <= at) {
                Some(o) => at = end(o),
                None => {
                    let problem = format!("page {at:#x} is not a page of runs");
                    return Err(ImageError::field(file_name, "punched", problem));
                }
            }
        }
    }
    Ok(())
}

/// A chunk size must be a nonzero multiple of the page size, at most [`MAX_CHUNK_SIZE`].
fn check_chunk_size(file: &str, chunk_size: u64) -> Result<(), ImageError> {
    if chunk_size == 0 || !chunk_size.is_multiple_of(PAGE_SIZE) || chunk_size > MAX_CHUNK_SIZE {
        let problem = format!("{chunk_size} is not a nonzero multiple of {PAGE_SIZE} of at most {MAX_CHUNK_SIZE}");
        return Err(ImageError::field(file, "chunk_size", problem));
    }
    Ok(())
}

/// Check the header page of a page file: the common header, the page count, the zero padding.
fn check_page_header(file: &File, path: &Path, name: &str, size: u64, total_pages: u64) -> Result<(), ImageError> {
    if size < PAGE_DATA_OFFSET {
        return Err(ImageError::truncated(name, "header page", PAGE_DATA_OFFSET, size));
    }
    let mut page = vec![0u8; PAGE_DATA_OFFSET as usize];
    file.read_exact_at(&mut page, 0).map_err(|e| ImageError::io(path, e))?;
    check_header(name, ImageKind::Pages, &page)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&page[HEADER_LEN..HEADER_LEN + 8]);
    let nr_pages = u64::from_le_bytes(word);
    if nr_pages != total_pages {
        let problem = format!("{nr_pages}, but the page map has {total_pages} pages");
        return Err(ImageError::field(name, "nr_pages", problem));
    }
    if let Some(at) = page[HEADER_LEN + 8..].iter().position(|&b| b != 0) {
        let problem = format!("nonzero byte at offset {}", HEADER_LEN + 8 + at);
        return Err(ImageError::field(name, "header padding", problem));
    }
    Ok(())
}

/// The size of a page file holding `pages` pages (saturating: a map this large fails elsewhere).
fn page_file_size(pages: u64) -> u64 {
    pages.saturating_mul(PAGE_SIZE).saturating_add(PAGE_DATA_OFFSET)
}

/// The checksum the inventory lists for a page file: xxh3-64 of the little-endian chunk checksums.
pub fn chunk_list_checksum(checksums: &[u64]) -> u64 {
    let bytes: Vec<u8> = checksums.iter().flat_map(|c| c.to_le_bytes()).collect();
    xxh3_64(&bytes)
}

/// The xxh3-64 of each `chunk_size` chunk of the `data_len` bytes of page data of `file`, using two
/// threads when there is enough data.
pub fn hash_chunks(file: &File, data_len: u64, chunk_size: u64) -> std::io::Result<Vec<u64>> {
    if data_len == 0 || chunk_size == 0 {
        return Ok(Vec::new());
    }
    let chunks = data_len.div_ceil(chunk_size);
    if data_len < PARALLEL_THRESHOLD || chunks < 2 {
        return hash_chunk_range(file, data_len, chunk_size, 0..chunks);
    }
    let mid = chunks / 2;
    std::thread::scope(|scope| {
        let upper = scope.spawn(|| hash_chunk_range(file, data_len, chunk_size, mid..chunks));
        let mut sums = hash_chunk_range(file, data_len, chunk_size, 0..mid)?;
        let upper = upper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        sums.extend(upper);
        Ok(sums)
    })
}

/// Hash the chunks `range` (by index) of the page data, reading it in [`READ_BLOCK`] pieces.
fn hash_chunk_range(
    file: &File,
    data_len: u64,
    chunk_size: u64,
    range: std::ops::Range<u64>,
) -> std::io::Result<Vec<u64>> {
    let mut buf = vec![0u8; READ_BLOCK.min(chunk_size) as usize];
    let mut sums = Vec::with_capacity(range.end.saturating_sub(range.start) as usize);
    for chunk in range {
        let start = chunk.saturating_mul(chunk_size);
        let end = start.saturating_add(chunk_size).min(data_len);
        let mut hasher = Xxh3Default::new();
        let mut at = start;
        while at < end {
            let n = (end - at).min(buf.len() as u64) as usize;
            let block = &mut buf[..n];
            file.read_exact_at(block, PAGE_DATA_OFFSET + at)?;
            hasher.update(block);
            at += n as u64;
        }
        sums.push(hasher.digest());
    }
    Ok(sums)
}
