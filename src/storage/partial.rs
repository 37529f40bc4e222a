//! Blobs part-way through their download, kept across processes: `partial/<alg>-<hex>` holds
//! the bytes received so far, so that the next pull after a `kill -9`, a crash or a lost
//! node asks the source only for the rest (`Range`) instead of the whole blob again.
//!
//! Nothing in a partial file is trusted: the next download reads the prefix back (the layer's
//! unpacker needs it anyway) and the whole blob is verified against its digest before it is
//! published, by renaming the partial file into `blobs/`. A prefix that turns out bad is
//! dropped and the blob downloaded whole once more.
//!
//! One process at a time appends to a partial file: it holds an exclusive `flock` on it for
//! as long as it downloads. Another process that wants the same blob meanwhile does not wait:
//! it downloads into a file of its own, as before partial files existed (both publish the
//! same verified bytes).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::FileRange;

/// `partial/`.
#[derive(Clone)]
pub(super) struct Partials {
    dir: PathBuf,
}

/// A partial file this process holds the lock of.
pub(super) struct Claimed {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Partials {
    pub(super) fn new(dir: PathBuf) -> Partials {
        Partials { dir }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}", digest.algorithm().name(), digest.hex()))
    }

    /// Takes the partial file of `digest` (a blob of `size` bytes) for this process, making
    /// it if there is none; `None` if another process is downloading that blob right now, or
    /// if partial files cannot be used here (no `flock` on this filesystem: Lustre without
    /// `-o flock`, or a file this process may not write): the blob is then downloaded whole
    /// into a file of its own, as before partial files existed. Resuming is an optimisation;
    /// it never fails a pull that could go on without it.
    pub(super) fn claim(&self, digest: &Digest, size: u64) -> Result<Option<Claimed>> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let path = self.path(digest);
        // The file can be published or removed between our open and our lock: then lock
        // again what the path holds now (bounded: that takes a finished download each time).
        for _ in 0..3 {
            let Some(file) = open_for_append(&path)? else {
                return Ok(None);
            };
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                // Busy, or no locks on this filesystem (ENOSYS, ENOLCK, EOPNOTSUPP...).
                Err(_) => return Ok(None),
            }
            let held = file.metadata().at(&path)?;
            let same = fs::metadata(&path)
                .is_ok_and(|now| (now.dev(), now.ino()) == (held.dev(), held.ino()));
            if !same {
                continue;
            }
            let mut claimed = Claimed {
                file,
                path,
                len: held.len(),
            };
            if claimed.len > size {
                claimed.restart()?;
            }
            claimed
                .file
                .seek(SeekFrom::Start(claimed.len))
                .at(&claimed.path)?;
            return Ok(Some(claimed));
        }
        Ok(None)
    }

    /// Partial files nobody is downloading into: (path, size, seconds since last written).
    pub(super) fn idle(&self) -> Vec<(PathBuf, u64, u64)> {
        // (A file is busy while its downloader holds its lock.)
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if flock(&file, FlockOperation::NonBlockingLockShared).is_err() {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .map_or(0, |d| d.as_secs());
            out.push((path, meta.len(), age));
        }
        out
    }
}

impl Claimed {
    /// Bytes kept from earlier downloads.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The kept bytes, read back from the start.
    /// (Read without moving the file's offset, where the new bytes are written.)
    pub(super) fn prefix(&self) -> FileRange<&File> {
        FileRange::new(
            &self.file,
            0,
            self.len,
            "the kept part of the blob shrank while being read",
        )
    }

    /// Where the bytes that follow the prefix go.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Forgets the kept bytes: the next attempt starts from the first byte.
    pub(super) fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).at(&self.path)?;
        self.file.seek(SeekFrom::Start(0)).at(&self.path)?;
        self.len = 0;
        Ok(())
    }

    /// The complete, verified blob becomes `dest` (read-only, like every stored blob).
    pub(super) fn publish(self, dest: &Path) -> Result<()> {
        self.file
            .set_permissions(fs::Permissions::from_mode(0o444))
            .at(&self.path)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        fs::rename(&self.path, dest).at(dest)
    }
}

/// Opens (making it if missing) a partial file to read its prefix and append to it. A file
/// left read-only (a process killed while publishing it: [`Claimed::publish`] makes it
/// read-only just before the rename) is made writable again; `None` if it stays unwritable.
fn open_for_append(path: &Path) -> Result<Option<File>> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
    };
    match open() {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            if fs::set_permissions(path, fs::Permissions::from_mode(0o644)).is_err() {
                return Ok(None);
            }
            Ok(open().ok())
        }
        Err(e) => Err(Error::io_path(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn one_process_at_a_time_appends_and_the_prefix_survives() {
        let tmp = tempfile::tempdir().unwrap();
        let partials = Partials::new(tmp.path().join("partial"));
        let d = Digest::sha256_of(b"0123456789");
        let first = partials.claim(&d, 10).unwrap().unwrap();
        assert_eq!(first.len(), 0);
        first.file().write_all(b"0123").unwrap();
        // Another holder (another open file description, as another process has) waits.
        assert!(partials.claim(&d, 10).unwrap().is_none());
        drop(first);
        let again = partials.claim(&d, 10).unwrap().unwrap();
        assert_eq!(again.len(), 4);
        let mut kept = Vec::new();
        again.prefix().read_to_end(&mut kept).unwrap();
        assert_eq!(kept, b"0123");
        again.file().write_all(b"456789").unwrap();
        let dest = tmp.path().join("blobs/x");
        again.publish(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"0123456789");
        assert!(partials.idle().is_empty());
    }

    #[test]
    fn a_prefix_longer_than_the_blob_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let partials = Partials::new(tmp.path().join("partial"));
        let d = Digest::sha256_of(b"abc");
        fs::create_dir_all(tmp.path().join("partial")).unwrap();
        fs::write(partials.path(&d), b"abcdef").unwrap();
        assert_eq!(partials.idle().len(), 1);
        let claimed = partials.claim(&d, 3).unwrap().unwrap();
        assert_eq!(claimed.len(), 0);
        assert_eq!(fs::metadata(claimed.path()).unwrap().len(), 0);
    }

    #[test]
    fn a_file_left_read_only_by_a_killed_publish_is_claimed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let partials = Partials::new(tmp.path().join("partial"));
        let d = Digest::sha256_of(b"abc");
        fs::create_dir_all(tmp.path().join("partial")).unwrap();
        fs::write(partials.path(&d), b"ab").unwrap();
        fs::set_permissions(partials.path(&d), fs::Permissions::from_mode(0o444)).unwrap();
        let claimed = partials.claim(&d, 3).unwrap().unwrap();
        assert_eq!(claimed.len(), 2);
        claimed.file().write_all(b"c").unwrap();
    }
}
