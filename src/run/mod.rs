//! `lade run`: a container is just a process. lade enters a user and mount namespace,
//! assembles the image root, pivots into it and replaces itself with the user's command: no
//! daemon, no supervisor, no setuid helper (the model of Charliecloud's ch-run).

pub mod mountpoints;
pub mod namespace;
pub mod process;
pub mod rootfs;

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;
use crate::storage::{LayerStore, Storage};
use process::{ImageDefaults, UserChoices};
use rootfs::{Bind, Upper};

/// What to run.
#[derive(Debug, Clone)]
pub enum RunImage {
    Stored(Reference),
    /// An unpacked root filesystem directory (e.g. from `lade unpack`).
    Directory(PathBuf),
    /// Layer trees of the store by key, bottom first, with no image config (`lade build`'s
    /// intermediate states).
    Layers(Vec<String>),
    /// A single-file image, SquashFS or SIF: mounted with FUSE inside the namespace, it is
    /// the one lower layer, under a tmpfs upper layer ([`crate::squashfs::serve`]).
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub image: RunImage,
    pub user: UserChoices,
    /// `-b SRC[:DST]`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    pub upper: Upper,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub no_home: bool,
    /// `lade build`'s `RUN --mount`s (empty for `lade run`).
    pub step_mounts: Vec<rootfs::StepMount>,
}

/// Parses `-b SRC[:DST]`; DST defaults to SRC, and both must be absolute inside.
pub fn parse_bind(arg: &str) -> Result<(PathBuf, PathBuf)> {
    let (src, dst) = match arg.split_once(':') {
        Some((s, d)) => (s, d),
        None => (arg, arg),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(Error::invalid(format!("-b {arg}"), "expected SRC[:DST]"));
    }
    let dst = PathBuf::from(dst);
    if !dst.is_absolute() {
        return Err(Error::invalid(
            format!("-b {arg}"),
            "DST must be an absolute path",
        ));
    }
    let src = std::path::absolute(src).ctx(|| format!("-b {arg}"))?;
    Ok((src, dst))
}

