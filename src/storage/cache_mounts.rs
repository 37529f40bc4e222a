//! `cache-mounts/`: the persistent directories of `RUN --mount=type=cache` (BuildKit's cache
//! mounts), shared by every build that names the same id:
//!
//! ```text
//! cache-mounts/<sha256 of id>/id         the id, as written (for people looking)
//! cache-mounts/<sha256 of id>/<n>/       instance n: the directory a step mounts
//! cache-mounts/<sha256 of id>/<n>.lock   flock of instance n while a step uses it
//! ```
//!
//! Instance 0 is the one `sharing=shared` (held with a shared lock, so steps of several builds
//! use it at once) and `sharing=locked` (an exclusive lock: a second build waits) use;
//! `sharing=private` takes the first instance nobody holds, making a new one if all are held,
//! as BuildKit makes a new mount for a second writer. An instance is made whole in a staging
//! directory and renamed into place. The directories are never in a layer or a cache key;
//! `lade build-cache --reset` and `lade reset` remove them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// BuildKit's `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// `cache-mounts/`.
pub struct CacheMounts {
    dir: PathBuf,
}

/// An instance of a cache mount, held (locked) for as long as this lives.
#[derive(Debug)]
pub struct HeldCacheMount {
    pub path: PathBuf,
    _lock: File,
}

impl CacheMounts {
    pub(super) fn new(dir: PathBuf) -> CacheMounts {
        CacheMounts { dir }
    }

    fn cache_dir(&self, id: &str) -> PathBuf {
        self.dir.join(Digest::sha256_of(id.as_bytes()).hex())
    }

    /// An instance of cache `id`, held as `sharing` says; a new instance is made by `init`
    /// (given its staging directory, created empty). `waiting` is called before blocking on a
    /// `locked` instance another build holds.
    pub fn hold(
        &self,
        id: &str,
        sharing: Sharing,
        init: &mut dyn FnMut(&Path) -> Result<()>,
        waiting: &dyn Fn(),
    ) -> Result<HeldCacheMount> {
        let dir = self.cache_dir(id);
        fs::create_dir_all(&dir).at(&dir)?;
        let id_file = dir.join("id");
        if !id_file.exists() {
            crate::fsutil::write_atomic(&id_file, id.as_bytes())?;
        }
        let mut n = 0u32;
        let lock = loop {
            let lock_path = dir.join(format!("{n}.lock"));
            let file = super::lock::open_lock_file(&lock_path)?;
            let (try_op, wait_op) = match sharing {
                Sharing::Shared => (
                    FlockOperation::NonBlockingLockShared,
                    FlockOperation::LockShared,
                ),
                Sharing::Locked | Sharing::Private => (
                    FlockOperation::NonBlockingLockExclusive,
                    FlockOperation::LockExclusive,
                ),
            };
            match flock(&file, try_op) {
                Ok(()) => break file,
                Err(rustix::io::Errno::WOULDBLOCK) if sharing == Sharing::Private => n += 1,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    waiting();
                    flock(&file, wait_op).map_err(|e| Error::io_path(&lock_path, e.into()))?;
                    break file;
                }
                Err(e) => return Err(Error::io_path(&lock_path, e.into())),
            }
        };
        let path = dir.join(n.to_string());
        if !path.is_dir() {
            // Only the holder of the exclusive lock, or shared holders racing to make the same
            // instance, get here. The rename never replaces: a plain rename would put a second
            // empty directory over the first, which another step may have mounted already.
            // The loser of the race discards its copy.
            let staging = dir.join(format!(
                ".staging.{n}.{}.{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let made = fs::create_dir(&staging)
                .at(&staging)
                .and_then(|()| init(&staging))
                .and_then(|()| {
                    use rustix::fs::{CWD, RenameFlags, renameat_with};
                    match renameat_with(CWD, &staging, CWD, &path, RenameFlags::NOREPLACE) {
                        Ok(()) => Ok(()),
                        Err(_) if path.is_dir() => crate::fsutil::remove_all(&staging),
                        Err(e) => Err(Error::io_path(&path, e.into())),
                    }
                });
            if let Err(e) = made {
                let _ = crate::fsutil::remove_all(&staging);
                return Err(e);
            }
        }
        Ok(HeldCacheMount { path, _lock: lock })
    }

    /// The caches' directories (one per id), for the summary: each with its id.
    pub fn list(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = entries
            .flatten()
            .map(|e| {
                let id = fs::read_to_string(e.path().join("id")).unwrap_or_default();
                (id, e.path())
            })
            .collect();
        out.sort();
        out
    }

    /// Removes every cache mount (`lade build-cache --reset`, under the exclusive storage
    /// lock, so no build holds one).
    pub fn remove_all(&self) -> Result<()> {
        crate::fsutil::remove_all(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> (tempfile::TempDir, CacheMounts) {
        let tmp = tempfile::tempdir().unwrap();
        let m = CacheMounts::new(tmp.path().join("cache-mounts"));
        (tmp, m)
    }

    #[test]
    fn shared_holders_see_one_directory_made_once() {
        let (_tmp, m) = mounts();
        let mut made = 0;
        let mut init = |d: &Path| {
            made += 1;
            fs::write(d.join("seed"), "x").at(d)
        };
        let a = m.hold("apt", Sharing::Shared, &mut init, &|| {}).unwrap();
        let b = m.hold("apt", Sharing::Shared, &mut init, &|| {}).unwrap();
        assert_eq!(a.path, b.path);
        assert_eq!(made, 1);
        assert!(a.path.join("seed").exists());
        assert_eq!(m.list().len(), 1);
        assert_eq!(m.list()[0].0, "apt");
    }

    #[test]
    fn private_holders_get_their_own_instance_while_one_is_held() {
        let (_tmp, m) = mounts();
        let mut init = |_: &Path| Ok(());
        let a = m.hold("c", Sharing::Private, &mut init, &|| {}).unwrap();
        let b = m.hold("c", Sharing::Private, &mut init, &|| {}).unwrap();
        assert_ne!(a.path, b.path);
        drop(a);
        let c = m.hold("c", Sharing::Private, &mut init, &|| {}).unwrap();
        assert!(c.path.ends_with("0"), "{:?}", c.path);
    }

    #[test]
    fn a_failed_init_leaves_no_instance() {
        let (_tmp, m) = mounts();
        let mut fail = |d: &Path| {
            fs::write(d.join("half"), "").at(d)?;
            Err(Error::invalid("seed", "fails"))
        };
        assert!(m.hold("x", Sharing::Shared, &mut fail, &|| {}).is_err());
        let mut init = |_: &Path| Ok(());
        let h = m.hold("x", Sharing::Shared, &mut init, &|| {}).unwrap();
        assert_eq!(fs::read_dir(&h.path).unwrap().count(), 0);
    }
}
