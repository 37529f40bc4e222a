//! Paths inside the container (bind destinations), cleaned before anything joins them to a
//! host directory. Joining `/../../x` to the root's host path and creating the result would
//! create `x` on the host outside the store, so every destination is made lexically clean
//! first: `.` and empty components dropped, `a/..` folded; one that still climbs above the
//! root is refused rather than clamped, since the user plainly meant some other place.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// `path` (absolute, inside the container) with only normal components, or an error naming
/// `what` (the option it came from).
pub fn clean(path: &Path, what: &str) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::invalid(
            what,
            format!("{}: must be an absolute path", path.display()),
        ));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            // (A prefix such as `C:` exists only on Windows.)
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(Error::invalid(
                        what,
                        format!(
                            "{} leads outside the container's root ('..' above /)",
                            path.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// `path` relative to the container's root, for joining to a host directory: it must be clean
/// (see [`clean`]), which the caller checked when the bind was made; checked again here so
/// that no caller can join a path with `..` by mistake.
pub fn relative(path: &Path) -> Result<&Path> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(rel)
    } else {
        Err(Error::invalid(
            format!("container path {}", path.display()),
            "not a clean absolute path",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        clean(Path::new(p), "-b").unwrap().display().to_string()
    }

    #[test]
    fn cleans_lexically() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/a/b"), "/a/b");
        assert_eq!(ok("/a/../b"), "/b");
        assert_eq!(ok("//a/./b/"), "/a/b");
        assert_eq!(ok("/a/b/../../c/.."), "/");
    }

    #[test]
    fn refuses_what_climbs_out_or_is_relative() {
        for p in ["/..", "/../x", "/a/../../x", "/../../../x", "/a/../.."] {
            let e = clean(Path::new(p), "-b").unwrap_err().to_string();
            assert!(e.contains(p) && e.contains("outside"), "{p}: {e}");
        }
        assert!(clean(Path::new("rel"), "-b").is_err());
    }

    #[test]
    fn relative_accepts_only_clean_paths() {
        assert_eq!(relative(Path::new("/a/b")).unwrap(), Path::new("a/b"));
        assert!(relative(Path::new("/a/../b")).is_err());
        assert!(relative(Path::new("/./b")).is_ok()); // components() drops the '.'
    }
}
