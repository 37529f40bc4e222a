//! `lade list --format json docker://REF`: the local record and what the registry says about
//! the reference, as one JSON object (the text form is `list`'s own).

use std::process::ExitCode;

use serde::Serialize;

use lade::error::{Error, Result};
use lade::reference::Reference;
use lade::storage::{ImageRecord, Storage};
use lade::transport::registry::{self, Options};

#[derive(Serialize)]
struct Listed {
    /// The reference, normalised.
    name: String,
    /// The store's record of it, or null.
    local: Option<ImageRecord>,
    remote: Remote,
    host_arch: String,
}

#[derive(Serialize)]
struct Remote {
    /// `yes`, `no` (the registry said so) or `unknown` (it could not be asked).
    available: &'static str,
    /// Why not `yes`.
    error: Option<String>,
    full_ref: Option<String>,
    digest: Option<String>,
    arch_aware: Option<bool>,
    archs: Vec<Arch>,
}

#[derive(Serialize)]
struct Arch {
    platform: String,
    digest: String,
}

pub fn print_json(storage: &Storage, r: &str, opts: &Options) -> Result<ExitCode> {
    let name = Reference::parse(r)?;
    let local = storage.images().get(&name)?;
    let remote = match registry::inspect(&name, opts) {
        Ok(i) => Remote {
            available: "yes",
            error: None,
            full_ref: Some(i.full_ref),
            digest: Some(i.digest.to_string()),
            arch_aware: Some(i.arch_aware),
            archs: i
                .archs
                .into_iter()
                .map(|(platform, d)| Arch {
                    platform,
                    digest: d.to_string(),
                })
                .collect(),
        },
        Err(e) => Remote {
            available: if matches!(e, Error::ImageNotFound(_)) {
                "no"
            } else {
                "unknown"
            },
            error: Some(super::one_line(&e)),
            full_ref: None,
            digest: None,
            arch_aware: None,
            archs: Vec::new(),
        },
    };
    super::print_json(&Listed {
        name: name.to_string(),
        local,
        remote,
        host_arch: lade::platform::host_arch(),
    })?;
    Ok(ExitCode::SUCCESS)
}
