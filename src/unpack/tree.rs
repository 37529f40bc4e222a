//! One layer's view of the tree it is applied to: directory handles by path, the paths the
//! layer has, parent directories made to exist, and the placeholders of external hard links.
//! Everything that can replace or remove something goes through here, so the bookkeeping stays
//! true to the tree.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::ApplyMode;
use super::access::{self, DIR_RWX, Granted};
use super::names::{show, split};
use super::safe_fs::{self, DIR, Removed, file_type, lstat_at};
use crate::error::{Error, Result};

/// Warnings kept per layer; a hostile layer could otherwise produce millions.
const MAX_WARNINGS: usize = 100;

/// Directory fds kept open between entries. Tar streams are depth-first, so the few most recent
/// directories serve nearly every entry; the cap bounds fd use.
const MAX_CACHED_DIRS: usize = 256;

#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    more: u64,
}

impl Warnings {
    fn push(&mut self, w: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(w);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("… and {} more warnings", self.more));
        }
        self.list
    }
}

/// A hard link whose target is in a lower layer (OverlayTree mode), held by a placeholder file.
struct External {
    link: PathBuf,
    target: PathBuf,
    placeholder: (u64, u64),
}

/// The tree under one `apply_layer`, with what the layer has done to it so far.
pub(crate) struct LayerTree<'o> {
    pub root: Arc<OwnedFd>,
    pub mode: ApplyMode,
    pub what: &'o str,
    /// Open directories by path. Only directories that exist in this layer's own tree are
    /// entered here (Flatten relies on it for `in_layer`); cleared whenever a directory is
    /// removed, so no fd names a directory that left the tree.
    cache: HashMap<PathBuf, Arc<OwnedFd>>,
    /// Flatten mode: every path this layer has, its ancestors included (what its own
    /// OverlayTree would hold). Whiteouts and opaque markers spare these. OverlayTree mode asks
    /// the tree itself, which holds nothing else.
    in_layer: Option<HashSet<PathBuf>>,
    external: Vec<External>,
    /// Placeholder inode → the lower-layer target it stands for, so hard links to a placeholder
    /// are reported as external too. Only inodes some listed placeholder still holds.
    placeholders: HashMap<(u64, u64), PathBuf>,
    warnings: Warnings,
    /// Hashes of the paths of the directories this layer made or entered (for the workers'
    /// ordering rules, `workers.rs`).
    dir_hashes: HashSet<u64>,
    /// Flatten mode: directories of lower layers whose image mode locks lade out (`0555`,
    /// `0000`), given `u+rwx` while the layer is applied; their modes go back at the end.
    grants: Vec<(PathBuf, Granted)>,
    /// OverlayTree mode: parent directories made where the tree had nothing (see
    /// [`LayerReport::implicit_dirs`](super::LayerReport::implicit_dirs)).
    implicit: Vec<PathBuf>,
    /// OverlayTree mode: directories made in place of this layer's own whiteouts (opaque, so
    /// nothing below shows through them or their descendants).
    replaced_whiteouts: Vec<PathBuf>,
}

impl<'o> LayerTree<'o> {
    pub(crate) fn new(root: OwnedFd, mode: ApplyMode, what: &'o str) -> LayerTree<'o> {
        LayerTree {
            root: Arc::new(root),
            mode,
            what,
            cache: HashMap::new(),
            in_layer: (mode == ApplyMode::Flatten).then(HashSet::new),
            external: Vec::new(),
            placeholders: HashMap::new(),
            warnings: Warnings::default(),
            dir_hashes: HashSet::new(),
            grants: Vec::new(),
            implicit: Vec::new(),
            replaced_whiteouts: Vec::new(),
        }
    }

    /// The owner bits every directory lade enters must have. A fresh OverlayTree holds only
    /// what this layer creates (`u+rwx` until its metadata is applied at the end); Flatten
    /// mode also enters the directories of lower layers, with their image modes.
    fn need(&self) -> u32 {
        match self.mode {
            ApplyMode::OverlayTree => 0,
            ApplyMode::Flatten => DIR_RWX,
        }
    }

    pub(crate) fn note_grant(&mut self, path: &Path, granted: Option<Granted>) {
        if let Some(g) = granted {
            self.grants.push((path.to_path_buf(), g));
        }
    }

    /// The directories granted access while the layer was applied, with the modes to put back.
    pub(crate) fn take_grants(&mut self) -> Vec<(PathBuf, Granted)> {
        std::mem::take(&mut self.grants)
    }

    pub(crate) fn into_warnings(self) -> Vec<String> {
        self.warnings.into_vec()
    }

    /// An open directory this layer already entered, if still cached.
    pub(crate) fn cached(&self, rel: &Path) -> Option<Arc<OwnedFd>> {
        self.cache.get(rel).cloned()
    }

    /// Called after removing directories behind the tree's back.
    pub(crate) fn forget_cached_dirs(&mut self) {
        self.cache.clear();
    }

    /// Records an external hard link held by the placeholder inode `placeholder`.
    pub(crate) fn add_external(&mut self, link: &Path, target: &Path, placeholder: (u64, u64)) {
        self.placeholders.insert(placeholder, target.to_path_buf());
        self.external.push(External {
            link: link.to_path_buf(),
            target: target.to_path_buf(),
            placeholder,
        });
    }

    /// The lower-layer target a placeholder inode stands for.
    pub(crate) fn placeholder_target(&self, inode: (u64, u64)) -> Option<PathBuf> {
        self.placeholders.get(&inode).cloned()
    }

    pub(crate) fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    pub(crate) fn fs_error(&self, path: &Path, action: &str, e: impl Into<io::Error>) -> Error {
        Error::io(format!("{}: {}: {action}", self.what, show(path)), e.into())
    }

    pub(crate) fn invalid(&self, path: &Path, why: impl Into<String>) -> Error {
        Error::invalid(format!("{}: {}", self.what, show(path)), why)
    }

    pub(crate) fn opaque_error(&self, path: &Path, e: Errno) -> Error {
        if safe_fs::is_unsupported(e) {
            Error::unsupported(
                format!("{}: {}", self.what, show(path)),
                format!(
                    "cannot mark the directory opaque (xattr {}): {e}; the filesystem must \
                     support user xattrs",
                    safe_fs::OPAQUE_XATTR
                ),
            )
        } else {
            self.fs_error(path, "marking the directory opaque", e)
        }
    }

    /// A directory that replaces this layer's own whiteout hides the lower directory entirely,
    /// as it would in a flattened image.
    pub(crate) fn opaque_after_whiteout(&self, fd: &OwnedFd, path: &Path) -> Result<()> {
        if self.mode == ApplyMode::OverlayTree {
            safe_fs::set_opaque(fd).map_err(|e| self.opaque_error(path, e))?;
        }
        Ok(())
    }

    pub(crate) fn parts<'p>(&self, path: &'p Path) -> Result<(&'p Path, &'p OsStr)> {
        split(path).ok_or_else(|| self.invalid(path, "empty name"))
    }

