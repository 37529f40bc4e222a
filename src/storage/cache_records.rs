//! Build cache records: `build-cache/<key>.json`, one small record per build step, naming the
//! state the step produced (its layers, already in the store, and its image config), its
//! parent key and the instruction. The builder's cache module decides what a key is and when
//! a record is a hit; this module only reads and writes the records.
//!
//! A record's `created` time is in it; its last use is the file's mtime, touched on every hit
//! (one syscall rather than a rewrite). A record's state never changes once written
//! (published by rename).

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::LayerRef;
use crate::error::{Error, IoContext, Result};

/// A build state: the layers (bottom first) and the image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub layers: Vec<LayerRef>,
    pub config: crate::image_config::ImageConfig,
}

/// One cache record as stored: the state, and where it sits in the cache tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub state: State,
    /// The parent state's key: another record's key, `image:<digest>` or `scratch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The instruction as written in the Dockerfile (continuation lines joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// Seconds since the epoch when the step was executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
}

/// Whether `key` can name a record: 64 lowercase hex digits (a step key is a SHA-256). Parent
/// keys come from files, so they are checked before becoming file names.
pub fn is_record_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `build-cache/<key>.json`: the user's, then the read-only stores' (see `read_only.rs`),
/// which are only read.
pub struct CacheRecords {
    dirs: super::Dirs,
}

impl CacheRecords {
    pub(super) fn new(dirs: super::Dirs) -> CacheRecords {
        CacheRecords { dirs }
    }

    fn file_name(key: &str) -> String {
        format!("{key}.json")
    }

    /// The user's record file for `key`: the only one written or touched.
    fn path(&self, key: &str) -> PathBuf {
        self.dirs.own().join(Self::file_name(key))
    }

    /// The user's record under `key`, if there is one and it parses.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        if !is_record_key(key) {
            return Ok(None);
        }
        read_record(&self.path(key))
    }

    /// The record under `key` in the user's store, else in the first read-only store that
    /// has one, and whether it is the user's.
    pub fn find(&self, key: &str) -> Result<Option<(Record, bool)>> {
        if !is_record_key(key) {
            return Ok(None);
        }
        match self.dirs.find(Self::file_name(key), |p| p.exists()) {
            Some(path) => {
                let own = path == self.path(key);
                Ok(read_record(&path)?.map(|r| (r, own)))
            }
            None => Ok(None),
        }
    }

    /// Records `state` as the result of `instruction` (on one line) on state `parent`, now.
    pub fn put(&self, key: &str, parent: &str, instruction: &str, state: &State) -> Result<()> {
        let record = Record {
            state: state.clone(),
            parent: Some(parent.to_string()),
            instruction: Some(instruction.to_string()),
            created: Some(super::now_secs()),
        };
        let dir = self.dirs.own();
        fs::create_dir_all(dir).at(dir)?;
        let json = serde_json::to_vec(&record).map_err(|e| Error::json("build cache record", e))?;
        crate::fsutil::write_atomic(&self.path(key), &json)
    }

    /// Sets the record's mtime (its last use) to now. Best effort: a read-only store still
    /// builds from its cache.
    pub fn touch(&self, key: &str) {
        if let Ok(f) = fs::File::options().write(true).open(self.path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Every record of the user's: key, and the record or `None` if it does not parse.
    pub fn list(&self) -> Result<Vec<(String, Option<Record>)>> {
        let mut out = Vec::new();
        let dir = self.dirs.own();
        let Some(entries) = crate::fsutil::read_dir_if_exists(dir)? else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry.at(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_record_key(key) {
                continue; // a write in progress, or a foreign file
            }
            out.push((key.to_string(), self.get(key)?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes the record under `key`.
    pub fn remove(&self, key: &str) -> Result<()> {
        crate::fsutil::remove_file_if_exists(&self.path(key)).map(drop)
    }
}

/// The record in file `path`; `None` if there is none, or it does not parse (a foreign or
/// corrupt record is a miss: the step runs again and replaces it).
fn read_record(path: &std::path::Path) -> Result<Option<Record>> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Record>(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_path(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> (tempfile::TempDir, CacheRecords) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = super::super::Dirs::new(tmp.path().join("build-cache"), Vec::new());
        let records = CacheRecords::new(dirs);
        (tmp, records)
    }

    fn state() -> State {
        State {
            layers: Vec::new(),
            config: crate::image_config::ImageConfig::default(),
        }
    }

    #[test]
    fn records_round_trip_and_list_only_their_keys() {
        let (tmp, records) = records();
        let key = "a".repeat(64);
        assert!(records.get(&key).unwrap().is_none());
        records.put(&key, "scratch", "RUN true", &state()).unwrap();
        let got = records.get(&key).unwrap().unwrap();
        assert_eq!(got.parent.as_deref(), Some("scratch"));
        assert_eq!(got.instruction.as_deref(), Some("RUN true"));
        assert!(got.created.is_some());
        // Foreign files and unfinished writes are not records.
        std::fs::write(tmp.path().join("build-cache/notes.json"), "{}").unwrap();
        std::fs::write(tmp.path().join("build-cache/.x.json.tmp.1.2"), "").unwrap();
        let keys: Vec<String> = records.list().unwrap().into_iter().map(|r| r.0).collect();
        assert_eq!(keys, vec![key.clone()]);
        records.remove(&key).unwrap();
        assert!(records.list().unwrap().is_empty());
    }

    #[test]
    fn a_parent_key_from_a_file_never_names_another_path() {
        let (tmp, records) = records();
        std::fs::create_dir_all(tmp.path().join("build-cache")).unwrap();
        std::fs::write(tmp.path().join("secret.json"), "{}").unwrap();
        assert!(records.get("../secret").unwrap().is_none());
        assert!(records.get(&"A".repeat(64)).unwrap().is_none());
        assert!(is_record_key(&"0f".repeat(32)));
        assert!(!is_record_key(&"0f".repeat(31)));
    }
}
