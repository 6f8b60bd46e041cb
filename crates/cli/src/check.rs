//! `stasis check`: probe the kernel and CPU and say, feature by feature, what is there, what was
//! seen and what it enables. Fails (exit 1) when a required feature is missing.

use clap::Args;
use serde_json::{json, Value};
use stasis_sys::probe::{self, Feature, KernelFeatures};

/// Options of `stasis check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `stasis check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let features = probe::probe();
    let missing = features.missing_required();
    if args.json {
        crate::print_json(&to_json(&features));
    } else {
        print!("{}", render_text(&features));
    }
    if missing.is_empty() {
        return Ok(0);
    }
    if args.json {
        // The JSON object above already names them; stderr still gets the usual error line.
        eprintln!("stasis: error: missing required kernel features: {}", missing.join(", "));
        return Ok(1);
    }
    anyhow::bail!("missing required kernel features: {}", missing.join(", "))
}

/// `{"kernel", "xfeatures", "features": [{"name", "available", "required", "detail", "enables"}],
/// "missing_required": [...]}`.
fn to_json(k: &KernelFeatures) -> Value {
    let features: Vec<Value> = k
        .list()
        .into_iter()
        .map(|f| {
            json!({
                "name": f.name,
                "available": f.available,
                "required": f.required,
                "detail": f.detail,
                "enables": f.enables,
            })
        })
        .collect();
    json!({
        "kernel": k.release,
        "xfeatures": format!("{:#x}", k.xfeatures),
        "xsave_size": k.xsave_size,
        "pipe_max_size": k.pipe_max_size,
        "features": features,
        "missing_required": k.missing_required(),
    })
}

/// One line per feature, then a verdict:
/// `yes   clone3-set-tid  restoring tasks with their pids (required): clone3 refused ...`.
fn render_text(k: &KernelFeatures) -> String {
    let mut out = format!("kernel {}\n", k.release);
    for f in k.list() {
        out.push_str(&feature_line(&f));
    }
    if k.missing_required().is_empty() {
        out.push_str("all required features are available\n");
    }
    out
}

fn feature_line(f: &Feature) -> String {
    let mark = match (f.available, f.required) {
        (true, _) => "yes",
        (false, true) => "MISSING",
        (false, false) => "no",
    };
    let required = if f.required { " (required)" } else { "" };
    format!("{mark:<8}{:<15} {}{required}: {}\n", f.name, f.enables, f.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_marks_missing_required() {
        let f = Feature {
            name: "clone3-set-tid",
            available: false,
            detail: "clone3 with set_tid: Function not implemented".into(),
            enables: "restoring tasks with their pids",
            required: true,
        };
        assert_eq!(
            feature_line(&f),
            "MISSING clone3-set-tid  restoring tasks with their pids (required): clone3 with \
             set_tid: Function not implemented\n"
        );
    }

    #[test]
    fn json_lists_every_feature() {
        let k = probe::probe();
        let v = to_json(&k);
        assert_eq!(v["features"].as_array().map(Vec::len), Some(k.list().len()));
        assert!(v["missing_required"].is_array());
        assert!(render_text(&k).starts_with("kernel "));
    }
}
