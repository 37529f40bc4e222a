//! Pushing to a registry as one call, as [`crate::pull`] is for pulling: a stored image (its
//! original blobs, so its digest is kept) or a directory packed deterministically as one
//! layer, copied to a registry reference; blobs first, the tag last.

use std::path::Path;
use std::sync::Arc;

use crate::compression::Compression;
use crate::copy::{CopyOptions, copy_image};
use crate::error::Result;
use crate::pack::{self, PackedSource};
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::registry::{self, RegistryDestination};
use crate::transport::store::StoreSource;
use crate::transport::{CopiedImage, ImageDestination, ImageSource};

/// What `lade push` sends.
#[derive(Debug, Clone, Copy)]
pub enum PushSource<'a> {
    /// An image in the store, by name.
    Stored(&'a Reference),
    /// `--image DIR`: the tree in a directory, packed as one layer.
    Tree {
        dir: &'a Path,
        compression: Compression,
    },
}

/// Pushes `what` to the registry reference `dest`. A stored image that was pulled from
/// another repository of the same registry offers that repository to mount blobs from, which
/// may save uploading them.
pub fn push(
    storage: &Arc<Storage>,
    what: PushSource,
    dest: &Reference,
    registry: &registry::Options,
    arch: ArchChoice,
    progress: &Progress,
) -> Result<CopiedImage> {
    // Opened first (no request yet): a destination that cannot be reached at all (a bad CA
    // file) fails before a tree is packed.
    let dst = RegistryDestination::open(dest, registry, Some(storage.clone()))?;
    let (src, mount_from): (Box<dyn ImageSource>, Vec<String>) = match what {
        PushSource::Tree { dir, compression } => {
            progress.info(&format!("packing {}", dir.display()));
            let top = pack::pack_image(storage, dir, compression, progress)?;
            let src = PackedSource {
                storage: storage.clone(),
                top,
                what: format!("tree {}", dir.display()),
            };
            (Box::new(src), Vec::new())
        }
        PushSource::Stored(name) => {
            let record = storage.images().require(name)?;
            // Where the image was pulled from may save uploads (a mount).
            let from = record
                .source
                .strip_prefix("docker://")
                .and_then(|s| Reference::parse(s).ok())
                .and_then(|s| dst.same_registry_repository(&s));
            let src = StoreSource::open(storage.clone(), name)?;
            (Box::new(src), from.into_iter().collect())
        }
    };
    let mut dst = dst.with_mount_sources(mount_from);
    progress.info(&format!("pushing {} to {}", src.describe(), dst.describe()));
    let opts = CopyOptions {
        arch,
        ..CopyOptions::default()
    };
    copy_image(&*src, &mut dst, &opts, progress)
}
