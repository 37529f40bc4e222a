//! Signing and verifying (issue 15), checked against third parties: keys lade makes open in
//! Python's `cryptography` + PyNaCl (and keys sealed there open in lade); signatures lade makes
//! verify with `openssl dgst`; signatures cosign made (containers/image's fixtures, see
//! tests/fixtures/cosign/README.md) verify in lade. Every way a signature can be wrong fails
//! with one line; `pull --verify-key` refuses before anything is unpacked; signatures travel
//! with `copy --all` and survive `delete`'s garbage collection.

mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use support::registry::Registry;
use support::trust::{OCI_MANIFEST, keygen, lade_pw, push_single, registry_get, run_python};

const PW: &str = "correct horse";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cosign")
        .join(name)
}

fn sha256_hex(b: &[u8]) -> String {
    sha256(b).trim_start_matches("sha256:").to_string()
}

/// Opens a lade key in Python (scrypt from hashlib, secretbox from PyNaCl, PKCS#8 from
/// cryptography) and prints whether its public key is the .pub's.
const PY_OPEN_KEY: &str = r#"
import base64, hashlib, json, sys
import nacl.secret
from cryptography.hazmat.primitives import serialization
key_path, pub_path, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
text = open(key_path).read().strip().splitlines()
assert text[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", text[0]
env = json.loads(base64.b64decode("".join(text[1:-1])))
kdf, cipher = env["kdf"], env["cipher"]
assert kdf["name"] == "scrypt" and cipher["name"] == "nacl/secretbox"
p = kdf["params"]
box_key = hashlib.scrypt(password, salt=base64.b64decode(kdf["salt"]), n=p["N"], r=p["r"],
                         p=p["p"], maxmem=512 * 1024 * 1024, dklen=32)
der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(env["ciphertext"]),
                                             base64.b64decode(cipher["nonce"]))
private = serialization.load_der_private_key(der, password=None)
spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
mine = private.public_key().public_bytes(*spki)
theirs = serialization.load_pem_public_key(open(pub_path, "rb").read()).public_bytes(*spki)
print("same public key" if mine == theirs else "DIFFERENT public key", private.curve.name)
"#;

/// Seals a new P-256 key the way cosign does, with Python's libraries; writes KEY and PUB.
const PY_SEAL_KEY: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
key_path, pub_path, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
k = ec.generate_private_key(ec.SECP256R1())
der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                      serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
box_key = hashlib.scrypt(password, salt=salt, n=32768, r=8, p=1, maxmem=512 * 1024 * 1024, dklen=32)
ct = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
env = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
               "salt": base64.b64encode(salt).decode()},
       "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
       "ciphertext": base64.b64encode(ct).decode()}
b = base64.b64encode(json.dumps(env).encode()).decode()
lines = [b[i:i + 64] for i in range(0, len(b), 64)]
open(key_path, "w").write("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n" + "\n".join(lines)
                          + "\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n")
open(pub_path, "wb").write(k.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

#[test]
fn keys_made_by_lade_open_in_python_and_python_keys_sign_in_lade() {
    let lade = Lade::new();
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (key, public) = keygen(&lade, &dir, "lade", PW);
    let mode = fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let out = run_python(
        PY_OPEN_KEY,
        &[key.to_str().unwrap(), public.to_str().unwrap(), PW],
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "same public key secp256r1",
        "{}",
        out.stderr
    );
    // A wrong password does not open it in Python either.
    assert!(
        !run_python(
            PY_OPEN_KEY,
            &[key.to_str().unwrap(), public.to_str().unwrap(), "wrong"]
        )
        .success()
    );
    // No overwriting a key pair.
    let err = lade_pw(
        &lade,
        PW,
        &["key", "generate", dir.join("lade").to_str().unwrap()],
    )
    .fails_one_line();
    assert!(err.contains("refusing to overwrite"), "{err}");

    // The other way: a key sealed by Python (the older COSIGN label) signs in lade, and the
    // signature verifies with openssl.
    let (pykey, pypub) = (dir.join("py.key"), dir.join("py.pub"));
    run_python(
        PY_SEAL_KEY,
        &[pykey.to_str().unwrap(), pypub.to_str().unwrap(), PW],
    )
    .ok();
    let layout = lade.path("layout");
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", &fixtures().oci("single")])
        .arg(format!("oci:{}:img", layout.display()));
    run_cmd(c).ok();
    let img = format!("oci:{}:img", layout.display());
    lade_pw(&lade, PW, &["sign", "--key", pykey.to_str().unwrap(), &img]).ok();
    lade.ok(["verify", "--key", pypub.to_str().unwrap(), &img]);
    let (payload, sig) = layout_signature(&layout, &layout_digest_of(&layout, "img"));
    openssl_verifies(&pypub, &payload, &sig, &lade.path("o"));
}

/// The `.sig` manifest's first layer in an OCI layout: (payload, base64 signature).
fn layout_signature(layout: &Path, digest: &str) -> (Vec<u8>, String) {
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let m = read_blob_json(layout, &layout_digest_of(layout, &tag));
    let layer = &m["layers"][0];
    let payload = read_blob(layout, layer["digest"].as_str().unwrap());
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_string();
    (payload, sig)
}

fn layout_digest_of(layout: &Path, tag: &str) -> String {
    support::layout_digest(layout, tag)
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

fn read_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&read_blob(layout, digest)).unwrap()
}

