//! Pulling from a real registry (Debian's docker-registry, Distribution 2.8) on loopback,
//! anonymous over plain HTTP (`--tls-no-verify` allows that), with images pushed by skopeo:
//! they must come out exactly as from the OCI layout they were pushed from, and as
//! `umoci unpack --rootless` makes them. Also the tag lock file (for pulls and `lade build`'s
//! `FROM`), `lade list REF`, the one-request warm pull and the scheme settled once under
//! `--tls-no-verify` (counted at a proxy).

mod common;
mod support;

use std::fs;
use std::path::Path;

use common::*;
use support::proxy::Proxy;
use support::registry::Registry;
use support::{insecure, layout_digest};

fn unpack(lade: &Lade, name: &str, dir: &str) -> std::path::PathBuf {
    let out = lade.path(dir);
    lade.ok(["unpack".as_ref(), name.as_ref(), out.as_os_str()]);
    out
}

fn umoci(image: &str) -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new("umoci");
    let rootfs = umoci_unpack(image, &s.join("bundle"));
    (s, rootfs)
}

#[test]
fn pull_multi_layer_image_equals_oci_pull_and_umoci() {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("multi"), "test/multi:v1", &[]);
    let lade = Lade::new();
    let name = reg.image("test/multi:v1");
    insecure(&lade, &["pull", &name]).ok();
    // The digest is the registry's (skopeo kept the layout's manifest as is).
    let want = layout_digest(&f.layout(), "multi");
    assert_eq!(stored_digest(&lade, &name), want);
    let mut c = std::process::Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false", &format!("docker://{name}")]);
    let inspected: serde_json::Value = serde_json::from_str(&run_cmd(c).ok().stdout).unwrap();
    assert_eq!(inspected["Digest"], want.as_str());
    let from_registry = unpack(&lade, &name, "reg");
    lade.ok(["pull", &f.oci("multi"), "from-layout"]);
    let from_layout = unpack(&lade, "from-layout", "layout");
    assert_same_tree(&from_layout, &from_registry, &CompareOpts::default());
    let (_s, rootfs) = umoci(&format!("{}:multi", f.layout().display()));
    assert_same_tree(&rootfs, &from_registry, &vs_umoci());
    lade.fsck_ok();
}

#[test]
fn pull_zstd_layers() {
    let f = fixtures();
    let z = f
        .zstd()
        .expect("the fixtures have no zstd image: skopeo here cannot write zstd layers");
    let reg = Registry::anonymous();
    reg.push(&format!("oci:{}:single", z.display()), "test/zstd:1", &[]);
    let lade = Lade::new();
    let name = reg.image("test/zstd:1");
    insecure(&lade, &["pull", &name]).ok();
    let out = unpack(&lade, &name, "z");
    let (_s, rootfs) = umoci(&format!("{}:single", f.layout().display()));
    assert_same_tree(&rootfs, &out, &vs_umoci());
}

#[test]
fn pull_multi_arch_index_by_architecture() {
    let f = fixtures();
    let s = Scratch::new("multiarch");
    let layout = support::multiarch_layout(f, &s);
    let reg = Registry::anonymous();
    reg.push(
        &format!("oci:{}:multiarch", layout.display()),
        "test/ma:1",
        &["--all"],
    );
    let single = layout_digest(&f.layout(), "single");
    let multi = layout_digest(&f.layout(), "multi");
    let lade = Lade::new();
    let name = reg.image("test/ma:1");
    insecure(&lade, &["--arch", "arm64", "pull", &name, "ma-arm"]).ok();
    assert_eq!(stored_digest(&lade, "ma-arm"), multi);
    insecure(&lade, &["--arch", "amd64", "pull", &name, "ma-amd"]).ok();
    assert_eq!(stored_digest(&lade, "ma-amd"), single);
    insecure(&lade, &["--arch", "arm64/v8", "pull", &name, "ma-v8"]).ok();
    assert_eq!(stored_digest(&lade, "ma-v8"), multi);
    let err = insecure(&lade, &["--arch", "ppc64le", "pull", &name]).fails_one_line();
    assert!(
        err.contains("ppc64le") && err.contains("amd64") && err.contains("arm64/v8"),
        "{err}"
    );
    let out = unpack(&lade, "ma-arm", "arm");
    let (_s, rootfs) = umoci(&format!("{}:multi", f.layout().display()));
    assert_same_tree(&rootfs, &out, &vs_umoci());

    // `lade list REF`: local or not, the full remote reference, every architecture.
    let listed = insecure(&lade, &["list", &name]).ok().stdout;
    assert!(listed.contains("in local storage:    no"), "{listed}");
    assert!(
        listed.contains(&format!("full remote ref:     {}/test/ma:1", reg.host())),
        "{listed}"
    );
    assert!(listed.contains("remote arch-aware:   yes"), "{listed}");
    for (arch, digest) in [("amd64", &single), ("arm64/v8", &multi)] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(arch) && l.contains(digest.as_str())),
            "{arch} {digest} not listed:\n{listed}"
        );
    }
    let listed = insecure(&lade, &["list", "ma-arm"]).ok().stdout;
    assert!(listed.contains("in local storage:    yes"), "{listed}");
    assert!(listed.contains("not asked"), "{listed}");
}

