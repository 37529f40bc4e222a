//! Pushing to a real registry (Debian's docker-registry, Distribution 2.8) on loopback, as an
//! ordinary user: lade pushes, skopeo and umoci read back. Also what is *not* sent (blobs the
//! registry has, mounts instead of uploads), counted at the fault proxy, authentication (basic
//! over TLS, bearer tokens upgraded to push scope), fallbacks, corrupt sources, packed pushes,
//! tag listing and remote deletion.

mod common;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use support::proxy::{Action, Logged, Proxy};
use support::registry::{Auth, Registry};
use support::token::{self, TokenServer};
use support::{insecure, layout_digest, skopeo_digest_insecure};

/// A lade store holding the fixtures' `multi` image as `img`.
fn lade_with_multi() -> Lade {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("multi"), "img"]);
    lade
}

/// `skopeo copy docker://REF oci:DIR:t`; returns `DIR:t`.
fn skopeo_fetch(reference: &str, dir: &Path, extra: &[&str]) -> String {
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", "--src-tls-verify=false"]);
    c.args(extra);
    c.arg(format!("docker://{reference}"));
    c.arg(format!("oci:{}:t", dir.display()));
    c.env("TMPDIR", dir.parent().unwrap());
    run_cmd(c).ok();
    format!("{}:t", dir.display())
}

fn uploads(log: &[Logged]) -> Vec<&Logged> {
    log.iter()
        .filter(|l| {
            (l.method == "PUT" || l.method == "PATCH") && l.path.contains("/blobs/uploads/")
        })
        .collect()
}

fn mounts(log: &[Logged]) -> usize {
    log.iter()
        .filter(|l| l.method == "POST" && l.status == 201)
        .count()
}

fn dump(log: &[Logged]) -> String {
    log.iter()
        .map(|l| format!("{} {} -> {}", l.method, l.path, l.status))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn round_trip_skopeo_and_umoci_see_what_lade_pushed() {
    let f = fixtures();
    let reg = Registry::anonymous();
    let lade = lade_with_multi();
    let dest = reg.image("rt/multi:v1");
    insecure(&lade, &["push", "img", &dest]).ok();
    // Digest preserved: the registry serves the stored manifest unchanged.
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false", &format!("docker://{dest}")]);
    let inspected: serde_json::Value = serde_json::from_str(&run_cmd(c).ok().stdout).unwrap();
    assert_eq!(inspected["Digest"], stored_digest(&lade, "img").as_str());
    let s = Scratch::new("rt");
    let image = skopeo_fetch(&dest, &s.join("oci"), &[]);
    let rootfs = umoci_unpack(&image, &s.join("bundle"));
    let started = lade.path("started");
    lade.ok(["unpack".as_ref(), "img".as_ref(), started.as_os_str()]);
    assert_same_tree(&rootfs, &started, &vs_umoci());
    // And umoci of the original layout agrees.
    let orig = umoci_unpack(&format!("{}:multi", f.layout().display()), &s.join("b2"));
    assert_same_tree(&orig, &rootfs, &CompareOpts::default());
}

#[test]
fn second_push_uploads_nothing_and_new_repository_mounts() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let lade = lade_with_multi();
    let host = proxy.host();
    insecure(&lade, &["push", "img", &format!("{host}/a/x:1")]).ok();
    let first = proxy.log();
    assert!(!uploads(&first).is_empty(), "{}", dump(&first));
    // No ping first: the client's first request settles HTTPS or HTTP by itself.
    let pings = first.iter().filter(|l| l.path == "/v2/").count();
    assert_eq!(pings, 0, "{}", dump(&first));
    proxy.clear();
    insecure(&lade, &["push", "img", &format!("{host}/a/x:2")]).ok();
    let log = proxy.log();
    assert!(uploads(&log).is_empty(), "uploaded again:\n{}", dump(&log));
    assert!(!log.iter().any(|l| l.method == "POST"), "{}", dump(&log));
    // Another repository of the same registry: mounted, not uploaded.
    proxy.clear();
    insecure(&lade, &["push", "img", &format!("{host}/b/y:1")]).ok();
    let log = proxy.log();
    assert!(uploads(&log).is_empty(), "uploaded:\n{}", dump(&log));
    assert!(mounts(&log) >= 2, "{}", dump(&log));
    let s = Scratch::new("mnt");
    skopeo_fetch(&format!("{}/b/y:1", reg.host()), &s.join("oci"), &[]);
}

