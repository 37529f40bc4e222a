//! The end of a build: the last stage's state written as an image ([`crate::image_writer`])
//! and named. Only here does the build touch the image store, so a failed build leaves none.

use super::driver::Builder;
use crate::builder::cache::State;
use crate::compression::Compression;
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::image_writer::{self, Layer};
use crate::reference::Reference;

/// Writes `state` as an image named `tag`, created now; returns its manifest digest.
pub(super) fn commit_image(b: &Builder, mut state: State, tag: &Reference) -> Result<Digest> {
    let blobs = b.storage.blobs();
    let trees = b.storage.layers();
    let mut layers = Vec::new();
    for l in &state.layers {
        // A layer's compression is what its tree's record says; gzip, what build steps make,
        // when the record cannot say.
        let compression = trees
            .info(&l.tree)
            .ok()
            .and_then(|i| Compression::from_record_name(&i.compression))
            .unwrap_or(Compression::Gzip);
        let path = blobs.path(&l.blob);
        layers.push(Layer {
            blob: l.blob.clone(),
            size: std::fs::metadata(&path).at(&path)?.len(),
            diff_id: l.diff_id.clone(),
            compression,
        });
    }
    state.config.created.set(b.created());
    let manifest = image_writer::write_image(&b.storage, state.config, &layers)?;
    let digest = manifest.digest.clone();
    let source = format!("build {}", b.context.display());
    image_writer::name_image(&b.storage, manifest, tag, source, b.progress)?;
    Ok(digest)
}
