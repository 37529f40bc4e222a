//! Attachments in an OCI image layout: tag-schema tags are ref names in `index.json`;
//! referrers are untagged entries of it, found by their `subject` (as oras-go's layout store
//! keeps them).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::image::{Descriptor, ImageIndex};

use super::Attachments;
use crate::digest::{Digest, Expected};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, RawManifest};
use crate::transport::oci_layout::{OciLayoutDestination, OciLayoutSource};
use crate::transport::{CopiedImage, ImageDestination, ImageSource, MAX_MANIFEST_BYTES};

pub struct LayoutAttachments {
    dir: PathBuf,
    name: Option<String>,
    source: OnceLock<OciLayoutSource>,
    /// Where blobs go (untagged: tags are written by [`Self::put`]).
    destination: OnceLock<OciLayoutDestination>,
}

impl LayoutAttachments {
    pub fn open(dir: &Path, name: Option<String>) -> Result<LayoutAttachments> {
        Ok(LayoutAttachments {
            dir: dir.to_path_buf(),
            name,
            source: OnceLock::new(),
            destination: OnceLock::new(),
        })
    }

    fn destination(&self) -> Result<&OciLayoutDestination> {
        super::opened(&self.destination, || {
            OciLayoutDestination::create(&self.dir, None)
        })
    }

    fn what(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn read(&self, expected: &Expected, limit: u64) -> Result<Vec<u8>> {
        let path = self.dir.join(format!(
            "blobs/{}/{}",
            expected.digest.algorithm().name(),
            expected.digest.hex()
        ));
        let bytes = std::fs::read(&path).at(&path)?;
        if bytes.len() as u64 > limit {
            return Err(Error::invalid(path.display().to_string(), "too large"));
        }
        crate::transport::registry::referrers::check_bytes(
            &bytes,
            expected,
            &path.display().to_string(),
        )?;
        Ok(bytes)
    }

    fn index(&self) -> Result<ImageIndex> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).at(&path)?;
        ImageIndex::from_reader(&bytes[..]).map_err(|e| Error::invalid(self.what(), e.to_string()))
    }

    fn put(&self, m: &RawManifest, name: Option<String>) -> Result<()> {
        let mut dst = OciLayoutDestination::create(&self.dir, name)?;
        dst.put_manifest(m)?;
        dst.commit(&CopiedImage {
            top: m.clone(),
            from_index: None,
            platform: None,
            source: self.what(),
        })
    }
}

impl Attachments for LayoutAttachments {
    fn describe(&self) -> String {
        self.what()
    }

    fn subjects(&self) -> Result<Vec<RawManifest>> {
        let src = OciLayoutSource::open(&self.dir, self.name.as_deref())?;
        Ok(vec![src.top_manifest()?])
    }

    fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        match OciLayoutSource::open(&self.dir, Some(tag)) {
            Ok(src) => src.top_manifest().map(Some),
            Err(Error::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn manifest(&self, expected: &Expected) -> Result<RawManifest> {
        let bytes = self.read(expected, MAX_MANIFEST_BYTES)?;
        RawManifest::new(
            bytes,
            None,
            Some(expected),
            &format!("manifest {}", expected.digest),
        )
    }

    fn blob(&self, expected: &Expected) -> Result<Vec<u8>> {
        self.read(
            expected,
            crate::transport::registry::referrers::MAX_SMALL_BLOB,
        )
    }

    fn blob_source(&self) -> Result<&dyn ImageSource> {
        Ok(super::opened(&self.source, || {
            OciLayoutSource::open(&self.dir, self.name.as_deref())
        })?)
    }

    fn blob_destination(&self) -> Result<&dyn ImageDestination> {
        Ok(self.destination()?)
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let dst = self.destination()?;
        let digest = Digest::sha256_of(bytes);
        let expected = Expected {
            digest: digest.clone(),
            size: Some(bytes.len() as u64),
        };
        dst.put_blob(&expected, &mut &bytes[..], "blob")?;
        Ok(digest)
    }

    fn put_tagged(&self, m: &RawManifest, tag: &str, _subject: &Digest) -> Result<()> {
        self.put(m, Some(tag.to_string()))
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for d in self.index()?.manifests() {
            let Ok(expected) = manifest::expected(d) else {
                continue;
            };
            let Ok(m) = self.manifest(&expected) else {
                continue;
            };
            if super::subject_of(&m).as_ref() == Some(subject) {
                out.push(super::referrer_descriptor(&m)?);
            }
        }
        Ok(out)
    }

    fn add_referrer(
        &self,
        m: &RawManifest,
        _desc: &Descriptor,
        _subject: &Digest,
    ) -> Result<String> {
        self.put(m, None)?;
        Ok("the layout's index".into())
    }
}
