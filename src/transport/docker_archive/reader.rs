//! Reading one image out of a docker archive: see the module's documentation.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use oci_spec::image::ImageManifest;
use serde::Serialize;

use super::tarball::Tarball;
use super::{
    ArchiveRef, MANIFEST_JSON, MAX_CONFIG, MAX_MANIFEST_JSON, ManifestItem, checked_path, holdings,
    parse_manifest_json,
};
use crate::compression::{Compression, Magic};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::manifest::{self, Kind, OCI_MANIFEST, RawManifest};
use crate::reference::Reference;
use crate::transport::{ImageSource, MAX_MANIFEST_BYTES, layout};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub struct DockerArchiveSource {
    tar: Tarball,
    what: String,
    top: RawManifest,
    /// Where each blob of the image is in the archive.
    blobs: HashMap<Digest, String>,
    names: Vec<Reference>,
}

impl DockerArchiveSource {
    /// Opens the image `name` chooses in the archive `file` (`-`: standard input).
    pub fn open(file: &Path, name: Option<&ArchiveRef>) -> Result<DockerArchiveSource> {
        let base = format!("docker-archive:{}", file.display());
        let tar = Tarball::open(file, &base)?;
        if !tar.has(MANIFEST_JSON) {
            let hint = if tar.has("index.json") {
                "; it is an OCI archive: read it as oci-archive:FILE"
            } else {
                ""
            };
            return Err(Error::invalid(
                &base,
                format!("not a docker archive (no {MANIFEST_JSON}){hint}"),
            ));
        }
        let items = parse_manifest_json(&tar.read_small(MANIFEST_JSON, MAX_MANIFEST_JSON)?, &base)?;
        let item = choose(&items, name, &base)?;
        let what = match name {
            Some(n) => format!("{base}:{n}"),
            None => base,
        };
        let names = match name {
            Some(ArchiveRef::Tag(r)) => vec![r.clone()],
            _ => item.references(),
        };
        let config_path = checked_path(&item.config, &what)?;
        let layer_paths = item
            .layers
            .iter()
            .map(|l| checked_path(l, &what))
            .collect::<Result<Vec<_>>>()?;
        let config = tar.read_small(&config_path, MAX_CONFIG)?;
        let config_digest = Digest::sha256_of(&config);
        let (top, mut blobs) = match own_manifest(&tar, &config_digest, &layer_paths, &what)? {
            Some(found) => found,
            None => made_manifest(&tar, &config, &layer_paths, &what)?,
        };
        blobs.insert(config_digest, config_path);
        Ok(DockerArchiveSource {
            tar,
            what,
            top,
            blobs,
            names,
        })
    }
}

/// The entry `name` chooses, or the only one.
fn choose<'a>(
    items: &'a [ManifestItem],
    name: Option<&ArchiveRef>,
    what: &str,
) -> Result<&'a ManifestItem> {
    match name {
        Some(ArchiveRef::Index(n)) => items.get(*n).ok_or_else(|| {
            Error::ImageNotFound(format!("@{n} in {what}; it holds: {}", holdings(items)))
        }),
        Some(ArchiveRef::Tag(r)) => items
            .iter()
            .find(|it| it.references().contains(r))
            .ok_or_else(|| {
                Error::ImageNotFound(format!(
                    "'{}' in {what}; it holds: {}",
                    r.familiar(),
                    holdings(items)
                ))
            }),
        None => match items {
            [one] => Ok(one),
            [] => Err(Error::ImageNotFound(format!("{what} holds no image"))),
            _ => Err(Error::invalid(
                what,
                format!(
                    "holds {} images, so name one as {what}:NAME:TAG or {what}:@N; it holds: {}",
                    items.len(),
                    holdings(items)
                ),
            )),
        },
    }
}

