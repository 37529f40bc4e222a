//! `lade inspect`: what `skopeo inspect` shows of an image, read from any transport through
//! its [`ImageSource`]: the manifest and config are fetched (and verified), never the layers.
//! The report's field names are skopeo's, so scripts written for one read the other.

use std::io::Read;

use serde::Serialize;

use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{self, Kind, RawManifest};
use crate::platform::{self, ArchChoice};
use crate::transport::ImageSource;

/// Largest config read.
const MAX_CONFIG: u64 = 16 << 20;

/// An image as fetched for inspection: the top manifest (an index, for a multi-platform
/// image), the platform's image manifest, and its config's exact bytes.
pub struct Inspection {
    pub top: RawManifest,
    pub image: RawManifest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
}

/// Fetches what [`report`] needs; an index is resolved to `arch`'s image, as a pull would.
pub fn fetch(src: &dyn ImageSource, arch: &ArchChoice) -> Result<Inspection> {
    let top = src.top_manifest()?;
    let what = src.describe();
    let image = match top.kind {
        Kind::Image => top.clone(),
        Kind::Index => {
            let index = top.index()?;
            let desc = platform::select(&index, arch, &what)?;
            let child = src.manifest(&manifest::expected(desc)?)?;
            if child.kind != Kind::Image {
                return Err(Error::unsupported(&what, "an index nested in an index"));
            }
            child
        }
    };
    let parsed = image.image()?;
    let expected = manifest::expected(parsed.config())?;
    let config_what = format!("config {} of {what}", expected.digest);
    if expected.size.is_some_and(|s| s > MAX_CONFIG) {
        return Err(Error::invalid(&config_what, "too large"));
    }
    let mut config = Vec::new();
    src.open_blob(&expected.digest)?
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut config)
        .map_err(|e| Error::io(&config_what, e))?;
    check(&config, &expected, &config_what)?;
    Ok(Inspection {
        top,
        image,
        config,
        config_digest: expected.digest,
    })
}

fn check(bytes: &[u8], expected: &Expected, what: &str) -> Result<()> {
    let actual = Digest::of_bytes(expected.digest.algorithm(), bytes);
    if actual != expected.digest {
        return Err(Error::invalid(
            what,
            format!(
                "digest mismatch: expected {}, got {actual}",
                expected.digest
            ),
        ));
    }
    Ok(())
}

/// `skopeo inspect`'s report, plus the image ID.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `registry/repository`, for an image named by a reference.
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The digest of the top manifest (the index's, for a multi-platform image), as skopeo.
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "DockerVersion")]
    pub docker_version: String,
    #[serde(rename = "Labels")]
    pub labels: Option<serde_json::Value>,
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "Variant", skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "Os")]
    pub os: String,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "LayersData")]
    pub layers_data: Vec<LayerData>,
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    /// The config's digest, which Docker calls the image ID (lade's addition).
    #[serde(rename = "ImageID")]
    pub image_id: String,
}

#[derive(Debug, Serialize)]
pub struct LayerData {
    #[serde(rename = "MIMEType")]
    pub mime_type: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Annotations")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

/// The report on `ins`, named `name` and tagged `repo_tags` (which the caller knows).
pub fn report(ins: &Inspection, name: Option<String>, repo_tags: Vec<String>) -> Result<Report> {
    let what = format!("config {}", ins.config_digest);
    let config: serde_json::Value =
        serde_json::from_slice(&ins.config).map_err(|e| Error::json(&what, e))?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let inner = &config["config"];
    let env = inner["Env"]
        .as_array()
        .map(|a| a.iter().filter_map(text).collect())
        .unwrap_or_default();
    let labels = Some(inner["Labels"].clone()).filter(|l| l.is_object());
    let parsed = ins.image.image()?;
    let layers_data: Vec<LayerData> = parsed
        .layers()
        .iter()
        .map(|d| LayerData {
            mime_type: d.media_type().to_string(),
            digest: d.digest().to_string(),
            size: d.size(),
            annotations: d.annotations().clone(),
        })
        .collect();
    Ok(Report {
        name,
        digest: ins.top.digest.to_string(),
        repo_tags,
        created: text(&config["created"]),
        docker_version: text(&config["docker_version"]).unwrap_or_default(),
        labels,
        architecture: text(&config["architecture"]).unwrap_or_default(),
        variant: text(&config["variant"]),
        os: text(&config["os"]).unwrap_or_default(),
        layers: layers_data.iter().map(|l| l.digest.clone()).collect(),
        layers_data,
        env,
        image_id: ins.config_digest.to_string(),
    })
}
