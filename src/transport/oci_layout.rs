//! `oci:DIR[:REF]`: an OCI image layout directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageIndexBuilder};
use rustix::fs::{FlockOperation, flock};

use super::layout;
use super::{CopiedImage, ImageDestination, ImageSource};
use crate::digest::{Digest, Expected, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{OCI_INDEX, OCI_LAYOUT_REF_NAME, RawManifest};
use crate::storage::copy_stream;
use crate::transport::MAX_MANIFEST_BYTES;

pub struct OciLayoutSource {
    dir: PathBuf,
    what: String,
    top: RawManifest,
}

impl OciLayoutSource {
    pub fn open(dir: &Path, name: Option<&str>) -> Result<OciLayoutSource> {
        let what = format!("oci:{}", dir.display());
        if !dir.is_dir() {
            return Err(Error::ImageNotFound(format!("{what}: no such directory")));
        }
        let layout_file = read_layout_file(dir)?;
        layout::check_layout_file(layout_file.as_deref(), &what)?;
        let index_path = dir.join("index.json");
        let index_bytes = layout::read_capped(&index_path, MAX_MANIFEST_BYTES)?;
        let index = layout::parse_index(&index_bytes, &what)?;
        let desc = layout::select(&index, name, &what)?;
        let top = layout::read_manifest(desc, &what, |d, size| read_small(dir, d, size))?;
        let what = match name {
            Some(n) => format!("{what}:{n}"),
            None => what,
        };
        Ok(OciLayoutSource {
            dir: dir.to_path_buf(),
            what,
            top,
        })
    }
}

/// The `oci-layout` file, if there is one (capped: it is a line of JSON).
fn read_layout_file(dir: &Path) -> Result<Option<Vec<u8>>> {
    let path = dir.join("oci-layout");
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => layout::read_capped(&path, MAX_MANIFEST_BYTES).map(Some),
    }
}

fn read_small(dir: &Path, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    let path = dir.join(layout::blob_path(digest));
    let mut bytes = Vec::new();
    layout::open_regular(&path)?
        .take(size + 1)
        .read_to_end(&mut bytes)
        .at(&path)?;
    Ok(bytes)
}

impl ImageSource for OciLayoutSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.dir.join(layout::blob_path(digest));
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Err(Error::invalid(
                &self.what,
                format!("blob {digest} is missing"),
            ));
        }
        Ok(Box::new(layout::open_regular(&path)?))
    }
}

pub struct OciLayoutDestination {
    dir: PathBuf,
    name: Option<String>,
    what: String,
}

impl OciLayoutDestination {
    /// Opens `dir` for writing, creating the layout if the directory is absent or empty. An
    /// existing non-layout directory is refused rather than written into.
    pub fn create(dir: &Path, name: Option<String>) -> Result<OciLayoutDestination> {
        let what = format!("oci:{}", dir.display());
        let has_layout = dir.join("oci-layout").is_file();
        if !has_layout {
            if !crate::fsutil::is_absent_or_empty_dir(dir)? {
                return Err(Error::invalid(
                    &what,
                    "exists and is not an OCI image layout; refusing to write into it",
                ));
            }
            fs::create_dir_all(dir).at(dir)?;
            crate::fsutil::write_atomic(
                &dir.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        } else {
            let bytes = read_layout_file(dir)?;
            layout::check_layout_file(bytes.as_deref(), &what)?;
        }
        Ok(OciLayoutDestination {
            dir: dir.to_path_buf(),
            name,
            what,
        })
    }

    fn write_blob(&self, expected: &Expected, data: &mut dyn Read, what: &str) -> Result<()> {
        let final_path = self.dir.join(layout::blob_path(&expected.digest));
        let parent = final_path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).at(&parent)?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}-{:08x}",
            expected.digest.hex(),
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            let mut out = File::create(&tmp).at(&tmp)?;
            let mut verifier = VerifyingReader::new(data, expected.clone(), what);
            copy_stream(&mut verifier, &mut out, what, &tmp)?;
            drop(out);
            fs::rename(&tmp, &final_path).at(&final_path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl ImageDestination for OciLayoutDestination {
    fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{}:{n}", self.what),
            None => self.what.clone(),
        }
    }

    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.dir.join(layout::blob_path(digest)).is_file())
    }

    fn put_blob(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<()> {
        self.write_blob(expected, data, what)
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let expected = Expected {
            digest: manifest.digest.clone(),
            size: Some(manifest.bytes.len() as u64),
        };
        let what = format!("manifest {}", manifest.digest);
        self.write_blob(&expected, &mut &manifest.bytes[..], &what)
    }

    fn commit(&mut self, image: &CopiedImage) -> Result<()> {
        // Serialise index.json updates between processes writing the same layout.
        let dir_handle = File::open(&self.dir).at(&self.dir)?;
        flock(&dir_handle, FlockOperation::LockExclusive)
            .map_err(|e| Error::io_path(&self.dir, e.into()))?;
        let index_path = self.dir.join("index.json");
        let mut manifests = match fs::symlink_metadata(&index_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            _ => {
                let bytes = layout::read_capped(&index_path, MAX_MANIFEST_BYTES)?;
                layout::parse_index(&bytes, &self.what)?.manifests().clone()
            }
        };
        let mut desc = image.top.descriptor();
        match &self.name {
            Some(name) => {
                manifests.retain(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(OCI_LAYOUT_REF_NAME))
                        != Some(name)
                });
                desc.set_annotations(Some(HashMap::from([(
                    OCI_LAYOUT_REF_NAME.to_string(),
                    name.clone(),
                )])));
            }
            None => manifests.retain(|d| d.digest() != desc.digest() || d.annotations().is_some()),
        }
        manifests.push(desc);
        let index: ImageIndex = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(OCI_INDEX)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::invalid(&self.what, e.to_string()))?;
        let json = index
            .to_string()
            .map_err(|e| Error::invalid(&self.what, e.to_string()))?;
        crate::fsutil::write_atomic(&index_path, json.as_bytes())
    }
}
