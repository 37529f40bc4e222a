//! What a `lade build` RUN step sees from the host: `-b/--bind` directories and the proxy
//! variables (ch-image's semantics), on the busybox fixture, as an ordinary user.

mod common;

use std::fs;

use common::*;

impl BuildCtx {
    /// Write `df` as the Dockerfile and run `lade build EXTRA... -t t CTX` with `env` added.
    fn build_with(&self, extra: &[&str], df: &str, env: &[(&str, &str)]) -> Run {
        fs::write(self.ctx.join("Dockerfile"), df).unwrap();
        let mut c = self.build_cmd(extra, "t");
        for (k, v) in env {
            c.env(k, v);
        }
        run_cmd(c)
    }
}

#[test]
fn bind_mounts_host_directories_into_run_only() {
    let b = BuildCtx::new();
    let host = b.lade.path("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in.txt"), "from the host\n").unwrap();
    let spec = format!("{}:/srv/lade/in", host.display());
    // The image has no /srv: the mount point is made for the step, and left out of its layer.
    assert!(!b.lade.ok(["run", "base", "--", "ls", "/"]).contains("srv"));
    let r = b.build_with(
        &["-b", &spec],
        "FROM base\nRUN cat /srv/lade/in/in.txt > /copied && echo back > /srv/lade/in/out.txt\n",
        &[],
    );
    r.ok();
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/copied"]),
        "from the host\n"
    );
    assert_eq!(fs::read_to_string(host.join("out.txt")).unwrap(), "back\n");
    assert_eq!(b.last_layer_names("t"), ["copied"]);

    // -b SRC alone binds at the same path; COPY still sees only the context.
    let same = b.lade.path("same");
    fs::create_dir_all(&same).unwrap();
    fs::write(same.join("f"), "same path\n").unwrap();
    let df = format!("FROM base\nRUN cat {}/f > /same\n", same.display());
    b.build_with(&["--bind", same.to_str().unwrap()], &df, &[])
        .ok();
    assert_eq!(b.lade.ok(["run", "t", "--", "cat", "/same"]), "same path\n");

    // Bad binds are one-line errors naming the option.
    let missing = b.lade.path("missing");
    let err = b
        .build_with(&["-b", missing.to_str().unwrap()], "FROM base\n", &[])
        .fails_one_line();
    assert!(err.contains("-b") && err.contains("missing"), "{err}");
    let err = b
        .build_with(
            &["-b", &format!("{}:rel", host.display())],
            "FROM base\n",
            &[],
        )
        .fails_one_line();
    assert!(err.contains("DST must be an absolute path"), "{err}");
}

#[test]
fn proxy_variables_reach_run_and_do_not_miss_the_cache() {
    let b = BuildCtx::new();
    let df = "FROM base\nRUN env | grep -i _proxy | sort > /proxies\n";
    let env = [
        ("HTTP_PROXY", "http://proxy.invalid:3128"),
        ("no_proxy", "localhost"),
    ];
    let r = b.build_with(&[], df, &env).ok();
    assert_eq!(marks(&r.stdout), "*.");
    assert_eq!(
        b.lade.ok(["run", "t", "--", "cat", "/proxies"]),
        "HTTP_PROXY=http://proxy.invalid:3128\nno_proxy=localhost\n"
    );
    // A changed proxy is not a change of the build (ch-image).
    let r = b
        .build_with(&[], df, &[("HTTP_PROXY", "http://other.invalid:8080")])
        .ok();
    assert_eq!(marks(&r.stdout), "**");
    // And they are substituted without an ARG.
    let r = b
        .build_with(
            &[],
            "FROM base\nLABEL p=$HTTPS_PROXY\n",
            &[("HTTPS_PROXY", "http://s.invalid")],
        )
        .ok();
    assert_eq!(marks(&r.stdout), "*.");
    assert_eq!(b.config("t")["config"]["Labels"]["p"], "http://s.invalid");
}

/// A base whose /etc/resolv.conf is a symbolic link (systemd-resolved's stub): RUN sees the
/// host's file, and the step's layer leaves the image's link alone.
#[test]
fn run_sees_host_resolv_conf_over_an_image_symlink_and_keeps_the_link() {
    let Ok(host) = fs::read_to_string("/etc/resolv.conf") else {
        eprintln!("skipped: the host has no /etc/resolv.conf");
        return;
    };
    let b = BuildCtx::new();
    let tree = b.lade.path("linked");
    b.lade
        .ok(["unpack".as_ref(), "base".as_ref(), tree.as_os_str()]);
    fs::create_dir_all(tree.join("etc")).unwrap();
    let _ = fs::remove_file(tree.join("etc/resolv.conf"));
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        tree.join("etc/resolv.conf"),
    )
    .unwrap();
    b.lade
        .ok(["import".as_ref(), tree.as_os_str(), "linked".as_ref()]);
    let out = b
        .build_with(
            &[],
            "FROM linked\nRUN cat /etc/resolv.conf > /seen && echo done\n",
            &[],
        )
        .ok()
        .stdout;
    assert!(out.contains("done"), "{out}");
    let names = b.last_layer_names("t");
    assert!(names.iter().any(|n| n == "seen"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("resolv.conf")),
        "{names:?}"
    );
    let root = b.lade.path("out");
    b.lade
        .ok(["unpack".as_ref(), "t".as_ref(), root.as_os_str()]);
    assert_eq!(fs::read_to_string(root.join("seen")).unwrap(), host);
    assert!(
        fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
