//! ORAS artifacts in registries, compatible with the ORAS CLI and oras-py: files pushed as the
//! layers of an OCI 1.1 manifest (`artifactType`, the empty config
//! `application/vnd.oci.empty.v1+json`), each named by its `org.opencontainers.image.title`
//! annotation; or, for a registry that refuses that, the OCI 1.0 packing ORAS falls back to
//! (the artifact type as the config's media type). `attach` makes the manifest a referrer of
//! an image (its `subject`). Pulling writes each titled layer into a directory, refusing titles
//! that would land outside it.
//!
//! - [`sif`]: Apptainer's SIF images over `oras://`.

pub mod sif;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::ImageManifest;
use serde_json::{Value, json};

use crate::digest::{Digest, Expected, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{OCI_MANIFEST, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::sign::artifact_manifest_json;
use crate::transport::registry::Options;
use crate::transport::registry::referrers::Repository;

/// ORAS CLI's defaults: the artifact type when none is given, a file's media type.
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";
pub const DEFAULT_FILE_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// ORAS's 1.0 packing without an artifact type.
pub const UNKNOWN_CONFIG_TYPE: &str = "application/vnd.unknown.config.v1+json";
pub const TITLE: &str = "org.opencontainers.image.title";
/// ORAS marks a directory packed as a tarball with this.
const UNPACK: &str = "io.deis.oras.content.unpack";

/// A file to push, with its media type (`FILE[:TYPE]` on the command line, as ORAS).
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: PathBuf,
    pub media_type: String,
}

impl FileSpec {
    /// `FILE` or `FILE:TYPE` (a media type has a `/`, which tells it from a path's colon).
    pub fn parse(s: &str) -> FileSpec {
        if let Some((p, t)) = s.rsplit_once(':')
            && t.contains('/')
            && !p.is_empty()
        {
            return FileSpec {
                path: p.into(),
                media_type: t.into(),
            };
        }
        FileSpec {
            path: s.into(),
            media_type: DEFAULT_FILE_TYPE.into(),
        }
    }
}

/// Uploads the files (streamed; a file is never held in memory) and returns their layer
/// descriptors, titled by file name.
fn push_files(repo: &Repository, files: &[FileSpec], progress: &Progress) -> Result<Vec<Value>> {
    let mut layers = Vec::new();
    for f in files {
        let what = f.path.display().to_string();
        let title = f
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid(&what, "names no file"))?
            .to_string();
        let (digest, size) = hash_file(&f.path)?;
        let expected = Expected {
            digest: digest.clone(),
            size: Some(size),
        };
        let mut file = File::open(&f.path).at(&f.path)?;
        let bar = progress.bytes(&title, Some(size));
        repo.put_blob(&expected, &mut bar.wrap_read(&mut file), &what)?;
        bar.finish("pushed");
        layers.push(json!({
            "mediaType": f.media_type,
            "digest": digest.to_string(),
            "size": size,
            "annotations": {TITLE: title},
        }));
    }
    Ok(layers)
}

fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = crate::digest::Hasher::new(crate::digest::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finish(), size))
}

