//! Helpers shared by lade's integration tests: finding and running the `lade` binary against a
//! fresh store, building the umoci/skopeo fixture images once (across the separate processes
//! nextest runs every test in), comparing two directory trees, and the peer tools used as
//! oracles (`umoci unpack --rootless`, `skopeo inspect`).
//!
//! Each test binary uses a different subset of these, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod debian;
pub mod kill;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

// ------------------------------------------------------------------------------------------------
// The binary

/// Path of the `lade` binary under test. nextest sets `NEXTEST_BIN_EXE_lade` at run time (and
/// remaps it when running from an archive, where the compile-time path may not exist); cargo
/// test bakes the path in with `CARGO_BIN_EXE_lade`.
pub fn lade_bin() -> PathBuf {
    match std::env::var_os("NEXTEST_BIN_EXE_lade") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_lade")),
    }
}

/// Directory for scratch files: `$TMPDIR` or /tmp (never inside the checkout, which the
/// test user may not be able to write).
pub fn tmp_root() -> PathBuf {
    std::env::temp_dir()
}

/// A scratch directory that is removed on drop even when the test made parts of it
/// read-only (0555 directories, 0000 files).
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lade-test-{tag}-"))
            .tempdir_in(tmp_root())
            .expect("cannot create scratch directory");
        Scratch { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path().join(p)
    }

    /// Keep the directory after the test (for debugging a failure).
    pub fn keep(mut self) -> PathBuf {
        self.dir.take().unwrap().keep()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            if std::env::var_os("LADE_TEST_KEEP").is_some() {
                eprintln!("keeping {}", d.keep().display());
                return;
            }
            let _ = remove_tree(d.path());
        }
    }
}

/// `rm -rf` that first makes every directory u+rwx so read-only trees can be removed.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    fn fix(p: &Path) {
        if let Ok(md) = fs::symlink_metadata(p)
            && md.is_dir()
        {
            let mode = md.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o700));
            }
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    fix(&e.path());
                }
            }
        }
    }
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    fix(path);
    fs::remove_dir_all(path)
}

// ------------------------------------------------------------------------------------------------
// Running lade

/// The output of one command, with helpers for assertions that print everything on failure.
pub struct Run {
    pub what: String,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(what: String, out: Output) -> Run {
        Run {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// Assert success; return self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "expected success\n{}",
            self.describe()
        );
        self
    }

    /// Assert a clean failure: a non-zero exit (not a signal), and the error as exactly one
    /// line on stderr, the last one, saying "error" — no panic, no multi-line report. Plain
    /// progress lines before it (lade prints what it is doing when not on a terminal) are
    /// allowed. Returns the error line.
    #[track_caller]
    pub fn fails_one_line(self) -> String {
        assert!(
            !self.status.success(),
            "expected failure\n{}",
            self.describe()
        );
        assert!(
            self.status.code().is_some(),
            "killed by a signal instead of exiting with an error\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "lade panicked\n{}",
            self.describe()
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let errors: Vec<&&str> = lines
            .iter()
            .filter(|l| l.to_lowercase().contains("error"))
            .collect();
        assert!(
            errors.len() == 1 && lines.last() == errors.first().copied(),
            "expected the error as exactly one line, the last on stderr\n{}",
            self.describe()
        );
        lines.last().unwrap().to_string()
    }

    /// Assert a non-zero exit; return stderr.
    #[track_caller]
    pub fn fails(self) -> String {
        assert!(
            !self.status.success(),
            "expected failure\n{}",
            self.describe()
        );
        assert!(
            self.status.code().is_some(),
            "killed by a signal\n{}",
            self.describe()
        );
        self.stderr
    }
}

/// A lade invocation context with its own fresh, empty storage directory.
pub struct Lade {
    pub scratch: Scratch,
    pub storage: PathBuf,
}

impl Lade {
    pub fn new() -> Lade {
        let scratch = Scratch::new("store");
        let storage = scratch.join("storage");
        Lade { scratch, storage }
    }

