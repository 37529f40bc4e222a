//! The default read-only root of a single-file image: the FUSE mount itself, binds made
//! straight onto it, as ch-run does, instead of an overlay over the whole image.
//!
//! Why: an overlay over a FUSE mount costs a FUSE round trip for every xattr overlayfs
//! probes (opaque and redirect markers, on each directory it looks up) besides its own
//! set-up; measured on the Debian file, one `lade run FILE -- /bin/true` sent 68 requests
//! to the server through the overlay (19 of them `GETXATTR`) where ch-run sends 40.
//!
//! The mount points the binds need are usually in the file (lade's export and `ch-convert`
//! add them). One that is not, whose parent directory is (the home directory's
//! `/home/$USER`, a `-b` target), gets it from a small read-only overlay of that parent
//! alone: a tmpfs directory holding the mount point, over the image's directory. Anything
//! else (a missing parent, a symbolic link on the way, a target under another bind) is
//! left to the whole-image overlay of [`super::rootfs::assemble`], which answers every case.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::container_path;
use super::overlay::{self, Overlay};
use super::rootfs::{self, Bind};
use crate::error::{IoContext, Result};

/// A directory of the image that gets a small overlay for the mount points it lacks.
#[derive(Debug, PartialEq, Eq)]
struct Patch {
    /// Relative to the image's root; never empty (the root is not patched).
    dir: PathBuf,
    /// Missing entries and whether each is a directory (else an empty file).
    missing: Vec<(OsString, bool)>,
}

/// Binds `binds` onto the image served at `image` (read-only) and returns the root to pivot
/// into (`image` itself), or `None` when the binds need the whole-image overlay; then
/// nothing has been mounted. `scratch` is the container's tmpfs, for the mount points the
/// image lacks.
pub fn assemble(image: &Path, scratch: &Path, binds: &[Bind]) -> Result<Option<PathBuf>> {
    let Some(patches) = plan(image, binds)? else {
        return Ok(None);
    };
    for (i, p) in patches.iter().enumerate() {
        let layer = scratch.join(format!("mount-points-{i}"));
        fs::create_dir(&layer).at(&layer)?;
        for (name, is_dir) in &p.missing {
            let path = layer.join(name);
            if *is_dir {
                fs::create_dir(&path).at(&path)?;
            } else {
                fs::File::create(&path).at(&path)?;
            }
        }
        let dir = image.join(&p.dir);
        let lowers = [layer, dir.clone()];
        overlay::mount_at(
            &dir,
            &Overlay {
                lowers: &lowers,
                upper: None,
            },
        )?;
    }
    rootfs::bind_prepared(image, binds)?;
    Ok(Some(image.to_path_buf()))
}

/// The patches the binds need, or `None` if a bind needs more than a patch can give.
fn plan(image: &Path, binds: &[Bind]) -> Result<Option<Vec<Patch>>> {
    let mut patches: Vec<Patch> = Vec::new();
    let mut targets = Vec::with_capacity(binds.len());
    for b in binds {
        let rel = container_path::relative(&b.target)?;
        targets.push(rel);
        let existing = match lookup(image, rel) {
            Found::Present => continue,
            Found::MissingBelow(existing) => existing,
            Found::Unusable => return Ok(None),
        };
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(None);
        };
        if dir.as_os_str().is_empty() || existing != dir {
            return Ok(None);
        }
        let entry = (name.to_os_string(), b.source_is_dir);
        match patches.iter_mut().find(|p| p.dir == dir) {
            Some(p) => p.missing.push(entry),
            None => patches.push(Patch {
                dir: dir.to_path_buf(),
                missing: vec![entry],
            }),
        }
    }
    // A patch inside another, or at or under a bind's target (whose mount point would then
    // belong in the bound host directory), is the whole-image overlay's to handle.
    for p in &patches {
        let nested = patches
            .iter()
            .any(|q| !std::ptr::eq(p, q) && p.dir.starts_with(&q.dir));
        if nested || targets.iter().any(|t| p.dir.starts_with(t)) {
            return Ok(None);
        }
    }
    Ok(Some(patches))
}

/// What the image has at a bind's target.
enum Found {
    /// The target, with no symbolic link on the way.
    Present,
    /// The longest prefix that exists, as real directories: the target's parent if only the
    /// target is missing.
    MissingBelow(PathBuf),
    /// A symbolic link on the way or at the target, or an error other than "not found".
    Unusable,
}

fn lookup(image: &Path, rel: &Path) -> Found {
    let mut cur = image.to_path_buf();
    let mut existing = PathBuf::new();
    for comp in rel.components() {
        cur.push(comp);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Found::Unusable,
            Ok(_) => existing.push(comp),
            Err(e) if e.kind() == ErrorKind::NotFound => return Found::MissingBelow(existing),
            Err(_) => return Found::Unusable,
        }
    }
    Found::Present
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(target: &str, source_is_dir: bool) -> Bind {
        Bind {
            source: PathBuf::from("/"),
            target: PathBuf::from(target),
            source_is_dir,
            read_only: false,
            replace_symlink: false,
        }
    }

    fn image() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["dev", "home/someone", "etc", "opt"] {
            fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        fs::write(tmp.path().join("etc/hosts"), "").unwrap();
        std::os::unix::fs::symlink("etc", tmp.path().join("link")).unwrap();
        tmp
    }

    #[test]
    fn present_targets_need_no_patch() {
        let img = image();
        let binds = [bind("/dev", true), bind("/etc/hosts", false)];
        assert_eq!(plan(img.path(), &binds).unwrap(), Some(vec![]));
    }

    #[test]
    fn a_missing_entry_in_an_existing_directory_is_patched() {
        let img = image();
        let binds = [
            bind("/home/user", true),
            bind("/home/other", true),
            bind("/etc/resolv.conf", false),
        ];
        let patches = plan(img.path(), &binds).unwrap().unwrap();
        assert_eq!(
            patches,
            vec![
                Patch {
                    dir: "home".into(),
                    missing: vec![("user".into(), true), ("other".into(), true)],
                },
                Patch {
                    dir: "etc".into(),
                    missing: vec![("resolv.conf".into(), false)],
                },
            ]
        );
    }

    #[test]
    fn what_a_patch_cannot_give_falls_back() {
        let img = image();
        for target in ["/new", "/opt/a/b", "/link/hosts", "/link"] {
            assert_eq!(
                plan(img.path(), &[bind(target, true)]).unwrap(),
                None,
                "{target}"
            );
        }
        // A patch under another bind's target.
        let binds = [bind("/home", true), bind("/home/user", true)];
        assert_eq!(plan(img.path(), &binds).unwrap(), None);
    }
}
