//! Acceptance tests against real peers: images made by umoci (tests/fixtures/make-images.sh)
//! go through lade and must come out exactly as `umoci unpack --rootless` makes them; what
//! lade writes must read back in skopeo with the same digests; and every management command
//! and error path behaves as the CLI contract says. Run these as an ordinary user (as
//! tests/run-all.sh does): root would hide every permission problem.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// Pull `src` (with optional dest name) into a fresh store, unpack `name`, and compare with
/// umoci's rootless unpack of `umoci_image`.
fn pull_unpack_compare(src: &str, dest: Option<&str>, name: &str, umoci_image: &str) {
    let lade = Lade::new();
    let mut args = vec!["pull".to_string(), src.to_string()];
    if let Some(d) = dest {
        args.push(d.to_string());
    }
    lade.ok(&args);
    let out = lade.path("unpacked");
    lade.ok(["unpack".as_ref(), name.as_ref(), out.as_os_str()]);
    let reference = Scratch::new("umoci");
    let rootfs = umoci_unpack(umoci_image, &reference.join("bundle"));
    assert_same_tree(&rootfs, &out, &vs_umoci());
    lade.fsck_ok();
}

#[test]
fn pull_oci_multi_unpack_equals_umoci() {
    let f = fixtures();
    let img = format!("{}:multi", f.layout().display());
    pull_unpack_compare(&f.oci("multi"), None, "multi", &img);
}

#[test]
fn pull_oci_single_with_dest_ref_equals_umoci() {
    let f = fixtures();
    let img = format!("{}:single", f.layout().display());
    pull_unpack_compare(
        &f.oci("single"),
        Some("my/single:1.0"),
        "my/single:1.0",
        &img,
    );
}

#[test]
fn pull_oci_archive_equals_umoci() {
    let f = fixtures();
    let src = format!("oci-archive:{}:multi", f.archive().display());
    let img = format!("{}:multi", f.layout().display());
    pull_unpack_compare(&src, None, "multi", &img);
}

#[test]
fn pull_oci_archive_single_image_without_ref_needs_dest() {
    // The archive holds exactly one image: with a DEST_REF that is enough, without one there
    // is no name to give it.
    let f = fixtures();
    let src = format!("oci-archive:{}", f.archive().display());
    let lade = Lade::new();
    lade.run(["pull", &src]).fails_one_line();
    lade.ok(["pull", &src, "from-archive"]);
    assert!(
        lade.list().iter().any(|l| l.contains("from-archive")),
        "list: {:?}",
        lade.list()
    );
}

#[test]
fn pull_zstd_layers_equal_umoci_of_gzip() {
    let f = fixtures();
    let Some(z) = f.zstd() else {
        eprintln!("skipped: skopeo here cannot write zstd layers");
        return;
    };
    let src = format!("oci:{}:single", z.display());
    // same content as layout:single, only recompressed by skopeo
    let img = format!("{}:single", f.layout().display());
    pull_unpack_compare(&src, None, "single", &img);
}

#[test]
fn pull_twice_and_two_names_share_the_store() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("multi")]);
    lade.ok(["pull", &f.oci("multi")]);
    lade.ok(["pull", &f.oci("multi"), "again"]);
    let names = lade.list();
    assert!(names.iter().any(|n| n.contains("multi")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("again")), "{names:?}");
    let a = lade.path("a");
    let b = lade.path("b");
    lade.ok(["unpack".as_ref(), "multi".as_ref(), a.as_os_str()]);
    lade.ok(["unpack".as_ref(), "again".as_ref(), b.as_os_str()]);
    assert_same_tree(&a, &b, &CompareOpts::default());
    lade.fsck_ok();
}

#[test]
fn unpack_into_existing_empty_dir() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("single")]);
    let out = lade.path("empty");
    fs::create_dir(&out).unwrap();
    lade.ok(["unpack".as_ref(), "single".as_ref(), out.as_os_str()]);
    assert!(out.join("bin/busybox").is_file());
}

// ------------------------------------------------------------------------------------------------
// copy