    /// A `Command` for lade with `--storage` set to this context's store and a clean
    /// environment as far as lade is concerned.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(lade_bin());
        c.arg("--storage").arg(&self.storage);
        c.env_remove("LADE_STORAGE");
        c.stdin(Stdio::null());
        c
    }

    /// Run `lade --storage STORE ARGS...`.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let mut c = self.cmd();
        c.args(&args);
        run_cmd(c)
    }

    /// Run and assert success; return stdout.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(args).ok().stdout
    }

    /// A path inside this context's scratch directory (not inside the store).
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        self.scratch.join(p)
    }

    /// Names printed by `lade list`, one per line.
    #[track_caller]
    pub fn list(&self) -> Vec<String> {
        self.ok(["list"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `lade fsck` must succeed.
    #[track_caller]
    pub fn fsck_ok(&self) {
        self.run(["fsck"]).ok();
    }
}

impl Default for Lade {
    fn default() -> Self {
        Lade::new()
    }
}

/// The manifest digest the store of `lade` records for `name`.
#[track_caller]
pub fn stored_digest(lade: &Lade, name: &str) -> String {
    let out = lade.ok(["list", "--format", "json", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest: {out}"))
        .to_string()
}

/// Run any command, capturing output.
pub fn run_cmd(mut c: Command) -> Run {
    let what = format!("{c:?}");
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run::from(what, out)
}

/// Run `lade ARGS...` without any storage option (for tests of option handling).
pub fn lade_raw<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(lade_bin());
    c.args(args);
    c.stdin(Stdio::null());
    c
}

// ------------------------------------------------------------------------------------------------
// Fixture images

const MAKE_IMAGES: &str = include_str!("../fixtures/make-images.sh");

/// The fixture images built by `tests/fixtures/make-images.sh`.
pub struct Fixtures {
    pub root: PathBuf,
}

impl Fixtures {
    /// OCI layout with tags `multi` and `single`.
    pub fn layout(&self) -> PathBuf {
        self.root.join("layout")
    }
    /// oci-archive of layout:multi, tag `multi`.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive.tar")
    }
    /// OCI layout with tag `single` in zstd, if skopeo could make it.
    pub fn zstd(&self) -> Option<PathBuf> {
        self.root
            .join("zstd.ok")
            .exists()
            .then(|| self.root.join("zstd"))
    }
    /// OCI layout with the large `big` tag (only from [`fixtures_big`]).
    pub fn big(&self) -> PathBuf {
        self.root.join("big")
    }
    /// `oci:LAYOUT:TAG` for the main layout.
    pub fn oci(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.layout().display())
    }
}

fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Build the fixtures into a directory keyed by user and script contents, at most once across
/// all test processes (nextest runs each test in its own process): an exclusive `flock` on a
/// lock file serialises builders, and the script's `done` marker says the set is complete.
fn build_fixtures(big: bool) -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    let key = fnv64(MAKE_IMAGES.as_bytes());
    let name = format!(
        "lade-fixtures-{uid}-{key:016x}{}",
        if big { "-big" } else { "" }
    );
    let root = tmp_root().join(name);
    fs::create_dir_all(&root).expect("cannot create fixture directory");
    let lock = fs::File::create(root.with_extension("lock")).expect("cannot create lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if !root.join("done").exists() {
        let script = root.with_extension("sh");
        fs::write(&script, MAKE_IMAGES).unwrap();
        let mut c = Command::new("bash");
        c.arg(&script).arg(&root);
        if big {
            c.arg("--big");
        }
        let r = run_cmd(c);
        assert!(
            r.success(),
            "tests/fixtures/make-images.sh failed\n{}",
            r.describe()
        );
        assert!(root.join("done").exists());
    }
    drop(lock);
    root
}

/// The small fixture set (layout with `multi` and `single`, archive, zstd).
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        root: build_fixtures(false),
    })
}

/// The fixture set including the large `big` image (for kill -9 tests).
pub fn fixtures_big() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        root: build_fixtures(true),
    })
}

