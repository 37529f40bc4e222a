//! The build cache: `$STORAGE/build-cache/<key>.json`, one small record per build step, naming
//! the state the step produced (its layers, already in the store, and its image config).
//!
//! A step's key is sha256 of its parent state's key, the instruction after substitution (with
//! the ARG values in scope), and the content of every context file the step reads; so a key
//! names one exact result, and a record's state never changes once written (published by
//! rename).
//!
//! Each record also names its parent key and the instruction as written, so the records form
//! a tree rooted at the FROM images (parent `image:<manifest digest>`) and `scratch`, which
//! `lade build-cache --tree` draws. Records written before these fields existed still give
//! hits (the key alone proves the match) and are rewritten with them on their next hit; until
//! then `--tree` shows them as orphans. A record's `created` time is in it; its last use is the
//! file's mtime, touched on every hit (one syscall rather than a rewrite).
//!
//! - [`refs`]: which image each build made from which state (`build-cache/images/`), and the
//!   deleted images `lade undelete` can restore (`build-cache/deleted/`).
//! - [`tree`]: the `--tree` drawing.
//! - [`manage`]: `lade build-cache` (summary, `--tree`, `--gc`, `--reset`).
//!
//! A record whose layers have left the store is a miss. `lade delete` keeps every layer a
//! record names (see [`crate::gc`]): only `lade build-cache --gc` and `--reset` release them.
//!
//! # Identical files are not shared between layer trees (a measured decision)
//!
//! ch-image stores identical files once (Git objects). The obvious lade equivalent, hard
//! linking every build layer's regular files into a content store `files/sha256/<hex>` keyed
//! by content and metadata, is not safe with how the store uses inodes:
//!
//! - a shared inode between two layer trees already *means* a hard link: it is how
//!   `resolve_external_hardlinks` keeps a layer's hard link to a lower layer's file, and
//!   `flatten_trees` (`lade unpack`, `lade run` without overlayfs, `COPY --from`) links every
//!   later path of an inode it has copied once. Tried by hand (two `COPY f` steps to `/x/f`
//!   and `/y/f`, then `ln -f` between the two trees): `lade unpack` gave one inode, nlink 2,
//!   for both paths, so writing one file changed the other;
//! - through overlayfs (lowers on one filesystem) a container sees the lower inode number:
//!   the same experiment in `lade run` showed `/x/f` and `/y/f` with the same st_ino and
//!   nlink 2, i.e. as hard links, to tar, `cp -a`, rsync `-H`, du and the RUN steps of later
//!   builds, which would pack them as tar hard links;
//! - `hardlinks.rs` reads nlink 1 as "not linked elsewhere".
//!
//! Telling such sharing from real hard links would need a per-layer list of hard link groups
//! read by flatten and the hard link resolver, and would still leave the overlayfs inode
//! numbers visible. Sharing extents rather than inodes (FICLONE / FIDEDUPERANGE on btrfs or
//! XFS) keeps separate inodes and is the safe way; this machine's ext4 has no reflinks, so it
//! could be neither measured nor tested here, and is left for later. `tests/build_cache.rs`
//! (`identical_files_in_two_layers_stay_separate_files`) guards the current behaviour.

pub mod manage;
pub mod refs;
pub mod tree;

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

pub struct BuildCache {
    dir: PathBuf,
}

/// A step's key from its parts.
pub fn step_key(parent: &str, instruction: &str, inputs: &str) -> String {
    let text = format!("{parent}\n{instruction}\n{inputs}");
    Digest::sha256_of(text.as_bytes()).hex().to_string()
}

/// Whether `key` can name a record: 64 lowercase hex digits. Parent keys come from files, so
/// they are checked before becoming file names.
pub fn is_step_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An instruction's text on one line, as the tree shows it.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl BuildCache {
    pub fn new(storage: &Storage) -> BuildCache {
        BuildCache {
            dir: storage.root().join("build-cache"),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The record under `key`, if there is one and it parses.
    pub fn record(&self, key: &str) -> Result<Option<Record>> {
        if !is_step_key(key) {
            return Ok(None);
        }
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_path(&path, e)),
        };
        // A foreign or corrupt record is a miss: the step runs again and replaces it.
        Ok(serde_json::from_slice::<Record>(&bytes).ok())
    }

    /// The state recorded under `key`, if any and if all its layers are still in the store.
    /// A hit marks the record used; a record from before parents were recorded is rewritten
    /// with `parent` and `instruction`, so that it joins the tree.
    pub fn get(
        &self,
        storage: &Storage,
        key: &str,
        parent: &str,
        instruction: &str,
    ) -> Result<Option<State>> {
        let Some(record) = self.record(key)? else {
            return Ok(None);
        };
        let layers = storage.layers();
        let blobs = storage.blobs();
        if !record
            .state
            .layers
            .iter()
            .all(|l| layers.has(&l.tree) && blobs.has(&l.blob))
        {
            return Ok(None);
        }
        if record.parent.is_none() || record.instruction.is_none() {
            self.put(key, parent, instruction, &record.state)?;
        } else {
            self.touch(key);
        }
        Ok(Some(record.state))
    }

    /// Records `state` as the result of `instruction` on state `parent`.
    pub fn put(&self, key: &str, parent: &str, instruction: &str, state: &State) -> Result<()> {
        let record = Record {
            state: state.clone(),
            parent: Some(parent.to_string()),
            instruction: Some(one_line(instruction)),
            created: Some(now_secs()),
        };
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let json = serde_json::to_vec(&record).map_err(|e| Error::json("build cache record", e))?;
        crate::fsutil::write_atomic(&self.path(key), &json)
    }

    /// Sets the record's mtime (its last use) to now. Best effort: a read-only store still
    /// builds from its cache.
    fn touch(&self, key: &str) {
        if let Ok(f) = fs::File::options().write(true).open(self.path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Every record: key, and the record or `None` if it does not parse.
    pub fn list(&self) -> Result<Vec<(String, Option<Record>)>> {
        let mut out = Vec::new();
        let Some(entries) = crate::fsutil::read_dir_if_exists(&self.dir)? else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry.at(&self.dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_step_key(key) {
                continue; // a write in progress, or a foreign file
            }
            out.push((key.to_string(), self.record(key)?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes the record under `key`.
    pub fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io_path(&path, e)),
            _ => Ok(()),
        }
    }

    /// `lade build-cache --reset`: forget every record, image link and deleted image (the
    /// layers they kept go at the next collection, e.g. right after, in `manage`).
    pub fn reset(&self) -> Result<()> {
        crate::fsutil::remove_all(&self.dir)
    }
}
