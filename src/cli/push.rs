//! `lade push`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::Common;
use lade::compression::Compression;
use lade::error::Result;
use lade::push::PushSource;
use lade::reference::Reference;
use lade::storage::LockMode;
use lade::transport::{Context, ImageLocation};

#[derive(Args)]
pub struct PushArgs {
    /// Push the tree in DIR, packed as one layer, instead of a stored image
    #[arg(long, value_name = "DIR")]
    image: Option<PathBuf>,
    /// Compression of layers packed from a tree
    #[arg(long, value_enum, default_value_t = PushCompression::Gzip)]
    compression: PushCompression,
    /// The stored image (with --image: only the default destination)
    image_ref: String,
    /// Registry reference to push to [default: IMAGE_REF], or another transport's location
    /// (docker-archive:FILE[:NAME:TAG], oci:DIR[:REF], oci-archive:FILE[:REF])
    dest_ref: Option<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PushCompression {
    Gzip,
    Zstd,
    None,
}

pub fn run(args: PushArgs, c: &Common) -> Result<ExitCode> {
    let name = Reference::parse(&args.image_ref)?;
    // `lade push IMG docker-archive:FILE` (or another transport), as with `podman push`.
    if let Some(d) = args.dest_ref.as_deref()
        && !d.starts_with("docker://")
        && let Ok(dest) = ImageLocation::parse(d)
        && args.image.is_none()
    {
        return push_elsewhere(&name, &dest, c);
    }
    let dest = match args.dest_ref.as_deref() {
        Some(d) => Reference::parse(d.strip_prefix("docker://").unwrap_or(d))?,
        None => name.clone(),
    };
    let storage = c.open_storage(LockMode::Shared)?;
    let what = match &args.image {
        Some(dir) => PushSource::Tree {
            dir,
            compression: match args.compression {
                PushCompression::Gzip => Compression::Gzip,
                PushCompression::Zstd => Compression::Zstd,
                PushCompression::None => Compression::None,
            },
        },
        None => PushSource::Stored(&name),
    };
    let image = lade::push::push(
        &storage,
        what,
        &dest,
        &c.registry(),
        c.arch.clone(),
        c.progress,
    )?;
    c.progress
        .info(&format!("pushed docker://{dest} {}", image.top.digest));
    Ok(ExitCode::SUCCESS)
}

/// A stored image copied to a destination other than a registry.
fn push_elsewhere(name: &Reference, dest: &ImageLocation, c: &Common) -> Result<ExitCode> {
    let ctx = Context {
        storage: Some(c.open_storage(LockMode::Shared)?),
        registry: c.registry(),
    };
    let src = ImageLocation::Store(name.clone());
    c.progress.info(&format!("pushing {src} to {dest}"));
    let opts = lade::copy::CopyOptions {
        arch: c.arch.clone(),
        ..Default::default()
    };
    let (to, image) = lade::copy::copy_between(&src, dest, &ctx, &opts, c.progress)?;
    c.progress
        .info(&format!("pushed {to} {}", image.top.digest));
    Ok(ExitCode::SUCCESS)
}
