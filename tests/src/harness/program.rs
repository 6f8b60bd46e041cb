//! Real programs (CPython, OpenJDK, Node.js, PostgreSQL) as workloads: finding them, and talking
//! to the ones of `tests/programs/` over their unix socket. Those answer one line per connection
//! and then close it (so that no connection is open when the test dumps them): `add N` (a running
//! total), `state` (what the program keeps in memory, as text), and `verify` (the program checks
//! itself, answers and prints `PASS` or `FAIL: ...`, and exits).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a program may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/programs/NAME`.
pub fn program_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join(name)
}

/// The first of `candidates` that is an executable file, or the reason none is.
pub fn find_program(candidates: &[&str]) -> Result<PathBuf, String> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| format!("none of {candidates:?} is installed (scripts/setup.sh installs them)"))
}

/// Sends `request` on a new connection to `socket` and returns the answer line; then waits for the
/// program to close the connection.
pub fn ask(socket: &Path, request: &str) -> Result<String, String> {
    let what = |e: std::io::Error| format!("{request:?} to {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(what)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(what)?;
    stream.write_all(format!("{request}\n").as_bytes()).map_err(what)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(what)?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).map_err(what)?;
    Ok(line.trim_end().to_string())
}

/// A busybox shell's counter, written whole (renamed into place) each second so that
/// `/tmp/count` always holds the last value counted: the state a container test checks goes on.
pub const BUSYBOX_COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/count; sleep 1; done";

/// A root filesystem at `rootfs` for a container test: Debian's static busybox as `/bin/busybox`,
/// `tools` linked to it in `/bin`, and an empty `/tmp`; or the reason it could not be made.
pub fn busybox_rootfs(rootfs: &Path, tools: &[&str]) -> Result<(), String> {
    let busybox = find_program(&["/usr/bin/busybox", "/bin/busybox"])?;
    let bin = rootfs.join("bin");
    for d in [&bin, &rootfs.join("tmp")] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::copy(&busybox, bin.join("busybox")).map_err(|e| format!("copy busybox: {e}"))?;
    for tool in tools {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).map_err(|e| format!("link {tool}: {e}"))?;
    }
    Ok(())
}
