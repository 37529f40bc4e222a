//! Interchange with registries as Docker, Podman and skopeo users expect it: a same-registry
//! `lade copy` that reads no blob, `lade login`/`logout` writing the login files lade reads,
//! and Docker's credential helpers.

mod common;
mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::*;
use support::proxy::{Logged, Proxy};
use support::registry::{Auth, Registry};
use support::{insecure, skopeo_digest_insecure, skopeo_inspect_insecure};

fn dump(log: &[Logged]) -> String {
    log.iter()
        .map(|l| {
            format!(
                "{} {} -> {} ({} bytes)",
                l.method, l.path, l.status, l.body_bytes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 12 item 12: every blob of a same-registry copy is mounted, and none is read: the
/// copier asks the destination to mount before it opens the source.
#[test]
fn same_registry_copy_mounts_without_reading_any_blob() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("multi"), "src/app:1", &[]);
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let lade = Lade::new();
    insecure(
        &lade,
        &[
            "copy",
            &format!("docker://{host}/src/app:1"),
            &format!("docker://{host}/dst/app:1"),
        ],
    )
    .ok();
    let log = proxy.log();
    let blob_gets: Vec<&Logged> = log
        .iter()
        .filter(|l| l.method == "GET" && l.path.contains("/blobs/"))
        .collect();
    assert!(blob_gets.is_empty(), "blobs read:\n{}", dump(&log));
    let mounted = log
        .iter()
        .filter(|l| l.method == "POST" && l.status == 201 && l.path.contains("/blobs/uploads/"))
        .count();
    // The fixture has 4 layers and a config.
    assert_eq!(mounted, 5, "{}", dump(&log));
    let bytes: u64 = log.iter().map(|l| l.body_bytes).sum();
    assert!(bytes < 64 * 1024, "{bytes} bytes moved:\n{}", dump(&log));
    // And the copy is whole: skopeo reads it back by the same digest.
    let digest = |repo: &str| skopeo_digest_insecure(&format!("{}/{repo}", reg.host()));
    assert_eq!(digest("src/app:1"), digest("dst/app:1"));
}

const USER: &str = "carol";
const PASS: &str = "c4rol-Login-word";

/// A lade command with no credentials in its environment and its own runtime directory and
/// home, so that only the login files made here count.
fn bare(lade: &Lade, runtime: &Scratch, home: &Scratch, ca: &str) -> std::process::Command {
    let mut c = lade.cmd();
    for k in [
        "LADE_USERNAME",
        "LADE_PASSWORD",
        "REGISTRY_AUTH_FILE",
        "LADE_AUTH",
    ] {
        c.env_remove(k);
    }
    c.env("XDG_RUNTIME_DIR", runtime.path())
        .env("HOME", home.path());
    c.args(["--tls-ca-file", ca]);
    c
}

/// An htpasswd registry over TLS, its CA, a store holding `img`, and an empty runtime
/// directory and home.
fn login_setup() -> (Registry, String, Lade, Scratch, Scratch) {
    let reg = Registry::start(Auth::Htpasswd(vec![(USER.into(), PASS.into())]), true);
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "img"]);
    (reg, ca, lade, Scratch::new("xdg"), Scratch::new("home"))
}

