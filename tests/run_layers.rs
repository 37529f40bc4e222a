//! Deep images: `lade run` and `lade build` stack every layer in overlayfs up to overlayfs's own
//! limit (500 lower layers), through the new mount API's `lowerdir+` and, as on kernels before
//! 6.8, through the classic mount call; only past the limit are the bottom layers merged. An
//! image with the same layer twice (which overlayfs would refuse) runs, builds on and exports
//! as umoci unpacks it. The images are made with umoci, one `umoci raw add-layer` per layer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The switch that makes lade mount overlays as on kernels without `lowerdir+`.
const CLASSIC: &str = "LADE_OVERLAY_CLASSIC_MOUNT";

/// An OCI layout under `dir` whose tag `deep` is the busybox fixture (`single`) plus `n` layers
/// added with umoci: layer i holds /top and /f<i>, each with the text i, and layer `n / 2`
/// also deletes /f1 (a whiteout). Returns `oci:LAYOUT:deep`.
fn deep_image(dir: &Path, n: usize) -> String {
    let tars = dir.join("tars");
    fs::create_dir_all(&tars).unwrap();
    let layers: Vec<PathBuf> = (1..=n)
        .map(|i| {
            let tar_path = tars.join(format!("{i}.tar"));
            let mut entries = vec![format!("top={i}\n"), format!("f{i}={i}\n")];
            if i == n / 2 {
                entries.push(".wh.f1".into());
            }
            write_tar(&tar_path, &entries);
            tar_path
        })
        .collect();
    busybox_plus(dir, "deep", &layers)
}

