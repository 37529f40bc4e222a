//! `lade unpack`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::reference::Reference;
use lade::storage::LockMode;

#[derive(Args)]
pub struct UnpackArgs {
    /// Image in the store
    image_ref: String,
    /// Directory to write the root filesystem to (absent or empty)
    dir: PathBuf,
}

pub fn run(args: UnpackArgs, c: &Common) -> Result<ExitCode> {
    let name = Reference::parse(&args.image_ref)?;
    let storage = c.open_storage(LockMode::Shared)?;
    let out = lade::export::unpack_to_dir(&storage, &name, &args.dir)?;
    c.progress.info(&format!(
        "unpacked {} to {}",
        name.familiar(),
        out.display()
    ));
    Ok(ExitCode::SUCCESS)
}
