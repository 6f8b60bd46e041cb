//! Page files: round trip, chunk checksums, damaged data, header and size, page map validation.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::xxh3_64;

use super::*;
use crate::{chunk_list_checksum, validate_pagemap, verify_page_chunks, verify_pages, PAGE_DATA_OFFSET};

fn read_pagemap(dir: &ImageDir) -> PageMap {
    dir.read_one(ImageKind::PageMap, Some(PID)).unwrap()
}

#[test]
fn round_trip_with_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let map = read_pagemap(&dir);
    assert_eq!(map.chunk_checksums.len(), 3);
    let data = page_data(5);
    for (i, chunk) in data.chunks(8192).enumerate() {
        assert_eq!(map.chunk_checksums[i], xxh3_64(chunk), "chunk {i}");
    }
    let listed = dir.listed("pages-4242.img").unwrap().unwrap();
    assert_eq!(listed.checksum, chunk_list_checksum(&map.chunk_checksums));
    assert_eq!(listed.size, 4096 + 5 * 4096);
    let mut file = dir.open_pages(PID, &map).unwrap();
    verify_pages(&file, "pages-4242.img", &map).unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    let mut header = [0u8; 4096];
    file.read_exact_at(&mut header, 0).unwrap();
    assert_eq!(&header[..8], b"STSIPAGE");
    assert_eq!(header[16..24], 5u64.to_le_bytes());
}

#[test]
fn bad_chunk_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let map = read_pagemap(&dir);
    let path = tmp.path().join("pages-4242.img");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"X", PAGE_DATA_OFFSET + 3 * 4096 + 17).unwrap();
    let file = dir.open_pages(PID, &map).unwrap();
    let e = verify_pages(&file, "pages-4242.img", &map).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: checksum mismatch in chunk 1 (file offset 12288)");
    // Only the chunks wanted.
    verify_page_chunks(&file, "pages-4242.img", &map, &[]).unwrap();
    verify_page_chunks(&file, "pages-4242.img", &map, &[0, 2]).unwrap();
    for wanted in [&[0, 1][..], &[1]] {
        let e = verify_page_chunks(&file, "pages-4242.img", &map, wanted).unwrap_err();
        assert_eq!(e.to_string(), "pages-4242.img: checksum mismatch in chunk 1 (file offset 12288)");
    }
    // The last, shorter chunk.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"X", PAGE_DATA_OFFSET + 4 * 4096).unwrap();
    file.write_all_at(&page_data(5)[3 * 4096 + 17..3 * 4096 + 18], PAGE_DATA_OFFSET + 3 * 4096 + 17).unwrap();
    let file = dir.open_pages(PID, &map).unwrap();
    let e = verify_pages(&file, "pages-4242.img", &map).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: checksum mismatch in chunk 2 (file offset 20480)");
}

#[test]
fn size_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let path = tmp.path().join("pages-4242.img");
    OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0; 4096]).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: size 28672 does not match inventory.img (24576)");

    // Without an inventory, the page map is what the size is checked against.
    fs::remove_file(tmp.path().join("inventory.img")).unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let map = read_pagemap(&dir);
    let e = dir.open_pages(PID, &map).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: size 28672 does not match the page map (24576)");
    let file = fs::File::open(&path).unwrap();
    let e = verify_pages(&file, "pages-4242.img", &map).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: size 28672 does not match the page map (24576)");
    let e = verify_page_chunks(&file, "pages-4242.img", &map, &[]).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: size 28672 does not match the page map (24576)");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(100).unwrap();
    let e = dir.open_pages(PID, &map).unwrap_err();
    assert_eq!(e.to_string(), "pages-4242.img: truncated: header page needs 4096 bytes, 100 left");
}

#[test]
fn header_page_damage() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    fs::remove_file(tmp.path().join("inventory.img")).unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let map = read_pagemap(&dir);
    let path = tmp.path().join("pages-4242.img");
    let good = fs::read(&path).unwrap();
    let cases: [(usize, u8, &str); 5] = [
        (1, b'X', "pages-4242.img: bad magic 0x49535853 (not a stasis image file)"),
        (4, b'C', "pages-4242.img: wrong kind magic 0x45474143 (unknown), expected 0x45474150 (pages-PID.img)"),
        (8, 2, "pages-4242.img: format 2.0 is newer than this stasis supports (1.0)"),
        (16, 9, "pages-4242.img: field nr_pages: 9, but the page map has 5 pages"),
        (4000, 1, "pages-4242.img: field header padding: nonzero byte at offset 4000"),
    ];
    for (at, byte, want) in cases {
        let mut bad = good.clone();
        bad[at] = byte;
        fs::write(&path, &bad).unwrap();
        assert_eq!(dir.open_pages(PID, &map).unwrap_err().to_string(), want);
    }
}

#[test]
fn inventory_digest_must_match_the_pagemap() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let mut map = read_pagemap(&dir);
    map.chunk_checksums[0] ^= 1;
    let e = dir.open_pages(PID, &map).unwrap_err();
    assert!(e.to_string().starts_with("pages-4242.img: checksum 0x"), "{e}");
    assert!(e.to_string().contains(" does not match inventory.img (0x"), "{e}");
}