/// Runs `c` with `line` on its standard input: (success, stderr).
fn with_stdin(mut c: std::process::Command, line: &str) -> (bool, String) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `lade login` checks the password with the registry (htpasswd over TLS) before it writes
/// Podman's auth.json (0600); `push` then needs nothing in the environment; `logout` removes
/// the entry and the push is refused again.
#[test]
fn login_then_push_without_credentials_in_the_environment() {
    let (reg, ca, lade, runtime, home) = login_setup();
    let auth_file = runtime.join("containers/auth.json");
    let login = |password: &str| {
        let mut c = bare(&lade, &runtime, &home, &ca);
        c.args(["login", "--username", USER, "--password-stdin", &reg.host()]);
        with_stdin(c, password)
    };
    let (ok, err) = login("not-the-password");
    assert!(!ok && err.contains("refused user 'carol'"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(!auth_file.exists(), "a refused login was saved");
    let (ok, err) = login(PASS);
    assert!(ok, "{err}");
    let md = fs::metadata(&auth_file).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    let expected = base64_of(&format!("{USER}:{PASS}"));
    assert_eq!(saved["auths"][reg.host()]["auth"], expected.as_str());
    let push = || {
        let mut c = bare(&lade, &runtime, &home, &ca);
        c.args(["push", "img", &reg.image("team/app:1")]);
        run_cmd(c)
    };
    push().ok();
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.args(["logout", &reg.host()]);
    run_cmd(c).ok();
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
    assert!(saved["auths"].get(reg.host()).is_none(), "{saved}");
    let err = push().fails_one_line();
    assert!(err.contains("no terminal"), "{err}");
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.args(["logout", &reg.host()]);
    assert!(run_cmd(c).fails_one_line().contains("not logged in"));
}

fn base64_of(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A credential helper named in Docker's config.json (`credHelpers`) is asked with `get`,
/// speaking the helper protocol, for a push and (refused anonymously) for a pull; `lade login`
/// with a `credsStore` stores through it, and `logout` erases. The helper is a small shell
/// script logging each call (never the secret).
#[test]
fn docker_credential_helpers_are_run() {
    let (reg, ca, lade, runtime, home) = login_setup();
    let bin = home.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = home.join("helper.log");
    let store = home.join("helper.store");
    let script = format!(
        r#"#!/bin/sh
input=$(cat)
case "$1" in
get)   echo "get $input" >> '{log}'
       if [ -f '{store}' ]; then cat '{store}'; exit 0; fi
       [ "$input" = '{host}' ] || {{ echo "credentials not found in native keychain"; exit 1; }}
       printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASS}"}}' "$input" ;;
store) echo "store" >> '{log}'; printf '%s' "$input" > '{store}' ;;
erase) echo "erase $input" >> '{log}'; rm -f '{store}' ;;
*)     exit 2 ;;
esac
"#,
        log = log.display(),
        store = store.display(),
        host = reg.host(),
    );
    let helper = bin.join("docker-credential-ladetest");
    fs::write(&helper, script).unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(home.join(".docker")).unwrap();
    fs::write(
        home.join(".docker/config.json"),
        format!(r#"{{"credHelpers": {{"{}": "ladetest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.env("PATH", &path)
        .args(["push", "img", &reg.image("helped/app:1")]);
    run_cmd(c).ok();
    let calls = fs::read_to_string(&log).unwrap();
    assert!(calls.contains(&format!("get {}", reg.host())), "{calls}");
    assert!(!calls.contains(PASS));
    // A read needs no --auth: refused anonymously, it asks the same helper.
    fs::remove_file(&log).unwrap();
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.env("PATH", &path)
        .args(["pull", &reg.image("helped/app:1"), "helped"]);
    run_cmd(c).ok();
    let calls = fs::read_to_string(&log).unwrap();
    assert!(calls.contains(&format!("get {}", reg.host())), "{calls}");
    // login through a credsStore: the secret goes to the helper, the file lists the registry.
    fs::remove_file(&log).unwrap();
    let config = home.join("other-config.json");
    fs::write(&config, r#"{"credsStore": "ladetest"}"#).unwrap();
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.env("PATH", &path);
    c.args([
        "login",
        "--authfile",
        config.to_str().unwrap(),
        "-u",
        USER,
        "--password-stdin",
    ]);
    c.arg(reg.host());
    let (ok, err) = with_stdin(c, PASS);
    assert!(ok, "{err}");
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(&store).unwrap()).unwrap();
    assert_eq!(stored["Username"], USER);
    assert_eq!(stored["ServerURL"], reg.host());
    let file: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(file["auths"][reg.host()], serde_json::json!({}));
    assert_eq!(file["credsStore"], "ladetest");
    assert!(!fs::read_to_string(&config).unwrap().contains(PASS));
    let mut c = bare(&lade, &runtime, &home, &ca);
    c.env("PATH", &path);
    c.args([
        "logout",
        "--authfile",
        config.to_str().unwrap(),
        &reg.host(),
    ]);
    run_cmd(c).ok();
    assert!(!store.exists());
    let calls = fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("store") && calls.contains(&format!("erase {}", reg.host())),
        "{calls}"
    );
}

/// `lade list --format json docker://REF` says what the registry has (it printed `null`),
/// `list --tags --format json` is an array, and `inspect docker://` agrees with skopeo's,
/// RepoTags included.
#[test]
fn remote_list_and_inspect_in_json() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("multi"), "json/app:1", &[]);
    reg.push(&fixtures().oci("multi"), "json/app:2", &[]);
    let lade = Lade::new();
    let image = reg.image("json/app:1");
    let out = insecure(
        &lade,
        &["list", "--format", "json", &format!("docker://{image}")],
    )
    .ok()
    .stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let theirs = skopeo_inspect_insecure(&image);
    assert_eq!(v["local"], serde_json::Value::Null);
    assert_eq!(v["remote"]["available"], "yes");
    assert_eq!(v["remote"]["digest"], theirs["Digest"]);
    // A single manifest, not an index: architecture-unaware, as ch-image says.
    assert_eq!(v["remote"]["arch_aware"], false);
    assert_eq!(v["remote"]["archs"], serde_json::json!([]));
    let missing = insecure(
        &lade,
        &[
            "list",
            "--format",
            "json",
            &format!("docker://{}", reg.image("json/none:1")),
        ],
    )
    .ok()
    .stdout;
    let m: serde_json::Value = serde_json::from_str(&missing).unwrap();
    assert_eq!(m["remote"]["available"], "no", "{m}");
    let tags = insecure(
        &lade,
        &["list", "--tags", "--format", "json", &reg.image("json/app")],
    )
    .ok()
    .stdout;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tags).unwrap(),
        serde_json::json!(["1", "2"])
    );
    let ours: serde_json::Value = serde_json::from_str(
        &insecure(&lade, &["inspect", &format!("docker://{image}")])
            .ok()
            .stdout,
    )
    .unwrap();
    // The same tags (skopeo's order is not the registry's).
    let sorted = |v: &serde_json::Value| {
        let mut t: Vec<String> = v["RepoTags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    assert_eq!(sorted(&ours), ["1", "2"]);
    assert_eq!(sorted(&ours), sorted(&theirs));
    for field in [
        "Name",
        "Digest",
        "Architecture",
        "Os",
        "Layers",
        "Env",
        "Created",
    ] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
}
