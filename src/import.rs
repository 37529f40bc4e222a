//! `lade import PATH REF`: an image from a directory or a tarball (with one top-level
//! directory, or a "tarbomb" without), as `ch-image import`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compression::Compression;
use crate::error::{Error, IoContext, Result};
use crate::image_config::{History, ImageConfig};
use crate::image_writer;
use crate::pack;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::{ImageRecord, Storage};
use crate::unpack::{self, ApplyMode, ApplyOptions};

pub fn import(
    storage: &Arc<Storage>,
    path: &Path,
    name: &Reference,
    progress: &Progress,
) -> Result<()> {
    let meta =
        fs::metadata(path).map_err(|e| Error::io(format!("import {}", path.display()), e))?;
    let staging = storage.scratch_path("import");
    fs::create_dir_all(&staging).at(&staging)?;
    let result = (|| {
        let root: PathBuf = if meta.is_dir() {
            path.to_path_buf()
        } else {
            let tree = staging.join("tree");
            fs::create_dir(&tree).at(&tree)?;
            let file = File::open(path).at(path)?;
            let what = format!("tarball {}", path.display());
            let report = unpack::apply_layer(
                file,
                &tree,
                &ApplyOptions {
                    mode: ApplyMode::Flatten,
                    what: &what,
                },
            )?;
            for w in &report.warnings {
                progress.warn(&format!("{what}: {w}"));
            }
            single_top_dir(&tree)?.unwrap_or(tree)
        };
        let blob_tmp = staging.join("layer.tar.gz");
        let opts = pack::PackOptions::default();
        let packed = pack::pack_layer_in_one_thread(&root, &blob_tmp, Compression::Gzip, opts)?;
        for w in &packed.warnings {
            progress.warn(w);
        }
        let what = format!("packed layer of {}", path.display());
        let layer = image_writer::Layer::store_packed(storage, &packed, &blob_tmp, &what)?;
        let history = History::step(None, &format!("lade import {}", path.display()), false);
        let manifest = image_writer::write_image(
            storage,
            ImageConfig::for_host(vec![history], false),
            &[layer],
        )?;
        let source = ImageRecord::import_source(path);
        image_writer::name_image(storage, manifest, name, source, progress)?;
        Ok(())
    })();
    let _ = crate::fsutil::remove_all(&staging);
    result
}

/// A tarball with exactly one top-level directory is that directory's contents.
fn single_top_dir(tree: &Path) -> Result<Option<PathBuf>> {
    let mut entries = fs::read_dir(tree).at(tree)?;
    let (Some(first), None) = (entries.next(), entries.next()) else {
        return Ok(None);
    };
    let first = first.at(tree)?;
    Ok(first.file_type().at(tree)?.is_dir().then(|| first.path()))
}