#[test]
fn pagemap_validation() {
    let good = PageMap {
        runs: sample_runs(5),
        chunk_size: 8192,
        chunk_checksums: vec![1, 2, 3],
        total_pages: 5,
        ..Default::default()
    };
    assert_eq!(validate_pagemap("pagemap-4242.img", &good).unwrap(), 5 * 4096);
    let check = |edit: &dyn Fn(&mut PageMap), want: &str| {
        let mut map = good.clone();
        edit(&mut map);
        let e = validate_pagemap("pagemap-4242.img", &map).unwrap_err();
        assert_eq!(e.to_string(), format!("pagemap-4242.img: {want}"));
    };
    check(&|m| m.total_pages = 10, "field total_pages: 10 does not match the runs (5 pages)");
    let chunk = "is not a nonzero multiple of 4096 of at most 1073741824";
    check(&|m| m.chunk_size = 0, &format!("field chunk_size: 0 {chunk}"));
    check(&|m| m.chunk_size = 5000, &format!("field chunk_size: 5000 {chunk}"));
    check(&|m| m.chunk_size = 2 << 30, &format!("field chunk_size: 2147483648 {chunk}"));
    check(
        &|m| {
            m.chunk_checksums.pop();
        },
        "field chunk_checksums: 2 checksums, but 20480 bytes in chunks of 8192 make 3",
    );
    check(&|m| m.runs[1].vaddr += 1, "field runs: run 1: vaddr 0x7ffd00003001 is not page aligned");
    check(&|m| m.runs[1].nr_pages = 0, "field runs: run 1: no pages");
    check(
        &|m| m.runs[1].vaddr = m.runs[0].vaddr + 4096,
        "field runs: run 1: vaddr 0x7ffd00001000 is below the end of the run before",
    );
    check(
        &|m| m.runs[1].nr_pages = u64::MAX / 2,
        "field runs: run 1: 9223372036854775807 pages at 0x7ffd00003000 overflow",
    );
    check(
        &|m| {
            m.runs = vec![PageRun { vaddr: 0, nr_pages: (1 << 52) - 1 }];
            m.total_pages = (1 << 52) - 1;
        },
        "field total_pages: 4503599627370495 pages overflow",
    );
    // A map without pages may leave the chunk size zero.
    assert_eq!(validate_pagemap("pagemap-1.img", &PageMap::default()).unwrap(), 0);
}

#[test]
fn empty_page_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let writer = dir.create_pages(7, 4096).unwrap();
    let (sums, digest) = writer.finish(0).unwrap();
    assert!(sums.is_empty());
    assert_eq!(digest.size, 4096);
    let map = PageMap { chunk_size: 4096, ..Default::default() };
    let file = dir.open_pages(7, &map).unwrap();
    verify_pages(&file, "pages-7.img", &map).unwrap();
}

#[test]
fn finish_checks_its_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let e = dir.create_pages(7, 1000).unwrap_err();
    assert!(e.to_string().starts_with("pages-7.img: field chunk_size: 1000 is not"), "{e}");
    let writer = dir.create_pages(7, 4096).unwrap();
    writer.file().write_all(&[1; 8192]).unwrap();
    let e = dir.create_pages(7, 4096).unwrap().finish(100).unwrap_err();
    assert_eq!(e.to_string(), "pages-7.img: data length 100 is not a multiple of the page size");
    let writer = dir.create_pages(7, 4096).unwrap();
    writer.file().write_all(&[1; 8192]).unwrap();
    let e = writer.finish(4096).unwrap_err();
    assert_eq!(e.to_string(), "pages-7.img: the file is 12288 bytes, but 4096 bytes of data make 8192");
}

/// Enough data for the two-thread path, with a chunk count that does not split evenly.
#[test]
fn parallel_hashing_matches_one_shot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let chunk = 4 << 20;
    let data: Vec<u8> = (0..(35u64 << 20) + 8192).map(|i| (i * 31 / 4096) as u8).collect();
    let writer = dir.create_pages(9, chunk).unwrap();
    writer.file().write_all(&data).unwrap();
    let (sums, _) = writer.finish(data.len() as u64).unwrap();
    let want: Vec<u64> = data.chunks(chunk as usize).map(xxh3_64).collect();
    assert_eq!(sums.len(), 9);
    assert_eq!(sums, want);
}

#[test]
fn in_parent_runs_are_checked_and_never_overlap_the_runs() {
    use crate::model::PageRun;
    let run = |vaddr: u64, nr_pages: u64| PageRun { vaddr, nr_pages };
    let map = |in_parent: Vec<PageRun>| PageMap {
        runs: vec![run(0x1000, 2), run(0x8000, 1)],
        total_pages: 3,
        chunk_size: 4096,
        chunk_checksums: vec![0; 3],
        in_parent,
        ..Default::default()
    };
    assert!(validate_pagemap("pagemap-1.img", &map(vec![run(0x3000, 5), run(0x9000, 1)])).is_ok());
    let err = validate_pagemap("pagemap-1.img", &map(vec![run(0x2000, 1)])).unwrap_err().to_string();
    assert!(err.contains("in_parent") && err.contains("overlaps"), "{err}");
    let err = validate_pagemap("pagemap-1.img", &map(vec![run(0x3001, 1)])).unwrap_err().to_string();
    assert!(err.contains("in_parent") && err.contains("page aligned"), "{err}");
}

