//! Mount points for a read-only root without a writable layer.
//!
//! A container's binds (`/dev`, `/proc`, `/sys`, `/tmp`, the home directory, `/etc/hosts`,
//! `-b` targets) need mount points in the image. With a writable overlay upper layer lade
//! can create them there, but that upper layer must live on a fresh tmpfs, and mounting and
//! tearing down that tmpfs plus the upper and work directories cost more than a third of a
//! whole `lade run` (measured: ~1.2 ms of ~4 ms; most of it waiting in the kernel at exit).
//!
//! So for the default read-only root, lade looks up each target in the layer trees as
//! overlayfs would ([`lookup`]), and puts the missing ones into a tiny extra lower layer, the
//! *mount-point layer*, stacked on top: in the store's `mountpoints/`, named by a hash of its
//! content ([`crate::storage::MountPointLayers`]), made once and shared by every run that needs the same set. The root is then an overlay of
//! lower layers only, which the kernel makes read-only by itself. Targets that run through
//! a symbolic link in the image are refused, exactly as when they are created in an upper
//! layer, except the host's `/etc/hosts` and `/etc/resolv.conf`: an image's link there (to
//! systemd-resolved's stub file, say) is hidden by the mount point.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::storage::Storage;

use super::rootfs::Bind;

/// What the merged image has at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Present,
    Missing,
    /// A component before the last is a symbolic link.
    Symlink,
    /// The path itself is a symbolic link.
    SymlinkAtEnd,
    /// A component before the last is neither a directory nor a symbolic link.
    NotDirectory,
}

