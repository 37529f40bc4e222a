//! Removing objects from the store so that a crash at any moment leaves each one either whole
//! or gone: a directory (a layer tree, a flattened copy, the build cache) is first renamed out
//! of sight into this process's work area, then deleted there. Deleting a big tree in place
//! takes many system calls, and a `kill -9` among them left `layers/<key>/info.json` beside
//! half a tree, which counted as present; a rename is one atomic step, and whatever a killed
//! process leaves in its work area the next lade sweeps (its lock says the owner is gone).
//!
//! A single file needs no such step: its `unlink` is already atomic.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where removed directories go before they are deleted: the process's work area.
#[derive(Clone, Debug)]
pub struct Trash {
    /// `None` for a store opened without a work area (`lade run`), which removes nothing.
    area: Option<PathBuf>,
}

impl Trash {
    pub(super) fn new(area: Option<PathBuf>) -> Trash {
        Trash { area }
    }

    /// Removes the file or directory tree `path`; Ok(false) if there was none.
    pub fn remove(&self, path: &Path) -> Result<bool> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io_path(path, e)),
        };
        if !meta.is_dir() {
            return crate::fsutil::remove_file_if_exists(path);
        }
        let Some(hidden) = self.hide(path)? else {
            return Ok(false);
        };
        crate::fsutil::remove_all(&hidden)?;
        Ok(true)
    }

    /// Renames directory `path` into the trash; its new path, or `None` if it was gone.
    fn hide(&self, path: &Path) -> Result<Option<PathBuf>> {
        let Some(area) = &self.area else {
            return Err(Error::invalid(
                path.display().to_string(),
                "cannot be removed through a store opened without a work area",
            ));
        };
        let dest = area.join(format!("trash.{:016x}", rand::random::<u64>()));
        match fs::rename(path, &dest) {
            Ok(()) => Ok(Some(dest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // Moving a directory to another parent rewrites its `..`, which needs write
            // permission on it; trees keep their image's modes (a 0555 root).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let mode = fs::symlink_metadata(path)
                    .map_err(|e| Error::io_path(path, e))?
                    .permissions()
                    .mode();
                fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| Error::io_path(path, e))?;
                fs::rename(path, &dest).map_err(|e| Error::io_path(path, e))?;
                Ok(Some(dest))
            }
            Err(e) => Err(Error::io_path(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_leaves_its_place_whole_before_it_is_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp.path().join("area");
        fs::create_dir(&area).unwrap();
        let trash = Trash::new(Some(area.clone()));
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("d")).unwrap();
        fs::write(tree.join("d/f"), "x").unwrap();
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o555)).unwrap();
        let hidden = trash.hide(&tree).unwrap().unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read(hidden.join("d/f")).unwrap(), b"x");
        assert!(hidden.starts_with(&area));
        crate::fsutil::remove_all(&hidden).unwrap();

        let file = tmp.path().join("f");
        fs::write(&file, "y").unwrap();
        assert!(trash.remove(&file).unwrap());
        assert!(!trash.remove(&file).unwrap());
        fs::create_dir(&tree).unwrap();
        assert!(trash.remove(&tree).unwrap());
        assert!(!tree.exists());
        assert_eq!(fs::read_dir(&area).unwrap().count(), 0);
    }

    #[test]
    fn a_store_without_a_work_area_removes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        assert!(Trash::new(None).remove(&dir).is_err());
        assert!(dir.is_dir());
    }
}