#[test]
fn copy_store_to_oci_keeps_manifest_digest() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("multi")]);
    lade.ok(["pull", &f.oci("single")]);
    let out = lade.path("out-layout");
    let dst = format!("oci:{}:copied", out.display());
    lade.ok(["copy", "lade:multi", &dst]);
    let want = skopeo_digest(&f.oci("multi"));
    assert_eq!(
        skopeo_digest(&dst),
        want,
        "manifest digest changed by lade copy"
    );

    // A second tag into the same layout keeps the first.
    let dst2 = format!("oci:{}:second", out.display());
    lade.ok(["copy", "lade:single", &dst2]);
    assert_eq!(skopeo_digest(&dst), want);
    assert_eq!(skopeo_digest(&dst2), skopeo_digest(&f.oci("single")));

    // Every blob is really there and intact: skopeo verifies digests while copying, and
    // umoci unpacks the copy to the same tree as the original.
    let again = lade.path("again-layout");
    let mut c = Command::new("skopeo");
    c.args([
        "copy",
        "--quiet",
        &dst,
        &format!("oci:{}:x", again.display()),
    ]);
    run_cmd(c).ok();
    let s = Scratch::new("umoci");
    let orig = umoci_unpack(&format!("{}:multi", f.layout().display()), &s.join("orig"));
    let copy = umoci_unpack(&format!("{}:copied", out.display()), &s.join("copy"));
    assert_same_tree(&orig, &copy, &CompareOpts::default());
}

#[test]
fn copy_oci_to_oci_archive_keeps_digest() {
    let f = fixtures();
    let lade = Lade::new();
    let arch = lade.path("copy.tar");
    let dst = format!("oci-archive:{}:multi", arch.display());
    lade.ok(["copy", &f.oci("multi"), &dst]);
    let want = skopeo_digest(&f.oci("multi"));
    // The archive's content, read as a plain tar: the same image.
    let x = lade.path("extracted");
    fs::create_dir(&x).unwrap();
    let mut c = Command::new("tar");
    c.arg("-C").arg(&x).arg("-xf").arg(&arch);
    run_cmd(c).ok();
    assert_eq!(
        skopeo_digest(&format!("oci:{}:multi", x.display())),
        want,
        "digest of the layout inside the archive"
    );
    // And skopeo reads the archive itself, as an ordinary user.
    assert_eq!(skopeo_digest(&dst), want);
}

#[test]
fn copy_oci_archive_to_store_then_unpack() {
    let f = fixtures();
    let lade = Lade::new();
    let src = format!("oci-archive:{}:multi", f.archive().display());
    lade.ok(["copy", &src, "lade:from-copy"]);
    assert!(lade.list().iter().any(|n| n.contains("from-copy")));
    let out = lade.path("u");
    lade.ok(["unpack".as_ref(), "from-copy".as_ref(), out.as_os_str()]);
    let s = Scratch::new("umoci");
    let rootfs = umoci_unpack(&format!("{}:multi", f.layout().display()), &s.join("b"));
    assert_same_tree(&rootfs, &out, &vs_umoci());
    // and out again with the same digest
    let back = format!("oci:{}:back", lade.path("back").display());
    lade.ok(["copy", "lade:from-copy", &back]);
    assert_eq!(skopeo_digest(&back), skopeo_digest(&f.oci("multi")));
    lade.fsck_ok();
}

// ------------------------------------------------------------------------------------------------
// management

#[test]
fn list_and_delete_glob() {
    let f = fixtures();
    let lade = Lade::new();
    assert!(
        lade.list().is_empty(),
        "fresh store lists {:?}",
        lade.list()
    );
    lade.ok(["pull", &f.oci("multi")]);
    lade.ok(["pull", &f.oci("single")]);
    lade.ok(["pull", &f.oci("single"), "mulberry"]);
    let names = lade.list();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in ["multi", "single", "mulberry"] {
        assert!(names.iter().any(|l| l.contains(n)), "{n} not in {names:?}");
    }
    lade.ok(["delete", "mul*"]);
    let names = lade.list();
    assert_eq!(names.len(), 1, "after delete 'mul*': {names:?}");
    assert!(names[0].contains("single"), "{names:?}");
    // the remaining image is intact
    let out = lade.path("u");
    lade.ok(["unpack".as_ref(), "single".as_ref(), out.as_os_str()]);
    lade.fsck_ok();
    // nothing matches: an error, not silence
    lade.run(["delete", "nothing-matches*"]).fails_one_line();
    lade.ok(["delete", "single"]);
    assert!(lade.list().is_empty());
    lade.fsck_ok();
}

