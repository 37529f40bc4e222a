//! Merging per-layer OverlayTree-format trees into one flattened tree.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::access::{self, DIR_RX, Granted};
use super::copy::{Copier, stat_times};
use super::meta;
use super::names::{show, split};
use super::safe_fs::{self, DIR, file_type, lstat_at};
use crate::error::{Error, Result};

/// Merges per-layer OverlayTree-format trees (bottom-most first) into `dest` (an existing,
/// usually empty directory), giving what applying the layers with Flatten gives: whiteout
/// character devices delete, opaque directories empty the lower directory, type changes replace.
/// Regular files are reflinked where the filesystem can, else copied in the kernel; copies
/// stream. Hard links within one tree stay hard links. The trees' own root directories lend no
/// metadata to `dest`: a tree root's mode is the store's choice unless the layer had a `./`
/// entry, which the tree cannot tell apart.
///
/// Modes are copied exactly. Where a tree's own modes lock its owner out (a `0000` directory or
/// file), lade grants itself access while it reads and puts the mode back (`access.rs`); the
/// directories of `dest` stay `u+rwx` until every layer is merged and get their modes last.
pub fn flatten_trees(layers: &[&Path], dest: &Path) -> Result<()> {
    let dest_fd = safe_fs::open_root(dest)
        .map_err(|e| Error::io(format!("opening {}", dest.display()), e))?;
    let mut copier = Copier::new();
    // One map for all layers: a hard link from one layer to a file of a lower one is a shared
    // inode between their trees (see `resolve_external_hardlinks`), and stays a hard link.
    let mut linked = Linked::new();
    let mut dirs = DirModes::new();
    for layer in layers {
        merge(layer, &dest_fd, &mut copier, &mut linked, &mut dirs)?;
    }
    finish_dirs(&dest_fd, dirs).map_err(|(rel, e)| {
        Error::io(
            format!("flattening into {}: {}", dest.display(), show(&rel)),
            e,
        )
    })
}

/// The destination's directories and the stat of the top-most layer's directory of that path,
/// whose mode and times they get once everything is merged.
type DirModes = HashMap<PathBuf, Stat>;

/// Gives `dest`'s directories their modes and times, deepest first, so that no directory's
/// mode locks lade out of one it has yet to finish. A path that is no longer a directory (a
/// later layer replaced it) is skipped.
fn finish_dirs(
    dest: &OwnedFd,
    dirs: DirModes,
) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let mut order: Vec<(PathBuf, Stat)> = dirs.into_iter().collect();
    order.sort_by(|(a, _), (b, _)| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then_with(|| a.cmp(b))
    });
    for (rel, st) in order {
        let fd = match safe_fs::open_beneath(dest, &rel, DIR) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
            Err(e) => return Err((rel, e.into())),
        };
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(safe_fs::perm(&st)))
            .and_then(|()| rustix::fs::futimens(&fd, &stat_times(&st)))
            .map_err(|e| (rel.clone(), e.into()))?;
    }
    Ok(())
}

/// Source inode → the destination path of its first copy and that copy's inode. The inode is
/// checked before linking, because a later layer may have replaced the path since.
type Linked = HashMap<(u64, u64), (PathBuf, (u64, u64))>;

struct Frame {
    src: OwnedFd,
    dst: OwnedFd,
    rel: PathBuf,
    names: Vec<(CString, FileType)>,
    /// The source directory's stat, for the destination once everything is merged.
    meta: Option<Stat>,
    /// Access lade gave itself to the source directory, put back when it is done.
    granted: Option<Granted>,
}

