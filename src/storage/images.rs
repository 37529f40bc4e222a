//! Local image names: one small JSON record per image, naming its manifest and layers.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

/// One layer of a stored image: the compressed blob, its diff-ID, and the key of its unpacked
/// tree in the layer store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRef {
    pub blob: Digest,
    pub diff_id: Digest,
    pub tree: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Full normalised reference, e.g. `docker.io/library/alpine:latest`.
    pub name: String,
    /// The platform-specific image manifest.
    pub manifest: Digest,
    /// The index (manifest list) the manifest was chosen from, if the source had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    pub config: Digest,
    pub layers: Vec<LayerRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Where it came from, e.g. `oci:/tmp/layout:multi`.
    pub source: String,
}

impl ImageRecord {
    pub fn reference(&self) -> Result<Reference> {
        Reference::parse(&self.name)
    }
}

pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub(super) fn new(dir: PathBuf, _work: PathBuf) -> ImageStore {
        ImageStore { dir }
    }

    fn path(&self, name: &Reference) -> PathBuf {
        self.dir.join(format!("{}.json", name.for_filename()))
    }

    pub fn get(&self, name: &Reference) -> Result<Option<ImageRecord>> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::json(path.display().to_string(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path(&path, e)),
        }
    }

    /// Like [`get`](Self::get), but a missing image is an error naming it.
    pub fn require(&self, name: &Reference) -> Result<ImageRecord> {
        self.get(name)?
            .ok_or_else(|| Error::ImageNotFound(format!("{} in the store", name.familiar())))
    }

    /// Publishes the record atomically; it replaces any image of the same name. An identical
    /// record is left alone, so that a warm pull writes nothing.
    pub fn put(&self, record: &ImageRecord) -> Result<()> {
        let name = record.reference()?;
        if self.get(&name).ok().flatten().as_ref() == Some(record) {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::json(format!("image record {}", record.name), e))?;
        crate::fsutil::write_atomic(&self.path(&name), &json)
    }

    pub fn remove(&self, name: &Reference) -> Result<bool> {
        crate::fsutil::remove_file_if_exists(&self.path(name))
    }

    /// Every stored image record, sorted by name. Unreadable records are returned as errors so
    /// that `list` can go on and `fsck` can report them.
    pub fn list(&self) -> Result<Vec<std::result::Result<ImageRecord, Error>>> {
        let mut out = Vec::new();
        let Some(entries) = crate::fsutil::read_dir_if_exists(&self.dir)? else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry.at(&self.dir)?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || !file_name.ends_with(".json") {
                continue; // a write in progress (fsutil::write_atomic) or foreign file
            }
            let record = fs::read(&path)
                .map_err(|e| Error::io_path(&path, e))
                .and_then(|b| {
                    serde_json::from_slice::<ImageRecord>(&b)
                        .map_err(|e| Error::json(path.display().to_string(), e))
                });
            out.push(record);
        }
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.name.cmp(&b.name),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(a), Err(b)) => a.to_string().cmp(&b.to_string()),
        });
        Ok(out)
    }
}
