//! What a container's root is made of, worked out on the host before any namespace is entered
//! (so that ordinary errors read plainly): the directories to stack, top-most first, and the
//! image's config defaults.
//!
//! A new kind of root source (a SquashFS or SIF file, say) is one more [`RunImage`] variant
//! and one more arm in [`resolve`]: whatever it takes, it ends as directories to stack (for a
//! single-file image, the directory it is mounted at), and everything after that, the
//! mount-point layer, the overlay, the binds and the switch of root, is shared.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::process::ImageDefaults;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::storage::{ImageRecord, Storage};

/// What to run.
#[derive(Debug, Clone)]
pub enum RunImage {
    /// IMAGE as given to `lade run` (see [`resolve`] for the rule).
    Arg(String),
    Stored(Reference),
    /// An unpacked root filesystem directory (e.g. from `lade unpack`).
    Directory(PathBuf),
    /// Layer trees of the store by key, bottom first, with no image config (`lade build`'s
    /// intermediate states).
    Layers(Vec<String>),
    /// A single-file image, SquashFS or SIF: mounted with FUSE inside the namespace, it is
    /// the one lower layer ([`crate::squashfs::serve`]).
    File(PathBuf),
    /// A single-file image kept in the store under this name (`lade pull oras://REF NAME`,
    /// [`Storage::single_files`]): its blob runs as [`RunImage::File`] does.
    StoredFile(Reference),
}

/// The root of one run, before any mount.
#[derive(Debug, Clone)]
pub struct RootPlan {
    pub defaults: ImageDefaults,
    /// The directories to stack, top-most first.
    pub lowers: Vec<PathBuf>,
    /// A stored image's manifest digest (hex): the name of its flattened copy, for kernels that
    /// cannot mount overlayfs without privilege.
    pub flat_name: Option<String>,
    /// A single-file image, opened and checked: its root (the one lower layer) and its
    /// config are known only once it is mounted, inside the namespaces, so `lowers` is empty
    /// and `defaults` are not the image's until then.
    pub file: Option<crate::squashfs::ImageFile>,
}

/// overlayfs's limit on lower layers (`OVL_MAX_STACK` in the kernel's fs/overlayfs).
pub const MAX_LOWER_LAYERS: usize = 500;

/// The plan for `image`. `RunImage::Arg` follows ch-run's habit of taking a directory where an
/// image is expected: a path (starting with `/` or `.`) is a directory; a bare name is, in
/// this order, the stored image of that name, the stored single-file image of that name (a
/// SIF pulled over `oras://`), the directory of that name (so `lade run rootfs` runs
/// ./rootfs, and nothing stored ever loses to a directory that happens to share its name),
/// else the error for the missing image. `RunImage::Stored` is the same without the
/// directory.
pub fn resolve(storage: &Storage, image: &RunImage) -> Result<RootPlan> {
    match image {
        RunImage::Arg(arg) if arg.starts_with('/') || arg.starts_with('.') => {
            directory(Path::new(arg))
        }
        RunImage::Arg(arg) => {
            let parsed = Reference::parse(arg);
            if let Ok(name) = &parsed
                && let Some(plan) = stored_by_name(storage, name)?
            {
                return Ok(plan);
            }
            if Path::new(arg).is_dir() {
                return directory(Path::new(arg));
            }
            let name = parsed?;
            let record = storage.images().require(&name)?;
            stored(storage, &name, &record)
        }
        RunImage::Stored(name) => match stored_by_name(storage, name)? {
            Some(plan) => Ok(plan),
            None => stored(storage, name, &storage.images().require(name)?),
        },
        RunImage::StoredFile(name) => match stored_file(storage, name)? {
            Some(plan) => Ok(plan),
            None => Err(Error::ImageNotFound(format!(
                "no single-file image named {} in the store",
                name.familiar()
            ))),
        },
        RunImage::Directory(dir) => directory(dir),
        RunImage::File(path) => file(path, &path.display().to_string()),
        RunImage::Layers(keys) => {
            let layers = storage.layers();
            if let Some(k) = keys.iter().find(|k| !layers.has(k)) {
                return Err(Error::invalid(
                    "build state",
                    format!("layer tree {k} is missing"),
                ));
            }
            Ok(RootPlan {
                defaults: ImageDefaults::default(),
                lowers: layers.stack(keys.iter().map(String::as_str)),
                flat_name: None,
                file: None,
            })
        }
    }
}

