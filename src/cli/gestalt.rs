//! `lade gestalt`.

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::{Error, Result};
use lade::storage;

#[derive(Args)]
pub struct GestaltArgs {
    /// Print only this value (storage-path, storage-version, arch or version)
    selector: Option<String>,
}

pub fn run(args: GestaltArgs, c: &Common) -> Result<ExitCode> {
    let (path, _) = storage::resolve_path(c.global.storage.as_deref())?;
    let facts = [
        ("storage-path", path.display().to_string()),
        ("storage-version", storage::FORMAT_VERSION.to_string()),
        ("arch", lade::platform::host_arch()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    match args.selector.as_deref() {
        None => {
            for (k, v) in facts {
                println!("{k:16} {v}");
            }
        }
        Some(sel) => match facts.iter().find(|(k, _)| *k == sel) {
            Some((_, v)) => println!("{v}"),
            None => {
                let known: Vec<&str> = facts.iter().map(|(k, _)| *k).collect();
                return Err(Error::invalid(
                    format!("gestalt selector '{sel}'"),
                    format!("unknown; known selectors: {}", known.join(", ")),
                ));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
