//! Killing lade at chosen moments (`kill -9`), for the crash tests, and the filesystem they
//! must run on to prove anything.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Lade;

/// Starts lade with `args` and SIGKILLs it after `delay`. Returns true if it was still
/// running when killed (false if it had already finished).
pub fn kill_after(lade: &Lade, args: &[OsString], delay: Duration) -> bool {
    kill_or_time(lade, args, delay).is_none()
}

/// As [`kill_after`]; returns how long lade ran if it finished before the kill, `None` if the
/// kill landed.
pub fn kill_or_time(lade: &Lade, args: &[OsString], delay: Duration) -> Option<Duration> {
    let mut c = lade.cmd();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let mut child = c.spawn().expect("cannot start lade");
    let deadline = start + delay;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            eprintln!("  finished ({st}) before the kill at {delay:?}");
            return Some(start.elapsed());
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_micros(500)));
    }
    child.kill().unwrap(); // SIGKILL
    let st = child.wait().unwrap();
    if st.signal() == Some(9) {
        None
    } else {
        eprintln!("  exited ({st}) just before the kill at {delay:?}");
        Some(start.elapsed())
    }
}

/// `args` as the OsStrings a command takes.
pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Crash tests mean something only where a crash can leave half-done work on disk: a disk
/// filesystem, not tmpfs (where the store lives in the page cache all the same, but which
/// CI's TMPDIR could be). Panics otherwise, naming the filesystem.
pub fn assert_on_disk_filesystem(path: &Path) {
    const TMPFS: i64 = 0x0102_1994;
    const RAMFS: i64 = 0x8584_58f6u32 as i64;
    const DISK: &[(i64, &str)] = &[
        (0xEF53, "ext2/3/4"),
        (0x5846_5342, "xfs"),
        (0x9123_683E_u32 as i64, "btrfs"),
    ];
    let st = rustix::fs::statfs(path).expect("statfs of the test directory");
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    assert!(
        kind != TMPFS && kind != RAMFS,
        "{} is on tmpfs: the crash tests need a disk filesystem (ext4); set TMPDIR",
        path.display()
    );
    assert!(
        DISK.iter().any(|(k, _)| *k == kind),
        "{} is on filesystem type {kind:#x}, not ext4, xfs or btrfs",
        path.display()
    );
}
