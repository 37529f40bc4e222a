//! The store's lock on shared filesystems (issue 14). This machine has neither an NFS client
//! nor Lustre, so the two behaviours that matter there are tested directly:
//!
//! - NFS emulates `flock` with POSIX `fcntl` locks, and a shared `fcntl` lock needs a
//!   descriptor open for reading only: lade's shared lock must not open the lock file for
//!   writing, which is tested by making the lock file read-only.
//! - Lustre mounted without `-o flock` (and other filesystems without locks) fail `flock`
//!   with ENOSYS or ENOLCK: injected here with a seccomp filter on the lade process, lade must
//!   say so in one line naming the mount option and `--no-lock`, and work with `--no-lock`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::*;

#[test]
fn a_shared_lock_needs_no_write_access_to_the_lock_file() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "single"]);
    let lock = lade.storage.join("lock");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
    // Shared: list, run, copy out of the store.
    assert!(lade.ok(["list"]).contains("single:latest"));
    lade.ok(["run", "single", "--", "/bin/true"]);
    let out = lade.path("out");
    lade.ok(["copy", "lade:single", &format!("oci:{}:x", out.display())]);
    // Exclusive work needs to write the lock: a clear error, not a hang.
    let e = lade.run(["delete", "single"]).fails_one_line();
    assert!(e.contains("lock"), "{e}");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    lade.ok(["delete", "single"]);
}

/// A seccomp filter (classic BPF) that fails the `flock` system call with `errno`.
fn fail_flock_with(c: &mut std::process::Command, errno: i32) {
    // SAFETY: the closure runs in the forked child before exec and makes only system calls.
    unsafe {
        c.pre_exec(move || {
            const LD_W_ABS: u16 = 0x20;
            const JEQ_K: u16 = 0x15;
            const RET_K: u16 = 0x06;
            const ARCH_OFFSET: u32 = 4;
            const NR_OFFSET: u32 = 0;
            let stmt = |code, k| libc::sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            };
            let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
            let filter = [
                stmt(LD_W_ABS, ARCH_OFFSET),
                jump(JEQ_K, 0xc000_003e, 1, 0), // AUDIT_ARCH_X86_64
                stmt(RET_K, libc::SECCOMP_RET_ALLOW),
                stmt(LD_W_ABS, NR_OFFSET),
                jump(JEQ_K, libc::SYS_flock as u32, 0, 1),
                stmt(RET_K, libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff)),
                stmt(RET_K, libc::SECCOMP_RET_ALLOW),
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_filesystem_without_locks_is_a_one_line_error_naming_the_way_out() {
    let lade = Lade::new();
    for (errno, name) in [(libc::ENOSYS, "ENOSYS"), (libc::ENOLCK, "ENOLCK")] {
        let mut c = lade.cmd();
        c.arg("list");
        fail_flock_with(&mut c, errno);
        let e = run_cmd(c).fails_one_line();
        assert!(e.contains("-o flock"), "{name}: {e}");
        assert!(e.contains("--no-lock"), "{name}: {e}");
    }
    // The injection is real: without it the same command works, and with --no-lock lade
    // works under it, pulling and running included (work areas go unlocked there).
    lade.ok(["list"]);
    let mut c = lade.cmd();
    c.args(["--no-lock", "pull", &fixtures().oci("single"), "single"]);
    fail_flock_with(&mut c, libc::ENOSYS);
    run_cmd(c).ok();
    let mut c = lade.cmd();
    c.args(["--no-lock", "run", "single", "--", "/bin/true"]);
    fail_flock_with(&mut c, libc::ENOSYS);
    run_cmd(c).ok();
}
