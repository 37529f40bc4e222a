//! Hostile and tricky layers against `lade::unpack`, through the public API only.
//!
//! Every test unpacks into `root/` inside a sandbox that also holds a sentinel directory; after
//! each layer the sandbox outside the target roots must be exactly as before (nothing changed,
//! nothing new), and the layer must either fail with a clear error or give the documented safe
//! outcome. Symlink escapes aim at the sentinel through absolute and `..` targets.
//!
//! The tests run as an ordinary user. Run as root they still check the modes lade sets rather
//! than relying on permission failures, which root would not see.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lade::compression::Compression;
use lade::digest::{Digest, Expected, VerifyingReader};
use lade::unpack::{
    ApplyMode, ApplyOptions, LayerReport, apply_layer, flatten_trees, resolve_external_hardlinks,
};
use tar::{EntryType, Header};

const WHAT: &str = "layer sha256:0123abcd of hostile-test";

// ----- building layers -----

/// A layer under construction. Names and link targets are written raw, so `..` and absolute
/// names reach lade as a hostile producer would write them (tar's own setters refuse them).
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> &mut Self {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() > 99 {
            pax.push(("path", name.as_bytes()));
        }
        if link.len() > 99 {
            pax.push(("linkpath", link.as_bytes()));
        }
        if !pax.is_empty() {
            self.0.append_pax_extensions(pax).unwrap();
        }
        let mut h = Header::new_gnu();
        let short = |s: &str| s.as_bytes()[..s.len().min(99)].to_vec();
        let n = short(name);
        h.as_old_mut().name[..n.len()].copy_from_slice(&n);
        let l = short(link);
        h.as_old_mut().linkname[..l.len()].copy_from_slice(&l);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_500_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, 0o644, "", data)
    }

    fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, mode, "", data)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, EntryType::Directory, 0o755, "", b"")
    }

    fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, EntryType::Directory, mode, "", b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, EntryType::Symlink, 0o777, target, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, EntryType::Link, 0o644, target, b"")
    }

    /// An OCI whiteout entry (an empty regular file with the reserved name).
    fn whiteout(&mut self, name: &str) -> &mut Self {
        self.file(name, b"")
    }

    fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// ----- the sandbox -----

#[derive(Debug, PartialEq, Eq, Clone)]
enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        nlink: u64,
        data: Vec<u8>,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        mode: u32,
        rdev: u64,
    },
}

/// Everything under `dir` (not following symlinks), skipping `skip` at the top level.
fn snapshot(dir: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Node> {
    fn walk(base: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            if dir == base && skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let m = fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let mode = m.mode() & 0o7777;
            let node = if ft.is_dir() {
                Node::Dir { mode }
            } else if ft.is_file() {
                Node::File {
                    mode,
                    nlink: m.nlink(),
                    data: fs::read(&path).unwrap(),
                }
            } else if ft.is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&path).unwrap(),
                }
            } else {
                Node::Other {
                    mode,
                    rdev: m.rdev(),
                }
            };
            let is_dir = ft.is_dir();
            out.insert(rel, node);
            if is_dir {
                walk(base, &path, skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// A temporary directory holding target roots and a sentinel that no layer may touch.
struct Sandbox {
    dir: tempfile::TempDir,
    before: BTreeMap<PathBuf, Node>,
    roots: Vec<String>,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox::with_roots(&["root"])
    }

    fn with_roots(roots: &[&str]) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let sentinel = dir.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("file"), b"precious").unwrap();
        fs::create_dir(sentinel.join("sub")).unwrap();
        fs::write(dir.path().join("outside"), b"outside the root").unwrap();
        for r in roots {
            fs::create_dir(dir.path().join(r)).unwrap();
        }
        let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
        let skip: Vec<&str> = roots.iter().map(String::as_str).collect();
        let before = snapshot(dir.path(), &skip);
        Sandbox { dir, before, roots }
    }

    fn root(&self) -> PathBuf {
        self.root_named("root")
    }

    fn root_named(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    /// Nothing outside the target roots changed or appeared.
    fn assert_untouched(&self) {
        let skip: Vec<&str> = self.roots.iter().map(String::as_str).collect();
        let after = snapshot(self.dir.path(), &skip);
        assert_eq!(
            self.before, after,
            "something outside the target roots changed"
        );
    }

    fn apply_to(&self, root: &Path, blob: &[u8], mode: ApplyMode) -> lade::Result<LayerReport> {
        let r = apply_layer(blob, root, &ApplyOptions { mode, what: WHAT });
        self.assert_untouched();
        r
    }

    fn apply(&self, blob: &[u8], mode: ApplyMode) -> lade::Result<LayerReport> {
        self.apply_to(&self.root(), blob, mode)
    }
}

impl Drop for Sandbox {
    /// The trees lade made must be deletable by their owner (with lade's removal, which
    /// grants itself access to the image's `0000` and `0555` directories) whatever the layers
    /// said.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            for r in &self.roots {
                lade::fsutil::remove_all(&self.dir.path().join(r))
                    .expect("target tree not deletable");
            }
        }
    }
}

fn both_modes() -> [ApplyMode; 2] {
    [ApplyMode::Flatten, ApplyMode::OverlayTree]
}

