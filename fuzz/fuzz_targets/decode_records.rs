//! Fuzz `decode_records` for every kind of record file.
//!
//! The first input byte picks the kind (low three bits) and two helpers: bit 6 puts a valid header
//! for the kind in front of the rest, bit 7 recomputes the trailing checksum, so that the fuzzer
//! reaches the framing and the protobuf decoding instead of stopping at the magic or the checksum.
//! Whatever decodes must encode and decode back to the same records.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use stasis_image::model::{FdTable, FileTable, Inventory, IpcImage, MmImage, PageMap, PsTree, TaskCore};
use stasis_image::{decode_records, encode_records, ImageKind, COMMON_MAGIC, FORMAT_MAJOR, FORMAT_MINOR};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let kind = ImageKind::ALL[usize::from(control & 15) % ImageKind::ALL.len()];
    let mut bytes = Vec::with_capacity(rest.len() + 16);
    if control & 0x40 != 0 {
        bytes.extend_from_slice(&COMMON_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&kind.magic().to_le_bytes());
        bytes.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        bytes.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
    }
    bytes.extend_from_slice(rest);
    if control & 0x80 != 0 && bytes.len() >= 8 {
        let at = bytes.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..at]);
        bytes[at..].copy_from_slice(&sum.to_le_bytes());
    }
    match kind {
        ImageKind::Inventory => check::<Inventory>(kind, &bytes),
        ImageKind::PsTree => check::<PsTree>(kind, &bytes),
        ImageKind::Core => check::<TaskCore>(kind, &bytes),
        ImageKind::Mm => check::<MmImage>(kind, &bytes),
        ImageKind::PageMap => check::<PageMap>(kind, &bytes),
        ImageKind::Fds => check::<FdTable>(kind, &bytes),
        ImageKind::Files => check::<FileTable>(kind, &bytes),
        ImageKind::Ipc => check::<IpcImage>(kind, &bytes),
        // Not a record file: decode_records must refuse it.
        ImageKind::Pages => assert!(decode_records::<PsTree>("pages-1.img", kind, &bytes).is_err()),
    }
});

fn check<M: Message + Default + PartialEq + Debug>(kind: ImageKind, bytes: &[u8]) {
    let name = kind.file_name(Some(1));
    let Ok(records) = decode_records::<M>(&name, kind, bytes) else {
        return;
    };
    let again = encode_records(kind, &records);
    let back = decode_records::<M>(&name, kind, &again).expect("re-encoded records decode");
    assert_eq!(back, records);
}