/// `openssl dgst -sha256 -verify PUB -signature SIG PAYLOAD` must say "Verified OK".
#[track_caller]
fn openssl_verifies(public: &Path, payload: &[u8], sig_b64: &str, work: &Path) {
    use base64::Engine as _;
    fs::create_dir_all(work).unwrap();
    let (p, s) = (work.join("payload"), work.join("sig.der"));
    fs::write(&p, payload).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .unwrap();
    fs::write(&s, der).unwrap();
    let mut c = Command::new("openssl");
    c.args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(&s)
        .arg(&p);
    let r = run_cmd(c).ok();
    assert_eq!(r.stdout.trim(), "Verified OK");
}

#[test]
fn signatures_verify_with_openssl_and_accumulate() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (k1, p1) = keygen(&lade, &dir, "one", PW);
    let (k2, p2) = keygen(&lade, &dir, "two", PW);
    let (_, p3) = keygen(&lade, &dir, "three", PW);
    let image = push_single(&reg, "lab/signed:1");
    lade_pw(&lade, PW, &["sign", "--key", k1.to_str().unwrap(), &image]).ok();

    // What cosign would find: the .sig tag, its layer, the payload, the annotation.
    let digest = support::layout_digest(&fixtures().layout(), "single");
    let hex = digest.trim_start_matches("sha256:");
    let sig_manifest: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        &format!("/v2/lab/signed/manifests/sha256-{hex}.sig"),
        OCI_MANIFEST,
    ))
    .unwrap();
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = registry_get(
        &reg,
        &format!("/v2/lab/signed/blobs/{}", layer["digest"].as_str().unwrap()),
        "*/*",
    );
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        reg.image("lab/signed")
    );
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    openssl_verifies(&p1, &payload, sig, &lade.path("ossl"));

    // A second signer adds to the first; both verify, a third key does not.
    lade_pw(&lade, PW, &["sign", "--key", k2.to_str().unwrap(), &image]).ok();
    let sig_manifest: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        &format!("/v2/lab/signed/manifests/sha256-{hex}.sig"),
        OCI_MANIFEST,
    ))
    .unwrap();
    assert_eq!(sig_manifest["layers"].as_array().unwrap().len(), 2);
    for p in [&p1, &p2] {
        let out = lade_pw(&lade, PW, &["verify", "--key", p.to_str().unwrap(), &image])
            .ok()
            .stdout;
        assert!(
            out.contains(&digest) && out.contains("cosign signature"),
            "{out}"
        );
        assert!(
            out.contains(&format!("identity {}", reg.image("lab/signed"))),
            "{out}"
        );
    }
    let err = lade_pw(
        &lade,
        PW,
        &["verify", "--key", p3.to_str().unwrap(), &image],
    )
    .fails_one_line();
    assert!(err.contains("no signature verifies with key"), "{err}");
    assert!(err.contains("2 checked"), "{err}");

    // A cosign 3 bundle (OCI 1.1 referrer; Distribution 2.8 has no referrers API, so the
    // tag-schema fallback index) verifies as well.
    lade_pw(
        &lade,
        PW,
        &["sign", "--bundle", "--key", k1.to_str().unwrap(), &image],
    )
    .ok();
    let index: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        &format!("/v2/lab/signed/manifests/sha256-{hex}"),
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let out = lade_pw(
        &lade,
        PW,
        &["verify", "--key", p1.to_str().unwrap(), &image],
    )
    .ok()
    .stdout;
    assert!(out.contains("sigstore bundle"), "{out}");
}