    pub(crate) fn in_layer(&self, path: &Path) -> bool {
        self.in_layer.as_ref().is_some_and(|set| set.contains(path))
    }

    /// Records that this layer has `path` (and so all its ancestors).
    pub(crate) fn mark(&mut self, path: &Path) {
        let Some(set) = self.in_layer.as_mut() else {
            return;
        };
        let mut p = path;
        // Ancestors of a recorded path are recorded, so the walk stops at the first known one.
        while !p.as_os_str().is_empty() && !set.contains(p) {
            set.insert(p.to_path_buf());
            p = p.parent().unwrap_or(Path::new(""));
        }
    }

    pub(crate) fn cache_put(&mut self, path: &Path, fd: Arc<OwnedFd>) {
        if self.cache.len() >= MAX_CACHED_DIRS {
            self.cache.clear();
        }
        self.dir_hashes.insert(super::workers::hash(path));
        self.cache.insert(path.to_path_buf(), fd);
    }

    /// Whether this layer made or entered a directory at `path` (or a path of the same hash).
    pub(crate) fn made_dir(&self, path: &Path) -> bool {
        self.dir_hashes.contains(&super::workers::hash(path))
    }

    /// Takes in that `path` was removed to make room for something else.
    pub(crate) fn forget_replaced(&mut self, path: &Path, removed: Removed) {
        if removed == Removed::Dir {
            self.cache.clear();
        }
        if removed != Removed::Nothing {
            self.forget_external_under(path);
        }
    }

