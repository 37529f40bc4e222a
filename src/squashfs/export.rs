//! An image written as one SquashFS file (`lade copy SRC squashfs:FILE`), without writing
//! the flattened image out as a directory first.
//!
//! The store already holds the image's layers unpacked, one tree per layer in overlayfs
//! format. lade stacks them with overlayfs, read-only, in a user and mount namespace of a
//! child process (lade's user is root there, so every file reads as root's and none is
//! unreadable), and points `mksquashfs` at the merged tree: overlayfs applies the whiteouts
//! and opaque directories, keeps a layer's hard links as one inode and shows the layers'
//! `user.*` xattrs (its own `user.overlay.*` it hides). Two tiny extra layers go around the
//! image: below it, the mount points `lade run` and `ch-run` bind onto (a lower layer adds
//! only what the image lacks, and an image's own entry, even a symbolic link, wins, as
//! `ch-convert` wants); above it, `/ch/` with the image config ([`super::CONFIG_PATH`]).
//!
//! Determinism: the layer trees carry the image's times and modes, the extra layers fixed
//! ones (time 0), `mksquashfs` sorts every directory and is reproducible by default, and the
//! filesystem's own time is fixed with `-mkfs-time 0` (and `SOURCE_DATE_EPOCH` removed, which
//! would otherwise rewrite every file's time). `-all-root` makes every file root's; modes,
//! setuid and setgid bits are kept as the trees have them (the trees add `u+rw`/`u+rwx`,
//! which changes nothing for root).
//!
//! Why `mksquashfs` (squashfs-tools 4.5, Debian bookworm's) and not a crate: of the Rust
//! SquashFS writers, `backhand` writes neither xattrs nor hard links and `squashfs-ng` no
//! hard links, and both want the whole tree described in memory. Why zstd at level 3, 64 KiB
//! blocks: measured on the Debian test image (206 MB, 6,754 files, 2 cores), mksquashfs took
//! 60 s with its default gzip (level 9, what `ch-convert` uses) and 3.0 s with zstd level 3
//! for a file 2% larger (93.4 MB against 91.7 MB); zstd's default level 15 took 122 s. zstd
//! SquashFS needs Linux 4.14 or a squashfuse built with zstd (Debian's, Ubuntu's, EPEL's).
//! 64 KiB blocks, as `ch-convert`: less to decompress for each small read through FUSE.
//!
//! Limits: squashfs-tools 4.5 cannot choose which xattrs to store (4.6's `-xattrs-include`
//! can), so xattrs the host's filesystem itself puts on the layer trees (SELinux labels on
//! an SELinux host) go into the file too; the layer trees hold only `user.*` ones otherwise.
//! A hard link from one layer to a file of a lower one is a copy in the store's trees (see
//! `crate::unpack::resolve_external_hardlinks`), and so in the file, as in `lade unpack`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
};

use super::{CONFIG_PATH, ENVIRONMENT_PATH};
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::storage::Storage;

/// Directories `lade run` and `ch-run` bind onto, or that `ch-run` expects (`ch-convert`'s
/// list, with lade's `/sys`, `/tmp` and `/home`).
const MOUNT_POINT_DIRS: &[&str] = &[
    "bin", "dev", "etc", "home", "mnt", "mnt/0", "mnt/1", "mnt/2", "mnt/3", "mnt/4", "mnt/5",
    "mnt/6", "mnt/7", "mnt/8", "mnt/9", "proc", "sys", "tmp", "usr",
];
/// Files bound over with the host's.
const MOUNT_POINT_FILES: &[&str] = &["etc/hosts", "etc/resolv.conf"];

/// What to write: the image's layer trees in the store (keys, bottom first) and its config.
pub struct Export<'a> {
    pub trees: &'a [String],
    pub config: &'a [u8],
    /// The config's `Env`, for the `ch-run` environment file.
    pub env: &'a [String],
}

