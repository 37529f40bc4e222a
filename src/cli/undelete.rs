//! `lade undelete`.

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::reference::Reference;
use lade::storage::LockMode;

#[derive(Args)]
pub struct UndeleteArgs {
    /// Name of the deleted image
    image_ref: String,
}

pub fn run(args: UndeleteArgs, c: &Common) -> Result<ExitCode> {
    let name = Reference::parse(&args.image_ref)?;
    let storage = c.open_storage(LockMode::Shared)?;
    let restored = lade::storage::undelete::undelete(&storage, &name)?;
    println!("undeleted {restored}");
    Ok(ExitCode::SUCCESS)
}
