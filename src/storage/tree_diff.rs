//! Comparing two directory trees entry by entry: names, types, permission bits, sizes,
//! contents, symlink targets, device numbers (whiteouts), hard-link groups and `user.*`
//! extended attributes (opaque markers among them). Times are not compared: a directory a
//! layer does not list is made when it is unpacked, so its time differs between two unpacks
//! of the same layer.
//!
//! `lade fsck` uses it to check a layer tree against a fresh unpack of its blob. Trees keep
//! their image's modes, so an entry the owner may not read or search is opened by adding the
//! permission for a moment and putting the mode back.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Differences reported at most: enough to see what happened to a tree.
const MAX_REPORTED: usize = 5;

/// How `actual` differs from `expected` (empty if it does not); paths are relative to the
/// roots. Entries in `unknown_content` are compared by type only (placeholders for files of
/// other layers). An entry that cannot be read in `actual` is a difference; one in
/// `expected` is an error.
pub fn differences(
    expected: &Path,
    actual: &Path,
    unknown_content: &BTreeSet<PathBuf>,
) -> io::Result<Vec<String>> {
    let mut walk = Walk {
        expected,
        actual,
        unknown_content,
        found: Vec::new(),
        linked: Vec::new(),
    };
    walk.dir(Path::new(""))?;
    walk.compare_links();
    Ok(walk.found)
}

struct Walk<'a> {
    expected: &'a Path,
    actual: &'a Path,
    unknown_content: &'a BTreeSet<PathBuf>,
    found: Vec<String>,
    /// Files with more than one link in either tree: path, and inode in each tree if that
    /// one has more than one link. Links from outside a tree (a tree's copy of a lower
    /// layer's file is a hard link to it) do not count: groups are compared within each tree.
    linked: Vec<(PathBuf, [Option<Inode>; 2])>,
}

/// (device, inode number).
type Inode = (u64, u64);

fn show(rel: &Path) -> String {
    format!("/{}", rel.display())
}

