//! Assembling the container's root filesystem inside the new mount namespace and switching
//! to it: overlayfs over the image's layer trees (or a bind of a flattened tree), host
//! directories bound in, then `pivot_root`.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{
    MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind, mount_bind_recursive,
    mount_change, mount_remount, unmount,
};

use crate::error::{Error, IoContext, Result};

/// A host path to bind into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub recursive: bool,
    pub read_only: bool,
    /// A symbolic link the image has at the target is hidden by the mount point instead of
    /// being an error: for the host's name-resolution files, which an image's link (such as
    /// `/etc/resolv.conf` -> systemd-resolved's stub file) could not provide in a container.
    pub replace_symlink: bool,
}

/// A mount of `lade build`'s `RUN --mount` (the builder prepares the sources: cache
/// directories, secrets, copies), made after the binds, parents first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StepMount {
    /// A host file or directory at `target`, read-only unless `writable`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        writable: bool,
    },
    /// A fresh tmpfs at `target`, of at most `size` bytes if given.
    Tmpfs { target: PathBuf, size: Option<u64> },
}

impl StepMount {
    pub fn target(&self) -> &Path {
        match self {
            StepMount::Bind { target, .. } | StepMount::Tmpfs { target, .. } => target,
        }
    }
}

/// Makes `mounts` in the new root (writable: an overlay with an upper directory), the
/// mount points it lacks created as for binds.
pub fn mount_step_mounts(root: &Path, mounts: &[StepMount]) -> Result<()> {
    let mut sorted: Vec<&StepMount> = mounts.iter().collect();
    sorted.sort_by_key(|m| m.target().components().count());
    for m in sorted {
        match m {
            StepMount::Bind {
                source,
                target,
                writable,
            } => {
                let meta = fs::metadata(source)
                    .map_err(|e| Error::io(format!("mount source {}", source.display()), e))?;
                let at = ensure_mount_point(root, target, meta.is_dir(), false)?;
                let bind = Bind {
                    source: source.clone(),
                    target: target.clone(),
                    recursive: true,
                    read_only: !writable,
                    replace_symlink: false,
                };
                bind_one(&bind, &at)?;
            }
            StepMount::Tmpfs { target, size } => {
                let at = ensure_mount_point(root, target, true, false)?;
                let mut options = "mode=1777".to_string();
                if let Some(s) = size {
                    options.push_str(&format!(",size={s}"));
                }
                let options = CString::new(options)
                    .map_err(|_| Error::invalid("tmpfs options", "NUL byte"))?;
                mount(
                    "tmpfs",
                    &at,
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    Some(options.as_c_str()),
                )
                .map_err(|e| mnt_err(format!("mounting a tmpfs on {}", target.display()), e))?;
            }
        }
    }
    Ok(())
}

/// Where the writable part of the root lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upper {
    /// A tmpfs that vanishes with the container; the root is read-only unless `writable`.
    Scratch { writable: bool },
    /// `--write=DIR`: changes kept in DIR/upper (DIR/work is overlayfs's work directory).
    Keep(PathBuf),
}

fn mnt_err(what: String, e: rustix::io::Errno) -> Error {
    Error::io(what, e.into())
}

pub fn make_mounts_private() -> Result<()> {
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| mnt_err("making / private in the new mount namespace".into(), e))
}

/// Mounts a tmpfs on `scratch` (an existing, empty directory) for the container's own
/// bookkeeping: the overlay upper and work directories and the root mount point.
pub fn mount_scratch(scratch: &Path) -> Result<()> {
    mount(
        "tmpfs",
        scratch,
        "tmpfs",
        MountFlags::empty(),
        Some(c"mode=0700"),
    )
    .map_err(|e| mnt_err(format!("mounting a tmpfs on {}", scratch.display()), e))?;
    for d in ["upper", "work", "root"] {
        fs::create_dir(scratch.join(d)).at(&scratch.join(d))?;
    }
    Ok(())
}

