//! Member names: turning what a tar header says into a path that can only name something beneath
//! the root, and recognising the OCI whiteout names.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A member name reduced to plain components: no leading `/`, no empty, `.` or `..` components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanName {
    pub path: PathBuf,
    /// The name was absolute.
    pub absolute: bool,
    /// A `..` tried to climb above the root and was dropped.
    pub climbed: bool,
}

/// Cleans a member (or hard-link target) name lexically, as if it were rooted at `/`, the way
/// umoci's `CleanPath` and runc do: `..` pops the previous component and is dropped at the root,
/// so `../x` and `a/../../x` both become `x`. Resolving `..` lexically rather than refusing the
/// entry keeps odd but harmless archives (`./a/../b`) working, and since every later lookup
/// refuses symlinks, the lexical result is also the only one the filesystem will ever see.
pub(crate) fn clean(raw: &[u8]) -> Result<CleanName, &'static str> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut climbed = false;
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    climbed = true;
                }
            }
            c => parts.push(c),
        }
    }
    let mut path = Vec::with_capacity(raw.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(part);
    }
    Ok(CleanName {
        path: PathBuf::from(OsStr::from_bytes(&path)),
        absolute: raw.first() == Some(&b'/'),
        climbed,
    })
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_NAME: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// What a cleaned member name means beyond naming a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `dir/.wh.NAME`: hide `dir/NAME` of the lower layers.
    Whiteout(PathBuf),
    /// `dir/.wh..wh..opq`: hide everything the lower layers have in `dir`.
    Opaque(PathBuf),
    /// A name with the reserved prefix that means nothing usable; the entry is skipped.
    Ignored(&'static str),
}

/// Classifies by the last component only; the entry type does not matter (image-spec layer.md
/// defines whiteouts by name, and umoci also accepts any type).
pub(crate) fn classify(path: &Path) -> Special {
    let Some(name) = path.file_name() else {
        return Special::None;
    };
    let name = name.as_bytes();
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Special::None;
    };
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    if name == OPAQUE_NAME {
        return Special::Opaque(dir);
    }
    if name.starts_with(AUFS_META_PREFIX) {
        // AUFS bookkeeping such as `.wh..wh.plnk`; Docker skips these as well.
        return Special::Ignored("AUFS metadata");
    }
    if hidden.is_empty() || hidden == b"." || hidden == b".." {
        return Special::Ignored("whiteout without a usable name");
    }
    Special::Whiteout(dir.join(OsStr::from_bytes(hidden)))
}

/// Splits a non-empty cleaned path into its directory and last component.
pub(crate) fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    let name = path.file_name()?;
    Some((path.parent().unwrap_or(Path::new("")), name))
}

/// How a path is named in messages: the root as `.`, everything else relative.
pub(crate) fn show(path: &Path) -> std::path::Display<'_> {
    if path.as_os_str().is_empty() {
        Path::new(".").display()
    } else {
        path.display()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> (String, bool, bool) {
        let n = clean(raw.as_bytes()).unwrap();
        (n.path.to_str().unwrap().to_string(), n.absolute, n.climbed)
    }

    #[test]
    fn cleans_names() {
        assert_eq!(c("a/b"), ("a/b".into(), false, false));
        assert_eq!(c("./a//b/./"), ("a/b".into(), false, false));
        assert_eq!(c("/etc/passwd"), ("etc/passwd".into(), true, false));
        assert_eq!(c("../x"), ("x".into(), false, true));
        assert_eq!(c("a/../../x"), ("x".into(), false, true));
        assert_eq!(c("a/../b"), ("b".into(), false, false));
        assert_eq!(c("/../../etc"), ("etc".into(), true, true));
        assert_eq!(c("./"), ("".into(), false, false));
        assert_eq!(c(".."), ("".into(), false, true));
        assert_eq!(c("a\\..\\b"), ("a\\..\\b".into(), false, false));
        assert!(clean(b"a\0b").is_err());
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(Path::new("a/b")), Special::None);
        assert_eq!(
            classify(Path::new("a/.wh.b")),
            Special::Whiteout("a/b".into())
        );
        assert_eq!(classify(Path::new(".wh.b")), Special::Whiteout("b".into()));
        assert_eq!(
            classify(Path::new("a/.wh..wh..opq")),
            Special::Opaque("a".into())
        );
        assert_eq!(
            classify(Path::new(".wh..wh..opq")),
            Special::Opaque("".into())
        );
        assert!(matches!(
            classify(Path::new("a/.wh..wh.plnk")),
            Special::Ignored(_)
        ));
        assert!(matches!(classify(Path::new("a/.wh.")), Special::Ignored(_)));
        assert!(matches!(
            classify(Path::new("a/.wh..")),
            Special::Ignored(_)
        ));
        assert_eq!(classify(Path::new(".wh.x/y")), Special::None);
    }

    #[test]
    fn splits() {
        assert_eq!(
            split(Path::new("a/b/c")),
            Some((Path::new("a/b"), OsStr::new("c")))
        );
        assert_eq!(
            split(Path::new("c")),
            Some((Path::new(""), OsStr::new("c")))
        );
        assert_eq!(split(Path::new("")), None);
    }
}
