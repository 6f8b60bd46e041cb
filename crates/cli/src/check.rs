//! `stasis check`: probe the kernel and CPU and say, feature by feature, what is there, what was
//! seen and what it enables. Fails (exit 1) when a required feature is missing; with `--extra`,
//! `--experimental` or `--all` (CRIU's), also when an optional one is; with `--feature NAME`,
//! checks only the features named.

use clap::Args;
use serde_json::{json, Value};
use stasis_sys::probe::{self, Feature, KernelFeatures};

use crate::criu_opts::CriuArgs;

/// Options of `stasis check`: CRIU's (`--feature`, `--extra`, `--all`...) and `--json`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `stasis check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let features = probe::probe();
    if let Some(names) = args.criu.get("feature") {
        return check_named(&features, names, args.json);
    }
    let c = &args.criu;
    let strict = c.is_set("extra") || c.is_set("experimental") || c.is_set("all");
    let mut missing = features.missing_required();
    if strict {
        missing = features.list().iter().filter(|f| !f.available).map(|f| f.name).collect();
    }
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
    match strict {
        true => anyhow::bail!("missing kernel features: {}", missing.join(", ")),
        false => anyhow::bail!("missing required kernel features: {}", missing.join(", ")),
    }
}

/// `--feature NAME...`: one line (or JSON object) per feature; exit 1 unless all are available. A
/// name may be spelled with `_` as CRIU's are (`clone3_set_tid`).
fn check_named(features: &KernelFeatures, names: &[String], json: bool) -> anyhow::Result<u8> {
    let list = features.list();
    let mut found = Vec::new();
    for name in names {
        let wanted = name.replace('_', "-");
        match list.iter().find(|f| f.name == wanted) {
            Some(f) => found.push(f),
            None => {
                let known: Vec<&str> = list.iter().map(|f| f.name).collect();
                anyhow::bail!("unknown feature {name:?} (stasis knows: {})", known.join(", "))
            }
        }
    }
    if json {
        let v: Vec<Value> =
            found.iter().map(|f| json!({"name": f.name, "available": f.available, "detail": f.detail})).collect();
        crate::print_json(&json!({ "features": v }));
    } else {
        for f in &found {
            print!("{}", feature_line(f));
        }
    }
    let missing: Vec<&str> = found.iter().filter(|f| !f.available).map(|f| f.name).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    anyhow::bail!("missing kernel features: {}", missing.join(", "))
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