/// `lade list REF` of a local image that did not come from REF's registry shows the local
/// facts without asking (so without a network error when that registry is unreachable);
/// `list docker://REF` asks, and an unreachable registry leaves "available remotely" unknown.
#[test]
fn list_of_a_local_image_does_not_need_its_registry() {
    let f = fixtures();
    let lade = Lade::new();
    let name = format!("127.0.0.1:{}/x/local:1", support::registry::free_port());
    lade.ok(["pull", &f.oci("multi"), &name]);
    let t = std::time::Instant::now();
    let listed = lade.run(["list", &name]).ok();
    assert!(
        listed.stdout.contains("in local storage:    yes"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("available remotely:  not asked") && listed.stdout.contains("oci:"),
        "{}",
        listed.stdout
    );
    assert!(listed.stderr.is_empty(), "{}", listed.stderr);
    let asked = lade.run(["list", &format!("docker://{name}")]).ok().stdout;
    assert!(asked.contains("in local storage:    yes"), "{asked}");
    assert!(
        asked.contains("available remotely:  unknown") && asked.contains("cannot connect"),
        "{asked}"
    );
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
}

/// A layout holding the fixtures' `single` image twice, architecture-unaware: as `unaware`, a
/// manifest whose config names no architecture or OS; as `noplatform`, an index whose only
/// entry has no platform.
fn unaware_layout(f: &Fixtures, scratch: &Scratch) -> std::path::PathBuf {
    edited_layout(f, scratch, "single", |config| {
        let obj = config.as_object_mut().unwrap();
        obj.remove("architecture");
        obj.remove("os");
        obj.remove("variant");
    })
}

/// A copy of the fixtures' layout where tag `tag`'s config is edited: tagged `unaware`, the
/// edited image; tagged `noplatform`, an index of the original image without a platform.
fn edited_layout(
    f: &Fixtures,
    scratch: &Scratch,
    tag: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> std::path::PathBuf {
    let src = f.layout();
    let dst = scratch.join("edited");
    let blobs = support::copy_layout_blobs(&src, &dst);
    let put = |v: &serde_json::Value| {
        let bytes = serde_json::to_vec(v).unwrap();
        let digest = sha256(&bytes);
        fs::write(blobs.join(digest.strip_prefix("sha256:").unwrap()), &bytes).unwrap();
        (digest, bytes.len())
    };
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(blobs.join(hex)).unwrap()).unwrap()
    };
    let single = support::layout_descriptor(&src, tag);
    let mut manifest = read(single["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    edit(&mut config);
    let (cd, cs) = put(&config);
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": support::OCI_INDEX,
        "manifests": [{"mediaType": single["mediaType"], "digest": single["digest"], "size": single["size"]}],
    });
    let (id, is) = put(&index);
    fs::write(dst.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tag = |t: &str| serde_json::json!({"org.opencontainers.image.ref.name": t});
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": single["mediaType"], "digest": md, "size": ms, "annotations": tag("unaware")},
            {"mediaType": support::OCI_INDEX, "digest": id, "size": is, "annotations": tag("noplatform")},
        ],
    });
    fs::write(dst.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    dst
}