/// Looks `rel` up in the overlay of `trees` (top-most first), following overlayfs's rules for
/// lade's layer trees: the top-most entry of a name decides its type; a directory merges with
/// the directories below it until a non-directory, a whiteout (a 0/0 character device) or an
/// opaque directory (`user.overlay.opaque=y`) ends the merge.
pub fn lookup(trees: &[PathBuf], rel: &Path) -> io::Result<Found> {
    let names: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    // The directories (one per tree) that make up the current merged directory.
    let mut dirs: Vec<PathBuf> = trees.to_vec();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let mut merged = Vec::new();
        let mut top: Option<fs::FileType> = None;
        for dir in &dirs {
            let path = dir.join(name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let kind = meta.file_type();
            if is_whiteout(&meta) {
                break;
            }
            if top.is_none() {
                top = Some(kind);
            }
            if !kind.is_dir() {
                break;
            }
            merged.push(path.clone());
            if crate::pack::is_overlay_opaque(&path) {
                break;
            }
        }
        match top {
            None => return Ok(Found::Missing),
            Some(k) if k.is_symlink() && last => return Ok(Found::SymlinkAtEnd),
            Some(k) if k.is_symlink() => return Ok(Found::Symlink),
            Some(_) if last => return Ok(Found::Present),
            Some(k) if !k.is_dir() => return Ok(Found::NotDirectory),
            Some(_) => dirs = merged,
        }
    }
    Ok(Found::Present)
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// The mount-point layer holding every bind target missing from the image, or `None` when
/// the image has them all and enough layers to stand without it (overlayfs wants at least
/// two lower layers when there is no upper one). Errors name a target the image makes
/// impossible.
///
/// The layer trees never change, so the answer for one image and one set of binds is
/// remembered in the store ([`crate::storage::MountPointLayers::recall`]): a repeated run
/// reads one small file instead of looking every target up in every layer.
pub fn layer_for(storage: &Storage, trees: &[PathBuf], binds: &[Bind]) -> Result<Option<PathBuf>> {
    let store = storage.mountpoints();
    let mut question = String::new();
    for t in trees {
        question.push_str(&format!("lower {}\n", t.display()));
    }
    for b in binds {
        question.push_str(&format!(
            "bind {} {}\n",
            b.target.display(),
            b.source_is_dir
        ));
    }
    let question = listing_name(&question);
    if let Some(answer) = store.recall(&question) {
        return Ok(answer);
    }
    let layer = decide(storage, trees, binds)?;
    store.remember(&question, layer.as_deref());
    Ok(layer)
}

fn decide(storage: &Storage, trees: &[PathBuf], binds: &[Bind]) -> Result<Option<PathBuf>> {
    let mut needed: Vec<(PathBuf, bool)> = Vec::new();
    for b in binds {
        let is_dir = b.source_is_dir;
        let rel = super::container_path::relative(&b.target)?.to_path_buf();
        let found = lookup(trees, &rel)
            .map_err(|e| Error::io(format!("looking up bind target {}", b.target.display()), e))?;
        match found {
            Found::Present => {}
            Found::Missing => needed.push((rel, is_dir)),
            // The mount-point layer's entry, above the image, hides the link.
            Found::SymlinkAtEnd if b.replace_symlink => needed.push((rel, is_dir)),
            Found::Symlink | Found::SymlinkAtEnd => {
                return Err(Error::invalid(
                    format!("bind target {}", b.target.display()),
                    "is a symbolic link in the image; give the real path",
                ));
            }
            Found::NotDirectory => {
                return Err(Error::invalid(
                    format!("bind target {}", b.target.display()),
                    "a parent of it is not a directory in the image",
                ));
            }
        }
    }
    if needed.is_empty() && trees.len() >= 2 {
        return Ok(None);
    }
    needed.sort();
    needed.dedup();
    Ok(Some(make(storage, &needed)?))
}

/// The mount-point layer holding `needed` (a path and whether it is a directory), named by a
/// hash of its listing; made once by the store, never changed afterwards.
fn make(storage: &Storage, needed: &[(PathBuf, bool)]) -> Result<PathBuf> {
    let listing: String = needed
        .iter()
        .map(|(p, dir)| format!("{} {}\n", if *dir { 'd' } else { 'f' }, p.display()))
        .collect();
    storage
        .mountpoints()
        .get_or_make(&listing_name(&listing), |staging| {
            for (rel, is_dir) in needed {
                let path = staging.join(rel);
                let parent = if *is_dir {
                    path.as_path()
                } else {
                    path.parent().unwrap_or(staging)
                };
                fs::create_dir_all(parent).at(parent)?;
                if !*is_dir {
                    fs::File::create(&path).at(&path)?;
                }
            }
            Ok(())
        })
}

/// A name for a mount-point layer from its listing: 128 bits of SipHash, not SHA-256, since
/// merely initialising the SHA-256 code (CPU feature detection) was measurable on `lade run`'s
/// path and nothing here needs a cryptographic hash: the listings are lade's own, and a name
/// that changed with a new Rust release would only make a new tiny layer.
fn listing_name(listing: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        listing.hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(root: &Path, name: &str) -> PathBuf {
        let t = root.join(name);
        fs::create_dir_all(&t).unwrap();
        t
    }

    #[test]
    fn lookup_follows_overlay_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, low) = (tree(tmp.path(), "top"), tree(tmp.path(), "low"));
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::write(low.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::create_dir_all(low.join("home/u")).unwrap();
        symlink("/var/tmp", low.join("tmp")).unwrap();
        fs::write(low.join("file"), "").unwrap();
        let trees = [top.clone(), low.clone()];
        // A directory in the top layer merges with the one below.
        assert_eq!(
            lookup(&trees, Path::new("etc/hosts")).unwrap(),
            Found::Present
        );
        assert_eq!(lookup(&trees, Path::new("home/u")).unwrap(), Found::Present);
        assert_eq!(lookup(&trees, Path::new("dev")).unwrap(), Found::Missing);
        assert_eq!(
            lookup(&trees, Path::new("tmp")).unwrap(),
            Found::SymlinkAtEnd
        );
        assert_eq!(lookup(&trees, Path::new("tmp/x")).unwrap(), Found::Symlink);
        assert_eq!(
            lookup(&trees, Path::new("file/x")).unwrap(),
            Found::NotDirectory
        );
        // A non-directory on top hides the lower directory.
        fs::write(top.join("home"), "").unwrap();
        assert_eq!(
            lookup(&trees, Path::new("home/u")).unwrap(),
            Found::NotDirectory
        );
    }

    #[test]
    fn opaque_directories_and_whiteouts_end_the_merge() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, low) = (tree(tmp.path(), "top"), tree(tmp.path(), "low"));
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::write(low.join("etc/hosts"), "").unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        let trees = [top.clone(), low.clone()];
        let opaque = rustix::fs::setxattr(
            top.join("etc"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        if opaque.is_ok() {
            assert_eq!(
                lookup(&trees, Path::new("etc/hosts")).unwrap(),
                Found::Missing
            );
        }
        // A whiteout needs mknod of a 0/0 character device, which unprivileged users may
        // do only on some filesystems; test it where possible.
        fs::create_dir_all(low.join("proc")).unwrap();
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("proc"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        );
        if made.is_ok() {
            assert_eq!(lookup(&trees, Path::new("proc")).unwrap(), Found::Missing);
        }
    }
}
