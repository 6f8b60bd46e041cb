//! Network namespaces of the tree: the devices (the loopback, and veths whose peer is outside the
//! tree, named on the command line with `--external veth[NAME]:PEER` as CRIU does), their state,
//! MTU, hardware address and addresses, the routes but those the kernel makes itself, the
//! writable `net.ipv4.*`, `net.ipv6.*` and `net.netfilter.*` sysctls (`nf_conntrack_tcp_loose`
//! among them), the nftables tables ([`firewall`]: legacy iptables rules and rules nft cannot
//! print whole are refused by name) and the conntrack entries ([`conntrack`], made again after the
//! firewall). Any other kind of device is refused by name.
//!
//! Both sides run the `ip` command (iproute2) from a thread in the namespace: it inherits the
//! thread's network namespace, reads and writes every rtnetlink attribute of every device kind,
//! and its JSON output is stable, where a netlink encoder of our own would have to follow each
//! attribute of each kind. Dump reads `ip -j -d link`, `ip -j addr` and `ip route show table all`;
//! restore, on the thread that made the root's new network namespace (see `crate::ns`), creates
//! the devices (a veth with its peer in stasis's namespace, set up there), sets addresses (IPv6
//! ones with `nodad`, so they are usable at once, as they were), routes and sysctls, before any
//! socket of the tree is made in the namespace; the firewall comes once the sockets are made.

mod conntrack;
mod firewall;

use crate::error::{Error, Result};
use stasis_image::model::{Namespace, NetLink, Sysctl};
use stasis_sys::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::process::Command;

/// Where the namespace's sysctls are, as the thread in it sees them.
const SYSCTL_ROOT: &str = "/proc/sys/net";
/// The sysctl trees kept.
const SYSCTL_TREES: [&str; 3] = ["ipv4", "ipv6", "netfilter"];
/// Words of `ip route show` that `ip route replace` does not take.
const ROUTE_STATE_WORDS: [&str; 4] = ["linkdown", "dead", "offload", "trap"];

/// Run `ip ARGS` (from the calling thread, so in its network namespace); its standard output.
fn ip(pid: i32, args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().map_err(Error::io("ip (iproute2)"))?;
    if !out.status.success() {
        let what =
            format!("network namespace: ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        return Err(Error::Failed { pid: Pid(pid), what });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(pid: i32, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let text = ip(pid, args)?;
    serde_json::from_str(&text).map_err(|e| Error::Failed {
        pid: Pid(pid),
        what: format!("network namespace: ip {}: output is not the JSON expected: {e}", args.join(" ")),
    })
}

/// The network namespace the calling thread is in, for the image (`pid`: its first process,
/// `external`: the veths named with `--external veth[NAME]:PEER`).
pub fn dump(pid: i32, inode: u64, external: &[(String, String)]) -> Result<Namespace> {
    let nftables = firewall::dump(pid)?;
    let mut links = dump_links(pid, external)?;
    dump_addrs(pid, &mut links)?;
    let routes = dump_routes(pid)?;
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let sysctls = dump_sysctls(&names);
    let conntrack = conntrack::dump(pid)?;
    Ok(Namespace { kind: "net".into(), inode, links, routes, sysctls, nftables, conntrack, ..Default::default() })
}

fn dump_links(pid: i32, external: &[(String, String)]) -> Result<Vec<NetLink>> {
    let mut links = Vec::new();
    for l in json(pid, &["-j", "-d", "link", "show"])? {
        let name = l["ifname"].as_str().unwrap_or_default().to_string();
        let up = l["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"));
        let kind = match (l["link_type"].as_str(), l["linkinfo"]["info_kind"].as_str()) {
            (Some("loopback"), _) => "loopback",
            (_, Some("veth")) => "veth",
            (_, k) => {
                let what = format!("network device {name} of kind {} in its network namespace", k.unwrap_or("unknown"));
                return Err(Error::Unsupported { pid: Pid(pid), what });
            }
        };
        let mut peer = String::new();
        if kind == "veth" {
            peer = external.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone()).ok_or_else(|| {
                let what =
                    format!("veth {name} has its peer outside the tree: name it with --external veth[{name}]:PEER");
                Error::Failed { pid: Pid(pid), what }
            })?;
            if l.get("link_netnsid").is_none() {
                let what = format!("veth {name} with its peer in the same network namespace");
                return Err(Error::Unsupported { pid: Pid(pid), what });
            }
        }
        let mac = if kind == "veth" { l["address"].as_str().unwrap_or_default().to_string() } else { String::new() };
        let mtu = l["mtu"].as_u64().unwrap_or(0) as u32;
        links.push(NetLink { name, kind: kind.into(), up, mtu, mac, peer, addrs: Vec::new() });
    }
    Ok(links)
}

