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
    /// Registry reference to push to [default: IMAGE_REF]
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
