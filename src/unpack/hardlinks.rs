//! What an OverlayTree-format tree takes from the layers below it, once their trees exist: the
//! placeholders it leaves for hard links into lower layers are filled, and the parent
//! directories it made without an entry of their own get the lower directory's metadata; both
//! look the path up the way overlayfs would.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::access::{self, Granted};
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
    // Trees keep the image's modes: where one locks lade out (a `0000` directory on the way, a
    // `0000` target), access is granted for the one link and put back right after it.
    with_roots(tree, lowers, |tree_fd, lower_fds| {
        let mut grants = Vec::new();
        let mut copier = Copier::new();
        let mut filled = HashSet::new();
        for (link, target) in links {
            let linked = resolve_one(
                tree,
                tree_fd,
                lower_fds,
                (link, target),
                &mut grants,
                &mut copier,
                &mut filled,
            );
            let restored = access::restore_all(std::mem::take(&mut grants))
                .map_err(|e| Error::io(format!("{}: restoring modes", tree.display()), e.into()));
            linked.and(restored)?;
        }
        Ok(())
    })
}

/// Runs `work` with `tree` and `lowers` opened (each root opened to lade for the while if its
/// mode locks lade out), then puts the roots' modes back, whatever `work` did.
fn with_roots(
    tree: &Path,
    lowers: &[&Path],
    work: impl FnOnce(&OwnedFd, &[OwnedFd]) -> Result<()>,
) -> Result<()> {
    let mut root_grants = Vec::new();
    let mut open_root = |p: &Path| {
        let (fd, granted) = access::open_root(p, access::DIR_RX)
            .map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
        root_grants.extend(granted);
        Ok::<_, Error>(fd)
    };
    let opened = open_root(tree).and_then(|tree_fd| {
        let lower_fds = lowers
            .iter()
            .map(|p| open_root(p))
            .collect::<Result<Vec<_>>>()?;
        Ok((tree_fd, lower_fds))
    });
    let result = opened.and_then(|(tree_fd, lower_fds)| work(&tree_fd, &lower_fds));
    let restored = access::restore_all(root_grants)
        .map_err(|e| Error::io(format!("{}: restoring modes", tree.display()), e.into()));
    result.and(restored)
}

/// Fills the placeholder of one external hard link (see [`resolve_external_hardlinks`]).
fn resolve_one(
    tree: &Path,
    tree_fd: &OwnedFd,
    lower_fds: &[OwnedFd],
    (link, target): (&PathBuf, &PathBuf),
    grants: &mut Vec<Granted>,
    copier: &mut Copier,
    filled: &mut HashSet<(u64, u64)>,
) -> Result<()> {
    let what = format!("{}: hard link {}", tree.display(), link.display());
    let link = clean(link).ok_or_else(|| Error::invalid(&what, "bad link path"))?;
    let target = clean(target).ok_or_else(|| Error::invalid(&what, "bad target path"))?;
    let io_err =
        |action: &str, e: rustix::io::Errno| Error::io(format!("{what}: {action}"), e.into());
    let found = find_in_lowers(lower_fds, &target, grants)
        .map_err(|e| io_err(&format!("looking up {}", show(&target)), e))?
        .ok_or_else(|| {
            Error::invalid(
                &what,
                format!("target {} is in none of the lower layers", show(&target)),
            )
        })?;
    let (parent, name) = split(&link).ok_or_else(|| Error::invalid(&what, "empty link path"))?;
    let dir = access::open_path(tree_fd, parent, access::DIR_RWX, grants)
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
                return Ok(());
            }
            // Hard links to the placeholder share its inode: one fill serves them all.
            if !filled.insert(safe_fs::inode(&placeholder)) {
                return Ok(());
            }
            let src = access::open_file_read(&found.dir, found.name.as_os_str())
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
            rustix::fs::symlinkat(&to, &dir, name).map_err(|e| io_err("creating symlink", e))?;
            rustix::fs::utimensat(
                &dir,
                name,
                &stat_times(&found.stat),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err("setting the times", e))?;
        }
        // A FIFO has no content to copy: the link is one more name for it.
        FileType::Fifo if placeholder.st_nlink == 1 => {
            link_over(&found, &dir, name).map_err(|e| io_err("linking the FIFO", e))?;
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
    Ok(())
}

