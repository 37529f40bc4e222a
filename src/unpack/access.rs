//! The access lade gives itself, briefly, to trees whose modes lock their owner out.
//!
//! Layer trees keep the image's modes exactly: a `0000` or `0555` directory, a `0000` or `0400`
//! file. Their owner (the unprivileged user) may always change such a mode, so where lade must
//! work inside one it does what umoci's `unpriv` package does: chmod the blocking object, act,
//! and put the mode back. Inside a container none of this is needed: the user namespace's root
//! has DAC override on the user's own inodes.
//!
//! Every grant adds the same bits (`u+rwx` to a directory, `u+r` to a file), so that two lade
//! processes working on one shared tree at once cannot leave a granted mode behind: a process
//! that finds another's grant finds what it needs and changes nothing, and one that is locked
//! out again by the other's restore grants again ([`open_file_read`] retries).
//!
//! The chmod goes through an `O_PATH` descriptor of the object (via its `/proc/self/fd` magic
//! link), so it cannot be redirected by a symlink swapped in meanwhile; without `/proc` it falls
//! back to `fchmodat` by name, after checking the type.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat};
use rustix::io::Errno;

use super::safe_fs::{self, DIR, file_type, perm};

/// The bits a directory must have for lade to list it, look names up in it and change it.
pub(crate) const DIR_RWX: u32 = 0o700;
/// The bits a directory must have for lade to list it and look names up in it.
pub(crate) const DIR_RX: u32 = 0o500;

/// A mode lade changed, to be put back with [`Granted::restore`] (or dropped without restoring,
/// with [`Granted::keep`], when the object is removed or gets a new mode anyway).
#[must_use = "a granted mode must be restored or explicitly kept"]
pub(crate) struct Granted {
    pinned: OwnedFd,
    mode: u32,
}

impl Granted {
    /// The mode the object had before the grant.
    pub(crate) fn original(&self) -> u32 {
        self.mode
    }

    /// Puts the original mode back.
    pub(crate) fn restore(self) -> rustix::io::Result<()> {
        chmod_fd(self.pinned.as_fd(), self.mode)
    }

    /// Leaves the granted mode in place.
    pub(crate) fn keep(self) {}
}

/// chmod of the object behind `fd`, which may be an `O_PATH` descriptor (`fchmod` refuses
/// those, the magic link does not).
fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> rustix::io::Result<()> {
    let mode = Mode::from_raw_mode(mode);
    match rustix::fs::fchmod(fd, mode) {
        Err(Errno::BADF) => {
            let magic = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rustix::fs::chmod(magic.as_str(), mode)
        }
        other => other,
    }
}

/// Adds `add` to the mode of `name` in `dir` if it is of type `want`, through an `O_PATH`
/// descriptor. None if it is absent or of another type.
fn grant_at(
    dir: BorrowedFd<'_>,
    name: impl rustix::path::Arg + Copy,
    want: FileType,
    add: u32,
) -> rustix::io::Result<Option<Granted>> {
    let pinned = match openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = rustix::fs::fstat(&pinned)?;
    if file_type(&st) != want {
        return Ok(None);
    }
    let mode = perm(&st);
    let magic = format!("/proc/self/fd/{}", pinned.as_raw_fd());
    let granted = Mode::from_raw_mode(mode | add);
    rustix::fs::chmod(magic.as_str(), granted)
        .or_else(|_| rustix::fs::chmodat(dir, name, granted, AtFlags::SYMLINK_NOFOLLOW))
        .or_else(|_| rustix::fs::chmodat(dir, name, granted, AtFlags::empty()))?;
    Ok(Some(Granted { pinned, mode }))
}

