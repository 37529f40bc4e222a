//! `lade import`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::reference::Reference;
use lade::storage::LockMode;

#[derive(Args)]
pub struct ImportArgs {
    /// Directory, or tarball with or without one top-level directory, holding the root filesystem
    path: PathBuf,
    /// Name of the new image in the store
    image_ref: String,
}

pub fn run(args: ImportArgs, c: &Common) -> Result<ExitCode> {
    let name = Reference::parse(&args.image_ref)?;
    let storage = c.open_storage(LockMode::Shared)?;
    lade::import::import(&storage, &args.path, &name, c.progress)?;
    c.progress.info(&format!(
        "imported {} as {}",
        args.path.display(),
        name.familiar()
    ));
    Ok(ExitCode::SUCCESS)
}
