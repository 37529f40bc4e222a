//! `lade pull`.

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::Result;
use lade::pull::{PullOptions, TagPins};
use lade::reference::Reference;
use lade::storage::LockMode;
use lade::transport::ImageLocation;

#[derive(Args)]
pub struct PullArgs {
    /// Parse IMAGE_REF, print a report and exit, touching neither network nor store
    #[arg(long)]
    parse_only: bool,
    /// Unpack only the first N layers (debugging)
    #[arg(long, value_name = "N")]
    last_layer: Option<usize>,
    /// Copy every blob even if the store has it
    #[arg(long)]
    always_download: bool,
    /// Fail if a registry tag is not pinned in ./lade-tags.lock
    #[arg(long)]
    locked: bool,
    /// Refuse the image unless it carries a signature this public key verifies (checked
    /// before anything is copied; the signatures are kept in the store)
    #[arg(long, value_name = "PUB")]
    verify_key: Option<std::path::PathBuf>,
    /// Source: IMAGE_REF (a registry), TRANSPORT:…, or oras://REF (a SIF image)
    source: String,
    /// Name in the store [default: the source's own reference]
    dest_ref: Option<String>,
}

pub fn run(args: PullArgs, c: &Common) -> Result<ExitCode> {
    let source = &args.source;
    if args.parse_only {
        let r = Reference::parse(source.strip_prefix("docker://").unwrap_or(source))?;
        print!("{}", r.parse_report());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(reference) = lade::artifact::sif::parse_oras(source) {
        return pull_sif(&reference?, args.dest_ref.as_deref(), c);
    }
    let src_loc = ImageLocation::parse_pull_source(source)?;
    let dest_name = args.dest_ref.as_deref().map(Reference::parse).transpose()?;
    let storage = c.open_storage(LockMode::Shared)?;
    // Only a registry source reads the project's tag lock file.
    let pins = match &src_loc {
        ImageLocation::Registry(_) => TagPins::of_project(args.locked)?,
        _ => TagPins::default(),
    };
    let verify = args
        .verify_key
        .as_deref()
        .map(lade::sign::keys::load_public)
        .transpose()?;
    let pins = pins.verifying(verify);
    let opts = PullOptions {
        arch: c.arch.clone(),
        last_layer: args.last_layer,
        always_download: args.always_download,
    };
    let (name, image) = lade::pull::pull(
        &storage,
        &src_loc,
        dest_name,
        &c.registry(),
        &pins,
        &opts,
        c.progress,
    )?;
    if image.from_index.is_none()
        && let Some(record) = storage.images().get(&name)?
        && let Some(w) =
            lade::platform::mismatch_warning(&c.arch, record.platform.as_deref(), source)
    {
        c.progress.warn(&w);
    }
    c.progress
        .info(&format!("done: {} {}", name.familiar(), image.top.digest));
    Ok(ExitCode::SUCCESS)
}

/// `lade pull oras://REF [NAME]`: a SIF image into the store, for `lade run NAME`.
fn pull_sif(reference: &Reference, name: Option<&str>, c: &Common) -> Result<ExitCode> {
    let name = match name {
        Some(n) => Reference::parse(n)?,
        None => reference.clone(),
    };
    let storage = c.open_storage(LockMode::Shared)?;
    c.progress.info(&format!(
        "pulling oras://{reference} to {}",
        name.familiar()
    ));
    let record =
        lade::artifact::sif::pull_to_store(&storage, reference, &name, &c.registry(), c.progress)?;
    c.progress.info(&format!(
        "done: {} {} (SIF file {})",
        name.familiar(),
        record.blob,
        storage.blobs().path(&record.blob).display()
    ));
    Ok(ExitCode::SUCCESS)
}
