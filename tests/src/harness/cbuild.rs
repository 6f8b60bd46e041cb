//! C workloads, compiled by the test at run time (a static glibc binary cannot come from Cargo).

use super::dir::TestDir;
use super::process::Workload;
use std::path::Path;
use std::process::Command;

/// Compiles `workloads/<name>.c` with `gcc -static -O1` into the test directory. The error says
/// why it could not be built (no gcc, no static libc), for the skip message.
pub fn static_c_workload(dir: &TestDir, name: &str) -> Result<Workload, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(format!("{name}.c"));
    let out = dir.join(name);
    let result = Command::new("gcc")
        .args(["-static", "-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "gcc -static -O1 {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    Ok(Workload::new(name, out))
}
