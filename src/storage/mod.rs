//! lade's storage directory: where it is, its format version, locking, and every path in it.
//! Nothing outside this module builds a path inside the store: each part below is a typed
//! handle (`Storage::blobs()`, `layers()`, ...) that knows its own directory.
//!
//! ```text
//! $STORAGE/VERSION                 format version; unknown versions are refused
//! $STORAGE/lock                    flock: shared for ordinary work, exclusive for delete/reset/gc
//! $STORAGE/blobs/<alg>/<hex>       content-addressed blobs (manifests, configs, compressed
//!                                  layers): blobs()
//! $STORAGE/layers/<alg>-<hex>/     one unpacked tree per layer, keyed by diff-ID (overlayfs
//!                                  format), with its info.json: layers(), stage_layer()
//! $STORAGE/images/<name>.json      local image name → manifest digest, platform, provenance:
//!                                  images()
//! $STORAGE/build-cache/<key>.json  one build step's resulting state (layers, config), its
//!                                  parent key and instruction: cache_records()
//! $STORAGE/build-cache/images/<name>.json    a built image → its cache states (a "branch"):
//!                                            image_links()
//! $STORAGE/build-cache/deleted/<name>.json   a deleted image's record, for `lade undelete`:
//!                                            deleted_images()
//! $STORAGE/build-tmp/<pid>.<rand>/ a RUN step's overlay upper and work directories: build_tmp()
//! $STORAGE/cache-mounts/<hash>/    `RUN --mount=type=cache` directories, by id: cache_mounts()
//! $STORAGE/flat/<hex>/             flattened copies `lade run` makes without overlayfs: flat()
//! $STORAGE/mountpoints/<hash>/     `lade run`'s mount-point layers: empty directories and
//!                                  files an image lacks for the binds: mountpoints()
//! $STORAGE/mountpoints/for-<hash>  which of them an image with given binds uses (a memo)
//! $STORAGE/registry-blobs          which registry repositories hold which blobs, from pulls
//!                                  and pushes, for cross-repository mounts (best effort; its
//!                                  lines are crate::transport::registry::known_blobs's):
//!                                  registry_blobs_file()
//! $STORAGE/attachments/<alg>-<hex>.json  what is attached to a stored manifest: cosign's
//!                                  tag-schema manifests, OCI referrers: attachments()
//! $STORAGE/single-files/<name>.json  a single-file image (SIF) pulled over oras://, kept as a
//!                                  blob: single_files()
//! $STORAGE/partial/<alg>-<hex>     a blob part-way through its download, kept for the next
//!                                  pull to continue (see `partial.rs`)
//! $STORAGE/lost+found/images/      image records `fsck --repair` could not read
//! $STORAGE/tmp/<pid>.<rand>/       one work area per process, on the same filesystem, so that
//!                                  rename() publishes finished objects atomically:
//!                                  scratch_path(); `lade run` hides tmp/ under the
//!                                  container's tmpfs (shared_tmp())
//! ```
//!
//! Nothing is ever visible under `blobs/`, `layers/` or `images/` until it is complete and
//! verified: it is built under `tmp/` and renamed into place; and nothing leaves them but
//! whole: a removed directory is renamed into the work area before it is deleted ([`Trash`]).
//! A crash leaves only a stale work area, which the next process sweeps (its per-process lock
//! tells that its owner is gone).
//!
//! Other users' stores can be added read-only (`--ro-storage`, `read_only.rs`): `blobs()`,
//! `layers()`, `images()`, `cache_records()`, `single_files()` and `attachments()` look in them
//! after this one, and never write, list or remove there; nothing else does.
//!
//! What uses the store as a whole lives here too: [`gc`] (`lade delete` and collection),
//! [`fsck`] and [`undelete`]. They read the build cache's records as the store holds them
//! ([`cache_records`], [`image_links`]); what a cache key is, and which records `lade
//! build-cache --gc` keeps, the builder's cache module decides.

pub mod attachments;
mod blobs;
pub mod cache_mounts;
pub mod cache_records;
pub mod fsck;
pub mod gc;
pub mod image_links;
mod images;
mod layer_check;
mod layers;
mod lock;
mod partial;
mod read_only;
mod run_dirs;
pub mod single_files;
mod trash;
mod tree_diff;
pub mod undelete;

