//! A layer's files made on worker threads while the applying thread reads on (issue 16): a
//! layer of many small files is syscalls (`openat`, `write`, `futimens`, `close` for each), and
//! one thread leaves the other core idle.
//!
//! The applying thread keeps everything that shapes the tree: it parses, makes and enters
//! directories, handles whiteouts, opaque markers and hard links, and writes large files
//! itself (straight from the tar stream: their writes are their cost, and an image's layers
//! unpack side by side anyway). Small files, symlinks and FIFOs go to workers with their data,
//! each directory to one worker (given out in turn as directories appear), so everything at
//! one path happens on one thread in tar order and workers rarely contend for a directory's
//! lock. Where an entry depends on one a worker may not have made yet, the applying thread
//! waits for the workers first ([`Workers::barrier`]):
//! - a directory (or a parent directory to make, a whiteout, opaque marker, hard link or
//!   large file) at or under a path sent to a worker since the last barrier;
//! - a file at a path this layer made a directory (its removal takes the directory's
//!   contents, which other workers may be making);
//! - every few ten thousand files, to bound what is remembered.
//!
//! Paths are remembered by 64-bit hashes: a collision only costs a needless wait. Every path
//! is still resolved beneath the root from a directory handle: workers get the open
//! directory with each entry.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::hash::Hasher;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{self, Scope, ScopedJoinHandle};

use super::leaf::LeafWriter;
use super::meta::Meta;
use super::safe_fs::Removed;
use crate::error::{Error, Result};

/// A non-directory entry for a worker to make in `dir`.
pub(crate) struct Leaf {
    /// The open directory it goes in.
    pub dir: Arc<OwnedFd>,
    /// Its path (cleaned, never empty): its last component is its name in `dir`.
    pub path: PathBuf,
    pub meta: Meta,
    pub kind: LeafKind,
}

pub(crate) enum LeafKind {
    /// A (small) file and its data.
    File {
        data: Vec<u8>,
    },
    Symlink {
        target: OsString,
    },
    Fifo,
}

enum Msg {
    Batch(Vec<Leaf>),
    /// Report what was done so far.
    Barrier(SyncSender<Report>),
}

/// What a worker did besides making entries, for the applying thread's view of the tree.
#[derive(Default)]
pub(crate) struct Report {
    pub replaced: Vec<(PathBuf, Removed)>,
    pub warnings: Vec<String>,
    pub error: Option<Error>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.replaced.extend(other.replaced);
        self.warnings.extend(other.warnings);
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// Jobs a batch collects before it is sent: one wake-up of a worker per batch, not per file.
const BATCH_JOBS: usize = 256;
const BATCH_BYTES: usize = 256 << 10;
/// Batches queued per worker: bounds memory (about a MiB each) while letting the applying
/// thread run a directory or two ahead.
const QUEUED: usize = 4;
/// Paths remembered between barriers.
const MAX_PENDING: usize = 1 << 16;
/// A leaf's buffers (its data, its path) of at most this capacity go back to the applying
/// thread for the next leaves, so that a layer of small files allocates none per file once
/// under way: a `malloc` on the applying thread and its `free` on a worker's (a contended
/// arena) were ~3% of the CPU of a layer of 100,000 small files. Larger ones are freed, which
/// bounds what circulates to the leaves in flight (see `QUEUED`) times this.
const RECYCLE_MAX: usize = 4 << 10;

/// How many workers a layer gets: one per core, at most 4; none on one core.
/// `LADE_UNPACK_WORKERS=N` overrides it (0: everything on the applying thread), for
/// measuring.
pub(crate) fn count() -> usize {
    if let Some(n) = std::env::var("LADE_UNPACK_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.min(16);
    }
    match thread::available_parallelism().map_or(1, |n| n.get()) {
        0 | 1 => 0,
        n => n.min(4),
    }
}

pub(crate) struct Workers<'scope> {
    senders: Vec<SyncSender<Msg>>,
    handles: Vec<ScopedJoinHandle<'scope, Report>>,
    batches: Vec<(Vec<Leaf>, usize)>,
    /// Directory (hash of its path) → its worker.
    assigned: HashMap<u64, usize>,
    next: usize,
    /// Hashes of the paths sent to workers since the last barrier.
    pending: HashSet<u64>,
    /// Buffers the workers are done with (see [`RECYCLE_MAX`]).
    spent: Receiver<Vec<u8>>,
}

/// A path's hash: its bytes (paths here are cleaned, so one path has one spelling), with
/// SipHash so that a hostile layer cannot aim collisions (which would only cost waits).
pub(crate) fn hash(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(path.as_os_str().as_bytes());
    h.finish()
}

