//! Key pairs in cosign's formats, so that keys move freely between lade and cosign:
//!
//! - the private key is PKCS#8 (ECDSA P-256), sealed with a password the way cosign (through
//!   go-securesystemslib's `encrypted` package) seals it: a JSON envelope
//!   `{"kdf":{"name":"scrypt","params":{"N":…,"r":8,"p":1},"salt":…},
//!   "cipher":{"name":"nacl/secretbox","nonce":…},"ciphertext":…}` (byte fields in standard
//!   base64, a 32-byte salt, a 24-byte nonce, the secretbox key = scrypt(password, salt, 32)),
//!   itself in a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign wrote
//!   `ENCRYPTED COSIGN PRIVATE KEY`; both are read);
//! - the public key is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
//!
//! Only the three scrypt parameter sets that library writes are accepted on reading (N = 2^15,
//! 2^16, 2^17; r = 8; p = 1): an attacker who can edit a key file must not make lade spend
//! unbounded memory and time deriving a key. New keys use 2^16, as current cosign does.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The PEM label cosign writes for a private key today.
pub const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign versions wrote; still read.
pub const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const SALT_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const BOX_KEY_BYTES: usize = 32;
/// (log2 N, r, p) of the parameter sets go-securesystemslib writes: legacy, standard, OWASP.
const ACCEPTED_SCRYPT: [(u8, u32, u32); 3] = [(15, 8, 1), (16, 8, 1), (17, 8, 1)];
/// What new keys use: the library's (and so cosign's) default, "standard".
const NEW_KEY_LOG_N: u8 = 16;

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Byte fields as standard base64 strings, as Go's encoding/json writes `[]byte`.
mod b64 {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// A freshly generated key pair, as the two files' contents.
pub struct KeyPairPem {
    pub private_pem: String,
    pub public_pem: String,
}

/// Generates an ECDSA P-256 key pair; the private key sealed with `password` (which may be
/// empty, as cosign allows).
pub fn generate(password: &[u8]) -> Result<KeyPairPem> {
    let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let private_pem = seal(&key, password)?;
    let public_pem = public_pem(key.verifying_key())?;
    Ok(KeyPairPem {
        private_pem,
        public_pem,
    })
}

/// The public key as a PEM `PUBLIC KEY` block.
pub fn public_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::invalid("public key", e.to_string()))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    b
}

/// Seals a private key as cosign does (see the module documentation).
fn seal(key: &SigningKey, password: &[u8]) -> Result<String> {
    let what = "new private key";
    let der = key
        .to_pkcs8_der()
        .map_err(|e| Error::invalid(what, e.to_string()))?;
    let salt: [u8; SALT_BYTES] = random_bytes();
    let nonce: [u8; NONCE_BYTES] = random_bytes();
    let (log_n, r, p) = (NEW_KEY_LOG_N, 8, 1);
    let box_key = derive(password, &salt, log_n, r, p, what)?;
    let ciphertext = XSalsa20Poly1305::new(box_key.as_slice().into())
        .encrypt(&nonce.into(), der.as_bytes())
        .map_err(|_| Error::invalid(what, "encryption failed"))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << log_n,
                r,
                p,
            },
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    let json = serde_json::to_vec(&envelope).map_err(|e| Error::json(what, e))?;
    pem::encode_string(SIGSTORE_LABEL, LineEnding::LF, &json)
        .map_err(|e| Error::invalid(what, e.to_string()))
}

fn derive(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let params = scrypt::Params::new(log_n, r, p, BOX_KEY_BYTES)
        .map_err(|e| Error::invalid(what, format!("scrypt parameters: {e}")))?;
    let mut out = Zeroizing::new(vec![0u8; BOX_KEY_BYTES]);
    scrypt::scrypt(password, salt, &params, &mut out)
        .map_err(|e| Error::invalid(what, format!("scrypt: {e}")))?;
    Ok(out)
}

