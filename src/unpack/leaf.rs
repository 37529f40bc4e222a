//! Making the non-directory entries of a layer (files, symlinks, FIFOs) in a directory that
//! exists, replacing whatever stands at the name: the one code for both the applying thread
//! and the workers that share a layer's files out (`workers.rs`). What it removed and what it
//! warns about is collected, for the applying thread to take into its view of the tree.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::meta::{self, Meta};
use super::names::show;
use super::safe_fs::{self, Removed};
use crate::error::{Error, Result};

pub(crate) struct LeafWriter {
    /// Names the layer in messages.
    what: std::sync::Arc<str>,
    /// What was removed to make room (the tree's bookkeeping must forget it).
    pub replaced: Vec<(PathBuf, Removed)>,
    pub warnings: Vec<String>,
    xattrs_unsupported: bool,
}

impl LeafWriter {
    pub(crate) fn new(what: std::sync::Arc<str>) -> LeafWriter {
        LeafWriter {
            what,
            replaced: Vec::new(),
            warnings: Vec::new(),
            xattrs_unsupported: false,
        }
    }

    pub(crate) fn fs_error(
        &self,
        path: &Path,
        action: &str,
        e: impl Into<std::io::Error>,
    ) -> Error {
        Error::io(format!("{}: {}: {action}", self.what, show(path)), e.into())
    }

    /// Runs `make`; if the name is taken, removes what is there and runs it again.
    fn replacing<T>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        action: &str,
        make: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<T> {
        match make() {
            Err(Errno::EXIST) => {
                let removed = safe_fs::remove_all_at(dir, name)
                    .map_err(|e| self.fs_error(path, "removing the old entry", e))?;
                if removed != Removed::Nothing {
                    self.replaced.push((path.to_path_buf(), removed));
                }
                make().map_err(|e| self.fs_error(path, action, e))
            }
            other => other.map_err(|e| self.fs_error(path, action, e)),
        }
    }

    /// A new, empty file with permission bits `mode` (a new file's descriptor is writable
    /// whatever they say).
    pub(crate) fn create_file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        mode: u32,
    ) -> Result<File> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode & 0o777);
        let fd = self.replacing(dir, name, path, "creating file", || {
            rustix::fs::openat(dir, name, flags, mode)
        })?;
        Ok(File::from(fd))
    }

    /// A file's metadata once its data is written: the special bits (writing clears setuid
    /// and setgid), user xattrs, times.
    pub(crate) fn finish_file(&mut self, file: &File, meta: &Meta, path: &Path) -> Result<()> {
        if !meta::create_mode_is_exact(meta.mode) {
            rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode))
                .map_err(|e| self.fs_error(path, "setting the mode", e))?;
        }
        self.set_xattrs(file, meta, path);
        rustix::fs::futimens(file, &meta.times())
            .map_err(|e| self.fs_error(path, "setting the times", e))
    }

    pub(crate) fn symlink(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        target: &OsStr,
        meta: &Meta,
    ) -> Result<()> {
        self.replacing(dir, name, path, "creating symlink", || {
            rustix::fs::symlinkat(target, dir, name)
        })?;
        rustix::fs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fs_error(path, "setting the times", e))
    }

    /// A FIFO: `mknod(S_IFIFO)` needs no privilege. Linux allows no `user.*` xattrs on one.
    pub(crate) fn fifo(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
    ) -> Result<()> {
        let mode = Mode::from_raw_mode(meta.mode);
        self.replacing(dir, name, path, "creating FIFO", || {
            rustix::fs::mknodat(dir, name, FileType::Fifo, mode, 0)
        })?;
        if !meta::create_mode_is_exact(meta.mode) {
            safe_fs::chmod_at(dir, name, meta.mode)
                .map_err(|e| self.fs_error(path, "setting the mode", e))?;
        }
        rustix::fs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fs_error(path, "setting the times", e))?;
        if !meta.xattrs.is_empty() {
            self.warnings.push(format!(
                "ignored the xattrs of FIFO {} (Linux allows user xattrs only on files and \
                 directories)",
                show(path)
            ));
        }
        Ok(())
    }

    /// Applies the user xattrs of `meta`; failures are warnings (the content is right).
    pub(crate) fn set_xattrs(&mut self, fd: impl AsFd, meta: &Meta, path: &Path) {
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd.as_fd(), name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOTSUP) => {
                    if !self.xattrs_unsupported {
                        self.xattrs_unsupported = true;
                        self.warnings.push(format!(
                            "the filesystem does not support user xattrs: ignored {} on {} and \
                             any further ones",
                            String::from_utf8_lossy(name),
                            show(path)
                        ));
                    }
                }
                Err(e) => self.warnings.push(format!(
                    "ignored xattr {} on {}: {e}",
                    String::from_utf8_lossy(name),
                    show(path)
                )),
            }
        }
    }
}
