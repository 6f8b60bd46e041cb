//! `stasis show`: print an image directory, as a summary for people or as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use stasis_image::{show, ImageDir};

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
        crate::print_json(&show::to_json(&dir).with_context(shown)?);
    } else {
        print!("{}", show::render_text(&dir).with_context(shown)?);
    }
    Ok(0)
}
