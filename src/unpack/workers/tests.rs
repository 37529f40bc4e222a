//! Layers applied with workers must give exactly the tree the applying thread alone gives:
//! one test per ordering rule, and generated layers (proptest) that mix them all.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use proptest::prelude::*;
use tar::{EntryType, Header};

use crate::unpack::apply::apply_with_workers;
use crate::unpack::{ApplyMode, ApplyOptions, LayerReport};

/// A tar layer built entry by entry.
#[derive(Default)]
struct Layer(Vec<u8>);

impl Layer {
    fn entry(
        &mut self,
        path: &str,
        kind: EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(path, EntryType::Regular, 0o644, "", data)
    }
    fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(path, EntryType::Directory, 0o755, "", b"")
    }
    fn tar(&self) -> Vec<u8> {
        let mut t = self.0.clone();
        t.extend_from_slice(&[0u8; 1024]);
        t
    }
}

/// What a tree holds, comparable: type, mode and content of every path, the opaque marks, and
/// which paths share an inode.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                let opaque = crate::pack::is_overlay_opaque(&p);
                format!("dir opaque={opaque}")
            } else if ft.is_symlink() {
                format!("symlink {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let data = fs::read(&p).unwrap();
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                format!(
                    "file {} bytes {:?} inode-of {first}",
                    data.len(),
                    data.first()
                )
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else if ft.is_char_device() {
                format!("char {}", m.rdev())
            } else {
                "other".to_string()
            };
            out.insert(rel, format!("{what} mode {:o}", m.mode() & 0o7777));
        }
    }
    out
}

/// Applies `layer` as an OverlayTree with `workers` threads; the tree and the report.
fn apply(
    layer: &[u8],
    workers: usize,
) -> (
    std::result::Result<LayerReport, String>,
    BTreeMap<String, String>,
    tempfile::TempDir,
) {
    let t = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        mode: ApplyMode::OverlayTree,
        what: "test layer",
    };
    let r = apply_with_workers(layer, t.path(), &opts, workers).map_err(|e| e.to_string());
    let snap = if r.is_ok() {
        snapshot(t.path())
    } else {
        BTreeMap::new()
    };
    // Generated trees hold 0555 directories, which a plain recursive delete cannot empty.
    if workers != 2 {
        for e in fs::read_dir(t.path()).unwrap() {
            crate::fsutil::remove_all(&e.unwrap().path()).unwrap();
        }
    }
    (r, snap, t)
}

/// The tree with workers is the tree without, for 2 and 3 workers; returns it.
#[track_caller]
fn same_with_and_without_workers(layer: &[u8]) -> BTreeMap<String, String> {
    let (alone, want, _t) = apply(layer, 0);
    for n in [2, 3] {
        let (with, got, _t) = apply(layer, n);
        match (&alone, &with) {
            (Ok(a), Ok(w)) => {
                assert_eq!(got, want, "{n} workers");
                let mut ea = a.external_hardlinks.clone();
                let mut ew = w.external_hardlinks.clone();
                ea.sort();
                ew.sort();
                assert_eq!(ea, ew, "{n} workers: external hard links");
                assert_eq!(a.diff_id, w.diff_id);
            }
            (Err(a), Err(w)) => assert_eq!(a, w, "{n} workers"),
            _ => panic!("{n} workers: {with:?} but alone {alone:?}"),
        }
    }
    want
}

#[test]
fn a_later_entry_for_the_same_path_wins() {
    let mut l = Layer::default();
    for d in 0..8 {
        l.dir(&format!("d{d}/"));
        for f in 0..40 {
            l.file(&format!("d{d}/f{f}"), b"first");
        }
    }
    for d in 0..8 {
        l.file(&format!("d{d}/f3"), b"second");
        l.entry(&format!("d{d}/f4"), EntryType::Symlink, 0o777, "f3", b"");
        l.file(&format!("d{d}/f4"), b"file again");
    }
    let tree = same_with_and_without_workers(&l.tar());
    assert!(
        tree["d5/f3"].starts_with("file 6 bytes"),
        "{}",
        tree["d5/f3"]
    );
    assert!(
        tree["d5/f4"].starts_with("file 10 bytes"),
        "{}",
        tree["d5/f4"]
    );
}

#[test]
fn a_hard_link_waits_for_its_target_made_by_another_worker() {
    let mut l = Layer::default();
    for d in 0..6 {
        l.dir(&format!("d{d}/"));
        for f in 0..50 {
            l.file(&format!("d{d}/f{f}"), format!("{d}-{f}").as_bytes());
        }
        // A link in this directory to the file just made in the one before.
        if d > 0 {
            l.entry(
                &format!("d{d}/link"),
                EntryType::Link,
                0o644,
                &format!("d{}/f49", d - 1),
                b"",
            );
        }
    }
    let tree = same_with_and_without_workers(&l.tar());
    assert_eq!(tree["d3/link"], tree["d2/f49"]);
    assert!(
        tree["d3/link"].starts_with("file 4 bytes"),
        "{}",
        tree["d3/link"]
    );
}

