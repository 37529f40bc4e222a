//! `lade import PATH REF`: an image from a directory or a tarball (with one top-level
//! directory, or a "tarbomb" without), as `ch-image import`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compression::Compression;
use crate::digest::{Algorithm, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::image_config::{History, ImageConfig};
use crate::image_writer;
use crate::pack::{self, PackedLayer};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
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
        let packed = pack_gzip(&root, &blob_tmp)?;
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
        let source = format!("import {}", path.display());
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

/// Packs `root` into a gzip layer at `out`, on this thread alone. Not
/// [`pack::pack_layer_with`], whose two threads hand the compressor 1 MiB chunks: gzip's
/// output at level 1 depends on how its input is chunked, so an imported tree would get
/// another blob digest than imports have always given it.
fn pack_gzip(root: &Path, out: &Path) -> Result<PackedLayer> {
    let file = File::create(out).at(out)?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file), Algorithm::Sha256);
    let mut gz = Compression::Gzip.encoder(compressed).at(out)?;
    let uncompressed = HashingWriter::new(&mut gz, Algorithm::Sha256);
    let (uncompressed, stats) = pack::pack_tree_with(root, uncompressed, Default::default())?;
    let (_, diff_id, _) = uncompressed.finish();
    let (mut buf, digest, size) = gz.finish().at(out)?.finish();
    buf.flush().at(out)?;
    Ok(PackedLayer {
        diff_id,
        digest,
        size,
        warnings: stats.warnings,
        entries: stats.entries,
        compression: Compression::Gzip,
    })
}
