//! `lade copy SRC squashfs:FILE` (issue 14): the SquashFS file, unpacked by squashfs-tools'
//! `unsquashfs`, is `lade unpack` of the same image plus the documented additions (mount
//! points the image lacks, `/ch/`); every file is root's; setuid bits, hard links and user
//! xattrs survive; the same image gives the same bytes from any source; Charliecloud's
//! `ch-run` runs the file, and `lade run` applies the image config inside it.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::debian::debian_layout;
use common::*;

/// What lade adds to an image in a SquashFS file, besides the mount points: `/ch/`.
const ADDED_DIR: &str = "/ch";
/// Mount points lade adds where the image lacks them (as `ch-convert` does).
const MOUNT_POINTS: &[&str] = &[
    "/bin",
    "/dev",
    "/etc",
    "/home",
    "/mnt",
    "/mnt/0",
    "/mnt/1",
    "/mnt/2",
    "/mnt/3",
    "/mnt/4",
    "/mnt/5",
    "/mnt/6",
    "/mnt/7",
    "/mnt/8",
    "/mnt/9",
    "/proc",
    "/sys",
    "/tmp",
    "/usr",
    "/etc/hosts",
    "/etc/resolv.conf",
];

fn unsquashfs(file: &Path, into: &Path) {
    let mut c = Command::new("unsquashfs");
    c.arg("-no-progress").arg("-d").arg(into).arg(file);
    run_cmd(c).ok();
}

/// Each path of the file, its mode and its owner, as `unsquashfs -lln` lists them (the
/// file's own view: `unsquashfs` run by an ordinary user drops setuid and setgid bits when it
/// extracts).
fn listed(file: &Path) -> Vec<(PathBuf, String, String)> {
    let mut c = Command::new("unsquashfs");
    c.arg("-lln").arg(file);
    let listing = run_cmd(c).ok().stdout;
    listing
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let path = fields.get(5)?.strip_prefix("squashfs-root")?;
            Some((
                PathBuf::from(format!("/{}", path.trim_start_matches('/'))),
                fields[0].to_string(),
                fields[1].to_string(),
            ))
        })
        .collect()
}

/// The setuid, setgid and sticky bits of an `ls -l` mode string.
fn special_bits(mode: &str) -> u32 {
    let c: Vec<char> = mode.chars().collect();
    let mut bits = 0;
    if matches!(c.get(3), Some('s' | 'S')) {
        bits |= 0o4000;
    }
    if matches!(c.get(6), Some('s' | 'S')) {
        bits |= 0o2000;
    }
    if matches!(c.get(9), Some('t' | 'T')) {
        bits |= 0o1000;
    }
    bits
}

