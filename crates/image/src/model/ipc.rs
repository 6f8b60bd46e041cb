//! System V IPC (`ipc.img`): shared memory segments, semaphore sets and message queues.

use super::*;
use serde::Serialize;

/// `ipc.img`: SysV IPC objects of the checkpointed processes.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct IpcImage {
    #[prost(message, repeated, tag = "1")]
    pub shm: Vec<ShmSegment>,
    /// Semaphore sets and message queues: only of a tree in an IPC namespace of its own (all of
    /// the namespace's).
    #[prost(message, repeated, tag = "520")]
    pub sem: Vec<SemSet>,
    #[prost(message, repeated, tag = "521")]
    pub msg: Vec<MsgQueue>,
    /// The SysV limits of the tree's own IPC namespace (`/proc/sys/kernel/msgmax`, `msgmnb`,
    /// `msgmni`, `sem`, `shmmax`, `shmall`, `shmmni`, `shm_rmid_forced`), `path` relative to
    /// `/proc/sys/kernel`.
    #[prost(message, repeated, tag = "522")]
    pub limits: Vec<Sysctl>,
}

/// A SysV semaphore set of the tree's IPC namespace.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SemSet {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    /// Permission bits.
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    /// Every semaphore's value (`semctl(GETALL)`); their number is the set's `nsems`.
    #[prost(uint32, repeated, tag = "6")]
    pub values: Vec<u32>,
}

/// A SysV message queue of the tree's IPC namespace, with its messages in order.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MsgQueue {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    /// Permission bits.
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    /// The queue's byte limit (`msg_qbytes`).
    #[prost(uint64, tag = "6")]
    pub qbytes: u64,
    #[prost(message, repeated, tag = "7")]
    pub messages: Vec<SysvMessage>,
}

/// One message of a SysV queue: its type and text.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SysvMessage {
    #[prost(int64, tag = "1")]
    pub mtype: i64,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub text: Vec<u8>,
}

/// A SysV shared memory segment: attached by a process of the tree, or created by one.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ShmSegment {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    #[prost(uint64, tag = "3")]
    pub size: u64,
    /// Permission bits, and SHM_DEST (0o1000) if it was removed while attached.
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub content: Vec<u8>,
    /// The creator's pid and the last change time (`shm_cpid`, `shm_ctime`): with key, id, size,
    /// mode and owner they tell, on the machine of the dump, the segment itself (left behind by the
    /// dump, unattached) from another that took its id since.
    #[prost(int32, tag = "150")]
    pub cpid: i32,
    #[prost(int64, tag = "151")]
    pub ctime: i64,
}
