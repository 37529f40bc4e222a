//! Hostile input to the languages lade reads, as an ordinary user, each under an address-space
//! limit (`prlimit --as`): it must end in a one-line error, fast, with memory bounded
//! (issue 13, items 3 and 5).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Address space lade may use in these tests: enough for any honest run of these commands,
/// far below what the hostile inputs took before they were bounded (gigabytes).
const LIMIT: &str = "--as=600000000";

/// `lade --storage STORE ARGS` under [`LIMIT`]; fails the test if it takes over `secs`.
fn limited(lade: &Lade, args: &[&str], secs: u64) -> Run {
    let mut c = Command::new("prlimit");
    c.arg(LIMIT).arg("--").arg(lade_bin());
    c.arg("--storage").arg(&lade.storage).args(args);
    let start = Instant::now();
    let r = run_cmd(c);
    assert!(
        start.elapsed() < Duration::from_secs(secs),
        "took {:?}",
        start.elapsed()
    );
    r
}

#[test]
fn nested_arg_expansion_is_capped() {
    // Each ARG repeats the one before 100 times: 10 bytes, 1 kB, 100 kB, 10 MB, 1 GB...
    let mut df = String::from("FROM scratch\nARG A0=xxxxxxxxxx\n");
    for i in 1..6 {
        df.push_str(&format!(
            "ARG A{i}={}\n",
            format!("$A{}", i - 1).repeat(100)
        ));
    }
    df.push_str("RUN echo $A5\n");
    let lade = Lade::new();
    let ctx = lade.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), &df).unwrap();
    let ctx = ctx.to_str().unwrap();
    let err = limited(&lade, &["build", "--dry-run", "-t", "x", ctx], 20).fails_one_line();
    assert!(
        err.contains("Dockerfile:5:") && err.contains("more than 1 MiB"),
        "{err}"
    );
    assert!(err.len() < 300, "{err}");

    // Just under the cap per word, but many of them: the scope's total is capped too.
    let mut df = String::from("FROM scratch\nARG A0=xxxxxxxxxx\n");
    df.push_str(&format!("ARG A1={}\n", "$A0".repeat(100)));
    df.push_str(&format!("ARG A2={}\n", "$A1".repeat(100)));
    df.push_str(&format!("ARG A3={}\n", "$A2".repeat(10)));
    let many: Vec<String> = (0..100).map(|i| format!("B{i}=$A3")).collect();
    df.push_str(&format!("ARG {}\n", many.join(" ")));
    std::fs::write(std::path::Path::new(ctx).join("Dockerfile"), &df).unwrap();
    let err = limited(&lade, &["-q", "build", "--dry-run", "-t", "x", ctx], 20).fails_one_line();
    assert!(
        err.contains("Dockerfile:6:") && err.contains("64 MiB"),
        "{err}"
    );
}

#[test]
fn pattern_modifiers_on_big_values_end_quickly() {
    // A 1 MB value through `%`, `#` and `/` with patterns that backtrack badly.
    let mut df = String::from("FROM scratch\nARG A0=aaaaaaaaaa\n");
    df.push_str(&format!("ARG A1={}\n", "$A0".repeat(100)));
    df.push_str(&format!("ARG A2={}\n", "$A1".repeat(100)));
    df.push_str(&format!("ARG A3={}\n", "$A2".repeat(10)));
    df.push_str("ARG B=${A3%%*b*c}\nARG C=${A3##*a*b}\nARG D=${A3//a*b/x}\n");
    df.push_str(&format!("ARG E=${{A3%{}}}\n", "*a".repeat(300)));
    let lade = Lade::new();
    let ctx = lade.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), &df).unwrap();
    let ctx = ctx.to_str().unwrap();
    let err = limited(&lade, &["-q", "build", "--dry-run", "-t", "x", ctx], 60).fails_one_line();
    assert!(
        err.contains("Dockerfile:9:") && err.contains("steps"),
        "{err}"
    );
}

/// A copy of the fixtures' OCI layout, to spoil.
fn layout_copy(lade: &Lade) -> std::path::PathBuf {
    let dst = lade.path("layout");
    let mut c = Command::new("cp");
    c.arg("-a").arg(fixtures().layout()).arg(&dst);
    run_cmd(c).ok();
    dst
}

/// The blobs of the `single` image's layers in a layout (those not read as JSON).
fn layer_blobs(layout: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 4096)
        .collect()
}

#[test]
fn oci_layout_files_that_never_end_are_refused() {
    for name in ["index.json", "oci-layout"] {
        let lade = Lade::new();
        let layout = layout_copy(&lade);
        std::fs::remove_file(layout.join(name)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", layout.join(name)).unwrap();
        let src = format!("oci:{}:single", layout.display());
        let err = limited(&lade, &["pull", &src, "x"], 20).fails_one_line();
        assert!(
            err.contains(name) && err.contains("regular file"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_fifo_in_place_of_a_blob_is_refused_not_waited_on() {
    let lade = Lade::new();
    let layout = layout_copy(&lade);
    let blobs = layer_blobs(&layout);
    assert!(!blobs.is_empty());
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
        let mut c = Command::new("mkfifo");
        c.arg(b);
        run_cmd(c).ok();
    }
    let src = format!("oci:{}:single", layout.display());
    let err = limited(&lade, &["pull", &src, "x"], 30).fails_one_line();
    assert!(err.contains("a FIFO"), "{err}");
}
