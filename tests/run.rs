//! `lade run`: an unprivileged container, checked as the ordinary user CI runs the suite as.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// A store holding the busybox fixture as `bb`, and a copy of it with a config that sets
/// Env, WorkingDir, Entrypoint and Cmd (made with umoci) as `cfg`.
fn store_with_images() -> Lade {
    let lade = Lade::new();
    let f = fixtures();
    lade.ok(["pull", &f.oci("multi"), "bb"]);
    let layout = lade.path("cfg-layout");
    let r = run_cmd({
        let mut c = Command::new("cp");
        c.arg("-a").arg(f.layout()).arg(&layout);
        c
    });
    assert!(r.success(), "{}", r.stderr);
    let image = format!("{}:multi", layout.display());
    let r = run_cmd({
        let mut c = Command::new("umoci");
        c.args(["config", "--image", &image, "--tag", "cfg"])
            .args(["--config.env", "GREETING=hello from the image"])
            .args(["--config.env", "PATH=/bin:/usr/bin"])
            .args(["--config.workingdir", "/data"])
            .args(["--config.entrypoint", "/bin/sh"])
            .args(["--config.entrypoint", "-c"])
            .args(["--config.cmd", "echo default cmd in $(pwd): $GREETING"]);
        c
    });
    assert!(r.success(), "umoci config: {}", r.stderr);
    lade.ok(["pull", &format!("oci:{}:cfg", layout.display()), "cfg"]);
    let r = run_cmd({
        let mut c = Command::new("umoci");
        c.args([
            "config",
            "--image",
            &image,
            "--tag",
            "noenv",
            "--clear=config.env",
        ]);
        c
    });
    assert!(r.success(), "umoci config: {}", r.stderr);
    lade.ok(["pull", &format!("oci:{}:noenv", layout.display()), "noenv"]);
    lade
}

fn sh(lade: &Lade, extra: &[&str], script: &str) -> Run {
    let mut args: Vec<&str> = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb", "--", "/bin/sh", "-c", script]);
    lade.run(args)
}

#[test]
fn exit_status_and_output_pass_through() {
    let lade = store_with_images();
    let r = sh(&lade, &[], "echo out; echo err >&2; exit 7");
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);
    assert_eq!(r.stdout, "out\n");
    assert!(r.stderr.contains("err"));
    assert_eq!(sh(&lade, &[], "true").status.code(), Some(0));
}

#[test]
fn runs_as_the_caller_or_as_root_inside() {
    let lade = store_with_images();
    let me = rustix::process::getuid().as_raw();
    assert_eq!(sh(&lade, &[], "id -u").ok().stdout.trim(), me.to_string());
    let r = sh(&lade, &["--uid", "0", "--gid", "0"], "id -u; id -g").ok();
    assert_eq!(r.stdout, "0\n0\n");
}

#[test]
fn image_config_env_workdir_entrypoint_cmd() {
    let lade = store_with_images();
    let out = lade.ok(["run", "cfg"]);
    assert_eq!(out, "default cmd in /data: hello from the image\n");
    // Arguments replace Cmd but keep the Entrypoint (sh -c).
    let out = lade.ok(["run", "cfg", "--", "echo $GREETING; pwd"]);
    assert_eq!(out, "hello from the image\n/data\n");
    let out = lade.ok([
        "run",
        "--cd",
        "/etc",
        "--set-env",
        "GREETING=changed",
        "--set-env",
        "EXTRA=1",
        "--unset-env",
        "EXT*",
        "cfg",
        "--",
        "echo $GREETING ${EXTRA:-unset}; pwd",
    ]);
    assert_eq!(out, "changed unset\n/etc\n");
}

