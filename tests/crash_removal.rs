//! `kill -9` at random moments of the commands that remove objects from the store: `lade
//! delete`, `lade build-cache --gc` and `lade fsck --repair` (issue 13 item 2). Each object
//! must go as a whole: afterwards every layer tree `lade fsck` passes is exactly the tree it
//! was before, and the next pull gives the image `umoci unpack --rootless` gives.
//!
//! Every kill starts from a copy of a template store made once per test (so that each kill
//! meets the same work), on a disk filesystem: removing a tree there takes many system calls
//! a kill can fall between, which is what left half-deleted trees behind before.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::kill::{assert_on_disk_filesystem, kill_or_time, os};
use common::*;

/// Kills per command.
const KILLS: usize = 50;

/// An OCI layout whose tag `crash` is the fixtures' `multi` image (busybox and every kind of
/// entry, a tree with copies of lower layers' files) plus a layer of 1,500 small files and a
/// 2 MiB one, made with umoci; and umoci's rootless unpack of it.
struct Image {
    scratch: Scratch,
    want: Tree,
}

impl Image {
    fn make() -> Image {
        let scratch = Scratch::new("crash-removal");
        let script = r#"
            set -eu
            SRC=$1; L=$2; B=$3
            cp -a "$SRC" "$L"
            umoci unpack --rootless --image "$L:multi" "$B" >/dev/null
            for i in $(seq 0 14); do
                mkdir -p "$B/rootfs/many/d$i"
                head -c 51200 /dev/urandom | (cd "$B/rootfs/many/d$i" && split -b 512 -a 3 - f)
            done
            head -c 2097152 /dev/urandom > "$B/rootfs/many/blob.bin"
            umoci repack --image "$L:crash" "$B" >/dev/null
            chmod -R u+rwX "$B"; rm -rf "$B"
        "#;
        let mut c = Command::new("bash");
        c.args(["-c", script, "make-image"])
            .arg(fixtures().layout())
            .arg(scratch.join("layout"))
            .arg(scratch.join("bundle"));
        run_cmd(c).ok();
        let rootfs = umoci_unpack(
            &format!("{}:crash", scratch.join("layout").display()),
            &scratch.join("umoci"),
        );
        Image {
            want: Tree::scan(&rootfs),
            scratch,
        }
    }

    fn source(&self) -> String {
        format!("oci:{}:crash", self.scratch.join("layout").display())
    }
}

/// How `lade unpack` relates to umoci's rootless unpack (as in tests/crash.rs): modes exact.
fn vs_umoci_rootfs() -> CompareOpts {
    CompareOpts {
        root_mode: false,
        ..CompareOpts::default()
    }
}

/// The image `img` of `lade` must be exactly the reference image.
#[track_caller]
fn assert_image_is_umocis(lade: &Lade, image: &Image, what: &str) {
    let out = lade.path(format!("out-{}", rand_u64()));
    let r = lade.run([
        OsString::from("unpack"),
        OsString::from("img"),
        out.clone().into_os_string(),
    ]);
    assert!(r.success(), "{what}: lade unpack failed: {}", r.stderr);
    let diffs = diff_scanned(&image.want, &out, &vs_umoci_rootfs());
    assert!(
        diffs.is_empty(),
        "{what}: the pulled image differs from umoci's unpack: {diffs:?}"
    );
    let _ = remove_tree(&out);
}

/// A fresh store holding a copy of `template`'s (hard links kept, as within the store).
/// Layer trees keep the image's exact modes, unreadable files and directories included, so
/// those are opened up for the copy and given their modes back on both sides.
fn copy_store(template: &Lade) -> Lade {
    let lade = Lade::new();
    let mut opened = Vec::new();
    open_up(&template.storage, &mut opened);
    let mut c = Command::new("cp");
    c.arg("-a").arg(&template.storage).arg(&lade.storage);
    run_cmd(c).ok();
    // Deepest first, so that each directory is still open while what is in it is restored.
    for (path, mode) in opened.iter().rev() {
        let rel = path.strip_prefix(&template.storage).unwrap();
        for p in [path.clone(), lade.storage.join(rel)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
    lade
}

/// Gives the owner read access (and search, on directories) to everything under `dir`,
/// recording each changed path with its mode, parents before children.
fn open_up(dir: &Path, opened: &mut Vec<(PathBuf, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let need = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o400
        } else {
            continue;
        };
        if mode & need != need {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | need)).unwrap();
            opened.push((path.clone(), mode));
        }
        if meta.is_dir() {
            open_up(&path, opened);
        }
    }
}

