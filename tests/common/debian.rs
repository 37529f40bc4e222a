//! The Debian test image: a debootstrapped Debian tarball (made by
//! `tests/fixtures/debian-tarball.sh` as root; `tests/run-all.sh` makes it before the suite and
//! passes its path in LADE_DEBIAN_TARBALL) turned into an OCI layout by umoci.

use std::path::PathBuf;
use std::process::Command;

use super::{Scratch, remove_tree, run_cmd};

pub fn debian_tarball() -> PathBuf {
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
pub fn debian_layout(scratch: &Scratch) -> PathBuf {
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
