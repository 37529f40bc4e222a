//! Unit tests of applying layers, and a manual throughput check.

use super::*;
use rustix::fs::OFlags;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn header(path: &str, kind: EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    b.append(
        &header(path, EntryType::Regular, data.len() as u64, 0o644),
        data,
    )
    .unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    b.append(&header(path, EntryType::Directory, 0, 0o755), &[][..])
        .unwrap();
}

fn apply(blob: &[u8], root: &Path, mode: ApplyMode) -> Result<LayerReport> {
    apply_layer(
        blob,
        root,
        &ApplyOptions {
            mode,
            what: "test layer",
        },
    )
}

#[test]
fn diff_id_covers_the_whole_stream() {
    let mut blob = layer(|b| file(b, "a", b"hello"));
    blob.extend_from_slice(&[0u8; 4096]);
    let t = tempfile::tempdir().unwrap();
    let r = apply(&blob, t.path(), ApplyMode::Flatten).unwrap();
    assert_eq!(r.diff_id, Digest::sha256_of(&blob));
    assert_eq!(r.entries, 1);
    assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"hello");
}

#[test]
fn directory_metadata_applied_last() {
    let blob = layer(|b| {
        b.append(&header("ro/", EntryType::Directory, 0, 0o555), &[][..])
            .unwrap();
        file(b, "ro/f", b"x");
    });
    let t = tempfile::tempdir().unwrap();
    apply(&blob, t.path(), ApplyMode::Flatten).unwrap();
    let m = std::fs::metadata(t.path().join("ro")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o555);
    assert_eq!(m.mtime(), 1_600_000_000);
    let f = std::fs::symlink_metadata(t.path().join("ro/f")).unwrap();
    assert_eq!(f.mtime(), 1_600_000_000);
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: EntryType, mode: u32, data: &[u8]) {
    b.append(&header(path, kind, data.len() as u64, mode), data)
        .unwrap();
}

/// A layer with every mode that locks its owner out, and a FIFO.
fn locked_layer() -> Vec<u8> {
    layer(|b| {
        entry(b, "ro/", EntryType::Directory, 0o555, b"");
        entry(b, "ro/f", EntryType::Regular, 0o400, b"read only");
        entry(b, "none/", EntryType::Directory, 0o000, b"");
        entry(b, "none/sub/", EntryType::Directory, 0o000, b"");
        entry(b, "none/sub/f", EntryType::Regular, 0o000, b"no access");
        entry(b, "none/fifo", EntryType::Fifo, 0o640, b"");
        entry(b, "fifo", EntryType::Fifo, 0o600, b"");
        entry(b, "wx", EntryType::Regular, 0o311, b"write and execute");
    })
}

