//! `lade unpack REF DIR`: the image's flattened filesystem, written to a directory for
//! inspection or for other tools (like `umoci unpack`, but just the root filesystem).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;
use crate::storage::Storage;

/// Flattens the image's layer trees into `dir`, which must be absent or empty. The tree is
/// built in a hidden sibling directory and renamed into place, so `dir` never holds half an
/// image.
pub fn unpack_to_dir(storage: &Storage, name: &Reference, dir: &Path) -> Result<PathBuf> {
    let record = storage.images().require(name)?;
    if !crate::fsutil::is_absent_or_empty_dir(dir)? {
        return Err(Error::invalid(
            dir.display().to_string(),
            "exists and is not empty; give a new or empty directory",
        ));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dir
        .file_name()
        .ok_or_else(|| Error::invalid(dir.display().to_string(), "not a directory name"))?;
    let staging = parent.join(format!(
        ".{}.lade-unpack.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    crate::fsutil::remove_all(&staging)?;
    fs::create_dir(&staging).at(&staging)?;
    let layers = storage.layers();
    let trees: Vec<PathBuf> = record.layers.iter().map(|l| layers.tree(&l.tree)).collect();
    for t in &trees {
        if !t.is_dir() {
            let _ = crate::fsutil::remove_all(&staging);
            return Err(Error::invalid(
                format!("image {}", name.familiar()),
                format!(
                    "layer tree {} is missing; pull the image again",
                    t.display()
                ),
            ));
        }
    }
    let tree_refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
    let result = crate::unpack::flatten_trees(&tree_refs, &staging).and_then(|()| {
        // rename() onto an empty directory replaces it atomically.
        fs::rename(&staging, dir).at(dir)
    });
    if result.is_err() {
        let _ = crate::fsutil::remove_all(&staging);
    }
    result.map(|()| dir.to_path_buf())
}