/// Whether this filesystem takes unprivileged overlayfs whiteouts and user xattrs; OverlayTree
/// checks are skipped (with a note) where it does not.
fn overlay_tree_supported(sb: &Sandbox) -> bool {
    let probe = sb.root_named("root").join(".probe");
    let blob = Layer::new()
        .dir("p/")
        .whiteout("p/.wh.x")
        .whiteout("p/.wh..wh..opq")
        .tar();
    fs::create_dir(&probe).unwrap();
    let ok = apply_layer(
        &blob[..],
        &probe,
        &ApplyOptions {
            mode: ApplyMode::OverlayTree,
            what: WHAT,
        },
    );
    fs::remove_dir_all(&probe).unwrap();
    match ok {
        Ok(_) => true,
        Err(lade::Error::Unsupported { .. }) => {
            eprintln!("note: OverlayTree checks skipped: {}", ok.unwrap_err());
            false
        }
        Err(e) => panic!("probe failed: {e}"),
    }
}

fn modes(sb: &Sandbox) -> Vec<ApplyMode> {
    let mut m = vec![ApplyMode::Flatten];
    if overlay_tree_supported(sb) {
        m.push(ApplyMode::OverlayTree);
    }
    m
}

fn kind(p: &Path) -> &'static str {
    match fs::symlink_metadata(p) {
        Err(_) => "missing",
        Ok(m) if m.is_dir() => "dir",
        Ok(m) if m.is_file() => "file",
        Ok(m) if m.file_type().is_symlink() => "symlink",
        Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => "whiteout",
        Ok(_) => "other",
    }
}

fn has_warning(r: &LayerReport, needle: &str) -> bool {
    r.warnings.iter().any(|w| w.contains(needle))
}

fn is_opaque(p: &Path) -> bool {
    let fd = rustix::fs::open(p, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    let mut v = [0u8; 4];
    matches!(rustix::fs::fgetxattr(&fd, "user.overlay.opaque", &mut v[..]), Ok(1) if v[0] == b'y')
}

fn fresh_root(sb: &Sandbox) {
    let root = sb.root();
    lade::fsutil::remove_all(&root).unwrap();
    fs::create_dir(&root).unwrap();
}

// ----- names -----

#[test]
fn path_traversal_is_neutralised() {
    let sb = Sandbox::new();
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .file("../x", b"1")
            .file("a/../../y", b"2")
            .file("../../sentinel/pwned", b"3")
            .file("../sentinel/file", b"overwritten?")
            .file("./ok/../z", b"4")
            .tar();
        let r = sb.apply(&blob, mode).unwrap();
        let root = sb.root();
        assert_eq!(fs::read(root.join("x")).unwrap(), b"1");
        assert_eq!(fs::read(root.join("y")).unwrap(), b"2");
        assert_eq!(fs::read(root.join("sentinel/pwned")).unwrap(), b"3");
        assert_eq!(
            fs::read(root.join("sentinel/file")).unwrap(),
            b"overwritten?"
        );
        assert_eq!(fs::read(root.join("z")).unwrap(), b"4");
        assert!(
            has_warning(&r, "member name ../x neutralised to x"),
            "{:?}",
            r.warnings
        );
        assert!(
            !has_warning(&r, "./ok/../z"),
            "harmless `..` warned: {:?}",
            r.warnings
        );
    }
}

#[test]
fn absolute_names_are_made_relative() {
    let sb = Sandbox::new();
    let abs_sentinel = format!("{}/pwned", sb.sentinel().display());
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .file("/abs/file", b"1")
            .file(&abs_sentinel, b"2")
            .tar();
        let r = sb.apply(&blob, mode).unwrap();
        assert_eq!(fs::read(sb.root().join("abs/file")).unwrap(), b"1");
        let inside = sb.root().join(abs_sentinel.trim_start_matches('/'));
        assert_eq!(fs::read(inside).unwrap(), b"2");
        assert!(
            has_warning(&r, "absolute member name /abs/file"),
            "{:?}",
            r.warnings
        );
    }
}

#[test]
fn root_entries_that_are_not_directories_are_skipped() {
    let sb = Sandbox::new();
    let blob = Layer::new()
        .file(".", b"")
        .symlink("/", "/etc")
        .symlink("..", "/")
        .file("f", b"1")
        .tar();
    let r = sb.apply(&blob, ApplyMode::Flatten).unwrap();
    assert!(sb.root().is_dir());
    assert_eq!(kind(&sb.root()), "dir");
    assert_eq!(fs::read(sb.root().join("f")).unwrap(), b"1");
    assert!(
        has_warning(&r, "names the root directory"),
        "{:?}",
        r.warnings
    );
}

#[test]
fn nul_in_a_pax_name_is_an_error() {
    let sb = Sandbox::new();
    let mut l = Layer::new();
    l.0.append_pax_extensions([("path", &b"a\0b"[..])]).unwrap();
    l.file("placeholder", b"x");
    let e = sb
        .apply(&l.tar(), ApplyMode::Flatten)
        .unwrap_err()
        .to_string();
    assert!(e.contains(WHAT) && e.contains("NUL"), "{e}");
}

#[test]
fn a_huge_pax_header_is_refused_not_read_into_memory() {
    // A 64 MiB PAX record (compressible to almost nothing, as a hostile layer would make it):
    // the tar crate would read it whole into memory; lade refuses it at its header.
    let sb = Sandbox::new();
    let mut l = Layer::new();
    let mut record = b"67108864 comment=".to_vec();
    record.resize(64 << 20, b'a');
    *record.last_mut().unwrap() = b'\n';
    let mut h = Header::new_ustar();
    h.set_path("pax").unwrap();
    h.set_entry_type(EntryType::XHeader);
    h.set_size(record.len() as u64);
    h.set_cksum();
    l.0.append(&h, &record[..]).unwrap();
    l.file("placeholder", b"x");
    let e = sb
        .apply(&l.tar(), ApplyMode::Flatten)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(WHAT) && e.contains("PAX extended header of 67108864 bytes"),
        "{e}"
    );
}

