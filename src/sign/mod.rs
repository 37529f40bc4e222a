//! Signing and verifying images, compatible with cosign, offline, with keys (no transparency
//! log, no service beyond the registry):
//!
//! - [`keys`]: key pairs in cosign's file formats;
//! - [`simple_signing`]: cosign's tag-schema signatures (`sha256-<hex>.sig`);
//! - [`bundle`]: Sigstore bundles attached as OCI 1.1 referrers, as cosign 3 writes them;
//! - [`sign`] and [`verify`] here: both formats, for an image in a registry, an `oci:` layout
//!   or the store (through [`crate::attach`]).

pub mod bundle;
pub mod keys;
pub mod simple_signing;

use oci_spec::image::Descriptor;
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::json;

use crate::attach::{self, Attachments};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{self, OCI_MANIFEST, RawManifest};
use crate::transport::ImageLocation;

/// The OCI empty descriptor's content: what artifact manifests use as config.
pub const EMPTY_JSON: &[u8] = b"{}";
pub const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// What `lade sign` did.
#[derive(Debug)]
pub struct Signed {
    pub digest: Digest,
    pub identity: String,
    /// Where the signature went: the tag, and the bundle referrer if one was made.
    pub stored: Vec<String>,
}

/// The identity a signature claims for the image at `loc`: its repository, as cosign puts it.
pub fn identity_of(loc: &ImageLocation) -> String {
    match loc {
        ImageLocation::Registry(r) | ImageLocation::Store(r) => r.name(),
        ImageLocation::OciLayout { dir, .. }
        | ImageLocation::OciArchive { file: dir, .. }
        | ImageLocation::DockerArchive { file: dir, .. }
        | ImageLocation::SquashFs(dir) => dir.display().to_string(),
    }
}

/// Signs the image at `loc` (the manifest it names) with `key`: a simple-signing signature
/// added to the `.sig` tag's, and with `with_bundle` also a Sigstore bundle referrer.
pub fn sign(
    att: &dyn Attachments,
    identity: &str,
    key: &SigningKey,
    with_bundle: bool,
) -> Result<Signed> {
    let subject = att
        .subjects()?
        .into_iter()
        .next()
        .ok_or_else(|| Error::ImageNotFound(att.describe()))?;
    let digest = subject.digest.clone();
    let payload = simple_signing::payload(identity, &digest);
    let signature = simple_signing::sign(key, &payload);
    att.put_blob(&payload)?;
    let tag = attach::tag_for(&digest, "sig");
    let existing = att.tagged(&tag)?;
    let desc = simple_signing::payload_descriptor(&payload, &signature);
    let mut stored = Vec::new();
    match simple_signing::with_signature(existing.as_ref(), desc)? {
        Some((m, config)) => {
            att.put_blob(&config)?;
            att.put_tagged(&m, &tag, &digest)?;
            stored.push(format!("tag {tag}"));
        }
        None => stored.push(format!("tag {tag} (already had this signature)")),
    }
    if with_bundle {
        let b = bundle::make(key, &digest);
        let m = artifact_manifest(
            att,
            bundle::BUNDLE_TYPE,
            &[NewLayer {
                bytes: b,
                media_type: bundle::BUNDLE_TYPE.to_string(),
                annotations: bundle_annotations(),
            }],
            Some(&subject),
            true,
        )?;
        let how = att.add_referrer(&m, &attach::referrer_descriptor(&m)?, &digest)?;
        stored.push(format!("bundle {} via {how}", m.digest));
    }
    Ok(Signed {
        digest,
        identity: identity.to_string(),
        stored,
    })
}

fn bundle_annotations() -> Vec<(String, String)> {
    vec![
        (bundle::CONTENT_ANNOTATION.into(), "dsse-envelope".into()),
        (
            bundle::PREDICATE_ANNOTATION.into(),
            bundle::SIGN_PREDICATE.into(),
        ),
    ]
}

/// One layer of an artifact made here: its bytes, media type and annotations.
pub struct NewLayer {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub annotations: Vec<(String, String)>,
}

/// Builds (and stores the blobs of) an OCI 1.1 artifact manifest: the empty config, one layer
/// per [`NewLayer`], `artifactType`, and `subject` when attaching. With
/// `v1_1` false, the OCI 1.0 packing ORAS falls back to: the artifact type as the config's
/// media type, no `artifactType` field.
pub fn artifact_manifest(
    att: &dyn Attachments,
    artifact_type: &str,
    layers: &[NewLayer],
    subject: Option<&RawManifest>,
    v1_1: bool,
) -> Result<RawManifest> {
    att.put_blob(EMPTY_JSON)?;
    let mut descs = Vec::new();
    for l in layers {
        let digest = att.put_blob(&l.bytes)?;
        let mut d = json!({
            "mediaType": l.media_type,
            "digest": digest.to_string(),
            "size": l.bytes.len(),
        });
        if !l.annotations.is_empty() {
            d["annotations"] = l
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        descs.push(d);
    }
    let raw = artifact_manifest_json(
        artifact_type,
        descs,
        subject.map(RawManifest::descriptor),
        v1_1,
    )?;
    RawManifest::new(raw, Some(OCI_MANIFEST), None, "artifact manifest")
}

/// The bytes of an artifact manifest over layer descriptors already stored.
pub fn artifact_manifest_json(
    artifact_type: &str,
    layers: Vec<serde_json::Value>,
    subject: Option<Descriptor>,
    v1_1: bool,
) -> Result<Vec<u8>> {
    let empty = Digest::sha256_of(EMPTY_JSON);
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
    });
    if v1_1 {
        m["artifactType"] = artifact_type.into();
        m["config"] = json!({
            "mediaType": EMPTY_TYPE, "digest": empty.to_string(), "size": 2, "data": "e30=",
        });
    } else {
        m["config"] = json!({
            "mediaType": artifact_type, "digest": empty.to_string(), "size": 2,
        });
    }
    m["layers"] = layers.into();
    if let Some(s) = subject {
        m["subject"] = serde_json::to_value(s).map_err(|e| Error::json("subject", e))?;
    }
    serde_json::to_vec(&m).map_err(|e| Error::json("artifact manifest", e))
}