impl Walk<'_> {
    fn differ(&mut self, what: String) -> bool {
        if self.found.len() < MAX_REPORTED {
            self.found.push(what);
        }
        self.found.len() >= MAX_REPORTED
    }

    /// Compares directory `rel` of both trees; stops early once enough differences are found.
    /// Both directories stay open to their owner until everything below them is compared
    /// (an entry of a `0000` directory cannot even be looked at otherwise).
    fn dir(&mut self, rel: &Path) -> io::Result<()> {
        let (e_path, a_path) = (self.expected.join(rel), self.actual.join(rel));
        with_access(&e_path, 0o500, || {
            match with_access(&a_path, 0o500, || self.dir_contents(rel)) {
                Ok(compared) => compared,
                Err(e) => {
                    self.differ(format!("{}: cannot be listed: {e}", show(rel)));
                    Ok(())
                }
            }
        })?
    }

    fn dir_contents(&mut self, rel: &Path) -> io::Result<()> {
        let (e_path, a_path) = (self.expected.join(rel), self.actual.join(rel));
        let want = names(&e_path)?;
        let got = match names(&a_path) {
            Ok(n) => n,
            Err(e) => {
                self.differ(format!("{}: cannot be listed: {e}", show(rel)));
                return Ok(());
            }
        };
        for name in got.difference(&want) {
            if self.differ(format!("{}: not in the layer", show(&rel.join(name)))) {
                return Ok(());
            }
        }
        for name in want.difference(&got) {
            if self.differ(format!("{}: missing", show(&rel.join(name)))) {
                return Ok(());
            }
        }
        for name in want.intersection(&got) {
            let child = rel.join(name);
            self.entry(&child)?;
            if self.found.len() >= MAX_REPORTED {
                return Ok(());
            }
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path) -> io::Result<()> {
        let (e_path, a_path) = (self.expected.join(rel), self.actual.join(rel));
        let e = fs::symlink_metadata(&e_path)?;
        let a = match fs::symlink_metadata(&a_path) {
            Ok(a) => a,
            Err(err) => {
                self.differ(format!("{}: {err}", show(rel)));
                return Ok(());
            }
        };
        let (e_kind, a_kind) = (kind(&e), kind(&a));
        if e_kind != a_kind {
            self.differ(format!("{}: a {a_kind}, not a {e_kind}", show(rel)));
            return Ok(());
        }
        if self.unknown_content.contains(rel) {
            // A placeholder, or a directory whose metadata comes from lower layers: only its
            // type is known; what a directory holds is the layer's own, compared as usual.
            if e_kind == "directory" {
                self.dir(rel)?;
            }
            return Ok(());
        }
        if !e.file_type().is_symlink() && e.mode() & 0o7777 != a.mode() & 0o7777 {
            self.differ(format!(
                "{}: mode {:04o}, not {:04o}",
                show(rel),
                a.mode() & 0o7777,
                e.mode() & 0o7777
            ));
        }
        if e_kind == "file" {
            self.file(rel, &e, &a)?;
        } else if e_kind == "symlink" {
            let (et, at) = (fs::read_link(&e_path)?, fs::read_link(&a_path)?);
            if et != at {
                self.differ(format!(
                    "{}: links to {}, not {}",
                    show(rel),
                    at.display(),
                    et.display()
                ));
            }
        } else if matches!(e_kind, "character device" | "block device") && e.rdev() != a.rdev() {
            self.differ(format!("{}: another device number", show(rel)));
        }
        if user_xattrs(&e_path)? != user_xattrs(&a_path).unwrap_or_default() {
            self.differ(format!("{}: other extended attributes", show(rel)));
        }
        if e_kind == "directory" {
            self.dir(rel)?;
        }
        Ok(())
    }

    /// Reports files whose group of hard links within their tree differs between the trees.
    fn compare_links(&mut self) {
        let group_of = |side: usize| {
            let mut groups: HashMap<(u64, u64), BTreeSet<&Path>> = HashMap::new();
            for (path, inodes) in &self.linked {
                if let Some(ino) = inodes[side] {
                    groups.entry(ino).or_default().insert(path);
                }
            }
            groups
        };
        let (e_groups, a_groups) = (group_of(0), group_of(1));
        let mut odd = Vec::new();
        for (path, [e, a]) in &self.linked {
            let alone = BTreeSet::from([path.as_path()]);
            let e_group = e.and_then(|i| e_groups.get(&i)).unwrap_or(&alone);
            let a_group = a.and_then(|i| a_groups.get(&i)).unwrap_or(&alone);
            if e_group != a_group {
                odd.push(format!("{}: hard-linked otherwise", show(path)));
            }
        }
        for o in odd {
            if self.differ(o) {
                break;
            }
        }
    }

    fn file(&mut self, rel: &Path, e: &Metadata, a: &Metadata) -> io::Result<()> {
        let inode = |m: &Metadata| (m.nlink() > 1).then(|| (m.dev(), m.ino()));
        if e.nlink() > 1 || a.nlink() > 1 {
            self.linked.push((rel.to_path_buf(), [inode(e), inode(a)]));
        }
        if e.len() != a.len() {
            self.differ(format!("{}: {} bytes, not {}", show(rel), a.len(), e.len()));
            return Ok(());
        }
        let e_path = self.expected.join(rel);
        let a_path = self.actual.join(rel);
        let mut want = with_access(&e_path, 0o400, || File::open(&e_path))??;
        let mut got = match with_access(&a_path, 0o400, || File::open(&a_path)) {
            Ok(Ok(f)) => f,
            Ok(Err(err)) | Err(err) => {
                self.differ(format!("{}: cannot be read: {err}", show(rel)));
                return Ok(());
            }
        };
        if let Some(at) = first_unequal_byte(&mut want, &mut got)? {
            self.differ(format!("{}: content differs from byte {at}", show(rel)));
        }
        Ok(())
    }
}

fn names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "FIFO"
    } else {
        "socket"
    }
}

