//! Assembling the container's root filesystem inside the new mount namespace and switching
//! to it: overlayfs over the image's layer trees (or a bind of a flattened tree), host
//! directories bound in, then `pivot_root`.
//!
//! Every bind is recursive (`MS_REC`), as ch-run's are: on cluster hosts /tmp holds a job's
//! scratch tmpfs and the home directory automounted or NFS file systems, and in a user
//! namespace such submounts are locked to the tree above them, so binding the tree alone
//! fails (EINVAL).

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{
    MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind_recursive, mount_change,
    mount_remount, unmount,
};

use super::container_path;
use super::overlay::{self, Overlay};
use crate::error::{Error, IoContext, Result};

/// A host path to bind into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Where inside; absolute and clean ([`container_path::clean`]).
    pub target: PathBuf,
    /// What the source is (looked at once, before entering the namespaces): the mount point
    /// made for it is a directory or an empty file.
    pub source_is_dir: bool,
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
                    source_is_dir: meta.is_dir(),
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

/// What the root is made of; all host paths, decided before entering the namespaces.
pub struct RootParts<'a> {
    /// An empty directory to build the root on (the store's tmp/, hidden by our mounts).
    pub scratch: &'a Path,
    /// The scratch tmpfs is mounted already (a single-file image is served from it).
    pub scratch_mounted: bool,
    /// The image's directories, top-most first.
    pub lowers: &'a [PathBuf],
    pub mount_points: MountPoints,
    pub upper: &'a Upper,
    pub binds: &'a [Bind],
}

/// Where the binds' mount points come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPoints {
    /// The lower layers have them all (the default read-only root): the image itself, or with
    /// the mount-point layer given here on top (`mountpoints.rs`).
    InLayers(Option<PathBuf>),
    /// Made as needed in the writable upper layer.
    InUpper,
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