/// Writes `image` as a SquashFS file at `dest`, which appears only once complete.
pub fn write_image(
    storage: &Storage,
    image: &Export<'_>,
    dest: &Path,
    progress: &Progress,
) -> Result<()> {
    let what = dest.display().to_string();
    let mksquashfs = super::find_program("mksquashfs", "squashfs-tools")?;
    let layers = storage.layers();
    for key in image.trees {
        if !layers.has(key) {
            return Err(Error::invalid(
                &what,
                format!("layer tree {key} is missing from the store"),
            ));
        }
    }
    let work = TempDir::create(storage.scratch_path("squashfs"))?;
    let below = work.0.join("mount-points");
    let above = work.0.join("config");
    let merged = work.0.join("root");
    make_mount_point_layer(&below)?;
    make_config_layer(&above, image)?;
    fs::create_dir(&merged).at(&merged)?;

    // Top-most first, as overlayfs lists lower layers.
    let mut lowers = vec![above];
    lowers.extend(layers.stack(image.trees.iter().map(String::as_str)));
    lowers.push(below);
    let relative_to = PathBuf::from(storage.location_arg());
    let setup = NamespaceSetup::new(&lowers, &relative_to, &merged)?;

    let partial = partial_path(dest)?;
    crate::fsutil::remove_file_if_exists(&partial)?;
    progress.note(&format!("writing {what} with {}", mksquashfs.display()));
    let mut command = Command::new(&mksquashfs);
    command
        .arg(&merged)
        .arg(&partial)
        .args(["-noappend", "-all-root", "-mkfs-time", "0"])
        .args(["-comp", "zstd", "-Xcompression-level", "3", "-b", "65536"])
        .args(["-quiet", "-no-progress"])
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec; it makes only system calls
    // with data prepared beforehand (no allocation, no locks), as a child of a
    // multithreaded process must.
    unsafe {
        command.pre_exec(move || setup.enter());
    }
    let output = command.output().map_err(|e| {
        let _ = fs::remove_file(&partial);
        Error::io(
            format!(
                "{what}: stacking the image's layers in a user namespace for mksquashfs \
                 (needs unprivileged user namespaces and overlayfs, Linux 5.11+)"
            ),
            e,
        )
    })?;
    if !output.status.success() {
        let _ = fs::remove_file(&partial);
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(Error::invalid(
            &what,
            format!("mksquashfs failed ({}): {said}", output.status),
        ));
    }
    let finish = || -> Result<()> {
        fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .at(&partial)?;
        fs::rename(&partial, dest).at(dest)
    };
    finish().inspect_err(|_| {
        let _ = fs::remove_file(&partial);
    })
}

/// A hidden sibling of `dest`, renamed onto it when complete.
fn partial_path(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::invalid(dest.display().to_string(), "not a file name"))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(parent.join(format!(
        ".{}.lade-partial.{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn make_mount_point_layer(dir: &Path) -> Result<()> {
    let mut made = vec![];
    for d in std::iter::once("").chain(MOUNT_POINT_DIRS.iter().copied()) {
        let path = dir.join(d);
        fs::create_dir(&path).at(&path)?;
        let mode = if d == "tmp" { 0o1777 } else { 0o755 };
        made.push((path, mode));
    }
    for f in MOUNT_POINT_FILES {
        let path = dir.join(f);
        fs::write(&path, b"").at(&path)?;
        made.push((path, 0o644));
    }
    settle(made)
}

fn make_config_layer(dir: &Path, image: &Export<'_>) -> Result<()> {
    let ch = dir.join(CONFIG_PATH);
    let ch = ch.parent().unwrap_or(dir);
    fs::create_dir_all(ch).at(ch)?;
    let config = dir.join(CONFIG_PATH);
    fs::write(&config, image.config).at(&config)?;
    let environment = dir.join(ENVIRONMENT_PATH);
    let lines: String = image.env.iter().map(|e| format!("{e}\n")).collect();
    fs::write(&environment, lines).at(&environment)?;
    settle(vec![
        (dir.to_path_buf(), 0o755),
        (ch.to_path_buf(), 0o755),
        (config, 0o644),
        (environment, 0o644),
    ])
}

/// Fixed modes (whatever the umask) and time 0 for what lade adds, deepest paths first so
/// that setting a child's time does not change its directory's again.
fn settle(mut entries: Vec<(PathBuf, u32)>) -> Result<()> {
    entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    let epoch = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    for (path, mode) in entries {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at(&path)?;
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &epoch,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io(format!("{}: setting its time", path.display()), e.into()))?;
    }
    Ok(())
}

/// A work directory removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: PathBuf) -> Result<TempDir> {
        fs::create_dir_all(&path).at(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = crate::fsutil::remove_all(&self.0);
    }
}