/// Runs `f`, which needs the owner permission bits `need` on `path`; if they are missing,
/// adds them for the call and puts the mode back (even when `f` fails).
fn with_access<T>(path: &Path, need: u32, f: impl FnOnce() -> T) -> io::Result<T> {
    let mode = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if mode & need == need {
        return Ok(f());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode | need))?;
    let out = f();
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(out)
}

/// The offset of the first byte where the two files differ, or where `b` ends first (the
/// caller checked that their sizes are equal; a file can change while it is read).
fn first_unequal_byte(a: &mut File, b: &mut File) -> io::Result<Option<u64>> {
    let mut ba = vec![0u8; 256 << 10];
    let mut bb = vec![0u8; 256 << 10];
    let mut offset = 0u64;
    loop {
        let na = match a.read(&mut ba) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if na == 0 {
            let more = b.read(&mut bb[..1])?;
            return Ok((more > 0).then_some(offset));
        }
        match b.read_exact(&mut bb[..na]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(offset)),
            Err(e) => return Err(e),
        }
        if let Some(i) = ba[..na].iter().zip(&bb[..na]).position(|(x, y)| x != y) {
            return Ok(Some(offset + i as u64));
        }
        offset += na as u64;
    }
}

/// The `user.*` extended attributes of `path` (not following symlinks), sorted.
fn user_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value[..])?;
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/f"), vec![7u8; 300_000]).unwrap();
        fs::hard_link(root.join("d/f"), root.join("g")).unwrap();
        symlink("../x", root.join("d/l")).unwrap();
        fs::write(root.join("d/e/locked"), "secret").unwrap();
        fs::set_permissions(root.join("d/e/locked"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(root.join("d/e"), fs::Permissions::from_mode(0o111)).unwrap();
    }

    fn diff(a: &Path, b: &Path) -> Vec<String> {
        differences(a, b, &BTreeSet::new()).unwrap()
    }

    #[test]
    fn equal_trees_have_no_differences_and_keep_their_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        tree(&a);
        tree(&b);
        assert_eq!(diff(&a, &b), Vec::<String>::new());
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&b.join("d/e")), 0o111);
        fs::set_permissions(b.join("d/e"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(mode(&b.join("d/e/locked")), 0);
        fs::set_permissions(b.join("d/e"), fs::Permissions::from_mode(0o111)).unwrap();
        crate::fsutil::remove_all(tmp.path()).unwrap();
    }

    #[test]
    fn each_kind_of_change_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        tree(&a);
        type Change<'a> = (&'a str, &'a dyn Fn(&Path));
        let changes: [Change; 6] = [
            ("/d/f: content differs from byte 123456", &|b| {
                let mut data = fs::read(b.join("d/f")).unwrap();
                data[123_456] ^= 1;
                fs::write(b.join("d/f"), data).unwrap();
            }),
            ("/d/l: links to ../y, not ../x", &|b| {
                fs::remove_file(b.join("d/l")).unwrap();
                symlink("../y", b.join("d/l")).unwrap();
            }),
            ("/g: missing", &|b| fs::remove_file(b.join("g")).unwrap()),
            ("/d/f: mode 0600, not 0644", &|b| {
                fs::set_permissions(b.join("d/f"), fs::Permissions::from_mode(0o600)).unwrap();
            }),
            ("/extra: not in the layer", &|b| {
                fs::write(b.join("extra"), "").unwrap()
            }),
            ("/d/f: hard-linked otherwise", &|b| {
                fs::remove_file(b.join("g")).unwrap();
                fs::copy(b.join("d/f"), b.join("g")).unwrap();
            }),
        ];
        for (i, (want, change)) in changes.iter().enumerate() {
            let b = tmp.path().join(format!("b{i}"));
            tree(&b);
            fs::set_permissions(b.join("d/f"), fs::Permissions::from_mode(0o644)).unwrap();
            fs::set_permissions(a.join("d/f"), fs::Permissions::from_mode(0o644)).unwrap();
            change(&b);
            let found = diff(&a, &b);
            assert!(found.iter().any(|d| d == want), "{want}: {found:?}");
        }
        crate::fsutil::remove_all(tmp.path()).unwrap();
    }
}
