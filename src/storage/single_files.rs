//! Single-file images (Apptainer's SIF) pulled into the store over `oras://`: the file is an
//! ordinary blob, and a small record names it, so that a later `lade run NAME` can find the
//! file by the name it was pulled as:
//!
//! ```text
//! $STORAGE/single-files/<name>.json   {"name", "blob", "size", "manifest", "source"}
//! ```
//!
//! Garbage collection keeps the blob and manifest of every record ([`SingleFiles::live`]).

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleFile {
    /// Full normalised reference, as for images.
    pub name: String,
    /// The file's blob.
    pub blob: Digest,
    pub size: u64,
    /// The artifact manifest it came in.
    pub manifest: Digest,
    /// Where it came from, e.g. `oras://127.0.0.1:5000/lab/tool:1.0`.
    pub source: String,
}

/// `single-files/`: the user's, then the read-only stores' (see `read_only.rs`), which are
/// only read.
pub struct SingleFiles {
    dirs: super::Dirs,
}

impl SingleFiles {
    pub(super) fn new(dirs: super::Dirs) -> SingleFiles {
        SingleFiles { dirs }
    }

    fn file_name(name: &Reference) -> String {
        format!("{}.json", name.for_filename())
    }

    /// The user's record file for `name`: the only one written or removed.
    fn path(&self, name: &Reference) -> PathBuf {
        self.dirs.own().join(Self::file_name(name))
    }

    /// The record of `name` in the user's store, else in the first read-only store with one.
    pub fn get(&self, name: &Reference) -> Result<Option<SingleFile>> {
        match self.dirs.find(Self::file_name(name), |p| p.exists()) {
            Some(path) => crate::fsutil::read_json_if_exists(&path),
            None => Ok(None),
        }
    }

    pub fn put(&self, record: &SingleFile) -> Result<()> {
        let name = Reference::parse(&record.name)?;
        let dir = self.dirs.own();
        fs::create_dir_all(dir).at(dir)?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::json(format!("single-file record {}", record.name), e))?;
        crate::fsutil::write_atomic(&self.path(&name), &json)
    }

    pub fn remove(&self, name: &Reference) -> Result<bool> {
        crate::fsutil::remove_file_if_exists(&self.path(name))
    }

    /// Every record of the user's that parses (sorted by name).
    pub fn list(&self) -> Result<Vec<SingleFile>> {
        Ok(self.entries()?.into_iter().flatten().collect())
    }

    /// Every record file of the user's: the records sorted by name, then those that cannot
    /// be read or parsed, with why (a file removed meanwhile is not one).
    pub fn entries(&self) -> Result<Vec<std::result::Result<SingleFile, Error>>> {
        let mut files = crate::fsutil::json_files(self.dirs.own())?;
        files.sort();
        let mut out: Vec<std::result::Result<SingleFile, Error>> = files
            .into_iter()
            .filter_map(|(_, path)| crate::fsutil::read_json_if_exists(&path).transpose())
            .collect();
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.name.cmp(&b.name),
            (a, b) => a.is_err().cmp(&b.is_err()),
        });
        Ok(out)
    }

    /// The blobs the records keep: each file and its manifest.
    pub fn live(&self) -> Result<Vec<Digest>> {
        Ok(self
            .list()?
            .into_iter()
            .flat_map(|r| [r.blob, r.manifest])
            .collect())
    }
}
