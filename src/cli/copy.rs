//! `lade copy`.

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::copy::{CopyOptions, copy_between};
use lade::error::Result;
use lade::storage::LockMode;
use lade::transport::{Context, ImageLocation};

#[derive(Args)]
pub struct CopyArgs {
    /// Copy every platform of a multi-architecture index
    #[arg(long)]
    all: bool,
    source: String,
    destination: String,
}

pub fn run(args: CopyArgs, c: &Common) -> Result<ExitCode> {
    let src = ImageLocation::parse(&args.source)?;
    let dst = ImageLocation::parse(&args.destination)?;
    let storage = if src.needs_store() || dst.needs_store() {
        Some(c.open_storage(LockMode::Shared)?)
    } else {
        None
    };
    let ctx = Context {
        storage,
        registry: c.registry(),
    };
    let opts = CopyOptions {
        arch: c.arch.clone(),
        all: args.all,
        ..CopyOptions::default()
    };
    let (copied_to, image) = copy_between(&src, &dst, &ctx, &opts, c.progress)?;
    c.progress
        .info(&format!("copied {copied_to} {}", image.top.digest));
    Ok(ExitCode::SUCCESS)
}
