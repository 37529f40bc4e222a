//! Unpacked layer trees, one per layer, shared by every image that uses the layer.
//!
//! `layers/<key>/tree/` is the layer's own content in overlayfs format (whiteouts as 0/0
//! character devices, opaque directories marked with `user.overlay.opaque`), so that `lade run`
//! can stack the trees of an image with an unprivileged overlay mount, and `lade unpack` can
//! flatten them. `layers/<key>/info.json` describes it. Both are built in the work area and the
//! directory is renamed into place only when complete.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: Digest,
    pub blob: Digest,
    pub compression: String,
    pub entries: u64,
    /// Set when the tree contains copies of files from lower layers (hard links across layers),
    /// which makes the tree depend on those layers: it is then keyed by chain-ID too.
    #[serde(default)]
    pub lower_chain: Option<Digest>,
}

pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    pub(super) fn new(dir: PathBuf) -> LayerStore {
        LayerStore { dir }
    }

    /// The key of a self-contained layer tree.
    pub fn key(diff_id: &Digest) -> String {
        format!("{}-{}", diff_id.algorithm().name(), diff_id.hex())
    }

    /// The key of a tree that holds copies of hard-link targets from the layers below it.
    pub fn key_with_lower(diff_id: &Digest, chain_id: &Digest) -> String {
        format!("{}-{}", Self::key(diff_id), chain_id.hex())
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    pub fn tree(&self, key: &str) -> PathBuf {
        self.dir.join(key).join("tree")
    }

    pub fn has(&self, key: &str) -> bool {
        self.dir.join(key).join("info.json").is_file()
    }

    pub fn info(&self, key: &str) -> Result<LayerInfo> {
        let path = self.dir.join(key).join("info.json");
        let bytes = fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::json(path.display().to_string(), e))
    }

    /// Moves a finished staging directory (holding `tree/` and `info.json`) into place. If
    /// another process published the same layer meanwhile, ours is discarded: both are the
    /// same verified content.
    pub fn publish(&self, staged: &Path, key: &str) -> Result<()> {
        let target = self.dir.join(key);
        match fs::rename(staged, &target) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST))
                    && self.has(key) =>
            {
                crate::fsutil::remove_all(staged)
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                // A directory without info.json cannot have been published by rename; it is
                // debris from something else. Replace it.
                crate::fsutil::remove_all(&target)?;
                fs::rename(staged, &target).at(&target)
            }
            Err(e) => Err(Error::io_path(&target, e)),
        }
    }

    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Some(entries) = crate::fsutil::read_dir_if_exists(&self.dir)? {
            for e in entries {
                let e = e.at(&self.dir)?;
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        crate::fsutil::remove_all(&self.dir.join(key))
    }
}
