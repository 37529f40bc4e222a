//! New layers from build steps: a tree in the store's overlayfs format (whiteouts as 0/0
//! character devices, opaque directories marked `user.overlay.opaque=y`) is packed into a
//! gzip layer blob in OCI format (`.wh.NAME`, `.wh..wh..opq`), stored, and the tree itself is
//! published in the layer store under the layer's diff-ID.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;

use crate::digest::{Algorithm, Digest, Expected, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::storage::{LayerInfo, LayerRef, LayerStore, Storage};

/// Packs `tree` (overlayfs format) into a gzip blob at `out`; returns (diff-ID, digest, size,
/// entries).
pub fn pack_overlay_tree(tree: &Path, out: &Path) -> Result<(Digest, Digest, u64, u64)> {
    let file = File::create(out).at(out)?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file), Algorithm::Sha256);
    let gz = GzEncoder::new(compressed, GzLevel::fast());
    let uncompressed = HashingWriter::new(gz, Algorithm::Sha256);
    let mut builder = tar::Builder::new(uncompressed);
    builder.follow_symlinks(false);
    let mut packer = Packer {
        builder,
        seen: HashMap::new(),
        entries: 0,
    };
    packer.walk(tree, Path::new(""))?;
    let uncompressed = packer.builder.into_inner().at(out)?;
    let (gz, diff_id, _) = uncompressed.finish();
    let compressed = gz.finish().at(out)?;
    let (mut buf, digest, size) = compressed.finish();
    buf.flush().at(out)?;
    Ok((diff_id, digest, size, packer.entries))
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    seen: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

pub fn is_opaque(path: &Path) -> bool {
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

fn empty_header(mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_mtime(mtime);
    h
}

impl<W: Write> Packer<W> {
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
            let err = |e: io::Error| Error::io(format!("packing {}", path.display()), e);
            self.entries += 1;
            if ft.is_char_device() && meta.rdev() == 0 {
                let mut wh = name.clone();
                wh.clear();
                wh.push(".wh.");
                wh.push(&name);
                let mut h = empty_header(0o644, 0);
                self.builder
                    .append_data(&mut h, rel.join(wh), io::empty())
                    .map_err(err)?;
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(meta.mtime().max(0) as u64);
            if ft.is_dir() {
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(err)?;
                if is_opaque(&path) {
                    let mut h = empty_header(0o644, 0);
                    self.builder
                        .append_data(&mut h, rel_path.join(".wh..wh..opq"), io::empty())
                        .map_err(err)?;
                }
                self.walk(&path, &rel_path)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).at(&path)?;
                header.set_size(0);
                self.builder
                    .append_link(&mut header, &rel_path, &target)
                    .map_err(err)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.seen.get(&key).cloned() {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        self.builder
                            .append_link(&mut header, &rel_path, &first)
                            .map_err(err)?;
                        continue;
                    }
                    self.seen.insert(key, rel_path.clone());
                }
                let file = File::open(&path).at(&path)?;
                self.builder
                    .append_data(&mut header, &rel_path, file)
                    .map_err(err)?;
            } else if ft.is_fifo() {
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(err)?;
            } else {
                return Err(Error::unsupported(
                    format!("build layer entry {}", rel_path.display()),
                    "device files and sockets cannot be created unprivileged",
                ));
            }
        }
        Ok(())
    }
}

/// Packs `tree` (a directory in the work area, consumed), stores the blob and publishes the
/// tree; returns the layer as an image refers to it.
pub fn commit_tree(storage: &Storage, tree: &Path) -> Result<LayerRef> {
    let staging = storage.scratch_path("build-layer");
    fs::create_dir_all(&staging).at(&staging)?;
    let result = (|| {
        let blob_tmp = staging.join("layer.tar.gz");
        let (diff_id, digest, size, entries) = pack_overlay_tree(tree, &blob_tmp)?;
        let blobs = storage.blobs();
        if !blobs.has(&digest) {
            let mut f = File::open(&blob_tmp).at(&blob_tmp)?;
            blobs.put(
                &Expected {
                    digest: digest.clone(),
                    size: Some(size),
                },
                &mut f,
                "build layer",
            )?;
        }
        fs::remove_file(&blob_tmp).at(&blob_tmp)?;
        let key = LayerStore::key(&diff_id);
        let layers = storage.layers();
        if !layers.has(&key) {
            fs::rename(tree, staging.join("tree")).at(tree)?;
            let info = LayerInfo {
                diff_id: diff_id.clone(),
                blob: digest.clone(),
                compression: "gzip".into(),
                entries,
                lower_chain: None,
            };
            let info_path = staging.join("info.json");
            let json = serde_json::to_vec_pretty(&info)
                .map_err(|e| Error::json(info_path.display().to_string(), e))?;
            fs::write(&info_path, json).at(&info_path)?;
            layers.publish(&staging, &key)?;
        }
        Ok(LayerRef {
            blob: digest,
            diff_id,
            tree: key,
        })
    })();
    let _ = crate::fsutil::remove_all(&staging);
    let _ = crate::fsutil::remove_all(tree);
    result
}
