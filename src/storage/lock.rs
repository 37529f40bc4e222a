//! Locking: one lock file for the storage directory, and one per process work area.
//!
//! On shared filesystems: NFS clients emulate `flock` with POSIX `fcntl` locks, under which
//! a shared lock needs the file open for reading and an exclusive one for writing, so the
//! shared lock opens the lock file read-only (it then also works on a lock file the user
//! cannot write). Lustre mounted without `-o flock`, and other filesystems without locks,
//! fail `flock` with ENOSYS, ENOLCK or EOPNOTSUPP: the storage lock says so in one line,
//! naming the mount option and `--no-lock`; a work area's lock (which only tells a sweeper
//! that its owner lives) is then done without.

use std::fs::{self, File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, Mode, OFlags, flock};

use crate::error::{Error, IoContext, Result};

/// How a command holds the storage directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Ordinary work (pull, copy, unpack, list): any number of processes at once. Safe because
    /// every object is published by an atomic rename of a complete, verified file or tree.
    Shared,
    /// Work that removes objects others may be using (delete, gc, reset, fsck --repair).
    Exclusive,
    /// `--no-lock`: as ch-image, the user accepts the risk.
    None,
}

pub(super) struct StorageLock {
    _file: OwnedFd,
}

impl StorageLock {
    pub(super) fn acquire(root: &Path, mode: LockMode) -> Result<Option<StorageLock>> {
        let op = match mode {
            LockMode::None => return Ok(None),
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let path = root.join("lock");
        let access = match mode {
            LockMode::Shared => OFlags::RDONLY,
            _ => OFlags::RDWR,
        };
        let file = rustix::fs::open(
            &path,
            access | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| Error::io_path(&path, e.into()))?;
        if let Err(e) = flock(&file, op) {
            if no_locks_here(e) {
                return Err(Error::storage(
                    root,
                    format!(
                        "its filesystem does not support file locks (flock: {e}): on Lustre, \
                         mount it with -o flock; on NFS, without -o nolock and with the lock \
                         service running; or use --no-lock if no other lade uses this \
                         storage directory at the same time"
                    ),
                ));
            }
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(Error::io_path(&path, e.into()));
            }
            eprintln!(
                "lade: waiting for another lade using {} (--no-lock skips this)",
                root.display()
            );
            let blocking = match mode {
                LockMode::Shared => FlockOperation::LockShared,
                _ => FlockOperation::LockExclusive,
            };
            flock(&file, blocking).map_err(|e| Error::io_path(&path, e.into()))?;
        }
        Ok(Some(StorageLock { _file: file }))
    }
}

/// `path`, a file to `flock`, opened (created if missing, never truncated).
pub(super) fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

/// A per-process scratch directory `tmp/<pid>.<random>/`, locked for the life of the process
/// through `tmp/<pid>.<random>.lock`. Another process that can take that lock knows the owner
/// is gone and may delete the area.
pub(super) struct WorkArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    counter: AtomicU64,
}

impl WorkArea {
    pub(super) fn create(tmp: &Path) -> Result<WorkArea> {
        let name = format!("{}.{:08x}", std::process::id(), rand::random::<u32>());
        let lock_path = tmp.join(format!("{name}.lock"));
        let lock = File::create(&lock_path).at(&lock_path)?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            // Without locks (only reached with --no-lock): no sweeper can take it either.
            Err(e) if no_locks_here(e) => {}
            Err(e) => return Err(Error::io_path(&lock_path, e.into())),
        }
        let dir = tmp.join(name);
        fs::create_dir(&dir).at(&dir)?;
        Ok(WorkArea {
            dir,
            lock_path,
            _lock: lock,
            counter: AtomicU64::new(0),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    pub(super) fn unique(&self, prefix: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{prefix}.{n}"))
    }
}

impl Drop for WorkArea {
    fn drop(&mut self) {
        let _ = crate::fsutil::remove_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Whether `flock` failed because the filesystem has no locks at all (Lustre without
/// `-o flock`, some FUSE filesystems), not because of a conflict.
fn no_locks_here(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    e == Errno::NOSYS || e == Errno::NOLCK || e == Errno::OPNOTSUPP
}

/// Deletes work areas whose owners have died (crash, `kill -9`). Best effort: a failure here
/// only leaves garbage, never harms live work.
pub(super) fn sweep_stale_work_areas(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            let dir = path.with_extension("");
            match crate::fsutil::remove_all(&dir) {
                Ok(()) => {
                    let _ = fs::remove_file(&path);
                }
                Err(_) if !dir.exists() => {
                    let _ = fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
    }
}
