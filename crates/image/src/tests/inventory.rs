//! The inventory: completeness, listed files, sizes and checksums, its own fields, permissions.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::ImageError;

#[test]
fn missing_inventory_means_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert!(matches!(e, ImageError::Incomplete { .. }));
    assert_eq!(e.to_string(), "inventory.img: missing: the image is incomplete (the dump failed or is still running)");
}

#[test]
fn first_write_removes_a_stale_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 3, 4096);
    ImageDir::open(tmp.path()).unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    assert!(dir.inventory().is_none());
    // Nothing written yet: the earlier image is still whole.
    ImageDir::open(tmp.path()).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    assert!(!tmp.path().join("inventory.img").exists());
    assert!(matches!(ImageDir::open(tmp.path()), Err(ImageError::Incomplete { .. })));
}

fn listing(path: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn discard_removes_only_what_the_image_made() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    fs::write(tmp.path().join("pstree.img"), "an older file").unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    dir.write_records(ImageKind::Files, None, &[crate::model::FileTable::default()]).unwrap();
    let pages = dir.create_pages(7, 4096).unwrap();
    drop(pages);
    dir.discard().unwrap();
    // The file that was there before stays (overwritten: the image had truncated it).
    assert_eq!(listing(tmp.path()), ["notes.txt", "pstree.img"]);
}

#[test]
fn discard_removes_the_directories_create_made() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("a/b/c");
    let dir = ImageDir::create(&deep).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    dir.discard().unwrap();
    assert!(listing(tmp.path()).is_empty());
}

#[test]
fn discard_after_commit_keeps_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_image(tmp.path(), 3, 4096);
    dir.discard().unwrap();
    ImageDir::open(tmp.path()).unwrap();
}

#[test]
fn round_trip_through_open() {
    let tmp = tempfile::tempdir().unwrap();
    let written = write_image(tmp.path(), 3, 4096);
    let committed = written.inventory().unwrap().clone();
    let dir = ImageDir::open(tmp.path()).unwrap();
    let inv = dir.inventory().unwrap();
    assert_eq!(*inv, committed);
    assert_eq!((inv.format_major, inv.format_minor, inv.page_size), (1, 0, 4096));
    let names: Vec<&str> = inv.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "core-4242.img",
            "fds-4242.img",
            "files.img",
            "ipc.img",
            "mm-4242.img",
            "pagemap-4242.img",
            "pages-4242.img",
            "pstree.img"
        ]
    );
    let cores: Vec<TaskCore> = dir.read_records(ImageKind::Core, Some(PID)).unwrap();
    assert_eq!(cores, [sample_core(PID), sample_core(PID + 1)]);
    assert_eq!(dir.read_one::<PsTree>(ImageKind::PsTree, None).unwrap(), sample_pstree());
    assert_eq!(dir.read_one::<FileTable>(ImageKind::Files, None).unwrap(), sample_files());
    assert_eq!(dir.read_one::<FdTable>(ImageKind::Fds, Some(PID)).unwrap(), sample_fds());
    assert_eq!(dir.read_one::<MmImage>(ImageKind::Mm, Some(PID)).unwrap(), sample_mm());
    let inv2: Inventory = dir.read_one(ImageKind::Inventory, None).unwrap();
    assert_eq!(inv2, committed);
}

#[test]
fn fsync_commit_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    dir.commit_inventory(sample_inventory(), true).unwrap();
    assert!(!tmp.path().join("inventory.img.tmp").exists());
    let dir = ImageDir::open(tmp.path()).unwrap();
    assert_eq!(dir.inventory().unwrap().files.len(), 1);
}

#[test]
fn permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a/b/img");
    fs::create_dir_all(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    write_image(&path, 2, 4096);
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    for entry in fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
    }
}

#[test]
fn listed_file_missing() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    fs::remove_file(tmp.path().join("fds-4242.img")).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert_eq!(e.to_string(), "fds-4242.img: missing: listed in inventory.img but not in the image directory");
}

