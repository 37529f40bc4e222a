//! Packing a directory tree into a layer tarball, deterministically: entries sorted by name,
//! ownership root:root, no user or group names, so that the same tree gives the same bytes.
//!
//! One packer serves every caller, with [`PackOptions`]: `import` packs a plain tree as it is;
//! `push --image` packs it normalised ([`pack_tree_normalised`]); build steps pack trees in
//! the store's overlayfs format, whose whiteouts and opaque markers become OCI's `.wh.`
//! entries ([`PackOptions::overlay`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::compression::{Compression, Encoder};
use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};

/// How [`pack_tree_with`] packs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackOptions {
    /// Normalised packing, as ch-image pushes: setuid and setgid bits removed and every
    /// timestamp this one, so that the same tree always gives the same bytes.
    pub fixed_mtime: Option<u64>,
    /// The tree is in the store's overlayfs format (a build step's layer): a 0/0 character
    /// device is a whiteout, packed as `.wh.NAME`; a directory marked `user.overlay.opaque=y`
    /// gets a `.wh..wh..opq` entry; other special files than FIFOs are errors (they could not
    /// have been made unprivileged). Without it sockets and devices are skipped with a warning.
    pub overlay: bool,
}

/// What packing found besides the tar stream.
#[derive(Debug, Default)]
pub struct PackStats {
    /// Skipped sockets and devices.
    pub warnings: Vec<String>,
    /// Entries of the tree walked (whiteouts included, opaque markers not).
    pub entries: u64,
}

/// Writes `root`'s contents as a tar stream to `out`. Returns warnings (skipped sockets and
/// devices). Hard links within the tree are kept as tar hard links; modes are packed exactly,
/// FIFOs included, and where a mode locks the owner out (a `0000` directory or file) lade
/// grants itself access while it reads and puts the mode back.
pub fn pack_tree<W: Write>(root: &Path, out: W) -> Result<(W, Vec<String>)> {
    let (w, stats) = pack_tree_with(root, out, PackOptions::default())?;
    Ok((w, stats.warnings))
}

/// As [`pack_tree`], normalised for pushing as ch-image does: setuid and setgid bits removed,
/// and every timestamp set to `mtime` (`SOURCE_DATE_EPOCH` or 0 by default: see
/// [`push_mtime`]), so that the same tree (names, types, modes, contents, link targets)
/// always gives the same bytes, wherever and whenever it was copied.
pub fn pack_tree_normalised<W: Write>(root: &Path, out: W, mtime: u64) -> Result<(W, Vec<String>)> {
    let opts = PackOptions {
        fixed_mtime: Some(mtime),
        overlay: false,
    };
    let (w, stats) = pack_tree_with(root, out, opts)?;
    Ok((w, stats.warnings))
}

/// Packs `root` into a tar stream written to `out`, as `opts` says.
pub fn pack_tree_with<W: Write>(root: &Path, out: W, opts: PackOptions) -> Result<(W, PackStats)> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut state = PackState {
        builder,
        seen_inodes: HashMap::new(),
        stats: PackStats::default(),
        root: root.to_path_buf(),
        opts,
    };
    let granted = crate::unpack::grant_dir_path(root, crate::unpack::DIR_RX).at(root)?;
    let walked = state.walk(root, Path::new(""));
    restore(granted, root).and(walked)?;
    let out = state.builder.into_inner().at(root)?;
    Ok((out, state.stats))
}