// ------------------------------------------------------------------------------------------------
// Peer tools

/// `umoci unpack --rootless --image IMAGE BUNDLE`; returns BUNDLE/rootfs.
#[track_caller]
pub fn umoci_unpack(image: &str, bundle: &Path) -> PathBuf {
    let mut c = Command::new("umoci");
    c.args(["unpack", "--rootless", "--image", image])
        .arg(bundle);
    run_cmd(c).ok();
    bundle.join("rootfs")
}

/// `skopeo inspect TRANSPORT:REF` as JSON (the `Digest` field is the manifest digest).
#[track_caller]
pub fn skopeo_inspect(image: &str) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.args(["inspect", image]);
    let r = run_cmd(c).ok();
    serde_json::from_str(&r.stdout).expect("skopeo inspect printed malformed JSON")
}

/// The manifest digest of an image as skopeo sees it.
#[track_caller]
pub fn skopeo_digest(image: &str) -> String {
    skopeo_inspect(image)["Digest"]
        .as_str()
        .expect("no Digest in skopeo inspect output")
        .to_string()
}

/// How `lade unpack` must relate to `umoci unpack --rootless` of the same image.
///
/// Everything must be identical (paths, types, FIFOs included, contents, symlink targets,
/// hardlink groups, permission bits exactly, setuid/setgid/sticky and `0000` included), except:
/// - the mode of the target directory itself is not compared: it is the caller's directory.
/// - ownership and timestamps are not compared (rootless: everything belongs to the user).
pub fn vs_umoci() -> CompareOpts {
    CompareOpts {
        root_mode: false,
        ..CompareOpts::default()
    }
}

/// `sha256:<hex>` of bytes, computed independently of lade's own digest code paths.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    format!("sha256:{}", hex::encode(d))
}

// ------------------------------------------------------------------------------------------------
// Tree comparison

/// The kind and content of one entry in a scanned tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Regular file of this size; contents are compared when two trees are diffed (by
    /// reading both, which is fast even in a debug build, unlike hashing).
    File {
        size: u64,
    },
    Symlink(PathBuf),
    Fifo,
    Char(u64),
    Block(u64),
    Socket,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink(_) => "symlink",
            Kind::Fifo => "fifo",
            Kind::Char(_) => "char device",
            Kind::Block(_) => "block device",
            Kind::Socket => "socket",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// st_mode & 0o7777
    pub mode: u32,
    dev_ino: (u64, u64),
    nlink: u64,
}

/// A directory tree: relative path → entry; the root itself is "".
pub struct Tree {
    pub root: PathBuf,
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// Read a file even when its mode denies the owner read access (0000, 0111): add u+r for
/// the read and put the mode back.
fn read_forcing(path: &Path, mode: u32) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match fs::File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf)?;
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o400))?;
            let r = fs::read(path);
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            buf = r?;
        }
        Err(e) => return Err(e),
    }
    Ok(buf)
}

/// Runs `f` with `dir` given u+rx if its mode (`mode`) denies either, and puts the mode back:
/// images keep `0000` and `0300` directories, and the tests compare their contents.
fn with_dir_access<T>(dir: &Path, mode: u32, f: impl FnOnce() -> T) -> T {
    if mode & 0o500 == 0o500 {
        return f();
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o500))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    let out = f();
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    out
}

/// Reads file `rel` of the tree at `root` whatever the modes of it and its directories.
fn read_in_tree(root: &Path, rel: &Path, mode: u32) -> io::Result<Vec<u8>> {
    fn walk(dir: &Path, rest: &[&OsStr], mode: u32) -> io::Result<Vec<u8>> {
        match rest {
            [] => unreachable!("an empty path is the root directory"),
            [name] => read_forcing(&dir.join(name), mode),
            [first, more @ ..] => {
                let sub = dir.join(first);
                let sub_mode = fs::symlink_metadata(&sub)?.mode() & 0o7777;
                with_dir_access(&sub, sub_mode, || walk(&sub, more, mode))
            }
        }
    }
    let parts: Vec<&OsStr> = rel.iter().collect();
    walk(root, &parts, mode)
}

