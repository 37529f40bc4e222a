//! `lade inspect`.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{Common, Format};
use lade::error::{Error, Result};
use lade::inspect::{self, Inspection};
use lade::reference::Reference;
use lade::storage::LockMode;
use lade::transport::{self, Context, ImageLocation};

#[derive(Args)]
pub struct InspectArgs {
    /// Print the manifest exactly as stored (the index, for a multi-platform image)
    #[arg(long)]
    raw: bool,
    /// Print the image's config (with --raw: its exact bytes)
    #[arg(long)]
    config: bool,
    /// Do not ask a registry for the repository's tags (RepoTags stays empty)
    #[arg(long)]
    no_tags: bool,
    /// Output: JSON (as skopeo inspect), or a few lines of text
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// TRANSPORT:REF (docker://, oci:, oci-archive:, docker-archive:, lade:), or a stored image
    image: String,
}

pub fn run(args: InspectArgs, c: &Common) -> Result<ExitCode> {
    let loc = if ImageLocation::names_transport(&args.image) {
        ImageLocation::parse(&args.image)?
    } else {
        ImageLocation::Store(Reference::parse(&args.image)?)
    };
    let storage = if loc.is_store() {
        Some(c.open_storage(LockMode::Shared)?)
    } else {
        None
    };
    let ctx = Context {
        storage,
        registry: c.registry(),
    };
    let src = transport::open_source(&loc, &ctx)?;
    if args.raw && !args.config {
        let top = src.top_manifest()?;
        return write_out(&top.bytes);
    }
    let ins = inspect::fetch(&*src, &c.arch)?;
    if args.config {
        if args.raw {
            return write_out(&ins.config);
        }
        let v: serde_json::Value = serde_json::from_slice(&ins.config)
            .map_err(|e| Error::json(format!("config {}", ins.config_digest), e))?;
        super::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (name, tags) = names(&loc, &*src, &args, c);
    let report = inspect::report(&ins, name, tags)?;
    match args.format {
        Format::Json => super::print_json(&report)?,
        Format::Text => print_text(&report, &ins),
    }
    Ok(ExitCode::SUCCESS)
}

/// `Name` and `RepoTags` as skopeo gives them: a registry's repository and its tags; here
/// also a docker archive's tags for the image, and a stored image's own name.
fn names(
    loc: &ImageLocation,
    src: &dyn transport::ImageSource,
    args: &InspectArgs,
    c: &Common,
) -> (Option<String>, Vec<String>) {
    match loc {
        ImageLocation::Registry(r) => {
            let tags = if args.no_tags {
                Vec::new()
            } else {
                match lade::transport::registry::list_tags(r, &c.registry()) {
                    Ok(t) => t,
                    Err(e) => {
                        c.progress.warn(&format!(
                            "RepoTags left empty: {} (--no-tags skips asking)",
                            super::one_line(&e)
                        ));
                        Vec::new()
                    }
                }
            };
            (Some(r.name()), tags)
        }
        ImageLocation::Store(r) => (Some(r.name()), vec![r.familiar()]),
        _ => (None, src.names().iter().map(Reference::familiar).collect()),
    }
}

fn write_out(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("standard output", e))?;
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &inspect::Report, ins: &Inspection) {
    if let Some(n) = &r.name {
        println!("name:          {n}");
    }
    println!("digest:        {}", r.digest);
    if ins.image.digest != ins.top.digest {
        println!("platform's:    {}", ins.image.digest);
    }
    println!("image ID:      {}", r.image_id);
    let variant = r
        .variant
        .as_ref()
        .map(|v| format!("/{v}"))
        .unwrap_or_default();
    println!("platform:      {}/{}{variant}", r.os, r.architecture);
    println!(
        "created:       {}",
        r.created.as_deref().unwrap_or("unknown")
    );
    println!("layers:        {}", r.layers.len());
    if !r.repo_tags.is_empty() {
        println!("tags:          {}", r.repo_tags.join(" "));
    }
}
