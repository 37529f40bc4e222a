//! Metadata of an entry (mode, times, xattrs) and the unprivileged fix-ups applied to it, all in
//! one place:
//!
//! - ownership is ignored: an unprivileged user cannot chown, and at run time the user namespace
//!   maps the files to the container's root anyway;
//! - modes are the image's, exactly, as `umoci unpack --rootless` keeps them: a `0400` file, a
//!   `0555` or `0000` directory stay so (a container, a re-packed layer, an export must see what
//!   the image says); where lade itself must work inside such a tree it grants itself access
//!   only while it works (`access.rs`);
//! - setuid, setgid and sticky bits are kept, as umoci does: the files belong to the
//!   unprivileged user, so on the host the bits grant nothing that user lacks, and inside the
//!   container (where that user is root) they mean what the image author intended;
//! - of the xattrs only `user.*` are applied (the others need privileges or mean nothing here),
//!   except `user.overlay.*`, which would let a layer steer overlayfs (opaque, redirect, metacopy)
//!   when the trees are mounted with `userxattr`.

use std::io::{self, Read};
use std::sync::OnceLock;

use rustix::fs::{Timespec, Timestamps};

/// What lade applies from a header.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// Permission bits from the header (`0o7777` at most), applied exactly.
    pub mode: u32,
    pub mtime: (i64, i64),
    pub atime: (i64, i64),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(crate) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let mtime = (i64::try_from(header.mtime()?).unwrap_or(i64::MAX), 0);
        let mut meta = Meta {
            mode,
            mtime,
            atime: mtime,
            xattrs: Vec::new(),
        };
        let mut atime = None;
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        meta.mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                    && keep_xattr(name)
                {
                    meta.xattrs
                        .push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        // A missing atime takes the mtime, as umoci does, so that unpacking is deterministic.
        meta.atime = atime.unwrap_or(meta.mtime);
        Ok(meta)
    }

    pub(crate) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: timespec(self.atime),
            last_modification: timespec(self.mtime),
        }
    }
}

fn timespec((sec, nsec): (i64, i64)) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5` into (seconds, nanoseconds), with
/// the nanoseconds always in 0..1e9 as `utimensat` wants.
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec: i64 = int.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(match (neg, nsec) {
        (false, _) => (sec, nsec),
        (true, 0) => (-sec, 0),
        (true, _) => (-sec - 1, 1_000_000_000 - nsec),
    })
}

pub(crate) fn keep_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") && !name.starts_with(b"user.overlay.")
}

/// Whether creating a file with `mode & 0o777` already yields exactly `mode`, which saves an
/// `fchmod` per file. Special bits always need the `fchmod` after the data is written, because
/// writing clears setuid/setgid.
pub(crate) fn create_mode_is_exact(mode: u32) -> bool {
    mode & 0o7000 == 0 && umask().is_some_and(|mask| mode & mask == 0)
}

/// The process umask, read without changing it (`umask(2)` can only set it, which would race
/// with other threads creating files); None before Linux 4.7.
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time(b"1.5"), Some((1, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_pax_time(b"99999999999999999999999"), None);
    }

    #[test]
    fn filters_xattrs() {
        assert!(keep_xattr(b"user.foo"));
        assert!(!keep_xattr(b"user.overlay.opaque"));
        assert!(!keep_xattr(b"security.capability"));
        assert!(!keep_xattr(b"trusted.overlay.opaque"));
    }
}
