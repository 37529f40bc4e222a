//! `lade reset`.

use std::process::ExitCode;

use super::Common;
use lade::error::Result;
use lade::storage;

pub fn run(c: &Common) -> Result<ExitCode> {
    let (path, _) = storage::resolve_path(c.global.storage.as_deref())?;
    storage::reset(&path)?;
    c.progress.info(&format!("reset {}", path.display()));
    Ok(ExitCode::SUCCESS)
}