impl Tree {
    /// Walk `root` without following symlinks; directories that deny their owner r or x are
    /// opened up while they are read and put back.
    pub fn scan(root: &Path) -> Tree {
        fn scan_dir(root: &Path, rel: &Path, entries: &mut BTreeMap<PathBuf, Entry>) {
            let abs = root.join(rel);
            let md = fs::symlink_metadata(&abs)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", abs.display()));
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let kind = if ft.is_dir() {
                with_dir_access(&abs, mode, || {
                    let mut children: Vec<PathBuf> = fs::read_dir(&abs)
                        .and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect())
                        .unwrap_or_else(|e| panic!("readdir {}: {e}", abs.display()));
                    children.sort();
                    for c in children {
                        scan_dir(root, &rel.join(c.file_name().unwrap()), entries);
                    }
                });
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink(fs::read_link(&abs).unwrap())
            } else if ft.is_file() {
                Kind::File { size: md.len() }
            } else if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_char_device() {
                Kind::Char(md.rdev())
            } else if ft.is_block_device() {
                Kind::Block(md.rdev())
            } else {
                Kind::Socket
            };
            entries.insert(
                rel.to_path_buf(),
                Entry {
                    kind,
                    mode,
                    dev_ino: (md.dev(), md.ino()),
                    nlink: md.nlink(),
                },
            );
        }
        let mut entries = BTreeMap::new();
        scan_dir(root, Path::new(""), &mut entries);
        Tree {
            root: root.to_path_buf(),
            entries,
        }
    }

    /// For every regular file that shares its inode with other files of this tree, the set
    /// of all paths of its group. Files linked only from outside the tree (nlink > 1 but no
    /// other path here) count as unlinked.
    pub fn hardlink_groups(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut by_ino: HashMap<(u64, u64), BTreeSet<PathBuf>> = HashMap::new();
        for (p, e) in &self.entries {
            if matches!(e.kind, Kind::File { .. }) && e.nlink > 1 {
                by_ino.entry(e.dev_ino).or_default().insert(p.clone());
            }
        }
        let mut out = BTreeMap::new();
        for group in by_ino.into_values() {
            if group.len() > 1 {
                for p in &group {
                    out.insert(p.clone(), group.clone());
                }
            }
        }
        out
    }
}

/// What to compare, and how to forgive documented differences.
#[derive(Clone)]
pub struct CompareOpts {
    /// Permission bits compared (after `normalize`), e.g. 0o7777 or 0o777.
    pub perm_mask: u32,
    /// Map (kind, mode) of the *expected* tree to the mode the actual tree should have.
    pub normalize: fn(&Kind, u32) -> u32,
    /// Compare hardlink groups.
    pub hardlinks: bool,
    /// Compare the mode of the root directory itself.
    pub root_mode: bool,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            perm_mask: 0o7777,
            normalize: |_, m| m,
            hardlinks: true,
            root_mode: true,
        }
    }
}

/// Compare `actual` against `expected`; return human-readable differences (empty if equal).
pub fn diff_trees(expected: &Path, actual: &Path, opts: &CompareOpts) -> Vec<String> {
    diff_scanned(&Tree::scan(expected), actual, opts)
}