/// Pull a base, build on it, push the result beside it in the same registry: the store
/// remembers which repository served the base's blobs, so the push mounts them from there
/// and uploads only the new layer and config.
#[test]
fn pushing_a_build_next_to_its_pulled_base_mounts_the_base_layers() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("multi"), "library/base:1", &[]);
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let b = BuildCtx::in_store(Lade::new());
    insecure(
        &b.lade,
        &["pull", &format!("{host}/library/base:1"), "base"],
    )
    .ok();
    let base_layers = b.record("base")["layers"].as_array().unwrap().len();
    assert!(base_layers >= 2);
    b.build_ok("app", "FROM base\nRUN echo built > /built\n");
    proxy.clear();
    insecure(&b.lade, &["push", "app", &format!("{host}/me/app:1")]).ok();
    let log = proxy.log();
    assert_eq!(mounts(&log), base_layers, "{}", dump(&log));
    // The new layer and the config.
    let puts = uploads(&log).iter().filter(|l| l.method == "PUT").count();
    assert_eq!(puts, 2, "{}", dump(&log));
    let s = Scratch::new("built");
    let image = skopeo_fetch(&format!("{}/me/app:1", reg.host()), &s.join("oci"), &[]);
    let rootfs = umoci_unpack(&image, &s.join("bundle"));
    assert_eq!(fs::read_to_string(rootfs.join("built")).unwrap(), "built\n");
}

#[test]
fn registry_to_registry_copy_mounts_and_keeps_the_digest() {
    let reg = Registry::anonymous();
    reg.push(&fixtures().oci("multi"), "src/app:1", &[]);
    let proxy = Proxy::start(reg.port);
    let lade = Lade::new();
    let host = proxy.host();
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
    assert!(uploads(&log).is_empty(), "{}", dump(&log));
    assert!(mounts(&log) >= 2, "{}", dump(&log));
    let a = skopeo_digest_insecure(&format!("{}/src/app:1", reg.host()));
    let b = skopeo_digest_insecure(&format!("{}/dst/app:1", reg.host()));
    assert_eq!(a, b);
}

#[test]
fn refused_mount_falls_back_to_upload() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    // The store's record says the blobs are in a repository the registry does not have: it
    // refuses the mount by answering 202 with an upload session, which lade then uses.
    let lade = lade_with_multi();
    fs::write(
        lade.storage.join("registry-blobs"),
        fixture_blob_lines(&lade, &format!("{host}/nowhere/none")),
    )
    .unwrap();
    insecure(&lade, &["push", "img", &format!("{host}/d/w:1")]).ok();
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.method == "POST" && l.status == 202 && l.path.contains("uploads")),
        "{}",
        dump(&log)
    );
    assert_eq!(mounts(&log), 0, "{}", dump(&log));
    assert!(!uploads(&log).is_empty(), "{}", dump(&log));
    let s = Scratch::new("fb");
    let image = skopeo_fetch(&format!("{}/d/w:1", reg.host()), &s.join("oci"), &[]);
    umoci_unpack(&image, &s.join("bundle"));
}

/// Record lines claiming every blob of `img` is in `repo` (`HOST/REPO`).
fn fixture_blob_lines(lade: &Lade, repo: &str) -> String {
    let mut out = String::new();
    for e in fs::read_dir(lade.storage.join("blobs/sha256")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        out.push_str(&format!("sha256:{name} {repo}\n"));
    }
    out
}

