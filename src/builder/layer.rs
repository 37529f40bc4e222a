//! New layers from build steps: a tree in the store's overlayfs format (whiteouts as 0/0
//! character devices, opaque directories marked `user.overlay.opaque=y`) is packed into a
//! gzip layer blob in OCI format (`.wh.NAME`, `.wh..wh..opq`) by the one packer,
//! [`crate::pack`], stored, and the tree itself is published in the layer store under the
//! layer's diff-ID.
//!
//! With `SOURCE_DATE_EPOCH` (or `lade build --timestamp`) every time in the tree later than
//! the epoch is first set back to it, as BuildKit's `rewrite-timestamp` does: what a step
//! wrote today and what it writes tomorrow pack into the same bytes. The tree is clamped
//! rather than only its tar headers, so that the published tree and the blob agree (`lade
//! run` and `lade unpack` show what a pull of the pushed image would). Times are the only
//! thing that varies: the packer sorts entries and writes no owner names, atime or ctime,
//! and the gzip header's time field is left 0.

use std::fs;
use std::path::Path;

use crate::compression::Compression;
use crate::error::{IoContext, Result};
use crate::image_writer::Layer;
use crate::pack::{PackOptions, pack_layer_with};
use crate::storage::{LayerInfo, LayerRef, LayerStore, Storage};

pub use crate::pack::is_overlay_opaque as is_opaque;

/// Packs `tree` (a directory in the work area, consumed), its times first clamped to `epoch`
/// if given, stores the blob and publishes the tree; returns the layer as an image refers to
/// it.
pub fn commit_tree(storage: &Storage, tree: &Path, epoch: Option<u64>) -> Result<LayerRef> {
    if let Some(epoch) = epoch {
        clamp_times(tree, epoch)?;
    }
    let staging = storage.scratch_path("build-layer");
    fs::create_dir_all(&staging).at(&staging)?;
    let result = (|| {
        let blob_tmp = staging.join("layer.tar.gz");
        // Build layers keep their files' own times (the cache key, not the bytes, is what
        // makes a rebuild reuse them).
        let opts = PackOptions {
            fixed_mtime: None,
            overlay: true,
        };
        let packed = pack_layer_with(tree, &blob_tmp, Compression::Gzip, opts)?;
        let entries = packed.entries;
        let Layer {
            blob: digest,
            diff_id,
            compression,
            ..
        } = Layer::store_packed(storage, &packed, &blob_tmp, "build layer")?;
        fs::remove_file(&blob_tmp).at(&blob_tmp)?;
        let key = LayerStore::key(&diff_id);
        let layers = storage.layers();
        if !layers.has(&key) {
            let staged = storage.stage_layer("build-tree")?;
            fs::rename(tree, staged.tree()).at(tree)?;
            let info = LayerInfo {
                diff_id: diff_id.clone(),
                blob: digest.clone(),
                compression: compression.record_name().into(),
                entries,
                lower_chain: None,
                implicit_dirs: false,
            };
            layers.publish(staged, &key, &info)?;
        }
        Ok(LayerRef {
            blob: digest,
            diff_id,
            tree: key,
        })
    })();
    let _ = crate::fsutil::remove_all(&staging);
    let _ = crate::fsutil::remove_all(tree);
    result
}

/// Sets the modification time of every entry under `dir` (itself excluded: the root's time
/// is in no layer) that is later than `epoch` to `epoch`, symbolic links themselves included.
fn clamp_times(dir: &Path, epoch: u64) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    use std::os::unix::fs::MetadataExt;
    let limit = i64::try_from(epoch).unwrap_or(i64::MAX);
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let meta = fs::symlink_metadata(&path).at(&path)?;
        if meta.mtime() > limit || (meta.mtime() == limit && meta.mtime_nsec() > 0) {
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: UTIME_OMIT,
                },
                last_modification: Timespec {
                    tv_sec: limit,
                    tv_nsec: 0,
                },
            };
            utimensat(CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| crate::error::Error::io_path(&path, e.into()))?;
        }
        if meta.is_dir() {
            clamp_times(&path, epoch)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn times_after_the_epoch_are_clamped_and_earlier_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fs::create_dir(t.join("d")).unwrap();
        fs::write(t.join("d/new"), "x").unwrap();
        fs::write(t.join("old"), "x").unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        fs::File::options()
            .write(true)
            .open(t.join("old"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::os::unix::fs::symlink("old", t.join("link")).unwrap();
        clamp_times(t, 5000).unwrap();
        let mtime = |p: &str| fs::symlink_metadata(t.join(p)).unwrap().mtime();
        assert_eq!(mtime("d"), 5000);
        assert_eq!(mtime("d/new"), 5000);
        assert_eq!(mtime("link"), 5000);
        assert_eq!(mtime("old"), 1000);
    }
}