/// [`diff_trees`] with the expected tree scanned already (to compare many trees with one).
pub fn diff_scanned(e: &Tree, actual: &Path, opts: &CompareOpts) -> Vec<String> {
    let a = Tree::scan(actual);
    let mut diffs = Vec::new();
    let show = |p: &Path| {
        if p.as_os_str().is_empty() {
            "/".to_string()
        } else {
            format!("/{}", p.display())
        }
    };
    for (p, ee) in &e.entries {
        let Some(ae) = a.entries.get(p) else {
            diffs.push(format!("missing: {} ({})", show(p), ee.kind.name()));
            continue;
        };
        if std::mem::discriminant(&ee.kind) != std::mem::discriminant(&ae.kind) {
            diffs.push(format!(
                "type: {}: expected {}, got {}",
                show(p),
                ee.kind.name(),
                ae.kind.name()
            ));
            continue;
        }
        match (&ee.kind, &ae.kind) {
            (Kind::File { size: es }, Kind::File { size: as_ }) if es != as_ => {
                diffs.push(format!(
                    "content: {}: expected {es} bytes, got {as_} bytes",
                    show(p)
                ));
            }
            (Kind::File { .. }, Kind::File { .. }) => {
                let read = |t: &Tree, m: u32| {
                    read_in_tree(&t.root, p, m)
                        .unwrap_or_else(|e| panic!("read {}: {e}", t.root.join(p).display()))
                };
                let (ed, ad) = (read(e, ee.mode), read(&a, ae.mode));
                if ed != ad {
                    let at = ed.iter().zip(&ad).position(|(x, y)| x != y).unwrap_or(0);
                    diffs.push(format!(
                        "content: {}: differs from byte {at} on ({} bytes)",
                        show(p),
                        ed.len()
                    ));
                }
            }
            (Kind::Symlink(et), Kind::Symlink(at)) if et != at => {
                diffs.push(format!(
                    "symlink target: {}: expected {}, got {}",
                    show(p),
                    et.display(),
                    at.display()
                ));
            }
            (Kind::Char(x), Kind::Char(y)) | (Kind::Block(x), Kind::Block(y)) if x != y => {
                diffs.push(format!("device number: {}: expected {x}, got {y}", show(p)));
            }
            _ => {}
        }
        let is_root = p.as_os_str().is_empty();
        if !matches!(ee.kind, Kind::Symlink(_)) && (opts.root_mode || !is_root) {
            let want = (opts.normalize)(&ee.kind, ee.mode) & opts.perm_mask;
            let got = ae.mode & opts.perm_mask;
            if want != got {
                diffs.push(format!(
                    "mode: {}: expected {want:04o} (source {:04o}), got {got:04o}",
                    show(p),
                    ee.mode
                ));
            }
        }
    }
    for (p, ae) in &a.entries {
        if !e.entries.contains_key(p) {
            diffs.push(format!("extra: {} ({})", show(p), ae.kind.name()));
        }
    }
    if opts.hardlinks {
        let eg = e.hardlink_groups();
        let ag = a.hardlink_groups();
        let mut seen = BTreeSet::new();
        for p in eg.keys().chain(ag.keys()) {
            if !seen.insert(p.clone()) {
                continue;
            }
            // only report paths present in both trees with the same type; others are
            // already reported above
            let (Some(ee), Some(ae)) = (e.entries.get(p), a.entries.get(p)) else {
                continue;
            };
            if std::mem::discriminant(&ee.kind) != std::mem::discriminant(&ae.kind) {
                continue;
            }
            let none = BTreeSet::new();
            let want = eg.get(p).unwrap_or(&none);
            let got = ag.get(p).unwrap_or(&none);
            if want != got {
                let fmt = |s: &BTreeSet<PathBuf>| {
                    if s.is_empty() {
                        "not hardlinked".to_string()
                    } else {
                        s.iter().map(|x| show(x)).collect::<Vec<_>>().join(", ")
                    }
                };
                diffs.push(format!(
                    "hardlinks: {}: expected [{}], got [{}]",
                    show(p),
                    fmt(want),
                    fmt(got)
                ));
            }
        }
    }
    diffs
}

/// Panic with a readable report if the trees differ.
#[track_caller]
pub fn assert_same_tree(expected: &Path, actual: &Path, opts: &CompareOpts) {
    assert_same_as_scanned(&Tree::scan(expected), actual, opts);
}

