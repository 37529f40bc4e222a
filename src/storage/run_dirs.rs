//! The store's directories for running containers: `mountpoints/` and `flat/` for `lade run`,
//! `build-tmp/` for RUN steps. What goes into them is `crate::run`'s and the builder's
//! business; where they are, how they are published and when they go is this module's.
//!
//! None of them is under `tmp/`: `lade run` mounts its tmpfs over the store's `tmp/` (see
//! [`crate::storage::Storage::shared_tmp`]), so what a container needs must live elsewhere.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// `mountpoints/<name>/`: `lade run`'s mount-point layers (the empty directories and files an
/// image lacks for its binds), and `mountpoints/for-<question>`: which of them an image with
/// given binds uses (a memo; `-` for none).
pub struct MountPointLayers {
    dir: PathBuf,
}

impl MountPointLayers {
    pub(super) fn new(dir: PathBuf) -> MountPointLayers {
        MountPointLayers { dir }
    }

    fn memo(&self, question: &str) -> PathBuf {
        self.dir.join(format!("for-{question}"))
    }

    /// The remembered answer to `question` (a name for an image's trees and binds):
    /// `Some(None)` if no layer is needed, `Some(Some(layer))` if that layer is; `None` if
    /// nothing usable is remembered.
    pub fn recall(&self, question: &str) -> Option<Option<PathBuf>> {
        let answer = fs::read_to_string(self.memo(question)).ok()?;
        let answer = answer.trim();
        if answer == "-" {
            return Some(None);
        }
        let layer = self.dir.join(answer);
        (!answer.is_empty() && !answer.contains('/') && layer.is_dir()).then_some(Some(layer))
    }

    /// Remembers the answer to `question`. Remembering is only an optimisation: a failure to
    /// write leaves the next run to decide again. Written whole and renamed, so a reader never
    /// sees half an answer.
    pub fn remember(&self, question: &str, layer: Option<&Path>) {
        let answer = match layer {
            None => "-".to_string(),
            Some(l) => l
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let tmp = self.dir.join(format!(
            ".memo.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let published = fs::create_dir_all(&self.dir).is_ok()
            && fs::write(&tmp, answer).is_ok()
            && fs::rename(&tmp, self.memo(question)).is_ok();
        if !published {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Mount-point layer `name` (a hash of its content), made by `fill` if absent.
    pub fn get_or_make(
        &self,
        name: &str,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        make_once(&self.dir, name, fill)
    }
}

/// `flat/<manifest hex>/`: images flattened once, where overlayfs is refused.
pub struct FlatImages {
    dir: PathBuf,
    trash: super::Trash,
}

impl FlatImages {
    pub(super) fn new(dir: PathBuf, trash: super::Trash) -> FlatImages {
        FlatImages { dir, trash }
    }

    /// The flattened copy of the image whose manifest digest has hex `hex`, made by `fill`
    /// if absent.
    pub fn get_or_make(
        &self,
        hex: &str,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        make_once(&self.dir, hex, fill)
    }

    /// The names in `flat/` (manifest hexes, and the staging directories of runs that died),
    /// for collection. Best effort: an unreadable directory lists nothing.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.trash.remove(&self.dir.join(name)).map(drop)
    }
}

/// `dir/name`, made by `fill` in a staging directory beside it and renamed into place, so that
/// nobody sees it half-made; these directories never change once made. If another process
/// publishes the same one first, ours is discarded (it is the same content).
fn make_once(dir: &Path, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let target = dir.join(name);
    if target.is_dir() {
        return Ok(target);
    }
    fs::create_dir_all(dir).at(dir)?;
    let staging = dir.join(format!(
        ".staging.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        fs::create_dir(&staging).at(&staging)?;
        fill(&staging)?;
        match fs::rename(&staging, &target) {
            Ok(()) => Ok(()),
            Err(_) if target.is_dir() => crate::fsutil::remove_all(&staging),
            Err(e) => Err(Error::io_path(&target, e)),
        }
    })();
    if result.is_err() {
        let _ = crate::fsutil::remove_all(&staging);
    }
    result.map(|()| target)
}

/// `build-tmp/<pid>.<rand>/`: a RUN step's overlay upper and work directories.
pub struct BuildTmp {
    dir: PathBuf,
}

impl BuildTmp {
    pub(super) fn new(dir: PathBuf) -> BuildTmp {
        BuildTmp { dir }
    }

    /// A fresh directory for one RUN step, created; the caller removes it when done.
    pub fn create(&self) -> Result<PathBuf> {
        let dir = self.dir.join(format!(
            "{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(dir)
    }

    /// Removes the directories left by builds that died (kill -9): their process is gone.
    pub fn sweep_dead(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = crate::fsutil::remove_all(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_made_once_and_a_failed_one_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp.path().join("area");
        fs::create_dir(&area).unwrap();
        let flat = FlatImages::new(
            tmp.path().join("flat"),
            crate::storage::Trash::new(Some(area)),
        );
        let failed = flat.get_or_make("abc", |dir| {
            fs::write(dir.join("half"), "").unwrap();
            Err(Error::invalid("test", "fails"))
        });
        assert!(failed.is_err());
        assert!(flat.names().is_empty(), "{:?}", flat.names());
        let made = flat
            .get_or_make("abc", |dir| fs::write(dir.join("f"), "1").at(dir))
            .unwrap();
        assert_eq!(made, tmp.path().join("flat/abc"));
        let again = flat.get_or_make("abc", |_| panic!("made twice")).unwrap();
        assert_eq!(again, made);
        assert_eq!(flat.names(), vec!["abc".to_string()]);
        flat.remove("abc").unwrap();
        assert!(flat.names().is_empty());
    }

    #[test]
    fn mount_point_answers_are_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let store = MountPointLayers::new(tmp.path().join("mountpoints"));
        assert_eq!(store.recall("q1"), None);
        store.remember("q1", None);
        assert_eq!(store.recall("q1"), Some(None));
        let layer = store.get_or_make("l1", |_| Ok(())).unwrap();
        store.remember("q2", Some(&layer));
        assert_eq!(store.recall("q2"), Some(Some(layer.clone())));
        // A remembered layer that is gone is no answer.
        fs::remove_dir(&layer).unwrap();
        assert_eq!(store.recall("q2"), None);
    }

    #[test]
    fn build_tmp_sweeps_only_dead_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let build_tmp = BuildTmp::new(tmp.path().join("build-tmp"));
        let mine = build_tmp.create().unwrap();
        // No process has a pid this large (the kernel's limit is 2^22).
        let dead = tmp.path().join("build-tmp/4294967295.00000000");
        fs::create_dir(&dead).unwrap();
        build_tmp.sweep_dead();
        assert!(mine.is_dir());
        assert!(!dead.exists());
    }
}