/// Everything the child needs to enter its namespaces and mount the overlay, prepared in
/// the parent so that the child allocates nothing.
struct NamespaceSetup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// For the new mount API (Linux 6.8+): one absolute path per lower layer, top-most first.
    lowers: Vec<CString>,
    /// For `mount(2)` on older kernels: where to change directory, and the option string
    /// with the paths relative to it (the options must fit in one page).
    legacy_dir: CString,
    legacy_options: Option<CString>,
    target: CString,
}

impl NamespaceSetup {
    fn new(lowers: &[PathBuf], relative_to: &Path, target: &Path) -> Result<NamespaceSetup> {
        let cstring = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| Error::invalid(p.display().to_string(), "NUL in path"))
        };
        let mut relative = Vec::with_capacity(lowers.len());
        for l in lowers {
            let r = l.strip_prefix(relative_to).unwrap_or(l);
            let bytes = r.as_os_str().as_bytes();
            // Characters the option string cannot hold unescaped.
            if bytes.iter().any(|b| b":,\\".contains(b)) {
                relative.clear();
                break;
            }
            relative.push(r.display().to_string());
        }
        let legacy = format!("lowerdir={},userxattr", relative.join(":"));
        let legacy_options = (relative.len() == lowers.len() && legacy.len() < 4096)
            .then(|| CString::new(legacy).ok())
            .flatten();
        Ok(NamespaceSetup {
            uid_map: format!("0 {} 1\n", rustix::process::getuid().as_raw()).into_bytes(),
            gid_map: format!("0 {} 1\n", rustix::process::getgid().as_raw()).into_bytes(),
            lowers: lowers.iter().map(|l| cstring(l)).collect::<Result<_>>()?,
            legacy_dir: cstring(relative_to)?,
            legacy_options,
            target: cstring(target)?,
        })
    }

    /// In the child: a user namespace in which the user is root, a private mount namespace,
    /// the read-only overlay at the target.
    fn enter(&self) -> io::Result<()> {
        // SAFETY: the child has a single thread (the fork's), which CLONE_NEWUSER requires.
        unsafe {
            rustix::thread::unshare_unsafe(
                rustix::thread::UnshareFlags::NEWUSER | rustix::thread::UnshareFlags::NEWNS,
            )?;
        }
        write_proc(c"/proc/self/setgroups", b"deny")?;
        write_proc(c"/proc/self/uid_map", &self.uid_map)?;
        write_proc(c"/proc/self/gid_map", &self.gid_map)?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        if self.mount_with_new_api().is_ok() {
            return Ok(());
        }
        let Some(options) = &self.legacy_options else {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        };
        rustix::process::chdir(self.legacy_dir.as_c_str())?;
        rustix::mount::mount(
            c"overlay",
            self.target.as_c_str(),
            c"overlay",
            MountFlags::RDONLY,
            Some(options.as_c_str()),
        )?;
        Ok(())
    }

    /// `fsopen` + one `lowerdir+` per layer: no limit on the number of layers but
    /// overlayfs's own.
    fn mount_with_new_api(&self) -> io::Result<()> {
        let fs = rustix::mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in &self.lowers {
            rustix::mount::fsconfig_set_string(&fs, c"lowerdir+", l.as_c_str())?;
        }
        rustix::mount::fsconfig_set_flag(&fs, c"userxattr")?;
        rustix::mount::fsconfig_create(&fs)?;
        let mnt = rustix::mount::fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_RDONLY,
        )?;
        rustix::mount::move_mount(
            &mnt,
            c"",
            rustix::fs::CWD,
            self.target.as_c_str(),
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?;
        Ok(())
    }
}

fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let n = rustix::io::write(&fd, bytes)?;
    if n != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}