/// An OCI layout holding the cosign fixture's image manifest as `img` and a `.sig` manifest
/// for `signed` (a manifest digest) made of the given containers/image signature files.
fn cosign_layout(dir: &Path, image_manifest: &[u8], signed: &str, sigs: &[&str]) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| -> String {
        let hex = sha256_hex(b);
        fs::write(blobs.join(&hex), b).unwrap();
        format!("sha256:{hex}")
    };
    let img = put(image_manifest);
    let mut layers = Vec::new();
    for s in sigs {
        let raw = fs::read(fixture(s)).unwrap();
        let json = raw
            .strip_prefix(b"\0sigstore-json\n")
            .expect("containers/image signature format");
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().unwrap())
            .unwrap();
        let d = put(&payload);
        layers.push(serde_json::json!({
            "mediaType": v["mimeType"], "digest": d, "size": payload.len(),
            "annotations": v["annotations"],
        }));
    }
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let cd = put(config);
    let sig = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let sd = put(&sig);
    let tag = format!("sha256-{}.sig", signed.trim_start_matches("sha256:"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": img,
             "size": image_manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "img"}},
            {"mediaType": OCI_MANIFEST, "digest": sd, "size": sig.len(),
             "annotations": {"org.opencontainers.image.ref.name": tag}},
        ],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:img", dir.display())
}