/// Puts an artifact manifest over `layers`, OCI 1.1 first and, if the registry refuses that
/// manifest, the 1.0 packing. Returns the manifest and whether it is the 1.0 fallback.
fn put_artifact(
    repo: &Repository,
    artifact_type: &str,
    layers: Vec<Value>,
    subject: Option<&RawManifest>,
    tag: Option<&str>,
    progress: &Progress,
) -> Result<(RawManifest, bool)> {
    repo.put_blob_bytes(crate::sign::EMPTY_JSON, "empty config")?;
    let mut fallback = false;
    loop {
        let bytes = artifact_manifest_json(
            artifact_type,
            layers.clone(),
            subject.map(RawManifest::descriptor),
            !fallback,
        )?;
        let m = RawManifest::new(bytes, Some(OCI_MANIFEST), None, "artifact manifest")?;
        let result = match subject {
            Some(s) => repo
                .add_referrer(&m, &crate::attach::referrer_descriptor(&m)?, &s.digest)
                .map(drop),
            None => repo.put_manifest(&m, tag.unwrap_or("latest")).map(drop),
        };
        match result {
            Ok(()) => return Ok((m, fallback)),
            Err(Error::Unsupported { why, .. }) if !fallback => {
                progress.warn(&format!(
                    "{}: {why}; pushing the OCI 1.0 packing instead",
                    repo.describe()
                ));
                fallback = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `lade artifact push REF FILE…`: returns the manifest digest.
pub fn push(
    reference: &Reference,
    files: &[FileSpec],
    artifact_type: Option<&str>,
    opts: &Options,
    progress: &Progress,
) -> Result<Digest> {
    let repo = Repository::open(reference, opts, None)?;
    let layers = push_files(&repo, files, progress)?;
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let (m, _) = put_artifact(
        &repo,
        artifact_type.unwrap_or(DEFAULT_ARTIFACT_TYPE),
        layers,
        None,
        Some(tag),
        progress,
    )?;
    Ok(m.digest)
}

/// `lade artifact attach --subject REF FILE…`: returns the referrer's digest and how it was
/// made findable.
pub fn attach(
    subject: &Reference,
    files: &[FileSpec],
    artifact_type: Option<&str>,
    opts: &Options,
    progress: &Progress,
) -> Result<Digest> {
    let repo = Repository::open(subject, opts, None)?;
    let s = repo.named_manifest()?;
    let layers = push_files(&repo, files, progress)?;
    let (m, _) = put_artifact(
        &repo,
        artifact_type.unwrap_or(DEFAULT_ARTIFACT_TYPE),
        layers,
        Some(&s),
        None,
        progress,
    )?;
    Ok(m.digest)
}

/// One referrer, for `lade artifact list`.
pub struct Listed {
    pub digest: String,
    pub artifact_type: String,
    pub files: Vec<String>,
}

/// `lade artifact list REF`: the subject's digest and its referrers.
pub fn list(reference: &Reference, opts: &Options) -> Result<(Digest, Vec<Listed>)> {
    let repo = Repository::open(reference, opts, None)?;
    let head = repo
        .head(&repo.named())?
        .ok_or_else(|| Error::ImageNotFound(format!("docker://{reference}")))?;
    let (_, descs) = repo.referrers(&head.digest)?;
    let mut out = Vec::new();
    for d in descs {
        let mut files = Vec::new();
        if let Ok(e) = crate::manifest::expected(&d)
            && let Ok(Some(m)) = repo.manifest(&e.digest.to_string())
            && let Ok(parsed) = m.image()
        {
            files = titles(&parsed);
        }
        out.push(Listed {
            digest: d.digest().to_string(),
            artifact_type: d
                .artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            files,
        });
    }
    Ok((head.digest, out))
}

fn titles(m: &ImageManifest) -> Vec<String> {
    m.layers()
        .iter()
        .filter_map(|l| l.annotations().as_ref()?.get(TITLE).cloned())
        .collect()
}

/// Whether a manifest is an image (its config is an image config) rather than an artifact,
/// and if an artifact, a one-line description of it.
pub fn describe_artifact(m: &RawManifest) -> Option<String> {
    let parsed = m.image().ok()?;
    let config = parsed.config().media_type().to_string();
    // Image configs, and the untyped config some old image builders wrote.
    let image_configs = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
        "application/octet-stream",
        "",
    ];
    let v: Value = serde_json::from_slice(&m.bytes).ok()?;
    if image_configs.contains(&config.as_str()) && v["artifactType"].is_null() {
        return None;
    }
    let kind = v["artifactType"].as_str().unwrap_or(&config).to_string();
    let files = titles(&parsed);
    if parsed
        .layers()
        .iter()
        .any(|l| sif::is_sif_layer(l.media_type().as_ref()))
    {
        return Some(format!("a SIF image (Apptainer's, artifact type {kind})"));
    }
    Some(format!(
        "an OCI artifact of type {kind} ({} file{}{})",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if files.is_empty() {
            String::new()
        } else {
            format!(": {}", files.join(", "))
        }
    ))
}

/// Where a layer titled `title` goes under `dir`; a title that is absolute or climbs out of
/// `dir` is refused (ORAS refuses them too unless told otherwise).
pub fn safe_destination(dir: &Path, title: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::invalid(format!("file title '{title}'"), why.to_string());
    if title.is_empty() {
        return Err(bad("is empty"));
    }
    let p = Path::new(title);
    let mut out = dir.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("climbs out of the directory ('..')")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(
                    "is an absolute path; refusing to write outside the directory",
                ));
            }
        }
    }
    if out == dir {
        return Err(bad("names the directory itself"));
    }
    Ok(out)
}