/// Sets everything up and executes the command; returns only on error.
pub fn run(storage: &Storage, opts: &RunOptions) -> Result<Infallible> {
    // Everything that can fail for ordinary reasons is checked before entering namespaces,
    // so those errors read plainly.
    let mut image_file = None;
    let (defaults, lower_base, mut lowers, manifest_hex) = match &opts.image {
        RunImage::Stored(name) => {
            let record = storage.images().require(name)?;
            let config_bytes = storage.blobs().read_to_vec_trusted(&record.config)?;
            let config = crate::manifest::parse_config(
                &config_bytes,
                &format!("config of {}", name.familiar()),
            )?;
            let layers = storage.layers();
            let mut lowers = Vec::with_capacity(record.layers.len());
            for l in record.layers.iter().rev() {
                if !layers.has(&l.tree) {
                    return Err(Error::invalid(
                        format!("image {}", name.familiar()),
                        format!("layer tree {} is missing; pull the image again", l.tree),
                    ));
                }
                lowers.push(LayerStore::relative_tree(&l.tree));
            }
            (
                ImageDefaults::from_config(&config),
                layers.base().to_path_buf(),
                lowers,
                Some(record.manifest.hex().to_string()),
            )
        }
        RunImage::Layers(keys) => {
            let layers = storage.layers();
            let mut lowers = Vec::with_capacity(keys.len());
            for k in keys.iter().rev() {
                if !layers.has(k) {
                    return Err(Error::invalid(
                        "build state",
                        format!("layer tree {k} is missing"),
                    ));
                }
                lowers.push(LayerStore::relative_tree(k));
            }
            (
                ImageDefaults::default(),
                layers.base().to_path_buf(),
                lowers,
                None,
            )
        }
        RunImage::File(path) => {
            image_file = Some(crate::squashfs::ImageFile::open(path)?);
            // Its root, config and mount points are known once it is mounted.
            let root = storage.shared_tmp().join(SINGLE_FILE_ROOT);
            (
                ImageDefaults::default(),
                PathBuf::from("/"),
                vec![root.display().to_string()],
                None,
            )
        }
        RunImage::Directory(dir) => {
            let dir = std::path::absolute(dir).ctx(|| dir.display().to_string())?;
            if !dir.is_dir() {
                return Err(Error::ImageNotFound(format!(
                    "{}: not a directory",
                    dir.display()
                )));
            }
            (
                ImageDefaults::default(),
                PathBuf::from("/"),
                vec![dir.display().to_string()],
                None,
            )
        }
    };
    if lowers.is_empty() {
        return Err(Error::invalid("lade run", "the image has no layers"));
    }
    // A file's config is inside it: its process is worked out once it is mounted.
    let mut spec = match image_file {
        None => Some(process::process_spec(&defaults, &opts.user)?),
        Some(_) => None,
    };
    let mut binds = rootfs::standard_binds(
        home_bind(opts.no_home)
            .as_ref()
            .map(|(h, i)| (h.as_path(), i.as_path())),
    );
    if matches!(opts.image, RunImage::Layers(_)) {
        // A build step: what it writes to /tmp belongs to the new layer, not to the host.
        binds.retain(|b| b.target != Path::new("/tmp"));
    }
    for (src, dst) in &opts.binds {
        if !src.exists() {
            return Err(Error::invalid(
                format!("-b {}", src.display()),
                "bind source does not exist",
            ));
        }
        binds.push(Bind {
            source: src.clone(),
            target: dst.clone(),
            recursive: true,
            read_only: false,
            replace_symlink: false,
        });
    }
    // The container's own tmpfs goes over the store's tmp/ directory, inside the new mount
    // namespace only: it always exists, nothing is created or left behind on the host, and
    // other processes' work areas there are untouched (they are merely hidden from us).
    let scratch = storage.shared_tmp();

    let uid = opts
        .uid
        .unwrap_or_else(|| rustix::process::getuid().as_raw());
    let gid = opts
        .gid
        .unwrap_or_else(|| rustix::process::getgid().as_raw());
    // The default read-only root needs no writable layer: the mount points the image lacks
    // come from a small extra lower layer, found or made here on the host (mountpoints.rs).
    let read_only = matches!(opts.upper, Upper::Scratch { writable: false });
    let mount_point_layer = if read_only && image_file.is_none() {
        let trees: Vec<PathBuf> = lowers.iter().map(|l| lower_base.join(l)).collect();
        let mut source_is_dir = Vec::with_capacity(binds.len());
        for b in &binds {
            let meta = std::fs::metadata(&b.source)
                .map_err(|e| Error::io(format!("bind source {}", b.source.display()), e))?;
            source_is_dir.push(meta.is_dir());
        }
        Some(mountpoints::layer_for(
            storage,
            &trees,
            &binds,
            &source_is_dir,
        )?)
    } else {
        None
    };

    namespace::enter(uid, gid)?;
    rootfs::make_mounts_private()?;
    // A single-file image is mounted inside the namespace, on the container's tmpfs; its
    // FUSE server lives as long as the container (see the fork before `pivot` below).
    let mut served = None;
    if let Some(file) = &image_file {
        rootfs::mount_scratch(&scratch)?;
        let at = scratch.join(SINGLE_FILE_ROOT);
        std::fs::create_dir(&at).ctx(|| at.display().to_string())?;
        let s = crate::squashfs::serve::serve(file, &at, uid, gid)?;
        spec = Some(process::process_spec(s.defaults(), &opts.user)?);
        lowers = vec![s.root().display().to_string()];
        served = Some(s);
    }
    let fast_root = match &mount_point_layer {
        Some(extra) => {
            let mut all: Vec<String> = extra.iter().map(|p| p.display().to_string()).collect();
            all.extend(lowers.iter().cloned());
            rootfs::mount_overlay_read_only(&scratch, &lower_base, &all)
                .ok()
                .map(|()| scratch.clone())
        }
        None => None,
    };
    let (root, kind) = match fast_root {
        Some(root) => (root, RootKind::LowersOnly),
        None => {
            if served.is_none() {
                rootfs::mount_scratch(&scratch)?;
            }
            match rootfs::mount_overlay(&scratch, &lower_base, &lowers, &opts.upper) {
                Ok(root) => (root, RootKind::Overlay),
                Err(overlay_err) => {
                    // Without overlayfs: a flattened copy of the image, made once and kept.
                    if !read_only {
                        return Err(overlay_err);
                    }
                    let Some(hex) = &manifest_hex else {
                        return Err(overlay_err);
                    };
                    eprintln!("lade: warning: {overlay_err}; using a flattened copy of the image");
                    let flat = flattened_tree(storage, &lower_base, &lowers, hex)?;
                    (rootfs::mount_flat(&scratch, &flat)?, RootKind::Flat)
                }
            }
        }
    };
    match kind {
        RootKind::LowersOnly => rootfs::bind_prepared(&root, &binds)?,
        RootKind::Overlay => rootfs::bind_all(&root, &binds, true)?,
        RootKind::Flat => rootfs::bind_all(&root, &binds, false)?,
    }
    rootfs::mount_step_mounts(&root, &opts.step_mounts)?;
    // An overlay without an upper layer is read-only already.
    if read_only && kind != RootKind::LowersOnly {
        rootfs::make_read_only(&root)?;
    }
    let spec = spec.ok_or_else(|| Error::invalid("lade run", "no process worked out"))?;
    if let Some(s) = &mut served {
        // Only the child returns, to become the container.
        crate::squashfs::supervise::fork_container(s)?;
    }
    rootfs::pivot(&root)?;
    std::env::set_current_dir(&spec.cwd)
        .map_err(|e| Error::io(format!("working directory {} in the image", spec.cwd), e))?;
    let err = std::process::Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .exec();
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    Err(if err.kind() == std::io::ErrorKind::NotFound {
        Error::invalid(
            format!("command '{}'", spec.argv[0]),
            format!("not found in the image (PATH={path})"),
        )
    } else {
        Error::io(format!("executing '{}' in the image", spec.argv[0]), err)
    })
}

/// Where a single-file image is mounted, on the container's tmpfs.
const SINGLE_FILE_ROOT: &str = "image";

/// How the container's root was assembled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RootKind {
    /// Overlay of lower layers only, mount points from the mount-point layer.
    LowersOnly,
    /// Overlay with a tmpfs or `--write=DIR` upper layer.
    Overlay,
    /// The flattened copy kept on disk (no overlayfs).
    Flat,
}

/// The host home directory and where it appears inside (`/home/$USER`, as ch-run).
fn home_bind(no_home: bool) -> Option<(PathBuf, PathBuf)> {
    if no_home {
        return None;
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && !u.contains('/'))?;
    home.is_dir()
        .then(|| (home, PathBuf::from("/home").join(user)))
}

/// The image flattened once and kept in the store (made beside its final place, not in
/// tmp/: that is the container's tmpfs by now).
fn flattened_tree(storage: &Storage, base: &Path, lowers: &[String], hex: &str) -> Result<PathBuf> {
    storage.flat().get_or_make(hex, |staging| {
        let trees: Vec<PathBuf> = lowers.iter().rev().map(|l| base.join(l)).collect();
        let refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
        crate::unpack::flatten_trees(&refs, staging)
    })
}