/// [`assert_same_tree`] with the expected tree scanned already.
#[track_caller]
pub fn assert_same_as_scanned(e: &Tree, actual: &Path, opts: &CompareOpts) {
    let expected = &e.root;
    let diffs = diff_scanned(e, actual, opts);
    if !diffs.is_empty() {
        let mut msg = format!(
            "trees differ: expected {} vs actual {} ({} differences)\n",
            expected.display(),
            actual.display(),
            diffs.len()
        );
        for d in diffs.iter().take(60) {
            let _ = writeln!(msg, "  {d}");
        }
        if diffs.len() > 60 {
            let _ = writeln!(msg, "  ... and {} more", diffs.len() - 60);
        }
        panic!("{msg}");
    }
}

// ------------------------------------------------------------------------------------------------
// Builds

/// A fresh store with the busybox fixture (`multi`) pulled as `base`.
pub fn base_store() -> Lade {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("multi"), "base"]);
    lade
}

/// A store and an empty build context directory (`ctx` in the store's scratch directory),
/// with helpers to write the context, build it and read what a build recorded.
pub struct BuildCtx {
    pub lade: Lade,
    pub ctx: PathBuf,
}

impl BuildCtx {
    /// A store with the busybox fixture as `base` ([`base_store`]), and an empty context.
    pub fn new() -> BuildCtx {
        BuildCtx::in_store(base_store())
    }

    /// An empty context next to the store `lade`, which holds whatever base the test needs.
    pub fn in_store(lade: Lade) -> BuildCtx {
        let ctx = lade.path("ctx");
        fs::create_dir_all(&ctx).unwrap();
        BuildCtx { lade, ctx }
    }

    /// Write `content` to `rel` in the context, making parent directories.
    pub fn file(&self, rel: &str, content: &str) {
        let p = self.ctx.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `lade build EXTRA... -t TAG CTX`, with the context's Dockerfile as it is.
    pub fn build_cmd(&self, extra: &[&str], tag: &str) -> Command {
        let mut c = self.lade.cmd();
        c.arg("build").args(extra).args(["-t", tag]).arg(&self.ctx);
        c
    }

    /// Write `df` as the context's Dockerfile and run `lade build -t TAG CTX`.
    pub fn build(&self, tag: &str, df: &str) -> Run {
        fs::write(self.ctx.join("Dockerfile"), df).unwrap();
        run_cmd(self.build_cmd(&[], tag))
    }

    /// [`BuildCtx::build`] that must succeed; returns stdout.
    #[track_caller]
    pub fn build_ok(&self, tag: &str, df: &str) -> String {
        self.build(tag, df).ok().stdout
    }

    /// The store's record of `tag` (`lade list --format json TAG`).
    pub fn record(&self, tag: &str) -> serde_json::Value {
        serde_json::from_str(&self.lade.ok(["list", "--format", "json", tag])).unwrap()
    }

    /// The bytes of a blob of the store.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        fs::read(self.lade.storage.join("blobs/sha256").join(hex)).unwrap()
    }

    /// The image configuration of `tag`.
    pub fn config(&self, tag: &str) -> serde_json::Value {
        let r = self.record(tag);
        serde_json::from_slice(&self.blob(r["config"].as_str().unwrap())).unwrap()
    }

    /// Entry names of the image's last layer blob.
    pub fn last_layer_names(&self, tag: &str) -> Vec<String> {
        let r = self.record(tag);
        let layers = r["layers"].as_array().unwrap();
        let blob = self.blob(layers.last().unwrap()["blob"].as_str().unwrap());
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        tar.entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    }
}

impl Default for BuildCtx {
    fn default() -> Self {
        BuildCtx::new()
    }
}

/// The hit (`*`) or miss (`.`) mark of each numbered instruction line of `lade build`'s
/// output, in order (`  3* RUN …` gives `*`); other lines, such as a RUN's own output, are
/// skipped, also when they start with digits (`2.10-3`).
pub fn marks(stdout: &str) -> String {
    stdout
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            match t[digits..].chars().next() {
                Some(c @ ('*' | '.')) if t[digits + 1..].starts_with(' ') => Some(c),
                _ => None,
            }
        })
        .collect()
}