/// OverlayTree mode: gives each directory of `dirs` (a tree's
/// [`implicit_dirs`](super::LayerReport::implicit_dirs)) the mode, times and user xattrs of
/// the directory at that path in `lowers` (lower trees, top-most first), as applying the layer
/// on top of them would have left it. A path the lowers lack, or hold as something else, keeps
/// the `0755` it was made with.
pub fn adopt_lower_dirs(tree: &Path, dirs: &[PathBuf], lowers: &[&Path]) -> Result<()> {
    if dirs.is_empty() || lowers.is_empty() {
        return Ok(());
    }
    with_roots(tree, lowers, |tree_fd, lower_fds| {
        // Deepest first: a directory's new mode must not lock lade out of one below it.
        let mut order: Vec<&PathBuf> = dirs.iter().collect();
        order.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let mut copier = Copier::new();
        for dir in order {
            let mut grants = Vec::new();
            let adopted =
                adopt_one(tree_fd, lower_fds, dir, &mut grants, &mut copier).map_err(|e| {
                    Error::io(
                        format!(
                            "{}: directory {}: taking the metadata below",
                            tree.display(),
                            show(dir)
                        ),
                        e,
                    )
                });
            let restored = access::restore_all(grants)
                .map_err(|e| Error::io(format!("{}: restoring modes", tree.display()), e.into()));
            adopted.and(restored)?;
        }
        Ok(())
    })
}

fn adopt_one(
    tree: &OwnedFd,
    lowers: &[OwnedFd],
    dir: &Path,
    grants: &mut Vec<Granted>,
    copier: &mut Copier,
) -> std::io::Result<()> {
    let Some(found) = find_in_lowers(lowers, dir, grants)? else {
        return Ok(());
    };
    if file_type(&found.stat) != FileType::Directory {
        return Ok(());
    }
    let Some((src, granted)) = access::open_dir(&found.dir, found.name.as_os_str(), 0)? else {
        return Ok(());
    };
    grants.extend(granted);
    let dst = access::open_path(tree, dir, 0, grants)?;
    copier.copy_xattrs(&src, &dst)?;
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(safe_fs::perm(&found.stat)))?;
    rustix::fs::futimens(&dst, &stat_times(&found.stat))?;
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

/// Looking a name up in a directory needs search permission only.
const SEARCH: u32 = 0o100;

pub(crate) struct Found {
    pub dir: OwnedFd,
    pub name: OsString,
    pub stat: Stat,
}

/// Looks `target` up through layer trees (top-most first) as overlayfs would: the first layer
/// that has it wins; a whiteout, or a non-directory standing for one of its directories, hides
/// it; an opaque directory on the way hides the layers below. Symlinks are never followed.
/// Directories whose modes lock lade out are granted access, pushed to `grants`.
pub(crate) fn find_in_lowers(
    lowers: &[OwnedFd],
    target: &Path,
    grants: &mut Vec<Granted>,
) -> rustix::io::Result<Option<Found>> {
    let Some((parent, name)) = split(target) else {
        return Ok(None);
    };
    'layers: for lower in lowers {
        let mut dir = rustix::fs::openat(lower, c".", DIR | OFlags::CLOEXEC, Mode::empty())?;
        grants.extend(access::grant_fd(&dir, SEARCH)?);
        let mut opaque = false;
        for comp in parent.iter() {
            match lstat_at(&dir, comp)? {
                None if opaque => return Ok(None),
                None => continue 'layers,
                Some(st) if file_type(&st) == FileType::Directory => {
                    let Some((next, granted)) = access::open_dir(&dir, comp, SEARCH)? else {
                        continue 'layers;
                    };
                    grants.extend(granted);
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
        let found = find_in_lowers(&fds, Path::new(target), &mut Vec::new()).unwrap()?;
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
