//! The chain of parent images of an incremental dump: each image directory may hold a `parent`
//! symlink (CRIU's layout) to the image of the round before, whose pages its page maps list as
//! `in_parent`. Restore resolves every such page to the nearest image of the chain that saved it,
//! checks the page files it reads (sizes, inventory digests, chunk checksums), and makes the task
//! read them in place.

use crate::error::{Error, Result};
use crate::files::FdImporter;
use crate::mem::track::{intersect, ranges_of, subtract, Ranges};
use crate::Progress;
use stasis_image::model::PageMap;
use stasis_image::{ImageDir, ImageKind, PAGE_DATA_OFFSET};
use stasis_sys::remote::Remote;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The name of the link to the parent image in an image directory.
pub const PARENT: &str = "parent";
/// Longest chain followed (a loop of links is refused by it).
const MAX_DEPTH: usize = 64;
const IOV_MAX: usize = 1024;

/// The images above `dir` (whose inventory says whether it has a parent), nearest first.
pub fn parents(dir: &ImageDir) -> Result<Vec<ImageDir>> {
    let mut out: Vec<ImageDir> = Vec::new();
    let mut at = dir.path().to_path_buf();
    let mut want = dir.inventory().map_or(0, |i| i.parent_created_unix_ms);
    while want != 0 {
        if out.len() == MAX_DEPTH {
            return Err(Error::Incompatible {
                file: link(&at),
                what: format!("a chain of more than {MAX_DEPTH} parent images"),
            });
        }
        let next = at.join(PARENT);
        let parent = ImageDir::open(&next).map_err(|e| Error::Step {
            pid: stasis_sys::Pid(0),
            what: format!("the parent image {} (`{PARENT}` link of {})", next.display(), at.display()),
            source: Box::new(e.into()),
        })?;
        let inv = parent.inventory().cloned().unwrap_or_default();
        if inv.created_unix_ms != want {
            let what = format!(
                "the parent image was made at {} ms, not at {want} ms as this image says: it was replaced",
                inv.created_unix_ms
            );
            return Err(Error::Incompatible { file: link(&at), what });
        }
        want = inv.parent_created_unix_ms;
        at = next;
        out.push(parent);
    }
    Ok(out)
}

fn link(dir: &Path) -> String {
    dir.join(PARENT).display().to_string()
}

/// Pages at an address, of a length, at an offset of a page file.
type Piece = (u64, u64, u64);

/// Pages of one process read from the parent images: per image of the chain, its page file and
/// the pieces (address, length, offset in the file) read from it.
#[derive(Default)]
pub struct Chain {
    levels: Vec<(File, Vec<Piece>)>,
    bytes: u64,
    /// The chunks of the uncompressed parent page files that pieces are read from, yet to be
    /// checked against their checksums (see [`Chain::unchecked`]).
    unchecked: Vec<Unchecked>,
}

/// Chunks of a parent page file to check: the file, its name (for messages), its page map, and
/// the chunks (by index, ascending).
pub struct Unchecked {
    pub file: File,
    pub name: String,
    pub map: PageMap,
    pub chunks: Vec<u64>,
}

/// Resolve the `in_parent` pages of process `pid` (page map `map`) through `parents`.
pub fn resolve(pid: i32, map: &PageMap, parents: &[ImageDir]) -> Result<Chain> {
    let mut pending: Ranges = ranges_of(&map.in_parent);
    let mut chain = Chain::default();
    let mut child = PathBuf::from("this image");
    for dir in parents {
        if pending.is_empty() {
            break;
        }
        let name = ImageKind::PageMap.file_name(Some(pid));
        let pmap: PageMap = dir.read_one(ImageKind::PageMap, Some(pid))?;
        let (pieces, rest) = locate(&pending, &pmap);
        let file = if stasis_image::compress::is_compressed(&pmap) {
            // Only the chunks read, each checked as it is decompressed.
            let wanted = chunks_of(&pieces, pmap.chunk_size);
            super::pages::open_raw(dir, pid, &pmap, Some(&wanted))?
        } else {
            // The map and the size now; the chunks read, while the restore goes on (see
            // `Chain::unchecked`): the others are never read.
            let file = dir.open_pages(pid, &pmap)?;
            let name = ImageKind::Pages.file_name(Some(pid));
            stasis_image::verify_page_chunks(&file, &name, &pmap, &[])?;
            let chunks = chunks_of(&pieces, pmap.chunk_size);
            if !chunks.is_empty() {
                let name = dir.path().join(&name).display().to_string();
                let copy = file.try_clone().map_err(Error::io(&name))?;
                chain.unchecked.push(Unchecked { file: copy, name, map: pmap.clone(), chunks });
            }
            file
        };
        if let Some(&(s, e)) = intersect(&pending, &ranges_of(&pmap.punched)).first() {
            let what = format!(
                "pages {s:#x}-{e:#x} of pid {pid} are in parent for {}, but were punched out of this image by --auto-dedup or stasis dedup of a newer one",
                child.display()
            );
            return Err(Error::Incompatible { file: dir.path().join(name).display().to_string(), what });
        }
        let missing = subtract(&rest, &ranges_of(&pmap.in_parent));
        if let Some(&(s, e)) = missing.first() {
            let what = format!(
                "pages {s:#x}-{e:#x} of pid {pid} are in parent for {}, but not in this image",
                child.display()
            );
            return Err(Error::Incompatible { file: dir.path().join(name).display().to_string(), what });
        }
        chain.bytes += pieces.iter().map(|p| p.1).sum::<u64>();
        if !pieces.is_empty() {
            chain.levels.push((file, pieces));
        }
        pending = intersect(&rest, &ranges_of(&pmap.in_parent));
        child = dir.path().to_path_buf();
    }
    if let Some(&(s, e)) = pending.first() {
        let what = format!("pages {s:#x}-{e:#x} of pid {pid} are in parent, but there is no parent image for them");
        return Err(Error::Incompatible { file: ImageKind::PageMap.file_name(Some(pid)), what });
    }
    Ok(chain)
}

