//! All path resolution beneath a root. Paths handed in here are already cleaned (relative, no
//! `..`); they are resolved from a directory fd with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so neither a symlink (planted by this layer, an earlier one, or anyone
//! racing us) nor a rename can carry an access outside the root. Objects are created with
//! `O_EXCL|O_NOFOLLOW` (or the `*at` calls, which never follow the last component) and changed
//! through their own fd or with `AT_SYMLINK_NOFOLLOW`.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, XattrFlags, makedev, mknodat, openat,
    openat2, statat, unlinkat,
};
use rustix::io::Errno;

pub(crate) const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Flags for directories kept open to work in: readable, so `fsetxattr`/`fchmod` work on them.
pub(crate) const DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// Opens a directory the caller named (trusted: symlinks in it are the caller's business).
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        DIR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` beneath `root` without following any symlink, the last component included
/// (ELOOP for a symlink, ENOTDIR for a non-directory on the way).
pub(crate) fn open_beneath(
    root: impl AsFd,
    rel: &Path,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let root = root.as_fd();
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if rel.as_os_str().is_empty() {
        return openat(root, c".", flags, Mode::empty());
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN means a concurrent rename somewhere in the system raced the lookup.
        for _ in 0..16 {
            match openat2(root, rel, flags, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                other => return other,
            }
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            return Err(Errno::AGAIN);
        }
    }
    walk(root, rel, flags)
}

/// The pre-5.6 fallback: one component at a time, each opened with `O_NOFOLLOW`. Equally safe
/// for cleaned paths, which have no `..` to climb with.
fn walk(
    root: rustix::fd::BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut comps = rel.iter().peekable();
    let mut cur: Option<OwnedFd> = None;
    while let Some(comp) = comps.next() {
        let dir = cur.as_ref().map_or(root, |fd| fd.as_fd());
        if comps.peek().is_none() {
            return openat(dir, comp, flags, Mode::empty());
        }
        let next = openat(
            dir,
            comp,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        cur = Some(next);
    }
    openat(root, c".", flags, Mode::empty())
}

/// `lstat` of a name in a directory; None if absent.
pub(crate) fn lstat_at(
    dir: impl AsFd,
    name: impl rustix::path::Arg,
) -> rustix::io::Result<Option<Stat>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    #[allow(clippy::unnecessary_cast)]
    FileType::from_raw_mode(st.st_mode as _)
}

#[allow(clippy::unnecessary_cast)]
pub(crate) fn inode(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

#[allow(clippy::unnecessary_cast)]
pub(crate) fn perm(st: &Stat) -> u32 {
    (st.st_mode as u32) & 0o7777
}

/// An overlayfs whiteout: a character device 0/0.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    file_type(st) == FileType::CharacterDevice && st.st_rdev as u64 == 0
}

/// A word for messages.
pub(crate) fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "object",
    }
}

/// Creates an overlayfs whiteout, which unprivileged users may do since Linux 5.8.
pub(crate) fn make_whiteout(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<()> {
    mknodat(
        dir,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
}

pub(crate) fn set_opaque(dir: impl AsFd) -> rustix::io::Result<()> {
    rustix::fs::fsetxattr(dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
}

pub(crate) fn is_opaque(dir: impl AsFd) -> rustix::io::Result<bool> {
    let mut value = [0u8; 8];
    match rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut value[..]) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a filesystem error means "this filesystem cannot do that", as opposed to a problem
/// with the particular object.
pub(crate) fn is_unsupported(e: Errno) -> bool {
    matches!(e, Errno::PERM | Errno::NOTSUP | Errno::INVAL | Errno::NOSYS)
}

/// chmod of `name` in `dir` without following a symlink: through an `O_PATH` descriptor's
/// magic link (Linux's `fchmodat` cannot refuse symlinks before 6.6).
pub(crate) fn chmod_at(
    dir: impl AsFd,
    name: impl rustix::path::Arg,
    mode: u32,
) -> rustix::io::Result<()> {
    let pinned = openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if file_type(&rustix::fs::fstat(&pinned)?) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    let magic = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&pinned));
    rustix::fs::chmod(magic.as_str(), Mode::from_raw_mode(mode))
}

/// The entries of a directory, without `.` and `..`.
pub(crate) fn list_dir(dir: impl AsFd) -> rustix::io::Result<Vec<(CString, FileType)>> {
    let mut out = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        out.push((name.to_owned(), entry.file_type()));
    }
    Ok(out)
}

/// The type of a directory entry, asking the filesystem when `d_type` did not say.
pub(crate) fn entry_type(
    dir: impl AsFd,
    name: &CStr,
    ft: FileType,
) -> rustix::io::Result<Option<FileType>> {
    if ft != FileType::Unknown {
        return Ok(Some(ft));
    }
    Ok(lstat_at(dir, name)?.map(|st| file_type(&st)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    Nothing,
    NonDir,
    Dir,
}

/// Removes `name` in `dir` whatever it is, a whole directory tree included, never following a
/// symlink. Iterative with one fd per level, so a hostile deep tree cannot overflow the stack.
pub(crate) fn remove_all_at(
    dir: impl AsFd,
    name: impl rustix::path::Arg + Copy,
) -> rustix::io::Result<Removed> {
    let dir = dir.as_fd();
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(Removed::NonDir),
        Err(Errno::NOENT) => return Ok(Removed::Nothing),
        // Linux says EISDIR for a directory; POSIX allows EPERM.
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let top = match open_subdir(dir, name)? {
        Some(fd) => fd,
        None => return remove_all_at(dir, name),
    };
    struct Level {
        fd: OwnedFd,
        names: Vec<(CString, FileType)>,
        name_in_parent: Option<CString>,
    }
    let names = list_dir(&top)?;
    let mut stack = vec![Level {
        fd: top,
        names,
        name_in_parent: None,
    }];
    while let Some(level) = stack.last_mut() {
        match level.names.pop() {
            Some((child, ft)) => {
                if ft != FileType::Directory {
                    match unlinkat(&level.fd, &child, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => continue,
                        Err(Errno::ISDIR | Errno::PERM) => {}
                        Err(e) => return Err(e),
                    }
                }
                match open_subdir(&level.fd, &child)? {
                    Some(fd) => {
                        let names = list_dir(&fd)?;
                        stack.push(Level {
                            fd,
                            names,
                            name_in_parent: Some(child),
                        });
                    }
                    // Not a directory after all.
                    None => match unlinkat(&level.fd, &child, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(e),
                    },
                }
            }
            None => {
                let done = stack.pop();
                let name_in_parent = done.and_then(|l| l.name_in_parent);
                match (stack.last(), name_in_parent) {
                    (Some(parent), Some(child)) => {
                        unlinkat(&parent.fd, &child, AtFlags::REMOVEDIR)?;
                    }
                    _ => unlinkat(dir, name, AtFlags::REMOVEDIR)?,
                }
            }
        }
    }
    Ok(Removed::Dir)
}

/// Opens a subdirectory to empty it; None if `name` is not a directory (or is gone). A directory
/// lade may not change (an image's `0555` or `0000`) gets `u+rwx` first: it is the user's to
/// delete, and it is going.
fn open_subdir(
    dir: impl AsFd,
    name: impl rustix::path::Arg + Copy,
) -> rustix::io::Result<Option<OwnedFd>> {
    Ok(
        super::access::open_dir(dir, name, super::access::DIR_RWX)?.map(|(fd, granted)| {
            if let Some(g) = granted {
                g.keep();
            }
            fd
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn open_beneath_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        symlink("a", t.path().join("rel")).unwrap();
        let root = open_root(t.path()).unwrap();
        assert!(open_beneath(&root, Path::new("a/b"), DIR).is_ok());
        assert!(open_beneath(&root, Path::new(""), DIR).is_ok());
        for bad in ["link", "rel/b", "link/x"] {
            let e = open_beneath(&root, Path::new(bad), DIR).unwrap_err();
            assert!(matches!(e, Errno::LOOP | Errno::NOTDIR), "{bad}: {e:?}");
            let e = walk(root.as_fd(), Path::new(bad), DIR | OFlags::NOFOLLOW).unwrap_err();
            assert!(
                matches!(e, Errno::LOOP | Errno::NOTDIR),
                "walk {bad}: {e:?}"
            );
        }
        assert!(walk(root.as_fd(), Path::new("a/b"), DIR | OFlags::NOFOLLOW).is_ok());
    }

    #[test]
    fn removes_trees_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("e/f/g")).unwrap();
        std::fs::write(d.join("e/file"), b"x").unwrap();
        symlink(outside.path(), d.join("e/out")).unwrap();
        std::fs::create_dir(d.join("locked")).unwrap();
        std::fs::write(d.join("locked/x"), b"x").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let root = open_root(t.path()).unwrap();
        assert_eq!(remove_all_at(&root, "d").unwrap(), Removed::Dir);
        assert!(!d.exists());
        assert!(outside.path().join("keep").exists());
        assert_eq!(remove_all_at(&root, "d").unwrap(), Removed::Nothing);
        std::fs::write(t.path().join("f"), b"x").unwrap();
        assert_eq!(remove_all_at(&root, "f").unwrap(), Removed::NonDir);
    }

    #[test]
    fn removes_deep_trees() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        rustix::fs::mkdirat(&root, "top", Mode::from_raw_mode(0o700)).unwrap();
        let mut cur = open_beneath(&root, Path::new("top"), DIR).unwrap();
        for _ in 0..600 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o700)).unwrap();
            cur = openat(&cur, "d", DIR, Mode::empty()).unwrap();
        }
        drop(cur);
        assert_eq!(remove_all_at(&root, "top").unwrap(), Removed::Dir);
    }
}