#[test]
fn chunked_and_monolithic_uploads_and_their_fallbacks() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let lade = lade_with_multi();
    // Chunked, small chunks: several PATCHes, then the closing PUT.
    let r = {
        let mut c = lade.cmd();
        c.args(["--tls-no-verify", "push", "img", &format!("{host}/ch/a:1")]);
        c.env("LADE_PUSH_UPLOAD", "chunked")
            .env("LADE_PUSH_CHUNK_SIZE", "20000");
        run_cmd(c)
    };
    r.ok();
    let log = proxy.log();
    assert!(
        log.iter().filter(|l| l.method == "PATCH").count() >= 2,
        "{}",
        dump(&log)
    );
    let s = Scratch::new("ch");
    let image = skopeo_fetch(&format!("{}/ch/a:1", reg.host()), &s.join("oci"), &[]);
    umoci_unpack(&image, &s.join("bundle"));
    // A registry refusing PATCH: lade falls back to one monolithic PUT.
    proxy.clear();
    proxy.set_rule(|h, _| {
        if h.method == "PATCH" {
            Action::Status(405, vec![], String::new())
        } else {
            Action::Forward
        }
    });
    let lade2 = lade_with_multi();
    let r = {
        let mut c = lade2.cmd();
        c.args([
            "--tls-no-verify",
            "-v",
            "push",
            "img",
            &format!("{host}/ch/b:1"),
        ]);
        c.env("LADE_PUSH_UPLOAD", "chunked")
            .env("LADE_PUSH_CHUNK_SIZE", "20000");
        run_cmd(c)
    };
    r.ok();
    let log = proxy.log();
    assert!(log.iter().any(|l| l.method == "PATCH" && l.status == 405));
    let s = Scratch::new("ch2");
    let image = skopeo_fetch(&format!("{}/ch/b:1", reg.host()), &s.join("oci"), &[]);
    umoci_unpack(&image, &s.join("bundle"));
}

#[test]
fn a_registry_refusing_big_puts_gets_chunks() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let lade = lade_with_multi();
    proxy.set_rule(|h, _| {
        let len: u64 = h
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if h.method == "PUT" && h.target.contains("/blobs/uploads/") && len > 20000 {
            Action::Status(413, vec![], String::new())
        } else {
            Action::Forward
        }
    });
    let mut c = lade.cmd();
    c.args(["--tls-no-verify", "push", "img", &format!("{host}/big/a:1")]);
    c.env("LADE_PUSH_CHUNK_SIZE", "20000");
    run_cmd(c).ok();
    let log = proxy.log();
    assert!(log.iter().any(|l| l.status == 413), "{}", dump(&log));
    assert!(log.iter().any(|l| l.method == "PATCH"), "{}", dump(&log));
    let s = Scratch::new("big");
    let image = skopeo_fetch(&format!("{}/big/a:1", reg.host()), &s.join("oci"), &[]);
    umoci_unpack(&image, &s.join("bundle"));
}

#[test]
fn a_dropped_upload_is_restarted() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let lade = lade_with_multi();
    // The first two blob PUTs are cut (the connection closes before any answer): each
    // upload restarts from the store's copy in a new session.
    let mut cut = 0;
    proxy.set_rule(move |h, _| {
        if h.method == "PUT" && h.target.contains("/blobs/uploads/") && cut < 2 {
            cut += 1;
            Action::Close
        } else {
            Action::Forward
        }
    });
    insecure(&lade, &["push", "img", &format!("{host}/drop/a:1")]).ok();
    let s = Scratch::new("drop");
    let image = skopeo_fetch(&format!("{}/drop/a:1", reg.host()), &s.join("oci"), &[]);
    umoci_unpack(&image, &s.join("bundle"));
}

#[test]
fn a_corrupt_source_fails_clearly_and_tags_nothing() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    // An OCI layout with one layer's bytes changed (same size).
    let f = fixtures();
    let s = Scratch::new("corrupt");
    let layout = s.join("layout");
    let mut c = Command::new("cp");
    c.arg("-r").arg(f.layout()).arg(&layout);
    run_cmd(c).ok();
    let (digest, _) = support::layers_by_size(&layout, "multi")[0].clone();
    let blob = layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, &bytes).unwrap();
    let err = insecure(
        &lade,
        &[
            "copy",
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{}/bad/x:1", reg.host()),
        ],
    )
    .fails_one_line();
    assert!(err.contains(&digest) && err.contains("corrupt"), "{err}");
    let (h, _) = support::http::get(reg.port, "/v2/bad/x/manifests/1", &[]).unwrap();
    assert_eq!(h.status(), 404, "tagged anyway");
}

