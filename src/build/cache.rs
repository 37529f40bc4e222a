//! The build cache: `$STORAGE/build-cache/<key>.json`, one small record per build step, naming
//! the state the step produced (its layers, already in the store, and its image config).
//!
//! A step's key is sha256 of its parent state's key, the instruction after substitution (with
//! the ARG values in scope), and the content of every context file the step reads; so a key
//! names one exact result, and a record never changes once written (published by rename).
//! A record whose layers have left the store (`lade delete` collects what no image uses) is a
//! miss.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::storage::{LayerRef, Storage};

/// A build state: the layers (bottom first) and the image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub layers: Vec<LayerRef>,
    pub config: serde_json::Value,
}

pub struct BuildCache {
    dir: PathBuf,
}

/// A step's key from its parts.
pub fn step_key(parent: &str, instruction: &str, inputs: &str) -> String {
    let text = format!("{parent}\n{instruction}\n{inputs}");
    Digest::sha256_of(text.as_bytes()).hex().to_string()
}

impl BuildCache {
    pub fn new(storage: &Storage) -> BuildCache {
        BuildCache {
            dir: storage.root().join("build-cache"),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The state recorded under `key`, if any and if all its layers are still in the store.
    pub fn get(&self, storage: &Storage, key: &str) -> Result<Option<State>> {
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_path(&path, e)),
        };
        let Ok(state) = serde_json::from_slice::<State>(&bytes) else {
            return Ok(None); // a foreign or older record: rebuild and replace it
        };
        let layers = storage.layers();
        let blobs = storage.blobs();
        if state
            .layers
            .iter()
            .all(|l| layers.has(&l.tree) && blobs.has(&l.blob))
        {
            Ok(Some(state))
        } else {
            Ok(None)
        }
    }

    pub fn put(&self, key: &str, state: &State) -> Result<()> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let json = serde_json::to_vec(state).map_err(|e| Error::json("build cache record", e))?;
        crate::fsutil::write_atomic(&self.path(key), &json)
    }

    /// `lade build-cache --reset`: forget every record (layers stay until `lade delete`
    /// collects those no image uses).
    pub fn reset(&self) -> Result<()> {
        crate::fsutil::remove_all(&self.dir)
    }

    /// How many records the cache holds.
    pub fn count(&self) -> usize {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }
}
