//! Tests of the image crate: round trips and corruption of every kind of file, page files, the
//! inventory, and the encoding of every record type.

mod inventory;
mod pages;
mod records;
mod schema;

pub(crate) use crate::model::*;
pub(crate) use crate::sample::*;
pub(crate) use crate::{ImageDir, ImageKind};

/// The engine shares one `ImageDir` between threads and moves page writers between them.
#[test]
fn dir_and_writer_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ImageDir>();
    send_sync::<crate::PageWriter>();
    send_sync::<crate::ImageError>();
}
