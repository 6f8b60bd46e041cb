//! Measure `PageWriter::finish` (chunk hashing) on a page file of a given size, and compare it with
//! reading the same bytes (the physical limit: the data has to come through the page cache once).
//!
//! `cargo run --release -p stasis-image --example page_hash -- [MIB] [CHUNK_MIB] [DIR]`
//! (defaults: 1024 MiB, 4 MiB chunks, a temporary directory under /var/tmp).

use std::io::{Read, Write};
use std::time::Instant;

use stasis_image::ImageDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let chunk_mib: u64 = args.next().map_or(Ok(4), |a| a.parse())?;
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let tmp = std::path::Path::new(&base).join(format!("stasis-page-hash-{}", std::process::id()));
    let dir = ImageDir::create(&tmp)?;
    let writer = dir.create_pages(1, chunk_mib << 20)?;
    let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for _ in 0..mib {
        writer.file().write_all(&block)?;
    }
    let path = tmp.join("pages-1.img");
    let mut sink = vec![0u8; 1 << 20];
    let mut file = std::fs::File::open(&path)?;
    let start = Instant::now();
    while file.read(&mut sink)? > 0 {}
    let read = start.elapsed();
    let start = Instant::now();
    let (sums, _) = writer.finish(mib << 20)?;
    let hash = start.elapsed();
    let gbs = |d: std::time::Duration| (mib as f64 / 1024.0) / d.as_secs_f64();
    println!("{mib} MiB, {} chunks of {chunk_mib} MiB", sums.len());
    println!("read (1 thread, 1 MiB blocks): {:>8.3} s  {:>6.2} GiB/s", read.as_secs_f64(), gbs(read));
    println!("finish (hash):                 {:>8.3} s  {:>6.2} GiB/s", hash.as_secs_f64(), gbs(hash));
    println!("ratio finish/read: {:.2}", hash.as_secs_f64() / read.as_secs_f64());
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
