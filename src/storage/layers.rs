//! Unpacked layer trees, one per layer, shared by every image that uses the layer.
//!
//! `layers/<key>/tree/` is the layer's own content in overlayfs format (whiteouts as 0/0
//! character devices, opaque directories marked with `user.overlay.opaque`), so that `lade run`
//! can stack the trees of an image with an unprivileged overlay mount, and `lade unpack` can
//! flatten them. `layers/<key>/info.json` describes it. Both are built in the work area (a
//! [`StagedLayer`]) and the directory is renamed into place only when complete
//! ([`LayerStore::publish`]); which layers to unpack, and how, is `crate::layer_install`'s and
//! the builder's business.

use std::fs;
use std::path::PathBuf;

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
    /// The layer lacks entries for some of its parent directories, which the tree then takes
    /// from the layers below it (`crate::unpack::adopt_lower_dirs`): above other layers than
    /// the first, such a tree is keyed by chain-ID too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implicit_dirs: bool,
}

pub struct LayerStore {
    /// The user's `layers/`, then the read-only stores' (see `read_only.rs`).
    dirs: super::Dirs,
    trash: super::Trash,
}

/// A layer tree being made in the work area: its content goes into [`tree`](Self::tree) (not
/// created: unpack into it or rename a finished directory onto it), then
/// [`LayerStore::publish`] adds its `info.json` and moves it into place. Whatever is not
/// published goes with the work area at the latest.
pub struct StagedLayer {
    dir: PathBuf,
}

impl StagedLayer {
    /// Makes the staging directory `dir` (a fresh path in the work area).
    pub(super) fn create(dir: PathBuf) -> Result<StagedLayer> {
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(StagedLayer { dir })
    }

    /// Where the layer's content goes.
    pub fn tree(&self) -> PathBuf {
        self.dir.join(TREE)
    }

    /// Removes it (a layer refused, not needed, or given up). Best effort: the work area is
    /// removed when the process ends anyway.
    pub fn discard(self) {
        let _ = crate::fsutil::remove_all(&self.dir);
    }
}

/// `keys` (bottom first) top-most first, each at its top-most place (see
/// [`LayerStore::stack`]).
fn top_most_once<'k>(
    keys: impl DoubleEndedIterator<Item = &'k str>,
) -> impl Iterator<Item = &'k str> {
    let mut seen = std::collections::HashSet::new();
    keys.rev().filter(move |k| seen.insert(*k))
}

const TREE: &str = "tree";
const INFO: &str = "info.json";

impl LayerStore {
    pub(super) fn new(dirs: super::Dirs, trash: super::Trash) -> LayerStore {
        LayerStore { dirs, trash }
    }

    /// Layer `key`'s directory in the first store that has the layer, the user's first; the
    /// user's when none has it.
    fn find(&self, key: &str) -> PathBuf {
        self.present(key).unwrap_or_else(|| self.own(key))
    }

    /// Layer `key`'s directory in the first store that has the layer, if one has it.
    fn present(&self, key: &str) -> Option<PathBuf> {
        self.dirs.find(key, |d| d.join(INFO).is_file())
    }

    /// Layer `key`'s directory in the user's store: the only place trees are written.
    fn own(&self, key: &str) -> PathBuf {
        self.dirs.own().join(key)
    }

    /// The key of a self-contained layer tree.
    pub fn key(diff_id: &Digest) -> String {
        format!("{}-{}", diff_id.algorithm().name(), diff_id.hex())
    }

    /// The key of a tree that holds copies of hard-link targets from the layers below it.
    pub fn key_with_lower(diff_id: &Digest, chain_id: &Digest) -> String {
        format!("{}-{}", Self::key(diff_id), chain_id.hex())
    }