/// One signature that verified.
#[derive(Debug, Clone)]
pub struct Found {
    /// The manifest it signs.
    pub digest: Digest,
    /// What it is and where it was: `cosign signature (tag …)`, `sigstore bundle (referrer …)`.
    pub kind: String,
    /// The identity it claims (a repository); a bundle's statement claims none.
    pub identity: String,
}

/// The outcome of checking every signature of an image.
#[derive(Debug, Default)]
pub struct Verification {
    pub digests: Vec<Digest>,
    pub verified: Vec<Found>,
    /// Why each other signature did not verify, one line each.
    pub rejected: Vec<String>,
}

impl Verification {
    /// The error when nothing verified: one line saying what was found and why it failed.
    pub fn failure(&self, what: &str, key: &VerifyingKey) -> Error {
        let digests: Vec<String> = self.digests.iter().map(|d| d.to_string()).collect();
        let fp = keys::fingerprint(key);
        if self.rejected.is_empty() {
            return Error::invalid(
                what,
                format!(
                    "not signed: no cosign signature (tag {}) and no signature bundle among \
                     the referrers of {}",
                    self.digests
                        .iter()
                        .map(|d| attach::tag_for(d, "sig"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    digests.join(", ")
                ),
            );
        }
        Error::invalid(
            what,
            format!(
                "no signature verifies with key {fp} ({} checked: {})",
                self.rejected.len(),
                self.rejected.join("; ")
            ),
        )
    }
}

/// Checks every signature of the image `att` names against `key`: the `.sig` tag's layers and
/// the Sigstore bundles among its referrers, for the image's manifest (and, for a stored
/// image, the index it came from).
pub fn verify(att: &dyn Attachments, key: &VerifyingKey) -> Result<Verification> {
    let mut out = Verification::default();
    for subject in att.subjects()? {
        let digest = subject.digest.clone();
        out.digests.push(digest.clone());
        let tag = attach::tag_for(&digest, "sig");
        if let Some(sigs) = att.tagged(&tag)? {
            for (i, layer) in simple_signing::layers(&sigs)?.into_iter().enumerate() {
                let name = format!("tag {tag} layer {}", i + 1);
                match check_layer(att, &layer, key, &digest) {
                    Ok(identity) => out.verified.push(Found {
                        digest: digest.clone(),
                        kind: format!("cosign signature ({name})"),
                        identity,
                    }),
                    Err(why) => out.rejected.push(format!("{name}: {why}")),
                }
            }
        }
        for desc in att.referrers(&digest)? {
            let is_bundle = desc
                .artifact_type()
                .as_ref()
                .is_some_and(|t| t.to_string() == bundle::BUNDLE_TYPE);
            if !is_bundle {
                continue;
            }
            let name = format!("bundle referrer {}", desc.digest());
            match check_bundle(att, &desc, key, &digest) {
                Ok(predicate) => out.verified.push(Found {
                    digest: digest.clone(),
                    kind: format!("sigstore bundle ({name}, predicate {predicate})"),
                    identity: String::new(),
                }),
                Err(why) => out.rejected.push(format!("{name}: {why}")),
            }
        }
    }
    Ok(out)
}

fn check_layer(
    att: &dyn Attachments,
    layer: &simple_signing::Layer,
    key: &VerifyingKey,
    digest: &Digest,
) -> std::result::Result<String, String> {
    let signature = layer
        .signature
        .as_deref()
        .ok_or("no dev.cosignproject.cosign/signature annotation")?;
    let expected = manifest::expected(&layer.desc).map_err(|e| e.to_string())?;
    let payload = att.blob(&expected).map_err(|e| match e {
        Error::Invalid { why, .. } => format!("payload {why} (tampered?)"),
        e => e.to_string(),
    })?;
    simple_signing::check(key, &payload, signature)?;
    let claims = simple_signing::claims(&payload)?;
    if claims.digest != digest.to_string() {
        return Err(format!(
            "signs {}, not this image ({digest})",
            claims.digest
        ));
    }
    Ok(claims.identity)
}

fn check_bundle(
    att: &dyn Attachments,
    desc: &Descriptor,
    key: &VerifyingKey,
    digest: &Digest,
) -> std::result::Result<String, String> {
    let expected = manifest::expected(desc).map_err(|e| e.to_string())?;
    let m = att.manifest(&expected).map_err(|e| e.to_string())?;
    let parsed = m.image().map_err(|e| e.to_string())?;
    let layer = parsed
        .layers()
        .iter()
        .find(|l| l.media_type().to_string() == bundle::BUNDLE_TYPE)
        .ok_or("no bundle layer")?;
    let bytes = att
        .blob(&Expected {
            digest: Digest::try_from(layer.digest()).map_err(|e| e.to_string())?,
            size: Some(layer.size()),
        })
        .map_err(|e| e.to_string())?;
    Ok(bundle::verify(&bytes, key, digest)?.predicate)
}
