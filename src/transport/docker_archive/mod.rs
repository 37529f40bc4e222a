//! `docker-archive:FILE[:NAME:TAG|:@N]`: the tar files `docker save` writes and `docker load`
//! reads (`FILE` `-`: standard input or output).
//!
//! Such an archive lists its images in `manifest.json`: each entry names its config file, its
//! layer files (bottom first) and its tags (`RepoTags`, as `docker load` sets them). Docker
//! before 25 wrote `<id>/layer.tar` and `<id>.json` files, skopeo writes `<diffid>.tar`, and
//! Docker 25+ also writes an OCI layout in the same tar (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) with `manifest.json` pointing into its blobs.
//!
//! - Reading ([`DockerArchiveSource`]): the entry is chosen by tag, by position (`@N`, from
//!   0) or as the only one. When the archive's `index.json` has the image's own manifest
//!   (same config, same layer files) it is read as is, so its digest survives; otherwise a
//!   manifest is made (an OCI manifest, its layers described as they are stored: an
//!   uncompressed layer's digest is its diff-ID). The config is always the file's exact bytes,
//!   so the image ID is kept either way.
//! - Writing ([`DockerArchiveDestination`]): Docker 25's form, with the blobs exactly as the
//!   source has them (compressed layers stay compressed: `docker load` and skopeo decompress
//!   them), so every digest survives a round trip. An existing archive is added to, as an
//!   `oci:` layout is: its other images stay, a tag given to the new image leaves the image
//!   that had it, and an image left with no tag is dropped with the files only it used.
//!
//! Paths in `manifest.json` that climb out of the archive (or are absolute) are refused.

mod reader;
mod tarball;
mod writer;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use reader::DockerArchiveSource;
pub use writer::DockerArchiveDestination;

use crate::error::{Error, Result};
use crate::reference::Reference;

/// Which image of an archive: `NAME:TAG` (one of its `RepoTags`) or `@N` (its position in
/// `manifest.json`, from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRef {
    Tag(Reference),
    Index(usize),
}

impl ArchiveRef {
    /// Parses what follows `docker-archive:FILE:`.
    pub fn parse(s: &str) -> std::result::Result<ArchiveRef, String> {
        if let Some(n) = s.strip_prefix('@') {
            return n
                .parse::<usize>()
                .map(ArchiveRef::Index)
                .map_err(|_| format!("'@{n}' is not an image's position (@0, @1, ...)"));
        }
        let r = Reference::parse(s).map_err(|e| e.to_string())?;
        if r.digest.is_some() {
            return Err(format!(
                "'{s}': a docker archive names images by NAME:TAG, not by digest"
            ));
        }
        Ok(ArchiveRef::Tag(r))
    }
}

impl fmt::Display for ArchiveRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveRef::Tag(r) => f.write_str(&r.familiar()),
            ArchiveRef::Index(n) => write!(f, "@{n}"),
        }
    }
}

/// One entry of `manifest.json`, with any fields lade does not know kept as they were.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    /// `null` in archives of untagged images written by Docker.
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl ManifestItem {
    fn tags(&self) -> &[String] {
        self.repo_tags.as_deref().unwrap_or_default()
    }

    /// The tags that parse as references (with a tag), as lade compares them.
    fn references(&self) -> Vec<Reference> {
        self.tags()
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .filter(|r| r.tag.is_some())
            .collect()
    }
}

const MANIFEST_JSON: &str = "manifest.json";
/// Largest `manifest.json` read (it lists every image of the archive).
const MAX_MANIFEST_JSON: u64 = 16 << 20;
/// Largest image config read (skopeo's limit is 4 MiB).
const MAX_CONFIG: u64 = 16 << 20;

/// Parses `manifest.json`.
fn parse_manifest_json(bytes: &[u8], what: &str) -> Result<Vec<ManifestItem>> {
    serde_json::from_slice(bytes).map_err(|e| Error::json(format!("{what}/{MANIFEST_JSON}"), e))
}

/// A `manifest.json` path, normalised, or an error if it leaves the archive.
fn checked_path(path: &str, what: &str) -> Result<String> {
    let inside = !path.starts_with('/');
    match tarball::normalise(path) {
        Some(p) if inside => Ok(p),
        _ => Err(Error::invalid(
            what,
            format!("{MANIFEST_JSON} names '{path}', which is outside the archive; refused"),
        )),
    }
}

/// How an image is named in `RepoTags`: Docker's short form, with its tag (`busybox:latest`,
/// `localhost:5000/x:1`); `None` for a reference without a tag.
fn repo_tag(r: &Reference) -> Option<String> {
    r.tag.as_ref()?;
    Some(
        Reference {
            digest: None,
            ..r.clone()
        }
        .familiar(),
    )
}

/// "busybox:1 (@0), <untagged> (@1)", for errors.
fn holdings(items: &[ManifestItem]) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let tags = if it.tags().is_empty() {
                "<untagged>".to_string()
            } else {
                it.tags().join(" ")
            };
            format!("{tags} (@{i})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_refs_parse() {
        assert_eq!(ArchiveRef::parse("@2").unwrap(), ArchiveRef::Index(2));
        assert!(ArchiveRef::parse("@x").is_err());
        let ArchiveRef::Tag(r) = ArchiveRef::parse("localhost:5000/a/b:1").unwrap() else {
            panic!("not a tag");
        };
        assert_eq!(repo_tag(&r).as_deref(), Some("localhost:5000/a/b:1"));
        let ArchiveRef::Tag(r) = ArchiveRef::parse("busybox").unwrap() else {
            panic!("not a tag");
        };
        assert_eq!(repo_tag(&r).as_deref(), Some("busybox:latest"));
        assert!(ArchiveRef::parse(&format!("a@sha256:{}", "0".repeat(64))).is_err());
    }

    #[test]
    fn manifest_paths_stay_inside() {
        assert_eq!(
            checked_path("./abc/layer.tar", "a").unwrap(),
            "abc/layer.tar"
        );
        for bad in ["../x/layer.tar", "/etc/passwd", "a/../../b", ""] {
            let e = checked_path(bad, "a").unwrap_err().to_string();
            assert!(e.contains("outside the archive"), "{bad}: {e}");
        }
    }

    #[test]
    fn manifest_items_keep_unknown_fields_and_null_tags() {
        let json = br#"[{"Config":"c.json","RepoTags":null,"Layers":["a/layer.tar"],"Parent":"sha256:x"}]"#;
        let items = parse_manifest_json(json, "t").unwrap();
        assert!(items[0].tags().is_empty());
        let back = serde_json::to_string(&items).unwrap();
        assert!(back.contains(r#""Parent":"sha256:x""#), "{back}");
    }
}
