//! The tag lock file, `lade-tags.lock`, in a project directory (as Maelstrom's
//! `maelstrom-container-tags.lock`): the first time a pull resolves a registry tag, the
//! manifest digest it found is pinned here, and from then on that tag is never resolved
//! again: the pinned digest is pulled instead, so everyone sharing the file (commit it) gets
//! the same images. Removing a tag's line makes the next pull resolve it afresh; `--locked`
//! makes an unpinned tag an error instead.
//!
//! lade uses `./lade-tags.lock` when it exists; create an empty file to start pinning. The
//! format is TOML, one pin per line:
//!
//! ```toml
//! version = 1
//!
//! [tags]
//! "docker.io/library/alpine:3.20" = "sha256:…"
//! ```
//!
//! A file that does not parse is an error, never rewritten: it may hold pins someone relies
//! on. Writes are atomic (a temporary sibling, then rename) under an exclusive `flock` of the
//! directory, re-reading the file first, so concurrent pulls in one project lose no pin.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;

pub const FILE_NAME: &str = "lade-tags.lock";
pub const FORMAT_VERSION: i64 = 1;

pub struct TagLock {
    path: PathBuf,
    pins: Mutex<BTreeMap<String, Digest>>,
}

impl TagLock {
    /// The lock file of the project in `dir`, if there is one.
    pub fn open_in(dir: &Path) -> Result<Option<TagLock>> {
        let path = dir.join(FILE_NAME);
        match read(&path)? {
            Some(pins) => Ok(Some(TagLock {
                path,
                pins: Mutex::new(pins),
            })),
            None => Ok(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key a tagged reference is pinned under: its full name and tag. References with a
    /// digest need no pin.
    pub fn key(r: &Reference) -> Option<String> {
        match (&r.tag, &r.digest) {
            (Some(tag), None) => Some(format!("{}:{tag}", r.name())),
            _ => None,
        }
    }

    pub fn get(&self, r: &Reference) -> Option<Digest> {
        let key = TagLock::key(r)?;
        self.pins.lock().ok()?.get(&key).cloned()
    }

    /// Pins `r`'s tag to `digest` and writes the file. A pin another process wrote meanwhile
    /// for the same tag is kept (the first resolution wins) and returned.
    pub fn pin(&self, r: &Reference, digest: &Digest) -> Result<Digest> {
        let Some(key) = TagLock::key(r) else {
            return Ok(digest.clone());
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let dir_fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io_path(dir, e.into()))?;
        rustix::fs::flock(&dir_fd, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io_path(dir, e.into()))?;
        let mut pins = read(&self.path)?.unwrap_or_default();
        let pinned = pins.entry(key).or_insert_with(|| digest.clone()).clone();
        crate::fsutil::write_atomic(&self.path, render(&pins).as_bytes())?;
        if let Ok(mut mine) = self.pins.lock() {
            *mine = pins;
        }
        Ok(pinned)
    }
}

/// Reads and checks a lock file; `None` if it does not exist.
fn read(path: &Path) -> Result<Option<BTreeMap<String, Digest>>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(bad(path, "not UTF-8 text; fix or remove it"));
        }
        Err(e) => return Err(Error::io_path(path, e)),
    };
    parse(&text, path).map(Some)
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::invalid(format!("tag lock file {}", path.display()), why)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, Digest>> {
    let file: File = toml::from_str(text).map_err(|e| {
        let msg = e.message().replace('\n', " ");
        let at = e
            .span()
            .map(|s| {
                format!(
                    " at line {}",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        bad(
            path,
            format!("does not parse{at}: {msg} (fix or remove it; lade never overwrites it)"),
        )
    })?;
    match file.version {
        Some(FORMAT_VERSION) => {}
        // An empty file (or comments only) is a new lock file.
        None if file.tags.is_empty() => {}
        None => return Err(bad(path, "no 'version' (this lade writes version 1)")),
        Some(v) => {
            return Err(bad(
                path,
                format!("format version {v} is not known to this lade (it knows {FORMAT_VERSION})"),
            ));
        }
    }
    let mut pins = BTreeMap::new();
    for (key, value) in file.tags {
        let r = Reference::parse(&key).map_err(|e| bad(path, format!("tag \"{key}\": {e}")))?;
        let canonical = TagLock::key(&r).ok_or_else(|| {
            bad(
                path,
                format!("\"{key}\" is not a tagged reference without a digest"),
            )
        })?;
        let digest: Digest = value
            .parse()
            .map_err(|e| bad(path, format!("tag \"{key}\": {e}")))?;
        pins.insert(canonical, digest);
    }
    Ok(pins)
}

pub(crate) fn render(pins: &BTreeMap<String, Digest>) -> String {
    let mut out = String::from(
        "# lade-tags.lock: image tags pinned to the manifest digests lade first resolved them\n\
         # to. Commit it to share the pins; delete a tag's line to resolve that tag again.\n",
    );
    out.push_str(&format!("version = {FORMAT_VERSION}\n\n[tags]\n"));
    for (k, d) in pins {
        // Reference and digest characters need no escaping inside a TOML basic string.
        out.push_str(&format!("\"{k}\" = \"{d}\"\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn round_trip_and_normalised_keys() {
        let p = Path::new("x");
        let pins = parse(
            &format!("version = 1\n[tags]\n\"alpine:3\" = \"{D1}\"\n"),
            p,
        )
        .unwrap();
        assert_eq!(pins.len(), 1);
        assert!(pins.contains_key("docker.io/library/alpine:3"));
        let text = render(&pins);
        assert_eq!(parse(&text, p).unwrap(), pins);
        assert_eq!(text.lines().filter(|l| l.contains("sha256:")).count(), 1);
    }

    #[test]
    fn empty_is_new() {
        assert!(parse("", Path::new("x")).unwrap().is_empty());
        assert!(parse("# nothing yet\n", Path::new("x")).unwrap().is_empty());
    }

    #[test]
    fn clear_errors() {
        let p = Path::new("/p/lade-tags.lock");
        for (text, want) in [
            ("version = 2\n", "format version 2"),
            ("[tags]\n\"a:1\" = \"sha256:1\"\n", "no 'version'"),
            ("version = 1\n[tags]\n\"a:1\" = \"md5:1\"\n", "tag \"a:1\""),
            (
                "version = 1\n[tags]\n\"a@sha256:1\" = \"x\"\n",
                "a@sha256:1",
            ),
            ("version = 1\n[tags\n", "does not parse at line 2"),
            ("version = 1\nother = 3\n", "does not parse"),
        ] {
            let e = parse(text, p).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("/p/lade-tags.lock"),
                "{text:?}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn pin_keeps_first_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TagLock::open_in(dir.path()).unwrap().is_none());
        fs::write(dir.path().join(FILE_NAME), "").unwrap();
        let lock = TagLock::open_in(dir.path()).unwrap().unwrap();
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(lock.get(&r), None);
        let d1: Digest = D1.parse().unwrap();
        let d2: Digest = D2.parse().unwrap();
        assert_eq!(lock.pin(&r, &d1).unwrap(), d1);
        // Another process pinned it first: that pin wins.
        let other = TagLock::open_in(dir.path()).unwrap().unwrap();
        assert_eq!(other.pin(&r, &d2).unwrap(), d1);
        assert_eq!(other.get(&r), Some(d1.clone()));
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.contains(&format!("\"localhost:5000/a/b:v1\" = \"{D1}\"")),
            "{text}"
        );
        // Digest references are never pinned.
        let by_digest = r.with_digest(d2.clone());
        assert_eq!(lock.pin(&by_digest, &d2).unwrap(), d2);
        assert_eq!(lock.get(&by_digest), None);
    }
}