/// Opens directory `name` in `dir` (never following a symlink) with at least the bits `need`
/// of the owner, granting `u+rwx` if they are missing. `Ok(None)` if `name` is absent or not
/// a directory. The grant, if one was made, comes back with the descriptor.
pub(crate) fn open_dir(
    dir: impl AsFd,
    name: impl rustix::path::Arg + Copy,
    need: u32,
) -> rustix::io::Result<Option<(OwnedFd, Option<Granted>)>> {
    let dir = dir.as_fd();
    let flags = DIR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..4 {
        let fd = match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => return Ok(None),
            Err(Errno::ACCESS) => {
                let Some(granted) = grant_at(dir, name, FileType::Directory, DIR_RWX)? else {
                    return Ok(None);
                };
                match openat(dir, name, flags, Mode::empty()) {
                    Ok(fd) => return Ok(Some((fd, Some(granted)))),
                    Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => {
                        granted.keep();
                        return Ok(None);
                    }
                    // Another process put its original mode back in between: again.
                    Err(Errno::ACCESS) => {
                        granted.keep();
                        continue;
                    }
                    Err(e) => {
                        let _ = granted.restore();
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let granted = grant_fd(&fd, need)?;
        return Ok(Some((fd, granted)));
    }
    Err(Errno::ACCESS)
}

/// Opens a directory the caller named (its path is trusted, as [`safe_fs::open_root`]'s), with
/// the owner bits `need`, granting `u+rwx` if they are missing.
pub(crate) fn open_root(path: &Path, need: u32) -> std::io::Result<(OwnedFd, Option<Granted>)> {
    match safe_fs::open_root(path) {
        Ok(fd) => {
            let granted = grant_fd(&fd, need)?;
            Ok((fd, granted))
        }
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            let (parent, name) = match (path.parent(), path.file_name()) {
                (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p, n),
                (_, Some(n)) => (Path::new("."), n),
                _ => return Err(e),
            };
            let parent = safe_fs::open_root(parent)?;
            open_dir(&parent, name, need)?.ok_or(e)
        }
        Err(e) => Err(e),
    }
}

/// Opens directory `rel` beneath `root` (never following a symlink) with the owner bits `need`,
/// granting access along the way where modes lock lade out; the grants go to `grants`, to be
/// restored in reverse order.
pub(crate) fn open_path(
    root: impl AsFd,
    rel: &Path,
    need: u32,
    grants: &mut Vec<Granted>,
) -> rustix::io::Result<OwnedFd> {
    let root = root.as_fd();
    match safe_fs::open_beneath(root, rel, DIR) {
        Ok(fd) => {
            grants.extend(grant_fd(&fd, need)?);
            return Ok(fd);
        }
        Err(Errno::ACCESS) => {}
        Err(e) => return Err(e),
    }
    let mut cur = openat(root, c".", DIR | OFlags::CLOEXEC, Mode::empty())?;
    let count = rel.iter().count();
    for (i, comp) in rel.iter().enumerate() {
        // Passing through needs search permission only.
        let want = if i + 1 == count { need } else { 0o100 };
        match open_dir(&cur, comp, want)? {
            Some((fd, granted)) => {
                grants.extend(granted);
                cur = fd;
            }
            None => {
                return Err(match safe_fs::lstat_at(&cur, comp)? {
                    None => Errno::NOENT,
                    Some(_) => Errno::NOTDIR,
                });
            }
        }
    }
    Ok(cur)
}

/// For walkers that go by path (the packer, the builder's copies), on trees whose paths are
/// theirs: grants `u+rwx` to directory `path` if its mode lacks any of `need`. None if nothing
/// was changed (or `path` is not a directory).
pub(crate) fn grant_dir_path(path: &Path, need: u32) -> std::io::Result<Option<Granted>> {
    let (parent, name) = parent_and_name(path)?;
    let mode = match safe_fs::lstat_at(&parent, name)? {
        Some(st) if file_type(&st) == FileType::Directory => perm(&st),
        _ => return Ok(None),
    };
    if mode & need == need {
        return Ok(None);
    }
    Ok(grant_at(
        parent.as_fd(),
        name,
        FileType::Directory,
        DIR_RWX,
    )?)
}

/// For walkers that go by path: opens file `path` for reading, never following a symlink in
/// its last component, with `u+r` granted just for the open if its mode denies it.
pub(crate) fn open_file_path(path: &Path) -> std::io::Result<std::fs::File> {
    let (parent, name) = parent_and_name(path)?;
    Ok(std::fs::File::from(open_file_read(&parent, name)?))
}

/// `path`'s directory, opened `O_PATH` (which needs search permission on the way only), and
/// its last component.
fn parent_and_name(path: &Path) -> std::io::Result<(OwnedFd, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((fd, name))
}

/// Puts back the modes of `grants`, the latest first.
pub(crate) fn restore_all(grants: Vec<Granted>) -> rustix::io::Result<()> {
    let mut first_err = None;
    for g in grants.into_iter().rev() {
        if let Err(e) = g.restore() {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Grants `u+rwx` to the open directory `fd` if its mode lacks any of `need`.
pub(crate) fn grant_fd(fd: &OwnedFd, need: u32) -> rustix::io::Result<Option<Granted>> {
    if need == 0 {
        return Ok(None);
    }
    let mode = perm(&rustix::fs::fstat(fd)?);
    if mode & need == need {
        return Ok(None);
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode | DIR_RWX))?;
    let pinned = rustix::io::dup(fd)?;
    Ok(Some(Granted { pinned, mode }))
}

/// Opens file `name` in `dir` for reading, never following a symlink; a file whose mode denies
/// its owner reading (`0000`, `0200`) gets `u+r` just for the open.
pub(crate) fn open_file_read(
    dir: impl AsFd,
    name: impl rustix::path::Arg + Copy,
) -> rustix::io::Result<OwnedFd> {
    let dir = dir.as_fd();
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..4 {
        match openat(dir, name, flags, Mode::empty()) {
            Err(Errno::ACCESS) => {}
            other => return other,
        }
        let Some(granted) = grant_at(dir, name, FileType::RegularFile, 0o400)? else {
            return Err(Errno::ACCESS);
        };
        let opened = openat(dir, name, flags, Mode::empty());
        granted.restore()?;
        match opened {
            Err(Errno::ACCESS) => continue,
            other => return other,
        }
    }
    Err(Errno::ACCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &std::path::Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn grants_and_restores() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("f"), b"secret").unwrap();
        fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o000)).unwrap();
        let root = super::super::safe_fs::open_root(t.path()).unwrap();
        let (fd, granted) = open_dir(&root, "d", DIR_RX).unwrap().unwrap();
        let granted = granted.expect("a 0000 directory needs a grant");
        assert_eq!(granted.original(), 0o000);
        assert_eq!(mode_of(&d), 0o700);
        let f = open_file_read(&fd, "f").unwrap();
        assert_eq!(mode_of(&d.join("f")), 0o000);
        let mut buf = [0u8; 6];
        assert_eq!(rustix::io::read(&f, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"secret");
        granted.restore().unwrap();
        assert_eq!(mode_of(&d), 0o000);
        // A directory that only lacks write access is enough for reading.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o555)).unwrap();
        let (_, granted) = open_dir(&root, "d", DIR_RX).unwrap().unwrap();
        assert!(granted.is_none());
        let (_, granted) = open_dir(&root, "d", DIR_RWX).unwrap().unwrap();
        let granted = granted.unwrap();
        assert_eq!(mode_of(&d), 0o755);
        granted.restore().unwrap();
        assert_eq!(mode_of(&d), 0o555);
        assert!(open_dir(&root, "missing", DIR_RX).unwrap().is_none());
    }
}
