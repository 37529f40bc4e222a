//! The one writer of images lade makes itself (a build's result, `lade import`, `lade push
//! --image`): their config and an OCI manifest over it and their layers, written into the
//! store's blobs ([`write_image`]), then, for the images that get a name in the store, the
//! image record ([`name_image`]).
//!
//! Both documents are written with sorted keys ([`to_canonical_json`]), as lade always wrote
//! them, so that the same layers and config give the same digests.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};

use crate::compression::Compression;
use crate::digest::{Digest, Expected};
use crate::error::{Error, IoContext, Result};
use crate::image_config::{ImageConfig, RootFs, to_canonical_json};
use crate::manifest::{OCI_MANIFEST, RawManifest, oci_digest};
use crate::pack::PackedLayer;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::store::StoreDestination;
use crate::transport::{CopiedImage, ImageDestination};

/// A layer of an image being written, its blob already in the store.
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub compression: Compression,
}

impl Layer {
    /// Stores the blob the packer wrote to `file` (checked against the digest and size it
    /// computed) unless the store has it already; `what` names it in errors.
    pub fn store_packed(
        storage: &Storage,
        packed: &PackedLayer,
        file: &Path,
        what: &str,
    ) -> Result<Layer> {
        let blobs = storage.blobs();
        if !blobs.has(&packed.digest) {
            let expected = Expected {
                digest: packed.digest.clone(),
                size: Some(packed.size),
            };
            blobs.put(&expected, &mut File::open(file).at(file)?, what)?;
        }
        Ok(Layer {
            blob: packed.digest.clone(),
            size: packed.size,
            diff_id: packed.diff_id.clone(),
            compression: packed.compression,
        })
    }
}

/// Writes `config`, its `rootfs` set to the diff-IDs of `layers` (bottom first), and an OCI
/// manifest over the two into the store's blobs; returns the manifest. Nothing is named: the
/// blobs are garbage until [`name_image`] (or a push that reads them) uses them.
pub fn write_image(
    storage: &Storage,
    mut config: ImageConfig,
    layers: &[Layer],
) -> Result<RawManifest> {
    let diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    config.rootfs.set(RootFs::layers(diff_ids));
    let config_bytes = to_canonical_json(&config, "image config")?;
    let blobs = storage.blobs();
    let config_digest = blobs.put_bytes(&config_bytes)?;
    let descriptor = |media: &str, size: u64, digest: &Digest| {
        Descriptor::new(MediaType::from(media), size, oci_digest(digest))
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            "application/vnd.oci.image.config.v1+json",
            config_bytes.len() as u64,
            &config_digest,
        ))
        .layers(
            layers
                .iter()
                .map(|l| descriptor(l.compression.media_type(), l.size, &l.blob))
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| Error::invalid("image manifest", e.to_string()))?;
    let bytes = to_canonical_json(&manifest, "image manifest")?;
    blobs.put_bytes(&bytes)?;
    RawManifest::new(bytes, Some(OCI_MANIFEST), None, "image manifest")
}

/// Names the image of `manifest` (from [`write_image`]) `name` in the store, its layers
/// unpacked into layer trees if they are not yet; `source` says where it came from (`lade
/// list -l`).
pub fn name_image(
    storage: &Arc<Storage>,
    manifest: RawManifest,
    name: &Reference,
    source: String,
    progress: &Progress,
) -> Result<()> {
    let mut dest =
        StoreDestination::new(storage.clone(), name.clone()).with_progress(progress.clone());
    dest.commit(&CopiedImage {
        top: manifest,
        from_index: None,
        platform: None,
        source,
    })
}