/// Architecture-unaware images are pulled, with one line of warning: a manifest whose config
/// names no architecture, and an index whose only entry names no platform, whatever `--arch`.
#[test]
fn architecture_unaware_images_are_pulled_with_a_warning() {
    let f = fixtures();
    let s = Scratch::new("unaware");
    let layout = unaware_layout(f, &s);
    let reg = Registry::anonymous();
    reg.push(
        &format!("oci:{}:unaware", layout.display()),
        "test/unaware:1",
        &[],
    );
    reg.push(
        &format!("oci:{}:noplatform", layout.display()),
        "test/noplatform:1",
        &["--all"],
    );
    let lade = Lade::new();
    for (image, arch) in [
        ("test/unaware:1", "host"),
        ("test/noplatform:1", "host"),
        ("test/noplatform:1", "s390x"),
    ] {
        let run = insecure(&lade, &["--arch", arch, "pull", &reg.image(image), "img"]).ok();
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("architecture-unaware"))
            .collect();
        assert_eq!(warnings.len(), 1, "{image} --arch {arch}:\n{}", run.stderr);
        assert!(warnings[0].contains("warning"), "{}", warnings[0]);
        let out = lade.ok(["list", "--format", "json", "img"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if image.starts_with("test/unaware") {
            assert!(v["platform"].is_null(), "{out}");
        }
        let tree = unpack(
            &lade,
            "img",
            &format!("tree-{}-{arch}", image.replace(['/', ':'], "-")),
        );
        assert!(fs::read_dir(&tree).unwrap().next().is_some(), "empty image");
        lade.run(["delete", "img"]).ok();
    }
    // An image that names its platform pulls without the warning.
    reg.push(&f.oci("single"), "test/single:1", &[]);
    let run = insecure(&lade, &["pull", &reg.image("test/single:1")]).ok();
    assert!(
        !run.stderr.contains("architecture-unaware"),
        "{}",
        run.stderr
    );
    lade.fsck_ok();
}

/// Layers are unpacked while they download, before the config is read: a layer whose content
/// is not what the config's diff-ID says must still be refused, and no tree of the image (the
/// refused one or the good ones) may be published.
#[test]
fn a_layer_not_matching_its_diff_id_publishes_nothing() {
    let f = fixtures();
    let s = Scratch::new("diffid");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let w = wrong.clone();
    let layout = edited_layout(f, &s, "multi", move |config| {
        config["rootfs"]["diff_ids"][1] = w.clone().into();
    });
    let reg = Registry::anonymous();
    reg.push(
        &format!("oci:{}:unaware", layout.display()),
        "test/liar:1",
        &[],
    );
    for source in [
        reg.image("test/liar:1"),
        format!("oci:{}:unaware", layout.display()),
    ] {
        let lade = Lade::new();
        let err = insecure(&lade, &["-q", "pull", &source, "img"]).fails_one_line();
        assert!(
            err.contains("image config says") && err.contains(&wrong),
            "{err}"
        );
        let published: Vec<_> = fs::read_dir(lade.storage.join("layers"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(published.is_empty(), "{source}: published {published:?}");
        assert!(lade.list().is_empty());
        lade.fsck_ok();
    }
}

#[test]
fn pull_by_digest_and_errors() {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("single"), "test/single:1", &[]);
    let digest = layout_digest(&f.layout(), "single");
    let lade = Lade::new();
    let by_digest = format!("{}@{digest}", reg.image("test/single"));
    insecure(&lade, &["pull", &by_digest, "pinned"]).ok();
    assert_eq!(stored_digest(&lade, "pinned"), digest);

    // A digest the registry does not have.
    let other = format!("{}@sha256:{}", reg.image("test/single"), "0".repeat(64));
    let err = insecure(&lade, &["pull", &other]).fails_one_line();
    assert!(err.contains("not found") && err.contains("404"), "{err}");
    // A missing tag and a missing repository.
    for missing in ["test/single:nope", "no/such/repo:1"] {
        let err = insecure(&lade, &["pull", &reg.image(missing)]).fails_one_line();
        assert!(err.contains("not found"), "{err}");
        assert!(err.contains(&reg.host()), "{err}");
    }
    // Plain HTTP is never used without --tls-no-verify.
    let err = lade
        .run(["pull", &reg.image("test/single:1")])
        .fails_one_line();
    assert!(err.contains("--tls-no-verify"), "{err}");
    // Nothing listens: a clear error, quickly (refused connections are not retried).
    let dead = format!("127.0.0.1:{}/x/y:1", support::registry::free_port());
    let t = std::time::Instant::now();
    let err = insecure(&lade, &["pull", &dead]).fails_one_line();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
}

#[test]
fn warm_pull_is_one_manifest_request() {
    let f = fixtures();
    let s = Scratch::new("multiarch");
    let layout = support::multiarch_layout(f, &s);
    let reg = Registry::anonymous();
    reg.push(&f.oci("multi"), "test/multi:v1", &[]);
    reg.push(
        &format!("oci:{}:multiarch", layout.display()),
        "test/ma:1",
        &["--all"],
    );
    let proxy = Proxy::start(reg.port);
    let lade = Lade::new();
    for (image, arch) in [("test/multi:v1", "amd64"), ("test/ma:1", "arm64")] {
        let name = format!("{}/{image}", proxy.host());
        insecure(&lade, &["--arch", arch, "pull", &name]).ok();
        proxy.clear();
        insecure(&lade, &["--arch", arch, "pull", &name]).ok();
        let log = proxy.log();
        let repo = image.split(':').next().unwrap();
        let tag = image.split(':').nth(1).unwrap();
        assert_eq!(log.len(), 1, "warm pull of {image}:\n{}", proxy.dump());
        assert_eq!(log[0].path, format!("/v2/{repo}/manifests/{tag}"));
        // Apart from HTTP, only lade's one TLS probe (--tls-no-verify tries HTTPS first).
        assert!(
            proxy.non_http() <= 1,
            "{} non-HTTP connections",
            proxy.non_http()
        );
    }
}

/// `--tls-no-verify` against a plain-HTTP registry, when the first requests of a run are
/// concurrent: pulled by digest with the manifest already stored, `--always-download` starts
/// with the config and layers at once. They must settle HTTPS-or-HTTP once (one TLS probe in
/// all) rather than race, where one failing on HTTPS after another settled on HTTP gave up.
#[test]
fn concurrent_first_requests_settle_the_scheme_once() {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("multi"), "test/multi:v1", &[]);
    let digest = layout_digest(&f.layout(), "multi");
    let proxy = Proxy::start(reg.port);
    let by_digest = format!("{}/test/multi@{digest}", proxy.host());
    let lade = Lade::new();
    insecure(&lade, &["pull", &by_digest, "img"]).ok();
    for round in 0..3 {
        proxy.clear();
        insecure(&lade, &["pull", "--always-download", &by_digest, "img"]).ok();
        let log = proxy.log();
        let blobs = log.iter().filter(|l| l.path.contains("/blobs/")).count();
        assert!(
            blobs >= 3,
            "round {round}: not a multi-layer pull:\n{}",
            proxy.dump()
        );
        assert!(
            log.iter().all(|l| !l.path.contains("/manifests/")),
            "round {round}: the stored manifest was asked for again:\n{}",
            proxy.dump()
        );
        assert_eq!(proxy.non_http(), 1, "round {round}: TLS probes");
    }
    assert_eq!(stored_digest(&lade, "img"), digest);
    lade.fsck_ok();
}

/// Runs lade in `dir` (where the lock file lives).
fn in_dir(lade: &Lade, dir: &Path, args: &[&str]) -> Run {
    let mut c = lade.cmd();
    c.current_dir(dir).arg("--tls-no-verify").args(args);
    run_cmd(c)
}

#[test]
fn tag_lock_file_pins_tags() {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("single"), "test/app:stable", &[]);
    let single = layout_digest(&f.layout(), "single");
    let multi = layout_digest(&f.layout(), "multi");
    let lade = Lade::new();
    let project = Scratch::new("project");
    let lock = project.join("lade-tags.lock");
    let name = reg.image("test/app:stable");

    // Without a lock file nothing is written; --locked needs one.
    in_dir(&lade, project.path(), &["pull", &name]).ok();
    assert!(!lock.exists());
    let err = in_dir(&lade, project.path(), &["pull", "--locked", &name]).fails_one_line();
    assert!(
        err.contains("lade-tags.lock") && err.contains("--locked"),
        "{err}"
    );

    // An empty lock file starts pinning.
    fs::write(&lock, "").unwrap();
    in_dir(&lade, project.path(), &["pull", &name]).ok();
    let text = fs::read_to_string(&lock).unwrap();
    let line = format!("\"{}/test/app:stable\" = \"{single}\"", reg.host());
    assert!(text.contains(&line), "{text}");
    assert!(text.contains("version = 1"), "{text}");

    // The tag moves on in the registry; the pin holds, even with --locked.
    reg.push(&f.oci("multi"), "test/app:stable", &[]);
    in_dir(&lade, project.path(), &["pull", "--locked", &name]).ok();
    assert_eq!(stored_digest(&lade, &name), single);
    assert_eq!(fs::read_to_string(&lock).unwrap(), text);

    // --locked refuses a tag that is not pinned.
    reg.push(&f.oci("single"), "test/app:other", &[]);
    let err = in_dir(
        &lade,
        project.path(),
        &["pull", "--locked", &reg.image("test/app:other")],
    )
    .fails_one_line();
    assert!(
        err.contains("not pinned") && err.contains("lade-tags.lock"),
        "{err}"
    );

    // Removing the line resolves the tag again.
    let without: String = text
        .lines()
        .filter(|l| !l.contains("test/app:stable"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&lock, &without).unwrap();
    in_dir(&lade, project.path(), &["pull", &name]).ok();
    assert_eq!(stored_digest(&lade, &name), multi);
    let text = fs::read_to_string(&lock).unwrap();
    assert!(
        text.contains(&format!("test/app:stable\" = \"{multi}\"")),
        "{text}"
    );

    // A lock file that does not parse is a clear error and is left alone.
    let broken = "version = 1\n[tags\n\"x:1\" = 3\n";
    fs::write(&lock, broken).unwrap();
    let err = in_dir(&lade, project.path(), &["pull", &name]).fails_one_line();
    assert!(
        err.contains("lade-tags.lock") && err.contains("does not parse"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&lock).unwrap(), broken);
    fs::write(&lock, "version = 7\n").unwrap();
    let err = in_dir(&lade, project.path(), &["pull", &name]).fails_one_line();
    assert!(err.contains("version 7"), "{err}");
}

/// `lade build` in a project with a tag lock file resolves `FROM` tags through it, as
/// `lade pull` does: a new tag is pinned (even when the store has an image of that name), a
/// pinned tag is never resolved again (no request at all once stored), removing its line
/// refreshes it, and `build --locked` refuses a tag that is not pinned.
#[test]
fn build_from_lines_resolve_tags_through_the_lock_file() {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("single"), "test/app:stable", &[]);
    let digest_of = |tag: &str| layout_digest(&f.layout(), tag);
    let (single, multi) = (digest_of("single"), digest_of("multi"));
    let proxy = Proxy::start(reg.port);
    let base = format!("{}/test/app:stable", proxy.host());
    let lade = Lade::new();
    // Stored before the project pins anything.
    insecure(&lade, &["pull", &base]).ok();
    assert_eq!(stored_digest(&lade, &base), single);

    let project = Scratch::new("project");
    let lock = project.join("lade-tags.lock");
    fs::write(
        project.join("Dockerfile"),
        format!("FROM {base}\nENV X=1\n"),
    )
    .unwrap();
    let build = |extra: &[&str]| {
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-t", "out", "."]);
        in_dir(&lade, project.path(), &args)
    };

    // The tag moves on in the registry; the empty lock file makes FROM resolve it afresh
    // (not take the stored image) and pin what it found.
    reg.push(&f.oci("multi"), "test/app:stable", &[]);
    fs::write(&lock, "").unwrap();
    build(&[]).ok();
    assert_eq!(stored_digest(&lade, &base), multi);
    let text = fs::read_to_string(&lock).unwrap();
    assert!(
        text.contains(&format!("test/app:stable\" = \"{multi}\"")),
        "{text}"
    );

    // Pinned and stored: the tag moves again, the build makes no request and keeps the pin.
    reg.push(&f.oci("single"), "test/app:stable", &[]);
    proxy.clear();
    build(&["--locked"]).ok();
    assert!(proxy.log().is_empty(), "requests:\n{}", proxy.dump());
    assert_eq!(stored_digest(&lade, &base), multi);
    assert_eq!(fs::read_to_string(&lock).unwrap(), text);

    // Removing the line refreshes the tag.
    let without: String = text
        .lines()
        .filter(|l| !l.contains("test/app:stable"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&lock, &without).unwrap();
    let err = build(&["--locked"]).fails_one_line();
    assert!(
        err.contains("not pinned") && err.contains("lade-tags.lock"),
        "{err}"
    );
    build(&[]).ok();
    assert_eq!(stored_digest(&lade, &base), single);

    // Without a lock file the stored image is used as it is, without asking the registry.
    fs::remove_file(&lock).unwrap();
    reg.push(&f.oci("multi"), "test/app:stable", &[]);
    proxy.clear();
    build(&[]).ok();
    assert!(proxy.log().is_empty(), "requests:\n{}", proxy.dump());
    assert_eq!(stored_digest(&lade, &base), single);
}
