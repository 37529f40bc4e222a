//! Filling the placeholders OverlayTree mode leaves for hard links into lower layers, by looking
//! the target up the way overlayfs would.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::copy::{Copier, stat_times};
use super::names::{self, show, split};
use super::safe_fs::{self, DIR, file_type, lstat_at};
use crate::error::{Error, Result};

/// OverlayTree mode: makes each (link, target) of `tree` a copy (or a reflink) of the target as
/// seen through `lowers` (lower trees, top-most first, honouring whiteouts and opaque
/// directories while looking it up). The copy takes the target's mode, times and user xattrs,
/// and is written into the placeholder's inode, so links made to the placeholder within the
/// layer see it too. Error if the target is not found, is a directory, or lies behind a symlink.
pub fn resolve_external_hardlinks(
    tree: &Path,
    links: &[(PathBuf, PathBuf)],
    lowers: &[&Path],
) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let tree_fd = safe_fs::open_root(tree)
        .map_err(|e| Error::io(format!("opening {}", tree.display()), e))?;
    let lower_fds = lowers
        .iter()
        .map(|p| {
            safe_fs::open_root(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut copier = Copier::new();
    let mut filled = HashSet::new();
    for (link, target) in links {
        let what = format!("{}: hard link {}", tree.display(), link.display());
        let link = clean(link).ok_or_else(|| Error::invalid(&what, "bad link path"))?;
        let target = clean(target).ok_or_else(|| Error::invalid(&what, "bad target path"))?;
        let io_err =
            |action: &str, e: rustix::io::Errno| Error::io(format!("{what}: {action}"), e.into());
        let found = find_in_lowers(&lower_fds, &target)
            .map_err(|e| io_err(&format!("looking up {}", show(&target)), e))?
            .ok_or_else(|| {
                Error::invalid(
                    &what,
                    format!("target {} is in none of the lower layers", show(&target)),
                )
            })?;
        let (parent, name) =
            split(&link).ok_or_else(|| Error::invalid(&what, "empty link path"))?;
        let dir = safe_fs::open_beneath(&tree_fd, parent, DIR)
            .map_err(|e| io_err("opening its directory", e))?;
        let placeholder = lstat_at(&dir, name)
            .map_err(|e| io_err("inspecting", e))?
            .filter(|st| file_type(st) == FileType::RegularFile)
            .ok_or_else(|| Error::invalid(&what, "the placeholder file is missing"))?;
        match file_type(&found.stat) {
            FileType::RegularFile => {
                // Best: the placeholder becomes a hard link to the lower tree's file (trees
                // live on one filesystem), so the link is still one when the image is
                // flattened, as in the image. Only when this layer made further links to the
                // placeholder (they share its inode) is its content filled in by copying.
                if placeholder.st_nlink == 1 && link_over(&found, &dir, name).is_ok() {
                    continue;
                }
                // Hard links to the placeholder share its inode: one fill serves them all.
                if !filled.insert(safe_fs::inode(&placeholder)) {
                    continue;
                }
                let src = rustix::fs::openat(
                    &found.dir,
                    &found.name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("opening the target", e))?;
                let dst = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("opening the placeholder", e))?;
                #[allow(clippy::unnecessary_cast)]
                let size = found.stat.st_size as u64;
                copier
                    .copy(&src, &dst, size)
                    .map_err(|e| Error::io(format!("{what}: copying {}", show(&target)), e))?;
                rustix::fs::fchmod(&dst, Mode::from_raw_mode(safe_fs::perm(&found.stat)))
                    .map_err(|e| io_err("setting the mode", e))?;
                copier
                    .copy_xattrs(&src, &dst)
                    .map_err(|e| Error::io(format!("{what}: copying xattrs"), e))?;
                rustix::fs::futimens(&dst, &stat_times(&found.stat))
                    .map_err(|e| io_err("setting the times", e))?;
            }
            // A hard link to a symlink is the symlink itself.
            FileType::Symlink => {
                let to = rustix::fs::readlinkat(&found.dir, &found.name, Vec::new())
                    .map_err(|e| io_err("reading the target symlink", e))?;
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                    .map_err(|e| io_err("removing the placeholder", e))?;
                rustix::fs::symlinkat(&to, &dir, name)
                    .map_err(|e| io_err("creating symlink", e))?;
                rustix::fs::utimensat(
                    &dir,
                    name,
                    &stat_times(&found.stat),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err("setting the times", e))?;
            }
            other => {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "target {} is a {}",
                        show(&target),
                        safe_fs::kind_name(other)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Replaces `dir/name` with a hard link to the found file: link under a temporary name, then
/// rename over, so the name is never missing.
fn link_over(found: &Found, dir: &OwnedFd, name: &std::ffi::OsStr) -> rustix::io::Result<()> {
    let mut tmp = OsString::from(".lade-link-");
    tmp.push(name);
    rustix::fs::linkat(&found.dir, &found.name, dir, &tmp, AtFlags::empty())?;
    rustix::fs::renameat(dir, &tmp, dir, name).inspect_err(|_| {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    })
}

fn clean(p: &Path) -> Option<PathBuf> {
    let c = names::clean(p.as_os_str().as_bytes()).ok()?;
    (!c.path.as_os_str().is_empty()).then_some(c.path)
}

pub(crate) struct Found {
    pub dir: OwnedFd,
    pub name: OsString,
    pub stat: Stat,
}

/// Looks `target` up through layer trees (top-most first) as overlayfs would: the first layer
/// that has it wins; a whiteout, or a non-directory standing for one of its directories, hides
/// it; an opaque directory on the way hides the layers below. Symlinks are never followed.
pub(crate) fn find_in_lowers(
    lowers: &[OwnedFd],
    target: &Path,
) -> rustix::io::Result<Option<Found>> {
    let Some((parent, name)) = split(target) else {
        return Ok(None);
    };
    'layers: for lower in lowers {
        let mut dir = rustix::fs::openat(lower, c".", DIR | OFlags::CLOEXEC, Mode::empty())?;
        let mut opaque = false;
        for comp in parent.iter() {
            match lstat_at(&dir, comp)? {
                None if opaque => return Ok(None),
                None => continue 'layers,
                Some(st) if file_type(&st) == FileType::Directory => {
                    let next = rustix::fs::openat(
                        &dir,
                        comp,
                        DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    opaque |= safe_fs::is_opaque(&next)?;
                    dir = next;
                }
                // A whiteout, file or symlink here hides the directory in the layers below.
                Some(_) => return Ok(None),
            }
        }
        match lstat_at(&dir, name)? {
            Some(st) if safe_fs::is_whiteout(&st) => return Ok(None),
            Some(stat) => {
                return Ok(Some(Found {
                    dir,
                    name: name.to_owned(),
                    stat,
                }));
            }
            None if opaque => return Ok(None),
            None => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn lookup(lowers: &[&Path], target: &str) -> Option<Vec<u8>> {
        let fds: Vec<OwnedFd> = lowers
            .iter()
            .map(|p| safe_fs::open_root(p).unwrap())
            .collect();
        let found = find_in_lowers(&fds, Path::new(target)).unwrap()?;
        let fd =
            rustix::fs::openat(&found.dir, &found.name, OFlags::RDONLY, Mode::empty()).unwrap();
        Some(
            fs::read(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .unwrap(),
        )
    }

    #[test]
    fn looks_up_like_overlayfs() {
        let t = tempfile::tempdir().unwrap();
        let (top, mid, bottom) = (
            t.path().join("top"),
            t.path().join("mid"),
            t.path().join("bottom"),
        );
        for d in [&top, &mid, &bottom] {
            fs::create_dir_all(d.join("a")).unwrap();
        }
        fs::write(bottom.join("a/f"), b"bottom").unwrap();
        fs::write(bottom.join("a/g"), b"bottom").unwrap();
        fs::write(bottom.join("a/h"), b"bottom").unwrap();
        fs::write(mid.join("a/g"), b"mid").unwrap();
        let dev = rustix::fs::open(mid.join("a"), DIR, Mode::empty()).unwrap();
        safe_fs::make_whiteout(&dev, std::ffi::OsStr::new("h")).unwrap();
        let layers = [top.as_path(), mid.as_path(), bottom.as_path()];
        assert_eq!(lookup(&layers, "a/f").unwrap(), b"bottom");
        assert_eq!(lookup(&layers, "a/g").unwrap(), b"mid");
        assert!(lookup(&layers, "a/h").is_none());
        assert!(lookup(&layers, "a/missing").is_none());

        let top_a = rustix::fs::open(top.join("a"), DIR, Mode::empty()).unwrap();
        if safe_fs::set_opaque(&top_a).is_ok() {
            assert!(lookup(&layers, "a/f").is_none());
        }
        fs::remove_dir(top.join("a")).unwrap();
        fs::write(top.join("a"), b"file").unwrap();
        assert!(lookup(&layers, "a/f").is_none());
    }
}
