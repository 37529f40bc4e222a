//! Links between image names and build cache states, like ch-image's Git branches, and the
//! images `lade delete` removed:
//!
//! ```text
//! build-cache/images/<name>.json    a built image: its manifest digest and the cache keys of
//!                                   its final state and of every stage's final state
//! build-cache/deleted/<name>.json   a deleted image (built or pulled): its whole image record
//!                                   and its keys, for `lade undelete` (ch-image's `_deleted`)
//! ```
//!
//! `<name>` is [`Reference::for_filename`]. A link counts only while the image of that name
//! still has the manifest it names: a pull or `--no-cache` build over the name makes it stale,
//! and stale links are ignored and dropped by `lade build-cache --gc`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ImageRecord, ImageStore};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

/// A built image's link to the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageLink {
    pub name: String,
    pub manifest: Digest,
    /// The final state's key first, then each earlier stage's final state.
    pub keys: Vec<String>,
}

/// A deleted image, as `lade undelete` restores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub record: ImageRecord,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub deleted: u64,
}

/// One file found by a listing, with what it holds; [`Listed::remove`] removes that file
/// (its name need not match what it holds, so it is removed by its own path).
pub struct Listed<T> {
    path: PathBuf,
    pub value: T,
}

impl<T> Listed<T> {
    pub fn remove(&self) -> Result<()> {
        remove(&self.path)
    }
}

/// `build-cache/images/`.
pub struct ImageLinks {
    dir: PathBuf,
}

/// `build-cache/deleted/`.
pub struct DeletedImages {
    dir: PathBuf,
}

fn name_path(dir: &Path, name: &Reference) -> PathBuf {
    dir.join(format!("{}.json", name.for_filename()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        // A file that does not parse is treated as absent: these are hints, never the only
        // copy of anything (the image records are).
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_path(path, e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let json =
        serde_json::to_vec_pretty(value).map_err(|e| Error::json(path.display().to_string(), e))?;
    crate::fsutil::write_atomic(path, &json)
}

fn remove(path: &Path) -> Result<()> {
    crate::fsutil::remove_file_if_exists(path).map(drop)
}

fn list_json<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<Listed<T>>> {
    let mut out = Vec::new();
    let Some(entries) = crate::fsutil::read_dir_if_exists(dir)? else {
        return Ok(out);
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue; // a write in progress
        }
        if let Some(value) = read_json(&entry.path())? {
            out.push(Listed {
                path: entry.path(),
                value,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl ImageLinks {
    pub(super) fn new(dir: PathBuf) -> ImageLinks {
        ImageLinks { dir }
    }

    /// Records that image `name` (manifest `manifest`) was built to the states `keys`.
    pub fn link(&self, name: &Reference, manifest: &Digest, keys: Vec<String>) -> Result<()> {
        let link = ImageLink {
            name: name.to_string(),
            manifest: manifest.clone(),
            keys,
        };
        write_json(&name_path(&self.dir, name), &link)
    }

    pub fn unlink(&self, name: &Reference) -> Result<()> {
        remove(&name_path(&self.dir, name))
    }

    /// The link of image `name`, stale or not.
    pub fn get(&self, name: &Reference) -> Result<Option<ImageLink>> {
        read_json(&name_path(&self.dir, name))
    }

    /// Every link, stale or not.
    pub fn list(&self) -> Result<Vec<Listed<ImageLink>>> {
        list_json(&self.dir)
    }

    /// The links whose image still has the manifest they name.
    pub fn live(&self, images: &ImageStore) -> Result<Vec<ImageLink>> {
        let mut out = Vec::new();
        for listed in self.list()? {
            let link = listed.value;
            let Ok(name) = Reference::parse(&link.name) else {
                continue;
            };
            if images.get(&name).ok().flatten().map(|r| r.manifest) == Some(link.manifest.clone()) {
                out.push(link);
            }
        }
        Ok(out)
    }
}

impl DeletedImages {
    pub(super) fn new(dir: PathBuf) -> DeletedImages {
        DeletedImages { dir }
    }

    /// Remembers image `record`, deleted now, with the cache states it was built to (if any).
    pub fn remember(&self, record: &ImageRecord, keys: Vec<String>) -> Result<()> {
        let d = Deleted {
            record: record.clone(),
            keys,
            deleted: super::now_secs(),
        };
        write_json(&name_path(&self.dir, &record.reference()?), &d)
    }

    pub fn get(&self, name: &Reference) -> Result<Option<Deleted>> {
        read_json(&name_path(&self.dir, name))
    }

    /// Every remembered deleted image.
    pub fn list(&self) -> Result<Vec<Listed<Deleted>>> {
        list_json(&self.dir)
    }

    pub fn forget(&self, name: &Reference) -> Result<()> {
        remove(&name_path(&self.dir, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_deleted_images_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let links = ImageLinks::new(tmp.path().join("images"));
        let deleted = DeletedImages::new(tmp.path().join("deleted"));
        let name = Reference::parse("foo/bar:1").unwrap();
        let manifest = Digest::sha256_of(b"manifest");
        links
            .link(&name, &manifest, vec!["k1".into(), "k2".into()])
            .unwrap();
        let link = links.get(&name).unwrap().unwrap();
        assert_eq!(link.keys, vec!["k1", "k2"]);
        assert_eq!(link.name, "docker.io/foo/bar:1");
        // The file is found and removed by its own path, whatever it holds.
        let listed = links.list().unwrap();
        assert_eq!(listed.len(), 1);
        listed[0].remove().unwrap();
        assert!(links.get(&name).unwrap().is_none());

        let record = ImageRecord {
            name: name.to_string(),
            manifest: manifest.clone(),
            index: None,
            config: Digest::sha256_of(b"config"),
            layers: Vec::new(),
            platform: None,
            source: "test".into(),
        };
        deleted.remember(&record, vec!["k1".into()]).unwrap();
        let d = deleted.get(&name).unwrap().unwrap();
        assert_eq!(d.record, record);
        assert_eq!(d.keys, vec!["k1"]);
        assert_eq!(deleted.list().unwrap().len(), 1);
        deleted.forget(&name).unwrap();
        assert!(deleted.list().unwrap().is_empty());
    }
}
