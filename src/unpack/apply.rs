//! Applying one tar layer under a root, in either mode (the rules are in the module docs of
//! `unpack`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use tar::EntryType;

use super::access::{self, DIR_RWX, Granted};
use super::leaf::LeafWriter;
use super::meta::Meta;
use super::names::{self, Special, show};
use super::pipeline::{self, CHUNK, ChunkReader, Upstream};
use super::safe_fs::{self, DIR, Removed, file_type, lstat_at};
use super::tree::LayerTree;
use super::workers::{self, Leaf, LeafKind, Report, Workers};
use super::{ApplyMode, ApplyOptions, LayerReport};
use crate::compression::{Compression, Magic};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Reads a (possibly compressed) layer blob from `blob` in one streaming pass and applies it
/// under `root` (an existing directory). Decompression runs on its own thread feeding the
/// tar/write thread through a bounded channel of 256 KiB chunks, so inflate and file writes
/// overlap. Never holds a layer in memory. The whole blob is read, so a verifying reader wrapped
/// around it sees every byte.
pub fn apply_layer(
    blob: impl Read + Send,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<LayerReport> {
    // A fresh OverlayTree shares its files out to workers (`workers.rs`); Flatten mode works
    // on a tree with lower layers in it and stays on one thread.
    let workers = match opts.mode {
        ApplyMode::OverlayTree => workers::count(),
        ApplyMode::Flatten => 0,
    };
    apply_with_workers(blob, root, opts, workers)
}

/// [`apply_layer`] with `workers` threads making files (none: all on the applying thread).
pub(crate) fn apply_with_workers(
    blob: impl Read + Send,
    root: &Path,
    opts: &ApplyOptions,
    workers: usize,
) -> Result<LayerReport> {
    let what = opts.what;
    let workers = if opts.mode == ApplyMode::Flatten {
        0
    } else {
        workers
    };
    let root_fd = safe_fs::open_root(root)
        .map_err(|e| Error::io(format!("{what}: opening {}", root.display()), e))?;
    let mut blob = blob;
    let magic = Magic::read(&mut blob).map_err(|e| Error::io(what, e))?;
    let compression = magic.compression();
    std::thread::scope(|scope| {
        let label: Arc<str> = Arc::from(what);
        let workers = match workers {
            0 => None,
            n => Some(Workers::start(scope, n, &label)?),
        };
        let mut applier = Applier::new(root_fd, opts, label, workers);
        let (diff_id, _) =
            pipeline::run(blob, magic, |reader| applier.consume(reader, compression)).map_err(
                |e| Error::io(format!("{what}: starting the decompression thread"), e),
            )??;
        // Both look paths up, so before directories get modes that could lock lade out.
        let external_hardlinks = applier.tree.finish_external();
        let listed: HashSet<&Path> = applier.deferred.iter().map(|(p, _)| p.as_path()).collect();
        let implicit_dirs = applier.tree.finish_implicit(&listed);
        drop(listed);
        applier.finish_dirs()?;
        applier.absorb_leaf();
        Ok(LayerReport {
            diff_id,
            compression,
            entries: applier.entries,
            warnings: applier.tree.into_warnings(),
            external_hardlinks,
            implicit_dirs,
        })
    })
}

/// Files up to this size go to a worker; larger ones are written by the applying thread.
const WORKER_FILE: u64 = 64 << 10;

/// Why applying stopped.
enum Fault {
    /// The tar stream is corrupt or ends early; the decompression thread may know the deeper
    /// cause (a digest mismatch, corrupt gzip), so it is asked before this is reported.
    Stream {
        context: String,
        err: Option<io::Error>,
    },
    Other(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::Other(e)
    }
}

struct Applier<'o, 's> {
    tree: LayerTree<'o>,
    /// Makes the files, symlinks and FIFOs this thread makes itself.
    leaf: LeafWriter,
    /// The threads that make the others, if any.
    workers: Option<Workers<'s>>,
    /// Directory metadata, applied after the last entry so creating children cannot disturb
    /// mtimes and a read-only mode cannot block them.
    deferred: Vec<(PathBuf, Meta)>,
    entries: u64,
    last_name: Vec<u8>,
}

impl<'o, 's> Applier<'o, 's> {
    fn new(
        root: OwnedFd,
        opts: &ApplyOptions<'o>,
        label: Arc<str>,
        workers: Option<Workers<'s>>,
    ) -> Applier<'o, 's> {
        Applier {
            tree: LayerTree::new(root, opts.mode, opts.what),
            leaf: LeafWriter::new(label),
            workers,
            deferred: Vec::new(),
            entries: 0,
            last_name: Vec::new(),
        }
    }

    // ----- the workers -----

    /// Takes in what this thread's leaf writer removed and warned about.
    fn absorb_leaf(&mut self) {
        for (path, removed) in std::mem::take(&mut self.leaf.replaced) {
            self.tree.forget_replaced(&path, removed);
        }
        for w in std::mem::take(&mut self.leaf.warnings) {
            self.tree.warn(w);
        }
    }

    /// Takes in a workers' report; their first error is the result.
    fn absorb(&mut self, report: Report) -> Result<()> {
        for (path, removed) in report.replaced {
            self.tree.forget_replaced(&path, removed);
        }
        for w in report.warnings {
            self.tree.warn(w);
        }
        report.error.map_or(Ok(()), Err)
    }

    /// Waits until the workers have made everything sent to them.
    fn sync(&mut self) -> Result<()> {
        match self.workers.as_mut() {
            Some(w) => {
                let report = w.barrier()?;
                self.absorb(report)
            }
            None => Ok(()),
        }
    }

    /// Waits for the workers if work at `path` may depend on what they have not made yet.
    fn settle(&mut self, path: &Path) -> Result<()> {
        if self
            .workers
            .as_ref()
            .is_some_and(|w| w.touches_pending(path))
        {
            self.sync()?;
        }
        Ok(())
    }

    /// Stops the workers, after the last entry or a failure.
    fn stop_workers(&mut self) -> Result<()> {
        match self.workers.take() {
            Some(w) => {
                let report = w.finish();
                self.absorb(report)
            }
            None => Ok(()),
        }
    }

    /// The directory `rel` for an entry, made if missing: a directory not open yet may have
    /// to replace something a worker was sent.
    fn dir_for(&mut self, rel: &Path, entry: &Path) -> Result<Arc<OwnedFd>> {
        if self.workers.is_some() && !rel.as_os_str().is_empty() && self.tree.cached(rel).is_none()
        {
            self.settle(rel)?;
        }
        self.tree.dir_for(rel, entry)
    }

    /// The workers, if `path` may go to one: not where this layer made a directory (its
    /// removal must wait for what is being made inside it).
    fn workers_for(&mut self, path: &Path) -> Result<Option<&mut Workers<'s>>> {
        if self.workers.is_none() {
            return Ok(None);
        }
        if self.tree.made_dir(path) || self.workers.as_ref().is_some_and(|w| w.full()) {
            self.sync()?;
            if self.tree.made_dir(path) {
                return Ok(None);
            }
        }
        Ok(self.workers.as_mut())
    }

    /// Runs the tar stream and settles what went wrong, preferring the deeper cause.
    fn consume(
        &mut self,
        reader: &mut ChunkReader,
        compression: Compression,
    ) -> Result<(Digest, u64)> {
        let walked = self.walk(reader);
        // A worker's failure is the earlier one: it was sent entries before any that stopped
        // this thread.
        let stopped = self.stop_workers();
        let fault = match stopped.map_err(Fault::from).and(walked) {
            Ok(()) => {
                let clean_end = reader.saw_end_block();
                reader.drain();
                if let Some(up) = reader.take_upstream() {
                    return Err(self.upstream_error(up, compression));
                }
                if !clean_end {
                    self.tree.warn(
                        "the tar stream ends without its end-of-archive blocks (accepted, as GNU \
                         tar and Go's archive/tar do)"
                            .into(),
                    );
                }
                return Ok(reader.digest());
            }
            Err(fault) => fault,
        };
        if let Some(up) = reader.take_upstream() {
            return Err(self.upstream_error(up, compression));
        }
        match fault {
            Fault::Other(e) => Err(e),
            Fault::Stream { context, err } => {
                let truncated = reader.at_end();
                if !truncated {
                    // Read on: if the blob fails its digest check or its compression is corrupt,
                    // that is the real story behind the garbled tar.
                    reader.drain();
                    if let Some(up) = reader.take_upstream() {
                        return Err(self.upstream_error(up, compression));
                    }
                }
                let why = match (truncated, err) {
                    (true, _) => format!("truncated tar stream: it ends inside {context}"),
                    (false, Some(e)) => format!("corrupt tar stream: {context}: {e}"),
                    (false, None) => format!("corrupt tar stream: {context}"),
                };
                Err(Error::invalid(self.tree.what, why))
            }
        }
    }

    fn upstream_error(&self, up: Upstream, compression: Compression) -> Error {
        match up {
            Upstream::Source(e) => Error::io(self.tree.what, e),
            Upstream::Decode(e) => {
                Error::io(format!("{}: corrupt {compression} data", self.tree.what), e)
            }
        }
    }

    fn header_context(&self) -> String {
        if self.entries == 0 {
            "the first header".into()
        } else {
            format!(
                "the header after {}",
                String::from_utf8_lossy(&self.last_name)
            )
        }
    }

    fn walk(&mut self, reader: &mut ChunkReader) -> Result<(), Fault> {
        let mut archive = tar::Archive::new(super::tar_guard::ExtensionLimit::new(reader));
        let mut buf = vec![0u8; CHUNK];
        // With seeking, the parser skips the padding it does not read without copying it
        // (and without zero-filling a 32 KiB buffer for every entry).
        let entries = archive.entries_with_seek().map_err(|e| Fault::Stream {
            context: "the first header".into(),
            err: Some(e),
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Fault::Stream {
                context: self.header_context(),
                err: Some(e),
            })?;
            self.entries += 1;
            self.entry(&mut entry, &mut buf)?;
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        // The name's buffer is reused from entry to entry (one allocation less per file).
        let mut raw = std::mem::take(&mut self.last_name);
        raw.clear();
        raw.extend_from_slice(&entry.path_bytes());
        let name = names::clean(&raw).map_err(|why| {
            Error::invalid(
                self.tree.what,
                format!("member name {}: {why}", String::from_utf8_lossy(&raw)),
            )
        })?;
        if name.climbed {
            self.tree.warn(format!(
                "member name {} neutralised to {}",
                String::from_utf8_lossy(&raw),
                show(&name.path)
            ));
        } else if name.absolute {
            self.tree.warn(format!(
                "absolute member name {} made relative",
                String::from_utf8_lossy(&raw)
            ));
        }
        let path = name.path;
        let result = self.entry_at(entry, etype, &raw, &path, buf);
        self.last_name = raw;
        result
    }

    fn entry_at<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        etype: EntryType,
        raw: &[u8],
        path: &Path,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        match names::classify(path) {
            Special::None => {}
            Special::Whiteout(target) => return Ok(self.whiteout(&target)?),
            Special::Opaque(dir) => return Ok(self.opaque(&dir)?),
            Special::Ignored(why) => {
                self.tree.warn(format!("skipped {} ({why})", show(path)));
                return Ok(());
            }
        }
        let device = match etype {
            EntryType::Char => Some("character device"),
            EntryType::Block => Some("block device"),
            _ => None,
        };
        if let Some(kind) = device {
            self.tree.warn(format!("skipped {kind} {}", show(path)));
            return Ok(());
        }
        // Pre-POSIX archives mark directories only by the trailing slash.
        let is_dir = etype.is_dir() || (etype == EntryType::Regular && raw.ends_with(b"/"));
        let meta = Meta::read(entry).map_err(|e| Fault::Stream {
            context: format!("the header of {}", show(path)),
            err: Some(e),
        })?;
        if path.as_os_str().is_empty() {
            if is_dir {
                self.deferred.push((PathBuf::new(), meta));
            } else {
                self.tree.warn(format!(
                    "skipped {}: it names the root directory but is not a directory",
                    String::from_utf8_lossy(raw)
                ));
            }
            return Ok(());
        }
        match etype {
            _ if is_dir => self.dir(path, meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, path, meta, buf)
            }
            EntryType::Symlink => self.symlink(entry, path, meta),
            EntryType::Link => self.hardlink(entry, path),
            EntryType::Fifo => Ok(self.fifo(path, meta)?),
            other => {
                self.tree.warn(format!(
                    "skipped {}: unsupported tar entry type {:?}",
                    show(path),
                    other
                ));
                Ok(())
            }
        }
    }

    // ----- the kinds of entries -----

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        meta: Meta,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        let (parent, name) = self.tree.parts(path)?;
        let dir = self.dir_for(parent, path)?;
        let size = entry.size();
        // Small files go to the workers with their data. A large one is written here, from
        // the tar stream, without a copy: its writes are most of its cost, and the layers of
        // an image unpack side by side anyway.
        if size <= WORKER_FILE
            && let Some(workers) = self.workers_for(path)?
        {
            let mut data = workers.buffer();
            read_part(entry, path, size, &mut data)?;
            let leaf = Leaf {
                dir,
                path: workers.path_buf(path),
                meta,
                kind: LeafKind::File { data },
            };
            return Ok(workers.send(parent, leaf)?);
        }
        if self.workers.is_some() {
            self.settle(path)?;
            if self.tree.made_dir(path) {
                self.sync()?;
            }
        }
        let mut file = self.leaf.create_file(&dir, name, path, meta.mode)?;
        self.absorb_leaf();
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(buf.len() as u64) as usize;
            let n = read_some(entry, &mut buf[..want], path, done, size)?;
            file.write_all(&buf[..n])
                .map_err(|e| self.tree.fs_error(path, "writing", e))?;
            done += n as u64;
        }
        self.leaf.finish_file(&file, &meta, path)?;
        self.absorb_leaf();
        self.tree.mark(path);
        Ok(())
    }

    fn dir(&mut self, path: &Path, meta: Meta) -> Result<(), Fault> {
        self.settle(path)?;
        let (parent, name) = self.tree.parts(path)?;
        let pdir = self.dir_for(parent, path)?;
        match rustix::fs::mkdirat(&*pdir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let fd = self.tree.open_child_dir(&pdir, name, path)?;
                self.tree.cache_put(path, Arc::new(fd));
            }
            Err(Errno::EXIST) => {
                let st = lstat_at(&*pdir, name)
                    .map_err(|e| self.tree.fs_error(path, "inspecting", e))?;
                let is_dir = st
                    .as_ref()
                    .is_some_and(|st| file_type(st) == FileType::Directory);
                // An existing directory keeps its contents; only the metadata changes.
                if !is_dir {
                    let was_whiteout = st.as_ref().is_some_and(safe_fs::is_whiteout);
                    self.tree.clear(&pdir, name, path)?;
                    rustix::fs::mkdirat(&*pdir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.tree.fs_error(path, "creating directory", e))?;
                    let fd = self.tree.open_child_dir(&pdir, name, path)?;
                    if was_whiteout {
                        self.tree.opaque_after_whiteout(&fd, path)?;
                    }
                    self.tree.cache_put(path, Arc::new(fd));
                }
            }
            Err(e) => return Err(self.tree.fs_error(path, "creating directory", e).into()),
        }
        self.tree.mark(path);
        self.deferred.push((path.to_path_buf(), meta));
        Ok(())
    }

    /// A FIFO: `mknod(S_IFIFO)` needs no privilege.
    fn fifo(&mut self, path: &Path, meta: Meta) -> Result<()> {
        let (parent, name) = self.tree.parts(path)?;
        let dir = self.dir_for(parent, path)?;
        if let Some(workers) = self.workers_for(path)? {
            let leaf = Leaf {
                dir,
                path: workers.path_buf(path),
                meta,
                kind: LeafKind::Fifo,
            };
            return workers.send(parent, leaf);
        }
        self.leaf.fifo(&dir, name, path, &meta)?;
        self.absorb_leaf();
        self.tree.mark(path);
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        meta: Meta,
    ) -> Result<(), Fault> {
        let target = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        if target.is_empty() || target.contains(&0) {
            self.tree.warn(format!(
                "skipped symlink {}: its target is empty or has a NUL byte",
                show(path)
            ));
            return Ok(());
        }
        let target = OsStr::from_bytes(&target);
        let (parent, name) = self.tree.parts(path)?;
        let dir = self.dir_for(parent, path)?;
        if let Some(workers) = self.workers_for(path)? {
            let leaf = Leaf {
                dir,
                path: workers.path_buf(path),
                meta,
                kind: LeafKind::Symlink {
                    target: target.to_owned(),
                },
            };
            return Ok(workers.send(parent, leaf)?);
        }
        self.leaf.symlink(&dir, name, path, target, &meta)?;
        self.absorb_leaf();
        self.tree.mark(path);
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<(), Fault> {
        let raw = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let target = names::clean(&raw)
            .map_err(|why| self.tree.invalid(path, format!("hard link target: {why}")))?;
        if target.climbed || target.absolute {
            self.tree.warn(format!(
                "hard link {}: target {} taken as {}",
                show(path),
                String::from_utf8_lossy(&raw),
                show(&target.path)
            ));
        }
        let target = target.path;
        // Both ends must be as the entries before made them, and a directory this link
        // replaces must be complete before it goes.
        self.settle(path)?;
        self.settle(&target)?;
        if self.workers.is_some() && self.tree.made_dir(path) {
            self.sync()?;
        }
        if target.as_os_str().is_empty() {
            return Err(self
                .tree
                .invalid(path, "hard link to the root directory")
                .into());
        }
        if target == path {
            self.tree
                .warn(format!("skipped hard link {} to itself", show(path)));
            return Ok(());
        }
        let (tparent, tname) = self.tree.parts(&target)?;
        let tdir = match self.tree.lookup_dir(tparent) {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => None,
            Err(Errno::NOTDIR | Errno::LOOP) => {
                return Err(self
                    .tree
                    .invalid(
                        path,
                        format!(
                            "hard link target {} lies behind a symlink or a non-directory \
                             (hard links are never resolved through symlinks)",
                            show(&target)
                        ),
                    )
                    .into());
            }
            Err(e) => return Err(self.tree.fs_error(&target, "opening directory", e).into()),
        };
        let st = match &tdir {
            Some(d) => {
                lstat_at(&**d, tname).map_err(|e| self.tree.fs_error(&target, "inspecting", e))?
            }
            None => None,
        };
        let (Some(tdir), Some(st)) = (tdir, st) else {
            return self.missing_link_target(path, &target);
        };
        if safe_fs::is_whiteout(&st) {
            return Err(self
                .tree
                .invalid(
                    path,
                    format!(
                        "hard link target {} is deleted by this layer",
                        show(&target)
                    ),
                )
                .into());
        }
        if file_type(&st) == FileType::Directory {
            return Err(self
                .tree
                .invalid(
                    path,
                    format!("hard link target {} is a directory", show(&target)),
                )
                .into());
        }
        let chained = self.tree.placeholder_target(safe_fs::inode(&st));
        let (parent, name) = self.tree.parts(path)?;
        let dir = self.dir_for(parent, path)?;
        let link = |to: &OwnedFd| rustix::fs::linkat(&*tdir, tname, to, name, AtFlags::empty());
        match link(&dir) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let same = lstat_at(&*dir, name)
                    .ok()
                    .flatten()
                    .is_some_and(|cur| safe_fs::inode(&cur) == safe_fs::inode(&st));
                if !same {
                    self.tree.clear(&dir, name, path)?;
                    link(&dir).map_err(|e| self.tree.fs_error(path, "creating hard link", e))?;
                }
            }
            Err(e) => return Err(self.tree.fs_error(path, "creating hard link", e).into()),
        }
        if let Some(orig) = chained {
            self.tree.add_external(path, &orig, safe_fs::inode(&st));
        }
        self.tree.mark(path);
        Ok(())
    }

    fn missing_link_target(&mut self, path: &Path, target: &Path) -> Result<(), Fault> {
        if self.tree.mode == ApplyMode::Flatten {
            return Err(self
                .tree
                .invalid(
                    path,
                    format!(
                        "hard link target {} exists neither in this layer nor below",
                        show(target)
                    ),
                )
                .into());
        }
        // The target must live in a lower layer, which this tree cannot see; hold the place
        // with an empty file that the caller fills once the lower trees exist.
        let (parent, name) = self.tree.parts(path)?;
        let dir = self.dir_for(parent, path)?;
        let fd = self.leaf.create_file(&dir, name, path, 0o600)?;
        self.absorb_leaf();
        let st = rustix::fs::fstat(&fd).map_err(|e| self.tree.fs_error(path, "inspecting", e))?;
        let inode = safe_fs::inode(&st);
        self.tree.add_external(path, target, inode);
        self.tree.mark(path);
        Ok(())
    }

    /// Whether a whiteout or opaque marker under `parent` has nothing to act on because a
    /// non-directory stands on the path: nothing can exist below it (umoci writes `d`, now a
    /// file, then `d/.wh.inner` when a directory becomes a file). Turning `d` back into a
    /// directory would be wrong; Docker's applier also leaves it. A missing parent is still
    /// created, as Docker and containerd do.
    fn nothing_below(&mut self, parent: &Path) -> bool {
        matches!(
            self.tree.lookup_dir(parent),
            Err(Errno::NOTDIR | Errno::LOOP)
        )
    }

    fn whiteout(&mut self, target: &Path) -> Result<()> {
        self.settle(target)?;
        let (parent, name) = self.tree.parts(target)?;
        if self.nothing_below(parent) {
            return Ok(());
        }
        let dir = self.dir_for(parent, target)?;
        match self.tree.mode {
            ApplyMode::OverlayTree => match safe_fs::make_whiteout(&*dir, name) {
                // Whatever exists was created by this layer, and a whiteout spares it.
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) if safe_fs::is_unsupported(e) => Err(Error::unsupported(
                    format!("{}: {}", self.tree.what, show(target)),
                    format!(
                        "cannot create the overlayfs whiteout (a 0/0 character device): {e}; \
                         unprivileged whiteouts need Linux 5.8 or later and a filesystem that \
                         allows them"
                    ),
                )),
                Err(e) => Err(self.tree.fs_error(target, "creating whiteout", e)),
            },
            ApplyMode::Flatten => {
                if self.tree.in_layer(target) {
                    return Ok(());
                }
                self.tree.clear(&dir, name, target)
            }
        }
    }

    fn opaque(&mut self, dir_path: &Path) -> Result<()> {
        self.settle(dir_path)?;
        if self.nothing_below(dir_path) {
            return Ok(());
        }
        let dir = self.dir_for(dir_path, dir_path)?;
        match self.tree.mode {
            ApplyMode::OverlayTree => {
                safe_fs::set_opaque(&*dir).map_err(|e| self.tree.opaque_error(dir_path, e))
            }
            ApplyMode::Flatten => self.hide_lower(dir, dir_path),
        }
    }

    /// Flatten mode's opaque marker: removes everything under `top` that this layer does not
    /// have, descending into the directories it does have (their lower contents go too).
    fn hide_lower(&mut self, top: Arc<OwnedFd>, top_path: &Path) -> Result<()> {
        let mut removed_dir = false;
        let mut stack = vec![(top, top_path.to_path_buf())];
        while let Some((dir, path)) = stack.pop() {
            let children =
                safe_fs::list_dir(&*dir).map_err(|e| self.tree.fs_error(&path, "listing", e))?;
            for (name, ft) in children {
                let child = path.join(OsStr::from_bytes(name.as_bytes()));
                if self.tree.in_layer(&child) {
                    let ft = safe_fs::entry_type(&*dir, &name, ft)
                        .map_err(|e| self.tree.fs_error(&child, "inspecting", e))?;
                    if ft == Some(FileType::Directory) {
                        let opened = access::open_dir(&*dir, name.as_c_str(), DIR_RWX)
                            .map_err(|e| self.tree.fs_error(&child, "opening directory", e))?;
                        if let Some((fd, granted)) = opened {
                            self.tree.note_grant(&child, granted);
                            stack.push((Arc::new(fd), child));
                        }
                    }
                } else if safe_fs::remove_all_at(&*dir, name.as_c_str())
                    .map_err(|e| self.tree.fs_error(&child, "removing", e))?
                    == Removed::Dir
                {
                    removed_dir = true;
                }
            }
        }
        if removed_dir {
            self.tree.forget_cached_dirs();
        }
        Ok(())
    }

    // ----- paths and directories -----

    // ----- after the last entry -----

    /// Applies the directories' metadata (the layer's own, and the original modes of lower
    /// directories granted access), deepest first: a parent's `0000` must not lock lade out of
    /// a child it has yet to finish.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut last: HashMap<PathBuf, Finish> = HashMap::new();
        for (path, granted) in self.tree.take_grants() {
            // The first grant of a path saw the image's mode; later ones saw a grant.
            last.entry(path).or_insert(Finish::Restore(granted));
        }
        for (path, meta) in std::mem::take(&mut self.deferred) {
            // The layer's own entry wins over a lower layer's mode; a later entry over an
            // earlier one.
            last.insert(path, Finish::Meta(meta));
        }
        let mut order: Vec<(PathBuf, Finish)> = last.into_iter().collect();
        order.sort_by(|(a, _), (b, _)| {
            b.components()
                .count()
                .cmp(&a.components().count())
                .then_with(|| a.cmp(b))
        });
        for (path, finish) in order {
            let meta = match finish {
                Finish::Restore(granted) => {
                    granted
                        .restore()
                        .map_err(|e| self.tree.fs_error(&path, "restoring the mode", e))?;
                    continue;
                }
                Finish::Meta(meta) => meta,
            };
            let fd = if path.as_os_str().is_empty() {
                self.tree.root.clone()
            } else if let Some(fd) = self.tree.cached(&path) {
                fd
            } else {
                match safe_fs::open_beneath(&*self.tree.root, &path, DIR) {
                    Ok(fd) => Arc::new(fd),
                    // Replaced by a non-directory later in the layer.
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                    Err(e) => return Err(self.tree.fs_error(&path, "opening directory", e)),
                }
            };
            let applied = rustix::fs::fchmod(&*fd, Mode::from_raw_mode(meta.mode))
                .and_then(|()| rustix::fs::futimens(&*fd, &meta.times()));
            match applied {
                Ok(()) => {}
                // The root belongs to the caller and may not be ours to change.
                Err(e) if path.as_os_str().is_empty() => {
                    self.tree
                        .warn(format!("kept the root directory's metadata: {e}"));
                }
                Err(e) => return Err(self.tree.fs_error(&path, "setting directory metadata", e)),
            }
            self.leaf.set_xattrs(&*fd, &meta, &path);
        }
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes of an entry's data (`done` of `size` read before).
fn read_some<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    buf: &mut [u8],
    path: &Path,
    done: u64,
    size: u64,
) -> Result<usize, Fault> {
    loop {
        match entry.read(buf) {
            Ok(0) if !buf.is_empty() => {
                return Err(Fault::Stream {
                    context: format!("the data of {} ({done} of {size} bytes)", show(path)),
                    err: None,
                });
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Fault::Stream {
                    context: format!("the data of {}", show(path)),
                    err: Some(e),
                });
            }
        }
    }
}

/// An entry's data (`size` bytes, a small file's) into `part`, for a worker.
fn read_part<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    size: u64,
    part: &mut Vec<u8>,
) -> Result<(), Fault> {
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    part.resize(len, 0);
    let mut got = 0;
    while got < len {
        got += read_some(entry, &mut part[got..], path, got as u64, size)?;
    }
    Ok(())
}

/// What a directory gets once the layer is applied.
enum Finish {
    /// The layer's own metadata.
    Meta(Meta),
    /// Its mode from before lade granted itself access (a lower layer's directory).
    Restore(Granted),
}

#[cfg(test)]
mod tests;