#[test]
fn whiteouts_and_opaque_directories_beside_new_files() {
    let mut l = Layer::default();
    l.dir("a/");
    for f in 0..100 {
        l.file(&format!("a/f{f}"), b"x");
    }
    // A whiteout of a lower file, one of a file of this layer (spared), an opaque marker
    // before and one after the directory's own files, and a directory made where this layer
    // wrote a whiteout.
    l.file("a/.wh.lower", b"")
        .file("a/.wh.f7", b"")
        .file("b/.wh..wh..opq", b"")
        .file("b/new", b"n")
        .file("a/.wh..wh..opq", b"")
        .file(".wh.c", b"")
        .file("c/inside", b"i");
    let tree = same_with_and_without_workers(&l.tar());
    assert!(tree["a/lower"].starts_with("char 0"), "{}", tree["a/lower"]);
    assert!(tree["a/f7"].starts_with("file"), "{}", tree["a/f7"]);
    assert!(
        tree["a"].starts_with("dir opaque=true") || !crate::pack::is_overlay_opaque(Path::new("/"))
    );
    assert!(tree["c"].starts_with("dir"), "{}", tree["c"]);
}

#[test]
fn type_changes_wait_for_the_workers() {
    let mut l = Layer::default();
    // A file that becomes a directory, a directory of files that becomes a file, a symlink
    // that becomes a directory.
    l.file("x", b"file first");
    l.file("x/y", b"inside");
    l.dir("z/");
    for f in 0..100 {
        l.file(&format!("z/f{f}"), b"gone");
    }
    l.file("z", b"now a file");
    l.entry("s", EntryType::Symlink, 0o777, "z", b"");
    l.dir("s/");
    l.file("s/t", b"t");
    let tree = same_with_and_without_workers(&l.tar());
    assert!(tree["x"].starts_with("dir"));
    assert!(tree["z"].starts_with("file 10 bytes"));
    assert!(!tree.contains_key("z/f3"));
    assert!(tree["s"].starts_with("dir"));
}

#[test]
fn large_files_are_written_by_the_applying_thread_in_order() {
    let mut l = Layer::default();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    l.dir("d/")
        .file("d/big", &big)
        .file("d/small", b"s")
        .file("e/big", &big);
    let (r, _, t) = apply(&l.tar(), 2);
    r.unwrap();
    assert_eq!(fs::read(t.path().join("d/big")).unwrap(), big);
    assert_eq!(fs::read(t.path().join("e/big")).unwrap(), big);
    same_with_and_without_workers(&l.tar());
}

// ----- generated layers -----

#[derive(Debug, Clone)]
enum Op {
    File(String, u8, bool),
    Dir(String, u32),
    Symlink(String, String),
    Fifo(String),
    Link(String, String),
    Whiteout(String),
    Opaque(String),
}

fn path() -> impl Strategy<Value = String> {
    let part = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")];
    proptest::collection::vec(part, 1..4).prop_map(|p| p.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (path(), any::<u8>(), prop::bool::weighted(0.05)).prop_map(|(p, b, big)| Op::File(p, b, big)),
        2 => (path(), prop_oneof![Just(0o755u32), Just(0o700), Just(0o555)]).prop_map(|(p, m)| Op::Dir(p, m)),
        1 => (path(), path()).prop_map(|(p, t)| Op::Symlink(p, t)),
        1 => path().prop_map(Op::Fifo),
        2 => (path(), path()).prop_map(|(p, t)| Op::Link(p, t)),
        1 => path().prop_map(Op::Whiteout),
        1 => path().prop_map(Op::Opaque),
    ]
}

fn layer_of(ops: &[Op]) -> Vec<u8> {
    let mut l = Layer::default();
    for op in ops {
        match op {
            Op::File(p, b, big) => {
                let len = if *big { 300_000 } else { usize::from(*b) };
                l.file(p, &vec![*b; len]);
            }
            Op::Dir(p, m) => {
                l.entry(&format!("{p}/"), EntryType::Directory, *m, "", b"");
            }
            Op::Symlink(p, t) => {
                l.entry(p, EntryType::Symlink, 0o777, t, b"");
            }
            Op::Fifo(p) => {
                l.entry(p, EntryType::Fifo, 0o644, "", b"");
            }
            Op::Link(p, t) => {
                l.entry(p, EntryType::Link, 0o644, t, b"");
            }
            Op::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').map_or(("", p.as_str()), |(d, n)| (d, n));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                l.file(&wh, b"");
            }
            Op::Opaque(p) => {
                l.file(&format!("{p}/.wh..wh..opq"), b"");
            }
        }
    }
    l.tar()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the mix of entries, the workers give the tree one thread gives.
    #[test]
    fn workers_give_the_tree_one_thread_gives(ops in proptest::collection::vec(op(), 1..40)) {
        same_with_and_without_workers(&layer_of(&ops));
    }
}
