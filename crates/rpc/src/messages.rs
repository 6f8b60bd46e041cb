//! The messages and enums of CRIU's `images/rpc.proto` (package-less proto2), by their proto
//! names in Rust case. Every field CRIU 4.2 defines is here, so that a request is decoded whole
//! and an option stasis does not do is refused by name rather than silently dropped.

/// `criu_page_server_info`: where a page server listens (or, in a response, its pid).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuPageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `criu_veth_pair` (deprecated in CRIU for `external`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuVethPair {
    #[prost(string, required, tag = "1")]
    pub if_in: String,
    #[prost(string, required, tag = "2")]
    pub if_out: String,
}

/// `ext_mount_map`: `--ext-mount-map KEY:VAL`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// `join_namespace`: `--join-ns NS:FILE[,EXTRA]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
    #[prost(string, optional, tag = "3")]
    pub extra_opt: Option<String>,
}

/// `inherit_fd`: `--inherit-fd fd[FD]:KEY`, FD being the caller's fd passed along with the
/// swrk socket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// `cgroup_root`: `--cgroup-root [CTRL:]PATH`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `unix_sk`: an external UNIX socket by inode (deprecated in CRIU for `external`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixSk {
    #[prost(uint32, required, tag = "1")]
    pub inode: u32,
}

/// `criu_cg_mode`: `--manage-cgroups` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuCgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_network_lock_method`: `--network-lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuNetworkLockMethod {
    Iptables = 1,
    Nftables = 2,
    Skip = 3,
}

/// `criu_pre_dump_mode`: `--pre-dump-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuPreDumpMode {
    Splice = 1,
    VmRead = 2,
}

/// `criu_file_validation_method`: `--file-validation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuFileValidationMethod {
    FileSize = 1,
    BuildId = 2,
}

/// `criu_opts`: the options of one request, CRIU's command-line options by another name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuOpts {
    /// The image directory: the caller's fd, passed along with the socket (-1: use `images_dir`).
    #[prost(int32, required, tag = "1", default = "-1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9", default = "2")]
    pub log_level: Option<i32>,
    /// Relative to the work directory.
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "19")]
    pub veths: Vec<CriuVethPair>,
    #[prost(uint32, optional, tag = "20", default = "4294967295")]
    pub cpu_cap: Option<u32>,
    #[prost(bool, optional, tag = "21")]
    pub force_irmap: Option<bool>,
    #[prost(string, repeated, tag = "22")]
    pub exec_cmd: Vec<String>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    /// The restored root becomes a child of the caller (swrk only).
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(bool, optional, tag = "28")]
    pub auto_ext_mnt: Option<bool>,
    #[prost(bool, optional, tag = "29")]
    pub ext_sharing: Option<bool>,
    #[prost(bool, optional, tag = "30")]
    pub ext_masters: Option<bool>,
    #[prost(string, repeated, tag = "31")]
    pub skip_mnt: Vec<String>,
    #[prost(string, repeated, tag = "32")]
    pub enable_fs: Vec<String>,
    #[prost(message, repeated, tag = "33")]
    pub unix_sk_ino: Vec<UnixSk>,
    #[prost(enumeration = "CriuCgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(uint32, optional, tag = "35", default = "1048576")]
    pub ghost_limit: Option<u32>,
    #[prost(string, repeated, tag = "36")]
    pub irmap_scan_paths: Vec<String>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "41")]
    pub cgroup_props: Option<String>,
    #[prost(string, optional, tag = "42")]
    pub cgroup_props_file: Option<String>,
    #[prost(string, repeated, tag = "43")]
    pub cgroup_dump_controller: Vec<String>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(uint32, optional, tag = "45")]
    pub timeout: Option<u32>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "47")]
    pub weak_sysctls: Option<bool>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    /// The caller's fd that gets a zero byte once the restored tree runs.
    #[prost(int32, optional, tag = "49")]
    pub status_fd: Option<i32>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "51")]
    pub config_file: Option<String>,
    #[prost(bool, optional, tag = "52")]
    pub tcp_close: Option<bool>,
    #[prost(string, optional, tag = "53")]
    pub lsm_profile: Option<String>,
    #[prost(string, optional, tag = "54")]
    pub tls_cacert: Option<String>,
    #[prost(string, optional, tag = "55")]
    pub tls_cacrl: Option<String>,
    #[prost(string, optional, tag = "56")]
    pub tls_cert: Option<String>,
    #[prost(string, optional, tag = "57")]
    pub tls_key: Option<String>,
    #[prost(bool, optional, tag = "58")]
    pub tls: Option<bool>,
    #[prost(bool, optional, tag = "59")]
    pub tls_no_cn_verify: Option<bool>,
    #[prost(string, optional, tag = "60")]
    pub cgroup_yard: Option<String>,
    #[prost(enumeration = "CriuPreDumpMode", optional, tag = "61")]
    pub pre_dump_mode: Option<i32>,
    #[prost(int32, optional, tag = "62")]
    pub pidfd_store_sk: Option<i32>,
    #[prost(string, optional, tag = "63")]
    pub lsm_mount_context: Option<String>,
    /// CRIU's default is iptables.
    #[prost(enumeration = "CriuNetworkLockMethod", optional, tag = "64")]
    pub network_lock: Option<i32>,
    #[prost(bool, optional, tag = "65")]
    pub mntns_compat_mode: Option<bool>,
    #[prost(bool, optional, tag = "66")]
    pub skip_file_rwx_check: Option<bool>,
    #[prost(bool, optional, tag = "67")]
    pub unprivileged: Option<bool>,
    /// Used only when `images_dir_fd` is -1.
    #[prost(string, optional, tag = "68")]
    pub images_dir: Option<String>,
    #[prost(bool, optional, tag = "69")]
    pub leave_stopped: Option<bool>,
    #[prost(bool, optional, tag = "70")]
    pub display_stats: Option<bool>,
    #[prost(bool, optional, tag = "71")]
    pub log_to_stderr: Option<bool>,
    #[prost(bool, optional, tag = "72")]
    pub allow_uprobes: Option<bool>,
    #[prost(bool, optional, tag = "73")]
    pub ghost_fiemap: Option<bool>,
    #[prost(enumeration = "CriuFileValidationMethod", optional, tag = "74")]
    pub file_validation_method: Option<i32>,
}

