//! `lade run` and `lade build`'s RUN steps on a host like a cluster node, where a job's
//! scratch tmpfs sits under /tmp and an automounted file system under the home directory. In
//! a user namespace those submounts are locked to the trees they sit in, so every bind of such
//! a tree (the home directory, /tmp, `-b`, build `-b`) must take them along.
//!
//! The host is staged by `tests/cluster-host.sh` (which `tests/run-all.sh` and
//! `tests/as-user.sh` run the tests under): as root, in a private mount namespace, it mounts
//! one tmpfs under /tmp and one under the test user's home, and names them in
//! `LADE_TEST_CLUSTER_MOUNTS`. The test fails without them rather than pass on a host that
//! has no submounts.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const STAGE: &str = "LADE_TEST_CLUSTER_MOUNTS";

/// The staged submounts: (under /tmp, under the home directory), checked to be mount points.
fn staged_submounts() -> (PathBuf, PathBuf) {
    let value = std::env::var(STAGE).unwrap_or_else(|_| {
        panic!(
            "{STAGE} is not set: run this test through tests/as-user.sh or tests/run-all.sh, \
             which stage a cluster-like host (tests/cluster-host.sh)"
        )
    });
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let points: HashSet<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
    let mut under_tmp = None;
    let mut under_home = None;
    for m in value.split(':').map(PathBuf::from) {
        assert!(
            points.contains(m.to_str().unwrap()),
            "{} is not a mount point here: the cluster-host stage is missing\n{info}",
            m.display()
        );
        if m.starts_with("/tmp") && m != Path::new("/tmp") {
            under_tmp = Some(m);
        } else if m.starts_with(&home) && m != home {
            under_home = Some(m);
        }
    }
    match (under_tmp, under_home) {
        (Some(t), Some(h)) => (t, h),
        _ => panic!("{STAGE}={value}: expected a mount under /tmp and one under {home:?}"),
    }
}

/// A file with `text` in `dir`, removed on drop.
struct Marker(PathBuf);

impl Marker {
    fn new(dir: &Path, text: &str) -> Marker {
        let p = dir.join(format!("lade-marker-{}", std::process::id()));
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        Marker(p)
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn binds_take_the_hosts_submounts_along() {
    let (tmp_mount, home_mount) = staged_submounts();
    let in_tmp = Marker::new(&tmp_mount, "job scratch\n");
    let in_home = Marker::new(&home_mount, "automounted\n");
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let user = std::env::var("USER").unwrap();
    // Where the home marker appears inside: the home directory is bound at /home/$USER.
    let home_inside = Path::new("/home")
        .join(&user)
        .join(in_home.0.strip_prefix(&home).unwrap());

    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("multi"), "bb"]);
    let rootfs = lade.path("rootfs");
    lade.ok(["unpack".as_ref(), "bb".as_ref(), rootfs.as_os_str()]);
    let cat = |extra: &[&str], image: &str, files: &[&Path]| {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([image.to_string(), "--".into(), "/bin/cat".into()]);
        args.extend(files.iter().map(|f| f.display().to_string()));
        lade.run(args)
    };
    let both = "job scratch\nautomounted\n";
    // The default binds (/tmp and the home directory), read-only root and writable, an image
    // of the store and an unpacked directory.
    for image in ["bb", rootfs.to_str().unwrap()] {
        for extra in [&[][..], &["--write"][..]] {
            let r = cat(extra, image, &[&in_tmp.0, &home_inside]);
            assert_eq!(r.ok().stdout, both, "{image} {extra:?}");
        }
    }
    // -b of the trees holding the submounts.
    let tmp_bind = "/tmp:/mnt/tmp".to_string();
    let home_bind = format!("{}:/mnt/home", home.display());
    let inside =
        |mnt: &str, host: &Path, base: &Path| Path::new(mnt).join(host.strip_prefix(base).unwrap());
    let files = [
        inside("/mnt/tmp", &in_tmp.0, Path::new("/tmp")),
        inside("/mnt/home", &in_home.0, &home),
    ];
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    for extra in [&[][..], &["--write"][..]] {
        let mut args = vec!["--no-home", "-b", &tmp_bind, "-b", &home_bind];
        args.extend_from_slice(extra);
        assert_eq!(cat(&args, "bb", &refs).ok().stdout, both, "{extra:?}");
    }

    // A build's RUN step with the same binds.
    let b = BuildCtx::in_store(lade);
    let df = format!(
        "FROM bb\nRUN cat {} {} > /copied\n",
        refs[0].display(),
        refs[1].display()
    );
    fs::write(b.ctx.join("Dockerfile"), df).unwrap();
    run_cmd(b.build_cmd(&["-b", &tmp_bind, "-b", &home_bind], "t")).ok();
    assert_eq!(b.lade.ok(["run", "t", "--", "cat", "/copied"]), both);
}
