//! Sigstore bundles as cosign 3 attaches them to an image: an OCI 1.1 referrer manifest with
//! `artifactType` `application/vnd.dev.sigstore.bundle.v0.3+json`, the empty config, and one
//! layer of that type holding the bundle, annotated `dev.sigstore.bundle.content: dsse-envelope`
//! and `dev.sigstore.bundle.predicateType: https://sigstore.dev/cosign/sign/v1`. The bundle's
//! DSSE envelope carries an in-toto statement whose subject is the image's digest:
//!
//! ```json
//! {"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial":{"publicKey":{"hint":"…"}},
//!  "dsseEnvelope":{"payload":"<base64 statement>","payloadType":"application/vnd.in-toto+json",
//!                  "signatures":[{"sig":"<base64 DER>","keyid":""}]}}
//! ```
//!
//! The signature is over DSSE's pre-authentication encoding of type and payload. lade works
//! offline with keys: transparency-log entries and timestamps a bundle may carry are not
//! checked (as `cosign verify --key … --insecure-ignore-tlog`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

use super::simple_signing;
use crate::digest::Digest;

pub const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const IN_TOTO_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate of cosign 3's image signatures.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A bundle signing `digest` with `key`, as cosign 3 makes one (no transparency log).
pub fn make(key: &SigningKey, digest: &Digest) -> Vec<u8> {
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"digest": {digest.algorithm().name(): digest.hex()}}],
        "predicateType": SIGN_PREDICATE,
        "predicate": {},
    });
    let payload = serde_json::to_vec(&statement).unwrap_or_default();
    let sig = simple_signing::sign(key, &pae(IN_TOTO_TYPE, &payload));
    let hint = super::keys::fingerprint(key.verifying_key());
    let bundle = json!({
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": {
            "payload": BASE64.encode(&payload),
            "payloadType": IN_TOTO_TYPE,
            "signatures": [{"sig": sig, "keyid": ""}],
        },
    });
    serde_json::to_vec(&bundle).unwrap_or_default()
}

/// What a verified bundle signed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub predicate: String,
}

/// Checks a bundle against `key` and the image digest `digest`; the error says why not.
pub fn verify(
    bundle: &[u8],
    key: &VerifyingKey,
    digest: &Digest,
) -> std::result::Result<Verified, String> {
    let v: Value =
        serde_json::from_slice(bundle).map_err(|e| format!("bundle is not JSON: {e}"))?;
    let env = &v["dsseEnvelope"];
    if env.is_null() {
        if !v["messageSignature"].is_null() {
            return Err("a message-signature bundle (a blob's), not an image signature".into());
        }
        return Err("bundle has no DSSE envelope".into());
    }
    let payload_type = env["payloadType"].as_str().unwrap_or_default();
    let payload = BASE64
        .decode(env["payload"].as_str().unwrap_or_default())
        .map_err(|e| format!("DSSE payload is not base64: {e}"))?;
    let signed = pae(payload_type, &payload);
    let sigs = env["signatures"].as_array().cloned().unwrap_or_default();
    if sigs.is_empty() {
        return Err("DSSE envelope has no signatures".into());
    }
    let mut last = String::new();
    let ok = sigs.iter().any(|s| {
        match simple_signing::check(key, &signed, s["sig"].as_str().unwrap_or_default()) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if !ok {
        return Err(last);
    }
    if payload_type != IN_TOTO_TYPE {
        return Err(format!("DSSE payload type '{payload_type}' is not in-toto"));
    }
    let statement: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("statement is not JSON: {e}"))?;
    let predicate = statement["predicateType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let names_digest = statement["subject"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            s["digest"][digest.algorithm().name()]
                .as_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(digest.hex()))
        })
    });
    if !names_digest {
        return Err(format!("the statement's subject is not {digest}"));
    }
    Ok(Verified { predicate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_verify_for_their_digest_and_key_only() {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let other = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let d = Digest::sha256_of(b"m");
        let b = make(&key, &d);
        assert_eq!(
            verify(&b, key.verifying_key(), &d).unwrap().predicate,
            SIGN_PREDICATE
        );
        assert!(verify(&b, other.verifying_key(), &d).is_err());
        let e = verify(&b, key.verifying_key(), &Digest::sha256_of(b"n")).unwrap_err();
        assert!(e.contains("subject"), "{e}");
    }
}
