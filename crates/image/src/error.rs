//! The one error type of the image crate.
//!
//! Every variant names the image file it is about (its bare name, such as `core-4242.img`, or for
//! [`ImageError::Io`] the full path) and says what is wrong, down to the field where there is one.

use std::io;
use std::path::PathBuf;

use crate::{ImageKind, FORMAT_MAJOR, FORMAT_MINOR};

/// What can go wrong writing, reading or validating an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on an image file or directory failed.
    #[error("{}: i/o error", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The image has no `inventory.img`: the dump failed or has not finished.
    #[error("inventory.img: missing: the image is incomplete (the dump failed or is still running)")]
    Incomplete { dir: PathBuf },

    /// The file does not start with the common magic.
    #[error("{file}: bad magic {magic:#010x} (not a stasis image file)")]
    BadMagic { file: String, magic: u32 },

    /// The file is a stasis image file, but of another kind than its name says.
    #[error(
        "{file}: wrong kind magic {found:#010x} ({}), expected {:#010x} ({expected})",
        ImageKind::describe_magic(*found),
        expected.magic()
    )]
    WrongKind { file: String, found: u32, expected: ImageKind },

    /// The file's format version cannot be read by this stasis.
    #[error(
        "{file}: format {major}.{minor} is {} this stasis supports ({FORMAT_MAJOR}.{FORMAT_MINOR})",
        version_relation(*major, *minor)
    )]
    Version { file: String, major: u32, minor: u32 },

    /// The file ends before a part that must be there.
    #[error("{file}: truncated: {what} needs {needed} bytes, {left} left")]
    Truncated { file: String, what: String, needed: u64, left: u64 },

    /// A length in the file (or the file itself) is over one of the format's limits.
    #[error("{file}: {what} is {size} bytes, over the limit of {limit}")]
    TooLarge { file: String, what: String, size: u64, limit: u64 },

    /// A record file holds more records than any valid image has.
    #[error("{file}: more than {limit} records")]
    TooManyRecords { file: String, limit: usize },

    /// Bytes follow the checksum of a record file.
    #[error("{file}: {extra} bytes of garbage after the checksum")]
    TrailingData { file: String, extra: u64 },

    /// The checksum of a record file does not match its contents.
    #[error("{file}: checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum { file: String, stored: u64, computed: u64 },

    /// A chunk of page data does not match its checksum in the page map.
    #[error("{file}: checksum mismatch in chunk {chunk} (file offset {offset})")]
    ChunkChecksum { file: String, chunk: usize, offset: u64 },

    /// A record's bytes are not a valid encoding of the message the file holds.
    #[error("{file}: record {record}: cannot decode {message}")]
    Decode {
        file: String,
        record: usize,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// A file that must hold exactly one record holds another number of them.
    #[error("{file}: expected exactly one record, found {count}")]
    RecordCount { file: String, count: usize },

    /// A field (of a record or of a file header) has a value that is not allowed.
    #[error("{file}: field {field}: {problem}")]
    Field { file: String, field: &'static str, problem: String },

    /// A file listed in the inventory is not in the image directory.
    #[error("{file}: missing: listed in inventory.img but not in the image directory")]
    Missing { file: String },

    /// A file is read that the inventory does not list.
    #[error("{file}: not listed in inventory.img")]
    NotListed { file: String },

    /// A file's size differs from the one the inventory (or the page map) gives.
    #[error("{file}: size {actual} does not match {source_of_truth} ({expected})")]
    Size { file: String, actual: u64, expected: u64, source_of_truth: &'static str },

    /// A file's checksum differs from the one the inventory lists.
    #[error("{file}: checksum {actual:#018x} does not match inventory.img ({listed:#018x})")]
    Digest { file: String, actual: u64, listed: u64 },

    /// The caller passed something the format cannot represent.
    #[error("{file}: {problem}")]
    Usage { file: String, problem: String },
}

/// "newer than" or "older than" for a version this stasis cannot read.
fn version_relation(major: u32, minor: u32) -> &'static str {
    if (major, minor) > (u32::from(FORMAT_MAJOR), u32::from(FORMAT_MINOR)) {
        "newer than"
    } else {
        "older than what"
    }
}

impl ImageError {
    /// An [`ImageError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> ImageError {
        ImageError::Io { path: path.into(), source }
    }

    /// An [`ImageError::Field`].
    pub(crate) fn field(file: &str, field: &'static str, problem: impl Into<String>) -> ImageError {
        ImageError::Field { file: file.to_owned(), field, problem: problem.into() }
    }

    /// An [`ImageError::Truncated`].
    pub(crate) fn truncated(file: &str, what: impl Into<String>, needed: u64, left: u64) -> ImageError {
        ImageError::Truncated { file: file.to_owned(), what: what.into(), needed, left }
    }
}