/// The image's own manifest, when the archive's `index.json` has one with this config whose
/// layers are exactly the entry's layer files: its digest is then the image's real one. Docker
/// 25.0's first releases wrote manifests without their layers; those do not match, and the
/// image is read from `manifest.json` alone.
fn own_manifest(
    tar: &Tarball,
    config: &Digest,
    layer_paths: &[String],
    what: &str,
) -> Result<Option<(RawManifest, HashMap<Digest, String>)>> {
    if !tar.has("index.json") {
        return Ok(None);
    }
    let Ok(index) = layout::parse_index(&tar.read_small("index.json", MAX_MANIFEST_BYTES)?, what)
    else {
        return Ok(None);
    };
    let read = |desc: &oci_spec::image::Descriptor| -> Option<RawManifest> {
        layout::read_manifest(desc, what, |d, size| {
            tar.read_small(&layout::blob_path(d), size)
        })
        .ok()
    };
    // Image manifests listed at the top, and one level down in indexes (a multi-platform
    // image saved by Docker with the containerd image store).
    let mut candidates = Vec::new();
    for desc in index.manifests() {
        let Some(m) = read(desc) else { continue };
        match m.kind {
            Kind::Image => candidates.push(m),
            Kind::Index => {
                if let Ok(inner) = m.index() {
                    candidates.extend(inner.manifests().iter().filter_map(read));
                }
            }
        }
    }
    for m in candidates {
        let Ok(parsed) = m.image() else { continue };
        if let Some(blobs) = matching_blobs(&parsed, config, layer_paths) {
            return Ok(Some((m, blobs)));
        }
    }
    Ok(None)
}

/// The manifest's layers by digest, if its config is `config` and its layers are stored at
/// exactly `layer_paths`.
fn matching_blobs(
    parsed: &ImageManifest,
    config: &Digest,
    layer_paths: &[String],
) -> Option<HashMap<Digest, String>> {
    if Digest::try_from(parsed.config().digest()).ok()? != *config
        || parsed.layers().len() != layer_paths.len()
    {
        return None;
    }
    let mut blobs = HashMap::new();
    for (d, path) in parsed.layers().iter().zip(layer_paths) {
        let digest = Digest::try_from(d.digest()).ok()?;
        if layout::blob_path(&digest) != *path {
            return None;
        }
        blobs.insert(digest, path.clone());
    }
    Some(blobs)
}

#[derive(Serialize)]
struct MadeManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: MadeDescriptor,
    layers: Vec<MadeDescriptor>,
}

#[derive(Serialize)]
struct MadeDescriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: u64,
}

/// An OCI manifest for an entry that has none: each layer described as stored. A plain tar's
/// digest is its diff-ID (checked as it is copied); a compressed layer is hashed here, once.
fn made_manifest(
    tar: &Tarball,
    config: &[u8],
    layer_paths: &[String],
    what: &str,
) -> Result<(RawManifest, HashMap<Digest, String>)> {
    let config_what = format!("{what}: config");
    let parsed = manifest::parse_config(config, &config_what)?;
    let diff_ids = manifest::diff_ids(&parsed, &config_what)?;
    if diff_ids.len() != layer_paths.len() {
        return Err(Error::invalid(
            what,
            format!(
                "{MANIFEST_JSON} lists {} layers but the config lists {} diff-IDs",
                layer_paths.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut blobs = HashMap::new();
    let mut layers = Vec::with_capacity(layer_paths.len());
    for (path, diff_id) in layer_paths.iter().zip(diff_ids) {
        let layer_what = format!("{what}: {path}");
        let mut member = tar.open_member(path)?;
        let compression = Magic::read(&mut member)
            .map_err(|e| Error::io(&layer_what, e))?
            .compression();
        let digest = match compression {
            Compression::None => diff_id,
            _ => hash(tar.open_member(path)?, &layer_what)?,
        };
        layers.push(MadeDescriptor {
            media_type: compression.media_type(),
            digest: digest.to_string(),
            size: tar.size(path)?,
        });
        blobs.insert(digest, path.clone());
    }
    let made = MadeManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: MadeDescriptor {
            media_type: OCI_CONFIG,
            digest: Digest::sha256_of(config).to_string(),
            size: config.len() as u64,
        },
        layers,
    };
    let bytes = serde_json::to_vec(&made).map_err(|e| Error::json(what, e))?;
    let top = RawManifest::new(bytes, Some(OCI_MANIFEST), None, what)?;
    Ok((top, blobs))
}

fn hash(mut r: impl Read, what: &str) -> Result<Digest> {
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(what, e))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

impl ImageSource for DockerArchiveSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let path = match self.blobs.get(digest) {
            Some(p) => p.clone(),
            // Other blobs of an OCI layout in the archive (an index's manifests).
            None => layout::blob_path(digest),
        };
        if !self.tar.has(&path) {
            return Err(Error::invalid(
                &self.what,
                format!("blob {digest} is missing"),
            ));
        }
        Ok(Box::new(self.tar.open_member(&path)?))
    }

    fn names(&self) -> Vec<Reference> {
        self.names.clone()
    }
}
