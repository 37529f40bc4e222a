//! Serving a single-file image with FUSE, inside lade's own user namespace, with no setuid
//! helper (Linux 4.18+ lets a user namespace's root mount FUSE; `/dev/fuse` must be
//! readable and writable by the user, as most distributions ship it).
//!
//! lade mounts the FUSE filesystem itself (`mount(2)` with an open `/dev/fuse`), then starts
//! Debian's `squashfuse` on that descriptor (`/dev/fd/N` as its mount point, which libfuse
//! 3.3+ takes to mean "already mounted, serve this"), so that the mount exists before the
//! server runs and nothing has to poll for it; the first access simply waits for the server.
//! The server is lade's child, out of the terminal's process group (Ctrl-C is the
//! container's to handle), and dies with lade (`PR_SET_PDEATHSIG`); the mount lives in the
//! container's private mount namespace and dies with it. See [`super::supervise`] for the
//! other half: lade stays the server's parent until the container ends.
//!
//! `-o kernel_cache`: the file does not change while it is served, so the page cache may
//! keep what was read; measured, it made exec'ing busybox from the file 2.4x faster (28 ms
//! to 12 ms).
//!
//! Why an external server and not a FUSE server inside lade: `squashfuse` is the reader
//! ch-run links as a library and is packaged everywhere, while no maintained Rust crate
//! reads SquashFS with its xattrs, hard links and every compressor. Starting it is the one
//! cost ch-run does not have (it forks its server, already linked): on the 2-core test
//! machine a dynamically linked program takes 1.1 ms to start (`/bin/true`) and
//! `squashfuse` 1.4 ms, and the first answer comes about 1.6 ms after the spawn. Measured
//! whole on the Debian file (2026-12-08, `bench/cluster.sh`: 100 rounds interleaved with
//! ch-run, 20 ms apart), `lade run FILE -- /bin/true` takes 0.93-0.96x ch-run's time, by
//! medians and by means (it took 1.08x before): what the start costs is won back by binding
//! straight onto the FUSE mount ([`crate::run`]'s `file_root`: 68 FUSE requests through a
//! whole-image overlay became about 50; ch-run sends 40), by leaving the mount namespace's
//! teardown to the server ([`super::supervise`]) and by lade's own faster start. Linking
//! libsquashfuse as ch-run does is what would remove the rest.
//!
//! The high-level `squashfuse` rather than the low-level `squashfuse_ll` (faster per
//! request: a warm `chroot MOUNT /bin/true` takes 2.4 ms on it against 2.9 ms), because
//! only it can show the files as owned by the container's user (`-o uid=,gid=`, libfuse's
//! high-level option; `squashfuse_ll` 0.1.105 has no such option), as a stored image's
//! are: a SquashFS file is all root's, and the image's `0700` directories (Debian's
//! `/root`) would be shown as the overflow user's and, through the `--write` overlay,
//! closed to any other user inside.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, mount};

use super::{APPTAINER_METADATA_DIR, CONFIG_PATH, ImageFile};
use crate::error::{Error, Result};
use crate::run::process::ImageDefaults;

/// The descriptor number the server finds `/dev/fuse` at.
const SERVER_FUSE_FD: i32 = 3;

/// A single-file image being served at a directory. Dropping it stops the server (a run
/// that failed before its container started); [`super::supervise::fork_container`] takes
/// it over otherwise.
pub struct Served {
    root: PathBuf,
    server: Option<Child>,
    metadata: Metadata,
    file: PathBuf,
}

/// What the file says about running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// lade's export: the image config in [`CONFIG_PATH`].
    Lade(ImageDefaults),
    /// No lade config, but Apptainer's (and Singularity's) `/.singularity.d/`: its
    /// environment scripts and runscript say how to run it ([`crate::run`]'s `apptainer`).
    Apptainer,
    /// Neither (a plain `mksquashfs` of a directory).
    None,
}

