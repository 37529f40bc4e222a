//! `lade build --force=fakeroot` on a real Debian: `apt-get install` from the Debian mirror,
//! unprivileged, and the hint that suggests `--force` when a build fails without it.
//!
//! Needs the debootstrapped tarball in LADE_DEBIAN_TARBALL (tests/run-all.sh and
//! tests/as-user.sh pass it) and the Debian mirror; skipped, with a message, without the
//! tarball.

mod common;

use std::path::PathBuf;

use common::*;

fn debian_tarball() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("LADE_DEBIAN_TARBALL")?);
    assert!(path.is_file(), "{} does not exist", path.display());
    Some(path)
}

#[test]
fn apt_get_install_needs_force_and_works_with_it() {
    let Some(tarball) = debian_tarball() else {
        eprintln!("skipped: LADE_DEBIAN_TARBALL is not set");
        return;
    };
    let lade = Lade::new();
    lade.ok(["import".as_ref(), tarball.as_os_str(), "debian".as_ref()]);
    let b = BuildCtx::in_store(lade);
    b.file(
        "Dockerfile",
        "FROM debian\n\
         RUN echo no package manager here > /greeting\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello\n",
    );
    let build = |extra: &[&str]| run_cmd(b.build_cmd(extra, "hello"));

    // Without --force apt cannot drop privileges to _apt (one uid mapped): the build
    // fails, and says that --force would help.
    let r = build(&[]);
    let err = r.fails();
    assert!(
        err.contains("build failed: --force=fakeroot may fix it"),
        "{err}"
    );
    assert!(err.contains("RUN failed with exit status"), "{err}");
    assert!(!b.lade.list().iter().any(|n| n.starts_with("hello")));
    // --no-force-detect: the same failure, without the hint.
    let err = build(&["--no-force-detect"]).fails();
    assert!(!err.contains("may fix it"), "{err}");
    assert!(err.contains("RUN failed with exit status"), "{err}");

    // With --force: the distribution is detected, the init steps run before the apt step
    // (not before the first RUN), and the apt step is wrapped.
    let r = build(&["--force"]).ok();
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("--force=fakeroot: will use: debderiv"),
        "{all}"
    );
    assert!(all.contains("init step 1: checking"), "{all}");
    assert!(
        all.contains("init step 2: $ apt-get update && apt-get install -y fakeroot"),
        "{all}"
    );
    assert!(
        all.contains("--force=fakeroot: RUN: new command: [\"fakeroot\", \"/bin/sh\", \"-c\""),
        "{all}"
    );
    // The first RUN succeeded in the failed build: a hit now.
    assert_eq!(marks(&r.stdout), "**.", "{all}");
    assert!(r.stdout.contains("grown in 3 instructions: hello"), "{all}");
    let out = b.lade.ok(["run", "hello", "--", "hello"]);
    assert_eq!(out, "Hello, world!\n");
    let out = b.lade.ok([
        "run",
        "hello",
        "--",
        "cat",
        "/etc/apt/apt.conf.d/no-sandbox",
    ]);
    assert_eq!(out, "APT::Sandbox::User \"root\";\n");
    // The layers: the base, the first RUN, two init steps, the apt step.
    let record = b.record("hello");
    assert_eq!(record["layers"].as_array().unwrap().len(), 5, "{record}");

    // A rebuild executes nothing, the init steps included.
    let r = build(&["--force"]).ok();
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(marks(&r.stdout), "***", "{all}");
    assert!(all.contains("init steps: cached"), "{all}");
    assert!(!all.contains("checking"), "{all}");
    b.lade.fsck_ok();
}

#[test]
fn force_mode_errors_and_images_without_a_configuration() {
    let b = BuildCtx::new();
    b.file("Dockerfile", "FROM base\nRUN echo hi > /x\n");
    let build = |extra: &[&str]| run_cmd(b.build_cmd(extra, "t"));
    let err = build(&["--force=seccomp"]).fails_one_line();
    assert!(
        err.contains("--force=seccomp") && err.contains("not supported yet"),
        "{err}"
    );
    let err = build(&["--force=bogus"]).fails_one_line();
    assert!(
        err.contains("--force=bogus") && err.contains("unknown mode"),
        "{err}"
    );
    // busybox matches no configuration: a warning, and the RUN runs as it is.
    let r = build(&["--force"]).ok();
    assert!(
        r.stderr.contains("no suitable configuration"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("new command"), "{}", r.stderr);
    // --force=none is no --force.
    build(&["--force=none"]).ok();
}