#[test]
fn default_path_applies_when_the_image_has_none() {
    let lade = store_with_images();
    let out = lade.ok(["run", "noenv", "--", "/bin/sh", "-c", "echo $PATH"]);
    // This image's config has no Env at all, so ch-image's default PATH applies.
    assert_eq!(
        out.trim(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

#[test]
fn root_is_read_only_and_write_is_discarded() {
    let lade = store_with_images();
    let r = sh(&lade, &[], "touch /newfile");
    assert_ne!(r.status.code(), Some(0));
    assert!(r.stderr.contains("Read-only"), "{}", r.stderr);
    sh(
        &lade,
        &["--write"],
        "echo x > /newfile && rm /bin/busybox.not-there 2>/dev/null; cat /newfile",
    )
    .ok();
    assert_ne!(
        sh(&lade, &[], "test -e /newfile").status.code(),
        Some(0),
        "--write leaked"
    );
    // --write=DIR keeps the changes in DIR/upper.
    let keep = lade.path("keep");
    let arg = format!("--write={}", keep.display());
    sh(&lade, &[&arg], "echo kept > /kept").ok();
    assert_eq!(
        fs::read_to_string(keep.join("upper/kept")).unwrap(),
        "kept\n"
    );
    // The image itself is unchanged.
    assert_ne!(sh(&lade, &[], "test -e /kept").status.code(), Some(0));
}

#[test]
fn binds_and_home() {
    let lade = store_with_images();
    let host = lade.path("shared");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let bind = format!("{}:/mnt/shared", host.display());
    let out = sh(
        &lade,
        &["-b", &bind],
        "cat /mnt/shared/in; echo back > /mnt/shared/out",
    )
    .ok()
    .stdout;
    assert_eq!(out, "from host\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let err = lade
        .run(["run", "-b", "/nonexistent-lade-src", "bb", "--", "true"])
        .fails_one_line();
    assert!(err.contains("bind source does not exist"), "{err}");
    // --no-home leaves /home as the image has it.
    let out = sh(&lade, &["--no-home"], "ls /home 2>/dev/null | wc -l")
        .ok()
        .stdout;
    assert_eq!(out.trim(), "0");
}

#[test]
fn nothing_of_the_host_becomes_writable() {
    if rustix::process::getuid().is_root() {
        eprintln!("skipped: as root everything is writable anyway; CI runs this as a user");
        return;
    }
    let lade = store_with_images();
    // Even as uid 0 inside, host files owned by others stay out of reach.
    let probes = [
        "echo x >> /etc/hosts",
        "echo x > /proc/sys/kernel/hostname",
        "echo x > /sys/kernel/mm/transparent_hugepage/enabled",
        "mkdir /mnt/etc/lade-probe",
        "echo x >> /mnt/etc/passwd",
        "chmod 777 /mnt/etc",
        "touch /mnt/etc/shadow",
        "echo x > /dev/sda 2>/dev/null || echo x > /dev/vda",
    ];
    // (Mounting inside the container succeeds, and should: it changes only the container's
    // own mount namespace, never the host's.)
    for probe in probes {
        let r = lade.run([
            "run",
            "--uid",
            "0",
            "-b",
            "/etc:/mnt/etc",
            "bb",
            "--",
            "/bin/sh",
            "-c",
            probe,
        ]);
        assert_ne!(
            r.status.code(),
            Some(0),
            "probe succeeded: {probe}\n{}",
            r.stderr
        );
    }
    assert!(!std::path::Path::new("/etc/lade-probe").exists());
    let perms = fs::metadata("/etc").unwrap().permissions().mode() & 0o777;
    assert_eq!(perms, 0o755);
}

#[test]
fn missing_command_and_bad_options_fail_clearly() {
    let lade = store_with_images();
    let err = lade
        .run(["run", "bb", "--", "no-such-command"])
        .fails_one_line();
    assert!(err.contains("not found in the image"), "{err}");
    let err = lade
        .run(["run", "nosuchimage", "--", "true"])
        .fails_one_line();
    assert!(err.contains("not found"), "{err}");
    let err = lade
        .run(["run", "--cd", "/nope", "bb", "--", "true"])
        .fails_one_line();
    assert!(err.contains("/nope"), "{err}");
}

#[test]
fn runs_an_unpacked_directory() {
    let lade = store_with_images();
    let dir = lade.path("rootfs");
    lade.ok(["unpack".as_ref(), "bb".as_ref(), dir.as_os_str()]);
    let out = lade.ok([
        "run".as_ref(),
        dir.as_os_str(),
        "--".as_ref(),
        "/bin/sh".as_ref(),
        "-c".as_ref(),
        "echo dir ok".as_ref(),
    ]);
    assert_eq!(out, "dir ok\n");
}

/// The read-only root: mount points the image lacks come from a shared mount-point layer (and
/// the choice is remembered); nothing of them reaches the image, and a remembered layer that
/// has gone is made again.
#[test]
fn mount_point_layer_is_shared_remembered_and_remade() {
    let lade = store_with_images();
    let data = lade.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("in"), "bound\n").unwrap();
    let bind = format!("{}:/no/such/dir/in/image", data.display());
    let r = sh(
        &lade,
        &["-b", &bind],
        "cat /no/such/dir/in/image/in; ls -d /dev /proc /home",
    );
    assert_eq!(r.ok().stdout.lines().next(), Some("bound"));
    let dir = lade.storage.join("mountpoints");
    let names = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let memos: Vec<String> = names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("for-"))
        .collect();
    assert_eq!(memos.len(), 1, "{:?}", names(&dir));
    let layer = fs::read_to_string(dir.join(&memos[0])).unwrap();
    assert!(dir.join(layer.trim()).join("no/such/dir/in/image").is_dir());
    // The image is untouched: its own trees have no such directory.
    let unpacked = lade.path("unpacked");
    lade.ok(["unpack".as_ref(), "bb".as_ref(), unpacked.as_os_str()]);
    assert!(!unpacked.join("no").exists());
    // The same run again uses the memo; with the layer gone it is made again.
    fs::remove_dir_all(dir.join(layer.trim())).unwrap();
    let r = sh(&lade, &["-b", &bind], "cat /no/such/dir/in/image/in");
    assert_eq!(r.ok().stdout, "bound\n");
    assert!(dir.join(layer.trim()).is_dir());
}

/// An image whose /etc/resolv.conf and /etc/hosts are symbolic links (to systemd-resolved's
/// stub, say) still gets the host's files, read-only and with --write; a -b target through a
/// link stays an error.
#[test]
fn name_resolution_files_replace_image_symlinks() {
    let lade = store_with_images();
    let tree = lade.path("linked");
    lade.ok(["unpack".as_ref(), "bb".as_ref(), tree.as_os_str()]);
    fs::create_dir_all(tree.join("etc")).unwrap();
    for f in ["hosts", "resolv.conf"] {
        let p = tree.join("etc").join(f);
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &p).unwrap();
    }
    lade.ok(["import".as_ref(), tree.as_os_str(), "linked".as_ref()]);
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        let Ok(host) = fs::read_to_string(f) else {
            continue;
        };
        for extra in [&[][..], &["--write"][..]] {
            let mut args = vec!["run"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["linked", "--", "/bin/cat", f]);
            assert_eq!(lade.run(args).ok().stdout, host, "{f} {extra:?}");
        }
    }
    let data = lade.path("d");
    fs::create_dir_all(&data).unwrap();
    let bind = format!("{}:/etc/resolv.conf/x", data.display());
    let err = lade
        .run(["run", "-b", &bind, "linked", "--", "/bin/true"])
        .fails_one_line();
    assert!(err.contains("symbolic link"), "{err}");
}