/// The stored image named `name`, else the stored single-file image of that name: an image
/// wins, as it did before single files could be stored.
fn stored_by_name(storage: &Storage, name: &Reference) -> Result<Option<RootPlan>> {
    if let Some(record) = storage.images().get(name)? {
        return stored(storage, name, &record).map(Some);
    }
    stored_file(storage, name)
}

/// The single-file image stored under `name`, if there is one: its blob is the file.
fn stored_file(storage: &Storage, name: &Reference) -> Result<Option<RootPlan>> {
    let Some(record) = storage.single_files().get(name)? else {
        return Ok(None);
    };
    let what = format!("image {} (SIF {})", name.familiar(), record.blob);
    if !storage.blobs().has(&record.blob) {
        return Err(Error::invalid(
            what,
            format!(
                "its file is missing from the store; pull it again: lade pull {} {}",
                record.source,
                name.familiar()
            ),
        ));
    }
    file(&storage.blobs().path(&record.blob), &what).map(Some)
}

/// A single-file image at `path`, opened and checked; errors name it `what`.
fn file(path: &Path, what: &str) -> Result<RootPlan> {
    Ok(RootPlan {
        defaults: ImageDefaults::default(),
        lowers: Vec::new(),
        flat_name: None,
        file: Some(crate::squashfs::ImageFile::open_as(path, what)?),
    })
}

fn stored(storage: &Storage, name: &Reference, record: &ImageRecord) -> Result<RootPlan> {
    let config_bytes = storage.blobs().read_to_vec_trusted(&record.config)?;
    let config =
        crate::manifest::parse_config(&config_bytes, &format!("config of {}", name.familiar()))?;
    let lowers = storage
        .layers()
        .stack_present(record.layers.iter().map(|l| l.tree.as_str()))
        .map_err(|missing| {
            Error::invalid(
                format!("image {}", name.familiar()),
                format!("layer tree {missing} is missing; pull the image again"),
            )
        })?;
    Ok(RootPlan {
        defaults: ImageDefaults::from_config(&config),
        lowers,
        flat_name: Some(record.manifest.hex().to_string()),
        file: None,
    })
}

fn directory(dir: &Path) -> Result<RootPlan> {
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    if !dir.is_dir() {
        return Err(Error::ImageNotFound(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    Ok(RootPlan {
        defaults: ImageDefaults::default(),
        lowers: vec![dir],
        flat_name: None,
        file: None,
    })
}

/// `lowers` (top-most first) within overlayfs's limit, with room for the mount-point layer:
/// up to the limit every layer stays a layer of its own; past it the bottom ones are merged
/// into one tree, made once and kept in the store's `flat/` under a name from the trees it
/// holds (a cache: `lade gc` may remove it, and the next run makes it again). Images that
/// deep are rare (Docker stops at 127 layers).
pub fn within_layer_limit(storage: &Storage, mut lowers: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    // The same room whether or not this run needs the mount-point layer, so that every run
    // of an image shares one merged tree.
    let room = MAX_LOWER_LAYERS - 1;
    if lowers.len() <= room {
        return Ok(lowers);
    }
    // Keep room - 1 layers as they are; the rest, at the bottom, become one.
    let bottom = lowers.split_off(room - 1);
    let mut listing = Sha256::new();
    for tree in &bottom {
        listing.update(tree.as_os_str().as_encoded_bytes());
        listing.update(b"\n");
    }
    let name = format!("merged-{}", hex::encode(listing.finalize()));
    lowers.push(flattened(storage, &bottom, &name)?);
    Ok(lowers)
}

/// `lowers` (top-most first) flattened once into one tree, kept in the store's `flat/` under
/// `name` (made beside its final place, not in tmp/, which a run's mounts may cover by then).
pub(super) fn flattened(storage: &Storage, lowers: &[PathBuf], name: &str) -> Result<PathBuf> {
    storage.flat().get_or_make(name, |staging| {
        let trees: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        crate::unpack::flatten_trees(&trees, staging)
    })
}
