//! Namespaces for the workloads: the UTS names (`unshare(2)` is in `process`), and the inode of a namespace link.

use super::cvt;
use std::ffi::CString;
use std::io;

/// `sethostname(2)` and `setdomainname(2)`.
pub fn set_uts_names(host: &str, domain: &str) -> io::Result<()> {
    let (h, d) = (CString::new(host)?, CString::new(domain)?);
    // SAFETY: the pointer and length describe `h`, alive for the call.
    cvt(unsafe { libc::sethostname(h.as_ptr(), host.len()) })?;
    // SAFETY: the pointer and length describe `d`, alive for the call.
    cvt(unsafe { libc::setdomainname(d.as_ptr(), domain.len()) }).map(drop)
}

/// The host and domain names (`uname(2)`).
pub fn uts_names() -> io::Result<(String, String)> {
    // SAFETY: utsname is plain data; all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live local of the right type.
    cvt(unsafe { libc::uname(&mut u) })?;
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((field(&u.nodename), field(&u.domainname)))
}

/// The target of `/proc/PID/ns/NAME` (`uts:[4026531838]`); `pid` 0 for the caller.
pub fn ns_link(pid: i32, name: &str) -> io::Result<String> {
    let path = match pid {
        0 => format!("/proc/self/ns/{name}"),
        p => format!("/proc/{p}/ns/{name}"),
    };
    Ok(std::fs::read_link(path)?.to_string_lossy().into_owned())
}

/// The inode of the user namespace owning the namespace at `path` (`ioctl(NS_GET_USERNS)`, see
/// ioctl_ns(2)).
pub fn ns_owner_inode(path: &str) -> io::Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let ns = std::fs::File::open(path)?;
    // SAFETY: the ioctl takes no argument; it returns a new fd, owned below.
    let fd = cvt(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) })?;
    // SAFETY: `fd` is a new fd nothing else owns.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(std::os::unix::fs::MetadataExt::ino(&owner.metadata()?))
}

/// The inode of the namespace at `path` (`/proc/self/ns/user`).
pub fn ns_inode(path: &str) -> io::Result<u64> {
    Ok(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path)?))
}
