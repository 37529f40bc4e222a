//! What the trust tests share (issue 15): the independent Python checkers (cryptography,
//! PyNaCl, oras-py, in the venv tests/run-all.sh makes), lade with a key password in its
//! environment, and a registry holding a signed image.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::registry::Registry;
use crate::common::{Lade, Run, fixtures, run_cmd};

/// The Python of the test venv: `$LADE_TEST_PYTHON`, else tests/run-all.sh's default place.
pub fn python() -> PathBuf {
    let p = std::env::var_os("LADE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lade-test-pyenv/bin/python"));
    assert!(
        p.is_file(),
        "{} is missing: tests/run-all.sh makes it (a venv with cryptography, pynacl, oras)",
        p.display()
    );
    p
}

/// Runs a Python script with arguments.
pub fn run_python(script: &str, args: &[&str]) -> Run {
    let mut c = Command::new(python());
    c.arg("-c").arg(script).args(args);
    run_cmd(c)
}

/// `lade --tls-no-verify ARGS` with `LADE_KEY_PASSWORD=password`.
pub fn lade_pw(lade: &Lade, password: &str, args: &[&str]) -> Run {
    let mut c = lade.cmd();
    c.env("LADE_KEY_PASSWORD", password);
    c.arg("--tls-no-verify").args(args);
    run_cmd(c)
}

/// `lade key generate DIR/NAME` with `password`; returns (private, public) paths.
pub fn keygen(lade: &Lade, dir: &Path, name: &str, password: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    lade_pw(
        lade,
        password,
        &["key", "generate", prefix.to_str().unwrap()],
    )
    .ok();
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// Pushes the fixtures' `single` image to `repo_tag` and returns `HOST/REPO:TAG`.
pub fn push_single(reg: &Registry, repo_tag: &str) -> String {
    reg.push(&fixtures().oci("single"), repo_tag, &[]);
    reg.image(repo_tag)
}

/// `GET` on the plain-HTTP registry; the body, asserting HTTP 200.
pub fn registry_get(reg: &Registry, path: &str, accept: &str) -> Vec<u8> {
    let (head, body) = super::http::get(reg.port, path, &[("Accept", accept)]).unwrap();
    assert_eq!(head.status(), 200, "GET {path}: {head:?}");
    body
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
