//! Mounting overlayfs over an image's layer trees, as many as overlayfs itself takes.
//!
//! The classic `mount(2)` call gives all lower directories in one option string, which the
//! kernel limits to one page: with the store's paths that ended at about 50 layers. Linux 6.8
//! added `lowerdir+` to the new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`): one
//! `fsconfig` call per layer, no length limit, no escaping of `:` or `,` in paths. That is the
//! way taken first. On older kernels the fallback is the classic call with short names, as
//! containers/storage does with its `l/` links: each directory is opened, and the option
//! string names it by its descriptor number from within /proc/self/fd (`lowerdir=7:8:9`), at
//! most four characters a layer. Past overlayfs's own limit of 500 lower layers the caller
//! merges layers ([`super::plan::within_layer_limit`]).
//!
//! Whiteouts and opaque markers in lade's trees are the unprivileged kind (0/0 character
//! devices and `user.overlay.*` xattrs), hence `userxattr` (Linux 5.11, like unprivileged
//! overlayfs itself).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, fsconfig_create,
    fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::error::{Error, Result};

/// Set to 1, this environment variable makes lade mount overlays the way it does on kernels
/// without `lowerdir+`.
pub const CLASSIC_SWITCH: &str = "LADE_OVERLAY_CLASSIC_MOUNT";

/// An overlay to mount.
pub struct Overlay<'a> {
    /// Lower directories, top-most first.
    pub lowers: &'a [PathBuf],
    /// The upper and work directories; without them the overlay is of lower layers only,
    /// which the kernel makes read-only.
    pub upper: Option<(&'a Path, &'a Path)>,
}

/// Mounts `overlay` on `target`, an existing directory. The error says what the kernel said.
pub fn mount_at(target: &Path, overlay: &Overlay) -> Result<()> {
    // The fallback is what kernels before 6.8 get; this switch lets the tests run it on newer
    // ones.
    let classic = std::env::var_os(CLASSIC_SWITCH).is_some_and(|v| v == "1");
    let mnt = if classic { None } else { detached(overlay)? };
    match mnt {
        Some(mnt) => move_mount(
            mnt.as_fd(),
            c"",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| {
            mount_error(
                overlay,
                format!("attaching it at {}: {e}", target.display()),
            )
        }),
        None => mount_with_short_names(target, overlay),
    }
}

/// The overlay as a detached mount, through the new mount API; `None` when the kernel lacks
/// the API or `lowerdir+` (before Linux 6.8).
fn detached(overlay: &Overlay) -> Result<Option<OwnedFd>> {
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fs) => fs,
        Err(Errno::NOSYS) => return Ok(None),
        Err(e) => return Err(mount_error(overlay, format!("fsopen: {e}"))),
    };
    let fail = |what: &str, e: Errno| mount_error(overlay, format!("{what}: {}", log(&fs, e)));
    fsconfig_set_flag(fs.as_fd(), "userxattr").map_err(|e| fail("userxattr", e))?;
    for (i, dir) in overlay.lowers.iter().enumerate() {
        match fsconfig_set_string(fs.as_fd(), "lowerdir+", dir) {
            Ok(()) => {}
            // An unknown parameter: a kernel before 6.8.
            Err(Errno::INVAL) if i == 0 => return Ok(None),
            Err(e) => return Err(fail(&format!("lower layer {}", dir.display()), e)),
        }
    }
    if let Some((upper, work)) = overlay.upper {
        fsconfig_set_string(fs.as_fd(), "upperdir", upper).map_err(|e| fail("upperdir", e))?;
        fsconfig_set_string(fs.as_fd(), "workdir", work).map_err(|e| fail("workdir", e))?;
    }
    fsconfig_create(fs.as_fd()).map_err(|e| fail("creating it", e))?;
    let attrs = if overlay.upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    let mnt = fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail("fsmount", e))?;
    Ok(Some(mnt))
}

/// The kernel's own explanation of a failed `fsconfig` (it queues messages such as
/// "e overlayfs: failed to resolve 'x': -2" on the context), or the errno alone.
fn log(fs: &OwnedFd, e: Errno) -> String {
    let mut buf = [0u8; 256];
    match rustix::io::read(fs, &mut buf) {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]);
            let text = text.trim();
            // "e " (error), "w " (warning), "i " (info) prefixes.
            let text = text.get(2..).unwrap_or(text);
            format!("{e} ({text})")
        }
        _ => e.to_string(),
    }
}

fn mount_error(overlay: &Overlay, detail: String) -> Error {
    // The kernel's age is the likely cause only on a kernel that is too old; elsewhere the
    // hint would mislead (the same lower directory twice, say, is ELOOP on any kernel).
    let hint = if kernel_older_than(5, 11) {
        " (unprivileged overlayfs needs Linux 5.11 or later)"
    } else {
        ""
    };
    Error::unsupported(
        "overlayfs",
        format!(
            "mounting {} layers failed: {detail}{hint}",
            overlay.lowers.len()
        ),
    )
}

/// Whether the running kernel's release (`uname -r`, "6.8.0-40-generic") is below
/// `major.minor`; false when it cannot be read.
fn kernel_older_than(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

/// The classic `mount(2)` with every directory named by a descriptor number, from within
/// /proc/self/fd (see the module comment).
fn mount_with_short_names(target: &Path, overlay: &Overlay) -> Result<()> {
    let open = |dir: &Path| {
        rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("overlay layer {}", dir.display()), e.into()))
    };
    let lowers = overlay
        .lowers
        .iter()
        .map(|d| open(d))
        .collect::<Result<Vec<OwnedFd>>>()?;
    let names: Vec<String> = lowers.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let mut options = format!("lowerdir={}", names.join(":"));
    let mut keep = Vec::new();
    if let Some((upper, work)) = overlay.upper {
        let (u, w) = (open(upper)?, open(work)?);
        options.push_str(&format!(
            ",upperdir={},workdir={}",
            u.as_raw_fd(),
            w.as_raw_fd()
        ));
        keep.extend([u, w]);
    }
    options.push_str(",userxattr");
    if options.len() >= 4096 {
        return Err(mount_error(
            overlay,
            "too many layers for the mount options of this kernel (Linux 6.8 takes 500)".into(),
        ));
    }
    let options = CString::new(options).map_err(|_| Error::invalid("overlay options", "NUL"))?;
    let flags = if overlay.upper.is_some() {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    // Resolved now: the mount call runs from within /proc/self/fd.
    let target = std::path::absolute(target)
        .map_err(|e| Error::io(format!("overlay target {}", target.display()), e))?;
    let here = rustix::fs::open(".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("the current directory".to_string(), e.into()))?;
    rustix::process::chdir("/proc/self/fd")
        .map_err(|e| Error::io("/proc/self/fd".to_string(), e.into()))?;
    let result = rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        flags,
        Some(options.as_c_str()),
    );
    rustix::process::fchdir(&here)
        .map_err(|e| Error::io("back to the current directory".to_string(), e.into()))?;
    result.map_err(|e| mount_error(overlay, format!("mount: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_overlayfs_and_the_cause() {
        let lowers = [PathBuf::from("/a"), PathBuf::from("/b")];
        let o = Overlay {
            lowers: &lowers,
            upper: None,
        };
        let e = mount_error(&o, "fsmount: x".into()).to_string();
        assert!(e.contains("overlayfs") && e.contains("2 layers") && e.contains("fsmount: x"));
        assert!(!e.contains('\n'));
    }
}