/// The layer trees of a store, by key.
fn tree_keys(lade: &Lade) -> BTreeSet<String> {
    std::fs::read_dir(lade.storage.join("layers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn tree(lade: &Lade, key: &str) -> PathBuf {
    lade.storage.join("layers").join(key).join("tree")
}

/// Runs `lade fsck` after a kill: every tree it does not report must be exactly the tree of
/// the same key in `reference` (a store no kill touched). `must_pass`: fsck must find no
/// problem at all. Returns fsck's success.
#[track_caller]
fn check_trees_fsck_passes(lade: &Lade, reference: &Lade, must_pass: bool, what: &str) -> bool {
    let r = lade.run(["fsck"]);
    assert!(
        r.status.code().is_some() && !r.stderr.contains("panicked"),
        "{what}: fsck crashed: {}",
        r.stderr
    );
    assert!(
        r.success() || !must_pass,
        "{what}: fsck found problems after the kill (a removal must leave each object whole \
         or gone)\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    let reported: BTreeSet<String> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("problem: layer tree "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    let known = tree_keys(reference);
    for key in tree_keys(lade) {
        assert!(
            known.contains(&key),
            "{what}: a layer tree {key} the store never had"
        );
        if reported.contains(&key) {
            continue;
        }
        let diffs = diff_trees(
            &tree(reference, &key),
            &tree(lade, &key),
            &CompareOpts::default(),
        );
        assert!(
            diffs.is_empty(),
            "{what}: fsck passes layer tree {key}, which differs from its layer: {diffs:?}\n\
             fsck said: {}",
            r.stdout
        );
    }
    r.success()
}

/// A small random number generator (xorshift), seeded from the clock and printed, so that a
/// failing run's kill moments can be replayed with `LADE_CRASH_SEED`.
struct Moments {
    state: u64,
}

impl Moments {
    fn new() -> Moments {
        let seed = std::env::var("LADE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand_u64)
            | 1;
        eprintln!("kill moments: LADE_CRASH_SEED={seed}");
        Moments { state: seed }
    }

    /// A moment in `[0, 1.2 × span]`.
    fn within(&mut self, span: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        span.mul_f64(1.2 * (self.state % 10_000) as f64 / 10_000.0)
    }
}

fn rand_u64() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Kills `args` on `KILLS` copies of `template` at random moments of a clean run; after each
/// kill, `after` checks the store. Returns how many kills landed while lade ran. A clean run
/// is as long as the shortest run seen (timed alone three times, then whenever a kill came
/// too late), so that a slow run on a busy machine does not put the kills after the end.
fn kill_repeatedly(template: &Lade, args: &[&str], mut after: impl FnMut(&Lade, &str)) -> usize {
    let args = os(args);
    let mut clean = (0..3)
        .map(|_| {
            let lade = copy_store(template);
            let t = Instant::now();
            lade.run(&args).ok();
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    eprintln!("clean run of lade {args:?}: {clean:?}");
    let mut moments = Moments::new();
    let mut landed = 0;
    let t0 = Instant::now();
    for i in 0..KILLS {
        let lade = copy_store(template);
        let delay = moments.within(clean);
        match kill_or_time(&lade, &args, delay) {
            None => landed += 1,
            Some(ran) => clean = clean.min(ran),
        }
        after(&lade, &format!("kill {i} of lade {args:?} after {delay:?}"));
    }
    eprintln!(
        "{KILLS} kills ({landed} while running) in {:?}",
        t0.elapsed()
    );
    landed
}

/// A store with the image pulled as `img`, checked against umoci.
fn pulled_store(image: &Image) -> Lade {
    let lade = Lade::new();
    assert_on_disk_filesystem(lade.scratch.path());
    lade.ok(["pull", &image.source(), "img"]);
    assert_image_is_umocis(&lade, image, "template store");
    lade.fsck_ok();
    lade
}

#[test]
fn kill_during_delete() {
    let image = Image::make();
    let template = pulled_store(&image);
    let landed = kill_repeatedly(&template, &["delete", "img"], |lade, what| {
        check_trees_fsck_passes(lade, &template, true, what);
        lade.ok(["pull", &image.source(), "img"]);
        assert_image_is_umocis(lade, &image, what);
    });
    assert!(landed >= KILLS / 2, "only {landed} kills landed in delete");
}

#[test]
fn kill_during_build_cache_gc() {
    let image = Image::make();
    let template = pulled_store(&image);
    // A built image's layer of 1,500 files, deleted: its cache state keeps the layer until
    // `build-cache --gc` drops the state and removes the layer.
    let ctx = template.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM img\nRUN mkdir /gen && cd /gen && i=0 && \
         while [ $i -lt 1500 ]; do echo $i > f$i; i=$((i+1)); done\n",
    )
    .unwrap();
    template.ok([
        OsString::from("build"),
        "-t".into(),
        "built".into(),
        ctx.into_os_string(),
    ]);
    template.ok(["delete", "built"]);
    let before = tree_keys(&template);
    let landed = kill_repeatedly(&template, &["build-cache", "--gc"], |lade, what| {
        check_trees_fsck_passes(lade, &template, true, what);
        lade.ok(["build-cache", "--gc"]);
        assert!(
            tree_keys(lade).len() < before.len(),
            "{what}: nothing collected"
        );
        lade.ok(["pull", &image.source(), "img"]);
        assert_image_is_umocis(lade, &image, what);
    });
    assert!(
        landed >= KILLS / 2,
        "only {landed} kills landed in build-cache --gc"
    );
}

/// Damage as a killed delete of old lade left it (a tree missing files beside its
/// info.json), and a flipped byte in another tree.
fn damage(lade: &Lade) {
    let keys = tree_keys(lade);
    let with = |p: &str| {
        keys.iter()
            .find(|k| tree(lade, k).join(p).exists())
            .unwrap_or_else(|| panic!("no layer tree has {p}"))
            .clone()
    };
    let many = tree(lade, &with("many/d0"));
    for i in 0..7 {
        remove_tree(&many.join(format!("many/d{i}"))).unwrap();
    }
    let busybox = tree(lade, &with("bin/busybox")).join("bin/busybox");
    let mut bytes = std::fs::read(&busybox).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&busybox, bytes).unwrap();
}

#[test]
fn kill_during_fsck_repair() {
    let image = Image::make();
    let good = pulled_store(&image);
    let template = copy_store(&good);
    damage(&template);
    assert!(!template.run(["fsck"]).success(), "fsck misses the damage");
    let landed = kill_repeatedly(&template, &["fsck", "--repair"], |lade, what| {
        check_trees_fsck_passes(lade, &good, false, what);
        lade.ok(["fsck", "--repair"]);
        check_trees_fsck_passes(lade, &good, true, what);
        lade.ok(["pull", &image.source(), "img"]);
        assert_image_is_umocis(lade, &image, what);
    });
    assert!(
        landed >= KILLS / 2,
        "only {landed} kills landed in fsck --repair"
    );
}