/// Overlay of `lowers` (top-most first) at `scratch/root`. Whiteouts and opaque markers in
/// the trees are the unprivileged kind (0/0 devices and `user.overlay.*` xattrs), hence
/// `userxattr`. Paths are given relative to `lower_base` (the process changes there first),
/// which keeps the option string under the kernel's one-page limit for deep images.
pub fn mount_overlay(
    scratch: &Path,
    lower_base: &Path,
    lowers: &[String],
    upper: &Upper,
) -> Result<PathBuf> {
    let root = scratch.join("root");
    let (upperdir, workdir) = match upper {
        Upper::Scratch { .. } => (scratch.join("upper"), scratch.join("work")),
        Upper::Keep(dir) => {
            for d in ["upper", "work"] {
                fs::create_dir_all(dir.join(d)).at(&dir.join(d))?;
            }
            (dir.join("upper"), dir.join("work"))
        }
    };
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lowers.join(":"),
        upperdir.display(),
        workdir.display()
    );
    mount_overlay_options(
        &root,
        lower_base,
        lowers.len(),
        &options,
        MountFlags::empty(),
    )?
    .map_err(|e| {
        Error::unsupported(
            "overlayfs",
            format!("mount failed: {e} (unprivileged overlayfs needs Linux 5.11 or later)"),
        )
    })?;
    Ok(root)
}

/// Overlay of `lowers` (top-most first) with no upper layer, mounted on `target` itself: the
/// kernel makes such an overlay read-only, and it needs no tmpfs, upper or work directory
/// (see `mountpoints.rs` for why that matters). Paths as for [`mount_overlay`].
pub fn mount_overlay_read_only(target: &Path, lower_base: &Path, lowers: &[String]) -> Result<()> {
    let options = format!("lowerdir={},userxattr", lowers.join(":"));
    mount_overlay_options(
        target,
        lower_base,
        lowers.len(),
        &options,
        MountFlags::RDONLY,
    )?
    .map_err(|e| Error::unsupported("overlayfs", format!("read-only mount failed: {e}")))
}

/// Mounts an overlay with `options` on `target`, from within `lower_base` (the lower paths
/// are relative to it). Option strings that would pass the kernel's one-page limit are an
/// error of their own; a refused mount is returned for the caller to explain.
fn mount_overlay_options(
    target: &Path,
    lower_base: &Path,
    layers: usize,
    options: &str,
    flags: MountFlags,
) -> Result<std::result::Result<(), rustix::io::Errno>> {
    if options.len() >= 4096 {
        return Err(Error::unsupported(
            "overlayfs",
            format!("{layers} layers make the mount options too long"),
        ));
    }
    let options = CString::new(options)
        .map_err(|_| Error::invalid("overlay options", "NUL byte in a path"))?;
    let here = std::env::current_dir().ctx(|| "current directory".into())?;
    std::env::set_current_dir(lower_base).at(lower_base)?;
    let result = mount(
        "overlay",
        target,
        "overlay",
        flags,
        Some(options.as_c_str()),
    );
    std::env::set_current_dir(&here).at(&here)?;
    Ok(result)
}

/// Binds a flattened image tree at `scratch/root` (the fallback without overlayfs).
pub fn mount_flat(scratch: &Path, tree: &Path) -> Result<PathBuf> {
    let root = scratch.join("root");
    mount_bind(tree, &root).map_err(|e| mnt_err(format!("binding {}", tree.display()), e))?;
    Ok(root)
}

/// Creates `target` (a directory, or an empty file when `like` is a file) inside the new
/// root if missing. The root's upper layer is scratch, so this never touches the image.
fn ensure_mount_point(
    root: &Path,
    target: &Path,
    source_is_dir: bool,
    replace_symlink: bool,
) -> Result<PathBuf> {
    let rel = target.strip_prefix("/").unwrap_or(target);
    let path = root.join(rel);
    // Refuse to follow a symlink in the image out of the root: resolve nothing, check each
    // component is not a link.
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        if let Ok(m) = fs::symlink_metadata(&cur)
            && m.file_type().is_symlink()
        {
            if replace_symlink && cur == path {
                // The root is writable here (an upper layer): the link goes from the view only.
                fs::remove_file(&cur).at(&cur)?;
                break;
            }
            return Err(Error::invalid(
                format!("bind target {}", target.display()),
                "is a symbolic link in the image; give the real path",
            ));
        }
    }
    if !path.exists() {
        if source_is_dir {
            fs::create_dir_all(&path)
        } else {
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).at(p)?;
            }
            fs::File::create(&path).map(|_| ())
        }
        .map_err(|e| {
            Error::io(
                format!(
                    "creating bind target {} in the image (use --write, or give a target that exists)",
                    target.display()
                ),
                e,
            )
        })?;
    }
    Ok(path)
}

