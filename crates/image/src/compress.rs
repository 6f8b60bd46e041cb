//! Compressed page files (`--compress`): the page data in zstd frames, one per checksum chunk.
//!
//! A compressed `pages-PID.img` is the same header page, then frame 0, frame 1, ... back to back:
//! frame k is chunk k of the page data (`PageMap::chunk_size` bytes, the last one shorter)
//! compressed on its own, so any chunk is read without the others. The page map says
//! `compression` (field 621) and lists each frame's size (`frame_sizes`, 622), from which a
//! reader finds frame k's offset. The chunk checksums are those of the uncompressed chunks, as in
//! an uncompressed file: [`decompress_pages`] makes the uncompressed page file again (all of it, or
//! only the chunks a reader needs) and checks every chunk it makes, so the readers of page data
//! need no change. A frame that does not decompress, or decompresses to the wrong length or bytes,
//! is refused naming the file, the chunk and the frame's offset in the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

use crate::dir::check_pid;
use crate::model::{FileDigest, PageMap};
use crate::{ImageDir, ImageError, ImageKind, PAGE_DATA_OFFSET, PAGE_SIZE};

/// `PageMap::compression` of a page file in zstd frames.
pub const COMPRESSION_ZSTD: i32 = 1;
/// The zstd level of `--compress`: a fast one.
pub const ZSTD_LEVEL: i32 = 1;

/// Whether `map`'s page file is compressed.
pub fn is_compressed(map: &PageMap) -> bool {
    map.compression != 0
}

/// The size of the page file of a compressed `map`: the header page and its frames (saturating: a
/// map this large fails elsewhere).
pub fn compressed_file_size(map: &PageMap) -> u64 {
    map.frame_sizes.iter().fold(PAGE_DATA_OFFSET, |a, &b| a.saturating_add(b))
}

/// The bytes of page data `map`'s page file stores: its frames, or the raw pages.
pub fn stored_bytes(map: &PageMap) -> u64 {
    if is_compressed(map) {
        map.frame_sizes.iter().fold(0u64, |a, &b| a.saturating_add(b))
    } else {
        map.total_pages.saturating_mul(PAGE_SIZE)
    }
}

/// Check the compression fields of `map` (`file_name` is the page map's): a known compression,
/// one frame per chunk, each frame nonempty and at most the bound zstd gives for its chunk.
pub(crate) fn check_frames(file_name: &str, map: &PageMap) -> Result<(), ImageError> {
    if map.compression == 0 {
        if !map.frame_sizes.is_empty() {
            return Err(ImageError::field(file_name, "frame_sizes", "frames in an uncompressed page map".to_string()));
        }
        return Ok(());
    }
    if map.compression != COMPRESSION_ZSTD {
        return Err(ImageError::field(file_name, "compression", format!("unknown compression {}", map.compression)));
    }
    if map.frame_sizes.len() != map.chunk_checksums.len() {
        let problem = format!("{} frames for {} chunks", map.frame_sizes.len(), map.chunk_checksums.len());
        return Err(ImageError::field(file_name, "frame_sizes", problem));
    }
    let bound = zstd::zstd_safe::compress_bound(map.chunk_size as usize) as u64;
    if let Some(k) = map.frame_sizes.iter().position(|&f| f == 0 || f > bound) {
        let problem = format!("frame {k} is {} bytes, outside 1..={bound}", map.frame_sizes[k]);
        return Err(ImageError::field(file_name, "frame_sizes", problem));
    }
    Ok(())
}

/// Write `pages-PID.img` of `dir` compressed from `staged`, an uncompressed page file of
/// `data_len` bytes of page data in chunks of `chunk_size` whose checksums are `checksums`:
/// chunks compressed by several threads, frames written in order. Returns the frame sizes (for
/// the page map) and the page file's digest, which is recorded for the inventory in place of the
/// staged file's.
pub fn compress_pages(
    dir: &ImageDir,
    pid: i32,
    staged: &File,
    data_len: u64,
    chunk_size: u64,
    checksums: &[u64],
) -> Result<(Vec<u64>, FileDigest), ImageError> {
    check_pid(ImageKind::Pages, Some(pid))?;
    let name = ImageKind::Pages.file_name(Some(pid));
    let path = dir.path().join(&name);
    let out = dir.create_file(&path)?;
    let io = |e| ImageError::io(&path, e);
    let mut header = vec![0u8; PAGE_DATA_OFFSET as usize];
    staged.read_exact_at(&mut header, 0).map_err(|e| ImageError::io(&name, e))?;
    out.write_all_at(&header, 0).map_err(io)?;
    let chunks = if chunk_size == 0 { 0 } else { data_len.div_ceil(chunk_size) as usize };
    let threads = workers(chunks);
    // A window of chunks at a time: compressed by the threads, then written in order.
    let window = threads * 2;
    let mut frames = Vec::with_capacity(chunks);
    let mut at = PAGE_DATA_OFFSET;
    let mut first = 0;
    while first < chunks {
        let last = (first + window).min(chunks);
        let done: Vec<Mutex<Option<std::io::Result<Vec<u8>>>>> = (first..last).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(first);
        std::thread::scope(|s| {
            for _ in 0..threads.min(last - first) {
                s.spawn(|| {
                    let mut buf = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= last {
                            break;
                        }
                        let r = read_chunk(staged, data_len, chunk_size, k as u64, &mut buf)
                            .and_then(|()| zstd::bulk::compress(&buf, ZSTD_LEVEL));
                        *done[k - first].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                    }
                });
            }
        });
        for slot in done {
            let frame = slot
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| Err(std::io::Error::other("a compression thread stopped early")));
            let frame = frame.map_err(io)?;
            out.write_all_at(&frame, at).map_err(io)?;
            at += frame.len() as u64;
            frames.push(frame.len() as u64);
        }
        first = last;
    }
    out.set_len(at).map_err(io)?;
    let digest = FileDigest { name: name.clone(), size: at, checksum: crate::chunk_list_checksum(checksums) };
    dir.remember(digest.clone());
    Ok((frames, digest))
}