/// Whether directory `path` is marked opaque (`user.overlay.opaque=y`), as lade's layer trees
/// and overlayfs upper directories mark it.
pub fn is_overlay_opaque(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: c is a valid C string, buf a valid buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

struct PackState<W: Write> {
    builder: tar::Builder<W>,
    seen_inodes: HashMap<(u64, u64), PathBuf>,
    stats: PackStats,
    root: PathBuf,
    opts: PackOptions,
}

impl<W: Write> PackState<W> {
    /// An empty regular file entry: OCI's whiteouts and opaque markers.
    fn append_marker(&mut self, path: &Path, at: &Path) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.opts.fixed_mtime.unwrap_or(0));
        self.builder
            .append_data(&mut h, path, io::empty())
            .map_err(|e| Error::io(format!("packing {}", at.display()), e))
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .at(dir)?
            .collect::<io::Result<Vec<_>>>()
            .at(dir)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let rel_path = rel.join(&name);
            let meta = fs::symlink_metadata(&path).at(&path)?;
            let ft = meta.file_type();
            self.stats.entries += 1;
            if self.opts.overlay && ft.is_char_device() && meta.rdev() == 0 {
                let mut wh = std::ffi::OsString::from(".wh.");
                wh.push(&name);
                self.append_marker(&rel.join(wh), &path)?;
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(meta.mtime().max(0) as u64);
            if let Some(t) = self.opts.fixed_mtime {
                // Only the fields a tar reader uses, each set explicitly: GNU headers also
                // carry atime and ctime, which differ between copies of a tree.
                let mode = meta.mode() & 0o1777;
                header = tar::Header::new_gnu();
                header.set_entry_type(if ft.is_dir() {
                    tar::EntryType::Directory
                } else if ft.is_symlink() {
                    tar::EntryType::Symlink
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    tar::EntryType::Regular
                });
                header.set_mode(mode);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(t);
                header.set_size(if ft.is_file() { meta.len() } else { 0 });
            }
            let err = |e: io::Error| Error::io(format!("packing {}", path.display()), e);
            if ft.is_dir() {
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(err)?;
                if self.opts.overlay && is_overlay_opaque(&path) {
                    self.append_marker(&rel_path.join(".wh..wh..opq"), &path)?;
                }
                let granted =
                    crate::unpack::grant_dir_path(&path, crate::unpack::DIR_RX).at(&path)?;
                let walked = self.walk(&path, &rel_path);
                restore(granted, &path).and(walked)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).at(&path)?;
                header.set_size(0);
                self.builder
                    .append_link(&mut header, &rel_path, &target)
                    .map_err(err)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.seen_inodes.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        let first = first.clone();
                        self.builder
                            .append_link(&mut header, &rel_path, &first)
                            .map_err(err)?;
                        continue;
                    }
                    self.seen_inodes.insert(key, rel_path.clone());
                }
                let file = crate::unpack::open_file_path(&path).at(&path)?;
                self.builder
                    .append_data(&mut header, &rel_path, file)
                    .map_err(err)?;
            } else if ft.is_fifo() {
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(err)?;
            } else if self.opts.overlay {
                return Err(Error::unsupported(
                    format!("build layer entry {}", rel_path.display()),
                    "device files and sockets cannot be created unprivileged",
                ));
            } else {
                let kind = if ft.is_socket() {
                    "socket"
                } else {
                    "device file"
                };
                self.stats.warnings.push(format!(
                    "skipped {kind} {}",
                    path.strip_prefix(&self.root).unwrap_or(&path).display()
                ));
            }
        }
        Ok(())
    }
}

/// Puts back a directory's mode after packing it.
fn restore(granted: Option<crate::unpack::Granted>, path: &Path) -> Result<()> {
    match granted {
        Some(g) => g.restore().map_err(|e| Error::io_path(path, e.into())),
        None => Ok(()),
    }
}

/// The timestamp of normalised layers: `$SOURCE_DATE_EPOCH` (the reproducible-builds
/// convention) if set and valid, else 0.
pub fn push_mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// A layer packed into a file.
pub struct PackedLayer {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
    pub warnings: Vec<String>,
    /// Entries of the tree (see [`PackStats::entries`]).
    pub entries: u64,
    pub compression: Compression,
}

impl PackedLayer {
    fn new(
        diff_id: Digest,
        digest: Digest,
        size: u64,
        stats: PackStats,
        compression: Compression,
    ) -> PackedLayer {
        PackedLayer {
            diff_id,
            digest,
            size,
            warnings: stats.warnings,
            entries: stats.entries,
            compression,
        }
    }
}