#[test]
fn long_names_work() {
    let sb = Sandbox::new();
    let deep: String = (0..12)
        .map(|i| format!("directory-level-{i:02}/"))
        .collect();
    let long_file = format!("{deep}{}", "f".repeat(200));
    let long_target = format!("/{}", "t".repeat(180));
    for mode in modes(&sb) {
        fresh_root(&sb);
        let mut l = Layer::new();
        l.file(&long_file, b"long")
            .symlink(&format!("{deep}link"), &long_target);
        // tar's own GNU long-name encoding, besides the PAX one above.
        let mut h = Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        l.0.append_data(&mut h, format!("{deep}{}", "g".repeat(150)), &b"gnu!"[..])
            .unwrap();
        l.hardlink(&format!("{deep}{}", "h".repeat(150)), &long_file);
        let blob = l.tar();
        sb.apply(&blob, mode).unwrap();
        let root = sb.root();
        assert_eq!(fs::read(root.join(&long_file)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(root.join(format!("{deep}link"))).unwrap(),
            Path::new(&long_target)
        );
        assert_eq!(
            fs::read(root.join(format!("{deep}{}", "g".repeat(150)))).unwrap(),
            b"gnu!"
        );
        let a = fs::metadata(root.join(&long_file)).unwrap();
        let b = fs::metadata(root.join(format!("{deep}{}", "h".repeat(150)))).unwrap();
        assert_eq!(a.ino(), b.ino());
    }
}

// ----- symlinks -----

#[test]
fn symlink_escape_within_a_layer() {
    let sb = Sandbox::new();
    let sentinel = sb.sentinel().display().to_string();
    let unique = format!("lade-hostile-{}", std::process::id());
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .symlink("d", &sentinel)
            .file("d/x", b"1")
            .symlink("e", "../../..")
            .file("e/y", b"2")
            .symlink("f", "../sentinel")
            .dir("f/")
            .file("f/z", b"3")
            .symlink("g", "/tmp")
            .file(&format!("g/{unique}"), b"4")
            .symlink("s", &format!("{sentinel}/file"))
            .file("s", b"replaced, not written through")
            .tar();
        let r = sb.apply(&blob, mode).unwrap();
        let root = sb.root();
        for (d, f, data) in [("d", "x", "1"), ("e", "y", "2"), ("f", "z", "3")] {
            assert_eq!(
                kind(&root.join(d)),
                "dir",
                "{d} should have become a directory"
            );
            assert_eq!(fs::read(root.join(d).join(f)).unwrap(), data.as_bytes());
        }
        assert!(!Path::new("/tmp").join(&unique).exists());
        assert_eq!(kind(&root.join("s")), "file");
        assert!(
            has_warning(&r, "replaced the symlink d by a directory"),
            "{:?}",
            r.warnings
        );
    }
}

