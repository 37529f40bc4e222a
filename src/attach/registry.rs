//! Attachments in a registry repository.

use std::sync::{Arc, OnceLock};

use oci_spec::image::Descriptor;

use super::Attachments;
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::RawManifest;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::registry::referrers::{ReferrersMode, Repository};
use crate::transport::registry::{Options, RegistrySource};
use crate::transport::{Context, ImageDestination, ImageSource};

pub struct RegistryAttachments {
    repo: Repository,
    reference: Reference,
    registry: Options,
    storage: Option<Arc<Storage>>,
    /// The repository's blobs as streams (resumed with `Range` like an image's layers), opened
    /// only by a copy: signing and verifying read small blobs through `repo` alone.
    source: OnceLock<RegistrySource>,
    /// The manifest the reference names, when the caller read it already.
    named: Option<RawManifest>,
}

impl RegistryAttachments {
    /// `named`: the manifest `reference` names, if the caller has it (it is not fetched again).
    pub fn open(
        reference: &Reference,
        ctx: &Context,
        named: Option<RawManifest>,
    ) -> Result<RegistryAttachments> {
        Ok(RegistryAttachments {
            repo: Repository::open(reference, &ctx.registry, ctx.storage.clone())?,
            reference: reference.clone(),
            registry: ctx.registry.clone(),
            storage: ctx.storage.clone(),
            source: OnceLock::new(),
            named,
        })
    }
}

impl Attachments for RegistryAttachments {
    fn describe(&self) -> String {
        self.repo.describe()
    }

    fn subjects(&self) -> Result<Vec<RawManifest>> {
        Ok(vec![match &self.named {
            Some(m) => m.clone(),
            None => self.repo.named_manifest()?,
        }])
    }

    fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        self.repo.manifest(tag)
    }

    fn manifest(&self, expected: &Expected) -> Result<RawManifest> {
        self.repo
            .manifest(&expected.digest.to_string())?
            .ok_or_else(|| {
                Error::ImageNotFound(format!(
                    "manifest {} in {}",
                    expected.digest,
                    self.describe()
                ))
            })
    }

    fn blob(&self, expected: &Expected) -> Result<Vec<u8>> {
        self.repo.blob(expected)
    }

    fn blob_source(&self) -> Result<&dyn ImageSource> {
        Ok(super::opened(&self.source, || {
            RegistrySource::open(&self.reference, &self.registry, self.storage.clone())
        })?)
    }

    fn blob_destination(&self) -> Result<&dyn ImageDestination> {
        Ok(self.repo.pusher()?)
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.repo.put_blob_bytes(bytes, "blob")
    }

    fn put_tagged(&self, m: &RawManifest, tag: &str, _subject: &Digest) -> Result<()> {
        self.repo.put_manifest(m, tag).map(drop)
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.repo.referrers(subject)?.1)
    }

    fn add_referrer(&self, m: &RawManifest, desc: &Descriptor, subject: &Digest) -> Result<String> {
        Ok(match self.repo.add_referrer(m, desc, subject)? {
            ReferrersMode::Api => "the registry's referrers API".into(),
            ReferrersMode::Fallback => format!(
                "the referrers tag {}",
                crate::transport::registry::referrers::fallback_tag(subject)
            ),
        })
    }
}
