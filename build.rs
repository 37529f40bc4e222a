//! Link settings for the `lade` executable.
//!
//! `lade run` is a start-up path measured against Charliecloud's `ch-run` (a small C program):
//! the whole container start costs a few milliseconds, and for a position-independent `lade`
//! the dynamic loader had to apply ~19,000 relative relocations at every start, dirtying
//! ~80 extra pages (perf: `_dl_relocate_object` and its page faults were the largest user-space
//! cost). Linking the executable at a fixed address removes them all; the library code is
//! unchanged. The price is that the executable's own code is not address-randomised (shared
//! libraries, heap and stack still are), as with Go's default builds. Set LADE_PIE=1 when
//! building to keep a PIE.
//!
//! The unwinder: Rust's standard library takes GCC's unwinder from the shared libgcc_s, and
//! loading that library cost every `lade run` about 0.17 ms of its ~3 (an extra object for the
//! dynamic loader, and a constructor that probes the CPU with `cpuid`, which traps to the
//! hypervisor on a virtual machine). The same unwinder is linked in from GCC's static
//! libgcc_eh.a when the C compiler has one; panics unwind and backtraces print as before.
//! Without it (another compiler, another target) the shared library is used as before.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LADE_PIE");
    println!("cargo:rerun-if-env-changed=CC");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let pie_wanted = std::env::var_os("LADE_PIE").is_some_and(|v| v == "1");
    if target_os == "linux" && !pie_wanted {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    if target_os == "linux"
        && target_env == "gnu"
        && let Some(dir) = static_unwinder_dir()
    {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
}

/// The directory of the C compiler's libgcc_eh.a, if it has one (`cc -print-file-name` prints
/// the bare name when it does not).
fn static_unwinder_dir() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = std::process::Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !out.status.success() || !path.is_absolute() || !path.is_file() {
        return None;
    }
    path.parent().map(PathBuf::from)
}