#[test]
fn basic_auth_over_tls() {
    const USER: &str = "bob";
    const PASS: &str = "b0b-Push-word";
    let reg = Registry::start(Auth::Htpasswd(vec![(USER.into(), PASS.into())]), true);
    let ca = reg.tls.as_ref().unwrap().ca.to_str().unwrap().to_string();
    let lade = lade_with_multi();
    let home = Scratch::new("home");
    let dest = reg.image("team/app:1");
    let push = |env: &[(&str, &str)]| {
        let mut c = lade.cmd();
        c.env_remove("LADE_USERNAME").env_remove("LADE_PASSWORD");
        c.env("HOME", home.path());
        c.envs(env.iter().copied());
        c.args(["-v", "--tls-ca-file", &ca, "push", "img", &dest]);
        run_cmd(c)
    };
    let err = push(&[("LADE_USERNAME", USER), ("LADE_PASSWORD", "wrong")]).fails_one_line();
    assert!(!err.contains("wrong"), "{err}");
    let r = push(&[("LADE_USERNAME", USER), ("LADE_PASSWORD", PASS)]);
    assert!(!r.stderr.contains(PASS) && !r.stdout.contains(PASS));
    r.ok();
    let s = Scratch::new("tls");
    let creds = format!("--src-creds={USER}:{PASS}");
    let image = skopeo_fetch(&dest, &s.join("oci"), &[&creds]);
    umoci_unpack(&image, &s.join("bundle"));
}

#[test]
fn bearer_token_scope_is_upgraded_for_the_push() {
    const USER: &str = "alice";
    const PASS: &str = "s3cret-Pa55";
    let dir = Scratch::new("token");
    let ts = TokenServer::start(&dir.join("token"), token::Config::default());
    let reg = Registry::start(ts.registry_auth(), false);
    let lade = lade_with_multi();
    let home = Scratch::new("home");
    let mut c = lade.cmd();
    c.env("HOME", home.path())
        .env("LADE_USERNAME", USER)
        .env("LADE_PASSWORD", PASS);
    c.args(["--tls-no-verify", "push", "img", &reg.image("team/app:1")]);
    let r = run_cmd(c);
    assert!(!r.stderr.contains(PASS));
    r.ok();
    let reqs = ts.requests();
    let scopes: Vec<String> = reqs.iter().flat_map(|r| r.scopes.clone()).collect();
    let pull = scopes
        .iter()
        .position(|s| s == "repository:team/app:pull")
        .unwrap_or_else(|| panic!("{scopes:?}"));
    let push = scopes
        .iter()
        .position(|s| s == "repository:team/app:pull,push")
        .unwrap_or_else(|| panic!("{scopes:?}"));
    assert!(pull < push, "{scopes:?}");
    assert!(reqs.iter().all(|r| r.user.as_deref() == Some(USER)));
    let s = Scratch::new("tok");
    let creds = format!("--src-creds={USER}:{PASS}");
    skopeo_fetch(&reg.image("team/app:1"), &s.join("oci"), &[&creds]);
    // Another repository: the mount needs pull on the first one too, which the registry's
    // challenge asks for and lade gets.
    ts.clear();
    let mut c = lade.cmd();
    c.env("HOME", home.path())
        .env("LADE_USERNAME", USER)
        .env("LADE_PASSWORD", PASS);
    c.args([
        "--tls-no-verify",
        "-v",
        "push",
        "img",
        &reg.image("team/other:1"),
    ]);
    let r = run_cmd(c).ok();
    assert!(r.stderr.contains("mounted from team/app"), "{}", r.stderr);
    skopeo_fetch(&reg.image("team/other:1"), &s.join("oci2"), &[&creds]);
}

