//! `stasis show`: print an image directory, as a summary for people or as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use stasis_image::ImageDir;

mod render;

/// Options of `stasis show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Image directory to read.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print every record of the image as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `stasis show`.
pub fn run(args: &ShowArgs) -> anyhow::Result<u8> {
    let shown = || format!("show {}", args.dir.display());
    let dir = ImageDir::open(&args.dir).with_context(shown)?;
    if args.json {
        crate::print_json(&render::to_json(&dir).with_context(shown)?);
    } else {
        print!("{}", render::render_text(&dir).with_context(shown)?);
    }
    Ok(0)
}

/// Options of `stasis dedup` (CRIU's `dedup`).
#[derive(Args, Debug)]
pub struct DedupArgs {
    /// The newest image of a chain: its parents give up the pages it holds.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `stasis dedup`.
pub fn dedup(args: &DedupArgs) -> anyhow::Result<u8> {
    let done = stasis_engine::dedup(&args.dir).with_context(|| format!("dedup {}", args.dir.display()))?;
    if args.json {
        crate::print_json(&serde_json::to_value(done).context("encode the dedup report")?);
    } else {
        println!("{} pages punched out of {} parent images", done.pages, done.images);
    }
    Ok(0)
}
