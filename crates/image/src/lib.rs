//! The stasis image format: a directory of checksummed, versioned files of protobuf records, raw page
//! files with an index, and an inventory written last. See `docs/image-format.md`.
//!
//! - [`model`]: the record types (prost messages).
//! - [`ImageKind`]: the kinds of file, their names and magics.
//! - [`encode_records`] / [`decode_records`]: the framing of a record file, as pure functions.
//! - [`ImageDir`]: an image directory, written file by file and committed with its inventory, or
//!   opened and verified against it.
//! - [`PageWriter`], [`ImageDir::open_pages`], [`verify_pages`]: page files and their chunk checksums.
//! - [`wire`]: the page server's framed, checksummed protocol.
//!
//! Images are untrusted input: every length is checked against a limit before anything is allocated,
//! every file is checksummed, and no input makes this crate panic.

pub mod compress;
mod dir;
mod error;
mod framing;
mod kind;
mod made;
pub mod model;
mod pages;
#[cfg(any(test, feature = "sample"))]
#[doc(hidden)]
pub mod sample;
pub mod wire;

#[cfg(test)]
mod tests;

pub use dir::ImageDir;
pub use error::ImageError;
pub use framing::{decode_records, encode_records};
pub use kind::ImageKind;
pub use pages::{
    chunk_list_checksum, hash_chunk, hash_chunks, validate_pagemap, verify_page_chunks, verify_pages, PageWriter,
};

/// Major format version: a reader loads only images of its own major version.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor format version: a reader loads images whose minor version is not newer than its own.
pub const FORMAT_MINOR: u16 = 0;

/// The first word of every image file: the bytes `STSI` read as a little-endian `u32`.
pub const COMMON_MAGIC: u32 = u32::from_le_bytes(*b"STSI");

/// Size of the header at the start of every image file.
pub const HEADER_LEN: usize = 16;

/// The length word that ends the records of a record file.
pub const END_MARKER: u32 = 0xFFFF_FFFF;

/// The size of a page in page files.
pub const PAGE_SIZE: u64 = 4096;

/// Where the page data of a page file starts (after the header page).
pub const PAGE_DATA_OFFSET: u64 = 4096;

/// The largest record file a reader accepts.
pub const MAX_RECORD_FILE_SIZE: u64 = 256 << 20;

/// The largest single record a reader accepts.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

/// The most records a record file may hold (a process with more threads cannot be dumped).
pub const MAX_RECORDS: usize = 1 << 16;

/// The largest page-data chunk size (chunks are also a nonzero multiple of [`PAGE_SIZE`]).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
