//! Attachments of an image in the store.

use std::sync::{Arc, OnceLock};

use oci_spec::image::Descriptor;

use super::Attachments;
use crate::digest::{Digest, Expected};
use crate::error::Result;
use crate::manifest::RawManifest;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::store::{StoreDestination, StoreSource};
use crate::transport::{ImageDestination, ImageSource};

pub struct StoreAttachments {
    storage: Arc<Storage>,
    name: Reference,
    source: OnceLock<StoreSource>,
    destination: OnceLock<StoreDestination>,
}

impl StoreAttachments {
    pub fn open(storage: Arc<Storage>, name: &Reference) -> Result<StoreAttachments> {
        Ok(StoreAttachments {
            storage,
            name: name.clone(),
            source: OnceLock::new(),
            destination: OnceLock::new(),
        })
    }

    fn read_manifest(&self, digest: &Digest) -> Result<RawManifest> {
        let bytes = self.storage.blobs().read_to_vec(digest)?;
        let expected = Expected {
            digest: digest.clone(),
            size: None,
        };
        RawManifest::new(bytes, None, Some(&expected), &format!("manifest {digest}"))
    }
}

impl Attachments for StoreAttachments {
    fn describe(&self) -> String {
        format!("lade:{}", self.name.familiar())
    }

    fn subjects(&self) -> Result<Vec<RawManifest>> {
        let record = self.storage.images().require(&self.name)?;
        let mut out = vec![self.read_manifest(&record.manifest)?];
        if let Some(index) = &record.index
            && self.storage.blobs().has(index)
        {
            out.push(self.read_manifest(index)?);
        }
        Ok(out)
    }

    fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        // A tag-schema tag names its subject: `<alg>-<hex>.<suffix>`.
        let Some((alg, rest)) = tag.split_once('-') else {
            return Ok(None);
        };
        let Some((hex, _)) = rest.split_once('.') else {
            return Ok(None);
        };
        let Ok(subject) = format!("{alg}:{hex}").parse::<Digest>() else {
            return Ok(None);
        };
        match self.storage.attachments().get(&subject)?.tags.get(tag) {
            Some(d) => self.read_manifest(d).map(Some),
            None => Ok(None),
        }
    }

    fn manifest(&self, expected: &Expected) -> Result<RawManifest> {
        self.read_manifest(&expected.digest)
    }

    fn blob(&self, expected: &Expected) -> Result<Vec<u8>> {
        let bytes = self.storage.blobs().read_to_vec(&expected.digest)?;
        crate::transport::registry::referrers::check_bytes(&bytes, expected, "stored blob")?;
        Ok(bytes)
    }

    fn blob_source(&self) -> Result<&dyn ImageSource> {
        Ok(super::opened(&self.source, || {
            StoreSource::open(self.storage.clone(), &self.name)
        })?)
    }

    fn blob_destination(&self) -> Result<&dyn ImageDestination> {
        // Unnamed: it stores blobs and unpacks nothing (it is told of no image).
        Ok(super::opened(&self.destination, || {
            Ok(StoreDestination::unnamed(self.storage.clone()))
        })?)
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.storage.blobs().put_bytes(bytes)
    }

    fn put_tagged(&self, m: &RawManifest, tag: &str, subject: &Digest) -> Result<()> {
        self.storage.blobs().put_bytes(&m.bytes)?;
        self.storage.attachments().update(subject, |a| {
            a.tags.insert(tag.to_string(), m.digest.clone());
        })
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.storage.attachments().get(subject)?.referrers)
    }

    fn add_referrer(&self, m: &RawManifest, desc: &Descriptor, subject: &Digest) -> Result<String> {
        self.storage.blobs().put_bytes(&m.bytes)?;
        self.storage.attachments().update(subject, |a| {
            a.referrers.retain(|d| d.digest() != desc.digest());
            a.referrers.push(desc.clone());
        })?;
        Ok("the store".into())
    }
}