/// `root_is_scratch`: changes to the root vanish with the container (an overlay with a tmpfs
/// or `--write` upper layer), so an image symlink may be removed from the view for a
/// `replace_symlink` bind; not in a flattened copy kept on disk.
pub fn bind_all(root: &Path, binds: &[Bind], root_is_scratch: bool) -> Result<()> {
    for b in binds {
        let meta = fs::metadata(&b.source)
            .map_err(|e| Error::io(format!("bind source {}", b.source.display()), e))?;
        let replace = b.replace_symlink && root_is_scratch;
        let target = ensure_mount_point(root, &b.target, meta.is_dir(), replace)?;
        bind_one(b, &target)?;
    }
    Ok(())
}

/// Binds `b` at `target`, read-only if asked.
fn bind_one(b: &Bind, target: &Path) -> Result<()> {
    let res = if b.recursive {
        mount_bind_recursive(&b.source, target)
    } else {
        mount_bind(&b.source, target)
    };
    res.map_err(|e| {
        mnt_err(
            format!("binding {} to {}", b.source.display(), b.target.display()),
            e,
        )
    })?;
    if b.read_only {
        // A bind mount becomes read-only only by remounting it.
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"")
            .map_err(|e| mnt_err(format!("making {} read-only", b.target.display()), e))?;
    }
    Ok(())
}

/// Binds onto mount points known to exist (the read-only root with its mount-point layer,
/// checked on the host before): no lookups through the overlay, which cost more than the
/// mounts themselves.
pub fn bind_prepared(root: &Path, binds: &[Bind]) -> Result<()> {
    for b in binds {
        bind_one(
            b,
            &root.join(b.target.strip_prefix("/").unwrap_or(&b.target)),
        )?;
    }
    Ok(())
}

pub fn make_read_only(root: &Path) -> Result<()> {
    mount_remount(root, MountFlags::BIND | MountFlags::RDONLY, c"")
        .map_err(|e| mnt_err("making the image root read-only".into(), e))
}

/// Makes `root` the process's root and detaches the old one entirely.
pub fn pivot(root: &Path) -> Result<()> {
    std::env::set_current_dir(root).at(root)?;
    rustix::process::pivot_root(".", ".").map_err(|e| mnt_err("pivot_root".into(), e))?;
    // The old root is now stacked on "/"; detaching it leaves only the image.
    unmount(".", UnmountFlags::DETACH).map_err(|e| mnt_err("detaching the host root".into(), e))?;
    std::env::set_current_dir("/").ctx(|| "/".into())?;
    Ok(())
}

/// The directories every container gets, like ch-run: host /dev, /proc and /sys (recursive
/// binds, since an unprivileged namespace cannot mount a new /proc without a PID namespace),
/// /tmp, the user's home unless `--no-home`, and the host's name resolution files.
pub fn standard_binds(home: Option<(&Path, &Path)>) -> Vec<Bind> {
    let mut binds = vec![
        bind("/dev", "/dev", true),
        bind("/proc", "/proc", true),
        bind("/sys", "/sys", true),
        bind("/tmp", "/tmp", false),
    ];
    if let Some((host, inside)) = home {
        binds.push(Bind {
            source: host.to_path_buf(),
            target: inside.to_path_buf(),
            recursive: false,
            read_only: false,
            replace_symlink: false,
        });
    }
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        if Path::new(f).exists() {
            binds.push(Bind {
                source: f.into(),
                target: f.into(),
                recursive: false,
                read_only: true,
                replace_symlink: true,
            });
        }
    }
    binds
}

fn bind(s: &str, t: &str, recursive: bool) -> Bind {
    Bind {
        replace_symlink: false,
        source: s.into(),
        target: t.into(),
        recursive,
        read_only: false,
    }
}