    /// The directory of layer `key` (its tree and description), e.g. to measure its size.
    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.find(key)
    }

    /// Layer `key`'s tree, in the user's store or in a read-only one.
    pub fn tree(&self, key: &str) -> PathBuf {
        self.find(key).join(TREE)
    }

    /// The trees of layers `keys` (an image's, bottom first) as overlayfs stacks lower
    /// directories, top-most first, each tree once, at its top-most place. Overlayfs refuses
    /// a directory given twice (ELOOP, "overlapping layers"), and an image may well have the
    /// same layer twice: `COPY a /a`, `RUN rm /a`, `COPY a /a` makes two identical layers,
    /// and so do two empty layers from other tools.
    ///
    /// Dropping the lower occurrences gives exactly the same filesystem. Take one path p and
    /// one tree T: T either decides p, or passes it through.
    /// - T decides p when it has an entry at p (a file, a whiteout, or a directory, whose own
    ///   metadata then is T's) or p lies below a non-directory, a whiteout or an opaque
    ///   directory of T: what p is above T, present and how or absent, depends on T alone.
    /// - Otherwise (no entry at p, and every ancestor of p that T has is a directory that is
    ///   not opaque) T passes p through: p above T is what it is below T (below a
    ///   non-directory that T's directory replaces, p is absent both below and above).
    ///
    /// That is overlayfs's lookup (and the OCI layer rules): p is what the top-most layer
    /// that decides it makes it, absent if none does; non-opaque directories merge, which is
    /// passing through. Which paths T decides, and how, depends on T's content only, the same
    /// at both places (a shared key is one tree). For a path T decides, the top-most deciding
    /// layer is at or above T's upper occurrence, never the lower one; for a path T passes
    /// through, the lower occurrence passes it through and taking it away changes nothing.
    /// So whatever the layers between the two did (removing a file the lower occurrence
    /// added, creating files in a directory T makes opaque, replacing a directory of T with a
    /// file) is decided again by the upper occurrence the same way with or without the lower
    /// one, or passed through by both. Each drop keeps a higher occurrence in place, so
    /// dropping them one at a time, any number of them, is exact too.
    pub fn stack<'k>(&self, keys: impl DoubleEndedIterator<Item = &'k str>) -> Vec<PathBuf> {
        top_most_once(keys).map(|k| self.tree(k)).collect()
    }

    /// [`stack`](Self::stack) when every layer of `keys` is stored, else the first missing key:
    /// one lookup per layer, for `lade run`'s start-up.
    pub fn stack_present<'k>(
        &self,
        keys: impl DoubleEndedIterator<Item = &'k str>,
    ) -> std::result::Result<Vec<PathBuf>, &'k str> {
        top_most_once(keys)
            .map(|k| {
                let dir = self.present(k).ok_or(k)?;
                Ok(dir.join(TREE))
            })
            .collect()
    }

    /// Whether any store (the user's or a read-only one) has layer `key`.
    pub fn has(&self, key: &str) -> bool {
        self.present(key).is_some()
    }

    fn has_own(&self, key: &str) -> bool {
        self.own(key).join(INFO).is_file()
    }

    pub fn info(&self, key: &str) -> Result<LayerInfo> {
        let path = self.find(key).join(INFO);
        let bytes = fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::json(path.display().to_string(), e))
    }

    /// Writes `info` beside the staged tree and moves both into place as layer `key`. If
    /// another process published the same layer meanwhile, ours is discarded: both are the
    /// same verified content.
    pub fn publish(&self, staged: StagedLayer, key: &str, info: &LayerInfo) -> Result<()> {
        let info_path = staged.dir.join(INFO);
        let json = serde_json::to_vec_pretty(info)
            .map_err(|e| Error::json(info_path.display().to_string(), e))?;
        fs::write(&info_path, json).at(&info_path)?;
        let staged = staged.dir;
        let target = self.own(key);
        match fs::rename(&staged, &target) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST))
                    && self.has_own(key) =>
            {
                crate::fsutil::remove_all(&staged)
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                // A directory without info.json cannot have been published by rename; it is
                // debris from something else. Replace it.
                self.trash.remove(&target)?;
                fs::rename(&staged, &target).at(&target)
            }
            Err(e) => Err(Error::io_path(&target, e)),
        }
    }

    /// The keys of the user's layers (never a read-only store's).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let dir = self.dirs.own();
        if let Some(entries) = crate::fsutil::read_dir_if_exists(dir)? {
            for e in entries {
                let e = e.at(dir)?;
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the user's layer `key`, tree and description at once (see [`super::Trash`]);
    /// a read-only store's stays.
    pub fn remove(&self, key: &str) -> Result<()> {
        self.trash.remove(&self.own(key)).map(drop)
    }

    /// Puts `staged` (a tree re-derived from the layer's blob) in place of layer `key`'s
    /// damaged tree, keeping its description. The old tree leaves first, so a crash in
    /// between leaves the layer absent (a pull unpacks it again), never half of either.
    pub fn replace(&self, staged: StagedLayer, key: &str) -> Result<()> {
        let path = self.own(key).join(INFO);
        let info: LayerInfo = serde_json::from_slice(&fs::read(&path).at(&path)?)
            .map_err(|e| Error::json(path.display().to_string(), e))?;
        self.remove(key)?;
        self.publish(staged, key, &info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockMode, Storage};

    #[test]
    fn a_staged_tree_is_published_with_its_description_once() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(&tmp.path().join("s"), LockMode::None).unwrap();
        let layers = storage.layers();
        let diff_id = Digest::sha256_of(b"layer");
        let info = LayerInfo {
            diff_id: diff_id.clone(),
            blob: Digest::sha256_of(b"blob"),
            compression: "gzip".into(),
            entries: 1,
            lower_chain: None,
            implicit_dirs: false,
        };
        let key = LayerStore::key(&diff_id);
        for content in ["first", "second"] {
            let staged = storage.stage_layer("test").unwrap();
            fs::create_dir(staged.tree()).unwrap();
            fs::write(staged.tree().join("f"), content).unwrap();
            layers.publish(staged, &key, &info).unwrap();
        }
        // The second copy (the same verified content in real use) was discarded.
        assert_eq!(fs::read(layers.tree(&key).join("f")).unwrap(), b"first");
        assert_eq!(layers.info(&key).unwrap(), info);
        assert_eq!(layers.list().unwrap(), vec![key.clone()]);
    }

    #[test]
    fn a_stack_keeps_the_top_most_occurrence_of_each_tree() {
        let dirs = super::super::Dirs::new(PathBuf::from("/s/layers"), Vec::new());
        let layers = LayerStore::new(dirs, super::super::Trash::new(None));
        let stack = |keys: &[&str]| -> Vec<String> {
            layers
                .stack(keys.iter().copied())
                .iter()
                .map(|p| p.strip_prefix("/s/layers").unwrap().display().to_string())
                .collect()
        };
        assert_eq!(stack(&["a", "b", "c"]), ["c/tree", "b/tree", "a/tree"]);
        assert_eq!(stack(&["a", "b", "a"]), ["a/tree", "b/tree"]);
        assert_eq!(
            stack(&["e", "a", "e", "b", "a", "e"]),
            ["e/tree", "a/tree", "b/tree"]
        );
        assert_eq!(stack(&[]), Vec::<String>::new());
    }

    #[test]
    fn a_stack_of_present_layers_names_the_missing_one() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(&tmp.path().join("s"), LockMode::None).unwrap();
        let layers = storage.layers();
        for k in ["a", "b"] {
            fs::create_dir_all(layers.entry_dir(k)).unwrap();
            fs::write(layers.entry_dir(k).join(INFO), "{}").unwrap();
        }
        let keys = ["a", "b", "a"];
        assert_eq!(
            layers.stack_present(keys.iter().copied()).unwrap(),
            layers.stack(keys.iter().copied())
        );
        assert_eq!(
            layers.stack_present(["a", "c", "b"].iter().copied()),
            Err("c")
        );
    }
}
