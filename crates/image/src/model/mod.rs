//! The record types stored in image files.
//!
//! Each type is a protobuf message (prost). Field numbers are part of the on-disk contract: never
//! reuse or renumber one; add new fields with new numbers. Every message also derives `Serialize` so
//! that `stasis show --json` prints exactly what the image holds.
//!
//! Which message lives in which file is fixed by [`crate::ImageKind`]; see `docs/image-format.md`.
//! Each kind's types live in a file of their own (`memory`, `fds`, `sockets`, ...) and are
//! re-exported here, so every type is named `model::X` whichever file holds it.

mod cgroups;
mod fds;
mod inventory;
mod ipc;
mod memory;
mod mounts;
mod namespaces;
mod process;
mod sockets;
mod tty;

pub use cgroups::*;
pub use fds::*;
pub use inventory::*;
pub use ipc::*;
pub use memory::*;
pub use mounts::*;
pub use namespaces::*;
pub use process::*;
pub use sockets::*;
pub use tty::*;

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    s.serialize_str(&out)
}
