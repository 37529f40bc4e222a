//! Locking: one lock file for the storage directory, and one per process work area.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};

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
    _file: File,
}

impl StorageLock {
    pub(super) fn acquire(root: &Path, mode: LockMode) -> Result<Option<StorageLock>> {
        let op = match mode {
            LockMode::None => return Ok(None),
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        let path = root.join("lock");
        let file = open_lock_file(&path)?;
        if let Err(e) = flock(&file, op) {
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
        flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io_path(&lock_path, e.into()))?;
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
