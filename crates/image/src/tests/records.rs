//! Record files: round trips, and every kind of damage to every kind of record file.

use std::error::Error;
use std::fmt::Debug;
use std::fs;

use prost::Message;
use xxhash_rust::xxh3::xxh3_64;

use super::*;
use crate::{decode_records, encode_records, ImageError, MAX_RECORD_LEN};

/// Re-seal `bytes` after an edit: recompute the trailing checksum.
fn reseal(bytes: &mut [u8]) {
    let at = bytes.len() - 8;
    let sum = xxh3_64(&bytes[..at]);
    bytes[at..].copy_from_slice(&sum.to_le_bytes());
}

/// The error of reading `kind`'s file after replacing it with `bytes`.
fn read_err<M: Message + Default + Debug>(dir: &ImageDir, kind: ImageKind, pid: Option<i32>, bytes: &[u8]) -> String {
    fs::write(dir.path().join(kind.file_name(pid)), bytes).unwrap();
    let err = dir.read_records::<M>(kind, pid).unwrap_err();
    err.to_string()
}

/// Write `records` as `kind`, read them back, then damage the file in every way and check the
/// message of each error.
fn check_kind<M>(kind: ImageKind, pid: Option<i32>, records: Vec<M>)
where
    M: Message + Default + PartialEq + Debug,
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let digest = dir.write_records(kind, pid, &records).unwrap();
    let name = kind.file_name(pid);
    assert_eq!(digest.name, name);
    assert_eq!(dir.read_records::<M>(kind, pid).unwrap(), records);
    let good = fs::read(dir.path().join(&name)).unwrap();
    assert_eq!(digest.size, good.len() as u64);
    assert_eq!(digest.checksum, xxh3_64(&good));
    let len0 = records[0].encoded_len();
    assert!(len0 > 4, "sample record of {name} is too small for the test");
    let err = |bytes: &[u8]| read_err::<M>(&dir, kind, pid, bytes);
    let n = good.len();

    // Truncation at several points.
    let cases = [
        (0, "truncated: header needs 16 bytes, 0 left".to_owned()),
        (9, "truncated: header needs 16 bytes, 9 left".to_owned()),
        (16, "truncated: length of record 0 (or the end marker) needs 4 bytes, 0 left".to_owned()),
        (18, "truncated: length of record 0 (or the end marker) needs 4 bytes, 2 left".to_owned()),
        (23, format!("truncated: record 0 needs {len0} bytes, 3 left")),
        (n - 12, format!("truncated: length of record {} (or the end marker) needs 4 bytes, 0 left", records.len())),
        (n - 8, "truncated: checksum needs 8 bytes, 0 left".to_owned()),
        (n - 1, "truncated: checksum needs 8 bytes, 7 left".to_owned()),
    ];
    for (at, want) in cases {
        assert_eq!(err(&good[..at]), format!("{name}: {want}"), "truncated at {at}");
    }

    // A flipped byte in the common magic, the kind magic, a record, the checksum.
    let mut bad = good.clone();
    bad[0] ^= 0x20;
    assert_eq!(err(&bad), format!("{name}: bad magic 0x49535473 (not a stasis image file)"));
    let mut bad = good.clone();
    bad[5] ^= 1;
    let msg = err(&bad);
    assert!(msg.starts_with(&format!("{name}: wrong kind magic 0x")), "{msg}");
    assert!(msg.contains(&format!("(unknown), expected {:#010x}", kind.magic())), "{msg}");
    let mut bad = good.clone();
    bad[16 + 4 + 1] ^= 0x40;
    assert!(err(&bad).starts_with(&format!("{name}: checksum mismatch (stored 0x")));
    let mut bad = good.clone();
    bad[n - 3] ^= 0x01;
    assert!(err(&bad).starts_with(&format!("{name}: checksum mismatch (stored 0x")));

    // Versions: a newer major, a newer minor, an older major.
    for (major, minor, want) in [
        (2u16, 0u16, "format 2.0 is newer than this stasis supports (1.0)"),
        (1, 1, "format 1.1 is newer than this stasis supports (1.0)"),
        (0, 9, "format 0.9 is older than what this stasis supports (1.0)"),
    ] {
        let mut bad = good.clone();
        bad[8..10].copy_from_slice(&major.to_le_bytes());
        bad[10..12].copy_from_slice(&minor.to_le_bytes());
        reseal(&mut bad);
        assert_eq!(err(&bad), format!("{name}: {want}"));
    }

    // Another kind's magic.
    let other = if kind == ImageKind::Pages { ImageKind::Core } else { ImageKind::Pages };
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&other.magic().to_le_bytes());
    reseal(&mut bad);
    assert_eq!(
        err(&bad),
        format!(
            "{name}: wrong kind magic {:#010x} (pages-PID.img), expected {:#010x} ({kind})",
            other.magic(),
            kind.magic()
        )
    );

    // The reserved word, garbage after the checksum, an oversized length.
    let mut bad = good.clone();
    bad[12] = 7;
    reseal(&mut bad);
    assert_eq!(err(&bad), format!("{name}: field reserved: 0x7 where 0 is required"));
    let mut bad = good.clone();
    bad.extend_from_slice(b"xyz");
    assert_eq!(err(&bad), format!("{name}: 3 bytes of garbage after the checksum"));
    let mut bad = good.clone();
    bad[16..20].copy_from_slice(&(MAX_RECORD_LEN as u32 + 1).to_le_bytes());
    assert_eq!(err(&bad), format!("{name}: record 0 is 67108865 bytes, over the limit of 67108864"));

    // A record that is not protobuf, with a valid checksum.
    let mut bad = good.clone();
    bad[20..20 + len0].fill(0xff);
    reseal(&mut bad);
    let msg = err(&bad);
    let type_name = std::any::type_name::<M>().rsplit("::").next().unwrap();
    assert_eq!(msg, format!("{name}: record 0: cannot decode {type_name}"));
    fs::write(dir.path().join(&name), &bad).unwrap();
    let e = dir.read_records::<M>(kind, pid).unwrap_err();
    assert!(matches!(e, ImageError::Decode { record: 0, .. }));
    assert!(e.source().is_some(), "the prost error is the source");

    // The pure decoder agrees with the file reader.
    assert_eq!(decode_records::<M>(&name, kind, &good).unwrap(), records);
    assert_eq!(encode_records(kind, &records), good);
}

