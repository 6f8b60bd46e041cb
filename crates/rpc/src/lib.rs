//! CRIU's RPC interface, as the container engines speak it: the messages of CRIU's
//! `images/rpc.proto` (what runc, crun, Podman through go-criu or libcriu send to `criu swrk`) and
//! of `images/stats.proto` (the `stats-dump` and `stats-restore` files Podman reads for
//! `--print-stats`).
//!
//! The field numbers, types and defaults are facts of that interface, written here by hand as
//! prost structs (proto2: `required` fields are plain, `optional` ones `Option`, each with the
//! accessor prost derives, which gives the proto default). A crate of its own, not a module of the
//! CLI, because two sides need the messages: `stasis swrk` (the server) and the tests' RPC client,
//! which must not depend on the binary's crate.
//!
//! One request or response is one `SOCK_SEQPACKET` message; [`MAX_MESSAGE`] bounds what is read.

mod messages;
pub mod stats;

pub use messages::*;

/// The largest request `stasis swrk` reads: a criu_req with every option set (mounts, externals,
/// inherited fds...) is a few KiB; a bigger message is refused as malformed.
pub const MAX_MESSAGE: usize = 1 << 20;
