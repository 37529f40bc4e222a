//! Deep images: `lade run` and `lade build` stack every layer in overlayfs up to overlayfs's own
//! limit (500 lower layers), through the new mount API's `lowerdir+` and, as on kernels before
//! 6.8, through the classic mount call; only past the limit are the bottom layers merged. The
//! images are made with umoci, one `umoci raw add-layer` per layer.

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
    let layout = dir.join("layout");
    fs::create_dir_all(dir).unwrap();
    let r = run_cmd({
        let mut c = Command::new("cp");
        c.arg("-a").arg(fixtures().layout()).arg(&layout);
        c
    });
    assert!(r.success(), "{}", r.stderr);
    let tars = dir.join("tars");
    fs::create_dir_all(&tars).unwrap();
    for i in 1..=n {
        let tar_path = tars.join(format!("{i}.tar"));
        let mut b = tar::Builder::new(fs::File::create(&tar_path).unwrap());
        let mut add = |name: &str, text: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        };
        add("top", &format!("{i}\n"));
        add(&format!("f{i}"), &format!("{i}\n"));
        if i == n / 2 {
            add(".wh.f1", "");
        }
        b.finish().unwrap();
        drop(b);
        let image = if i == 1 { "single" } else { "deep" };
        let r = run_cmd({
            let mut c = Command::new("umoci");
            c.args(["raw", "add-layer", "--image"])
                .arg(format!("{}:{image}", layout.display()))
                .args(["--tag", "deep"])
                .args(["--history.created_by", &format!("layer {i}")])
                .arg(&tar_path);
            c
        });
        assert!(r.success(), "umoci raw add-layer {i}: {}", r.stderr);
    }
    let image = format!("oci:{}:deep", layout.display());
    // umoci's image is what the test means: busybox's layer and n more.
    let layers = skopeo_inspect(&image)["Layers"].as_array().unwrap().len();
    assert_eq!(layers, n + 1, "{image}");
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