#[test]
fn symlinks_keep_their_targets() {
    let sb = Sandbox::new();
    let blob = Layer::new()
        .symlink("abs", "/etc/passwd")
        .symlink("up", "../../../x")
        .symlink("dot", ".")
        .tar();
    sb.apply(&blob, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    assert_eq!(
        fs::read_link(root.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(root.join("up")).unwrap(),
        Path::new("../../../x")
    );
    assert_eq!(fs::read_link(root.join("dot")).unwrap(), Path::new("."));
}

#[test]
fn symlink_escape_across_layers() {
    let sb = Sandbox::with_roots(&["root", "l1", "l2"]);
    let sentinel = sb.sentinel().display().to_string();
    let lower = Layer::new()
        .symlink("d", &sentinel)
        .symlink("e", "..")
        .symlink("s", &format!("{sentinel}/file"))
        .symlink("w", &sentinel)
        .symlink("o", &sentinel)
        .tar();
    let upper = Layer::new()
        .file("d/x", b"1")
        .file("e/sentinel/file", b"2")
        .file("s", b"3")
        .whiteout("w/.wh.file")
        .whiteout("o/.wh..wh..opq")
        .hardlink("h", "d/x")
        .tar();
    sb.apply(&lower, ApplyMode::Flatten).unwrap();
    let r = sb.apply(&upper, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    assert_eq!(fs::read(root.join("d/x")).unwrap(), b"1");
    assert_eq!(fs::read(root.join("e/sentinel/file")).unwrap(), b"2");
    assert_eq!(fs::read(root.join("s")).unwrap(), b"3");
    // A whiteout or opaque marker below a symlink acts on nothing: the link stays, and
    // nothing outside is touched (the sandbox checks that).
    assert_eq!(kind(&root.join("w")), "symlink");
    assert_eq!(kind(&root.join("o")), "symlink");
    assert!(
        has_warning(&r, "replaced the symlink d"),
        "{:?}",
        r.warnings
    );

    if overlay_tree_supported(&sb) {
        sb.apply_to(&sb.root_named("l1"), &lower, ApplyMode::OverlayTree)
            .unwrap();
        sb.apply_to(&sb.root_named("l2"), &upper, ApplyMode::OverlayTree)
            .unwrap();
        assert_eq!(kind(&sb.root_named("l2").join("d")), "dir");
    }
}

// ----- hard links -----

#[test]
fn hardlink_escapes_fail_or_stay_inside() {
    let sb = Sandbox::new();
    let sentinel = sb.sentinel().display().to_string();
    let host_passwd = fs::metadata("/etc/passwd").ok().map(|m| m.ino());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Layer::new().hardlink("h", "../outside").tar(),
            "exists neither",
        ),
        (
            Layer::new().hardlink("h", "/etc/passwd").tar(),
            "exists neither",
        ),
        (
            Layer::new()
                .hardlink("h", &format!("{sentinel}/file"))
                .tar(),
            "exists neither",
        ),
        (
            Layer::new()
                .symlink("d", &sentinel)
                .hardlink("h", "d/file")
                .tar(),
            "behind a symlink",
        ),
        (
            Layer::new()
                .symlink("d", "/etc")
                .hardlink("h", "d/passwd")
                .tar(),
            "behind a symlink",
        ),
        (
            Layer::new().dir("dir/").hardlink("h", "dir").tar(),
            "is a directory",
        ),
        (Layer::new().hardlink("h", "/").tar(), "root directory"),
    ];
    for (blob, why) in cases {
        fresh_root(&sb);
        let e = sb.apply(&blob, ApplyMode::Flatten).unwrap_err().to_string();
        assert!(e.contains(WHAT) && e.contains(why), "expected '{why}': {e}");
    }
    // An escaping target that names a file of the image links to the image's file.
    fresh_root(&sb);
    let blob = Layer::new()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
        .hardlink("h1", "/etc/passwd")
        .hardlink("h2", "../../../etc/passwd")
        .symlink("s", &format!("{sentinel}/file"))
        .hardlink("hs", "s")
        .tar();
    sb.apply(&blob, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    let img = fs::metadata(root.join("etc/passwd")).unwrap().ino();
    for h in ["h1", "h2"] {
        let ino = fs::metadata(root.join(h)).unwrap().ino();
        assert_eq!(ino, img);
        assert_ne!(Some(ino), host_passwd);
    }
    // A hard link to a symlink is that symlink, never its target.
    assert_eq!(kind(&root.join("hs")), "symlink");
    assert_eq!(fs::metadata(sb.sentinel().join("file")).unwrap().nlink(), 1);
}

#[test]
fn hardlink_to_an_earlier_layer_flatten() {
    let sb = Sandbox::new();
    let l1 = Layer::new()
        .dir("bin/")
        .file_mode("bin/busybox", 0o755, b"BB")
        .tar();
    let l2 = Layer::new()
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("bin/ash", "/bin/sh")
        .tar();
    sb.apply(&l1, ApplyMode::Flatten).unwrap();
    sb.apply(&l2, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    let bb = fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(fs::metadata(root.join("bin/sh")).unwrap().ino(), bb.ino());
    assert_eq!(fs::metadata(root.join("bin/ash")).unwrap().ino(), bb.ino());
    assert_eq!(bb.nlink(), 3);
}

#[test]
fn external_hardlinks_overlay_tree() {
    let sb = Sandbox::with_roots(&["l1", "l2", "l3"]);
    if !overlay_tree_supported(&Sandbox::new()) {
        return;
    }
    let (t1, t2, t3) = (
        sb.root_named("l1"),
        sb.root_named("l2"),
        sb.root_named("l3"),
    );
    let l1 = Layer::new()
        .dir("bin/")
        .file_mode("bin/busybox", 0o4755, b"BB")
        .file("gone", b"g")
        .symlink("bin/link", "/x")
        .tar();
    let l2 = Layer::new().whiteout(".wh.gone").tar();
    let l3 = Layer::new()
        .dir("bin/")
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("bin/sh2", "bin/sh")
        .hardlink("bin/ln2", "bin/link")
        .hardlink("replaced", "bin/busybox")
        .file("replaced", b"own")
        .hardlink("to-replaced", "replaced")
        .hardlink("g", "gone")
        .tar();
    sb.apply_to(&t1, &l1, ApplyMode::OverlayTree).unwrap();
    sb.apply_to(&t2, &l2, ApplyMode::OverlayTree).unwrap();
    let r = sb.apply_to(&t3, &l3, ApplyMode::OverlayTree).unwrap();
    let mut ext = r.external_hardlinks.clone();
    ext.sort();
    let p = |s: &str| PathBuf::from(s);
    assert_eq!(
        ext,
        vec![
            (p("bin/ln2"), p("bin/link")),
            (p("bin/sh"), p("bin/busybox")),
            (p("bin/sh2"), p("bin/busybox")),
            (p("g"), p("gone")),
        ]
    );
    assert_eq!(fs::read(t3.join("replaced")).unwrap(), b"own");
    // `gone` is whited out by l2, so resolving through l2 must fail...
    let (g, others): (Vec<_>, Vec<_>) = r
        .external_hardlinks
        .iter()
        .cloned()
        .partition(|(l, _)| l == &p("g"));
    let e = resolve_external_hardlinks(&t3, &g, &[&t2, &t1]).unwrap_err();
    assert!(e.to_string().contains("none of the lower layers"), "{e}");
    // ...though it resolves without l2, and the others resolve.
    resolve_external_hardlinks(&t3, &g, &[&t1]).unwrap();
    assert_eq!(fs::read(t3.join("g")).unwrap(), b"g");
    resolve_external_hardlinks(&t3, &others, &[&t2, &t1]).unwrap();
    for l in ["bin/sh", "bin/sh2"] {
        let m = fs::metadata(t3.join(l)).unwrap();
        assert_eq!(fs::read(t3.join(l)).unwrap(), b"BB");
        assert_eq!(m.mode() & 0o7777, 0o4755);
    }
    assert_eq!(fs::read_link(t3.join("bin/ln2")).unwrap(), Path::new("/x"));
    sb.assert_untouched();
}

// ----- devices -----

#[test]
fn devices_are_skipped_and_fifos_made() {
    let sb = Sandbox::new();
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .dir("dev/")
            .device("dev/null", EntryType::Char, 1, 3)
            .device("dev/sda", EntryType::Block, 8, 0)
            .device("dev/fifo", EntryType::Fifo, 0, 0)
            .device("dev/fake-whiteout", EntryType::Char, 0, 0)
            .tar();
        let r = sb.apply(&blob, mode).unwrap();
        for d in ["null", "sda", "fake-whiteout"] {
            assert_eq!(kind(&sb.root().join("dev").join(d)), "missing", "{d}");
        }
        let fifo = fs::symlink_metadata(sb.root().join("dev/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o666);
        assert!(
            has_warning(&r, "skipped character device dev/null"),
            "{:?}",
            r.warnings
        );
        assert!(has_warning(&r, "skipped block device dev/sda"));
        assert!(!has_warning(&r, "FIFO"), "{:?}", r.warnings);
    }
}

// ----- type changes -----

#[test]
fn type_changes_replace() {
    let sb = Sandbox::new();
    let l1 = Layer::new()
        .file("a", b"file")
        .dir("b/")
        .file("b/c", b"c")
        .symlink("c", "b")
        .dir("d/")
        .file("d/keep", b"k")
        .tar();
    let l2 = Layer::new()
        .dir("a/")
        .file("a/x", b"x")
        .file("b", b"now a file")
        .dir("c/")
        .dir_mode("d/", 0o700)
        .tar();
    sb.apply(&l1, ApplyMode::Flatten).unwrap();
    sb.apply(&l2, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    assert_eq!(fs::read(root.join("a/x")).unwrap(), b"x");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"now a file");
    assert_eq!(kind(&root.join("c")), "dir");
    assert_eq!(
        fs::read(root.join("d/keep")).unwrap(),
        b"k",
        "a repeated directory keeps its contents"
    );
    assert_eq!(fs::metadata(root.join("d")).unwrap().mode() & 0o777, 0o700);

    // The same within one layer: the later entry wins.
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .file("p", b"1")
            .dir("p/")
            .file("p/in", b"2")
            .dir("q/")
            .file("q/in", b"3")
            .file("q", b"4")
            .tar();
        sb.apply(&blob, mode).unwrap();
        assert_eq!(fs::read(sb.root().join("p/in")).unwrap(), b"2");
        assert_eq!(fs::read(sb.root().join("q")).unwrap(), b"4");
    }
}

// ----- whiteouts -----

/// umoci writes `d` (now a file) followed by `d/.wh.inner` when a directory becomes a file;
/// the whiteout must not turn the file back into a directory.
#[test]
fn whiteout_under_a_file_of_the_same_layer_is_a_no_op() {
    let sb = Sandbox::new();
    for mode in modes(&sb) {
        fresh_root(&sb);
        let blob = Layer::new()
            .file("d", b"now a file")
            .file("d/.wh.inner", b"")
            .file("e", b"also a file")
            .file("e/.wh..wh..opq", b"")
            .tar();
        sb.apply(&blob, mode).unwrap();
        assert_eq!(
            fs::read(sb.root().join("d")).unwrap(),
            b"now a file",
            "{mode:?}"
        );
        assert_eq!(
            fs::read(sb.root().join("e")).unwrap(),
            b"also a file",
            "{mode:?}"
        );
    }
    // Flatten over a lower directory: the file replaces it, the whiteout changes nothing.
    fresh_root(&sb);
    let l1 = Layer::new().dir("d/").file("d/inner", b"x").tar();
    let l2 = Layer::new()
        .file("d", b"file")
        .file("d/.wh.inner", b"")
        .tar();
    sb.apply(&l1, ApplyMode::Flatten).unwrap();
    sb.apply(&l2, ApplyMode::Flatten).unwrap();
    assert_eq!(fs::read(sb.root().join("d")).unwrap(), b"file");
}

#[test]
fn whiteouts_before_and_after_in_the_same_layer() {
    let sb = Sandbox::with_roots(&["root", "tree"]);
    let lower = Layer::new()
        .file("w1", b"old")
        .file("w2", b"old")
        .file("w3", b"old")
        .dir("wd/")
        .file("wd/old", b"o")
        .tar();
    let upper = Layer::new()
        .whiteout(".wh.w1")
        .file("w1", b"new")
        .file("w2", b"new")
        .whiteout(".wh.w2")
        .whiteout(".wh.w3")
        .whiteout(".wh.wd")
        .dir("wd/")
        .file("wd/new", b"n")
        .tar();
    sb.apply(&lower, ApplyMode::Flatten).unwrap();
    sb.apply(&upper, ApplyMode::Flatten).unwrap();
    let root = sb.root();
    assert_eq!(fs::read(root.join("w1")).unwrap(), b"new");
    assert_eq!(
        fs::read(root.join("w2")).unwrap(),
        b"new",
        "a whiteout after the file must not remove it"
    );
    assert_eq!(kind(&root.join("w3")), "missing");
    assert_eq!(kind(&root.join("wd/old")), "missing");
    assert_eq!(fs::read(root.join("wd/new")).unwrap(), b"n");

    if overlay_tree_supported(&sb) {
        let tree = sb.root_named("tree");
        sb.apply_to(&tree, &upper, ApplyMode::OverlayTree).unwrap();
        assert_eq!(fs::read(tree.join("w1")).unwrap(), b"new");
        assert_eq!(fs::read(tree.join("w2")).unwrap(), b"new");
        assert_eq!(kind(&tree.join("w3")), "whiteout");
        // Replacing its own whiteout, the directory hides the lower one entirely.
        assert_eq!(kind(&tree.join("wd")), "dir");
        assert!(is_opaque(&tree.join("wd")));
    }
}

#[test]
fn opaque_directories_before_and_after_children() {
    let sb = Sandbox::with_roots(&["root", "tree"]);
    let lower = Layer::new()
        .dir("o1/")
        .file("o1/old", b"1")
        .dir("o1/sub/")
        .file("o1/sub/old", b"1")
        .dir("o2/")
        .file("o2/old", b"1")
        .dir("o2/sub/")
        .file("o2/sub/old", b"1")
        .file("o2/sub/kept-name", b"lower")
        .tar();
    let upper = Layer::new()
        .dir("o1/")
        .whiteout("o1/.wh..wh..opq")
        .file("o1/new", b"2")
        .dir("o2/")
        .file("o2/new", b"2")
        .dir("o2/sub/")
        .file("o2/sub/kept-name", b"upper")
        .whiteout("o2/.wh..wh..opq")
        .whiteout("o3/.wh..wh..opq")
        .tar();
    sb.apply(&lower, ApplyMode::Flatten).unwrap();
    sb.apply(&upper, ApplyMode::Flatten).unwrap();
    let snap = snapshot(&sb.root(), &[]);
    let names: Vec<String> = snap.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "o1",
            "o1/new",
            "o2",
            "o2/new",
            "o2/sub",
            "o2/sub/kept-name",
            "o3"
        ],
        "{names:?}"
    );
    assert_eq!(
        fs::read(sb.root().join("o2/sub/kept-name")).unwrap(),
        b"upper"
    );

    if overlay_tree_supported(&sb) {
        let tree = sb.root_named("tree");
        sb.apply_to(&tree, &upper, ApplyMode::OverlayTree).unwrap();
        for d in ["o1", "o2", "o3"] {
            assert!(is_opaque(&tree.join(d)), "{d}");
        }
        assert!(tree.join("o1/new").exists() && tree.join("o2/new").exists());
    }
}

#[test]
fn whiteout_of_missing_paths_is_fine() {
    let sb = Sandbox::new();
    for mode in modes(&sb) {
        fresh_root(&sb);
        let blob = Layer::new()
            .whiteout(".wh.nothing")
            .whiteout("x/y/.wh.z")
            .tar();
        sb.apply(&blob, mode).unwrap();
        assert_eq!(kind(&sb.root().join("x/y")), "dir");
    }
}

#[test]
fn overlay_xattrs_in_a_layer_are_ignored() {
    let sb = Sandbox::new();
    if !overlay_tree_supported(&sb) {
        return;
    }
    let mut l = Layer::new();
    l.0.append_pax_extensions([
        ("SCHILY.xattr.user.overlay.opaque", &b"y"[..]),
        ("SCHILY.xattr.user.overlay.redirect", &b"/etc"[..]),
    ])
    .unwrap();
    l.dir("d/");
    sb.apply(&l.tar(), ApplyMode::OverlayTree).unwrap();
    assert!(!is_opaque(&sb.root().join("d")));
}

// ----- permissions -----

/// Modes are the image's exactly, as umoci --rootless keeps them; the tree stays deletable
/// (Sandbox::drop).
#[test]
fn locked_modes_are_kept() {
    let sb = Sandbox::new();
    for mode in both_modes() {
        fresh_root(&sb);
        let blob = Layer::new()
            .dir_mode("locked/", 0o000)
            .file_mode("locked/f", 0o000, b"secret")
            .file_mode("suid", 0o4755, b"s")
            .file_mode("sgid", 0o2711, b"s")
            .dir_mode("tmp/", 0o1777)
            .dir_mode("ro/", 0o555)
            .file_mode("ro/f", 0o444, b"r")
            .tar();
        sb.apply(&blob, mode).unwrap();
        let m = |p: &str| fs::symlink_metadata(sb.root().join(p)).unwrap().mode() & 0o7777;
        assert_eq!(m("locked"), 0o000);
        assert_eq!(m("suid"), 0o4755, "setuid kept, as umoci --rootless does");
        assert_eq!(m("sgid"), 0o2711);
        assert_eq!(m("tmp"), 0o1777);
        assert_eq!(m("ro"), 0o555);
        assert_eq!(m("ro/f"), 0o444);
        let locked = sb.root().join("locked");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(m("locked/f"), 0o000);
        fs::set_permissions(locked.join("f"), fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(fs::read(locked.join("f")).unwrap(), b"secret");
        fs::set_permissions(locked.join("f"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        // Sandbox::drop checks that the tree can be deleted.
    }
}

// ----- corrupt input -----

fn expect_error(blob: &[u8], needles: &[&str]) {
    let sb = Sandbox::new();
    for mode in both_modes() {
        fresh_root(&sb);
        let e = sb.apply(blob, mode).unwrap_err().to_string();
        assert!(e.contains(WHAT), "error does not name the layer: {e}");
        for n in needles {
            assert!(e.contains(n), "error lacks '{n}': {e}");
        }
    }
}

fn sample_tar() -> Vec<u8> {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    Layer::new()
        .dir("d/")
        .file("d/big", &data)
        .file("d/small", b"s")
        .tar()
}

#[test]
fn truncated_gzip_is_an_error() {
    let g = gzip(&sample_tar());
    expect_error(&g[..g.len() / 2], &["gzip"]);
    expect_error(&g[..g.len() - 5], &["gzip"]);
}

#[test]
fn truncated_zstd_is_an_error() {
    let z = zstd::encode_all(&sample_tar()[..], 3).unwrap();
    expect_error(&z[..z.len() / 2], &["zstd"]);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut g = gzip(&sample_tar());
    let mid = g.len() / 2;
    g[mid] ^= 0x55;
    g[mid + 1] ^= 0x55;
    expect_error(&g, &["gzip"]);
}

#[test]
fn garbage_is_an_error() {
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    expect_error(&garbage, &["corrupt tar stream"]);
}

#[test]
fn bad_header_checksum_is_an_error() {
    let mut t = sample_tar();
    t[512 + 10] ^= 1; // inside the second header's name
    expect_error(&t, &["corrupt tar stream", "checksum"]);
}

#[test]
fn truncated_tar_is_an_error() {
    let t = sample_tar();
    // Inside d/big's data, and inside a header.
    expect_error(&t[..512 * 2 + 1000], &["truncated tar stream", "d/big"]);
    expect_error(&t[..512 + 100], &["truncated tar stream"]);
    let g = gzip(&t[..512 * 2 + 1000]);
    expect_error(&g, &["truncated tar stream"]);
}

#[test]
fn missing_end_blocks_are_accepted_with_a_warning() {
    let sb = Sandbox::new();
    let t = Layer::new().file("a", b"1").tar();
    let without_end = &t[..1024];
    let r = sb.apply(without_end, ApplyMode::Flatten).unwrap();
    assert_eq!(fs::read(sb.root().join("a")).unwrap(), b"1");
    assert!(has_warning(&r, "end-of-archive"), "{:?}", r.warnings);
    assert_eq!(r.diff_id, Digest::sha256_of(without_end));
}

#[test]
fn empty_blob_is_an_empty_layer() {
    let sb = Sandbox::new();
    let r = sb.apply(b"", ApplyMode::Flatten).unwrap();
    assert_eq!(r.entries, 0);
    assert_eq!(r.diff_id, Digest::sha256_of(b""));
}

// ----- compression, digests -----

#[test]
fn plain_gzip_and_zstd_layers() {
    let t = sample_tar();
    let mut padded = t.clone();
    padded.extend_from_slice(&[0u8; 10_240]);
    for (blob, c) in [
        (padded.clone(), Compression::None),
        (gzip(&padded), Compression::Gzip),
        (zstd::encode_all(&padded[..], 3).unwrap(), Compression::Zstd),
    ] {
        let sb = Sandbox::new();
        let r = sb.apply(&blob, ApplyMode::Flatten).unwrap();
        assert_eq!(r.compression, c);
        assert_eq!(r.entries, 3);
        assert_eq!(
            r.diff_id,
            Digest::sha256_of(&padded),
            "diff-ID must cover the padding too"
        );
        assert_eq!(fs::read(sb.root().join("d/small")).unwrap(), b"s");
        assert_eq!(
            fs::metadata(sb.root().join("d/big")).unwrap().len(),
            200_000
        );
    }
}

#[test]
fn the_caller_verifier_sees_the_whole_blob() {
    let mut t = sample_tar();
    t.extend_from_slice(&[0u8; 8192]);
    let g = gzip(&t);
    let sb = Sandbox::new();
    let good = Expected {
        digest: Digest::sha256_of(&g),
        size: Some(g.len() as u64),
    };
    let v = VerifyingReader::new(&g[..], good, "layer blob");
    apply_layer(
        v,
        &sb.root(),
        &ApplyOptions {
            mode: ApplyMode::Flatten,
            what: WHAT,
        },
    )
    .unwrap();

    fresh_root(&sb);
    let bad = Expected {
        digest: Digest::sha256_of(b"something else"),
        size: Some(g.len() as u64),
    };
    let v = VerifyingReader::new(&g[..], bad, "layer blob");
    let e = apply_layer(
        v,
        &sb.root(),
        &ApplyOptions {
            mode: ApplyMode::Flatten,
            what: WHAT,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("digest mismatch"), "{e}");

    // A corrupt plain tar whose digest is also wrong reports the digest, the deeper cause.
    fresh_root(&sb);
    let mut c = sample_tar();
    c[700] ^= 0xff;
    c[512 + 20] ^= 1;
    let bad = Expected {
        digest: Digest::sha256_of(&sample_tar()),
        size: None,
    };
    let v = VerifyingReader::new(&c[..], bad, "layer blob");
    let e = apply_layer(
        v,
        &sb.root(),
        &ApplyOptions {
            mode: ApplyMode::Flatten,
            what: WHAT,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    sb.assert_untouched();
}

// ----- flattening -----

/// A tree as (path → type, mode, contents or link target), the root itself left out.
fn tree_view(root: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot(root, &[])
        .into_iter()
        .map(|(p, n)| {
            // Hard-link counts differ by design: a flattened copy of an external hard link is
            // a copy.
            let n = match n {
                Node::File { mode, data, .. } => Node::File {
                    mode,
                    nlink: 0,
                    data,
                },
                n => n,
            };
            (p, n)
        })
        .collect()
}

fn equality_layers() -> Vec<Vec<u8>> {
    let l1 = Layer::new()
        .dir("bin/")
        .file_mode("bin/busybox", 0o755, b"BB1")
        .symlink("bin/sh", "busybox")
        .file_mode("bin/su", 0o4755, b"su")
        .dir("etc/")
        .file("etc/passwd", b"root")
        .dir("usr/")
        .dir("usr/lib/")
        .file("usr/lib/libc.so", b"libc")
        .file("a", b"file a")
        .dir("b/")
        .file("b/c", b"c")
        .file("w1", b"old")
        .file("w2", b"old")
        .file("w3", b"old")
        .dir("o1/")
        .file("o1/old", b"old")
        .dir("o1/sub/")
        .file("o1/sub/old", b"old")
        .dir("o2/")
        .file("o2/old", b"old")
        .dir("opt/")
        .file("opt/old", b"old")
        .dir_mode("locked/", 0)
        .file_mode("locked/f", 0, b"secret")
        .file("linked", b"shared")
        .hardlink("linked2", "linked")
        .symlink("dirlink", "/usr")
        .tar();
    let l2 = Layer::new()
        .whiteout(".wh.w1")
        .file("w1", b"new")
        .file("w2", b"new")
        .whiteout(".wh.w2")
        .whiteout(".wh.w3")
        .dir("o1/")
        .whiteout("o1/.wh..wh..opq")
        .file("o1/new", b"new")
        .dir("o2/")
        .file("o2/new", b"new")
        .whiteout("o2/.wh..wh..opq")
        .dir("a/")
        .file("a/x", b"x")
        .file("b", b"now a file")
        .dir("bin/")
        .hardlink("bin/ln", "bin/busybox")
        .hardlink("bin/ln2", "bin/ln")
        .dir("etc/")
        .hardlink("etc/passwd-", "etc/passwd")
        .dir("usr/")
        .dir("usr/lib/")
        .whiteout("usr/lib/.wh.nonexistent")
        .whiteout(".wh.locked")
        .dir("dirlink/")
        .file("dirlink/inside", b"i")
        .device("dev-null", EntryType::Char, 1, 3)
        .tar();
    let l3 = Layer::new()
        .dir("bin/")
        .file_mode("bin/busybox", 0o755, b"BB3")
        .whiteout(".wh.opt")
        .dir("opt/")
        .file("opt/new", b"new")
        .dir_mode("o1/", 0o750)
        .file("linked", b"replaced")
        .tar();
    vec![l1, l2, l3]
}

#[test]
fn flatten_trees_equals_flatten_apply() {
    let names = ["flat", "merged", "t0", "t1", "t2"];
    let sb = Sandbox::with_roots(&names);
    if !overlay_tree_supported(&Sandbox::new()) {
        return;
    }
    let layers = equality_layers();
    let flat = sb.root_named("flat");
    for l in &layers {
        sb.apply_to(&flat, &gzip(l), ApplyMode::Flatten).unwrap();
    }
    let trees: Vec<PathBuf> = (0..layers.len())
        .map(|i| sb.root_named(&format!("t{i}")))
        .collect();
    for (i, l) in layers.iter().enumerate() {
        let r = sb.apply_to(&trees[i], l, ApplyMode::OverlayTree).unwrap();
        let lowers: Vec<&Path> = trees[..i].iter().rev().map(PathBuf::as_path).collect();
        resolve_external_hardlinks(&trees[i], &r.external_hardlinks, &lowers).unwrap();
        if i == 1 {
            assert!(!r.external_hardlinks.is_empty());
        }
    }
    let merged = sb.root_named("merged");
    let tree_refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
    flatten_trees(&tree_refs, &merged).unwrap();
    sb.assert_untouched();

    let (a, b) = (tree_view(&flat), tree_view(&merged));
    if a != b {
        for (p, n) in &a {
            if b.get(p) != Some(n) {
                eprintln!("Flatten has {p:?}: {n:?}, flatten_trees has {:?}", b.get(p));
            }
        }
        for (p, n) in &b {
            if !a.contains_key(p) {
                eprintln!("flatten_trees has extra {p:?}: {n:?}");
            }
        }
        panic!("flatten_trees differs from Flatten");
    }
    // Spot checks that the scenario means what it should.
    assert_eq!(fs::read(flat.join("bin/ln")).unwrap(), b"BB1");
    assert_eq!(fs::read(flat.join("bin/busybox")).unwrap(), b"BB3");
    assert_eq!(fs::read(flat.join("linked2")).unwrap(), b"shared");
    assert_eq!(kind(&flat.join("locked")), "missing");
    assert_eq!(kind(&flat.join("opt/old")), "missing");
    assert_eq!(kind(&flat.join("dirlink")), "dir");
    let m = fs::metadata(merged.join("o1")).unwrap().mode() & 0o777;
    assert_eq!(m, 0o750);
}

#[test]
fn flatten_trees_handles_large_files_and_hardlinks() {
    let sb = Sandbox::with_roots(&["t", "dest"]);
    if !overlay_tree_supported(&Sandbox::new()) {
        return;
    }
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 249) as u8).collect();
    let l = Layer::new().file("big", &big).hardlink("big2", "big").tar();
    sb.apply_to(&sb.root_named("t"), &l, ApplyMode::OverlayTree)
        .unwrap();
    flatten_trees(&[&sb.root_named("t")], &sb.root_named("dest")).unwrap();
    let d = sb.root_named("dest");
    assert_eq!(fs::read(d.join("big")).unwrap(), big);
    assert_eq!(
        fs::metadata(d.join("big")).unwrap().ino(),
        fs::metadata(d.join("big2")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(d.join("big")).unwrap().permissions().mode() & 0o777,
        0o644
    );
}
