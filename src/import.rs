//! `lade import PATH REF`: an image from a directory or a tarball (with one top-level
//! directory, or a "tarbomb" without), as `ch-image import`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;

use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{OCI_MANIFEST, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::store::StoreDestination;
use crate::transport::{CopiedImage, ImageDestination};
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
        let (diff_id, digest, size) = pack_gzip(&root, &blob_tmp, progress)?;
        let layer_expected = Expected {
            digest: digest.clone(),
            size: Some(size),
        };
        let blobs = storage.blobs();
        let mut f = File::open(&blob_tmp).at(&blob_tmp)?;
        blobs.put(
            &layer_expected,
            &mut f,
            &format!("packed layer of {}", path.display()),
        )?;

        let config = serde_json::json!({
            "architecture": crate::platform::host_arch().split('/').next().unwrap_or("amd64"),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created_by": format!("lade import {}", path.display())}],
        });
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| Error::json("image config", e))?;
        let config_digest = blobs.put_bytes(&config_bytes)?;
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest.to_string(),
                "size": size,
            }],
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest_json).map_err(|e| Error::json("image manifest", e))?;
        let raw = RawManifest::new(manifest_bytes, Some(OCI_MANIFEST), None, "image manifest")?;
        let mut dest =
            StoreDestination::new(storage.clone(), name.clone()).with_progress(progress.clone());
        dest.put_manifest(&raw)?;
        dest.commit(&CopiedImage {
            top: raw,
            from_index: None,
            platform: None,
            source: format!("import {}", path.display()),
        })?;
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

/// Packs `root` into a gzip layer at `out`; returns (diff-ID, blob digest, blob size).
fn pack_gzip(root: &Path, out: &Path, progress: &Progress) -> Result<(Digest, Digest, u64)> {
    let file = File::create(out).at(out)?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file), Algorithm::Sha256);
    // Level 1: three times faster than the default for a few percent more bytes.
    let gz = GzEncoder::new(compressed, GzLevel::fast());
    let uncompressed = HashingWriter::new(gz, Algorithm::Sha256);
    let (uncompressed, warnings) = crate::pack::pack_tree(root, uncompressed)?;
    for w in warnings {
        progress.warn(&w);
    }
    let (gz, diff_id, _) = uncompressed.finish();
    let compressed = gz.finish().at(out)?;
    let (mut buf, digest, size) = compressed.finish();
    buf.flush().at(out)?;
    Ok((diff_id, digest, size))
}
