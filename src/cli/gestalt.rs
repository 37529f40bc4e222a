//! `lade gestalt`.

use std::process::ExitCode;

use clap::Args;

use super::{Common, Format};
use lade::error::{Error, Result};
use lade::storage;

#[derive(Args)]
pub struct GestaltArgs {
    /// Print only this fact's value
    selector: Option<String>,
    /// Output: text, or JSON (an object of every fact, or the selected value)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: GestaltArgs, c: &Common) -> Result<ExitCode> {
    let (path, _) = storage::resolve_path(c.global.storage.as_deref())?;
    let facts = [
        ("storage-path", path.display().to_string()),
        ("storage-version", storage::FORMAT_VERSION.to_string()),
        ("arch", lade::platform::host_arch()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let json = args.format == Format::Json;
    match args.selector.as_deref() {
        None if json => {
            let map: serde_json::Map<String, serde_json::Value> = facts
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().into()))
                .collect();
            super::print_json(&map)?;
        }
        Some(sel) if json => match facts.iter().find(|(k, _)| *k == sel) {
            Some((_, v)) => super::print_json(v)?,
            None => return Err(unknown(sel, &facts)),
        },
        None => {
            for (k, v) in facts {
                println!("{k:16} {v}");
            }
        }
        Some(sel) => match facts.iter().find(|(k, _)| *k == sel) {
            Some((_, v)) => println!("{v}"),
            None => return Err(unknown(sel, &facts)),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn unknown(sel: &str, facts: &[(&str, String)]) -> Error {
    let known: Vec<&str> = facts.iter().map(|(k, _)| *k).collect();
    Error::invalid(
        format!("gestalt selector '{sel}'"),
        format!("unknown; known selectors: {}", known.join(", ")),
    )
}
