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
use crate::manifest::RawManifest;
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
    /// `--verify-key`: the image must carry a signature this key verifies (issue 15).
    verify: Option<p256::ecdsa::VerifyingKey>,
}

impl TagPins {
    /// The pins of the project in the current directory (its lock file, if it has one), and
    /// `--locked`. A lock file that does not parse is an error.
    pub fn of_project(locked: bool) -> Result<TagPins> {
        Ok(TagPins {
            lock: TagLock::open_in(Path::new("."))?.map(Arc::new),
            locked,
            verify: None,
        })
    }

    /// `--verify-key`: every pull through these pins (`lade pull`, `build`'s FROM) first
    /// checks that the image carries a signature `key` verifies, and refuses it otherwise,
    /// before anything is copied or unpacked.
    pub fn verifying(mut self, key: Option<p256::ecdsa::VerifyingKey>) -> TagPins {
        self.verify = key;
        self
    }

    /// Whether pulling `loc` consults the pins: a registry tag (not a digest), with a lock file
    /// or `--locked`. Such a reference is resolved through the pull path even when the store
    /// has an image of that name, which costs no request once the tag is pinned and stored.
    /// With a verify key, every source is governed: a stored image is checked again.
    pub fn govern(&self, loc: &ImageLocation) -> bool {
        if self.verify.is_some() {
            return true;
        }
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
            .field("verify", &self.verify.is_some())
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
    let trusted = match &pins.verify {
        Some(key) => Some(verify_source(
            &mut src, loc, storage, registry, key, progress,
        )?),
        None => None,
    };
    let image = copy_image(&ImagesOnly(src.get()), &mut dst, &copy, progress)?;
    if let Some((att, digest)) = trusted {
        // Keep the signatures checked, so that `lade verify lade:NAME` works offline.
        let stored = crate::attach::open(
            &ImageLocation::Store(name.clone()),
            &Context {
                storage: Some(storage.clone()),
                registry: registry.clone(),
            },
        )?;
        crate::attach::copy::copy_attachments(&*att, &*stored, &digest, progress)?;
    }
    Ok((name, image))
}

/// Checks, before anything is copied, that the image the pull will read carries a signature
/// `key` verifies; returns where its attachments are and the digest checked. A registry tag is
/// resolved first, so that the digest verified is the digest copied.
fn verify_source(
    src: &mut Source,
    loc: &ImageLocation,
    storage: &Arc<Storage>,
    registry: &registry::Options,
    key: &p256::ecdsa::VerifyingKey,
    progress: &Progress,
) -> Result<(Box<dyn crate::attach::Attachments>, crate::digest::Digest)> {
    let ctx = Context {
        storage: Some(storage.clone()),
        registry: registry.clone(),
    };
    let att = match (src, loc) {
        // The manifest is read once: checked here, and the very one the copy then reads.
        (Source::Registry(s), ImageLocation::Registry(r)) => {
            let top = s.hold_top()?;
            crate::attach::open_registry_read(&r.with_digest(top.digest.clone()), &ctx, top)?
        }
        _ => crate::attach::open(loc, &ctx)?,
    };
    let result = crate::sign::verify(&*att, key)?;
    let Some(found) = result.verified.first() else {
        return Err(result.failure(&format!("refusing {loc}"), key));
    };
    progress.info(&format!(
        "verified {loc} {}: {} with key {}",
        found.digest,
        found.kind,
        crate::sign::keys::fingerprint(key)
    ));
    let digest = found.digest.clone();
    Ok((att, digest))
}

/// A source that refuses what is not a container image (an ORAS artifact, a SIF file) before
/// anything is copied, saying what it is and how to fetch it, instead of failing on the first
/// layer as a tar stream.
struct ImagesOnly<'a>(&'a dyn ImageSource);

impl ImagesOnly<'_> {
    fn check(&self, m: RawManifest) -> Result<RawManifest> {
        if m.kind != crate::manifest::Kind::Image {
            return Ok(m);
        }
        let Some(what) = crate::artifact::describe_artifact(&m) else {
            return Ok(m);
        };
        let source = self.0.describe();
        let reference = source.strip_prefix("docker://").unwrap_or(&source);
        let how = if what.starts_with("a SIF") {
            format!("lade pull oras://{reference}")
        } else {
            format!("lade artifact pull {reference} DIR")
        };
        Err(Error::invalid(
            &source,
            format!("not a container image but {what}; fetch it with `{how}`"),
        ))
    }
}

impl ImageSource for ImagesOnly<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn top_manifest(&self) -> Result<RawManifest> {
        self.check(self.0.top_manifest()?)
    }
    fn manifest(&self, expected: &crate::digest::Expected) -> Result<RawManifest> {
        self.check(self.0.manifest(expected)?)
    }
    fn open_blob(
        &self,
        digest: &crate::digest::Digest,
    ) -> Result<Box<dyn std::io::Read + Send + '_>> {
        self.0.open_blob(digest)
    }
    // Every provided method too: a wrapper that let a default stand in would quietly lose
    // what the source does better (a registry's `Range` request for the rest of a blob).
    fn open_blob_at(
        &self,
        digest: &crate::digest::Digest,
        offset: u64,
    ) -> Result<Box<dyn std::io::Read + Send + '_>> {
        self.0.open_blob_at(digest, offset)
    }
    fn names(&self) -> Vec<Reference> {
        self.0.names()
    }
}