/// A tar of `entries`, in order: `NAME/` a directory, `NAME=TEXT` a file holding TEXT, `NAME`
/// an empty file; every one with mtime 0, so that the same entries make the same bytes.
fn write_tar(path: &Path, entries: &[impl AsRef<str>]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for entry in entries {
        let entry = entry.as_ref();
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        let (name, text) = entry.split_once('=').unwrap_or((entry, ""));
        if let Some(dir) = name.strip_suffix('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, dir, &[][..]).unwrap();
        } else {
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
    }
    b.finish().unwrap();
}

/// An OCI layout under `dir` whose tag `tag` is the busybox fixture (`single`) with `layers`
/// (tar files, bottom first) added by `umoci raw add-layer`. Returns `oci:LAYOUT:TAG`.
fn busybox_plus(dir: &Path, tag: &str, layers: &[PathBuf]) -> String {
    let layout = dir.join("layout");
    fs::create_dir_all(dir).unwrap();
    let r = run_cmd({
        let mut c = Command::new("cp");
        c.arg("-a").arg(fixtures().layout()).arg(&layout);
        c
    });
    assert!(r.success(), "{}", r.stderr);
    for (i, tar_path) in layers.iter().enumerate() {
        let image = if i == 0 { "single" } else { tag };
        let r = run_cmd({
            let mut c = Command::new("umoci");
            c.args(["raw", "add-layer", "--image"])
                .arg(format!("{}:{image}", layout.display()))
                .args(["--tag", tag])
                .args(["--history.created_by", &format!("layer {}", i + 1)])
                .arg(tar_path);
            c
        });
        assert!(r.success(), "umoci raw add-layer {}: {}", i + 1, r.stderr);
    }
    let image = format!("oci:{}:{tag}", layout.display());
    // umoci's image is what the test means: busybox's layer and the ones added.
    let count = skopeo_inspect(&image)["Layers"].as_array().unwrap().len();
    assert_eq!(count, layers.len() + 1, "{image}");
    image
}

/// What `cat /top /f<n/2 + 1> /f<n>` shows and `ls /f1` fails on, in each way of running.
fn check_runs(lade: &Lade, name: &str, n: usize) {
    let probe = format!(
        "cat /top /f{} /f{n} && ! ls /f1 2>/dev/null && echo ok",
        n / 2 + 1
    );
    let expected = format!("{n}\n{}\n{n}\nok\n", n / 2 + 1);
    for classic in [false, true] {
        for extra in [&[][..], &["--write"][..]] {
            let mut c = lade.cmd();
            c.arg("run").args(extra).args([name, "--", "/bin/sh", "-c"]);
            c.arg(&probe);
            if classic {
                c.env(CLASSIC, "1");
            }
            let r = run_cmd(c);
            assert_eq!(
                r.stdout, expected,
                "classic mount: {classic}, {extra:?}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("flattened"), "{}", r.stderr);
        }
    }
}

/// The entries of the store's `flat/` (flattened copies and merged layers).
fn flat_entries(lade: &Lade) -> Vec<PathBuf> {
    match fs::read_dir(lade.storage.join("flat")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_hundred_layer_image_runs_without_a_flattened_copy() {
    let lade = Lade::new();
    let image = deep_image(&lade.path("img"), 100);
    lade.ok(["pull", &image, "deep"]);
    check_runs(&lade, "deep", 100);
    let flat = flat_entries(&lade);
    assert!(flat.is_empty(), "made {flat:?}");
}

#[test]
fn a_seventy_step_dockerfile_builds_and_runs() {
    let b = BuildCtx::new();
    let mut df = String::from("FROM base\n");
    for i in 1..=70 {
        df.push_str(&format!("RUN echo {i} > /top && echo {i} > /f{i}\n"));
    }
    b.build_ok("seventy", &df);
    assert_eq!(
        b.record("seventy")["layers"].as_array().unwrap().len(),
        4 + 70,
        "the base's 4 layers and one per RUN"
    );
    let out = b
        .lade
        .ok(["run", "seventy", "--", "/bin/cat", "/top", "/f1", "/f70"]);
    assert_eq!(out, "70\n1\n70\n");
    assert!(flat_entries(&b.lade).is_empty());
}

/// Past 500 lower layers the bottom ones are merged into one tree (kept in `flat/`), once for
/// every way of running; the rest stay layers.
#[test]
fn past_overlayfs_limit_the_bottom_layers_are_merged() {
    let lade = Lade::new();
    let n = 510;
    let image = deep_image(&lade.path("img"), n);
    lade.ok(["pull", &image, "deep"]);
    check_runs(&lade, "deep", n);
    let flat = flat_entries(&lade);
    assert_eq!(flat.len(), 1, "{flat:?}");
    let merged = &flat[0];
    // The merged tree holds the bottom layers only: busybox and the first few added ones
    // (the whiteout of /f1 sits higher up, in a layer of its own).
    assert!(merged.join("bin/busybox").is_file(), "{}", merged.display());
    assert!(merged.join("f1").is_file());
    assert!(!merged.join(format!("f{n}")).exists());
    assert!(!merged.join(format!("f{}", n / 2)).exists());
}

/// Looks at the files a layer repeated above another touches: run in a root (`/` inside, an
/// unpacked tree outside), it prints what it finds.
const REPEAT_PROBE: &str = "cd ${ROOT:-/}; ls d | tr '\\n' ' '; echo; cat a m; \
     test -e w && echo w is there || echo no w; test -d bin && echo bin";

/// The files the probe finds in `busybox_plus` of T, M, T below: T's /d is opaque, so M's
/// /d/x stays hidden; T deletes /w, which M made, and makes /a, which M deleted.
const REPEAT_SEEN: &str = "f \nfrom T\nfrom M\nno w\nbin\n";

/// An image with the same layer twice (umoci's `raw add-layer` of one tar, twice, with a
/// layer between that undoes some of it and adds to a directory it makes opaque): overlayfs
/// refuses a directory given twice, so lade stacks the tree once, at its top-most place. That
/// is the same filesystem (see `LayerStore::stack`), here as umoci itself unpacks the image,
/// in every way of running it, building on it and exporting it as a SquashFS file.
#[test]
fn an_image_with_a_layer_twice_is_stacked_once() {
    let b = BuildCtx::in_store(Lade::new());
    let lade = &b.lade;
    let dir = lade.path("img");
    fs::create_dir_all(&dir).unwrap();
    let t = dir.join("t.tar");
    write_tar(&t, &["d/", "d/.wh..wh..opq", "d/f", "a=from T\n", ".wh.w"]);
    let m = dir.join("m.tar");
    write_tar(&m, &["d/", "d/x", ".wh.a", "w", "m=from M\n"]);
    let image = busybox_plus(&dir, "twice", &[t.clone(), m, t]);
    let digests: Vec<String> = skopeo_inspect(&image)["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(digests[1], digests[3], "umoci made the same layer twice");

    // umoci's own unpacking is the reference.
    let umoci_root = umoci_unpack(
        image.strip_prefix("oci:").unwrap(),
        &lade.path("umoci-bundle"),
    );
    let mut c = Command::new("/bin/sh");
    c.args(["-c", REPEAT_PROBE]).env("ROOT", &umoci_root);
    assert_eq!(run_cmd(c).ok().stdout, REPEAT_SEEN, "umoci");

    lade.ok(["pull", &image, "twice"]);
    let trees = layer_trees(&b, "twice");
    assert_eq!(trees[1], trees[3], "one tree, twice in the record");
    for classic in [false, true] {
        for extra in [&[][..], &["--write"][..]] {
            let mut c = lade.cmd();
            c.arg("run")
                .args(extra)
                .args(["twice", "--", "/bin/sh", "-c"]);
            c.arg(REPEAT_PROBE);
            if classic {
                c.env(CLASSIC, "1");
            }
            let r = run_cmd(c);
            assert_eq!(
                (r.stdout.as_str(), r.status.code()),
                (REPEAT_SEEN, Some(0)),
                "classic mount: {classic}, {extra:?}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("flattened"), "{}", r.stderr);
        }
    }
    assert!(flat_entries(lade).is_empty());

    // A RUN step on top of it, and the image it makes.
    let df = format!("FROM twice\nRUN /bin/sh -c \"{REPEAT_PROBE}\" > /seen\n");
    b.build_ok("on-twice", &df);
    let out = b.lade.ok(["run", "on-twice", "--", "/bin/cat", "/seen"]);
    assert_eq!(out, REPEAT_SEEN);

    // Exported as one SquashFS file (mksquashfs reads the stacked layers).
    let sqfs = b.lade.path("twice.sqfs");
    b.lade.ok([
        "copy",
        "lade:twice",
        &format!("squashfs:{}", sqfs.display()),
    ]);
    let out = b.lade.ok([
        "run",
        sqfs.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        REPEAT_PROBE,
    ]);
    assert_eq!(out, REPEAT_SEEN);
}

/// `COPY a /a`, `RUN rm /a`, `COPY a /a`: the two COPY layers are one tree; the next RUN and
/// `lade run` see /a, and everything else as before.
#[test]
fn a_dockerfile_that_copies_the_same_file_twice_builds_and_runs() {
    let b = BuildCtx::new();
    b.file("a", "copied\n");
    b.build_ok(
        "again",
        "FROM base\nCOPY a /a\nRUN rm /a && echo between > /b\nCOPY a /a\n\
         RUN cat /a /b > /seen\n",
    );
    let trees = layer_trees(&b, "again");
    let n = trees.len();
    assert_eq!(trees[n - 4], trees[n - 2], "the two COPY layers: {trees:?}");
    let r = b
        .lade
        .run(["run", "again", "--", "/bin/cat", "/a", "/b", "/seen"]);
    assert_eq!(
        r.stdout, "copied\nbetween\ncopied\nbetween\n",
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("flattened"), "{}", r.stderr);
}

/// The layer tree keys of stored image `tag`, bottom first.
fn layer_trees(b: &BuildCtx, tag: &str) -> Vec<String> {
    b.record(tag)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["tree"].as_str().unwrap().to_string())
        .collect()
}