fn dump_addrs(pid: i32, links: &mut [NetLink]) -> Result<()> {
    for a in json(pid, &["-j", "addr", "show"])? {
        let name = a["ifname"].as_str().unwrap_or_default();
        let Some(link) = links.iter_mut().find(|l| l.name == name) else { continue };
        for info in a["addr_info"].as_array().into_iter().flatten() {
            if info["family"] == "inet6" && info["scope"] == "link" {
                continue;
            }
            if let (Some(local), Some(prefix)) = (info["local"].as_str(), info["prefixlen"].as_u64()) {
                link.addrs.push(format!("{local}/{prefix}"));
            }
        }
    }
    Ok(())
}

fn dump_routes(pid: i32) -> Result<Vec<String>> {
    let mut routes = Vec::new();
    for family in ["4", "6"] {
        for line in ip(pid, &[&format!("-{family}"), "route", "show", "table", "all"])?.lines() {
            if let Some(route) = kept_route(line) {
                routes.push(format!("{family} {route}"));
            }
        }
    }
    Ok(routes)
}

/// A route of `ip route show` to restore, without its state words; None for the kernel's own.
fn kept_route(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    if line.contains("proto kernel")
        || line.contains("table local")
        || ["local", "broadcast", "multicast", "anycast"].contains(&first)
    {
        return None;
    }
    Some(line.split_whitespace().filter(|w| !ROUTE_STATE_WORDS.contains(w)).collect::<Vec<_>>().join(" "))
}

/// The writable sysctls of the namespace; per-device ones only for `devices` (and `all`,
/// `default`). Files that cannot be read (write-only, or unset like `stable_secret`) are left out.
fn dump_sysctls(devices: &[&str]) -> Vec<Sysctl> {
    let mut out = Vec::new();
    for tree in SYSCTL_TREES {
        walk(&Path::new(SYSCTL_ROOT).join(tree), devices, &mut out);
    }
    out
}

fn walk(dir: &Path, devices: &[&str], out: &mut Vec<Sysctl>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            let per_device = matches!(dir.file_name().and_then(|n| n.to_str()), Some("conf" | "neigh"));
            let name = e.file_name().to_string_lossy().into_owned();
            if !per_device || ["all", "default"].contains(&name.as_str()) || devices.contains(&name.as_str()) {
                walk(&path, devices, out);
            }
        } else if meta.permissions().mode() & 0o200 != 0 {
            if let Ok(value) = std::fs::read_to_string(&path) {
                let rel = path.strip_prefix(SYSCTL_ROOT).unwrap_or(&path).to_string_lossy().into_owned();
                out.push(Sysctl { path: rel, value: value.trim_end_matches('\n').to_string() });
            }
        }
    }
}

/// Make the namespace `ns` in the calling thread's (new, empty) network namespace; `host` is
/// stasis's own network namespace, where each veth's peer goes, and `rename` the peer names
/// given at restore (`--external veth[NAME]:PEER`), which replace the image's; `weak`: a sysctl
/// this kernel lacks is skipped (`--weak-sysctls`), else the restore fails naming it.
pub fn restore(
    pid: i32,
    ns: &Namespace,
    host: BorrowedFd<'_>,
    (rename, weak): (&[(String, String)], bool),
) -> Result<()> {
    if ns.links.is_empty() {
        // Saved empty (`--empty-ns net`, as runc dumps every container): the caller sets the
        // namespace up; its loopback is brought up, as CRIU does (a container's server on
        // 127.0.0.1 needs it, and runc configures none).
        return ip(pid, &["link", "set", "lo", "up"]).map(drop);
    }
    for l in &ns.links {
        let peer = rename.iter().find(|(n, _)| *n == l.name).map_or(l.peer.as_str(), |(_, p)| p.as_str());
        make_link(pid, l, peer, host)?;
    }
    for l in &ns.links {
        for a in &l.addrs {
            let mut args = vec!["addr", "replace", a.as_str(), "dev", l.name.as_str()];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(pid, &args)?;
        }
    }
    for r in &ns.routes {
        let (family, route) = r.split_once(' ').unwrap_or(("4", r));
        let mut args = vec![if family == "6" { "-6" } else { "-4" }, "route", "replace"];
        args.extend(route.split_whitespace());
        ip(pid, &args)?;
    }
    restore_sysctls(pid, &ns.sysctls, weak)
}