/// `lade artifact pull REF [DIR]`: writes each titled file into `dir` (created if absent);
/// returns the files written. Every title is checked before anything is written.
pub fn pull(
    reference: &Reference,
    dir: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Vec<PathBuf>> {
    let repo = Repository::open(reference, opts, None)?;
    let parsed = repo.named_manifest()?.image()?;
    let mut plan = Vec::new();
    for l in parsed.layers() {
        let Some(title) = l.annotations().as_ref().and_then(|a| a.get(TITLE)) else {
            progress.warn(&format!(
                "docker://{reference}: skipping layer {} (no {TITLE} annotation)",
                l.digest()
            ));
            continue;
        };
        if l.annotations()
            .as_ref()
            .and_then(|a| a.get(UNPACK))
            .is_some()
        {
            return Err(Error::unsupported(
                format!("docker://{reference}: '{title}'"),
                "a directory ORAS packed as a tarball; unpacking those is not supported yet",
            ));
        }
        let dest = safe_destination(dir, title)?;
        plan.push((dest, crate::manifest::expected(l)?));
    }
    if plan.is_empty() {
        return Err(Error::invalid(
            format!("docker://{reference}"),
            "has no titled files to pull",
        ));
    }
    fs::create_dir_all(dir).at(dir)?;
    let mut written = Vec::new();
    for (dest, expected) in plan {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let what = format!("{} of docker://{reference}", dest.display());
        let resp = repo.open_blob(&expected.digest)?;
        write_verified(resp, &expected, &dest, &what, progress)?;
        written.push(dest);
    }
    Ok(written)
}

/// Streams `data` into `dest` through a verifying reader, via a temporary file beside it.
pub fn write_verified(
    data: impl Read,
    expected: &Expected,
    dest: &Path,
    what: &str,
    progress: &Progress,
) -> Result<()> {
    let tmp = dest.with_file_name(format!(
        ".{}.lade-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut out = File::create(&tmp).at(&tmp)?;
        let bar = progress.bytes(
            &dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            expected.size,
        );
        let mut reader = VerifyingReader::new(bar.wrap_read(data), expected.clone(), what);
        io::copy(&mut reader, &mut out).map_err(|e| Error::io(what, e))?;
        bar.finish("pulled");
        fs::rename(&tmp, dest).at(dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_stay_inside() {
        let d = Path::new("/out");
        assert_eq!(
            safe_destination(d, "a.txt").unwrap(),
            Path::new("/out/a.txt")
        );
        assert_eq!(
            safe_destination(d, "sub/b").unwrap(),
            Path::new("/out/sub/b")
        );
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "."] {
            assert!(safe_destination(d, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_specs() {
        let f = FileSpec::parse("a.txt:text/plain");
        assert_eq!(
            (f.path.to_str(), f.media_type.as_str()),
            (Some("a.txt"), "text/plain")
        );
        let f = FileSpec::parse("dir:with:colons");
        assert_eq!(f.media_type, DEFAULT_FILE_TYPE);
    }
}