impl<'scope> Workers<'scope> {
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        n: usize,
        what: &Arc<str>,
    ) -> Result<Workers<'scope>> {
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let (spent_tx, spent) = mpsc::channel();
        for i in 0..n {
            let (tx, rx) = mpsc::sync_channel(QUEUED);
            let label = what.clone();
            let spent_tx = spent_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("lade-files-{i}"))
                .spawn_scoped(scope, move || work(rx, label, spent_tx))
                .map_err(|e| Error::io(format!("{what}: starting a worker thread"), e))?;
            senders.push(tx);
            handles.push(handle);
        }
        Ok(Workers {
            senders,
            handles,
            batches: (0..n).map(|_| (Vec::new(), 0)).collect(),
            assigned: HashMap::new(),
            next: 0,
            pending: HashSet::new(),
            spent,
        })
    }

    /// An empty buffer for a leaf's data: one a worker is done with, if there is one.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.spent.try_recv().unwrap_or_default();
        buf.clear();
        buf
    }

    /// `path` as a leaf's own, in a buffer a worker is done with if there is one.
    pub(crate) fn path_buf(&mut self, path: &Path) -> PathBuf {
        let mut buf = self.buffer();
        buf.extend_from_slice(path.as_os_str().as_bytes());
        PathBuf::from(OsString::from_vec(buf))
    }

    /// Whether `path` or one of its ancestors may have been sent to a worker since the last
    /// barrier (so work at `path` must wait for the workers).
    pub(crate) fn touches_pending(&self, path: &Path) -> bool {
        !self.pending.is_empty() && path.ancestors().any(|a| self.pending.contains(&hash(a)))
    }

    /// Sends a leaf to the worker of its directory; `parent` is its directory's path.
    pub(crate) fn send(&mut self, parent: &Path, leaf: Leaf) -> Result<()> {
        let n = self.senders.len();
        let next = &mut self.next;
        let w = *self.assigned.entry(hash(parent)).or_insert_with(|| {
            let w = *next % n;
            *next += 1;
            w
        });
        self.pending.insert(hash(&leaf.path));
        let bytes = match &leaf.kind {
            LeafKind::File { data } => data.len(),
            _ => 0,
        };
        let (batch, size) = &mut self.batches[w];
        batch.push(leaf);
        *size += bytes;
        if batch.len() >= BATCH_JOBS || *size >= BATCH_BYTES {
            self.flush(w)?;
        }
        Ok(())
    }

    /// Whether so many paths are remembered that a barrier should clear them.
    pub(crate) fn full(&self) -> bool {
        self.pending.len() >= MAX_PENDING
    }

    fn flush(&mut self, w: usize) -> Result<()> {
        let (jobs, size) = &mut self.batches[w];
        if jobs.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(jobs);
        *size = 0;
        self.senders[w]
            .send(Msg::Batch(batch))
            .map_err(|_| Error::invalid("unpacking", "a worker thread stopped"))
    }

    /// Waits until the workers have made everything sent so far; returns what they report.
    pub(crate) fn barrier(&mut self) -> Result<Report> {
        for w in 0..self.senders.len() {
            self.flush(w)?;
        }
        let mut report = Report::default();
        for tx in &self.senders {
            let (rtx, rrx) = mpsc::sync_channel(1);
            tx.send(Msg::Barrier(rtx))
                .map_err(|_| Error::invalid("unpacking", "a worker thread stopped"))?;
            report.merge(
                rrx.recv()
                    .map_err(|_| Error::invalid("unpacking", "a worker thread stopped"))?,
            );
        }
        self.pending.clear();
        Ok(report)
    }

    /// Sends what is left, stops the workers and returns what they report.
    pub(crate) fn finish(mut self) -> Report {
        let mut report = Report::default();
        for w in 0..self.senders.len() {
            if let Err(e) = self.flush(w) {
                report.error.get_or_insert(e);
            }
        }
        drop(self.senders);
        for h in self.handles {
            match h.join() {
                Ok(r) => report.merge(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        report
    }
}

/// A worker: makes the leaves of its batches in order. After an error it only drains its
/// queue (the applying thread learns of the error at the next barrier or at the end).
fn work(rx: Receiver<Msg>, what: Arc<str>, spent: Sender<Vec<u8>>) -> Report {
    let mut writer = LeafWriter::new(what);
    let mut error: Option<Error> = None;
    let report = |writer: &mut LeafWriter, error: &mut Option<Error>| Report {
        replaced: std::mem::take(&mut writer.replaced),
        warnings: std::mem::take(&mut writer.warnings),
        error: error.take(),
    };
    for msg in rx {
        match msg {
            Msg::Batch(leaves) => {
                for leaf in leaves {
                    if error.is_none()
                        && let Err(e) = make(&mut writer, leaf, &spent)
                    {
                        error = Some(e);
                    }
                }
            }
            Msg::Barrier(reply) => {
                let _ = reply.send(report(&mut writer, &mut error));
            }
        }
    }
    report(&mut writer, &mut error)
}

/// Makes a leaf and hands its buffers back to the applying thread.
fn make(writer: &mut LeafWriter, leaf: Leaf, spent: &Sender<Vec<u8>>) -> Result<()> {
    let Leaf {
        dir,
        path,
        meta,
        kind,
    } = leaf;
    let Some(name) = path.file_name() else {
        return Err(writer.fs_error(&path, "making", std::io::ErrorKind::InvalidInput));
    };
    let made = match kind {
        LeafKind::File { data } => {
            let made = write_file(writer, &dir, name, &path, &meta, &data);
            recycle(spent, data);
            made
        }
        LeafKind::Symlink { target } => writer.symlink(&dir, name, &path, &target, &meta),
        LeafKind::Fifo => writer.fifo(&dir, name, &path, &meta),
    };
    recycle(spent, path.into_os_string().into_vec());
    made
}

fn write_file(
    writer: &mut LeafWriter,
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    path: &Path,
    meta: &Meta,
    data: &[u8],
) -> Result<()> {
    let mut file = writer.create_file(dir, name, path, meta.mode)?;
    file.write_all(data)
        .map_err(|e| writer.fs_error(path, "writing", e))?;
    writer.finish_file(&file, meta, path)
}

/// Hands a small buffer back (the applying thread may have finished: then it is freed).
fn recycle(spent: &Sender<Vec<u8>>, buf: Vec<u8>) {
    if buf.capacity() <= RECYCLE_MAX {
        let _ = spent.send(buf);
    }
}

#[cfg(test)]
mod tests;
