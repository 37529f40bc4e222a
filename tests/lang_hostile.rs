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
