//! The mm fields survive: /proc/self/{cmdline,environ,auxv} read the same, /proc/self/exe links to
//! the same file, and the memory layout fields of /proc/self/stat (code, data, brk, stack, argument
//! and environment boundaries) are unchanged. The harness passes unusual arguments and
//! environment variables.

use stasis_tests::workload::{self, OrFail};

/// Fields of /proc/self/stat (1-based, as in proc(5)): startcode endcode startstack, start_data
/// end_data start_brk arg_start arg_end env_start env_end.
const STAT_FIELDS: [(usize, &str); 10] = [
    (26, "startcode"),
    (27, "endcode"),
    (28, "startstack"),
    (45, "start_data"),
    (46, "end_data"),
    (47, "start_brk"),
    (48, "arg_start"),
    (49, "arg_end"),
    (50, "env_start"),
    (51, "env_end"),
];

#[derive(Debug, PartialEq)]
struct Fields {
    cmdline: Vec<u8>,
    environ: Vec<u8>,
    auxv: Vec<u8>,
    exe: std::path::PathBuf,
    stat: Vec<(String, String)>,
}

fn stat_fields() -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the comm, which ends at the last ')': field 3 is the first one.
    let rest = &text[text.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(STAT_FIELDS.iter().map(|&(n, name)| (name.to_string(), fields.get(n - 3).unwrap_or(&"?").to_string())).collect())
}

fn read_fields() -> std::io::Result<Fields> {
    Ok(Fields {
        cmdline: std::fs::read("/proc/self/cmdline")?,
        environ: std::fs::read("/proc/self/environ")?,
        auxv: std::fs::read("/proc/self/auxv")?,
        exe: std::fs::read_link("/proc/self/exe")?,
        stat: stat_fields()?,
    })
}

fn main() {
    let mut s = workload::start();
    let before = read_fields().or_fail("read mm fields");
    s.ready();
    s.wait_for_wake();
    match read_fields() {
        Ok(after) => {
            let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\0', "\\0");
            s.checker.same("/proc/self/cmdline", &show(&before.cmdline), &show(&after.cmdline));
            s.checker.same("/proc/self/environ", &show(&before.environ), &show(&after.environ));
            s.checker.check(before.auxv == after.auxv, || "/proc/self/auxv differs".into());
            s.checker.same("/proc/self/exe", &before.exe, &after.exe);
            for (b, a) in before.stat.iter().zip(&after.stat) {
                s.checker.same(&format!("/proc/self/stat {}", b.0), &b.1, &a.1);
            }
        }
        Err(e) => s.checker.check(false, || format!("reading mm fields: {e}")),
    }
    s.finish()
}
