//! Pulling into the store as one call, shared by `lade pull` and `lade build`'s `FROM`, so
//! that both resolve registry tags the same way: through the project's tag lock file
//! (`./lade-tags.lock`, see [`crate::lockfile`]), honouring `--locked`.
//!
//! The pinning is policy, so it lives here and not in the registry transport: a tag is
//! resolved here (from the lock file, or by asking the registry and pinning the answer), and
//! the registry source is then told to read that digest.

use std::path::Path;
use std::sync::Arc;

use crate::copy::{CopyOptions, copy_image};
use crate::error::{Error, Result};
use crate::lockfile::{self, TagLock};
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::registry::{self, RegistrySource};
use crate::transport::store::StoreDestination;
use crate::transport::{self, Context, CopiedImage, ImageLocation, ImageSource};

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub arch: ArchChoice,
    /// `--last-layer N`: unpack only the first N layers.
    pub last_layer: Option<usize>,
    /// `--always-download`: copy every blob even if the store has it.
    pub always_download: bool,
}

/// How registry tags are resolved: through the project's tag lock file if there is one, and
/// with `--locked` only through it. The default pins nothing: tags are what the registry says.
#[derive(Clone, Default)]
pub struct TagPins {
    lock: Option<Arc<TagLock>>,
    locked: bool,
}

impl TagPins {
    /// The pins of the project in the current directory (its lock file, if it has one), and
    /// `--locked`. A lock file that does not parse is an error.
    pub fn of_project(locked: bool) -> Result<TagPins> {
        Ok(TagPins {
            lock: TagLock::open_in(Path::new("."))?.map(Arc::new),
            locked,
        })
    }

    /// Whether pulling `loc` consults the pins: a registry tag (not a digest), with a lock file
    /// or `--locked`. Such a reference is resolved through the pull path even when the store
    /// has an image of that name, which costs no request once the tag is pinned and stored.
    pub fn govern(&self, loc: &ImageLocation) -> bool {
        match loc {
            ImageLocation::Registry(r) => {
                (self.lock.is_some() || self.locked) && TagLock::key(r).is_some()
            }
            _ => false,
        }
    }

    /// Points `src` at the digest its tag is pinned to; or, for a tag not pinned yet, asks the
    /// registry and pins the answer (the first pin of a tag wins if another pull in the
    /// project made one meanwhile); or, with `--locked`, refuses an unpinned tag. A digest
    /// reference needs no pin.
    fn resolve(&self, src: &mut RegistrySource, progress: &Progress) -> Result<()> {
        let reference = src.reference().clone();
        if reference.digest.is_some() {
            return Ok(());
        }
        let lock = self.lock.as_deref();
        if let Some(lock) = lock
            && let Some(pinned) = lock.get(&reference)
        {
            progress.note(&format!(
                "{}: pinned to {pinned} in {}",
                reference.familiar(),
                lock.path().display()
            ));
            src.read_digest(pinned);
            return Ok(());
        }
        if self.locked {
            let why = match lock {
                Some(l) => format!("tag not pinned in {} (--locked)", l.path().display()),
                None => format!(
                    "--locked, but there is no {} here to pin tags in",
                    lockfile::FILE_NAME
                ),
            };
            return Err(Error::invalid(src.describe(), why));
        }
        let Some(lock) = lock else {
            // Nothing pins tags: the copy reads the tag as the registry has it.
            return Ok(());
        };
        let found = src.resolve_tag()?;
        let pinned = lock.pin(&reference, &found)?;
        if pinned != found {
            // Another pull in this project pinned the tag meanwhile: follow its pin.
            src.read_digest(pinned);
        } else {
            progress.info(&format!(
                "pinned {} to {found} in {}",
                reference.familiar(),
                lock.path().display()
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for TagPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagPins")
            .field("lock", &self.lock.as_ref().map(|l| l.path().to_path_buf()))
            .field("locked", &self.locked)
            .finish()
    }
}

/// A pull's source: a registry source keeps its type until its tag is resolved.
enum Source {
    Registry(Box<RegistrySource>),
    Other(Box<dyn ImageSource>),
}

impl Source {
    fn get(&self) -> &dyn ImageSource {
        match self {
            Source::Registry(s) => &**s,
            Source::Other(s) => &**s,
        }
    }
}

/// Copies the image at `loc` into the store as `name` (default: the name the source implies)
/// and unpacks its layers. `pins` apply to registry sources only.
pub fn pull(
    storage: &Arc<Storage>,
    loc: &ImageLocation,
    name: Option<Reference>,
    registry: &registry::Options,
    pins: &TagPins,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<(Reference, CopiedImage)> {
    // The source is opened first: what it holds explains more than a missing name.
    let mut src = match loc {
        ImageLocation::Registry(r) => Source::Registry(Box::new(RegistrySource::open(
            r,
            registry,
            Some(storage.clone()),
        )?)),
        _ => {
            let ctx = Context {
                storage: Some(storage.clone()),
                registry: registry.clone(),
            };
            Source::Other(transport::open_source(loc, &ctx)?)
        }
    };
    // A docker archive's image is named by its own tag when the location names none.
    let name = name.or_else(|| match loc.implied_name() {
        None => src.get().names().into_iter().next(),
        Some(_) => None,
    });
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
        src.get().describe(),
        name.familiar()
    ));
    if let Source::Registry(s) = &mut src {
        pins.resolve(s, progress)?;
    }
    let image = copy_image(src.get(), &mut dst, &copy, progress)?;
    Ok((name, image))
}