/// As [`pack_layer_with`], on this thread alone: the compressor gets the tar stream in the
/// packer's own writes, not in 1 MiB chunks. `lade import` has always packed so, and gzip's
/// output at level 1 depends on how its input is chunked: the two give different blobs for
/// one tree, and imports keep the digests they always had.
pub fn pack_layer_in_one_thread(
    root: &Path,
    out: &Path,
    compression: Compression,
    opts: PackOptions,
) -> Result<PackedLayer> {
    let mut blob = BlobWriter::new(File::create(out).at(out)?, compression).at(out)?;
    let hashing = HashingWriter::new(&mut blob, Algorithm::Sha256);
    let (tar, stats) = pack_tree_with(root, hashing, opts)?;
    let (_, diff_id, _) = tar.finish();
    let (digest, size) = blob.finish().at(out)?;
    Ok(PackedLayer::new(diff_id, digest, size, stats, compression))
}

/// Packs `root` normalised into `out` compressed as asked (`push --image`).
pub fn pack_layer(root: &Path, out: &Path, compression: Compression) -> Result<PackedLayer> {
    let opts = PackOptions {
        fixed_mtime: Some(push_mtime()),
        overlay: false,
    };
    pack_layer_with(root, out, compression, opts)
}

/// Packs `root` into `out` as `opts` says, compressed as asked. The tar stream is written (and
/// hashed for the diff-ID) in this thread and compressed (and hashed) in another, so both
/// cores work; 1 MiB buffers go between them through a bounded channel.
pub fn pack_layer_with(
    root: &Path,
    out: &Path,
    compression: Compression,
    opts: PackOptions,
) -> Result<PackedLayer> {
    use std::sync::mpsc::sync_channel;

    let file = File::create(out).at(out)?;
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let compressor = std::thread::spawn(move || -> io::Result<(Digest, u64)> {
        let mut blob = BlobWriter::new(file, compression)?;
        for buf in rx {
            blob.write_all(&buf)?;
        }
        blob.finish()
    });
    let pipe = ChannelWriter {
        tx: Some(tx),
        buf: Vec::with_capacity(1 << 20),
    };
    let hashing = HashingWriter::new(pipe, Algorithm::Sha256);
    let packed = pack_tree_with(root, hashing, opts);
    let (diff_id, stats) = match packed {
        Ok((hashing, stats)) => {
            let (mut pipe, diff_id, _) = hashing.finish();
            pipe.flush().at(out)?;
            pipe.tx = None;
            (diff_id, stats)
        }
        Err(e) => {
            let _ = compressor.join();
            return Err(e);
        }
    };
    let (digest, size) = compressor
        .join()
        .map_err(|_| Error::invalid(format!("packing {}", root.display()), "compressor panicked"))?
        .at(out)?;
    Ok(PackedLayer::new(diff_id, digest, size, stats, compression))
}

/// A layer blob being written: compressed as asked, the compressed bytes hashed for the
/// blob's digest and size.
struct BlobWriter {
    enc: Box<dyn Encoder<HashingWriter<io::BufWriter<File>>>>,
}

impl BlobWriter {
    fn new(file: File, compression: Compression) -> io::Result<BlobWriter> {
        let hashed = HashingWriter::new(
            io::BufWriter::with_capacity(1 << 20, file),
            Algorithm::Sha256,
        );
        Ok(BlobWriter {
            enc: compression.encoder(hashed)?,
        })
    }

    /// Ends the compressed stream and flushes the file; returns the blob's digest and size.
    fn finish(self) -> io::Result<(Digest, u64)> {
        let (mut file, digest, size) = self.enc.finish()?.finish();
        file.flush()?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.enc.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

/// Sends 1 MiB buffers to the compressing thread.
struct ChannelWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = (1 << 20) - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
        match &self.tx {
            Some(tx) => tx
                .send(full)
                .map_err(|_| io::Error::other("the compressing thread stopped")),
            None => Ok(()),
        }
    }
}