/// A tree with setuid/setgid files and files owned by us (not root).
fn odd_tree(root: &Path) -> PathBuf {
    let t = root.join("tree");
    fs::create_dir_all(t.join("bin")).unwrap();
    fs::write(t.join("bin/su"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(t.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(t.join("bin/sg"), b"x").unwrap();
    fs::set_permissions(t.join("bin/sg"), fs::Permissions::from_mode(0o2755)).unwrap();
    fs::write(t.join("a"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a", t.join("link")).unwrap();
    fs::hard_link(t.join("a"), t.join("hard")).unwrap();
    t
}

#[test]
fn packed_pushes_are_deterministic_and_normalised() {
    let reg = Registry::anonymous();
    let s = Scratch::new("packed");
    let tree = odd_tree(s.path());
    let lade = Lade::new();
    let push = |dest: &str, extra: &[&str]| {
        let mut args = vec!["--tls-no-verify", "push", "--image", tree.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("x");
        args.push(dest);
        lade.run(args).ok();
        skopeo_digest_insecure(dest)
    };
    let a = push(&reg.image("p/a:1"), &[]);
    // The same tree copied elsewhere, later, with other timestamps: the same digest.
    let copy = s.join("copy");
    let mut c = Command::new("cp");
    c.arg("-a").arg(&tree).arg(&copy);
    run_cmd(c).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(copy.join("a"), vec![7u8; 300_000]).unwrap();
    let b = {
        let mut args = vec!["--tls-no-verify", "push", "--image", copy.to_str().unwrap()];
        let d = reg.image("p/b:1");
        args.extend(["x", &d]);
        lade.run(args).ok();
        skopeo_digest_insecure(&d)
    };
    assert_eq!(a, b);
    assert_eq!(push(&reg.image("p/a:2"), &[]), a);
    // The layer: root:root, no setuid/setgid, sorted.
    let fetched = Scratch::new("fetched");
    skopeo_fetch(&reg.image("p/a:1"), &fetched.join("oci"), &[]);
    let entries = layer_entries(&fetched.join("oci"));
    assert!(!entries.is_empty());
    for (path, mode, uid, gid) in &entries {
        assert_eq!((uid, gid), (&0, &0), "{path}");
        assert_eq!(mode & 0o6000, 0, "{path} {mode:o}");
    }
    let names: Vec<&String> = entries.iter().map(|e| &e.0).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // The tree comes back (modes apart from the removed bits).
    let rootfs = umoci_unpack(
        &format!("{}:t", fetched.join("oci").display()),
        &fetched.join("b"),
    );
    let got = fs::read(rootfs.join("a")).unwrap();
    assert_eq!(got.len(), 300_000);
    // Other compressions.
    for (comp, media) in [("zstd", "tar+zstd"), ("none", "v1.tar")] {
        let dest = reg.image(&format!("p/{comp}:1"));
        push(&dest, &["--compression", comp]);
        let mut c = Command::new("skopeo");
        c.args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{dest}"),
        ]);
        let raw = run_cmd(c).ok().stdout;
        assert!(raw.contains(media), "{comp}: {raw}");
    }
}

/// (path, mode, uid, gid) of the one layer of `oci:DIR:t`, via `tar`.
fn layer_entries(layout: &Path) -> Vec<(String, u32, u64, u64)> {
    let d = support::layout_descriptor(layout, "t");
    let hex = d["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let f = fs::File::open(blob).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

#[test]
fn imported_images_push_with_their_stored_digest() {
    let reg = Registry::anonymous();
    let s = Scratch::new("imp");
    let tree = odd_tree(s.path());
    let lade = Lade::new();
    lade.ok(["import".as_ref(), tree.as_os_str(), "imp".as_ref()]);
    insecure(&lade, &["push", "imp", &reg.image("imp/x:1")]).ok();
    assert_eq!(
        skopeo_digest_insecure(&reg.image("imp/x:1")),
        stored_digest(&lade, "imp")
    );
}

#[test]
fn tags_are_listed_across_pages_and_deleted() {
    let reg = Registry::anonymous();
    let lade = lade_with_multi();
    let mut want = Vec::new();
    for i in 0..7 {
        let t = format!("t{i}");
        insecure(&lade, &["push", "img", &reg.image(&format!("many/x:{t}"))]).ok();
        want.push(t);
    }
    let list = |page: &str| {
        let mut c = lade.cmd();
        c.env("LADE_TAGS_PAGE", page);
        c.args(["--tls-no-verify", "list", "--tags", &reg.image("many/x")]);
        let out = run_cmd(c).ok().stdout;
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(list("3"), want);
    assert_eq!(list("1000"), want);
    // Distribution 2.8 ignores `n`: a registry that pages (three per page, `Link` to the
    // next, relative as the spec has it), played by the proxy.
    let proxy = Proxy::start(reg.port);
    proxy.set_rule(|h, _| {
        if !h.path().ends_with("/tags/list") {
            return Action::Forward;
        }
        let last = h
            .query()
            .into_iter()
            .find(|(k, _)| k == "last")
            .map(|(_, v)| v);
        let (page, next): (&[&str], Option<&str>) = match last.as_deref() {
            None => (&["t0", "t1", "t2"], Some("t2")),
            Some("t2") => (&["t3", "t4", "t5"], Some("t5")),
            _ => (&["t6"], None),
        };
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(n) = next {
            headers.push((
                "Link".into(),
                format!("</v2/many/x/tags/list?n=3&last={n}>; rel=\"next\""),
            ));
        }
        let body = serde_json::json!({"name": "many/x", "tags": page}).to_string();
        Action::Status(200, headers, body)
    });
    let mut c = lade.cmd();
    c.env("LADE_TAGS_PAGE", "3");
    c.args([
        "--tls-no-verify",
        "list",
        "--tags",
        &format!("{}/many/x", proxy.host()),
    ]);
    let out = run_cmd(c).ok().stdout;
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert_eq!(
        proxy
            .log()
            .iter()
            .filter(|l| l.path.ends_with("/tags/list"))
            .count(),
        3
    );
    // Deleting a tag: Distribution deletes manifests by digest (all tags naming it go).
    let out = insecure(
        &lade,
        &["delete", &format!("docker://{}", reg.image("many/x:t0"))],
    )
    .ok()
    .stdout;
    assert!(out.contains("deleted"), "{out}");
    let (h, _) = support::http::get(reg.port, "/v2/many/x/manifests/t0", &[]).unwrap();
    assert_eq!(h.status(), 404);
    // A digest that is gone: one clear line.
    let gone = format!(
        "docker://{}@{}",
        reg.image("many/x"),
        stored_digest(&lade, "img")
    );
    let err = insecure(&lade, &["delete", &gone]).fails_one_line();
    assert!(err.contains("many/x"), "{err}");
}

#[test]
fn copy_between_all_transports_keeps_digests() {
    let f = fixtures();
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let s = Scratch::new("xport");
    let want = layout_digest(&f.layout(), "multi");
    let layout2 = s.join("l2");
    let archive = s.join("a.tar");
    let steps = [
        (f.oci("multi"), format!("docker://{}", reg.image("x/a:1"))),
        (
            format!("docker://{}", reg.image("x/a:1")),
            format!("oci:{}:m", layout2.display()),
        ),
        (
            format!("oci:{}:m", layout2.display()),
            format!("oci-archive:{}:m", archive.display()),
        ),
        (
            format!("oci-archive:{}:m", archive.display()),
            format!("docker://{}", reg.image("x/b:1")),
        ),
        (
            format!("docker://{}", reg.image("x/b:1")),
            "lade:st".to_string(),
        ),
        (
            "lade:st".to_string(),
            format!("docker://{}", reg.image("x/c:1")),
        ),
    ];
    for (a, b) in &steps {
        insecure(&lade, &["copy", a, b]).ok();
    }
    for r in ["x/a:1", "x/b:1", "x/c:1"] {
        assert_eq!(skopeo_digest_insecure(&reg.image(r)), want, "{r}");
    }
    assert_eq!(stored_digest(&lade, "st"), want);
    // A whole index with --all.
    let multi = support::multiarch_layout(f, &s);
    insecure(
        &lade,
        &[
            "copy",
            "--all",
            &format!("oci:{}:multiarch", multi.display()),
            &format!("docker://{}", reg.image("x/all:1")),
        ],
    )
    .ok();
    let mut c = Command::new("skopeo");
    c.args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.image("x/all:1")),
    ]);
    let raw = run_cmd(c).ok().stdout;
    assert!(raw.contains("arm64") && raw.contains("amd64"), "{raw}");
}