pub use blobs::copy_stream;
pub use blobs::{BlobStore, OpenAt};
pub use cache_mounts::{CacheMounts, HeldCacheMount, Sharing};
pub use cache_records::{CacheRecords, Record, State};
pub use image_links::{Deleted, DeletedImages, ImageLink, ImageLinks};
pub use images::{ImageRecord, ImageStore, LayerRef};
pub use layers::{LayerInfo, LayerStore, StagedLayer};
pub use lock::LockMode;
pub use read_only::{
    ListedImage, ListedSingleFile, distinct as distinct_read_only,
    resolve_paths as resolve_read_only_paths,
};
pub use run_dirs::{BuildTmp, FlatImages, MountPointLayers};
pub use trash::Trash;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use read_only::Dirs;

/// The storage format this lade writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// How the storage directory was chosen, for `gestalt` and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSource {
    Option,
    Environment,
    Default,
}

/// Chooses the storage directory: `-s/--storage`, then `$LADE_STORAGE` (must be absolute,
/// because the variable is usually set far from where it is used), then `/var/tmp/$USER.lade`.
pub fn resolve_path(option: Option<&Path>) -> Result<(PathBuf, PathSource)> {
    if let Some(p) = option {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .ctx(|| "current directory".into())?
                .join(p)
        };
        return Ok((p, PathSource::Option));
    }
    if let Some(env) = std::env::var_os("LADE_STORAGE").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(env);
        if !p.is_absolute() {
            return Err(Error::storage(&p, "$LADE_STORAGE must be an absolute path"));
        }
        return Ok((p, PathSource::Environment));
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && !u.contains('/'))
        .unwrap_or_else(|| rustix::process::getuid().as_raw().to_string());
    Ok((
        PathBuf::from(format!("/var/tmp/{user}.lade")),
        PathSource::Default,
    ))
}

/// An open storage directory, holding its lock (unless opened without locking) and, for
/// commands that write, this process's work area for as long as it lives.
pub struct Storage {
    root: PathBuf,
    _lock: Option<lock::StorageLock>,
    work: Option<lock::WorkArea>,
    /// Stores looked in after this one, never written or locked (see `read_only.rs`).
    read_only: Vec<PathBuf>,
}

impl Storage {
    /// Opens (creating and initialising if absent or empty) the storage directory at `root`,
    /// with a work area for this process; stale work areas of dead processes are swept.
    pub fn open(root: &Path, mode: LockMode) -> Result<Storage> {
        let mut storage = Storage::open_without_work_area(root, mode)?;
        storage.work = Some(lock::WorkArea::create(&storage.shared_tmp())?);
        lock::sweep_stale_work_areas(&storage.shared_tmp());
        Ok(storage)
    }

    /// Opens the storage directory for a command that only reads it (`lade run`): no work
    /// area is made and none is swept, which keeps container start-up free of directory
    /// churn. Writing blobs or scratch files through such a handle is an error.
    pub fn open_without_work_area(root: &Path, mode: LockMode) -> Result<Storage> {
        init_or_check(root)?;
        let lock = lock::StorageLock::acquire(root, mode)?;
        for dir in ["blobs", "layers", "images", "tmp"] {
            let path = root.join(dir);
            if !path.is_dir() {
                fs::create_dir_all(&path).at(&path)?;
            }
        }
        Ok(Storage {
            root: root.to_path_buf(),
            _lock: lock,
            work: None,
            read_only: Vec::new(),
        })
    }

    /// The storage directory as an argument for a child lade's `--storage`. Deliberately not a
    /// `Path`: every path inside the store is this module's to make.
    pub fn location_arg(&self) -> &std::ffi::OsStr {
        self.root.as_os_str()
    }

    /// A child lade's options for this store and its read-only stores (`--storage DIR
    /// --ro-storage DIR...`): the read-only stores passed explicitly, so the child looks in
    /// the same stores whatever its environment says.
    pub fn location_args(&self) -> Vec<&std::ffi::OsStr> {
        let mut args = vec![std::ffi::OsStr::new("--storage"), self.location_arg()];
        for r in &self.read_only {
            args.extend([std::ffi::OsStr::new("--ro-storage"), r.as_os_str()]);
        }
        args
    }