/// Packs `dir` as a one-layer image into the store's blobs (content-addressed; unnamed, so
/// garbage once pushed) and returns its manifest, for `lade push --image DIR`.
pub fn pack_image(
    storage: &crate::storage::Storage,
    dir: &Path,
    compression: Compression,
    progress: &crate::progress::Progress,
) -> Result<crate::manifest::RawManifest> {
    use crate::image_config::{History, ImageConfig};
    let meta = fs::metadata(dir).at(dir)?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            format!("--image {}", dir.display()),
            "not a directory",
        ));
    }
    let tmp = storage.scratch_path("pack");
    fs::create_dir_all(&tmp).at(&tmp)?;
    let result = (|| {
        let blob = tmp.join("layer");
        let layer = pack_layer(dir, &blob, compression)?;
        for w in &layer.warnings {
            progress.warn(w);
        }
        let what = format!("packed layer of {}", dir.display());
        let layer = crate::image_writer::Layer::store_packed(storage, &layer, &blob, &what)?;
        let history = History::step(None, "lade push --image", false);
        crate::image_writer::write_image(
            storage,
            ImageConfig::for_host(vec![history], true),
            &[layer],
        )
    })();
    let _ = crate::fsutil::remove_all(&tmp);
    result
}

/// An image whose blobs are in the store but which has no name there (a packed `--image`).
pub struct PackedSource {
    pub storage: std::sync::Arc<crate::storage::Storage>,
    pub top: crate::manifest::RawManifest,
    pub what: String,
}

impl crate::transport::ImageSource for PackedSource {
    fn describe(&self) -> String {
        self.what.clone()
    }
    fn top_manifest(&self) -> Result<crate::manifest::RawManifest> {
        Ok(self.top.clone())
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn io::Read + Send + '_>> {
        Ok(Box::new(self.storage.blobs().open(digest)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/e/f"), b"hello").unwrap();
        fs::write(root.join("s"), b"#!").unwrap();
        fs::set_permissions(root.join("s"), fs::Permissions::from_mode(0o6755)).unwrap();
        std::os::unix::fs::symlink("d/e/f", root.join("l")).unwrap();
    }

    #[test]
    fn normalised_layers_are_deterministic_and_flattened() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        tree(&a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(&b);
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let la = pack_layer(&a, &t.path().join("la"), c).unwrap();
            let lb = pack_layer(&b, &t.path().join("lb"), c).unwrap();
            assert_eq!(la.digest, lb.digest, "{c:?}");
            assert_eq!(la.diff_id, lb.diff_id, "{c:?}");
        }
        let out = t.path().join("plain");
        pack_layer(&a, &out, Compression::None).unwrap();
        let mut ar = tar::Archive::new(File::open(&out).unwrap());
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mode().unwrap() & 0o6000, 0);
            assert_eq!(h.mtime().unwrap(), push_mtime());
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["d", "d/e", "d/e/f", "l", "s"]);
    }

    fn names_in(tar_bytes: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn fifos_are_kept_and_the_overlay_option_marks_opaque_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        tree(&root);
        let fifo = root.join("d/p");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // user.* xattrs need filesystem support; without it only the FIFO rule is checked.
        let opaque = rustix::fs::lsetxattr(
            root.join("d/e").as_path(),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let (plain, stats) = pack_tree_with(&root, Vec::new(), PackOptions::default()).unwrap();
        assert_eq!(names_in(&plain), ["d", "d/e", "d/e/f", "d/p", "l", "s"]);
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
        let opts = PackOptions {
            fixed_mtime: None,
            overlay: true,
        };
        let (over, stats) = pack_tree_with(&root, Vec::new(), opts).unwrap();
        let mut want = vec!["d", "d/e"];
        if opaque {
            want.push("d/e/.wh..wh..opq");
        }
        want.extend(["d/e/f", "d/p", "l", "s"]);
        assert_eq!(names_in(&over), want);
        assert!(stats.warnings.is_empty());
        assert_eq!(stats.entries, 6);
    }
}
