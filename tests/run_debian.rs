//! A real distribution through the main road: a debootstrapped Debian image, pushed to a local
//! registry by skopeo, pulled by lade, run by lade — as an ordinary user.
//!
//! The Debian tarball comes from `tests/fixtures/debian-tarball.sh` (debootstrap needs root;
//! `tests/run-all.sh` makes it before the suite and passes its path in LADE_DEBIAN_TARBALL).

mod common;
mod support;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use support::registry::Registry;

fn debian_tarball() -> PathBuf {
    let path = std::env::var_os("LADE_DEBIAN_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "LADE_DEBIAN_TARBALL is not set: make the tarball as root with \
             tests/fixtures/debian-tarball.sh OUT.tar (tests/run-all.sh does)"
            )
        });
    assert!(path.is_file(), "{} does not exist", path.display());
    path
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// An OCI layout holding Debian as one umoci layer, tag `debian`.
fn debian_layout(scratch: &Scratch) -> PathBuf {
    let layout = scratch.join("layout");
    let image = format!("{}:debian", layout.display());
    let bundle = scratch.join("bundle");
    let l = layout.to_str().unwrap();
    let b = bundle.to_str().unwrap();
    run_cmd(cmd("umoci", &["init", "--layout", l])).ok();
    run_cmd(cmd("umoci", &["new", "--image", &image])).ok();
    run_cmd(cmd(
        "umoci",
        &["unpack", "--rootless", "--image", &image, b],
    ))
    .ok();
    let rootfs = bundle.join("rootfs");
    let tarball = debian_tarball();
    run_cmd(cmd(
        "tar",
        &[
            "-xf",
            tarball.to_str().unwrap(),
            "-C",
            rootfs.to_str().unwrap(),
            "--no-same-owner",
        ],
    ))
    .ok();
    run_cmd(cmd("umoci", &["repack", "--image", &image, b])).ok();
    run_cmd(cmd(
        "umoci",
        &[
            "config",
            "--image",
            &image,
            "--config.env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.workingdir",
            "/root",
            "--config.cmd",
            "/bin/bash",
        ],
    ))
    .ok();
    remove_tree(&bundle).unwrap();
    layout
}

#[test]
fn debian_from_a_local_registry_runs() {
    let scratch = Scratch::new("debian");
    let layout = debian_layout(&scratch);
    let registry = Registry::anonymous();
    registry.push(
        &format!("oci:{}:debian", layout.display()),
        "distro/debian:bookworm",
        &[],
    );

    let lade = Lade::new();
    let image = registry.image("distro/debian:bookworm");
    lade.run(["--tls-no-verify", "pull", &image, "debian"]).ok();

    let os_release = lade.ok(["run", "debian", "--", "cat", "/etc/os-release"]);
    assert!(os_release.contains("Debian GNU/Linux"), "{os_release}");

    let r = lade.run(["run", "debian", "--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);

    // The image's WorkingDir and PATH apply; --uid 0 shows root inside.
    let out = lade.ok([
        "run",
        "--uid",
        "0",
        "debian",
        "--",
        "/bin/sh",
        "-c",
        "pwd; id -u; command -v dpkg",
    ]);
    assert_eq!(out, "/root\n0\n/usr/bin/dpkg\n");

    // Changes with --write vanish; the default root is read-only.
    lade.ok([
        "run",
        "--write",
        "debian",
        "--",
        "/bin/sh",
        "-c",
        "rm /etc/debian_version",
    ]);
    let out = lade.ok(["run", "debian", "--", "cat", "/etc/debian_version"]);
    assert!(!out.trim().is_empty());
    let r = lade.run(["run", "debian", "--", "touch", "/etc/x"]);
    assert_ne!(r.status.code(), Some(0));
    lade.fsck_ok();
}