/// A small tree with the kinds of entries import must keep.
fn make_import_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", root.join("bin/ls")).unwrap();
    fs::write(root.join("etc/hostname"), "imported\n").unwrap();
    fs::write(root.join("etc/deep/er/file"), "deep\n").unwrap();
    fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname-hl")).unwrap();
    fs::write(root.join("etc/private"), "secret\n").unwrap();
    fs::set_permissions(root.join("etc/private"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn import_and_compare(lade: &Lade, path: &Path, name: &str, expected: &Path) {
    lade.ok(["import".as_ref(), path.as_os_str(), name.as_ref()]);
    assert!(
        lade.list().iter().any(|n| n.contains(name)),
        "{name} not listed: {:?}",
        lade.list()
    );
    let out = lade.path(format!("unpacked-{name}"));
    lade.ok(["unpack".as_ref(), name.as_ref(), out.as_os_str()]);
    let opts = CompareOpts {
        root_mode: false,
        ..CompareOpts::default()
    };
    assert_same_tree(expected, &out, &opts);
}

#[test]
fn import_directory() {
    let lade = Lade::new();
    let src = lade.path("src");
    make_import_tree(&src);
    import_and_compare(&lade, &src, "imp-dir", &src);
    lade.fsck_ok();
}

#[test]
fn import_tarball_with_one_top_dir() {
    let lade = Lade::new();
    let parent = lade.path("parent");
    let top = parent.join("top");
    make_import_tree(&top);
    let tarball = lade.path("one-top.tar.gz");
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(&parent)
        .arg("-czf")
        .arg(&tarball)
        .arg("top");
    run_cmd(c).ok();
    // the single top-level directory is stripped
    import_and_compare(&lade, &tarball, "imp-top", &top);
    lade.fsck_ok();
}

#[test]
fn import_tarbomb() {
    let lade = Lade::new();
    let src = lade.path("src");
    make_import_tree(&src);
    let tarball = lade.path("bomb.tar");
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .args(["bin", "etc"]);
    run_cmd(c).ok();
    import_and_compare(&lade, &tarball, "imp-bomb", &src);
    lade.fsck_ok();
}

#[test]
fn import_nonexistent_path_fails() {
    let lade = Lade::new();
    let line = lade
        .run(["import", "/nonexistent/lade-test/path", "x"])
        .fails_one_line();
    assert!(line.contains("/nonexistent/lade-test/path"), "{line}");
}

#[test]
fn reset_empties_the_store() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("multi")]);
    lade.ok(["pull", &f.oci("single")]);
    assert_eq!(lade.list().len(), 2);
    lade.ok(["reset"]);
    assert!(lade.list().is_empty(), "after reset: {:?}", lade.list());
    // usable again afterwards
    lade.ok(["pull", &f.oci("single")]);
    assert_eq!(lade.list().len(), 1);
    lade.fsck_ok();
}

#[test]
fn gestalt_storage_path() {
    let s = Scratch::new("gestalt");
    let a = s.join("a");
    let b = s.join("b");

    let r = run_cmd({
        let mut c = lade_raw([
            "-s".as_ref(),
            a.as_os_str(),
            "gestalt".as_ref(),
            "storage-path".as_ref(),
        ]);
        c.env_remove("LADE_STORAGE");
        c
    })
    .ok();
    assert_eq!(r.stdout.trim(), a.to_str().unwrap());

    let r = run_cmd({
        let mut c = lade_raw([
            "--storage".as_ref(),
            a.as_os_str(),
            "gestalt".as_ref(),
            "storage-path".as_ref(),
        ]);
        c.env_remove("LADE_STORAGE");
        c
    })
    .ok();
    assert_eq!(r.stdout.trim(), a.to_str().unwrap());

    let r = run_cmd({
        let mut c = lade_raw(["gestalt", "storage-path"]);
        c.env("LADE_STORAGE", &b);
        c
    })
    .ok();
    assert_eq!(r.stdout.trim(), b.to_str().unwrap());

    // the option wins over the environment
    let r = run_cmd({
        let mut c = lade_raw([
            "-s".as_ref(),
            a.as_os_str(),
            "gestalt".as_ref(),
            "storage-path".as_ref(),
        ]);
        c.env("LADE_STORAGE", &b);
        c
    })
    .ok();
    assert_eq!(r.stdout.trim(), a.to_str().unwrap());

    // default: /var/tmp/$USER.lade
    let user = format!("lade-gestalt-{}", std::process::id());
    let r = run_cmd({
        let mut c = lade_raw(["gestalt", "storage-path"]);
        c.env_remove("LADE_STORAGE").env("USER", &user);
        c
    })
    .ok();
    let default = format!("/var/tmp/{user}.lade");
    let _ = remove_tree(Path::new(&default));
    assert_eq!(r.stdout.trim(), default);

    // $LADE_STORAGE must be absolute
    run_cmd({
        let mut c = lade_raw(["gestalt", "storage-path"]);
        c.env("LADE_STORAGE", "relative/store");
        c
    })
    .fails_one_line();
}

