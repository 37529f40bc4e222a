//! Packing a directory tree into a layer tarball, deterministically: entries sorted by name,
//! ownership root:root, no user or group names, so that the same tree gives the same bytes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Writes `root`'s contents as a tar stream to `out`. Returns warnings (skipped sockets and
/// devices). Hard links within the tree are kept as tar hard links.
pub fn pack_tree<W: Write>(root: &Path, out: W) -> Result<(W, Vec<String>)> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut state = PackState {
        builder,
        seen_inodes: HashMap::new(),
        warnings: Vec::new(),
        root: root.to_path_buf(),
    };
    state.walk(root, Path::new(""))?;
    let out = state.builder.into_inner().at(root)?;
    Ok((out, state.warnings))
}

struct PackState<W: Write> {
    builder: tar::Builder<W>,
    seen_inodes: HashMap<(u64, u64), PathBuf>,
    warnings: Vec<String>,
    root: PathBuf,
}

impl<W: Write> PackState<W> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .at(dir)?
            .collect::<io::Result<Vec<_>>>()
            .at(dir)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rel_path = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(&path).at(&path)?;
            let ft = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(meta.mtime().max(0) as u64);
            let err = |e: io::Error| Error::io(format!("packing {}", path.display()), e);
            if ft.is_dir() {
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &rel_path, io::empty())
                    .map_err(err)?;
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
                let file = File::open(&path).at(&path)?;
                self.builder
                    .append_data(&mut header, &rel_path, file)
                    .map_err(err)?;
            } else {
                let kind = if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_socket() {
                    "socket"
                } else {
                    "device file"
                };
                self.warnings.push(format!(
                    "skipped {kind} {}",
                    path.strip_prefix(&self.root).unwrap_or(&path).display()
                ));
            }
        }
        Ok(())
    }
}