    /// The shared `tmp/` directory, which always exists: `lade run` mounts the container's
    /// tmpfs over it, inside its own mount namespace only, so nothing is created or left
    /// behind on the host and other processes' work areas there are untouched.
    pub fn shared_tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// This process's private scratch directory inside the store (same filesystem), or the
    /// shared `tmp/` for a handle opened without a work area.
    fn work_dir(&self) -> PathBuf {
        match &self.work {
            Some(w) => w.path().to_path_buf(),
            None => self.shared_tmp(),
        }
    }

    /// A fresh, unique path inside the work area (not created).
    pub fn scratch_path(&self, prefix: &str) -> PathBuf {
        match &self.work {
            Some(w) => w.unique(prefix),
            None => self.shared_tmp().join(format!(
                "{prefix}.{}.{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )),
        }
    }

    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(
            self.dirs("blobs"),
            self.work_dir(),
            partial::Partials::new(self.root.join("partial")),
        )
    }

    pub fn layers(&self) -> LayerStore {
        LayerStore::new(self.dirs("layers"), self.trash())
    }

    /// Removes objects crash-safely (see [`Trash`]).
    pub fn trash(&self) -> Trash {
        Trash::new(self.work.as_ref().map(|w| w.path().to_path_buf()))
    }

    /// A fresh staging directory in the work area for a layer tree to publish with
    /// [`LayerStore::publish`]; `prefix` names it for whoever looks at the work area.
    pub fn stage_layer(&self, prefix: &str) -> Result<StagedLayer> {
        StagedLayer::create(self.scratch_path(prefix))
    }

    /// Whether the store holds layer `layer`: its tree and its blob.
    pub fn holds_layer(&self, layer: &LayerRef) -> bool {
        self.layers().has(&layer.tree) && self.blobs().has(&layer.blob)
    }

    pub fn attachments(&self) -> attachments::AttachmentStore {
        attachments::AttachmentStore::new(self.dirs("attachments"))
    }

    pub fn single_files(&self) -> single_files::SingleFiles {
        single_files::SingleFiles::new(self.dirs("single-files"))
    }

    pub fn images(&self) -> ImageStore {
        ImageStore::new(
            self.dirs("images"),
            self.trash(),
            self.root.join("lost+found/images"),
        )
    }

    fn build_cache_dir(&self) -> PathBuf {
        self.root.join("build-cache")
    }

    pub fn cache_records(&self) -> CacheRecords {
        CacheRecords::new(self.dirs("build-cache"))
    }

    pub fn image_links(&self) -> ImageLinks {
        ImageLinks::new(self.build_cache_dir().join("images"))
    }

    pub fn deleted_images(&self) -> DeletedImages {
        DeletedImages::new(self.build_cache_dir().join("deleted"))
    }

    /// `lade build-cache --reset`: forgets every cache record, image link and deleted image
    /// (the layers they kept go at the next collection).
    pub fn remove_build_cache(&self) -> Result<()> {
        self.trash().remove(&self.build_cache_dir()).map(drop)
    }

    pub fn build_tmp(&self) -> BuildTmp {
        BuildTmp::new(self.root.join("build-tmp"))
    }

    /// `RUN --mount=type=cache` directories. Not under `tmp/`: a RUN step's container hides
    /// that under its tmpfs.
    pub fn cache_mounts(&self) -> CacheMounts {
        CacheMounts::new(self.root.join("cache-mounts"))
    }

    pub fn flat(&self) -> FlatImages {
        FlatImages::new(self.root.join("flat"), self.trash())
    }

    pub fn mountpoints(&self) -> MountPointLayers {
        MountPointLayers::new(self.root.join("mountpoints"))
    }

    /// The file `crate::transport::registry::known_blobs` keeps its lines in.
    pub fn registry_blobs_file(&self) -> PathBuf {
        self.root.join("registry-blobs")
    }
}

/// Seconds since the epoch, for the records' timestamps.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn version_path(root: &Path) -> PathBuf {
    root.join("VERSION")
}