/// `criu_dump_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuDumpResp {
    /// The tree was restored after the dump (a dump resumed by a restore): never by stasis.
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

/// `criu_restore_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuRestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// `criu_notify`: an action-script point (`script`) and the pid it concerns.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuNotify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_req_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
    WaitPid = 11,
    PageServerChld = 12,
    SinglePreDump = 13,
}

/// `criu_features`: what FEATURE_CHECK asks about and answers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuFeatures {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub pidfd_store: Option<bool>,
}

/// `criu_req`: one request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuReq {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<CriuOpts>,
    /// The answer to a NOTIFY: whether the caller's action succeeded.
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    /// Keep serving requests on the socket after this one.
    #[prost(bool, optional, tag = "4")]
    pub keep_open: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<CriuFeatures>,
    /// For WAIT_PID.
    #[prost(uint32, optional, tag = "6")]
    pub pid: Option<u32>,
}

/// `criu_resp`: one response (or a NOTIFY sent to the caller mid-request).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuResp {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<CriuDumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<CriuRestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<CriuNotify>,
    #[prost(message, optional, tag = "6")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<CriuFeatures>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<CriuVersion>,
    #[prost(int32, optional, tag = "11")]
    pub status: Option<i32>,
}

/// `criu_version`: the answer to VERSION.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuVersion {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub extra: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub name: Option<String>,
}

impl CriuResp {
    /// A response of `ty` that succeeded, with nothing else set.
    pub fn ok(ty: CriuReqType) -> CriuResp {
        CriuResp { r#type: ty as i32, success: true, ..Default::default() }
    }

    /// A response of `ty` that failed with `msg` (and `errno`, when the cause has one).
    pub fn failed(ty: CriuReqType, msg: impl Into<String>, errno: Option<i32>) -> CriuResp {
        CriuResp {
            r#type: ty as i32,
            success: false,
            cr_errmsg: Some(msg.into()),
            cr_errno: errno,
            ..Default::default()
        }
    }

    /// The NOTIFY message for action-script point `script` about `pid`.
    pub fn notify(script: &str, pid: i32) -> CriuResp {
        let notify = CriuNotify { script: Some(script.into()), pid: Some(pid) };
        CriuResp { notify: Some(notify), ..CriuResp::ok(CriuReqType::Notify) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn defaults_are_criu_s() {
        let o = CriuOpts::default();
        assert_eq!(o.images_dir_fd, -1);
        assert_eq!(o.log_level(), 2);
        assert_eq!(o.ghost_limit(), 1 << 20);
        assert_eq!(o.cpu_cap(), u32::MAX);
    }

    #[test]
    fn a_request_round_trips_with_its_field_numbers() {
        let req = CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts { images_dir_fd: 5, pid: Some(42), leave_running: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        // type = 1 (field 1, varint), then opts (field 2, length-delimited) holding field 1 = 5.
        assert_eq!(&bytes[..2], &[0x08, 0x01]);
        assert_eq!(bytes[2], 0x12);
        assert_eq!(&bytes[4..6], &[0x08, 0x05]);
        assert_eq!(CriuReq::decode(bytes.as_slice()).unwrap(), req);
    }

    #[test]
    fn a_request_without_its_type_decodes_as_empty() {
        // prost does not enforce `required`: a request with only keep_open (field 4) has type
        // EMPTY, which the server refuses.
        let req = CriuReq::decode(&[0x20, 0x01][..]).unwrap();
        assert_eq!(req.r#type(), CriuReqType::Empty);
    }
}
