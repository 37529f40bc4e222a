//! Test helpers for the registry tests: a real registry (`docker-registry`), a token service,
//! a fault-injecting proxy, and images to push. Each test binary uses a subset.
#![allow(dead_code)]

pub mod http;
pub mod proxy;
pub mod registry;
pub mod token;
pub mod trust;

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{Fixtures, Lade, Run, Scratch, run_cmd};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The descriptor (as JSON) of tag `tag` in the layout's index.json.
pub fn layout_descriptor(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))
        .clone()
}

/// The manifest digest of tag `tag` in the layout's index.json.
pub fn layout_digest(layout: &Path, tag: &str) -> String {
    layout_descriptor(layout, tag)["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `lade --tls-no-verify ARGS` (a plain-HTTP registry).
pub fn insecure(lade: &Lade, args: &[&str]) -> Run {
    let mut all = vec!["--tls-no-verify"];
    all.extend_from_slice(args);
    lade.run(all)
}

/// `skopeo inspect docker://REFERENCE` on a plain-HTTP registry: a third party's view of
/// what lade pushed or copied there.
pub fn skopeo_inspect_insecure(reference: &str) -> serde_json::Value {
    let mut c = std::process::Command::new("skopeo");
    c.args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    serde_json::from_str(&run_cmd(c).ok().stdout).unwrap()
}

/// skopeo's digest of `docker://REFERENCE` on a plain-HTTP registry.
pub fn skopeo_digest_insecure(reference: &str) -> String {
    skopeo_inspect_insecure(reference)["Digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts the OCI layout `dst` with a copy of every blob of the layout `src` (no index.json
/// or oci-layout yet); returns its blob directory.
pub fn copy_layout_blobs(src: &Path, dst: &Path) -> PathBuf {
    let blobs = dst.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for e in fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), blobs.join(e.file_name())).unwrap();
    }
    blobs
}

/// An OCI layout whose tag `multiarch` is an index of two platforms: `linux/amd64` is the
/// fixtures' `single` image, `linux/arm64/v8` their `multi` image. Returns the layout path.
pub fn multiarch_layout(f: &Fixtures, scratch: &Scratch) -> PathBuf {
    let src = f.layout();
    let dst = scratch.join("multiarch");
    let blobs = copy_layout_blobs(&src, &dst);
    let platform = |d: serde_json::Value, p: serde_json::Value| {
        serde_json::json!({
            "mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"], "platform": p,
        })
    };
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            platform(layout_descriptor(&src, "single"), serde_json::json!({"architecture": "amd64", "os": "linux"})),
            platform(layout_descriptor(&src, "multi"), serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})),
        ],
    });
    let bytes = serde_json::to_vec(&inner).unwrap();
    let digest = crate::common::sha256(&bytes);
    fs::write(blobs.join(digest.strip_prefix("sha256:").unwrap()), &bytes).unwrap();
    fs::write(dst.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_INDEX, "digest": digest, "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multiarch"},
        }],
    });
    fs::write(dst.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    dst
}

/// The layers (digest, size) of tag `tag` of a layout, biggest first.
pub fn layers_by_size(layout: &Path, tag: &str) -> Vec<(String, u64)> {
    let d = layout_descriptor(layout, tag);
    let hex = d["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    let mut layers: Vec<(String, u64)> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    layers.sort_by_key(|l| std::cmp::Reverse(l.1));
    layers
}
