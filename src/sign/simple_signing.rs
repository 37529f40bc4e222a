//! cosign's "simple signing" signatures, as cosign stores them in a registry: a manifest tagged
//! `sha256-<hex>.sig` (the signed manifest's digest) whose layers are payloads of type
//! `application/vnd.dev.cosign.simplesigning.v1+json`, each with its base64 ECDSA signature (DER,
//! SHA-256) in the `dev.cosignproject.cosign/signature` annotation. The payload:
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"REPO"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":null}
//! ```
//!
//! A new signature is added to the layers already there (an identical one is not added twice);
//! the manifest's config is rebuilt as go-containerregistry would, listing the layers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_spec::image::Descriptor;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{self, OCI_MANIFEST, RawManifest};

pub const PAYLOAD_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The payload signing `digest` as the image `identity` (a repository name).
pub fn payload(identity: &str, digest: &Digest) -> Vec<u8> {
    // Field order as cosign writes it; any order verifies, the bytes are what is signed.
    let v = json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// What a payload claims.
#[derive(Debug, Clone)]
pub struct Claims {
    pub identity: String,
    pub digest: String,
}

/// Reads a payload's claims, refusing what is not a cosign image signature.
pub fn claims(payload: &[u8]) -> std::result::Result<Claims, String> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let critical = &v["critical"];
    let kind = critical["type"].as_str().unwrap_or_default();
    if !kind.eq_ignore_ascii_case(SIGNATURE_TYPE) {
        return Err(format!("payload type '{kind}' is not '{SIGNATURE_TYPE}'"));
    }
    let digest = critical["image"]["docker-manifest-digest"]
        .as_str()
        .ok_or("payload names no critical.image.docker-manifest-digest")?;
    Ok(Claims {
        identity: critical["identity"]["docker-reference"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        digest: digest.to_string(),
    })
}

/// Signs `payload`: ECDSA P-256 over SHA-256, DER, base64 (cosign's annotation value).
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let sig: Signature = key.sign(payload);
    let der: DerSignature = sig.to_der();
    BASE64.encode(der.as_bytes())
}

/// Checks a base64 DER (or raw r‖s) signature over `payload`.
pub fn check(key: &VerifyingKey, payload: &[u8], b64: &str) -> std::result::Result<(), String> {
    let raw = BASE64
        .decode(b64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let sig = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|_| "signature is not an ECDSA signature".to_string())?;
    key.verify(payload, &sig)
        .map_err(|_| "signature does not match the payload under this key".to_string())
}

/// One signature layer of a `.sig` manifest.
pub struct Layer {
    pub desc: Descriptor,
    pub signature: Option<String>,
}

/// The signature layers of a `.sig` manifest.
pub fn layers(m: &RawManifest) -> Result<Vec<Layer>> {
    let parsed = m.image()?;
    Ok(parsed
        .layers()
        .iter()
        .map(|d| Layer {
            signature: d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .cloned(),
            desc: d.clone(),
        })
        .collect())
}

/// A `.sig` manifest with `new` added to the layers of `existing` (if any); `None` when
/// `existing` already has that very signature. The caller stores the payload blob; the
/// config blob returned must be stored too.
pub fn with_signature(
    existing: Option<&RawManifest>,
    new: Descriptor,
) -> Result<Option<(RawManifest, Vec<u8>)>> {
    let mut all: Vec<Descriptor> = match existing {
        Some(m) => m.image()?.layers().clone(),
        None => Vec::new(),
    };
    let same = |d: &Descriptor| {
        d.digest() == new.digest()
            && d.annotations()
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                == new
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(SIGNATURE_ANNOTATION))
    };
    if all.iter().any(same) {
        return Ok(None);
    }
    all.push(new);
    let config = config_for(&all);
    let config_digest = Digest::sha256_of(&config);
    let layers: Vec<Value> = all
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": CONFIG_TYPE,
            "size": config.len(),
            "digest": config_digest.to_string(),
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&m).map_err(|e| Error::json("signature manifest", e))?;
    let raw = RawManifest::new(bytes, Some(OCI_MANIFEST), None, "signature manifest")?;
    Ok(Some((raw, config)))
}

/// An image config listing the layers (what go-containerregistry writes for cosign's
/// signature images), so that tools copying the `.sig` tag as an image find it consistent.
fn config_for(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|d| d.digest().to_string()).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    let v = json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The descriptor of a payload layer carrying `signature`.
pub fn payload_descriptor(payload: &[u8], signature: &str) -> Descriptor {
    let mut d = Descriptor::new(
        PAYLOAD_TYPE.into(),
        payload.len() as u64,
        manifest::oci_digest(&Digest::sha256_of(payload)),
    );
    d.set_annotations(Some(
        [(SIGNATURE_ANNOTATION.to_string(), signature.to_string())].into(),
    ));
    d
}

/// What a payload layer's descriptor promises.
pub fn expected(d: &Descriptor) -> Result<Expected> {
    manifest::expected(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_and_accumulate() {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let d = Digest::sha256_of(b"manifest");
        let p = payload("127.0.0.1:5000/lab/x", &d);
        let c = claims(&p).unwrap();
        assert_eq!(c.digest, d.to_string());
        let s = sign(&key, &p);
        check(key.verifying_key(), &p, &s).unwrap();
        assert!(check(key.verifying_key(), b"other", &s).is_err());
        let (one, _) = with_signature(None, payload_descriptor(&p, &s))
            .unwrap()
            .unwrap();
        assert!(
            with_signature(Some(&one), payload_descriptor(&p, &s))
                .unwrap()
                .is_none()
        );
        // RFC 6979 signatures are deterministic: another signature needs another payload.
        let p2 = payload("127.0.0.1:5000/lab/y", &d);
        let s2 = sign(&key, &p2);
        let (two, _) = with_signature(Some(&one), payload_descriptor(&p2, &s2))
            .unwrap()
            .unwrap();
        assert_eq!(layers(&two).unwrap().len(), 2);
    }
}
