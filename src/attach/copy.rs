//! Copying what is attached to an image along with it (`lade copy --all`, and `lade pull
//! --verify-key`, which keeps the signatures it checked): cosign's tag-schema manifests
//! (`.sig` signatures merged into the destination's, `.att` and `.sbom` copied) and every
//! referrer, with their blobs. Blobs go as the image's layers do ([`crate::copy::copy_blobs`]):
//! streamed and verified, of any size, and only those the destination lacks; only what must
//! be parsed (manifests) is read into memory.

use super::{Attachments, referrer_descriptor, tag_for};
use crate::copy::CopyOptions;
use crate::digest::{Digest, Expected};
use crate::error::Result;
use crate::manifest::{self, RawManifest};
use crate::progress::Progress;
use crate::sign::simple_signing;

/// cosign's tag-schema suffixes.
const SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// What was copied, for the message.
#[derive(Debug, Default)]
pub struct Copied {
    pub signatures: usize,
    pub tags: usize,
    pub referrers: usize,
}

/// Copies the attachments of `subject` from `src` to `dst`.
pub fn copy_attachments(
    src: &dyn Attachments,
    dst: &dyn Attachments,
    subject: &Digest,
    progress: &Progress,
) -> Result<Copied> {
    let mut out = Copied::default();
    for suffix in SUFFIXES {
        let tag = tag_for(subject, suffix);
        let Some(m) = src.tagged(&tag)? else {
            continue;
        };
        if suffix == "sig" {
            out.signatures += merge_signatures(src, dst, &m, &tag, subject, progress)?;
        } else {
            copy_blobs(src, dst, &m, progress)?;
            dst.put_tagged(&m, &tag, subject)?;
            out.tags += 1;
        }
    }
    let have: Vec<String> = dst
        .referrers(subject)?
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    for desc in src.referrers(subject)? {
        if have.contains(&desc.digest().to_string()) {
            continue;
        }
        let m = src.manifest(&manifest::expected(&desc)?)?;
        copy_blobs(src, dst, &m, progress)?;
        dst.add_referrer(&m, &referrer_descriptor(&m)?, subject)?;
        out.referrers += 1;
    }
    Ok(out)
}

/// Adds each signature of the `.sig` manifest `m` to the destination's; returns how many were
/// new there.
fn merge_signatures(
    src: &dyn Attachments,
    dst: &dyn Attachments,
    m: &RawManifest,
    tag: &str,
    subject: &Digest,
    progress: &Progress,
) -> Result<usize> {
    let layers = simple_signing::layers(m)?;
    let payloads = layers
        .iter()
        .map(|l| manifest::expected(&l.desc))
        .collect::<Result<Vec<Expected>>>()?;
    stream_blobs(src, dst, &payloads, progress)?;
    let mut current = dst.tagged(tag)?;
    let mut added = 0;
    for layer in layers {
        if let Some((next, config)) =
            simple_signing::with_signature(current.as_ref(), layer.desc.clone())?
        {
            dst.put_blob(&config)?;
            current = Some(next);
            added += 1;
        }
    }
    if let Some(m) = &current
        && added > 0
    {
        dst.put_tagged(m, tag, subject)?;
    }
    Ok(added)
}

/// Copies a manifest's config and layers, of any size.
fn copy_blobs(
    src: &dyn Attachments,
    dst: &dyn Attachments,
    m: &RawManifest,
    progress: &Progress,
) -> Result<()> {
    let parsed = m.image()?;
    let blobs = std::iter::once(parsed.config())
        .chain(parsed.layers())
        .map(manifest::expected)
        .collect::<Result<Vec<Expected>>>()?;
    stream_blobs(src, dst, &blobs, progress)
}

fn stream_blobs(
    src: &dyn Attachments,
    dst: &dyn Attachments,
    blobs: &[Expected],
    progress: &Progress,
) -> Result<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    crate::copy::copy_blobs(
        src.blob_source()?,
        dst.blob_destination()?,
        blobs,
        CopyOptions::default().parallel,
        progress,
    )
}