    /// The directory `rel`, made to exist as a real directory for `entry`: missing components
    /// are created and non-directories in the way replaced (never followed).
    pub(crate) fn dir_for(&mut self, rel: &Path, entry: &Path) -> Result<Arc<OwnedFd>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(fd) = self.cache.get(rel) {
            return Ok(fd.clone());
        }
        let fd = match safe_fs::open_beneath(&*self.root, rel, DIR) {
            Ok(fd) => {
                let granted = access::grant_fd(&fd, self.need())
                    .map_err(|e| self.fs_error(rel, "granting access", e))?;
                self.note_grant(rel, granted);
                Arc::new(fd)
            }
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::ACCESS) => {
                self.make_dirs(rel, entry)?
            }
            Err(e) => return Err(self.fs_error(rel, "opening directory", e)),
        };
        self.mark(rel);
        self.cache_put(rel, fd.clone());
        Ok(fd)
    }

    fn make_dirs(&mut self, rel: &Path, entry: &Path) -> Result<Arc<OwnedFd>> {
        let mut cur = self.root.clone();
        let mut cur_path = PathBuf::new();
        for comp in rel.iter() {
            cur_path.push(comp);
            if let Some(fd) = self.cache.get(&cur_path) {
                cur = fd.clone();
                continue;
            }
            let opened = access::open_dir(&*cur, comp, self.need())
                .map_err(|e| self.fs_error(&cur_path, "opening directory", e))?;
            let next = match opened {
                Some((fd, granted)) => {
                    self.note_grant(&cur_path, granted);
                    fd
                }
                None => {
                    let st = lstat_at(&*cur, comp)
                        .map_err(|e| self.fs_error(&cur_path, "inspecting", e))?;
                    let was_whiteout = st.as_ref().is_some_and(safe_fs::is_whiteout);
                    if let (Some(st), false) = (&st, was_whiteout) {
                        self.warn(format!(
                            "replaced the {} {} by a directory to hold {}",
                            safe_fs::kind_name(file_type(st)),
                            show(&cur_path),
                            show(entry)
                        ));
                    }
                    if st.is_some() {
                        self.clear(&cur, comp, &cur_path)?;
                    } else if self.mode == ApplyMode::OverlayTree {
                        self.implicit.push(cur_path.clone());
                    }
                    if was_whiteout {
                        self.replaced_whiteouts.push(cur_path.clone());
                    }
                    self.implicit_dir(&cur, comp, &cur_path, was_whiteout)?
                }
            };
            cur = Arc::new(next);
            self.cache_put(&cur_path, cur.clone());
        }
        Ok(cur)
    }

    /// A parent directory the layer did not list: `0755` whatever the umask, like Docker.
    fn implicit_dir(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
        replaced_whiteout: bool,
    ) -> Result<OwnedFd> {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.fs_error(path, "creating directory", e))?;
        let fd = self.open_child_dir(parent, name, path)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
            .map_err(|e| self.fs_error(path, "setting the mode", e))?;
        if replaced_whiteout {
            self.opaque_after_whiteout(&fd, path)?;
        }
        Ok(fd)
    }

    pub(crate) fn open_child_dir(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<OwnedFd> {
        rustix::fs::openat(
            parent,
            name,
            DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.fs_error(path, "opening directory", e))
    }

    /// An existing directory, for looking names up: nothing is created. In Flatten mode a
    /// lower layer's directory that locks lade out is granted access (and put back at the end).
    pub(crate) fn lookup_dir(&mut self, rel: &Path) -> rustix::io::Result<Arc<OwnedFd>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(fd) = self.cache.get(rel) {
            return Ok(fd.clone());
        }
        match safe_fs::open_beneath(&*self.root, rel, OFlags::PATH | OFlags::DIRECTORY) {
            Err(Errno::ACCESS) if self.need() != 0 => {}
            other => return other.map(Arc::new),
        }
        let mut cur = self.root.clone();
        let mut cur_path = PathBuf::new();
        for comp in rel.iter() {
            cur_path.push(comp);
            let Some((fd, granted)) = access::open_dir(&*cur, comp, access::DIR_RX)? else {
                // Absent, or a non-directory in the way: the same answers open_beneath gives.
                return Err(match lstat_at(&*cur, comp)? {
                    None => Errno::NOENT,
                    Some(_) => Errno::NOTDIR,
                });
            };
            self.note_grant(&cur_path, granted);
            cur = Arc::new(fd);
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` so something else can take its place.
    pub(crate) fn clear(&mut self, dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<()> {
        let removed = safe_fs::remove_all_at(dir, name)
            .map_err(|e| self.fs_error(path, "removing the old entry", e))?;
        self.forget_replaced(path, removed);
        Ok(())
    }

    /// Drops the external hard links whose placeholder was just removed. Their inode numbers
    /// may be reused at once (ext4 does), so identity by inode alone would not do.
    fn forget_external_under(&mut self, path: &Path) {
        let before = self.external.len();
        self.external.retain(|x| !x.link.starts_with(path));
        if self.external.len() != before {
            self.placeholders = self
                .external
                .iter()
                .map(|x| (x.placeholder, x.target.clone()))
                .collect();
        }
    }

    /// The implicit directories that are still directories the layer never listed, and that
    /// lie under none of this layer's whiteouts (a directory there starts afresh).
    pub(crate) fn finish_implicit(&mut self, listed: &HashSet<&Path>) -> Vec<PathBuf> {
        let implicit = std::mem::take(&mut self.implicit);
        let fresh = std::mem::take(&mut self.replaced_whiteouts);
        let mut kept = Vec::new();
        for path in implicit {
            if listed.contains(path.as_path()) || fresh.iter().any(|w| path.starts_with(w)) {
                continue;
            }
            let still_dir = split(&path).is_some_and(|(parent, name)| {
                self.lookup_dir(parent).is_ok_and(|dir| {
                    matches!(lstat_at(&*dir, name), Ok(Some(st)) if file_type(&st) == FileType::Directory)
                })
            });
            if still_dir && !kept.contains(&path) {
                kept.push(path);
            }
        }
        kept
    }

    /// The external hard links whose placeholder survived the rest of the layer.
    pub(crate) fn finish_external(&mut self) -> Vec<(PathBuf, PathBuf)> {
        let external = std::mem::take(&mut self.external);
        external
            .into_iter()
            .filter(|x| {
                let Some((parent, name)) = split(&x.link) else {
                    return false;
                };
                let Ok(dir) = self.lookup_dir(parent) else {
                    return false;
                };
                matches!(lstat_at(&*dir, name), Ok(Some(st))
                    if safe_fs::inode(&st) == x.placeholder && file_type(&st) == FileType::RegularFile)
            })
            .map(|x| (x.link, x.target))
            .collect()
    }
}