/// Every mode of a layer is kept exactly, FIFOs included, in both modes; and the trees can
/// be removed. (Run as an ordinary user to mean anything: root ignores modes.)
#[test]
fn modes_and_fifos_are_the_images() {
    for mode_ in [ApplyMode::OverlayTree, ApplyMode::Flatten] {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let r = apply(&locked_layer(), &root, mode_).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let want = [
            ("ro", 0o555),
            ("ro/f", 0o400),
            ("none", 0o000),
            ("fifo", 0o600),
            ("wx", 0o311),
        ];
        for (p, m) in want {
            assert_eq!(mode(&root.join(p)), m, "{mode_:?} {p}");
        }
        assert!(
            std::fs::symlink_metadata(root.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        std::fs::set_permissions(root.join("none"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        assert_eq!(mode(&root.join("none/sub")), 0o000);
        assert_eq!(mode(&root.join("none/fifo")), 0o640);
        std::fs::set_permissions(root.join("none"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        crate::fsutil::remove_all(&root).unwrap();
        assert!(!root.exists());
    }
}

/// In Flatten mode a later layer works inside a lower layer's `0555` and `0000` directories
/// (new files, a whiteout, a hard link to a file below) and leaves their modes as they were,
/// unless it sets them itself.
#[test]
fn later_layers_work_inside_locked_directories() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    apply(&locked_layer(), &root, ApplyMode::Flatten).unwrap();
    let upper = layer(|b| {
        entry(b, "ro/new", EntryType::Regular, 0o644, b"new");
        entry(b, "none/sub/.wh.f", EntryType::Regular, 0o644, b"");
        let mut h = header("ro/hl", EntryType::Link, 0, 0o644);
        h.set_link_name("none/fifo").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        entry(b, "none/sub/", EntryType::Directory, 0o750, b"");
    });
    let r = apply(&upper, &root, ApplyMode::Flatten).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(mode(&root.join("ro")), 0o555);
    assert_eq!(mode(&root.join("none")), 0o000);
    assert_eq!(std::fs::read(root.join("ro/new")).unwrap(), b"new");
    std::fs::set_permissions(root.join("none"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // The layer's own entry for none/sub wins over the restored mode.
    assert_eq!(mode(&root.join("none/sub")), 0o750);
    assert!(!root.join("none/sub/f").exists());
    let hl = std::fs::symlink_metadata(root.join("ro/hl")).unwrap();
    let fifo = std::fs::symlink_metadata(root.join("none/fifo")).unwrap();
    assert_eq!(hl.ino(), fifo.ino());
    crate::fsutil::remove_all(&root).unwrap();
}

/// Flattening per-layer trees keeps every mode too, and gives what Flatten mode gives.
#[test]
fn flattened_trees_keep_modes() {
    let t = tempfile::tempdir().unwrap();
    let (tree, flat, direct) = (t.path().join("t"), t.path().join("f"), t.path().join("d"));
    for d in [&tree, &flat, &direct] {
        std::fs::create_dir(d).unwrap();
    }
    apply(&locked_layer(), &tree, ApplyMode::OverlayTree).unwrap();
    apply(&locked_layer(), &direct, ApplyMode::Flatten).unwrap();
    crate::unpack::flatten_trees(&[tree.as_path(), tree.as_path()], &flat).unwrap();
    // The source tree is as it was.
    assert_eq!(mode(&tree.join("none")), 0o000);
    for p in ["ro", "ro/f", "none", "fifo", "wx"] {
        assert_eq!(mode(&flat.join(p)), mode(&direct.join(p)), "{p}");
    }
    std::fs::set_permissions(flat.join("none"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        flat.join("none/sub"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(
        flat.join("none/sub/f"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(flat.join("none/sub/f")).unwrap(),
        b"no access"
    );
    for d in [&tree, &flat, &direct] {
        crate::fsutil::remove_all(d).unwrap();
    }
}

/// A layer that lacks entries for its parent directories (umoci writes such layers) shows the
/// lower layer's directories through overlayfs as a flattened image does: its tree takes their
/// metadata from the lower trees, except under its own whiteouts.
#[test]
fn implicit_parents_take_the_lower_metadata() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, flat, direct) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("flat"),
        t.path().join("direct"),
    );
    for d in [&lower, &upper, &flat, &direct] {
        std::fs::create_dir(d).unwrap();
    }
    let l1 = layer(|b| {
        entry(b, "a/", EntryType::Directory, 0o750, b"");
        entry(b, "a/b/", EntryType::Directory, 0o000, b"");
        entry(b, "w/", EntryType::Directory, 0o700, b"");
        entry(b, "w/x/", EntryType::Directory, 0o711, b"");
    });
    let l2 = layer(|b| {
        entry(b, "a/b/f", EntryType::Regular, 0o644, b"new");
        entry(b, ".wh.w", EntryType::Regular, 0o644, b"");
        entry(b, "w/x/f", EntryType::Regular, 0o644, b"fresh");
        entry(b, "n/f", EntryType::Regular, 0o644, b"nowhere below");
    });
    apply(&l1, &lower, ApplyMode::OverlayTree).unwrap();
    let r = apply(&l2, &upper, ApplyMode::OverlayTree).unwrap();
    let mut implicit = r.implicit_dirs.clone();
    implicit.sort();
    assert_eq!(implicit, [Path::new("a"), Path::new("a/b"), Path::new("n")]);
    crate::unpack::adopt_lower_dirs(&upper, &r.implicit_dirs, &[lower.as_path()]).unwrap();
    assert_eq!(
        mode(&lower.join("a/b")),
        0o000,
        "the lower tree is as it was"
    );
    crate::unpack::flatten_trees(&[lower.as_path(), upper.as_path()], &flat).unwrap();
    apply(&l1, &direct, ApplyMode::Flatten).unwrap();
    apply(&l2, &direct, ApplyMode::Flatten).unwrap();
    for (p, m) in [
        ("a", 0o750),
        ("a/b", 0o000),
        ("w", 0o755),
        ("w/x", 0o755),
        ("n", 0o755),
    ] {
        assert_eq!(mode(&direct.join(p)), m, "Flatten {p}");
        assert_eq!(mode(&flat.join(p)), m, "flattened trees {p}");
    }
    for d in [&lower, &upper, &flat, &direct] {
        crate::fsutil::remove_all(d).unwrap();
    }
}

#[test]
fn repeated_directory_keeps_contents() {
    let blob = layer(|b| {
        dir(b, "d/");
        file(b, "d/f", b"x");
        b.append(&header("d/", EntryType::Directory, 0, 0o700), &[][..])
            .unwrap();
    });
    let t = tempfile::tempdir().unwrap();
    apply(&blob, t.path(), ApplyMode::Flatten).unwrap();
    assert!(t.path().join("d/f").exists());
    let m = std::fs::metadata(t.path().join("d")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}

#[test]
fn implicit_parents_are_created_and_marked() {
    let lower = layer(|b| file(b, "a/b/old", b"o"));
    let upper = layer(|b| {
        file(b, "a/b/new", b"n");
        // `a` holds something of this layer, so the whiteout spares it.
        b.append(&header(".wh.a", EntryType::Regular, 0, 0o644), &[][..])
            .unwrap();
    });
    let t = tempfile::tempdir().unwrap();
    apply(&lower, t.path(), ApplyMode::Flatten).unwrap();
    apply(&upper, t.path(), ApplyMode::Flatten).unwrap();
    assert!(t.path().join("a/b/new").exists());
    assert!(t.path().join("a/b/old").exists());
    let m = std::fs::metadata(t.path().join("a")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
}

#[test]
fn root_entry_sets_root_metadata() {
    let blob = layer(|b| {
        b.append(&header("./", EntryType::Directory, 0, 0o750), &[][..])
            .unwrap()
    });
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    apply(&blob, &root, ApplyMode::Flatten).unwrap();
    let m = std::fs::metadata(&root).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o750);
}

#[test]
fn pax_metadata() {
    let blob = layer(|b| {
        b.append_pax_extensions([
            ("mtime", &b"1234567890.5"[..]),
            ("SCHILY.xattr.user.test", &b"value"[..]),
            ("SCHILY.xattr.user.overlay.opaque", &b"y"[..]),
            ("SCHILY.xattr.security.capability", &b"caps"[..]),
        ])
        .unwrap();
        file(b, "f", b"data");
    });
    let t = tempfile::tempdir().unwrap();
    let r = apply(&blob, t.path(), ApplyMode::Flatten).unwrap();
    let f = t.path().join("f");
    let m = std::fs::symlink_metadata(&f).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 500_000_000));
    let fd = rustix::fs::open(&f, OFlags::RDONLY, Mode::empty()).unwrap();
    let mut v = [0u8; 16];
    match rustix::fs::fgetxattr(&fd, "user.test", &mut v[..]) {
        Ok(n) => assert_eq!(&v[..n], b"value"),
        Err(Errno::NOTSUP) => assert!(r.warnings.iter().any(|w| w.contains("xattr"))),
        Err(e) => panic!("{e}"),
    }
    assert!(rustix::fs::fgetxattr(&fd, "user.overlay.opaque", &mut v[..]).is_err());
}

/// Manual throughput check, not part of CI:
/// `LADE_BENCH_LAYER=layer.tar.gz cargo test --release --lib bench_apply -- --ignored --nocapture`
/// (unpacks under `LADE_BENCH_DIR`, default the system temp directory).
mod bench {
    use super::super::*;
    use std::fs::File;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn bench_apply() {
        let Some(layer) = std::env::var_os("LADE_BENCH_LAYER") else {
            return;
        };
        let base =
            std::env::var_os("LADE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let start = Instant::now();
        let (_, mut dec) = crate::compression::decompress(File::open(&layer).unwrap()).unwrap();
        let plain = io::copy(&mut dec, &mut io::sink()).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!("decompress only: {:.0} MB/s", plain as f64 / 1e6 / secs);
        for mode in [
            ApplyMode::OverlayTree,
            ApplyMode::Flatten,
            ApplyMode::OverlayTree,
        ] {
            let t = tempfile::tempdir_in(&base).unwrap();
            let start = Instant::now();
            let blob = std::io::BufReader::with_capacity(1 << 20, File::open(&layer).unwrap());
            let r = apply_layer(
                blob,
                t.path(),
                &ApplyOptions {
                    mode,
                    what: "bench",
                },
            )
            .unwrap();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{mode:?} {}: {} entries, {:.0} MB in {secs:.2} s = {:.0} MB/s",
                r.compression,
                r.entries,
                plain as f64 / 1e6,
                plain as f64 / 1e6 / secs
            );
            if mode == ApplyMode::OverlayTree {
                let dest = tempfile::tempdir_in(&base).unwrap();
                let start = Instant::now();
                crate::unpack::flatten_trees(&[t.path()], dest.path()).unwrap();
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "  flatten_trees of it: {secs:.2} s = {:.0} MB/s",
                    plain as f64 / 1e6 / secs
                );
            }
        }
    }
}