impl Served {
    /// Where the image's root directory is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the file holds that says how to run it: lade's image config (Env, Entrypoint,
    /// Cmd and WorkingDir), Apptainer's metadata directory, or neither.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub(super) fn file(&self) -> &Path {
        &self.file
    }

    /// The server's process ID, handed over to the supervisor, which from then on is the one
    /// to stop it.
    pub(super) fn take_server(&mut self) -> Option<Child> {
        self.server.take()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Mounts `file` at `at` (an existing, empty directory in the current mount namespace, which
/// should be private and owned by a user namespace lade made) for `uid`/`gid`, the IDs the
/// container runs as inside, and starts its server.
pub fn serve(file: &ImageFile, at: &Path, uid: u32, gid: u32) -> Result<Served> {
    let what = file.path.display().to_string();
    let program = super::find_program("squashfuse", "squashfuse")?;
    let fuse = open_dev_fuse()?;
    let options = CString::new(format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid}",
        fuse.as_raw_fd()
    ))
    .map_err(|_| Error::invalid(&what, "NUL in mount options"))?;
    mount(
        file.path.as_path(),
        at,
        "fuse.squashfuse",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        Some(options.as_c_str()),
    )
    .map_err(|e| {
        Error::unsupported(
            "FUSE",
            format!(
                "mounting {what} failed: {e} (FUSE in a user namespace needs Linux 4.18 or later)"
            ),
        )
    })?;
    // The file never changes while it is served: the page cache may keep what it read.
    let mut server_options = format!("kernel_cache,uid={uid},gid={gid}");
    if file.offset != 0 {
        server_options.push_str(&format!(",offset={}", file.offset));
    }
    let mut command = Command::new(&program);
    command
        .arg("-f")
        .arg("-o")
        .arg(&server_options)
        .arg(&file.path)
        .arg(format!("/dev/fd/{SERVER_FUSE_FD}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let fuse_fd = fuse.as_raw_fd();
    let parent = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || server_pre_exec(fuse_fd, parent));
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::io(format!("starting {} for {what}", program.display()), e))?;
    drop(fuse);
    let mut served = Served {
        root: at.to_path_buf(),
        server: None,
        metadata: Metadata::None,
        file: file.path.clone(),
    };
    // The first access waits for the server to answer; it fails once the server has exited
    // without serving (a corrupt file, an unsupported compressor).
    if let Err(e) = std::fs::metadata(at) {
        let _ = child.kill();
        let mut said = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut said);
        }
        let _ = child.wait();
        let said = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string());
        return Err(Error::invalid(
            &what,
            format!("squashfuse could not serve it: {said}"),
        ));
    }
    // What the server says from now on goes nowhere: its errors reach the container as EIO.
    drop(child.stderr.take());
    served.server = Some(child);
    served.metadata = read_metadata(at, &what)?;
    Ok(served)
}

fn open_dev_fuse() -> Result<OwnedFd> {
    rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        let why = match e {
            rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => format!(
                "cannot open /dev/fuse: {e}; running SquashFS and SIF files needs it readable \
                 and writable by every user (mode 0666, as most distributions ship it; an \
                 administrator can run 'chmod 0666 /dev/fuse')"
            ),
            rustix::io::Errno::NOENT | rustix::io::Errno::NODEV | rustix::io::Errno::NXIO => {
                format!("cannot open /dev/fuse: {e} (is the fuse kernel module loaded?)")
            }
            _ => format!("cannot open /dev/fuse: {e}"),
        };
        Error::unsupported("FUSE", why)
    })
}

/// In the server's process, before exec: `/dev/fuse` at a known descriptor, out of the
/// terminal's process group, killed when lade dies.
fn server_pre_exec(fuse_fd: i32, parent: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers; no memory is shared or allocated.
    unsafe {
        if fuse_fd == SERVER_FUSE_FD {
            let flags = libc::fcntl(fuse_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fuse_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(fuse_fd, SERVER_FUSE_FD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setpgid(0, 0) < 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // lade died before the line above: nobody would stop this server.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    Ok(())
}

/// The config lade's export put in the file, if it is there; else whether Apptainer's
/// metadata directory is (a real directory at the root: a symbolic link there would be
/// followed on the host, not in the image).
fn read_metadata(root: &Path, what: &str) -> Result<Metadata> {
    let path = root.join(CONFIG_PATH);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let apptainer = std::fs::symlink_metadata(root.join(APPTAINER_METADATA_DIR))
                .is_ok_and(|m| m.is_dir());
            return Ok(if apptainer {
                Metadata::Apptainer
            } else {
                Metadata::None
            });
        }
        Err(e) => {
            return Err(Error::io(format!("{what}: reading /{CONFIG_PATH}"), e));
        }
    };
    let config = crate::manifest::parse_config(&bytes, &format!("{what}: /{CONFIG_PATH}"))?;
    Ok(Metadata::Lade(ImageDefaults::from_config(&config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lade_config_wins_then_apptainer_metadata() {
        let of = |root: &Path| read_metadata(root, "f").unwrap();
        let (root, no_metadata) = (tempfile::tempdir().unwrap(), Metadata::None);
        let r = root.path();
        let apptainer_dir = r.join(APPTAINER_METADATA_DIR);
        assert_eq!(of(r), no_metadata);
        // A symbolic link would be followed on the host: not Apptainer's directory.
        std::os::unix::fs::symlink("/", &apptainer_dir).unwrap();
        assert_eq!(of(r), no_metadata);
        std::fs::remove_file(&apptainer_dir).unwrap();
        std::fs::create_dir(&apptainer_dir).unwrap();
        assert_eq!(of(r), Metadata::Apptainer);
        let config = r.join(CONFIG_PATH);
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},
               "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let Metadata::Lade(defaults) = of(r) else {
            panic!("lade's config should win over /.singularity.d");
        };
        assert_eq!(defaults.cmd, ["sh"]);
    }
}
