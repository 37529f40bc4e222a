//! Small filesystem helpers shared by the store, transports and commands.

use std::borrow::Borrow;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The entries of `dir`, or `None` if it does not exist: the store's directories are made on
/// first use, so a missing one simply holds nothing.
pub fn read_dir_if_exists(dir: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_path(dir, e)),
    }
}

/// Removes a file; Ok(false) if it was not there (already removed, perhaps by a concurrent
/// process, which is as good).
pub fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io_path(path, e)),
    }
}

/// Removes a file or a whole tree, even one holding directories without write or search
/// permission (images contain those, and lade keeps their modes exactly; the user owns every
/// file, so lade may chmod its way through). Never follows a symlink inside the tree: it walks
/// from directory handles, as the unpacker does.
pub fn remove_all(path: &Path) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::invalid(
            path.display().to_string(),
            "refusing to remove a path that does not end in a name",
        ));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = match rustix::fs::open(
        parent,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io_path(path, e.into())),
    };
    crate::unpack::remove_all_at(&dir, name)
        .map(|_| ())
        .map_err(|e| Error::io_path(path, e.into()))
}

/// A hidden name in `dir` for work towards `file` (`.FILE.TAG.PID.RANDOM`), unique to this
/// process and call, renamed over `file` or removed when done: hidden, so that listings of
/// records (`json_files`) never take it for one.
pub fn hidden_sibling(dir: &Path, file: &Path, tag: &str) -> PathBuf {
    dir.join(format!(
        ".{}.{tag}.{}.{:08x}",
        file.file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy()),
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Writes `bytes` to `path` atomically: a temporary sibling, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = hidden_sibling(dir, path, "tmp");
    let result = (|| {
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_data().at(&tmp)?;
        fs::rename(&tmp, path).at(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// True if `dir` does not exist or is an empty directory.
pub fn is_absent_or_empty_dir(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io_path(dir, e)),
    }
}

/// Reads and parses a JSON file; `None` if it does not exist.
pub fn read_json_if_exists<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::json(path.display().to_string(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_path(path, e)),
    }
}

/// The `NAME.json` files of `dir` (not those being written: `.`-files), as (NAME, path); none
/// if `dir` does not exist.
pub fn json_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let Some(entries) = read_dir_if_exists(dir)? else {
        return Ok(out);
    };
    for e in entries {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json")
            && !name.starts_with('.')
        {
            out.push((stem.to_string(), e.path()));
        }
    }
    Ok(out)
}

/// Bytes `[pos, end)` of a file, read with `pread` (so that a handle shared with other readers,
/// or with a writer appending to it, keeps its own offset). A file that ends before `end` is
/// an `UnexpectedEof` error saying `short`, not a quiet end.
pub struct FileRange<F> {
    file: F,
    pos: u64,
    end: u64,
    short: &'static str,
}

impl<F: Borrow<fs::File>> FileRange<F> {
    pub fn new(file: F, offset: u64, len: u64, short: &'static str) -> FileRange<F> {
        FileRange {
            file,
            pos: offset,
            end: offset.saturating_add(len),
            short,
        }
    }
}

impl<F: Borrow<fs::File>> Read for FileRange<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.borrow().read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, self.short));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
