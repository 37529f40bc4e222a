//! A tar file read in place: one pass over its headers maps each member to where its data
//! lies (seeking past contents), and members are then read with positioned reads, so several
//! threads can stream layers out of one open file at once. Symbolic and hard links between
//! members (`docker save` made repeated layers links) are followed, never out of the archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::FileRange;

/// Links followed in a row before a member is declared a loop.
const MAX_LINK_HOPS: usize = 16;

/// A link member, as found in the archive.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// The link's target as written in the header.
    pub raw: String,
    /// The member it names: normalised, inside the archive.
    pub target: String,
    pub hard: bool,
}

pub(super) struct Tarball {
    file: Arc<File>,
    what: String,
    /// Regular members: normalised path → (data offset, size).
    files: HashMap<String, (u64, u64)>,
    links: HashMap<String, Link>,
}

impl Tarball {
    /// Indexes the members of the tar file `file`; `what` names it for errors.
    pub fn index(file: File, what: &str) -> Result<Tarball> {
        let file = Arc::new(file);
        let mut archive = tar::Archive::new(&*file);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let bad = |why: String| Error::invalid(what, why);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| bad(format!("bad tar member: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| bad(format!("bad member name: {e}")))?
                .to_string_lossy()
                .into_owned();
            // A member naming a place outside the archive can never be one of its images'
            // parts; it is left out rather than refused, as extractors do.
            let Some(path) = normalise(&name) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                files.insert(path, (entry.raw_file_position(), entry.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let raw = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let hard = kind.is_hard_link();
                // A symbolic link is relative to its own directory (an absolute one, to the
                // archive's root, as `docker load` scopes it); a hard link names a member.
                let joined = match (hard, raw.starts_with('/'), path.rsplit_once('/')) {
                    (false, false, Some((dir, _))) => format!("{dir}/{raw}"),
                    _ => raw.clone(),
                };
                if let Some(target) = normalise(&joined) {
                    links.insert(path, Link { raw, target, hard });
                }
            }
        }
        Ok(Tarball {
            file,
            what: what.to_string(),
            files,
            links,
        })
    }

    /// Opens `path` (a file, or `-` for standard input, spooled to a temporary file first)
    /// and indexes it.
    pub fn open(path: &Path, what: &str) -> Result<Tarball> {
        let file = if path == Path::new("-") {
            spool_stdin(what)?
        } else {
            File::open(path).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Error::ImageNotFound(format!("{what}: no such file"))
                } else {
                    Error::io_path(path, e)
                }
            })?
        };
        Tarball::index(file, what)
    }

    /// The regular member `path` names, following links: (offset, size).
    fn locate(&self, path: &str) -> Option<(u64, u64)> {
        let mut path = path;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(&at) = self.files.get(path) {
                return Some(at);
            }
            path = &self.links.get(path)?.target;
        }
        None
    }

    pub fn has(&self, path: &str) -> bool {
        self.locate(path).is_some()
    }

    /// The size of member `path`.
    pub fn size(&self, path: &str) -> Result<u64> {
        Ok(self.require(path)?.1)
    }

    fn require(&self, path: &str) -> Result<(u64, u64)> {
        self.locate(path)
            .ok_or_else(|| Error::invalid(&self.what, format!("{path} is missing")))
    }

    /// The whole of a small member, refused past `limit` bytes.
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let (offset, size) = self.require(path)?;
        if size > limit {
            return Err(Error::invalid(
                &self.what,
                format!("{path} is too large ({size} bytes)"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.reader(offset, size)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("{}: {path}", self.what), e))?;
        Ok(bytes)
    }

    /// A stream of member `path`.
    pub fn open_member(&self, path: &str) -> Result<Member> {
        let (offset, size) = self.require(path)?;
        Ok(self.reader(offset, size))
    }

    fn reader(&self, offset: u64, size: u64) -> Member {
        FileRange::new(
            self.file.clone(),
            offset,
            size,
            "the archive ends inside a member",
        )
    }

    /// Every regular member's path.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.files.keys()
    }

    /// Every link member.
    pub fn links(&self) -> impl Iterator<Item = (&String, &Link)> {
        self.links.iter()
    }
}

/// A member's bytes, read with `pread` from a shared handle.
pub(super) type Member = FileRange<Arc<File>>;

/// A path inside the archive in one canonical form (`./a//b/../c` → `a/c`), or `None` if it
/// climbs out of it. A leading `/` counts from the archive's root.
pub(super) fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Standard input copied into a temporary file (`$TMPDIR`), unlinked at once so that nothing
/// is left behind, since a tar must be read out of order.
fn spool_stdin(what: &str) -> Result<File> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        ".lade-stdin.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    let _ = std::fs::remove_file(&path);
    io::copy(&mut io::stdin().lock(), &mut file).map_err(|e| {
        Error::io(
            format!("{what}: copying standard input to {}", dir.display()),
            e,
        )
    })?;
    file.seek(SeekFrom::Start(0)).at(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_never_climb_out() {
        assert_eq!(normalise("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(
            normalise("/blobs/sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalise("a/.."), None);
        assert_eq!(normalise("../etc/passwd"), None);
        assert_eq!(normalise("a/../../b"), None);
    }

    #[test]
    fn links_are_followed_inside_the_archive() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "a/layer.tar", &b"hello"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        b.append_link(&mut l, "c/layer.tar", "../../etc/passwd")
            .unwrap();
        b.append_link(&mut l, "loop1", "loop2").unwrap();
        b.append_link(&mut l, "loop2", "loop1").unwrap();
        let bytes = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.tar");
        std::fs::write(&f, bytes).unwrap();
        let t = Tarball::index(File::open(&f).unwrap(), "t").unwrap();
        assert_eq!(t.read_small("b/layer.tar", 10).unwrap(), b"hello");
        assert!(!t.has("c/layer.tar"));
        assert!(!t.has("loop1"));
        let e = t.read_small("a/layer.tar", 2).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }
}
