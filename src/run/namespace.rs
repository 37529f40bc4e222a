//! Entering a user and mount namespace, mapping the caller to one ID inside, as ch-run does:
//! no setuid helper, no subordinate ID ranges.

use std::fs;

use rustix::thread::{UnshareFlags, unshare_unsafe};

use crate::error::{Error, Result};

/// Unshares the user and mount namespaces and maps `inside_uid`/`inside_gid` to the caller's
/// real IDs. Must be called while the process has a single thread (a kernel rule for
/// CLONE_NEWUSER).
pub fn enter(inside_uid: u32, inside_gid: u32) -> Result<()> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    // SAFETY: unsharing the user and mount namespaces does not invalidate any state Rust
    // relies on (no file descriptor tables or memory are unshared).
    unsafe { unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) }.map_err(|e| {
        let hint = match e {
            rustix::io::Errno::PERM | rustix::io::Errno::NOSPC => {
                " (are unprivileged user namespaces disabled? check \
                 /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone, \
                 or an AppArmor policy such as kernel.apparmor_restrict_unprivileged_userns)"
            }
            rustix::io::Errno::INVAL => " (lade must be single-threaded here; this is a bug)",
            _ => "",
        };
        Error::unsupported("user namespace", format!("unshare failed: {e}{hint}"))
    })?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{inside_uid} {uid} 1\n"))?;
    write_proc("/proc/self/gid_map", &format!("{inside_gid} {gid} 1\n"))?;
    Ok(())
}

fn write_proc(path: &str, text: &str) -> Result<()> {
    fs::write(path, text)
        .map_err(|e| Error::io(format!("writing {path} in the new user namespace"), e))
}
