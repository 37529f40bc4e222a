//! Links between image names and cache states, like ch-image's Git branches:
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

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;
use crate::storage::{ImageRecord, Storage};

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

pub struct Refs {
    images: PathBuf,
    deleted: PathBuf,
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
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io_path(path, e)),
        _ => Ok(()),
    }
}

fn list_json<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<(PathBuf, T)>> {
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
        if let Some(v) = read_json(&entry.path())? {
            out.push((entry.path(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Refs {
    pub fn new(storage: &Storage) -> Refs {
        let dir = storage.root().join("build-cache");
        Refs {
            images: dir.join("images"),
            deleted: dir.join("deleted"),
        }
    }

    fn image_path(&self, name: &Reference) -> PathBuf {
        self.images.join(format!("{}.json", name.for_filename()))
    }

    fn deleted_path(&self, name: &Reference) -> PathBuf {
        self.deleted.join(format!("{}.json", name.for_filename()))
    }

    /// Records that image `name` (manifest `manifest`) was built to the states `keys`.
    pub fn link(&self, name: &Reference, manifest: &Digest, keys: Vec<String>) -> Result<()> {
        let link = ImageLink {
            name: name.to_string(),
            manifest: manifest.clone(),
            keys,
        };
        write_json(&self.image_path(name), &link)
    }

    pub fn unlink(&self, name: &Reference) -> Result<()> {
        remove(&self.image_path(name))
    }

    /// Every link, stale or not, with its file.
    pub fn links(&self) -> Result<Vec<(PathBuf, ImageLink)>> {
        list_json(&self.images)
    }

    /// The links whose image still has the manifest they name.
    pub fn live_links(&self, storage: &Storage) -> Result<Vec<ImageLink>> {
        let images = storage.images();
        let mut out = Vec::new();
        for (_, link) in self.links()? {
            let Ok(name) = Reference::parse(&link.name) else {
                continue;
            };
            if images.get(&name).ok().flatten().map(|r| r.manifest) == Some(link.manifest.clone()) {
                out.push(link);
            }
        }
        Ok(out)
    }

    /// Called as image `record` is deleted: remember it for `lade undelete`, with its cache
    /// states if it was built here, and drop its link.
    pub fn remember_deleted(&self, record: &ImageRecord) -> Result<()> {
        let name = record.reference()?;
        let keys = read_json::<ImageLink>(&self.image_path(&name))?
            .filter(|l| l.manifest == record.manifest)
            .map(|l| l.keys)
            .unwrap_or_default();
        let d = Deleted {
            record: record.clone(),
            keys,
            deleted: super::now_secs(),
        };
        write_json(&self.deleted_path(&name), &d)?;
        self.unlink(&name)
    }

    pub fn deleted(&self, name: &Reference) -> Result<Option<Deleted>> {
        read_json(&self.deleted_path(name))
    }

    /// Every remembered deleted image, with its file.
    pub fn deleted_list(&self) -> Result<Vec<(PathBuf, Deleted)>> {
        list_json(&self.deleted)
    }

    pub fn forget_deleted(&self, name: &Reference) -> Result<()> {
        remove(&self.deleted_path(name))
    }
}

/// Removes a link or deleted-image file found by [`Refs::links`] or [`Refs::deleted_list`].
pub fn remove_file(path: &Path) -> Result<()> {
    remove(path)
}
