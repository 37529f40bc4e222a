//! Modes and FIFOs exactly the image's (issue 12, item 4): a layer's `0400` and `0000` files,
//! `0555`, `0300` and `0000` directories and its FIFOs come out of lade as umoci's rootless
//! unpack keeps them and as ch-image keeps what a RUN step makes, through every path a tree
//! takes: the layer trees (`lade run`), `lade unpack`, `lade import`, `push --image`, built
//! layers (RUN and COPY) and what is packed from them; and lade deletes such trees. Run as an
//! ordinary user (tests/run-all.sh does): root ignores modes and would prove nothing.

mod common;
mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use support::registry::Registry;

fn sh(script: &str, dir: &Path) {
    let mut c = Command::new("sh");
    c.args(["-euc", script]).current_dir(dir);
    run_cmd(c).ok();
}

fn umoci(args: &[&str]) {
    let mut c = Command::new("umoci");
    c.args(args);
    run_cmd(c).ok();
}

/// The fixture layout with a tag `modes`: busybox (`single`), then a umoci layer with every
/// mode that locks its owner out and FIFOs, then a umoci layer that works inside them (a file
/// added to the `0555` directory, one deleted from the `0000` one, a FIFO's mode changed).
fn modes_layout(s: &Scratch) -> String {
    let layout = s.join("layout");
    let mut c = Command::new("cp");
    c.arg("-a").arg(fixtures().layout()).arg(&layout);
    run_cmd(c).ok();
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    let bundle = s.join("bundle");
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &image("single"),
        bundle.to_str().unwrap(),
    ]);
    sh(
        "mkdir ro && echo read only > ro/f && chmod 0400 ro/f && chmod 0555 ro
         mkdir -p none/sub && echo secret > none/sub/f && echo kept > none/sub/g
         mkfifo -m 0640 none/fifo && chmod 000 none/sub/f none/sub none
         mkfifo -m 0620 fifo && echo zero > zero && chmod 000 zero
         mkdir wx && echo in > wx/f && chmod 0300 wx",
        &bundle.join("rootfs"),
    );
    umoci(&[
        "repack",
        "--image",
        &image("modes"),
        bundle.to_str().unwrap(),
    ]);
    remove_tree(&bundle).unwrap();
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &image("modes"),
        bundle.to_str().unwrap(),
    ]);
    sh(
        "chmod 0755 ro && echo new > ro/new && chmod 0555 ro
         chmod 0700 none none/sub && rm none/sub/f && chmod 000 none/sub none
         chmod 0604 fifo",
        &bundle.join("rootfs"),
    );
    umoci(&[
        "repack",
        "--image",
        &image("modes"),
        bundle.to_str().unwrap(),
    ]);
    remove_tree(&bundle).unwrap();
    image("modes")
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// What the reference tree must hold for these tests to test anything.
#[track_caller]
fn assert_has_locked_modes(rootfs: &Path) {
    assert_eq!(mode_of(&rootfs.join("ro")), 0o555);
    assert_eq!(mode_of(&rootfs.join("ro/f")), 0o400);
    assert_eq!(mode_of(&rootfs.join("none")), 0o000);
    assert_eq!(mode_of(&rootfs.join("zero")), 0o000);
    assert_eq!(mode_of(&rootfs.join("wx")), 0o300);
    let fifo = fs::symlink_metadata(rootfs.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(mode_of(&rootfs.join("fifo")), 0o604);
}

#[test]
fn layer_trees_unpack_and_run_keep_modes_and_fifos_as_umoci_does() {
    let s = Scratch::new("modes");
    let image = modes_layout(&s);
    let rootfs = umoci_unpack(&image, &s.join("umoci"));
    assert_has_locked_modes(&rootfs);

    let lade = Lade::new();
    lade.ok(["pull", &format!("oci:{image}"), "modes"]);
    let out = lade.path("unpacked");
    lade.ok(["unpack".as_ref(), "modes".as_ref(), out.as_os_str()]);
    assert_same_tree(&rootfs, &out, &vs_umoci());
    lade.fsck_ok();

    // The container sees the layer trees through overlayfs: the same modes and types.
    let paths = ["/ro", "/ro/f", "/ro/new", "/none", "/zero", "/wx", "/fifo"];
    let mut args = vec!["run", "modes", "--", "/bin/stat", "-c", "%n %a %F"];
    args.extend(paths);
    let seen = lade.ok(args);
    for p in paths {
        let want = format!(
            "{p} {:o} {}",
            mode_of(&rootfs.join(&p[1..])),
            if p == "/fifo" {
                "fifo"
            } else if fs::symlink_metadata(rootfs.join(&p[1..])).unwrap().is_dir() {
                "directory"
            } else {
                "regular file"
            }
        );
        assert!(seen.lines().any(|l| l == want), "no '{want}' in:\n{seen}");
    }

    // Trees with 0000 directories are lade's to delete.
    lade.ok(["reset"]);
    assert!(lade.list().is_empty());
    lade.fsck_ok();
}

/// The source directory of an import or a packed push, with the modes of the image.
fn locked_dir(s: &Scratch) -> PathBuf {
    let image = modes_layout(s);
    umoci_unpack(&image, &s.join("umoci"))
}

#[test]
fn import_and_packed_push_keep_modes_and_fifos() {
    let s = Scratch::new("packed-modes");
    let tree = locked_dir(&s);
    let before = Tree::scan(&tree);
    let lade = Lade::new();

    lade.ok(["import".as_ref(), tree.as_os_str(), "imp".as_ref()]);
    let out = lade.path("imported");
    lade.ok(["unpack".as_ref(), "imp".as_ref(), out.as_os_str()]);
    assert_same_as_scanned(&before, &out, &vs_umoci());

    let reg = Registry::anonymous();
    let dest = reg.image("packed/modes:1");
    let dir = tree.to_str().unwrap();
    lade.ok(["--tls-no-verify", "push", "--image", dir, "x", &dest]);
    lade.ok(["--tls-no-verify", "pull", &dest, "pushed"]);
    let out = lade.path("pushed");
    lade.ok(["unpack".as_ref(), "pushed".as_ref(), out.as_os_str()]);
    // A packed push drops setuid/setgid bits (ch-image's rule); this tree has none.
    assert_same_as_scanned(&before, &out, &vs_umoci());
    // Packing put back every mode it opened up.
    assert_same_as_scanned(&before, &tree, &vs_umoci());
}

/// ch-image: from tests/run-all.sh's unpacked .debs, else the one on PATH.
fn ch_image() -> Command {
    let unpacked = Path::new("/opt/lade-test-charliecloud/usr/bin/ch-image");
    let mut c = if unpacked.exists() {
        let mut c = Command::new("/usr/bin/python3");
        c.arg(unpacked);
        c
    } else {
        Command::new("ch-image")
    };
    c.arg("--no-cache");
    c
}

/// What ch-image adds to every image it builds (its mount points and its metadata), which the
/// comparison leaves out.
const CH_IMAGE_OWN: &[&str] = &[
    "ch",
    "dev",
    "proc",
    "sys",
    "mnt",
    "etc/hosts",
    "etc/resolv.conf",
];

const DOCKERFILE: &str = "FROM base
RUN mkfifo -m 0640 /p && echo hi > /f && chmod 0400 /f \\
 && mkdir -p /d/sub && echo x > /d/sub/g && chmod 0555 /d \\
 && mkdir -p /z/y && echo s > /z/y/s && chmod 000 /z/y/s /z/y /z \\
 && mkdir /wx && chmod 0300 /wx
RUN chmod 0755 /d && echo n > /d/n && chmod 0555 /d && chmod 0604 /p
COPY ro.txt /ro.txt
";

#[test]
fn built_layers_keep_modes_and_fifos_as_ch_image_does() {
    let s = Scratch::new("build-modes");
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "base"]);
    let base = s.join("base");
    lade.ok(["unpack".as_ref(), "base".as_ref(), base.as_os_str()]);
    let ctx = s.join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("ro.txt"), "read only\n").unwrap();
    fs::set_permissions(ctx.join("ro.txt"), fs::Permissions::from_mode(0o400)).unwrap();

    // ch-image, from the same base.
    let ch_store = s.join("ch-store");
    let ch = |args: &[&str]| {
        let mut c = ch_image();
        c.args(args)
            .env("CH_IMAGE_STORAGE", &ch_store)
            .current_dir(&ctx);
        run_cmd(c).ok();
    };
    ch(&["import", base.to_str().unwrap(), "base"]);
    ch(&["build", "-t", "modes", "-f", "Dockerfile", "."]);
    let ch_tree = ch_store.join("img/modes");

    lade.ok([
        "build".as_ref(),
        "-t".as_ref(),
        "modes".as_ref(),
        ctx.as_os_str(),
    ]);
    let out = lade.path("built");
    lade.ok(["unpack".as_ref(), "modes".as_ref(), out.as_os_str()]);

    let mut expected = Tree::scan(&ch_tree);
    expected
        .entries
        .retain(|p, _| !CH_IMAGE_OWN.iter().any(|own| p.starts_with(own)));
    assert_eq!(
        mode_of(&ch_tree.join("z")),
        0o000,
        "ch-image kept the 0000 directory"
    );
    assert_eq!(mode_of(&ch_tree.join("d")), 0o555);
    assert!(
        fs::symlink_metadata(ch_tree.join("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_same_as_scanned(&expected, &out, &vs_umoci());

    // The built layers as packed blobs, read by umoci, give the same tree.
    let layout = s.join("copied");
    lade.ok([
        "copy",
        "lade:modes",
        &format!("oci:{}:modes", layout.display()),
    ]);
    let rootfs = umoci_unpack(
        &format!("{}:modes", layout.display()),
        &s.join("umoci-built"),
    );
    assert_same_tree(&rootfs, &out, &vs_umoci());
}