/// Load the nftables tables of a namespace ([`Namespace::nftables`]) into the calling thread's
/// new network namespace, once the tree's sockets are made there and before any of its processes
/// runs.
pub fn restore_firewall(pid: i32, tables: &str) -> Result<()> {
    firewall::restore(pid, tables)
}

/// Make the conntrack entries of a namespace ([`Namespace::conntrack`]) in the calling thread's
/// new network namespace, once its firewall is loaded and before any process of the tree runs.
pub fn restore_conntrack(pid: i32, entries: &[stasis_image::model::ConntrackEntry]) -> Result<()> {
    conntrack::restore(pid, entries)
}

fn make_link(pid: i32, l: &NetLink, peer: &str, host: BorrowedFd<'_>) -> Result<()> {
    let host_path = format!("/proc/{}/fd/{}", std::process::id(), host.as_raw_fd());
    let mtu = l.mtu.to_string();
    match l.kind.as_str() {
        "loopback" => {}
        "veth" => {
            // A path for `netns` is opened as is (iproute2's netns_get_fd).
            add_veth(pid, &l.name, peer, &host_path)?;
            stasis_sys::ns::run_in_fd(host, stasis_sys::ns::Kind::Net, || ip(pid, &["link", "set", peer, "up"]))
                .map_err(Error::sys(pid, "entering our network namespace"))??;
            if !l.mac.is_empty() {
                ip(pid, &["link", "set", &l.name, "address", &l.mac])?;
            }
        }
        other => {
            let what = format!("network device {} of kind {other}", l.name);
            return Err(Error::Incompatible { file: "pstree.img".into(), what });
        }
    }
    if l.mtu != 0 {
        ip(pid, &["link", "set", &l.name, "mtu", &mtu])?;
    }
    ip(pid, &["link", "set", &l.name, if l.up { "up" } else { "down" }])?;
    Ok(())
}

/// Make the veth `name` with its peer `peer` in the namespace at `host_path`. The dumped tree's
/// own pair goes only once the kernel has torn its namespace down, which it does in the background
/// after the last process left: while `peer` still exists, this waits for it, up to 10 s.
fn add_veth(pid: i32, name: &str, peer: &str, host_path: &str) -> Result<()> {
    let args = ["link", "add", name, "type", "veth", "peer", "name", peer, "netns", host_path];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match ip(pid, &args) {
            Err(Error::Failed { what, .. })
                if what.ends_with("File exists") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(Error::Failed { pid, what }) if what.ends_with("File exists") => {
                let what = format!("{what} (the peer {peer} or {name} still exists after 10 s)");
                return Err(Error::Failed { pid, what });
            }
            other => return other.map(drop),
        }
    }
}

/// Write each sysctl whose value differs here (the namespace-wide ones first, then `all`,
/// `default`, then each device's).
fn restore_sysctls(pid: i32, sysctls: &[Sysctl], weak: bool) -> Result<()> {
    let rank = |s: &Sysctl| {
        let p = &s.path;
        (p.matches('/').count() > 1, !p.contains("/all/"), !p.contains("/default/"))
    };
    let mut ordered: Vec<&Sysctl> = sysctls.iter().collect();
    ordered.sort_by_key(|s| rank(s));
    for s in ordered {
        let path = Path::new(SYSCTL_ROOT).join(&s.path);
        match std::fs::read_to_string(&path) {
            Ok(now) if now.trim_end_matches('\n') == s.value => continue,
            Ok(_) => {}
            Err(_) if weak => {
                log::warn!("pid {pid}: sysctl net/{} does not exist in the new network namespace: not set", s.path);
                continue;
            }
            Err(e) => {
                let what = format!("sysctl net/{} of the image: {e} (--weak-sysctls skips it)", s.path);
                return Err(Error::Failed { pid: Pid(pid), what });
            }
        }
        if let Err(e) = std::fs::write(&path, &s.value) {
            let what = format!("sysctl net/{} = {:?} in its network namespace: {e}", s.path, s.value);
            return Err(Error::Failed { pid: Pid(pid), what });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::kept_route;

    #[test]
    fn routes_the_kernel_makes_are_left_out_and_state_words_dropped() {
        assert_eq!(kept_route("10.1.0.0/30 dev v0 proto kernel scope link src 10.1.0.2"), None);
        assert_eq!(kept_route("local 10.1.0.2 dev v0 table local proto kernel scope host src 10.1.0.2"), None);
        assert_eq!(kept_route("default via 10.1.0.1 dev v0 linkdown").as_deref(), Some("default via 10.1.0.1 dev v0"));
        assert_eq!(kept_route("192.0.2.0/24 via 10.1.0.1 dev v0").as_deref(), Some("192.0.2.0/24 via 10.1.0.1 dev v0"));
    }
}