#[test]
fn listed_size_and_checksum_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    let path = tmp.path().join("core-4242.img");
    let good = fs::read(&path).unwrap();
    fs::write(&path, &good[..good.len() - 1]).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    let n = good.len();
    assert_eq!(e.to_string(), format!("core-4242.img: size {} does not match inventory.img ({n})", n - 1));
    let mut bad = good.clone();
    bad[40] ^= 1;
    fs::write(&path, &bad).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert!(e.to_string().starts_with("core-4242.img: checksum 0x"), "{e}");
    assert!(e.to_string().contains("does not match inventory.img (0x"), "{e}");
}

#[test]
fn damage_after_open_is_caught_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let path = tmp.path().join("mm-4242.img");
    let mut bad = fs::read(&path).unwrap();
    bad[30] ^= 1;
    fs::write(&path, &bad).unwrap();
    let e = dir.read_one::<MmImage>(ImageKind::Mm, Some(PID)).unwrap_err();
    assert!(e.to_string().starts_with("mm-4242.img: checksum 0x"), "{e}");
}

#[test]
fn unlisted_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let side = ImageDir::create(&tmp.path().join("side")).unwrap();
    side.write_records(ImageKind::Fds, Some(99), &[sample_fds()]).unwrap();
    fs::rename(tmp.path().join("side/fds-99.img"), tmp.path().join("fds-99.img")).unwrap();
    let e = dir.read_one::<FdTable>(ImageKind::Fds, Some(99)).unwrap_err();
    assert_eq!(e.to_string(), "fds-99.img: not listed in inventory.img");
}

/// Rewrite the inventory of the image at `path` after `edit`.
fn rewrite_inventory(path: &std::path::Path, edit: impl FnOnce(&mut Inventory)) -> String {
    let bytes = fs::read(path.join("inventory.img")).unwrap();
    let mut inv: Inventory = crate::decode_records("inventory.img", ImageKind::Inventory, &bytes).unwrap().remove(0);
    edit(&mut inv);
    fs::write(path.join("inventory.img"), crate::encode_records(ImageKind::Inventory, &[inv])).unwrap();
    ImageDir::open(path).unwrap_err().to_string()
}

#[test]
fn inventory_fields() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    let p = tmp.path();
    assert_eq!(
        rewrite_inventory(p, |i| i.format_major = 2),
        "inventory.img: format 2.0 is newer than this stasis supports (1.0)"
    );
    assert_eq!(
        rewrite_inventory(p, |i| (i.format_major, i.format_minor) = (1, 3)),
        "inventory.img: format 1.3 is newer than this stasis supports (1.0)"
    );
    assert_eq!(
        rewrite_inventory(p, |i| (i.format_minor, i.page_size) = (0, 65536)),
        "inventory.img: field page_size: 65536 where this stasis supports only 4096"
    );
    assert_eq!(
        rewrite_inventory(p, |i| {
            i.page_size = 4096;
            i.files[0].name = "../../etc/passwd".into();
        }),
        "inventory.img: field files: unexpected file name \"../../etc/passwd\""
    );
    assert_eq!(
        rewrite_inventory(p, |i| i.files[0].name = "inventory.img".into()),
        "inventory.img: field files: unexpected file name \"inventory.img\""
    );
    assert_eq!(
        rewrite_inventory(p, |i| i.files[0].name = i.files[1].name.clone()),
        "inventory.img: field files: fds-4242.img is listed twice"
    );
    assert_eq!(
        rewrite_inventory(p, |i| {
            i.files[0].name = "core-4242.img".into();
            i.files.push(FileDigest { name: "core-777.img".into(), size: 1, checksum: 2 });
        }),
        "core-777.img: missing: listed in inventory.img but not in the image directory"
    );
}

#[test]
fn damaged_inventory_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 2, 4096);
    let path = tmp.path().join("inventory.img");
    let mut bad = fs::read(&path).unwrap();
    bad[25] ^= 4;
    fs::write(&path, &bad).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert!(e.to_string().starts_with("inventory.img: checksum mismatch (stored 0x"), "{e}");
    fs::write(&path, &bad[..10]).unwrap();
    let e = ImageDir::open(tmp.path()).unwrap_err();
    assert_eq!(e.to_string(), "inventory.img: truncated: header needs 16 bytes, 10 left");
}
