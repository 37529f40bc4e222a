//! A layer blob (tar, possibly compressed) through lade's public unpack entry point, which
//! frames every header through its guard: an error or a tree inside the target, never a
//! panic, and memory bounded by the guard's caps whatever the headers claim.
#![no_main]

use lade::unpack::{ApplyMode, ApplyOptions, apply_layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let opts = ApplyOptions {
        mode: ApplyMode::Flatten,
        what: "fuzz layer",
    };
    let _ = apply_layer(data, &root, &opts);
    // Nothing escapes the target: the scratch directory holds only `root`.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(names, [std::ffi::OsString::from("root")], "wrote outside the target");
    // Trees may hold 0000 directories; lade's own removal makes them writable first.
    let _ = lade::fsutil::remove_all(dir.path());
});
