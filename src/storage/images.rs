//! Local image names: one small JSON record per image, naming its manifest and layers.

use std::fs;
use std::path::{Path, PathBuf};

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

    /// The `source` of an image `lade import` made from `path`.
    pub fn import_source(path: &Path) -> String {
        format!("{IMPORT_SOURCE}{}", path.display())
    }

    /// Whether `lade import` made it. Nothing can bring such an image back (unlike a pulled
    /// one, and a built one has its build cache), so a deleted one stays restorable until
    /// `lade build-cache --gc` or `--reset` (see [`super::gc`]).
    pub fn is_import(&self) -> bool {
        self.source.starts_with(IMPORT_SOURCE)
    }
}

const IMPORT_SOURCE: &str = "import ";

pub struct ImageStore {
    /// The user's `images/`, then the read-only stores' (see `read_only.rs`).
    dirs: super::Dirs,
    trash: super::Trash,
    /// Where `fsck --repair` moves records it cannot read: `lost+found/images/`.
    aside: PathBuf,
}

impl ImageStore {
    pub(super) fn new(dirs: super::Dirs, trash: super::Trash, aside: PathBuf) -> ImageStore {
        ImageStore { dirs, trash, aside }
    }

    fn file_name(name: &Reference) -> String {
        format!("{}.json", name.for_filename())
    }

    /// Where the user's store keeps image `name`'s record.
    fn path(&self, name: &Reference) -> PathBuf {
        self.dirs.own().join(Self::file_name(name))
    }

    /// Image `name` from the user's store, else from the first read-only store that has it.
    pub fn get(&self, name: &Reference) -> Result<Option<ImageRecord>> {
        match self.dirs.find(Self::file_name(name), |p| p.exists()) {
            Some(path) => crate::fsutil::read_json_if_exists(&path),
            None => Ok(None),
        }
    }

    /// Image `name` from the user's store only.
    pub fn get_own(&self, name: &Reference) -> Result<Option<ImageRecord>> {
        crate::fsutil::read_json_if_exists(&self.path(name))
    }

    /// Like [`get`](Self::get), but a missing image is an error naming it.
    pub fn require(&self, name: &Reference) -> Result<ImageRecord> {
        self.get(name)?
            .ok_or_else(|| Error::ImageNotFound(format!("{} in the store", name.familiar())))
    }

    /// Publishes the record atomically in the user's store; it replaces any image of the
    /// same name there. An identical record is left alone, so that a warm pull writes nothing.
    pub fn put(&self, record: &ImageRecord) -> Result<()> {
        let name = record.reference()?;
        if self.get_own(&name).ok().flatten().as_ref() == Some(record) {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::json(format!("image record {}", record.name), e))?;
        crate::fsutil::write_atomic(&self.path(&name), &json)
    }

    pub fn remove(&self, name: &Reference) -> Result<bool> {
        self.trash.remove(&self.path(name))
    }

    /// Every image record in the user's store (never a read-only store's), sorted by name. Unreadable records are returned as errors so
    /// that `list` can go on and `fsck` can report them.
    pub fn list(&self) -> Result<Vec<std::result::Result<ImageRecord, Error>>> {
        let mut out: Vec<_> = self.read_all()?.into_iter().map(|(_, r)| r).collect();
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.name.cmp(&b.name),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(a), Err(b)) => a.to_string().cmp(&b.to_string()),
        });
        Ok(out)
    }

    /// The record files that cannot be read or parsed, with why.
    pub fn unreadable(&self) -> Result<Vec<(PathBuf, Error)>> {
        let mut out: Vec<(PathBuf, Error)> = self
            .read_all()?
            .into_iter()
            .filter_map(|(path, r)| r.err().map(|e| (path, e)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Moves the unreadable record file `path` (from [`unreadable`](Self::unreadable)) out of
    /// `images/` into `lost+found/images/`, keeping its bytes for whoever wants to look;
    /// returns where it went.
    pub fn move_aside(&self, path: &Path) -> Result<PathBuf> {
        fs::create_dir_all(&self.aside).at(&self.aside)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "record".into());
        let mut dest = self.aside.join(&name);
        let mut n = 1;
        while fs::symlink_metadata(&dest).is_ok() {
            dest = self.aside.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &dest).at(path)?;
        Ok(dest)
    }

    /// Every record file with what reading it gave.
    fn read_all(&self) -> Result<Vec<(PathBuf, std::result::Result<ImageRecord, Error>)>> {
        let mut out = Vec::new();
        let dir = self.dirs.own();
        let Some(entries) = crate::fsutil::read_dir_if_exists(dir)? else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry.at(dir)?;
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
            out.push((path, record));
        }
        Ok(out)
    }
}
