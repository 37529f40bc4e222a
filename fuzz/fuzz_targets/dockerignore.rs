//! `.dockerignore`: any file either parses or is refused, and matching any path never panics.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use lade::dockerfile::ignore::Ignore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is a path to match; the rest is the file.
    let (path, file) = match data.iter().position(|&c| c == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(ig) = Ignore::parse_bytes(file, ".dockerignore") {
        if !path.is_empty() {
            let _ = ig.excluded(Path::new(std::ffi::OsStr::from_bytes(path)));
        }
        let _ = ig.excluded(Path::new("a/b/c"));
    }
});
