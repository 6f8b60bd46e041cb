//! The framing of image files: the 16-byte header every file starts with, and the body of a record
//! file (length-prefixed records, end marker, checksum).
//!
//! Decoding is pure (bytes in, records or an error out) so that it can be fuzzed; it checks, in this
//! order, the file size limit, the header, the record lengths, the trailer and the checksum, and
//! only then decodes the records.

use prost::Message;
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    ImageError, ImageKind, COMMON_MAGIC, END_MARKER, FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN, MAX_RECORDS,
    MAX_RECORD_FILE_SIZE, MAX_RECORD_LEN,
};

/// Length of the trailer: end marker and checksum.
const TRAILER_LEN: usize = 4 + 8;

/// The header of a file of `kind`: common magic, kind magic, major, minor, reserved.
pub(crate) fn encode_header(kind: ImageKind) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&COMMON_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&kind.magic().to_le_bytes());
    header[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    header[10..12].copy_from_slice(&FORMAT_MINOR.to_le_bytes());
    header
}

/// Check the header at the start of `bytes`: magics, version and the reserved word.
pub(crate) fn check_header(file: &str, kind: ImageKind, bytes: &[u8]) -> Result<(), ImageError> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(ImageError::truncated(file, "header", HEADER_LEN as u64, bytes.len() as u64));
    };
    let magic = le_u32(header, 0);
    if magic != COMMON_MAGIC {
        return Err(ImageError::BadMagic { file: file.to_owned(), magic });
    }
    let found = le_u32(header, 4);
    if found != kind.magic() {
        return Err(ImageError::WrongKind { file: file.to_owned(), found, expected: kind });
    }
    check_version(file, le_u16(header, 8).into(), le_u16(header, 10).into())?;
    match le_u32(header, 12) {
        0 => Ok(()),
        other => Err(ImageError::field(file, "reserved", format!("{other:#x} where 0 is required"))),
    }
}

/// The load rule: same major version, minor version not newer than ours.
pub(crate) fn check_version(file: &str, major: u32, minor: u32) -> Result<(), ImageError> {
    if major == u32::from(FORMAT_MAJOR) && minor <= u32::from(FORMAT_MINOR) {
        Ok(())
    } else {
        Err(ImageError::Version { file: file.to_owned(), major, minor })
    }
}

/// Encode `records` as a record file of `kind`: header, records, end marker, checksum.
///
/// This does not enforce the reader's limits ([`crate::MAX_RECORD_LEN`] and friends);
/// [`crate::ImageDir::write_records`] does, before it writes anything.
pub fn encode_records<M: Message>(kind: ImageKind, records: &[M]) -> Vec<u8> {
    let body: usize = records.iter().map(|r| 4 + r.encoded_len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + TRAILER_LEN);
    out.extend_from_slice(&encode_header(kind));
    for record in records {
        let bytes = record.encode_to_vec();
        let len = u32::try_from(bytes.len()).unwrap_or(END_MARKER - 1);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&END_MARKER.to_le_bytes());
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Check the limits a reader applies to `records` before writing them as the file `file`.
pub(crate) fn check_encode_limits<M: Message>(file: &str, records: &[M]) -> Result<(), ImageError> {
    if records.len() > MAX_RECORDS {
        return Err(ImageError::TooManyRecords { file: file.to_owned(), limit: MAX_RECORDS });
    }
    let mut total = (HEADER_LEN + TRAILER_LEN) as u64;
    for (i, record) in records.iter().enumerate() {
        let len = record.encoded_len() as u64;
        if len > MAX_RECORD_LEN {
            return Err(too_large(file, format!("record {i}"), len, MAX_RECORD_LEN));
        }
        total = total.saturating_add(4 + len);
    }
    if total > MAX_RECORD_FILE_SIZE {
        return Err(too_large(file, "the file".into(), total, MAX_RECORD_FILE_SIZE));
    }
    Ok(())
}

/// Decode the record file `file_name` of `kind` from `bytes`: validate its header (magics, version),
/// its framing, trailer and checksum, then decode every record as an `M`.
pub fn decode_records<M: Message + Default>(
    file_name: &str,
    kind: ImageKind,
    bytes: &[u8],
) -> Result<Vec<M>, ImageError> {
    if !kind.is_record_file() {
        return Err(ImageError::Usage {
            file: file_name.to_owned(),
            problem: format!("{kind} files hold raw pages, not records"),
        });
    }
    let size = bytes.len() as u64;
    if size > MAX_RECORD_FILE_SIZE {
        return Err(too_large(file_name, "the file".into(), size, MAX_RECORD_FILE_SIZE));
    }
    check_header(file_name, kind, bytes)?;
    let frames = split_records(file_name, bytes)?;
    let message = short_type_name::<M>();
    frames
        .into_iter()
        .enumerate()
        .map(|(record, frame)| {
            M::decode(frame).map_err(|source| ImageError::Decode {
                file: file_name.to_owned(),
                record,
                message,
                source,
            })
        })
        .collect()
}

/// Split the body of a record file (after its header) into its records, checking the trailer and
/// the checksum.
fn split_records<'a>(file: &str, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, ImageError> {
    let mut frames = Vec::new();
    let mut rest = bytes.get(HEADER_LEN..).unwrap_or_default();
    loop {
        let index = frames.len();
        let Some((len_word, after)) = rest.split_first_chunk::<4>() else {
            let what = format!("length of record {index} (or the end marker)");
            return Err(ImageError::truncated(file, what, 4, rest.len() as u64));
        };
        let len = u32::from_le_bytes(*len_word);
        if len == END_MARKER {
            check_trailer(file, bytes, after)?;
            return Ok(frames);
        }
        if u64::from(len) > MAX_RECORD_LEN {
            let what = format!("record {index}");
            return Err(too_large(file, what, len.into(), MAX_RECORD_LEN));
        }
        if index >= MAX_RECORDS {
            return Err(ImageError::TooManyRecords { file: file.to_owned(), limit: MAX_RECORDS });
        }
        let Some((frame, next)) = after.split_at_checked(len as usize) else {
            let what = format!("record {index}");
            return Err(ImageError::truncated(file, what, len.into(), after.len() as u64));
        };
        frames.push(frame);
        rest = next;
    }
}

/// Check what follows the end marker: exactly the checksum of every byte before it.
fn check_trailer(file: &str, bytes: &[u8], after_marker: &[u8]) -> Result<(), ImageError> {
    let Some((stored, extra)) = after_marker.split_first_chunk::<8>() else {
        let left = after_marker.len() as u64;
        return Err(ImageError::truncated(file, "checksum", 8, left));
    };
    if !extra.is_empty() {
        return Err(ImageError::TrailingData { file: file.to_owned(), extra: extra.len() as u64 });
    }
    let covered = bytes.len().saturating_sub(after_marker.len());
    let computed = xxh3_64(bytes.get(..covered).unwrap_or_default());
    let stored = u64::from_le_bytes(*stored);
    if stored == computed {
        Ok(())
    } else {
        Err(ImageError::Checksum { file: file.to_owned(), stored, computed })
    }
}

fn too_large(file: &str, what: String, size: u64, limit: u64) -> ImageError {
    ImageError::TooLarge { file: file.to_owned(), what, size, limit }
}

/// `TaskCore` for `stasis_image::model::TaskCore`.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// The little-endian `u32` at `at` in the header.
fn le_u32(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&header[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The little-endian `u16` at `at` in the header.
fn le_u16(header: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([header[at], header[at + 1]])
}
