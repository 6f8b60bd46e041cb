//! The engine's error type. Every variant names the process and the resource it concerns; the
//! underlying cause is the `#[source]`, never repeated in the message.

use stasis_sys::inject::InjectError;
use stasis_sys::{Pid, SysError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pid {pid}: {what} is not supported yet")]
    Unsupported { pid: Pid, what: String },
    #[error("pid {pid}: fd {fd}: {what} is not supported yet")]
    UnsupportedFd { pid: Pid, fd: i32, what: String },
    #[error("pid {pid} does not exist")]
    NoSuchProcess { pid: Pid },
    #[error("pid {pid} exited during the dump ({how})")]
    Exited { pid: Pid, how: String },
    #[error("pid {pid}: {what}")]
    Sys {
        pid: Pid,
        what: &'static str,
        #[source]
        source: SysError,
    },
    #[error("pid {pid}: fd {fd}: {what}")]
    FdSys {
        pid: Pid,
        fd: i32,
        what: String,
        #[source]
        source: SysError,
    },
    #[error("pid {pid}: creating the process")]
    Spawn {
        pid: Pid,
        #[source]
        source: stasis_sys::process::SpawnError,
    },
    #[error(transparent)]
    Inject(#[from] InjectError),
    #[error(transparent)]
    Image(#[from] stasis_image::ImageError),
    #[error(transparent)]
    Proc(#[from] crate::proc::ProcError),
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid} is in use by {holder}: cannot restore a process with that pid")]
    PidTaken { pid: Pid, holder: String },
    #[error("pid {pid}: {what}")]
    Failed { pid: Pid, what: String },
    #[error("{file}: {what}")]
    Incompatible { file: String, what: String },
    #[error("fault injected at {0} (STASIS_FAULT)")]
    Fault(&'static str),
    #[error("fault injected at {point}:{n}, {what} (STASIS_FAULT)")]
    FaultAt { point: &'static str, n: u64, what: String },
    #[error("page server {peer}: {what}")]
    PageServer {
        peer: String,
        what: String,
        #[source]
        source: stasis_image::wire::WireError,
    },
    #[error("page server {peer}: {what}")]
    PageServerRefused { peer: String, what: String },
    #[error("migration peer {peer}: {what}")]
    Migration {
        peer: String,
        what: String,
        #[source]
        source: stasis_image::wire::WireError,
    },
    #[error("migration peer {peer}: {what}")]
    MigrationRefused { peer: String, what: String },
    #[error("{}: {what}", .path.display())]
    LazyDaemon {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("pid {pid}: restoring {what}")]
    Step {
        pid: Pid,
        what: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn sys(pid: impl Into<Pid>, what: &'static str) -> impl FnOnce(SysError) -> Error {
        let pid = pid.into();
        move |source| Error::Sys { pid, what, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