const SUBCOMMANDS: &[&str] = &[
    "pull", "unpack", "copy", "list", "delete", "import", "fsck", "reset", "gestalt",
];

#[test]
fn version_and_help_everywhere() {
    let r = run_cmd(lade_raw(["--version"])).ok();
    assert!(
        r.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version: {}",
        r.stdout
    );
    let top = run_cmd(lade_raw(["--help"])).ok().stdout;
    // every subcommand lade --help lists (clap's "Commands:" section), and at least ours
    let mut subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // "  name  description"; wrapped descriptions are indented further
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_string)
        .collect();
    for sub in SUBCOMMANDS {
        assert!(
            top.contains(sub),
            "lade --help does not mention {sub}:\n{top}"
        );
        if !subs.iter().any(|s| s == sub) {
            subs.push(sub.to_string());
        }
    }
    for sub in &subs {
        let r = run_cmd(lade_raw([sub.as_str(), "--help"])).ok();
        assert!(
            r.stdout.to_lowercase().contains("usage"),
            "lade {sub} --help:\n{}",
            r.stdout
        );
    }
    // no subcommand: usage error, non-zero
    let r = run_cmd(lade_raw(Vec::<&str>::new()));
    assert!(!r.success(), "lade with no arguments succeeded");
}

// ------------------------------------------------------------------------------------------------
// errors: non-zero exit, one clear line on stderr, nothing half-made

#[test]
fn bad_sources_fail_with_one_line() {
    let lade = Lade::new();
    let f = fixtures();
    let line = lade
        .run(["pull", "oci:/nonexistent/lade-test/layout:multi"])
        .fails_one_line();
    assert!(line.contains("/nonexistent/lade-test/layout"), "{line}");
    let line = lade
        .run(["pull", "oci-archive:/nonexistent/lade-test/a.tar:multi"])
        .fails_one_line();
    assert!(line.contains("/nonexistent/lade-test/a.tar"), "{line}");
    // a tag the layout does not have
    let line = lade.run(["pull", &f.oci("no-such-tag")]).fails_one_line();
    assert!(line.contains("no-such-tag"), "{line}");
    // malformed transports and references
    for bad in ["oci:", "oci-archive:", "", "oci::multi"] {
        lade.run(["pull", bad]).fails_one_line();
    }
    for bad_dest in ["UPPER/Case", "a//b", "name:bad tag", ":", "x@sha256:123"] {
        lade.run(["pull", &f.oci("single"), bad_dest])
            .fails_one_line();
    }
    for bad_dst in ["lade:", "oci:", "nope:/x", "oci-archive:"] {
        lade.run(["copy", &f.oci("single"), bad_dst])
            .fails_one_line();
    }
    for bad_src in ["lade:", "lade:not-there", "oci:"] {
        let out = lade.path("copy-out");
        lade.run(["copy", bad_src, &format!("oci:{}:x", out.display())])
            .fails_one_line();
    }
    assert!(
        lade.list().is_empty(),
        "failures left images: {:?}",
        lade.list()
    );
    lade.fsck_ok();
}

#[test]
fn layout_with_two_images_and_no_ref_lists_them() {
    let f = fixtures();
    let lade = Lade::new();
    let src = format!("oci:{}", f.layout().display());
    let line = lade.run(["pull", &src, "dest"]).fails_one_line();
    assert!(
        line.contains("multi") && line.contains("single"),
        "the error should list the images the layout holds: {line}"
    );
    lade.run(["pull", &src]).fails_one_line();
    assert!(lade.list().is_empty());
}