/// Threads for `chunks` chunks: one per CPU, at most 8, at least 1.
fn workers(chunks: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.min(8).min(chunks).max(1)
}

/// Chunk `k` of the uncompressed page data of `file` into `buf`.
fn read_chunk(file: &File, data_len: u64, chunk_size: u64, k: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let start = k * chunk_size;
    let len = chunk_size.min(data_len - start);
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, PAGE_DATA_OFFSET + start)
}

/// Make in `out` (an empty file: a memfd) the uncompressed page file of the compressed page file
/// `file` (`name`, for messages) of `map`: the header page, and the chunks `wanted` (by index;
/// `None`: all), each decompressed, of the right length and checked against its checksum, by
/// several threads. The other chunks are left as holes (zeros). A bad frame is refused naming
/// the chunk and its offset in `file`.
pub fn decompress_pages(
    file: &File,
    name: &str,
    map: &PageMap,
    wanted: Option<&[u64]>,
    out: &File,
) -> Result<(), ImageError> {
    let data_len = map.total_pages.saturating_mul(PAGE_SIZE);
    let mut header = vec![0u8; PAGE_DATA_OFFSET as usize];
    file.read_exact_at(&mut header, 0).map_err(|e| ImageError::io(name, e))?;
    out.write_all_at(&header, 0).map_err(|e| ImageError::io(name, e))?;
    out.set_len(PAGE_DATA_OFFSET + data_len).map_err(|e| ImageError::io(name, e))?;
    let cs = map.chunk_size;
    decompress_chunks(file, name, map, wanted, &|k, chunk| {
        out.write_all_at(chunk, PAGE_DATA_OFFSET + k * cs).map_err(|e| ImageError::io(name, e))
    })
}

/// What takes each decompressed chunk: its index and bytes.
pub type ChunkSink<'a> = dyn Fn(u64, &[u8]) -> Result<(), ImageError> + Sync + 'a;

/// Decompress the chunks `wanted` (by index; `None`: all) of the compressed page file `file`
/// (`name`, for messages) of `map` on several threads, each checked (length and checksum), and
/// hand each to `sink` with its index (from any of the threads). The first error stops the work
/// and is returned; a bad frame is refused naming the chunk and its offset in `file`.
pub fn decompress_chunks(
    file: &File,
    name: &str,
    map: &PageMap,
    wanted: Option<&[u64]>,
    sink: &ChunkSink<'_>,
) -> Result<(), ImageError> {
    let data_len = map.total_pages.saturating_mul(PAGE_SIZE);
    let cs = map.chunk_size;
    let mut offsets = Vec::with_capacity(map.frame_sizes.len());
    let mut at = PAGE_DATA_OFFSET;
    for &f in &map.frame_sizes {
        offsets.push(at);
        at = at.saturating_add(f);
    }
    let all: Vec<u64> = (0..map.frame_sizes.len() as u64).collect();
    let wanted = wanted.unwrap_or(&all);
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers(wanted.len()) {
            s.spawn(|| {
                let mut frame = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&k) = wanted.get(i) else { break };
                    let r =
                        one_frame(file, name, map, (k, offsets.get(k as usize).copied()), (data_len, cs), &mut frame)
                            .and_then(|chunk| sink(k, &chunk));
                    if let Err(e) = r {
                        let mut slot = first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        slot.get_or_insert(e);
                        // The other threads stop at their next chunk.
                        next.store(wanted.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Read, decompress and check frame `k` (at file offset `offset`); returns the chunk.
fn one_frame(
    file: &File,
    name: &str,
    map: &PageMap,
    (k, offset): (u64, Option<u64>),
    (data_len, cs): (u64, u64),
    frame: &mut Vec<u8>,
) -> Result<Vec<u8>, ImageError> {
    let (Some(offset), Some(&size), Some(&sum)) =
        (offset, map.frame_sizes.get(k as usize), map.chunk_checksums.get(k as usize))
    else {
        let problem = format!("no chunk {k}");
        return Err(ImageError::Usage { file: name.to_owned(), problem });
    };
    let bad = || ImageError::ChunkChecksum { file: name.to_owned(), chunk: k as usize, offset };
    frame.resize(size as usize, 0);
    file.read_exact_at(frame, offset).map_err(|e| ImageError::io(name, e))?;
    let len = cs.min(data_len.saturating_sub(k * cs)) as usize;
    let chunk = zstd::bulk::decompress(frame, len).map_err(|_| bad())?;
    if chunk.len() != len || xxh3_64(&chunk) != sum {
        return Err(bad());
    }
    Ok(chunk)
}