/// Reads an encrypted private key file (either cosign label) and opens it with `password`.
pub fn load_private(path: &Path, password: &[u8]) -> Result<SigningKey> {
    let what = format!("private key {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(&what, e))?;
    open_private(&text, password, &what)
}

/// Opens the text of an encrypted private key; `what` names it in errors.
pub fn open_private(text: &str, password: &[u8], what: &str) -> Result<SigningKey> {
    let bad = |why: String| Error::invalid(what, why);
    let (label, body) = pem::decode_vec(text.trim().as_bytes()).map_err(|e| {
        bad(format!(
            "not a PEM key file ({e}); truncated or damaged? cosign's keys begin with \
             '-----BEGIN {SIGSTORE_LABEL}-----'"
        ))
    })?;
    if label != SIGSTORE_LABEL && label != COSIGN_LABEL {
        return Err(bad(format!(
            "a PEM '{label}' block, not a cosign private key ('{SIGSTORE_LABEL}')"
        )));
    }
    let env: Envelope =
        serde_json::from_slice(&body).map_err(|e| bad(format!("bad key envelope: {e}")))?;
    if env.kdf.name != "scrypt" || env.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "key sealed with {} and {}; only scrypt and nacl/secretbox are known",
            env.kdf.name, env.cipher.name
        )));
    }
    let ScryptParams { n, r, p } = env.kdf.params;
    let log_n = n.checked_ilog2().unwrap_or(0) as u8;
    if n != 1u64 << log_n || !ACCEPTED_SCRYPT.contains(&(log_n, r, p)) {
        return Err(bad(format!(
            "unsupported scrypt parameters N={n} r={r} p={p} (refused: they could make \
             opening the key arbitrarily expensive)"
        )));
    }
    if env.cipher.nonce.len() != NONCE_BYTES {
        return Err(bad(format!(
            "nonce of {} bytes (secretbox needs {NONCE_BYTES})",
            env.cipher.nonce.len()
        )));
    }
    let box_key = derive(password, &env.kdf.salt, log_n, r, p, what)?;
    let nonce = crypto_secretbox::Nonce::from_slice(&env.cipher.nonce);
    let der = Zeroizing::new(
        XSalsa20Poly1305::new(box_key.as_slice().into())
            .decrypt(nonce, env.ciphertext.as_slice())
            .map_err(|_| {
                bad("wrong password, or the key file was altered (decryption failed)".into())
            })?,
    );
    SigningKey::from_pkcs8_der(&der).map_err(|e| bad(format!("not an ECDSA P-256 PKCS#8 key: {e}")))
}

/// Reads a PEM public key (SubjectPublicKeyInfo, ECDSA P-256).
pub fn load_public(path: &Path) -> Result<VerifyingKey> {
    let what = format!("public key {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(&what, e))?;
    parse_public(&text, &what)
}

pub fn parse_public(text: &str, what: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
        Error::invalid(
            what,
            format!("not an ECDSA P-256 public key in PEM ('-----BEGIN PUBLIC KEY-----'): {e}"),
        )
    })
}

/// A short, stable name for a public key in messages: `sha256:` and the first 12 hex digits
/// of the SHA-256 of its DER SubjectPublicKeyInfo.
pub fn fingerprint(key: &VerifyingKey) -> String {
    match key.to_public_key_der() {
        Ok(der) => {
            let d = crate::digest::Digest::sha256_of(der.as_bytes());
            format!("sha256:{}", &d.hex()[..12])
        }
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_with_their_password_only() {
        let pair = generate(b"pw").unwrap();
        assert!(
            pair.private_pem
                .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
        );
        let key = open_private(&pair.private_pem, b"pw", "k").unwrap();
        let public = parse_public(&pair.public_pem, "p").unwrap();
        assert_eq!(key.verifying_key(), &public);
        let err = open_private(&pair.private_pem, b"wrong", "k").unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
        let half = &pair.private_pem[..pair.private_pem.len() / 2];
        assert!(open_private(half, b"pw", "k").is_err());
    }

    /// go-securesystemslib's own test vectors (encrypted/encrypted_test.go: passphrase
    /// "supersecret"; made by its `Marshal`, so the plaintext is "reallyimportant" as a JSON
    /// string of base64), one per parameter set, opened by the envelope code the key reader
    /// uses.
    #[test]
    fn go_securesystemslib_vectors_decrypt() {
        let vectors = [
            r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}"#,
            r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}"#,
        ];
        for v in vectors {
            let env: Envelope = serde_json::from_str(v).unwrap();
            let log_n = env.kdf.params.n.ilog2() as u8;
            let key = derive(b"supersecret", &env.kdf.salt, log_n, 8, 1, "v").unwrap();
            let plain = XSalsa20Poly1305::new(key.as_slice().into())
                .decrypt(
                    crypto_secretbox::Nonce::from_slice(&env.cipher.nonce),
                    env.ciphertext.as_slice(),
                )
                .unwrap();
            assert_eq!(plain, br#""cmVhbGx5aW1wb3J0YW50""#);
        }
    }

    #[test]
    fn expensive_or_odd_parameters_are_refused() {
        let env = r#"{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}"#;
        let pem = pem::encode_string(SIGSTORE_LABEL, LineEnding::LF, env.as_bytes()).unwrap();
        let err = open_private(&pem, b"supersecret", "k").unwrap_err();
        assert!(err.to_string().contains("unsupported scrypt"), "{err}");
        let other = pem::encode_string("PRIVATE KEY", LineEnding::LF, b"x").unwrap();
        assert!(open_private(&other, b"", "k").is_err());
    }
}