/// Reads the format version; `None` if the directory is absent or empty (never initialised).
fn read_version(root: &Path) -> Result<Option<u32>> {
    let vpath = version_path(root);
    match fs::read_to_string(&vpath) {
        Ok(text) => {
            let v = text.trim().parse::<u32>().map_err(|_| {
                Error::storage(
                    root,
                    format!("VERSION file holds '{}', not a number", text.trim()),
                )
            })?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::read_dir(root) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io_path(root, e)),
                Ok(entries) => {
                    // `lock` alone is what `reset` leaves (it holds the lock while it works);
                    // `.VERSION.<pid>` is what a process killed while initialising leaves.
                    let mut others = entries
                        .flatten()
                        .filter(|e| !is_init_debris(&e.file_name()));
                    if others.next().is_none() {
                        Ok(None)
                    } else {
                        // Never take over a directory that is not ours: reset would delete it.
                        Err(Error::storage(
                            root,
                            "exists, is not empty and has no VERSION file: not a lade storage directory",
                        ))
                    }
                }
            }
        }
        Err(e) => Err(Error::io_path(&vpath, e)),
    }
}

/// Files that initialising (or resetting) a storage directory makes before VERSION exists.
fn is_init_debris(name: &std::ffi::OsStr) -> bool {
    name == "lock" || name.to_string_lossy().starts_with(".VERSION.")
}

fn init_or_check(root: &Path) -> Result<()> {
    match read_version(root)? {
        Some(FORMAT_VERSION) => Ok(()),
        Some(other) => Err(Error::storage(
            root,
            format!(
                "format version {other} is unknown to this lade (it knows {FORMAT_VERSION}); \
                 remove it with `lade reset`"
            ),
        )),
        None => {
            fs::create_dir_all(root).at(root)?;
            // Written whole then renamed, so a concurrent opener never reads a partial VERSION.
            let tmp = root.join(format!(".VERSION.{}", std::process::id()));
            let mut f = fs::File::create(&tmp).at(&tmp)?;
            writeln!(f, "{FORMAT_VERSION}").at(&tmp)?;
            drop(f);
            fs::rename(&tmp, version_path(root)).at(root)?;
            // Leftovers of processes killed while initialising stay (a few bytes each):
            // removing them here could race with another process initialising right now.
            Ok(())
        }
    }
}

/// Deletes everything in the storage directory and initialises it afresh. Refuses a directory
/// that is not a lade storage directory (no VERSION file), whatever its version.
///
/// Each top-level entry is first renamed into a work area (image records first, so a kill
/// part-way leaves a store with fewer images, never an image with half its objects), then
/// the work area is deleted; what a killed reset leaves there, the next lade sweeps.
pub fn reset(root: &Path) -> Result<()> {
    if !version_path(root).exists() {
        if !root.exists() {
            return Ok(());
        }
        read_version(root)?; // errors for a non-empty foreign directory
        return Ok(());
    }
    let _lock = lock::StorageLock::acquire(root, LockMode::Exclusive)?;
    let tmp = root.join("tmp");
    // A store of another version may lack tmp/: then the entries are removed in place.
    let area = fs::create_dir_all(&tmp)
        .ok()
        .and_then(|()| lock::WorkArea::create(&tmp).ok());
    let trash = Trash::new(area.as_ref().map(|a| a.path().to_path_buf()));
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(root)
        .at(root)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .at(root)?;
    let order = |n: &std::ffi::OsStr| match n.to_str() {
        Some("images") => 0,
        Some("build-cache") => 1,
        _ => 2,
    };
    names.sort_by_key(|n| order(n));
    for name in names {
        // VERSION goes last, so that a killed reset leaves a store lade still recognises.
        if name == "lock" || name == "tmp" || name == "VERSION" {
            continue;
        }
        let path = root.join(&name);
        match &area {
            Some(_) => trash.remove(&path).map(drop)?,
            None => crate::fsutil::remove_all(&path)?,
        }
    }
    drop(area);
    // Work areas of dead processes: under the exclusive lock, no live process has one
    // (`lade run` makes none).
    crate::fsutil::remove_all(&tmp)?;
    crate::fsutil::remove_file_if_exists(&version_path(root))?;
    init_or_check(root)
}