#[test]
fn inventory_file() {
    check_kind(ImageKind::Inventory, None, vec![sample_inventory()]);
}

#[test]
fn pstree_file() {
    check_kind(ImageKind::PsTree, None, vec![sample_pstree()]);
}

#[test]
fn core_file() {
    check_kind(ImageKind::Core, Some(PID), vec![sample_core(PID), sample_core(PID + 1)]);
}

#[test]
fn mm_file() {
    check_kind(ImageKind::Mm, Some(PID), vec![sample_mm()]);
}

#[test]
fn pagemap_file() {
    let map = PageMap {
        runs: sample_runs(5),
        chunk_size: 8192,
        chunk_checksums: vec![1, 2, 3],
        total_pages: 5,
        ..Default::default()
    };
    check_kind(ImageKind::PageMap, Some(PID), vec![map]);
}

#[test]
fn fds_file() {
    check_kind(ImageKind::Fds, Some(PID), vec![sample_fds()]);
}

#[test]
fn files_file() {
    check_kind(ImageKind::Files, None, vec![sample_files()]);
}

#[test]
fn empty_and_default_records_round_trip() {
    let bytes = encode_records::<FdTable>(ImageKind::Fds, &[]);
    assert_eq!(bytes.len(), 16 + 12);
    assert!(decode_records::<FdTable>("fds-1.img", ImageKind::Fds, &bytes).unwrap().is_empty());
    let bytes = encode_records(ImageKind::Fds, &[FdTable::default(), FdTable::default()]);
    let back: Vec<FdTable> = decode_records("fds-1.img", ImageKind::Fds, &bytes).unwrap();
    assert_eq!(back, vec![FdTable::default(); 2]);
}

