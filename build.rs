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
fn main() {
    println!("cargo:rerun-if-env-changed=LADE_PIE");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let pie_wanted = std::env::var_os("LADE_PIE").is_some_and(|v| v == "1");
    if target_os == "linux" && !pie_wanted {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
