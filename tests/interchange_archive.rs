//! `docker-archive:`: what `docker save` writes and `docker load` reads, checked against
//! skopeo both ways (skopeo writes what lade reads; skopeo reads what lade writes, one image
//! or several), the image ID (the config's digest) measured across round trips, tags kept,
//! standard input and output, and hostile `manifest.json` paths refused.

mod common;
mod support;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use support::layout_digest;

/// The members of a tar file, by name (directories with their trailing '/').
fn members(tar: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(fs::File::open(tar).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A member's bytes (following no links).
fn member(tar: &Path, name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(fs::File::open(tar).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy().trim_start_matches("./") == name {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("no {name} in {}", tar.display());
}

fn manifest_json(tar: &Path) -> serde_json::Value {
    serde_json::from_slice(&member(tar, "manifest.json")).unwrap()
}

/// The config digest (the image ID) and layer digests of tag `tag` of an OCI layout.
fn layout_image(layout: &Path, tag: &str) -> (String, Vec<String>) {
    let digest = layout_digest(layout, tag);
    let hex = digest.strip_prefix("sha256:").unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    let layers = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (m["config"]["digest"].as_str().unwrap().to_string(), layers)
}

/// The store record of `name`.
fn record(lade: &Lade, name: &str) -> serde_json::Value {
    serde_json::from_str(&lade.ok(["list", "--format", "json", name])).unwrap()
}

fn skopeo(args: &[&str], tmp: &Path) -> String {
    let mut c = Command::new("skopeo");
    c.args(args).env("TMPDIR", tmp);
    run_cmd(c).ok().stdout
}

/// skopeo's archive (the legacy form: `<diffid>.tar` layers, `<id>/layer.tar` links, the
/// config as `<id>.json`) is read by lade with the image ID, the diff-IDs as layer digests
/// and the tag it holds; the unpacked tree is what umoci makes of the original.
#[test]
fn lade_reads_what_skopeo_writes() {
    let f = fixtures();
    let lade = Lade::new();
    let tmp = lade.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let archive = lade.path("skopeo.tar");
    skopeo(
        &[
            "copy",
            "--quiet",
            &f.oci("multi"),
            &format!("docker-archive:{}:demo/multi:1", archive.display()),
        ],
        &tmp,
    );
    assert!(
        members(&archive).iter().any(|m| m.ends_with("/layer.tar")),
        "not the legacy form: {:?}",
        members(&archive)
    );
    // No name given: the archive's own tag names the image in the store.
    let out = lade.run(["pull", &format!("docker-archive:{}", archive.display())]);
    assert!(out.ok().stderr.contains("demo/multi:1"));
    let rec = record(&lade, "demo/multi:1");
    let (config, _) = layout_image(&f.layout(), "multi");
    assert_eq!(rec["config"], config.as_str(), "image ID changed");
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(
        &["inspect", &format!("docker-archive:{}", archive.display())],
        &tmp,
    ))
    .unwrap();
    let blobs: Vec<&str> = rec["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["blob"].as_str().unwrap())
        .collect();
    let skopeo_layers: Vec<&str> = inspected["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(blobs, skopeo_layers, "layer digests differ from skopeo's");
    let diff_ids: Vec<&str> = rec["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        blobs, diff_ids,
        "an uncompressed layer's digest is its diff-ID"
    );
    let s = Scratch::new("da-umoci");
    let expected = umoci_unpack(
        &format!("{}:multi", f.layout().display()),
        &s.join("bundle"),
    );
    let got = lade.path("rootfs");
    lade.ok(["unpack".as_ref(), "demo/multi:1".as_ref(), got.as_os_str()]);
    assert_same_tree(&expected, &got, &vs_umoci());
    lade.fsck_ok();
}

/// Two images in one archive, the second added to the first's archive; skopeo reads each by
/// tag and by position with its config unchanged, and lade reads them back with every digest
/// (manifest included) unchanged: the image ID survives the round trip, measured both ways.
#[test]
fn skopeo_reads_what_lade_writes_one_image_or_several() {
    let f = fixtures();
    let lade = Lade::new();
    let tmp = lade.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let archive = lade.path("lade.tar");
    let a = archive.display().to_string();
    lade.ok(["pull", &f.oci("multi"), "multi"]);
    lade.ok(["pull", &f.oci("single"), "single"]);
    lade.ok(["push", "multi", &format!("docker-archive:{a}:demo/multi:1")]);
    // Written alone, skopeo reads it.
    let (multi_config, _) = layout_image(&f.layout(), "multi");
    let (single_config, _) = layout_image(&f.layout(), "single");
    let sk_config = |which: &str| -> String {
        let raw = skopeo(&["inspect", "--config", "--raw", which], &tmp);
        sha256(raw.as_bytes())
    };
    assert_eq!(sk_config(&format!("docker-archive:{a}")), multi_config);
    // Added: a second image in the same archive (no name: the store name tags it).
    lade.ok(["copy", "lade:single", &format!("docker-archive:{a}")]);
    let m = manifest_json(&archive);
    let tags: Vec<&serde_json::Value> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["RepoTags"])
        .collect();
    assert_eq!(
        tags,
        [
            &serde_json::json!(["demo/multi:1"]),
            &serde_json::json!(["single:latest"])
        ]
    );
    assert_eq!(
        sk_config(&format!(
            "docker-archive:{a}:docker.io/library/single:latest"
        )),
        single_config
    );
    assert_eq!(sk_config(&format!("docker-archive:{a}:@0")), multi_config);
    // skopeo copies each out, and umoci unpacks what it copied.
    let s = Scratch::new("da-sk");
    skopeo(
        &[
            "copy",
            "--quiet",
            &format!("docker-archive:{a}:@1"),
            &format!("oci:{}:x", s.join("oci").display()),
        ],
        &tmp,
    );
    umoci_unpack(&format!("{}:x", s.join("oci").display()), &s.join("b"));
    // Back into a fresh store: the very manifests of the originals, so the same image IDs.
    let back = Lade::new();
    back.ok(["pull", &format!("docker-archive:{a}:demo/multi:1"), "m"]);
    back.ok(["pull", &format!("docker-archive:{a}:@1"), "s"]);
    assert_eq!(record(&back, "m")["config"], multi_config.as_str());
    assert_eq!(record(&back, "s")["config"], single_config.as_str());
    assert_eq!(
        stored_digest(&back, "m"),
        layout_digest(&f.layout(), "multi")
    );
    assert_eq!(
        stored_digest(&back, "s"),
        layout_digest(&f.layout(), "single")
    );
    // Several images and no name: an error that lists them.
    let err = back
        .run(["pull", &format!("docker-archive:{a}")])
        .fails_one_line();
    assert!(
        err.contains("holds 2 images") && err.contains("demo/multi:1 (@0)"),
        "{err}"
    );
    let err = back
        .run(["pull", &format!("docker-archive:{a}:nosuch:1")])
        .fails_one_line();
    assert!(err.contains("single:latest (@1)"), "{err}");
}

/// The archive's tags travel with the image when the destination names none; a tag given to
/// another image leaves the one that had it, and an image left untagged is dropped with the
/// blobs only it used.
#[test]
fn tags_are_kept_and_move() {
    let f = fixtures();
    let lade = Lade::new();
    let first = lade.path("first.tar");
    let second = lade.path("second.tar");
    lade.ok(["pull", &f.oci("multi"), "multi"]);
    lade.ok(["pull", &f.oci("single"), "single"]);
    lade.ok([
        "push",
        "multi",
        &format!("docker-archive:{}:a/b:1", first.display()),
    ]);
    lade.ok([
        "copy",
        &format!("docker-archive:{}:@0", first.display()),
        &format!("docker-archive:{}", second.display()),
    ]);
    assert_eq!(
        manifest_json(&second)[0]["RepoTags"],
        serde_json::json!(["a/b:1"])
    );
    // Moving a/b:1 to the other image drops the first one and its layers.
    let (_, multi_layers) = layout_image(&f.layout(), "multi");
    let (_, single_layers) = layout_image(&f.layout(), "single");
    lade.ok([
        "push",
        "single",
        &format!("docker-archive:{}:a/b:1", second.display()),
    ]);
    let m = manifest_json(&second);
    assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["a/b:1"]));
    let names = members(&second);
    for l in &multi_layers {
        let path = format!("blobs/sha256/{}", l.strip_prefix("sha256:").unwrap());
        assert!(!names.contains(&path), "{path} left behind: {names:?}");
    }
    for l in &single_layers {
        let path = format!("blobs/sha256/{}", l.strip_prefix("sha256:").unwrap());
        assert!(names.contains(&path), "{path} missing: {names:?}");
    }
    // The same image again under a second tag: one entry, two tags, as `docker save a b`.
    lade.ok([
        "push",
        "single",
        &format!("docker-archive:{}:a/b:2", second.display()),
    ]);
    let m = manifest_json(&second);
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["a/b:1", "a/b:2"]));
    let repos: serde_json::Value =
        serde_json::from_slice(&member(&second, "repositories")).unwrap();
    assert!(
        repos["a/b"]["1"].is_string() && repos["a/b"]["2"].is_string(),
        "{repos}"
    );
    // A file that is not a docker archive is not overwritten.
    let other = lade.path("notes.txt");
    fs::write(&other, "keep me").unwrap();
    let err = lade
        .run([
            "push",
            "single",
            &format!("docker-archive:{}", other.display()),
        ])
        .fails_one_line();
    assert!(err.contains("not a docker archive"), "{err}");
    assert_eq!(fs::read_to_string(&other).unwrap(), "keep me");
}

