//! `lade build`, `lade build-cache` and the hidden `lade build-run-step` (a build's RUN in its
//! own process), as thin calls into [`lade::build`].

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::build::executor::{BuildArgs, RunStepArgs};
use lade::error::Result;
use lade::pull::TagPins;
use lade::storage::LockMode;

#[derive(Args)]
pub struct BuildCacheArgs {
    /// Forget every cached build step, and free the layers only the cache used
    #[arg(long)]
    reset: bool,
    /// Drop the states no image's build reaches, and free their layers
    #[arg(long)]
    gc: bool,
    /// Print a text tree of the cached states, from their FROM images
    #[arg(long)]
    tree: bool,
}

pub fn build(args: BuildArgs, c: &Common) -> Result<ExitCode> {
    // FROM resolves registry tags through the project's lock file, as `lade pull` does.
    let pins = TagPins::of_project(args.locked)?;
    lade::build::executor::build(
        &args,
        || c.open_storage(LockMode::Shared),
        c.registry(),
        pins,
        c.arch.clone(),
        c.progress,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn build_cache(args: BuildCacheArgs, c: &Common) -> Result<ExitCode> {
    let mode = if args.reset || args.gc {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let storage = c.open_storage(mode)?;
    let opts = lade::build::cache::manage::Options {
        reset: args.reset,
        gc: args.gc,
        tree: args.tree,
    };
    print!(
        "{}",
        lade::build::cache::manage::build_cache(&storage, opts)?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_step(args: RunStepArgs, c: &Common) -> Result<ExitCode> {
    let storage = c.open_storage(LockMode::Shared)?;
    match lade::build::executor::run_step(&storage, args)? {}
}