#[test]
fn punched_pages_must_be_pages_of_the_runs() {
    use crate::model::PageRun;
    let run = |vaddr: u64, nr_pages: u64| PageRun { vaddr, nr_pages };
    let map = |punched: Vec<PageRun>| PageMap {
        runs: vec![run(0x1000, 2), run(0x3000, 1), run(0x8000, 1)],
        total_pages: 4,
        chunk_size: 4096,
        chunk_checksums: vec![0; 4],
        punched,
        ..Default::default()
    };
    // Across two adjacent runs, and a run of its own.
    assert!(validate_pagemap("pagemap-1.img", &map(vec![run(0x2000, 2), run(0x8000, 1)])).is_ok());
    let err = validate_pagemap("pagemap-1.img", &map(vec![run(0x3000, 2)])).unwrap_err().to_string();
    assert!(err.contains("punched") && err.contains("0x4000"), "{err}");
    let err = validate_pagemap("pagemap-1.img", &map(vec![run(0x5000, 1)])).unwrap_err().to_string();
    assert!(err.contains("punched"), "{err}");
}

/// A compressed page file of 11 pages in chunks of 3: written from a staged file, read back whole
/// and in part, and a damaged frame named with its chunk and offset.
#[test]
fn compressed_pages_round_trip_and_a_bad_frame_is_named() {
    use crate::compress::{compress_pages, decompress_pages, is_compressed, COMPRESSION_ZSTD};
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let (pages, chunk) = (11u64, 3 * 4096u64);
    let staged = tempfile::tempfile().unwrap();
    let writer = dir.stage_pages(PID, chunk, staged.try_clone().unwrap()).unwrap();
    let data = page_data(pages);
    writer.file().write_all(&data).unwrap();
    let (chunk_checksums, _) = writer.finish(data.len() as u64).unwrap();
    let (frame_sizes, digest) = compress_pages(&dir, PID, &staged, data.len() as u64, chunk, &chunk_checksums).unwrap();
    assert_eq!(frame_sizes.len(), 4);
    let map = PageMap {
        runs: sample_runs(pages),
        chunk_size: chunk,
        chunk_checksums,
        total_pages: pages,
        compression: COMPRESSION_ZSTD,
        frame_sizes: frame_sizes.clone(),
        ..Default::default()
    };
    assert!(is_compressed(&map));
    validate_pagemap("pagemap-4242.img", &map).unwrap();
    let file = dir.open_pages(PID, &map).unwrap();
    assert_eq!(file.metadata().unwrap().len(), digest.size);
    assert_eq!(digest.size, 4096 + frame_sizes.iter().sum::<u64>());
    let whole = tempfile::tempfile().unwrap();
    decompress_pages(&file, "pages-4242.img", &map, None, &whole).unwrap();
    verify_pages(&whole, "pages-4242.img", &map).unwrap();
    let mut back = vec![0u8; data.len()];
    whole.read_exact_at(&mut back, PAGE_DATA_OFFSET).unwrap();
    assert_eq!(back, data);
    // Only chunk 2: the rest reads as zeros.
    let part = tempfile::tempfile().unwrap();
    decompress_pages(&file, "pages-4242.img", &map, Some(&[2]), &part).unwrap();
    part.read_exact_at(&mut back, PAGE_DATA_OFFSET).unwrap();
    assert_eq!(&back[2 * chunk as usize..3 * chunk as usize], &data[2 * chunk as usize..3 * chunk as usize]);
    assert!(back[..2 * chunk as usize].iter().all(|&b| b == 0));
    // A damaged frame 1.
    let at = 4096 + frame_sizes[0] + frame_sizes[1] / 2;
    let path = tmp.path().join("pages-4242.img");
    let raw = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut byte = [0u8];
    raw.read_exact_at(&mut byte, at).unwrap();
    raw.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
    let out = tempfile::tempfile().unwrap();
    let err = decompress_pages(&file, "pages-4242.img", &map, None, &out).unwrap_err().to_string();
    let want = format!("pages-4242.img: checksum mismatch in chunk 1 (file offset {})", 4096 + frame_sizes[0]);
    assert_eq!(err, want);
    // The same map with a frame too many, or an unknown compression, is refused.
    let mut bad = map.clone();
    bad.frame_sizes.push(1);
    assert!(validate_pagemap("pagemap-4242.img", &bad).unwrap_err().to_string().contains("frame_sizes"));
    let mut bad = map;
    bad.compression = 7;
    assert!(validate_pagemap("pagemap-4242.img", &bad).unwrap_err().to_string().contains("compression"));
}