/// `lade unpack` of `image` against `unsquashfs` of `file`: no difference but the documented
/// additions, which must all be there; the special mode bits, which `unsquashfs` does not
/// restore for an ordinary user, against the file's listing.
#[track_caller]
fn assert_squashfs_is_unpack(lade: &Lade, image: &str, file: &Path, has_special_bits: bool) {
    let unpacked = lade.path(format!("unpacked-{image}"));
    lade.ok(["unpack", image, unpacked.to_str().unwrap()]);
    let extracted = lade.path(format!("extracted-{image}"));
    unsquashfs(file, &extracted);
    let opts = CompareOpts {
        root_mode: false,
        perm_mask: 0o777,
        ..CompareOpts::default()
    };
    let diffs: Vec<String> = diff_trees(&unpacked, &extracted, &opts)
        .into_iter()
        .filter(|d| {
            let Some(rest) = d.strip_prefix("extra: ") else {
                return true;
            };
            let path = rest.split(' ').next().unwrap_or("");
            !(path == ADDED_DIR
                || path.starts_with(&format!("{ADDED_DIR}/"))
                || MOUNT_POINTS.contains(&path))
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "SquashFS differs from lade unpack:\n{diffs:#?}"
    );
    let expected = Tree::scan(&unpacked);
    let mut special = 0;
    for (path, mode, _) in listed(file) {
        let rel = path.strip_prefix("/").unwrap();
        let Some(e) = expected.entries.get(rel) else {
            continue;
        };
        if matches!(e.kind, Kind::Symlink(_)) {
            continue;
        }
        special += usize::from(e.mode & 0o7000 != 0);
        assert_eq!(
            special_bits(&mode),
            e.mode & 0o7000,
            "special bits of {} ({mode})",
            path.display()
        );
    }
    // (The Debian test image has none: an ordinary user's tar extracted it.)
    if has_special_bits {
        assert!(special > 0, "no setuid, setgid or sticky entry was checked");
    }
    for must in [
        "ch/lade-image-config.json",
        "ch/environment",
        "proc",
        "dev",
        "sys",
        "tmp",
    ] {
        assert!(
            extracted.join(must).symlink_metadata().is_ok(),
            "{must} missing from the SquashFS file"
        );
    }
}

/// Every inode in the file is root's, as `unsquashfs -lln` lists them.
#[track_caller]
fn assert_all_root(file: &Path) {
    let entries = listed(file);
    assert!(entries.len() > 5, "{entries:?}");
    for (path, _, owner) in entries {
        assert_eq!(owner, "0/0", "not root's: {}", path.display());
    }
}

/// `lade copy lade:IMAGE squashfs:...` gives the very bytes of `file`.
#[track_caller]
fn assert_stored_copy_is(lade: &Lade, image: &str, file: &Path) {
    let again = lade.path(format!("{image}-again.sqfs"));
    lade.ok([
        "copy",
        &format!("lade:{image}"),
        &format!("squashfs:{}", again.display()),
    ]);
    assert_eq!(
        fs::read(file).unwrap(),
        fs::read(&again).unwrap(),
        "the same image gave different SquashFS files"
    );
}

#[test]
fn squashfs_is_the_unpacked_image_and_the_same_from_any_source() {
    let f = fixtures();
    let lade = Lade::new();
    // From a layout, which the store has never seen; then from the store.
    let from_layout = lade.path("from-layout.sqfs");
    let out = lade.ok([
        "copy",
        &f.oci("multi"),
        &format!("squashfs:{}", from_layout.display()),
    ]);
    assert!(out.is_empty() || !out.contains("error"), "{out}");
    lade.ok(["pull", &f.oci("multi"), "multi"]);
    assert_stored_copy_is(&lade, "multi", &from_layout);
    // The layout's image has whiteouts, an opaque directory, a setuid file and hard links
    // within and across layers: the file must agree with lade unpack on every one.
    assert_squashfs_is_unpack(&lade, "multi", &from_layout, true);
    assert_all_root(&from_layout);
    // Nothing half-written is left beside the file, and the copy named no image.
    let names: Vec<_> = fs::read_dir(lade.scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lade-partial"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let names = lade.list();
    assert!(
        names.len() == 1 && names[0].starts_with("multi:latest"),
        "{names:?}"
    );
    lade.fsck_ok();
}

/// An OCI layout (tag `x`) whose one layer umoci packed from `fill`'s tree: umoci keeps
/// user xattrs, setuid bits and hard links (`lade import` keeps no xattrs).
fn umoci_layout(scratch: &Scratch, fill: impl FnOnce(&Path)) -> PathBuf {
    let layout = scratch.join("layout");
    let bundle = scratch.join("bundle");
    let image = format!("{}:x", layout.display());
    let umoci = |args: &[&str]| {
        let mut c = Command::new("umoci");
        c.args(args);
        run_cmd(c).ok();
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &image,
        bundle.to_str().unwrap(),
    ]);
    fill(&bundle.join("rootfs"));
    umoci(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    layout
}

#[test]
fn setuid_hard_links_and_user_xattrs_survive() {
    let lade = Lade::new();
    let mut xattrs = false;
    let layout = umoci_layout(&lade.scratch, |root| {
        use std::os::unix::fs::PermissionsExt;
        let set_mode =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        set_mode(&root.join("bin/tool"), 0o4755);
        fs::write(root.join("bin/group-tool"), b"x").unwrap();
        set_mode(&root.join("bin/group-tool"), 0o2711);
        fs::hard_link(root.join("bin/tool"), root.join("bin/tool-link")).unwrap();
        fs::write(root.join("tagged"), b"data").unwrap();
        xattrs = rustix::fs::setxattr(
            root.join("tagged"),
            "user.lade.test",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
    });
    let file = lade.path("tree.sqfs");
    lade.ok([
        "copy",
        &format!("oci:{}:x", layout.display()),
        &format!("squashfs:{}", file.display()),
    ]);
    assert_all_root(&file);
    let modes = listed(&file);
    let mode = |p: &str| {
        let (_, m, _) = modes.iter().find(|(q, _, _)| q == Path::new(p)).unwrap();
        m.clone()
    };
    assert_eq!(mode("/bin/tool"), "-rwsr-xr-x");
    assert_eq!(special_bits(&mode("/bin/group-tool")), 0o2000);
    let out = lade.path("out");
    unsquashfs(&file, &out);
    let ino = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("bin/tool"), ino("bin/tool-link"), "hard link lost");
    if xattrs {
        let mut value = [0u8; 16];
        let n = rustix::fs::getxattr(out.join("tagged"), "user.lade.test", &mut value)
            .expect("user xattr lost");
        assert_eq!(&value[..n], b"kept");
    } else {
        eprintln!("this filesystem takes no user xattrs: their part of the test is skipped");
    }
}

#[test]
fn squashfs_is_a_destination_only_and_bad_paths_are_one_line_errors() {
    let lade = Lade::new();
    let f = fixtures();
    let e = lade
        .run(["copy", "squashfs:/nonexistent.sqfs", "oci:/tmp/x"])
        .fails_one_line();
    assert!(e.contains("destination only"), "{e}");
    let e = lade
        .run(["copy", &f.oci("single"), "squashfs:"])
        .fails_one_line();
    assert!(e.contains("empty path"), "{e}");
    let e = lade
        .run(["copy", &f.oci("single"), "squashfs:/nonexistent-dir/x.sqfs"])
        .fails_one_line();
    assert!(e.contains("/nonexistent-dir/x.sqfs"), "{e}");
}

/// The Debian image as a SquashFS file (made once, from the layout, the first test's way).
fn debian_file(lade: &Lade) -> PathBuf {
    let layout = debian_layout(&lade.scratch);
    let file = lade.path("debian.sqfs");
    lade.ok([
        "copy",
        &format!("oci:{}:debian", layout.display()),
        &format!("squashfs:{}", file.display()),
    ]);
    lade.ok([
        "pull",
        &format!("oci:{}:debian", layout.display()),
        "debian",
    ]);
    file
}

#[test]
fn debian_squashfs_is_its_unpack_and_runs_with_ch_run_and_lade() {
    let lade = Lade::new();
    let file = debian_file(&lade);
    assert_stored_copy_is(&lade, "debian", &file);
    assert_squashfs_is_unpack(&lade, "debian", &file, false);

    // Charliecloud runs it, with the image's environment from /ch/environment.
    let user = std::env::var("USER").unwrap_or_else(|_| "lade-test".into());
    let mut c = Command::new("ch-run");
    c.env("USER", &user).arg("--set-env").arg(&file).args([
        "--",
        "/bin/sh",
        "-c",
        "cat /etc/debian_version; echo \"$PATH\"",
    ]);
    let out = run_cmd(c).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("12"), "{out}");
    assert_eq!(
        lines[1], "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "{out}"
    );

    // lade applies the config inside the file as a stored image's: WorkingDir /root, PATH,
    // the command's exit status, Cmd when no command is given.
    let path = file.to_str().unwrap();
    let as_root = |image: &str| {
        let script = "pwd; id -u; echo $PATH";
        lade.ok(["run", "--uid", "0", image, "--", "/bin/sh", "-c", script])
    };
    let (stored, from_file) = (as_root("debian"), as_root(path));
    assert_eq!(from_file, stored);
    assert!(from_file.starts_with("/root\n0\n"), "{from_file}");
    let r = lade.run(["run", path, "--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);

    // Read-only, as the user: the root is the FUSE mount itself (no overlay over the whole
    // image), its files show as the user's so that /root (0700) opens, and the mount points
    // the file lacks (the home directory, a -b target in /srv) come from a small overlay of
    // their parent, the parent's own entries still there.
    let bound = lade.path("bound");
    fs::create_dir_all(&bound).unwrap();
    fs::write(bound.join("note"), "from the host\n").unwrap();
    let script = format!(
        "grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1; \
         stat -c '%u %a' /root; ls -a /root | grep -c bashrc; \
         test -d /home/{user} && echo home; cat /srv/bound/note; ls /srv"
    );
    let out = lade.ok([
        "run",
        "-b",
        &format!("{}:/srv/bound", bound.display()),
        path,
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let uid = rustix::process::getuid().as_raw();
    assert_eq!(
        out,
        format!("fuse.squashfuse\n{uid} 700\n1\nhome\nfrom the host\nbound\n")
    );
    let mut c = lade.cmd();
    c.args(["run", path]).stdin(std::process::Stdio::piped());
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo from-bash $BASH_VERSION\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("from-bash 5"),
        "the image's Cmd (/bin/bash) did not run: {out:?}"
    );
}
