//! Pulling into the store as one call, shared by `lade pull` and `lade build`'s `FROM`, so
//! that both resolve registry tags the same way: through the project's tag lock file
//! (`./lade-tags.lock`, see [`crate::lockfile`]), honouring `--locked`.

use std::path::Path;
use std::sync::Arc;

use crate::copy::{CopyOptions, copy_image};
use crate::error::{Error, Result};
use crate::lockfile::TagLock;
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::store::StoreDestination;
use crate::transport::{self, Context, CopiedImage, ImageLocation, registry};

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub arch: ArchChoice,
    /// `--last-layer N`: unpack only the first N layers.
    pub last_layer: Option<usize>,
    /// `--always-download`: copy every blob even if the store has it.
    pub always_download: bool,
}

/// Registry options with the tag lock file of the project in the current directory, if it has
/// one, and `--locked`. A lock file that does not parse is an error.
pub fn with_project_lock(opts: registry::Options, locked: bool) -> Result<registry::Options> {
    let tag_lock = TagLock::open_in(Path::new("."))?.map(Arc::new);
    Ok(registry::Options {
        tag_lock,
        locked,
        ..opts
    })
}

/// Whether pulling `loc` would consult the tag lock file: a registry tag (not a digest), with
/// a lock file or `--locked`. Such a reference is resolved through the pull path even when the
/// store has an image of that name, which costs no request once the tag is pinned and stored.
pub fn resolves_through_lock(loc: &ImageLocation, opts: &registry::Options) -> bool {
    match loc {
        ImageLocation::Registry(r) => {
            (opts.tag_lock.is_some() || opts.locked) && TagLock::key(r).is_some()
        }
        _ => false,
    }
}

/// Copies the image at `loc` into the store as `name` (default: the name the source implies)
/// and unpacks its layers. The tag lock file in `registry` applies to registry sources only.
pub fn pull(
    storage: &Arc<Storage>,
    loc: &ImageLocation,
    name: Option<Reference>,
    registry: &registry::Options,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<(Reference, CopiedImage)> {
    let mut registry = registry.clone();
    if !matches!(loc, ImageLocation::Registry(_)) {
        registry.tag_lock = None;
        registry.locked = false;
    }
    let ctx = Context {
        storage: Some(storage.clone()),
        registry,
    };
    // The source is opened first: what it holds explains more than a missing name.
    let src = transport::open_source(loc, &ctx)?;
    let name = match name {
        Some(n) => n,
        None => loc.implied_name().unwrap_or_else(|| {
            Err(Error::invalid(
                loc.to_string(),
                "names no image reference; give one: lade pull SOURCE DEST_REF",
            ))
        })?,
    };
    let mut dst = StoreDestination::new(storage.clone(), name.clone())
        .with_progress(progress.clone())
        .with_last_layer(opts.last_layer)
        .always_download(opts.always_download);
    let copy = CopyOptions {
        arch: opts.arch.clone(),
        ..CopyOptions::default()
    };
    progress.info(&format!(
        "pulling {} to {}",
        src.describe(),
        name.familiar()
    ));
    let image = copy_image(&*src, &mut dst, &copy, progress)?;
    Ok((name, image))
}
