//! `lade run`: a container is just a process. lade enters a user and mount namespace,
//! assembles the image root, pivots into it and replaces itself with the user's command: no
//! daemon, no supervisor, no setuid helper (the model of Charliecloud's ch-run).

mod apptainer;
pub mod container_path;
mod file_root;
pub mod mountpoints;
pub mod namespace;
pub mod overlay;
pub mod plan;
pub mod process;
pub mod rootfs;

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::squashfs::serve::Metadata;
use crate::storage::Storage;
pub use plan::RunImage;
use process::UserChoices;
use rootfs::{Bind, MountPoints, RootParts, Upper};

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

/// Parses `-b SRC[:DST]`; DST defaults to SRC. DST is a path inside the container: absolute,
/// cleaned lexically, never above the root ([`container_path::clean`]).
pub fn parse_bind(arg: &str) -> Result<(PathBuf, PathBuf)> {
    let (src, dst) = match arg.split_once(':') {
        Some((s, d)) => (s, d),
        None => (arg, arg),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(Error::invalid(format!("-b {arg}"), "expected SRC[:DST]"));
    }
    if !Path::new(dst).is_absolute() {
        return Err(Error::invalid(
            format!("-b {arg}"),
            "DST must be an absolute path",
        ));
    }
    let dst = container_path::clean(Path::new(dst), &format!("-b {arg}"))?;
    let src = std::path::absolute(src).ctx(|| format!("-b {arg}"))?;
    Ok((src, dst))
}

/// Sets everything up and executes the command; returns only on error.
pub fn run(storage: &Storage, opts: &RunOptions) -> Result<Infallible> {
    // Everything that can fail for ordinary reasons is checked before entering namespaces,
    // so those errors read plainly.
    let plan = plan::resolve(storage, &opts.image)?;
    if plan.lowers.is_empty() && plan.file.is_none() {
        return Err(Error::invalid("lade run", "the image has no layers"));
    }
    // A file's config is inside it: its process is worked out once it is mounted.
    let mut spec = match plan.file {
        None => Some(process::process_spec(&plan.defaults, &opts.user)?),
        Some(_) => None,
    };
    let binds = binds(opts)?;
    // The container's own mounts go over the store's tmp/ directory, inside the new mount
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
    // A single-file image's mount points go in a tmpfs upper layer: its tree is not known
    // here.
    let read_only = matches!(opts.upper, Upper::Scratch { writable: false });
    let mount_points = if read_only && plan.file.is_none() {
        MountPoints::InLayers(mountpoints::layer_for(storage, &plan.lowers, &binds)?)
    } else {
        MountPoints::InUpper
    };
    let mut lowers = plan::within_layer_limit(storage, plan.lowers)?;

    namespace::enter(uid, gid)?;
    rootfs::make_mounts_private()?;
    // A single-file image is mounted inside the namespace, on the container's tmpfs; its
    // FUSE server lives as long as the container (see the fork before `pivot` below).
    let mut served = None;
    // An Apptainer image's command is its shell running lade's action script.
    let mut apptainer_image = None;
    if let Some(file) = &plan.file {
        rootfs::mount_scratch(&scratch)?;
        let at = scratch.join(SINGLE_FILE_ROOT);
        std::fs::create_dir(&at).ctx(|| at.display().to_string())?;
        let s = crate::squashfs::serve::serve(file, &at, uid, gid)?;
        spec = Some(match s.metadata() {
            Metadata::Lade(defaults) => process::process_spec(defaults, &opts.user)?,
            Metadata::None => process::process_spec(&Default::default(), &opts.user)?,
            Metadata::Apptainer => {
                apptainer_image = Some(file.path.as_path());
                apptainer::process_spec(&file.path, &opts.user)?
            }
        });
        lowers = vec![s.root().to_path_buf()];
        served = Some(s);
    }
    let parts = RootParts {
        scratch: &scratch,
        scratch_mounted: served.is_some(),
        lowers: &lowers,
        mount_points,
        upper: &opts.upper,
        binds: &binds,
    };
    // A single-file image's read-only root is its FUSE mount itself where the binds allow.
    let direct = match &served {
        Some(s) if read_only && opts.step_mounts.is_empty() => {
            file_root::assemble(s.root(), &scratch, &binds)?
        }
        _ => None,
    };
    let root = match direct {
        Some(root) => root,
        None => rootfs::assemble(&parts, || match &plan.flat_name {
            Some(name) => plan::flattened(storage, &lowers, name).map(Some),
            None => Ok(None),
        })?,
    };
    rootfs::mount_step_mounts(&root, &opts.step_mounts)?;
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
    if let Some(file) = apptainer_image {
        return Err(apptainer::shell_error(file, &err));
    }
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

/// Every bind of the run: the standard ones, then `-b`'s (whose sources must exist).
fn binds(opts: &RunOptions) -> Result<Vec<Bind>> {
    let home = home_bind(opts.no_home)?;
    // A build step: what it writes to /tmp belongs to the new layer, not to the host.
    let with_tmp = !matches!(opts.image, RunImage::Layers(_));
    let mut binds = rootfs::standard_binds(
        home.as_ref().map(|(h, i)| (h.as_path(), i.as_path())),
        with_tmp,
    );
    for (src, dst) in &opts.binds {
        let Ok(meta) = std::fs::metadata(src) else {
            return Err(Error::invalid(
                format!("-b {}", src.display()),
                "bind source does not exist",
            ));
        };
        binds.push(Bind {
            source: src.clone(),
            target: container_path::clean(dst, &format!("-b {}", src.display()))?,
            source_is_dir: meta.is_dir(),
            read_only: false,
            replace_symlink: false,
        });
    }
    Ok(binds)
}

/// The host home directory and where it appears inside (`/home/$USER`, as ch-run), when
/// there is one to bind.
fn home_bind(no_home: bool) -> Result<Option<(PathBuf, PathBuf)>> {
    if no_home {
        return Ok(None);
    }
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return Ok(None);
    };
    let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !home.is_dir() {
        return Ok(None);
    }
    // USER=.. must not put the home directory over /.
    let inside = container_path::clean(&Path::new("/home").join(&user), "$USER")?;
    if inside.parent() != Some(Path::new("/home")) {
        return Err(Error::invalid(
            format!("USER={user}"),
            "not a user name for /home/$USER (use --no-home)",
        ));
    }
    Ok(Some((home, inside)))
}