#[test]
fn cosign_made_signatures_verify_and_every_wrong_one_fails_one_line() {
    let lade = Lade::new();
    let manifest = fs::read(fixture("manifest.json")).unwrap();
    let digest = sha256(&manifest);
    assert_eq!(
        digest,
        "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    );
    let cosign_pub = fixture("cosign.pub");
    let cosign2_pub = fixture("cosign2.pub");
    let key = |p: &Path| p.to_str().unwrap().to_string();

    // Two signatures cosign made with the key of cosign.pub (ECDSA: two different signatures
    // over one payload); both verify. cosign2.pub (another key) verifies neither.
    let img = cosign_layout(
        &lade.path("valid"),
        &manifest,
        &digest,
        &["valid-signature-1", "valid-2-signature-2"],
    );
    let out = lade.ok(["verify", "--key", &key(&cosign_pub), &img]);
    assert!(out.contains(&digest), "{out}");
    assert!(
        out.contains("identity 192.168.64.2:5000/cosign-signed-single-sample"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains(".sig layer 1") && out.contains(".sig layer 2"),
        "{out}"
    );
    let err = lade
        .run(["verify", "--key", &key(&cosign2_pub), &img])
        .fails_one_line();
    assert!(
        err.contains("no signature verifies") && err.contains("2 checked"),
        "{err}"
    );

    // A key that signed nothing here (lade's own).
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (lade_key, lade_pub) = keygen(&lade, &dir, "k", PW);
    let err = lade
        .run(["verify", "--key", &key(&lade_pub), &img])
        .fails_one_line();
    assert!(err.contains("no signature verifies"), "{err}");
    // A signature by a key not given.
    let img = cosign_layout(
        &lade.path("unknown"),
        &manifest,
        &digest,
        &["unknown-cosign-key.signature"],
    );
    let err = lade
        .run(["verify", "--key", &key(&cosign_pub), &img])
        .fails_one_line();
    assert!(err.contains("does not match"), "{err}");

    // A signature for another digest: cosign's valid signature on a modified manifest.
    let modified = fs::read(fixture("modified-manifest.json")).unwrap();
    let img = cosign_layout(
        &lade.path("other-digest"),
        &modified,
        &sha256(&modified),
        &["valid-signature-1"],
    );
    let err = lade
        .run(["verify", "--key", &key(&cosign_pub), &img])
        .fails_one_line();
    assert!(
        err.contains(&format!("signs {digest}, not this image")),
        "{err}"
    );

    // A tampered payload: the stored payload changed (its digest no longer matches), and a
    // payload rewritten with its descriptor (the signature no longer matches).
    let dir_t = lade.path("tampered");
    let img = cosign_layout(&dir_t, &manifest, &digest, &["valid-signature-1"]);
    let (payload, _) = layout_signature(&dir_t, &digest);
    let payload_path = dir_t.join("blobs/sha256").join(sha256_hex(&payload));
    let evil = String::from_utf8(payload.clone())
        .unwrap()
        .replace("cosign-signed-single-sample", "cosign-signed-evil-sample0");
    fs::write(&payload_path, &evil).unwrap();
    let err = lade
        .run(["verify", "--key", &key(&cosign_pub), &img])
        .fails_one_line();
    assert!(err.contains("tampered"), "{err}");
    fs::remove_file(&payload_path).unwrap();
    let dir_r = lade.path("rewritten");
    let img = cosign_layout(&dir_r, &manifest, &digest, &["valid-signature-1"]);
    let sig_digest = layout_digest_of(&dir_r, &format!("sha256-{}.sig", &digest[7..]));
    let mut sig_m = read_blob_json(&dir_r, &sig_digest);
    let evil_digest = sha256(evil.as_bytes());
    fs::write(dir_r.join("blobs/sha256").join(&evil_digest[7..]), &evil).unwrap();
    sig_m["layers"][0]["digest"] = evil_digest.into();
    sig_m["layers"][0]["size"] = evil.len().into();
    let sig_bytes = serde_json::to_vec(&sig_m).unwrap();
    let new_sig = sha256(&sig_bytes);
    fs::write(dir_r.join("blobs/sha256").join(&new_sig[7..]), &sig_bytes).unwrap();
    let index = fs::read_to_string(dir_r.join("index.json"))
        .unwrap()
        .replace(&sig_digest, &new_sig);
    let index = index.replace(
        &format!("\"size\":{}", read_blob(&dir_r, &sig_digest).len()),
        &format!("\"size\":{}", sig_bytes.len()),
    );
    fs::write(dir_r.join("index.json"), index).unwrap();
    let err = lade
        .run(["verify", "--key", &key(&cosign_pub), &img])
        .fails_one_line();
    assert!(
        err.contains("signature does not match the payload"),
        "{err}"
    );

    // Unsigned.
    let img = cosign_layout(&lade.path("unsigned"), &manifest, &sha256(b"x"), &[]);
    let err = lade
        .run(["verify", "--key", &key(&cosign_pub), &img])
        .fails_one_line();
    assert!(err.contains("not signed"), "{err}");

    // Truncated key files, private and public.
    let text = fs::read_to_string(&lade_key).unwrap();
    let cut = dir.join("cut.key");
    fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let img = cosign_layout(&lade.path("to-sign"), &manifest, &digest, &[]);
    let err = lade_pw(&lade, PW, &["sign", "--key", &key(&cut), &img]).fails_one_line();
    assert!(err.contains("cut.key"), "{err}");
    let pub_text = fs::read_to_string(&lade_pub).unwrap();
    let cut_pub = dir.join("cut.pub");
    fs::write(&cut_pub, &pub_text[..pub_text.len() / 2]).unwrap();
    let err = lade
        .run(["verify", "--key", &key(&cut_pub), &img])
        .fails_one_line();
    assert!(err.contains("cut.pub"), "{err}");
    // A wrong password.
    let err = lade_pw(&lade, "nope", &["sign", "--key", &key(&lade_key), &img]).fails_one_line();
    assert!(err.contains("wrong password"), "{err}");
}

#[test]
fn pull_verify_key_refuses_before_unpacking_and_keeps_signatures() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (k, p) = keygen(&lade, &dir, "k", PW);
    let (k_other, _) = keygen(&lade, &dir, "other", PW);
    let p = p.to_str().unwrap();
    let unsigned = push_single(&reg, "lab/unsigned:1");
    let wrong = push_single(&reg, "lab/wrong:1");
    let signed = push_single(&reg, "lab/signed:1");
    lade_pw(
        &lade,
        PW,
        &["sign", "--key", k_other.to_str().unwrap(), &wrong],
    )
    .ok();
    lade_pw(&lade, PW, &["sign", "--key", k.to_str().unwrap(), &signed]).ok();

    for (image, why) in [(&unsigned, "not signed"), (&wrong, "no signature verifies")] {
        let err = lade_pw(&lade, PW, &["pull", "--verify-key", p, image, "img"]).fails_one_line();
        assert!(err.contains("refusing") && err.contains(why), "{err}");
    }
    // Nothing was copied or unpacked.
    assert!(lade.list().is_empty());
    let layers = lade.storage.join("layers");
    assert!(!layers.exists() || fs::read_dir(&layers).unwrap().next().is_none());

    lade_pw(&lade, PW, &["pull", "--verify-key", p, &signed, "img"]).ok();
    lade.ok(["pull", &fixtures().oci("multi"), "other"]);
    // The signatures came along into the store, and survive the collection of another image.
    lade.ok(["delete", "other"]);
    let out = lade.ok(["verify", "--key", p, "lade:img"]);
    assert!(out.contains("cosign signature"), "{out}");
    lade.fsck_ok();

    // build's FROM refuses the same way.
    let ctx = lade.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {unsigned}\nCMD [\"true\"]\n"),
    )
    .unwrap();
    let err = lade_pw(
        &lade,
        PW,
        &["build", "--verify-key", p, "-t", "b", ctx.to_str().unwrap()],
    )
    .fails_one_line();
    assert!(err.contains("not signed"), "{err}");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {signed}\nCMD [\"true\"]\n"),
    )
    .unwrap();
    lade_pw(
        &lade,
        PW,
        &["build", "--verify-key", p, "-t", "b", ctx.to_str().unwrap()],
    )
    .ok();
}