/// Builds the root and returns where it is mounted. `flat` gives the image flattened into
/// one directory, for a read-only root when overlayfs cannot be mounted (`None`: no such copy
/// for this kind of image).
pub fn assemble(
    parts: &RootParts,
    flat: impl FnOnce() -> Result<Option<PathBuf>>,
) -> Result<PathBuf> {
    // The default read-only root: an overlay of lower layers only, mounted on the scratch
    // directory itself; with the mount-point layer every bind target exists in it already.
    if let MountPoints::InLayers(layer) = &parts.mount_points {
        let mut lowers = Vec::with_capacity(parts.lowers.len() + 1);
        lowers.extend(layer.iter().cloned());
        lowers.extend(parts.lowers.iter().cloned());
        let o = Overlay {
            lowers: &lowers,
            upper: None,
        };
        if overlay::mount_at(parts.scratch, &o).is_ok() {
            bind_prepared(parts.scratch, parts.binds)?;
            return Ok(parts.scratch.to_path_buf());
        }
    }
    // Otherwise a tmpfs on the scratch directory for an upper layer and the root's mount
    // point, or --write's directory as the upper layer.
    if !parts.scratch_mounted {
        mount_scratch(parts.scratch)?;
    }
    let root = parts.scratch.join("root");
    let (upper, work) = match parts.upper {
        Upper::Scratch { .. } => (parts.scratch.join("upper"), parts.scratch.join("work")),
        Upper::Keep(dir) => {
            for d in ["upper", "work"] {
                fs::create_dir_all(dir.join(d)).at(&dir.join(d))?;
            }
            (dir.join("upper"), dir.join("work"))
        }
    };
    let read_only = matches!(parts.upper, Upper::Scratch { writable: false });
    let o = Overlay {
        lowers: parts.lowers,
        upper: Some((&upper, &work)),
    };
    match overlay::mount_at(&root, &o) {
        Ok(()) => bind_all(&root, parts.binds, true)?,
        Err(overlay_err) => {
            // Without overlayfs: a flattened copy of the image, made once and kept.
            let tree = match flat() {
                Ok(Some(tree)) if read_only => tree,
                _ => return Err(overlay_err),
            };
            eprintln!("lade: warning: {overlay_err}; using a flattened copy of the image");
            mount_bind_recursive(&tree, &root)
                .map_err(|e| mnt_err(format!("binding {}", tree.display()), e))?;
            bind_all(&root, parts.binds, false)?;
        }
    }
    if read_only {
        make_read_only(&root)?;
    }
    Ok(root)
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

/// Creates `target` (a directory, or an empty file when the source is a file) inside the new
/// root if missing. The root's upper layer is scratch, so this never touches the image.
fn ensure_mount_point(
    root: &Path,
    target: &Path,
    source_is_dir: bool,
    replace_symlink: bool,
) -> Result<PathBuf> {
    let rel = container_path::relative(target)?;
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
fn bind_all(root: &Path, binds: &[Bind], root_is_scratch: bool) -> Result<()> {
    for b in binds {
        let replace = b.replace_symlink && root_is_scratch;
        let target = ensure_mount_point(root, &b.target, b.source_is_dir, replace)?;
        bind_one(b, &target)?;
    }
    Ok(())
}

/// Binds `b` at `target` with everything mounted below its source, read-only if asked.
fn bind_one(b: &Bind, target: &Path) -> Result<()> {
    mount_bind_recursive(&b.source, target).map_err(|e| {
        mnt_err(
            format!("binding {} to {}", b.source.display(), b.target.display()),
            e,
        )
    })?;
    if b.read_only {
        read_only_recursive(target)
            .map_err(|e| mnt_err(format!("making {} read-only", b.target.display()), e))?;
    }
    Ok(())
}

/// Makes the mount at `target` and every mount below it read-only: `mount_setattr` with
/// `AT_RECURSIVE` (Linux 5.12; rustix does not wrap it), else a remount of the top one, all
/// older kernels can do.
fn read_only_recursive(target: &Path) -> std::result::Result<(), rustix::io::Errno> {
    let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| rustix::io::Errno::INVAL)?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `path` (NUL-terminated) and `attr` (of the size given),
    // both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    match rustix::io::Errno::from_io_error(&std::io::Error::last_os_error()) {
        Some(rustix::io::Errno::NOSYS) => {
            mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"")
        }
        Some(e) => Err(e),
        None => Err(rustix::io::Errno::INVAL),
    }
}

/// Binds onto mount points known to exist (the read-only root with its mount-point layer,
/// checked on the host before, or a single-file image's, checked by `file_root`): no
/// lookups through the overlay, which cost more than the mounts themselves.
pub(super) fn bind_prepared(root: &Path, binds: &[Bind]) -> Result<()> {
    for b in binds {
        bind_one(b, &root.join(container_path::relative(&b.target)?))?;
    }
    Ok(())
}

fn make_read_only(root: &Path) -> Result<()> {
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

/// The directories every container gets, like ch-run: host /dev, /proc and /sys (binds, since
/// an unprivileged namespace cannot mount a new /proc without a PID namespace), /tmp unless
/// `with_tmp` is false, the user's home (a directory) unless `--no-home`, and the host's name
/// resolution files where the host has them.
pub fn standard_binds(home: Option<(&Path, &Path)>, with_tmp: bool) -> Vec<Bind> {
    let dir = |source: &Path, target: &Path| Bind {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        source_is_dir: true,
        read_only: false,
        replace_symlink: false,
    };
    let mut binds: Vec<Bind> = ["/dev", "/proc", "/sys"]
        .into_iter()
        .chain(with_tmp.then_some("/tmp"))
        .map(|d| dir(Path::new(d), Path::new(d)))
        .collect();
    binds.extend(home.map(|(host, inside)| dir(host, inside)));
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        if let Ok(meta) = fs::metadata(f) {
            binds.push(Bind {
                source: f.into(),
                target: f.into(),
                source_is_dir: meta.is_dir(),
                read_only: true,
                replace_symlink: true,
            });
        }
    }
    binds
}