#[test]
fn oci_without_ref_and_one_image_asks_for_dest() {
    // A layout with exactly one image and no REF: fine with a DEST_REF; without one, an error.
    let f = fixtures();
    let lade = Lade::new();
    let out = lade.path("one");
    let mut c = Command::new("skopeo");
    c.args([
        "copy",
        "--quiet",
        &f.oci("single"),
        &format!("oci:{}:only", out.display()),
    ]);
    run_cmd(c).ok();
    let src = format!("oci:{}", out.display());
    lade.run(["pull", &src]).fails_one_line();
    lade.ok(["pull", &src, "named"]);
    assert!(lade.list().iter().any(|n| n.contains("named")));
}

#[test]
fn unknown_storage_version_is_refused() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("single")]);
    let version = lade.storage.join("VERSION");
    assert!(
        version.is_file(),
        "expected the format version in {}",
        version.display()
    );
    fs::write(&version, "9999\n").unwrap();
    for args in [vec!["list"], vec!["pull", &f.oci("multi")], vec!["fsck"]] {
        let line = lade.run(&args).fails_one_line();
        assert!(
            line.to_lowercase().contains("version"),
            "lade {args:?}: {line}"
        );
    }
}

#[test]
fn unpack_errors() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("single")]);
    // unknown image
    let out = lade.path("out");
    let line = lade
        .run(["unpack".as_ref(), "not-there".as_ref(), out.as_os_str()])
        .fails_one_line();
    assert!(line.contains("not-there"), "{line}");
    assert!(!out.exists(), "failed unpack created {}", out.display());
    // non-empty target: refused, existing content untouched
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), "mine\n").unwrap();
    lade.run(["unpack".as_ref(), "single".as_ref(), out.as_os_str()])
        .fails_one_line();
    assert_eq!(fs::read_to_string(out.join("keep")).unwrap(), "mine\n");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    // target is a file
    let file = lade.path("a-file");
    fs::write(&file, "x").unwrap();
    lade.run(["unpack".as_ref(), "single".as_ref(), file.as_os_str()])
        .fails_one_line();
    // malformed reference
    lade.run([
        "unpack".as_ref(),
        "UPPER/Case".as_ref(),
        lade.path("o2").as_os_str(),
    ])
    .fails_one_line();
}

/// Copy the fixture layout and damage the layer blob of `single`.
fn damaged_layout(dir: &Path, damage: fn(&Path)) -> String {
    let f = fixtures();
    let mut c = Command::new("cp");
    c.arg("-a").arg(f.layout()).arg(dir);
    run_cmd(c).ok();
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "single")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(blob(&manifest_digest)).unwrap()).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut p = fs::metadata(&layer).unwrap().permissions();
    p.set_mode(0o644);
    fs::set_permissions(&layer, p).unwrap();
    damage(&layer);
    format!("oci:{}:single", dir.display())
}

#[test]
fn corrupt_layer_blob_is_refused_and_nothing_half_made() {
    type Damage = (&'static str, fn(&Path));
    let damages: [Damage; 3] = [
        ("flipped byte", |p| {
            let mut d = fs::read(p).unwrap();
            let i = d.len() / 2;
            d[i] ^= 0x55;
            fs::write(p, d).unwrap();
        }),
        ("truncated", |p| {
            let d = fs::read(p).unwrap();
            fs::write(p, &d[..d.len() / 2]).unwrap();
        }),
        ("appended", |p| {
            let mut d = fs::read(p).unwrap();
            d.extend_from_slice(b"trailing garbage");
            fs::write(p, d).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let lade = Lade::new();
        let src = damaged_layout(&lade.path("layout"), damage);
        let r = lade.run(["pull", &src]);
        assert!(!r.success(), "{what}: pull of a damaged blob succeeded");
        r.fails_one_line();
        assert!(
            lade.list().is_empty(),
            "{what}: damaged pull left {:?}",
            lade.list()
        );
        lade.fsck_ok();
        let out = lade.path("out");
        lade.run(["unpack".as_ref(), "single".as_ref(), out.as_os_str()])
            .fails_one_line();
        // and a good pull afterwards works
        lade.ok(["pull", &fixtures().oci("single")]);
        lade.fsck_ok();
    }
}