#[test]
fn copy_all_brings_signatures_and_stored_and_layout_images_sign() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (k, p) = keygen(&lade, &dir, "k", PW);
    let (k, p) = (k.to_str().unwrap(), p.to_str().unwrap());
    let image = push_single(&reg, "lab/a:1");
    lade_pw(&lade, PW, &["sign", "--bundle", "--key", k, &image]).ok();

    let b = reg.image("lab/b:1");
    lade_pw(
        &lade,
        PW,
        &[
            "copy",
            "--all",
            &format!("docker://{image}"),
            &format!("docker://{b}"),
        ],
    )
    .ok();
    let out = lade_pw(&lade, PW, &["verify", "--key", p, &b]).ok().stdout;
    assert!(
        out.contains("cosign signature") && out.contains("sigstore bundle"),
        "{out}"
    );

    let layout = lade.path("layout");
    let oci = format!("oci:{}:x", layout.display());
    lade_pw(
        &lade,
        PW,
        &["copy", "--all", &format!("docker://{image}"), &oci],
    )
    .ok();
    lade.ok(["verify", "--key", p, &oci]);
    // Without --all, no signatures.
    let bare = format!("oci:{}:y", lade.path("bare").display());
    lade_pw(&lade, PW, &["copy", &format!("docker://{image}"), &bare]).ok();
    lade.run(["verify", "--key", p, &bare]).fails_one_line();

    // A stored image signs and verifies in the store, and copies out with its signature.
    lade.ok(["pull", &fixtures().oci("multi"), "local"]);
    lade_pw(&lade, PW, &["sign", "--key", k, "lade:local"]).ok();
    lade.ok(["verify", "--key", p, "lade:local"]);
    let c = reg.image("lab/c:1");
    lade_pw(
        &lade,
        PW,
        &["copy", "--all", "lade:local", &format!("docker://{c}")],
    )
    .ok();
    lade_pw(&lade, PW, &["verify", "--key", p, &c]).ok();
}

#[test]
fn pull_verify_key_fetches_the_image_manifest_once() {
    use support::proxy::Proxy;
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let lade = Lade::new();
    let dir = lade.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let (k, p) = keygen(&lade, &dir, "k", PW);
    let signed = push_single(&reg, "lab/signed:1");
    lade_pw(&lade, PW, &["sign", "--key", k.to_str().unwrap(), &signed]).ok();
    let digest = support::layout_digest(&fixtures().layout(), "single");
    let through_proxy = format!("{}/lab/signed:1", proxy.host());
    for (reference, name) in [
        (through_proxy.clone(), "by-tag"),
        (format!("{}/lab/signed@{digest}", proxy.host()), "by-digest"),
    ] {
        // A fresh store each time: a stored manifest would be read from there.
        let fresh = Lade::new();
        proxy.clear();
        lade_pw(
            &fresh,
            PW,
            &[
                "pull",
                "--verify-key",
                p.to_str().unwrap(),
                &reference,
                name,
            ],
        )
        .ok();
        // The image's manifest, by tag or by digest: read once for the check and the copy.
        let gets: Vec<_> = proxy
            .log()
            .into_iter()
            .filter(|l| {
                (l.method == "GET" || l.method == "HEAD")
                    && (l.path == "/v2/lab/signed/manifests/1"
                        || l.path == format!("/v2/lab/signed/manifests/{digest}"))
            })
            .collect();
        assert_eq!(gets.len(), 1, "{name}:\n{}", proxy.dump());
        assert_eq!(stored_digest(&fresh, name), digest);
    }
}