fn merge(
    layer: &Path,
    dest: &OwnedFd,
    copier: &mut Copier,
    linked: &mut Linked,
    dirs: &mut DirModes,
) -> Result<()> {
    let err = |rel: &Path, action: &str, e: std::io::Error| {
        Error::io(
            format!("flattening {}: {}: {action}", layer.display(), show(rel)),
            e,
        )
    };
    let (src_root, root_granted) = access::open_root(layer, DIR_RX)
        .map_err(|e| Error::io(format!("opening {}", layer.display()), e))?;
    let dst_root = rustix::fs::openat(dest, c".", DIR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| err(Path::new(""), "opening", e.into()))?;
    let names =
        safe_fs::list_dir(&src_root).map_err(|e| err(Path::new(""), "listing", e.into()))?;
    let mut stack = vec![Frame {
        src: src_root,
        dst: dst_root,
        rel: PathBuf::new(),
        names,
        meta: None,
        granted: root_granted,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some((name, ft)) = frame.names.pop() else {
            if let Some(done) = stack.pop() {
                if done.meta.is_some() {
                    copier
                        .copy_xattrs(&done.src, &done.dst)
                        .map_err(|e| err(&done.rel, "copying xattrs", e))?;
                }
                if let Some(g) = done.granted {
                    g.restore()
                        .map_err(|e| err(&done.rel, "restoring the mode", e.into()))?;
                }
                if let Some(st) = done.meta {
                    dirs.insert(done.rel, st);
                }
            }
            continue;
        };
        let name_os = OsStr::from_bytes(name.as_bytes());
        let rel = frame.rel.join(name_os);
        let ft = safe_fs::entry_type(&frame.src, &name, ft)
            .map_err(|e| err(&rel, "inspecting", e.into()))?;
        let next = match ft {
            Some(FileType::Directory) => {
                Some(enter_dir(frame, &name, &rel).map_err(|e| err(&rel, "merging directory", e))?)
            }
            Some(FileType::RegularFile) => {
                copy_file(frame, &name, &rel, dest, linked, copier)
                    .map_err(|e| err(&rel, "copying", e))?;
                None
            }
            Some(FileType::Symlink) => {
                copy_symlink(frame, &name).map_err(|e| err(&rel, "copying symlink", e))?;
                None
            }
            Some(FileType::Fifo) => {
                copy_fifo(frame, &name).map_err(|e| err(&rel, "copying FIFO", e))?;
                None
            }
            Some(FileType::CharacterDevice) => {
                let st =
                    lstat_at(&frame.src, &name).map_err(|e| err(&rel, "inspecting", e.into()))?;
                if st.as_ref().is_some_and(safe_fs::is_whiteout) {
                    safe_fs::remove_all_at(&frame.dst, name.as_c_str())
                        .map_err(|e| err(&rel, "removing the whited-out path", e.into()))?;
                }
                None
            }
            // Trees made by apply_layer hold nothing else.
            _ => None,
        };
        if let Some(next) = next {
            stack.push(next);
        }
    }
    Ok(())
}

fn enter_dir(parent: &Frame, name: &CString, rel: &Path) -> std::io::Result<Frame> {
    let (src, granted) = access::open_dir(&parent.src, name.as_c_str(), DIR_RX)?
        .ok_or(std::io::ErrorKind::NotFound)?;
    let mut st = rustix::fs::fstat(&src)?;
    if let Some(g) = &granted {
        // The image's mode, not lade's grant.
        st.st_mode = (st.st_mode & !0o7777) | g.original() as libc::mode_t;
    }
    let opaque = safe_fs::is_opaque(&src)?;
    let open = || {
        rustix::fs::openat(
            &parent.dst,
            name,
            DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let dst = match rustix::fs::mkdirat(&parent.dst, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => open()?,
        Err(Errno::EXIST) => {
            let is_dir = lstat_at(&parent.dst, name)?
                .is_some_and(|st| file_type(&st) == FileType::Directory);
            if is_dir {
                let dst = open()?;
                if opaque {
                    for (child, _) in safe_fs::list_dir(&dst)? {
                        safe_fs::remove_all_at(&dst, child.as_c_str())?;
                    }
                }
                dst
            } else {
                safe_fs::remove_all_at(&parent.dst, name.as_c_str())?;
                rustix::fs::mkdirat(&parent.dst, name, Mode::from_raw_mode(0o700))?;
                open()?
            }
        }
        Err(e) => return Err(e.into()),
    };
    let names = safe_fs::list_dir(&src)?;
    Ok(Frame {
        src,
        dst,
        rel: rel.to_path_buf(),
        names,
        meta: Some(st),
        granted,
    })
}

/// Creates `name` in `dir` with `create`, first removing whatever is there.
fn replace<T>(
    dir: &OwnedFd,
    name: &CString,
    create: impl Fn() -> rustix::io::Result<T>,
) -> std::io::Result<T> {
    match create() {
        Err(Errno::EXIST) => {
            safe_fs::remove_all_at(dir, name.as_c_str())?;
            Ok(create()?)
        }
        other => Ok(other?),
    }
}

fn copy_file(
    frame: &Frame,
    name: &CString,
    rel: &Path,
    dest: &OwnedFd,
    linked: &mut Linked,
    copier: &mut Copier,
) -> std::io::Result<()> {
    let src = access::open_file_read(&frame.src, name.as_c_str())?;
    let st = rustix::fs::fstat(&src)?;
    let inode = safe_fs::inode(&st);
    // Created with its mode: a new file's descriptor is writable whatever the mode says.
    let perm = safe_fs::perm(&st);
    let shared = st.st_nlink > 1;
    if shared
        && let Some((first, copy_inode)) = linked.get(&inode)
        && link_to(dest, first, *copy_inode, frame, name).is_ok()
    {
        return Ok(());
    }
    let dst = replace(&frame.dst, name, || {
        rustix::fs::openat(
            &frame.dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(perm & 0o777),
        )
    })?;
    #[allow(clippy::unnecessary_cast)]
    copier.copy(&src, &dst, st.st_size as u64)?;
    if !meta::create_mode_is_exact(perm) {
        rustix::fs::fchmod(&dst, Mode::from_raw_mode(perm))?;
    }
    copier.copy_xattrs(&src, &dst)?;
    rustix::fs::futimens(&dst, &stat_times(&st))?;
    if shared {
        let copy_inode = safe_fs::inode(&rustix::fs::fstat(&dst)?);
        linked.insert(inode, (rel.to_path_buf(), copy_inode));
    }
    Ok(())
}

/// Hard-links `frame.dst/name` to the earlier copy at `first` (relative to `dest`), if that
/// path still holds the copy (`copy_inode`).
fn link_to(
    dest: &OwnedFd,
    first: &Path,
    copy_inode: (u64, u64),
    frame: &Frame,
    name: &CString,
) -> std::io::Result<()> {
    let (parent, first_name) = split(first).ok_or(std::io::ErrorKind::NotFound)?;
    let dir = safe_fs::open_beneath(dest, parent, OFlags::PATH | OFlags::DIRECTORY)?;
    let still_there =
        lstat_at(&dir, first_name)?.is_some_and(|st| safe_fs::inode(&st) == copy_inode);
    if !still_there {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    replace(&frame.dst, name, || {
        rustix::fs::linkat(&dir, first_name, &frame.dst, name, AtFlags::empty())
    })
}

fn copy_fifo(frame: &Frame, name: &CString) -> std::io::Result<()> {
    let st = lstat_at(&frame.src, name)?.ok_or(std::io::ErrorKind::NotFound)?;
    let perm = safe_fs::perm(&st);
    replace(&frame.dst, name, || {
        rustix::fs::mknodat(
            &frame.dst,
            name,
            FileType::Fifo,
            Mode::from_raw_mode(perm),
            0,
        )
    })?;
    if !meta::create_mode_is_exact(perm) {
        safe_fs::chmod_at(&frame.dst, name, perm)?;
    }
    rustix::fs::utimensat(
        &frame.dst,
        name,
        &stat_times(&st),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

fn copy_symlink(frame: &Frame, name: &CString) -> std::io::Result<()> {
    let st = lstat_at(&frame.src, name)?.ok_or(std::io::ErrorKind::NotFound)?;
    let target = rustix::fs::readlinkat(&frame.src, name, Vec::new())?;
    replace(&frame.dst, name, || {
        rustix::fs::symlinkat(&target, &frame.dst, name)
    })?;
    rustix::fs::utimensat(
        &frame.dst,
        name,
        &stat_times(&st),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn merges_with_whiteouts_opaques_and_type_changes() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, dest) = (
            t.path().join("l1"),
            t.path().join("l2"),
            t.path().join("dest"),
        );
        for d in [&l1, &l2, &dest] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(l1.join("keep")).unwrap();
        fs::write(l1.join("keep/a"), b"1").unwrap();
        fs::create_dir_all(l1.join("opq/sub")).unwrap();
        fs::write(l1.join("opq/sub/old"), b"1").unwrap();
        fs::write(l1.join("gone"), b"1").unwrap();
        fs::create_dir(l1.join("became_file")).unwrap();
        fs::write(l1.join("became_file/x"), b"1").unwrap();
        fs::write(l1.join("linked"), b"shared").unwrap();
        fs::hard_link(l1.join("linked"), l1.join("linked2")).unwrap();

        fs::create_dir(l2.join("keep")).unwrap();
        fs::set_permissions(l2.join("keep"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(l2.join("keep/b"), b"2").unwrap();
        fs::create_dir(l2.join("opq")).unwrap();
        fs::write(l2.join("opq/new"), b"2").unwrap();
        let opq = rustix::fs::open(l2.join("opq"), DIR, Mode::empty()).unwrap();
        let opaque_ok = safe_fs::set_opaque(&opq).is_ok();
        let root2 = rustix::fs::open(&l2, DIR, Mode::empty()).unwrap();
        safe_fs::make_whiteout(&root2, OsStr::new("gone")).unwrap();
        fs::write(l2.join("became_file"), b"2").unwrap();
        symlink("/etc/passwd", l2.join("abs")).unwrap();

        flatten_trees(&[&l1, &l2], &dest).unwrap();
        assert_eq!(fs::read(dest.join("keep/a")).unwrap(), b"1");
        assert_eq!(fs::read(dest.join("keep/b")).unwrap(), b"2");
        assert_eq!(
            fs::metadata(dest.join("keep"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o750
        );
        assert!(!dest.join("gone").exists());
        assert_eq!(fs::read(dest.join("became_file")).unwrap(), b"2");
        assert_eq!(
            fs::read_link(dest.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::read(dest.join("opq/new")).unwrap(), b"2");
        if opaque_ok {
            assert!(!dest.join("opq/sub").exists());
        }
        let (a, b) = (
            fs::metadata(dest.join("linked")).unwrap(),
            fs::metadata(dest.join("linked2")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        // No xattr of lade's own leaks into the flattened tree.
        let o = rustix::fs::open(dest.join("opq"), DIR, Mode::empty()).unwrap();
        assert!(!safe_fs::is_opaque(&o).unwrap());
    }
}
