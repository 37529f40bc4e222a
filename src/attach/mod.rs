//! Where an image's attachments live, behind one interface: cosign's tag-schema manifests
//! (`sha256-<hex>.sig`) and OCI 1.1 referrers, for an image in a registry (`docker://`), an OCI
//! layout (`oci:`) or the store (`lade:`). Signing, verifying, artifacts and `lade copy --all`
//! are written once against [`Attachments`].
//!
//! - [`registry`]: through [`crate::transport::registry::referrers`] (the referrers API or
//!   its tag-schema fallback);
//! - [`layout`]: tags in the layout's `index.json`, referrers as untagged entries of it (as
//!   oras-go's layout store keeps them), found by their `subject`;
//! - [`store`]: the store's attachment records ([`crate::storage::attachments`]).

pub mod copy;
mod layout;
mod registry;
mod store;

use std::sync::OnceLock;

use oci_spec::image::Descriptor;

use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::RawManifest;
use crate::reference::Reference;
use crate::transport::{Context, ImageDestination, ImageLocation, ImageSource};

/// An image's place, for reading and writing what is attached to it.
pub trait Attachments {
    /// The place, for messages (`docker://host/repo`, `oci:DIR`, `lade:NAME`).
    fn describe(&self) -> String;
    /// The manifests the location names (the image's own, then an index it came from, for a
    /// stored image): what signatures may be attached to.
    fn subjects(&self) -> Result<Vec<RawManifest>>;
    /// A manifest by tag (tag-schema tags); `None` if absent.
    fn tagged(&self, tag: &str) -> Result<Option<RawManifest>>;
    /// A manifest by digest.
    fn manifest(&self, expected: &Expected) -> Result<RawManifest>;
    /// A small blob read to be parsed (payloads, bundles, configs), verified; capped at
    /// [`crate::transport::registry::referrers::MAX_SMALL_BLOB`]. Blobs merely copied go
    /// through [`blob_source`](Self::blob_source) instead, of any size.
    fn blob(&self, expected: &Expected) -> Result<Vec<u8>>;
    /// The place's blobs as an image source (streams of any size), for copying them.
    fn blob_source(&self) -> Result<&dyn ImageSource>;
    /// The place as a destination of blobs (verified on the way in; nothing is named
    /// through it), for copying them.
    fn blob_destination(&self) -> Result<&dyn ImageDestination>;
    /// Stores a small blob; returns its digest.
    fn put_blob(&self, bytes: &[u8]) -> Result<Digest>;
    /// Stores a manifest (its blobs stored first) under a tag-schema tag for `subject`.
    fn put_tagged(&self, m: &RawManifest, tag: &str, subject: &Digest) -> Result<()>;
    /// The referrers of `subject`.
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>>;
    /// Stores a manifest whose `subject` is `subject` (its blobs stored first) and makes it
    /// one of the subject's referrers; returns how (for messages).
    fn add_referrer(&self, m: &RawManifest, desc: &Descriptor, subject: &Digest) -> Result<String>;
}

/// Opens the attachments of the image at `loc` (which must hold an image: its manifest is
/// read when asked).
pub fn open(loc: &ImageLocation, ctx: &Context) -> Result<Box<dyn Attachments>> {
    Ok(match loc {
        ImageLocation::Registry(r) => Box::new(registry::RegistryAttachments::open(r, ctx, None)?),
        ImageLocation::OciLayout { dir, name } => {
            Box::new(layout::LayoutAttachments::open(dir, name.clone())?)
        }
        ImageLocation::Store(name) => {
            let storage = ctx
                .storage
                .clone()
                .ok_or_else(|| Error::invalid(loc.to_string(), "storage directory not open"))?;
            Box::new(store::StoreAttachments::open(storage, name)?)
        }
        ImageLocation::OciArchive { .. } | ImageLocation::DockerArchive { .. } => {
            return Err(Error::unsupported(
                loc.to_string(),
                "an archive keeps no signatures or referrers here; copy it to an oci: layout \
                 first",
            ));
        }
        ImageLocation::SquashFs(_) => {
            return Err(Error::unsupported(
                loc.to_string(),
                "a SquashFS file keeps no signatures or referrers; sign the image it was made \
                 from",
            ));
        }
    })
}

/// Opens the attachments of the image `reference` names in a registry, whose manifest
/// `named` the caller has read already (`pull --verify-key`, which then copies it): it is not
/// fetched again.
pub fn open_registry_read(
    reference: &Reference,
    ctx: &Context,
    named: RawManifest,
) -> Result<Box<dyn Attachments>> {
    Ok(Box::new(registry::RegistryAttachments::open(
        reference,
        ctx,
        Some(named),
    )?))
}

/// cosign's tag-schema tag for `subject` with `suffix` (`sig`, `att`, `sbom`).
pub fn tag_for(subject: &Digest, suffix: &str) -> String {
    format!("{}-{}.{suffix}", subject.algorithm().name(), subject.hex())
}

/// The descriptor of a referrer manifest as indexes list it: with its `artifactType` (the
/// manifest's own, else its config's media type) and its annotations.
pub fn referrer_descriptor(m: &RawManifest) -> Result<Descriptor> {
    let mut desc = m.descriptor();
    let v: serde_json::Value = serde_json::from_slice(&m.bytes)
        .map_err(|e| Error::json(format!("manifest {}", m.digest), e))?;
    let artifact_type = v["artifactType"]
        .as_str()
        .or_else(|| v["config"]["mediaType"].as_str())
        .map(str::to_string);
    if let Some(t) = artifact_type {
        desc.set_artifact_type(Some(t.as_str().into()));
    }
    if let Some(a) = v["annotations"].as_object() {
        let map = a
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        desc.set_annotations(Some(map));
    }
    Ok(desc)
}

/// The `subject` a manifest names, if any.
pub fn subject_of(m: &RawManifest) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).ok()?;
    v["subject"]["digest"].as_str()?.parse().ok()
}

/// The value in `cell`, made by `make` the first time it is asked for (a failure is returned
/// and the next call tries again): sources and destinations are opened only when a copy needs
/// them, since opening one reads or creates something.
fn opened<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}
