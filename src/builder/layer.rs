//! New layers from build steps: a tree in the store's overlayfs format (whiteouts as 0/0
//! character devices, opaque directories marked `user.overlay.opaque=y`) is packed into a
//! gzip layer blob in OCI format (`.wh.NAME`, `.wh..wh..opq`) by the one packer,
//! [`crate::pack`], stored, and the tree itself is published in the layer store under the
//! layer's diff-ID.

use std::fs;
use std::path::Path;

use crate::compression::Compression;
use crate::error::{IoContext, Result};
use crate::image_writer::Layer;
use crate::pack::{PackOptions, pack_layer_with};
use crate::storage::{LayerInfo, LayerRef, LayerStore, Storage};

pub use crate::pack::is_overlay_opaque as is_opaque;

/// Packs `tree` (a directory in the work area, consumed), stores the blob and publishes the
/// tree; returns the layer as an image refers to it.
pub fn commit_tree(storage: &Storage, tree: &Path) -> Result<LayerRef> {
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
