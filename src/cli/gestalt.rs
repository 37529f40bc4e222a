//! `lade gestalt`.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{Common, Format};
use lade::error::{Error, Result};
use lade::storage;

#[derive(Args)]
pub struct GestaltArgs {
    /// Print only this fact's value (storage-path, ro-storage, storage-version, arch or
    /// version); ro-storage prints one read-only store a line
    selector: Option<String>,
    /// Output: text, or JSON (an object of every fact, or the selected value)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: GestaltArgs, c: &Common) -> Result<ExitCode> {
    let (path, _) = storage::resolve_path(c.global.storage.as_deref())?;
    // As a command opening the store uses them: each once, never the store itself.
    let read_only = storage::distinct_read_only(&path, c.read_only_stores()?);
    let facts: [(&str, Value); 5] = [
        ("storage-path", path.display().to_string().into()),
        (
            "ro-storage",
            read_only
                .iter()
                .map(|p| Value::from(p.display().to_string()))
                .collect(),
        ),
        // A string, as it always was in JSON.
        (
            "storage-version",
            storage::FORMAT_VERSION.to_string().into(),
        ),
        ("arch", lade::platform::host_arch().into()),
        ("version", env!("CARGO_PKG_VERSION").into()),
    ];
    let json = args.format == Format::Json;
    match args.selector.as_deref() {
        None if json => {
            let map: serde_json::Map<String, Value> = facts
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            super::print_json(&map)?;
        }
        Some(sel) => match facts.iter().find(|(k, _)| *k == sel) {
            Some((_, v)) if json => super::print_json(v)?,
            // One a line, for scripts; nothing when there are none.
            Some((_, Value::Array(items))) => items.iter().for_each(|i| println!("{}", text(i))),
            Some((_, v)) => println!("{}", text(v)),
            None => return Err(unknown(sel, &facts)),
        },
        None => {
            for (k, v) in &facts {
                let shown = match v {
                    Value::Array(items) if items.is_empty() => "none".to_string(),
                    Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(":"),
                    v => text(v),
                };
                println!("{k:16} {shown}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A fact's value as text: a string without JSON's quotes.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn unknown(sel: &str, facts: &[(&str, Value)]) -> Error {
    let known: Vec<&str> = facts.iter().map(|(k, _)| *k).collect();
    Error::invalid(
        format!("gestalt selector '{sel}'"),
        format!("unknown; known selectors: {}", known.join(", ")),
    )
}
