//! `lade run`'s IMAGE and `-b` arguments: container paths are cleaned before use (a bind
//! destination never reaches outside the container's root on the host, in `run` or in `build`),
//! and a bare IMAGE naming a directory runs that directory as `ch-run DIR` does.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn store_with_busybox() -> Lade {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("multi"), "bb"]);
    lade
}

/// Every path under `dir` whose name starts with `prefix` (symbolic links not followed).
fn find_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&p, prefix));
        }
    }
    found
}

/// `/..` repeated `n` times, then `/NAME`: with 3 the old code joined it to a directory two
/// levels below the store and created NAME beside the store; deeper ones land in `$TMPDIR`
/// (never deeper than that here, so a failing run leaves nothing outside the test's
/// directories).
fn climbing(n: usize, name: &str) -> String {
    format!("{}/{name}", "/..".repeat(n))
}

#[test]
fn bind_destinations_are_cleaned_and_climbing_out_is_refused() {
    let lade = store_with_busybox();
    let src = lade.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("in"), "bound\n").unwrap();
    // `..` inside the container's tree is resolved lexically: /a/../inside is /inside.
    let bind = format!("{}:/a/../inside", src.display());
    for extra in [&[][..], &["--write"][..]] {
        let mut args = vec!["run", "-b", &bind];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb", "--", "/bin/sh", "-c", "cat /inside/in; ls -d /a"]);
        let r = lade.run(args);
        assert_eq!(r.stdout, "bound\n", "{extra:?}: {}", r.stderr);
        assert!(!r.success(), "/a must not exist: {extra:?}");
    }

    let tag = format!("escaped-{}", std::process::id());
    let tmpdir = std::env::temp_dir();
    for depth in 1..=4 {
        let dst = climbing(depth, &format!("{tag}-{depth}"));
        let bind = format!("{}:{dst}", src.display());
        for extra in [&[][..], &["--write"][..]] {
            let mut args = vec!["run", "-b", &bind];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["bb", "--", "/bin/true"]);
            let err = lade.run(args).fails_one_line();
            assert!(
                err.contains(&dst) && err.contains("outside"),
                "{dst} {extra:?}: {err}"
            );
        }
    }
    let escaped = find_named(&tmpdir, &tag);
    assert!(escaped.is_empty(), "created on the host: {escaped:?}");
}

#[test]
fn build_bind_destinations_are_cleaned_and_climbing_out_is_refused() {
    let b = BuildCtx::new();
    let src = b.lade.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("in"), "bound\n").unwrap();
    fs::write(
        b.ctx.join("Dockerfile"),
        "FROM base\nRUN cat /x/in > /copied\n",
    )
    .unwrap();
    let bind = format!("{}:/y/../x", src.display());
    run_cmd(b.build_cmd(&["-b", &bind], "t")).ok();
    assert_eq!(b.lade.ok(["run", "t", "--", "cat", "/copied"]), "bound\n");
    assert_eq!(b.last_layer_names("t"), ["copied"]);

    let tag = format!("escaped-build-{}", std::process::id());
    for depth in 1..=4 {
        let dst = climbing(depth, &format!("{tag}-{depth}"));
        let bind = format!("{}:{dst}", src.display());
        let err = run_cmd(b.build_cmd(&["-b", &bind], "t")).fails_one_line();
        assert!(
            err.contains(&dst) && err.contains("outside"),
            "{dst}: {err}"
        );
    }
    let escaped = find_named(&std::env::temp_dir(), &tag);
    assert!(escaped.is_empty(), "created on the host: {escaped:?}");
}

/// `lade run DIR` with a bare relative name, as `ch-run DIR`: a name that is not a stored
/// image and names a directory runs that directory; a stored image of the same name wins.
#[test]
fn a_bare_directory_name_runs_that_directory() {
    let lade = store_with_busybox();
    let work = lade.path("work");
    fs::create_dir_all(&work).unwrap();
    lade.ok([
        "unpack".as_ref(),
        "bb".as_ref(),
        work.join("rootfs").as_os_str(),
    ]);
    fs::write(work.join("rootfs/which"), "the directory\n").unwrap();
    let run_in_work = |image: &str| {
        let mut c = lade.cmd();
        c.current_dir(&work)
            .args(["run", image, "--", "/bin/cat", "/which"]);
        run_cmd(c)
    };
    assert_eq!(run_in_work("rootfs").ok().stdout, "the directory\n");
    assert_eq!(run_in_work("rootfs/").ok().stdout, "the directory\n");
    // Not a valid image name, but a directory: still the directory.
    fs::rename(work.join("rootfs"), work.join("RootFS")).unwrap();
    assert_eq!(run_in_work("RootFS").ok().stdout, "the directory\n");

    // A stored image named like a directory in the working directory: the image.
    fs::rename(work.join("RootFS"), work.join("bb")).unwrap();
    let r = run_in_work("bb");
    assert!(
        !r.success(),
        "ran the directory, not the image: {}",
        r.stdout
    );
    assert!(r.stderr.contains("/which"), "{}", r.stderr);
    let mut c = lade.cmd();
    c.current_dir(&work)
        .args(["run", "./bb", "--", "/bin/cat", "/which"]);
    assert_eq!(run_cmd(c).ok().stdout, "the directory\n");

    // Neither an image nor a directory: the image error, with the name.
    let err = run_in_work("nosuch").fails_one_line();
    assert!(err.contains("nosuch"), "{err}");
    // The rule is in the help.
    let help = lade.ok(["run", "--help"]).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("not a stored image"), "{help}");
}
