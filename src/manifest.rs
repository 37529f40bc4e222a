//! Manifests and indexes as bytes (their digest is the digest of exactly these bytes, so they
//! are never re-serialised when copied) and their parsed forms, from `oci-spec`.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_LAYOUT_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether a manifest document lists platform images or describes one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Image,
}

/// A manifest or index exactly as stored or served.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    pub kind: Kind,
    /// Where it came from, for errors (`manifest 1.0 of docker://…`).
    pub what: String,
}

/// Parses JSON as `T`, the error naming the field at fault (`layers[0].size: invalid value:
/// integer `-1`, expected u64 at line 1 column 200`), not oci-spec's bare "serde failed".
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

#[derive(serde::Deserialize)]
struct Sniff {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

impl RawManifest {
    /// Checks `bytes` against `expected` (when given) and works out what kind of document it
    /// is. The media type is taken from the document itself, then from the transport's
    /// `hint`, then from its shape, because registries often send a type other than the one
    /// asked for or none at all.
    pub fn new(
        bytes: Vec<u8>,
        hint: Option<&str>,
        expected: Option<&Expected>,
        what: &str,
    ) -> Result<RawManifest> {
        let digest = match expected {
            Some(exp) => {
                let actual = Digest::of_bytes(exp.digest.algorithm(), &bytes);
                if actual != exp.digest {
                    return Err(Error::invalid(
                        what,
                        format!("digest mismatch: expected {}, got {actual}", exp.digest),
                    ));
                }
                if let Some(size) = exp.size
                    && size != bytes.len() as u64
                {
                    return Err(Error::invalid(
                        what,
                        format!("size mismatch: expected {size} bytes, got {}", bytes.len()),
                    ));
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let sniff: Sniff = serde_json::from_slice(&bytes).map_err(|e| Error::json(what, e))?;
        let media_type = sniff
            .media_type
            .clone()
            .or_else(|| hint.map(str::to_string))
            .unwrap_or_default();
        if sniff.schema_version == Some(1)
            || sniff.fs_layers.is_some()
            || media_type == DOCKER_SCHEMA1
            || media_type == DOCKER_SCHEMA1_SIGNED
        {
            return Err(Error::unsupported(
                what,
                "Docker schema 1 manifests are deprecated and not supported; \
                 ask the image's maintainer to push it again with a current tool",
            ));
        }
        let kind = match media_type.as_str() {
            OCI_INDEX | DOCKER_LIST => Kind::Index,
            OCI_MANIFEST | DOCKER_MANIFEST => Kind::Image,
            _ if sniff.manifests.is_some() => Kind::Index,
            _ if sniff.layers.is_some() => Kind::Image,
            other => {
                return Err(Error::unsupported(
                    what,
                    format!("not an image manifest or index (media type '{other}')"),
                ));
            }
        };
        let media_type = if media_type.is_empty() {
            match kind {
                Kind::Index => OCI_INDEX.to_string(),
                Kind::Image => OCI_MANIFEST.to_string(),
            }
        } else {
            media_type
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
            kind,
            what: what.to_string(),
        })
    }

    pub fn index(&self) -> Result<ImageIndex> {
        parse_json(&self.bytes).map_err(|why| {
            Error::invalid(&self.what, format!("index {}: {why}", self.digest.short()))
        })
    }

    pub fn image(&self) -> Result<ImageManifest> {
        parse_json(&self.bytes).map_err(|why| {
            Error::invalid(
                &self.what,
                format!("image manifest {}: {why}", self.digest.short()),
            )
        })
    }

    /// A descriptor pointing at this document.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.as_str().into(),
            self.bytes.len() as u64,
            oci_digest(&self.digest),
        )
    }
}

/// Converts lade's digest to oci-spec's (both validated; this cannot fail for sha256/sha512).
pub fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    match d.to_string().parse() {
        Ok(x) => x,
        Err(_) => unreachable!("lade digests are valid OCI digests"),
    }
}

/// What a descriptor promises: digest and size. A size over 2^63 − 1 is refused: OCI sizes are
/// int64, and no transfer of such a size can be right.
pub fn expected(desc: &Descriptor) -> Result<Expected> {
    if desc.size() > i64::MAX as u64 {
        return Err(Error::invalid(
            format!("descriptor of {}", desc.digest()),
            format!(
                "size {} is not a size (the largest a blob can have is 2^63 - 1 bytes)",
                desc.size()
            ),
        ));
    }
    Ok(Expected {
        digest: Digest::try_from(desc.digest())?,
        size: Some(desc.size()),
    })
}

pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    let first = match parse_json(bytes) {
        Ok(c) => return Ok(c),
        Err(why) => why,
    };
    // Architecture-unaware images (old builders, hand-made ones) omit `architecture` and `os`,
    // which oci-spec requires: read them as empty rather than refuse the image.
    let mut v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| Error::invalid(what, first.clone()))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(Error::invalid(what, first));
    };
    for key in ["architecture", "os"] {
        obj.entry(key).or_insert_with(|| "".into());
    }
    // Its own error, now that the two fields cannot be what is missing.
    let patched = serde_json::to_vec(&v).map_err(|_| Error::invalid(what, first))?;
    parse_json(&patched).map_err(|why| Error::invalid(what, why))
}

/// The diff-IDs of an image's layers, as lade digests.
pub fn diff_ids(config: &ImageConfiguration, what: &str) -> Result<Vec<Digest>> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|s| {
            s.parse::<Digest>()
                .map_err(|e| Error::invalid(what, format!("bad diff_id: {e}")))
        })
        .collect()
}

/// Chain-IDs per the image spec: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod json_error_tests {
    use super::*;

    fn index_error(json: &str) -> String {
        let m = RawManifest::new(json.as_bytes().to_vec(), Some(OCI_INDEX), None, "src").unwrap();
        m.index().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_and_the_source() {
        let d = |size: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":{size}}}]}}"#,
                "a".repeat(64)
            )
        };
        for (size, want) in [
            ("-1", "manifests[0].size: invalid value: integer `-1`"),
            (
                "1.5",
                "manifests[0].size: invalid type: floating point `1.5`",
            ),
        ] {
            let e = index_error(&d(size));
            assert!(e.starts_with("src: index ") && e.contains(want), "{e}");
        }
        let e = index_error(&d("1,\"size\":2"));
        assert!(e.contains("manifests[0]: duplicate field `size`"), "{e}");
        let e = parse_config(b"{}", "config sha256:x of oci:dir")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config sha256:x of oci:dir") && e.contains("missing field `rootfs`"),
            "{e}"
        );
        assert!(!e.contains("serde failed"), "{e}");
    }
}
