//! The stasis image format: a directory of checksummed, versioned files of protobuf records, raw page
//! files with an index, and an inventory written last. See `docs/image-format.md`.

pub mod model;
