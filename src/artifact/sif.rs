//! Apptainer's SIF images over `oras://`, packed as Apptainer packs them: one layer of type
//! `application/vnd.sylabs.sif.layer.v1.sif` titled with the file's name, under a config of
//! type `application/vnd.sylabs.sif.config.v1+json` holding `{}`. On pulling, the layer type
//! Singularity < 3.7 wrote with its typo (`appliciation/vnd.sylabs.sif.layer.tar`) is accepted
//! too and, as Apptainer does, the config type is not checked (versions disagreed on it).
//! Whether a file is a SIF at all is [`crate::squashfs::sif`]'s to say: it knows the format.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::TITLE;
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{OCI_MANIFEST, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::squashfs::sif::check_file;
use crate::storage::Storage;
use crate::storage::single_files::SingleFile;
use crate::transport::registry::Options;
use crate::transport::registry::referrers::Repository;

pub const SIF_LAYER: &str = "application/vnd.sylabs.sif.layer.v1.sif";
/// The prototype's misspelled type (hpcng/singularity issue 4437).
pub const SIF_LAYER_LEGACY: &str = "appliciation/vnd.sylabs.sif.layer.tar";
pub const SIF_CONFIG: &str = "application/vnd.sylabs.sif.config.v1+json";

pub fn is_sif_layer(media_type: &str) -> bool {
    media_type == SIF_LAYER || media_type == SIF_LAYER_LEGACY
}

/// `oras://REF` → the reference.
pub fn parse_oras(spec: &str) -> Option<Result<Reference>> {
    spec.strip_prefix("oras://").map(Reference::parse)
}

/// `lade copy FILE.sif oras://REF`: returns the manifest digest.
pub fn push(
    file: &Path,
    reference: &Reference,
    opts: &Options,
    progress: &Progress,
) -> Result<Digest> {
    check_file(file)?;
    let repo = Repository::open(reference, opts, None)?;
    let spec = super::FileSpec {
        path: file.to_path_buf(),
        media_type: SIF_LAYER.into(),
    };
    let layers = super::push_files(&repo, &[spec], progress)?;
    repo.put_blob_bytes(crate::sign::EMPTY_JSON, "SIF config")?;
    let empty = Digest::sha256_of(crate::sign::EMPTY_JSON);
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": SIF_CONFIG, "digest": empty.to_string(), "size": 2, "data": "e30="},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::json("SIF manifest", e))?;
    let m = RawManifest::new(bytes, Some(OCI_MANIFEST), None, "SIF manifest")?;
    repo.put_manifest(&m, reference.tag.as_deref().unwrap_or("latest"))?;
    Ok(m.digest)
}

/// The SIF layer of `oras://REF` (exactly one layer, of a SIF type).
fn sif_layer(repo: &Repository, reference: &Reference) -> Result<(RawManifest, Expected, String)> {
    let what = format!("oras://{reference}");
    let m = repo.named_manifest()?;
    let parsed = m.image()?;
    let [layer] = parsed.layers().as_slice() else {
        return Err(Error::invalid(
            &what,
            format!(
                "an ORAS SIF image has a single layer; this has {}",
                parsed.layers().len()
            ),
        ));
    };
    let mt = layer.media_type().to_string();
    if !is_sif_layer(&mt) {
        return Err(Error::invalid(
            &what,
            format!("layer type '{mt}' is not a SIF ({SIF_LAYER})"),
        ));
    }
    let title = layer
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TITLE))
        .cloned()
        .unwrap_or_else(|| "image.sif".into());
    Ok((m.clone(), crate::manifest::expected(layer)?, title))
}

/// `lade copy oras://REF FILE.sif`.
pub fn pull_to_file(
    reference: &Reference,
    dest: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Digest> {
    let repo = Repository::open(reference, opts, None)?;
    let (m, expected, _) = sif_layer(&repo, reference)?;
    let resp = repo.open_blob(&expected.digest)?;
    super::write_verified(
        resp,
        &expected,
        dest,
        &format!("oras://{reference}"),
        progress,
    )?;
    if let Err(e) = check_file(dest) {
        let _ = std::fs::remove_file(dest);
        return Err(e);
    }
    Ok(m.digest)
}

/// `lade pull oras://REF [NAME]`: the SIF file into the store as a blob, named `name`, where
/// a later `lade run NAME` finds it ([`Storage::single_files`]). Returns the record.
pub fn pull_to_store(
    storage: &Arc<Storage>,
    reference: &Reference,
    name: &Reference,
    opts: &Options,
    progress: &Progress,
) -> Result<SingleFile> {
    let repo = Repository::open(reference, opts, Some(storage.clone()))?;
    let (m, expected, _) = sif_layer(&repo, reference)?;
    let what = format!("SIF {} of oras://{reference}", expected.digest);
    if !storage.blobs().has(&expected.digest) {
        let resp = repo.open_blob(&expected.digest)?;
        let bar = progress.bytes(&format!("SIF {}", expected.digest.short()), expected.size);
        storage
            .blobs()
            .put(&expected, &mut bar.wrap_read(resp), &what)?;
        bar.finish("pulled");
    }
    let path = storage.blobs().path(&expected.digest);
    check_file(&path)?;
    storage.blobs().put_bytes(&m.bytes)?;
    let record = SingleFile {
        name: name.to_string(),
        size: expected.size.unwrap_or_default(),
        blob: expected.digest,
        manifest: m.digest,
        source: format!("oras://{reference}"),
    };
    storage.single_files().put(&record)?;
    Ok(record)
}
