//! A real distribution through the main road: a debootstrapped Debian image, pushed to a local
//! registry by skopeo, pulled by lade, run by lade — as an ordinary user.
//!
//! The Debian tarball comes from `tests/fixtures/debian-tarball.sh` (debootstrap needs root;
//! `tests/run-all.sh` makes it before the suite and passes its path in LADE_DEBIAN_TARBALL).

mod common;
mod support;

use common::debian::debian_layout;
use common::*;
use support::registry::Registry;

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