/// The chunks (by index) that hold the `pieces`.
fn chunks_of(pieces: &[Piece], chunk_size: u64) -> Vec<u64> {
    let mut chunks: Vec<u64> = pieces
        .iter()
        .flat_map(|&(_, len, off)| {
            (off - PAGE_DATA_OFFSET) / chunk_size..=(off + len - 1 - PAGE_DATA_OFFSET) / chunk_size
        })
        .collect();
    chunks.sort_unstable();
    chunks.dedup();
    chunks
}

/// The pieces of `pending` saved in `pmap`'s page file (address, length, file offset), and the
/// rest of `pending`.
pub(crate) fn locate(pending: &[(u64, u64)], pmap: &PageMap) -> (Vec<Piece>, Ranges) {
    let runs = ranges_of(&pmap.runs);
    let mut starts = Vec::with_capacity(runs.len());
    let mut off = PAGE_DATA_OFFSET;
    for &(s, e) in &runs {
        starts.push(off);
        off += e - s;
    }
    let pieces = intersect(pending, &runs)
        .into_iter()
        .map(|(s, e)| {
            let i = runs.partition_point(|r| r.1 <= s);
            (s, e - s, starts[i] + (s - runs[i].0))
        })
        .collect();
    (pieces, subtract(pending, &runs))
}

impl Chain {
    /// The chunks of parent page files this chain reads that are still to be checked: the restore
    /// checks them before it lets any task go (`stasis_image::verify_page_chunks`).
    pub fn unchecked(&mut self) -> Vec<Unchecked> {
        std::mem::take(&mut self.unchecked)
    }

    /// Make the task read every page of the chain into place (its areas are mapped writable).
    pub fn fill(&self, inj: &mut dyn Remote, imp: &mut FdImporter, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let mut done = 0;
        for (file, pieces) in &self.levels {
            let fd = imp.import(inj, file.as_fd())?;
            let mut i = 0;
            while i < pieces.len() {
                // Pieces next to each other in the file go in one preadv.
                let mut j = i + 1;
                while j < pieces.len() && j - i < IOV_MAX && pieces[j].2 == pieces[j - 1].2 + pieces[j - 1].1 {
                    j += 1;
                }
                let mut iov: Vec<(u64, u64)> = pieces[i..j].iter().map(|p| (p.0, p.1)).collect();
                read_at(inj, fd, &mut iov, pieces[i].2)?;
                done += pieces[i..j].iter().map(|p| p.1).sum::<u64>();
                progress(Progress { done_bytes: done, total_bytes: self.bytes });
                i = j;
            }
            inj.close(fd)?;
        }
        Ok(())
    }
}

fn read_at(inj: &mut dyn Remote, fd: i32, iov: &mut Vec<(u64, u64)>, mut off: u64) -> Result<()> {
    while !iov.is_empty() {
        let n = inj.preadv(fd, &iov[..iov.len().min(IOV_MAX)], off)?;
        if n == 0 {
            return Err(Error::Failed {
                pid: inj.pid(),
                what: format!("a parent page file ends early at offset {off}"),
            });
        }
        off += n;
        let mut left = n;
        while left > 0 {
            if left >= iov[0].1 {
                left -= iov[0].1;
                iov.remove(0);
            } else {
                iov[0].0 += left;
                iov[0].1 -= left;
                left = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::locate;
    use stasis_image::model::{PageMap, PageRun};
    use stasis_image::PAGE_DATA_OFFSET;

    #[test]
    fn pages_are_found_at_their_offset_in_the_parent_file() {
        let p = 4096;
        let map = PageMap {
            runs: vec![PageRun { vaddr: 0, nr_pages: 2 }, PageRun { vaddr: 10 * p, nr_pages: 4 }],
            ..Default::default()
        };
        let (pieces, rest) = locate(&[(p, 3 * p), (11 * p, 12 * p)], &map);
        assert_eq!(pieces, vec![(p, p, PAGE_DATA_OFFSET + p), (11 * p, p, PAGE_DATA_OFFSET + 3 * p)]);
        assert_eq!(rest, vec![(2 * p, 3 * p)]);
    }
}
