//! `lade copy`.

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::copy::{CopyOptions, copy_between};
use lade::error::Result;
use lade::storage::LockMode;
use lade::transport::{Context, ImageLocation};

#[derive(Args)]
pub struct CopyArgs {
    /// Copy every platform of a multi-architecture index, and the image's signatures and
    /// referrers (attachments)
    #[arg(long)]
    all: bool,
    /// Image to copy: docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF] or lade:NAME
    source: String,
    /// Where to copy it, in the same forms
    destination: String,
}

pub fn run(args: CopyArgs, c: &Common) -> Result<ExitCode> {
    if let Some(code) = copy_sif(&args, c)? {
        return Ok(code);
    }
    let src = ImageLocation::parse(&args.source)?;
    let dst = ImageLocation::parse(&args.destination)?;
    let storage = if src.needs_store() || dst.needs_store() {
        Some(c.open_storage(LockMode::Shared)?)
    } else {
        None
    };
    let ctx = Context {
        storage,
        registry: c.registry(),
    };
    let opts = CopyOptions {
        arch: c.arch.clone(),
        all: args.all,
        ..CopyOptions::default()
    };
    let (copied_to, image) = copy_between(&src, &dst, &ctx, &opts, c.progress)?;
    c.progress
        .info(&format!("copied {copied_to} {}", image.top.digest));
    if args.all {
        copy_attachments(&src, &dst, &ctx, &image.top.digest, c)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--all`: the signatures and referrers of the image copied, where both ends keep them.
fn copy_attachments(
    src: &ImageLocation,
    dst: &ImageLocation,
    ctx: &Context,
    digest: &lade::digest::Digest,
    c: &Common,
) -> Result<()> {
    let keeps = |l: &ImageLocation| {
        !matches!(
            l,
            ImageLocation::OciArchive { .. } | ImageLocation::DockerArchive { .. }
        )
    };
    if !keeps(src) || !keeps(dst) {
        c.progress
            .note("an archive end keeps no attachments; copied the image only");
        return Ok(());
    }
    let from = lade::attach::open(src, ctx)?;
    let to = lade::attach::open(dst, ctx)?;
    let done = lade::attach::copy::copy_attachments(&*from, &*to, digest, c.progress)?;
    c.progress.info(&format!(
        "attachments: {} new signatures, {} other tags, {} referrers",
        done.signatures, done.tags, done.referrers
    ));
    Ok(())
}

/// `lade copy FILE.sif oras://REF` and `lade copy oras://REF FILE.sif`, as Apptainer's push
/// and pull; `None` when neither end is `oras://`.
fn copy_sif(args: &CopyArgs, c: &Common) -> Result<Option<ExitCode>> {
    use lade::artifact::sif;
    let (from, to) = (&args.source, &args.destination);
    let digest = match (sif::parse_oras(from), sif::parse_oras(to)) {
        (None, None) => return Ok(None),
        (None, Some(r)) => sif::push(std::path::Path::new(from), &r?, &c.registry(), c.progress)?,
        (Some(r), None) => {
            sif::pull_to_file(&r?, std::path::Path::new(to), &c.registry(), c.progress)?
        }
        (Some(_), Some(_)) => {
            return Err(lade::error::Error::unsupported(
                to,
                "oras:// to oras://; copy the image with docker:// references instead",
            ));
        }
    };
    c.progress.info(&format!("copied {to} {digest}"));
    Ok(Some(ExitCode::SUCCESS))
}