#[test]
fn header_layout_is_as_documented() {
    let bytes = encode_records::<PsTree>(ImageKind::PsTree, &[]);
    assert_eq!(&bytes[0..8], b"STSIPSTR");
    assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&bytes[16..20], &[0xff; 4]);
    assert_eq!(bytes[20..28], xxh3_64(&bytes[..20]).to_le_bytes());
}

#[test]
fn read_one_wants_exactly_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    dir.write_records(ImageKind::Core, Some(7), &[sample_core(7), sample_core(8)]).unwrap();
    let e = dir.read_one::<TaskCore>(ImageKind::Core, Some(7)).unwrap_err();
    assert_eq!(e.to_string(), "core-7.img: expected exactly one record, found 2");
    dir.write_records::<PsTree>(ImageKind::PsTree, None, &[]).unwrap();
    let e = dir.read_one::<PsTree>(ImageKind::PsTree, None).unwrap_err();
    assert_eq!(e.to_string(), "pstree.img: expected exactly one record, found 0");
    dir.write_records(ImageKind::Mm, Some(7), &[sample_mm()]).unwrap();
    assert_eq!(dir.read_one::<MmImage>(ImageKind::Mm, Some(7)).unwrap(), sample_mm());
}

#[test]
fn pid_must_fit_the_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let e = dir.write_records(ImageKind::Core, None, &[sample_core(1)]).unwrap_err();
    assert_eq!(e.to_string(), "core-?.img: a per-process file needs a pid");
    let e = dir.write_records(ImageKind::Files, Some(3), &[sample_files()]).unwrap_err();
    assert_eq!(e.to_string(), "files.img: pid 3 given for a file that is not per process");
    let e = dir.write_records(ImageKind::Mm, Some(-1), &[sample_mm()]).unwrap_err();
    assert_eq!(e.to_string(), "mm--1.img: pid -1 is not positive");
    let e = dir.write_records(ImageKind::Pages, Some(1), &[sample_mm()]).unwrap_err();
    assert_eq!(e.to_string(), "pages-1.img: page files are not record files");
}

#[test]
fn writer_refuses_what_a_reader_would_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let big = TaskCore { xstate: vec![0; MAX_RECORD_LEN as usize + 1], ..Default::default() };
    let e = dir.write_records(ImageKind::Core, Some(1), &[big]).unwrap_err();
    assert!(e.to_string().starts_with("core-1.img: record 0 is 67108870 bytes, over the limit of"), "{e}");
    assert!(!dir.path().join("core-1.img").exists());
}

#[test]
fn too_many_records() {
    let records = vec![FdTable::default(); crate::MAX_RECORDS + 1];
    let bytes = encode_records(ImageKind::Fds, &records);
    let e = decode_records::<FdTable>("fds-9.img", ImageKind::Fds, &bytes).unwrap_err();
    assert_eq!(e.to_string(), "fds-9.img: more than 65536 records");
}

#[test]
fn file_names_parse_back() {
    for kind in ImageKind::ALL {
        let pid = kind.per_process().then_some(4242);
        assert_eq!(ImageKind::parse_file_name(&kind.file_name(pid)), Some((kind, pid)));
        assert_eq!(ImageKind::from_magic(kind.magic()), Some(kind));
    }
    for bad in [
        "core-042.img",
        "core-+42.img",
        "core-0.img",
        "core--1.img",
        "core.img",
        "../pstree.img",
        "mm-1.img.tmp",
        "inventory.img.tmp",
    ] {
        assert_eq!(ImageKind::parse_file_name(bad), None, "{bad}");
    }
    let magics: std::collections::BTreeSet<u32> = ImageKind::ALL.iter().map(|k| k.magic()).collect();
    assert_eq!(magics.len(), ImageKind::ALL.len());
}
