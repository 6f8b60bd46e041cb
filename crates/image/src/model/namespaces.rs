//! The namespaces of a tree (in `pstree.img`): UTS, network links and sysctls, time offsets,
//! cgroup roots.

use super::*;
use serde::Serialize;

/// A namespace of the tree other than stasis's: made again at restore by the first process of
/// `pstree.img` in it (the root at its creation, or a child created with `CLONE_NEW*` by a parent
/// in another namespace); the processes after it in the namespace inherit it from their parent.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Namespace {
    /// `uts`, `ipc`, `pid`, `net`, `time` or `cgroup`.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The namespace's inode at dump time: its id in `ProcessEntry::{uts,ipc,pid}_ns`.
    #[prost(uint64, tag = "2")]
    pub inode: u64,
    /// A UTS namespace's host name (`uname -n`).
    #[prost(string, tag = "3")]
    pub hostname: String,
    /// A UTS namespace's NIS domain name.
    #[prost(string, tag = "4")]
    pub domainname: String,
    /// A network namespace's devices, with their addresses.
    #[prost(message, repeated, tag = "5")]
    pub links: Vec<NetLink>,
    /// A network namespace's routes but those the kernel makes itself, as `ip route show` prints
    /// them, each after its family (`4 ` or `6 `): `ip -4 route replace` takes them back.
    #[prost(string, repeated, tag = "6")]
    pub routes: Vec<String>,
    /// A network namespace's writable `net.ipv4.*` and `net.ipv6.*` sysctls.
    #[prost(message, repeated, tag = "7")]
    pub sysctls: Vec<Sysctl>,
    /// A namespace outside the image (`--external net[INODE]:KEY`): nothing of it is saved, and
    /// restore joins the namespace given as `--inherit-fd fd[N]:KEY` or `--join-ns`.
    #[prost(string, tag = "8")]
    pub external_key: String,
    /// A time namespace's offsets (`/proc/PID/timens_offsets`): monotonic seconds and
    /// nanoseconds, boottime seconds and nanoseconds.
    #[prost(int64, repeated, tag = "9")]
    pub time_offsets: Vec<i64>,
    /// Kind `cgroup`: the namespace's root, a path in the cgroup v2 hierarchy as stasis sees it
    /// (the cgroup its creator was in when it unshared; `--cgroup-root` moves it as it moves the
    /// tasks' cgroups).
    #[prost(string, tag = "552")]
    pub cgroup_root: String,
    /// Kind `cgroup`: the namespace's root in each cgroup v1 hierarchy, as `cgroup_root` is in v2.
    #[prost(message, repeated, tag = "553")]
    pub cgroup_roots_v1: Vec<CgroupV1Path>,
    /// A network namespace's nftables tables (iptables-nft's among them) but the network locks of
    /// stasis, each as `nft list table` prints it, which `nft -f` loads back (empty: no table).
    #[prost(string, tag = "356")]
    pub nftables: String,
    /// Kind `user`: the namespace's uid mappings (`/proc/PID/uid_map` as stasis reads it: the
    /// outside ids are stasis's).
    #[prost(message, repeated, tag = "651")]
    pub uid_map: Vec<IdRange>,
    /// Kind `user`: the namespace's gid mappings (`/proc/PID/gid_map`).
    #[prost(message, repeated, tag = "652")]
    pub gid_map: Vec<IdRange>,
    /// Kind `user`: `setgroups(2)` is denied in the namespace (`/proc/PID/setgroups` is `deny`).
    #[prost(bool, tag = "653")]
    pub setgroups_deny: bool,
    /// A network namespace's conntrack entries (IPv4 and IPv6, every zone), as ctnetlink lists
    /// them; made again with ctnetlink at restore, after the firewall.
    #[prost(message, repeated, tag = "357")]
    pub conntrack: Vec<ConntrackEntry>,
}

/// A conntrack entry of a network namespace: what ctnetlink takes back of it.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ConntrackEntry {
    /// `AF_INET` (2) or `AF_INET6` (10).
    #[prost(uint32, tag = "1")]
    pub family: u32,
    #[prost(message, optional, tag = "2")]
    pub original: Option<ConntrackTuple>,
    /// The reply direction; with NAT (the `SNAT`, `DNAT` bits of `status`) it holds the mapping.
    #[prost(message, optional, tag = "3")]
    pub reply: Option<ConntrackTuple>,
    /// `enum ip_conntrack_status` bits (`IPS_*`).
    #[prost(uint32, tag = "4")]
    pub status: u32,
    /// Seconds it had left at the dump.
    #[prost(uint32, tag = "5")]
    pub timeout: u32,
    #[prost(uint32, tag = "6")]
    pub mark: u32,
    /// Its conntrack zone (0: the default one).
    #[prost(uint32, tag = "7")]
    pub zone: u32,
    /// A TCP entry's tracking state.
    #[prost(message, optional, tag = "8")]
    pub tcp: Option<ConntrackTcp>,
}

/// One direction of a conntrack entry.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ConntrackTuple {
    /// The source and destination addresses, as text (`10.0.0.1`, `fd00::1`).
    #[prost(string, tag = "1")]
    pub src: String,
    #[prost(string, tag = "2")]
    pub dst: String,
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
    #[prost(uint32, tag = "3")]
    pub protocol: u32,
    #[prost(uint32, tag = "4")]
    pub src_port: u32,
    #[prost(uint32, tag = "5")]
    pub dst_port: u32,
    /// ICMP and ICMPv6: the identifier, type and code.
    #[prost(uint32, tag = "6")]
    pub icmp_id: u32,
    #[prost(uint32, tag = "7")]
    pub icmp_type: u32,
    #[prost(uint32, tag = "8")]
    pub icmp_code: u32,
}

/// The TCP tracking state of a conntrack entry (`enum tcp_conntrack`), each direction's window
/// scale and `IP_CT_TCP_FLAG_*` flags.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ConntrackTcp {
    #[prost(uint32, tag = "1")]
    pub state: u32,
    #[prost(uint32, tag = "2")]
    pub wscale_original: u32,
    #[prost(uint32, tag = "3")]
    pub wscale_reply: u32,
    #[prost(uint32, tag = "4")]
    pub flags_original: u32,
    #[prost(uint32, tag = "5")]
    pub flags_reply: u32,
}

/// One line of a user namespace's uid or gid map: `count` ids from `inside` in the namespace are
/// the ids from `outside` in stasis's.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct IdRange {
    #[prost(uint32, tag = "1")]
    pub inside: u32,
    #[prost(uint32, tag = "2")]
    pub outside: u32,
    #[prost(uint32, tag = "3")]
    pub count: u32,
}

/// A network device of a network namespace of the tree.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetLink {
    #[prost(string, tag = "1")]
    pub name: String,
    /// `loopback` or `veth`.
    #[prost(string, tag = "2")]
    pub kind: String,
    /// Administratively up.
    #[prost(bool, tag = "3")]
    pub up: bool,
    #[prost(uint32, tag = "4")]
    pub mtu: u32,
    /// The hardware address (`aa:bb:...`), empty for the loopback.
    #[prost(string, tag = "5")]
    pub mac: String,
    /// A veth's peer outside the tree: its name there (`--external veth[NAME]:PEER`).
    #[prost(string, tag = "6")]
    pub peer: String,
    /// Addresses as `ADDRESS/PREFIX` (IPv6 link-local ones, which the kernel makes, are left out).
    #[prost(string, repeated, tag = "7")]
    pub addrs: Vec<String>,
}

/// A sysctl of a network namespace: its path below `/proc/sys/net/` and its value.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Sysctl {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