/// `-` is standard output for a destination and standard input (spooled) for a source.
#[test]
fn standard_input_and_output() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("single"), "single"]);
    let out = lade.path("out.tar");
    let mut c = lade.cmd();
    c.args(["push", "single", "docker-archive:-"]);
    c.stdout(fs::File::create(&out).unwrap());
    let status = c.status().unwrap();
    assert!(status.success());
    assert_eq!(
        manifest_json(&out)[0]["RepoTags"],
        serde_json::json!(["single:latest"])
    );
    let other = Lade::new();
    let mut c = other.cmd();
    c.args(["pull", "docker-archive:-", "again"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(&out).unwrap())
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        stored_digest(&other, "again"),
        layout_digest(&f.layout(), "single")
    );
}

/// A hand-made `docker save` archive: gzip layers in `<id>/layer.tar`, a link for a repeated
/// layer, and the layer-less OCI manifest Docker 25.0 wrote by mistake, which must not be
/// believed. Then `manifest.json` paths that leave the archive, refused.
#[test]
fn compressed_legacy_layers_and_hostile_paths() {
    let f = fixtures();
    let layout = f.layout();
    let (config, layers) = layout_image(&layout, "single");
    let blob = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let config_bytes = blob(&config);
    let layer = blob(&layers[0]);
    let cfg_hex = config.strip_prefix("sha256:").unwrap();
    let bad_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": config_bytes.len()},
        "layers": [],
    }))
    .unwrap();
    let bad_digest = sha256(&bad_manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": bad_digest, "size": bad_manifest.len()}],
    }))
    .unwrap();
    let write = |path: &Path, manifest: serde_json::Value| {
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&format!("{cfg_hex}.json"), &config_bytes);
        add("aaaa/layer.tar", &layer);
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", &index);
        add(
            &format!(
                "blobs/sha256/{}",
                bad_digest.strip_prefix("sha256:").unwrap()
            ),
            &bad_manifest,
        );
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bbbb/layer.tar", "../aaaa/layer.tar")
            .unwrap();
        b.finish().unwrap();
    };
    let lade = Lade::new();
    let good = lade.path("good.tar");
    write(
        &good,
        serde_json::json!([{"Config": format!("{cfg_hex}.json"), "RepoTags": ["old/one:v1"],
                            "Layers": ["bbbb/layer.tar"]}]),
    );
    lade.ok(["pull", &format!("docker-archive:{}", good.display())]);
    let rec = record(&lade, "old/one:v1");
    assert_eq!(rec["config"], config.as_str());
    // The gzip layer keeps its own digest: the whole image is digest for digest the original.
    assert_eq!(rec["layers"][0]["blob"], layers[0].as_str());
    lade.ok(["run", "old/one:v1", "--", "/bin/cat", "/etc/hostname"]);
    for bad in ["../../etc/passwd", "/etc/passwd", "aaaa/../../x"] {
        let p = lade.path("bad.tar");
        write(
            &p,
            serde_json::json!([{"Config": format!("{cfg_hex}.json"), "RepoTags": ["x:1"],
                                "Layers": [bad]}]),
        );
        let err = lade
            .run(["pull", &format!("docker-archive:{}", p.display())])
            .fails_one_line();
        assert!(
            err.contains(&format!("'{bad}'")) && err.contains("outside the archive"),
            "{err}"
        );
        write(
            &p,
            serde_json::json!([{"Config": bad, "RepoTags": ["x:1"], "Layers": ["aaaa/layer.tar"]}]),
        );
        let err = lade
            .run(["pull", &format!("docker-archive:{}", p.display())])
            .fails_one_line();
        assert!(err.contains("outside the archive"), "{err}");
    }
}
