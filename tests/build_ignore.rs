//! `.dockerignore` in the build context: what COPY sees, `!` exceptions, errors, and the
//! cache not missing on changes to ignored files; on the busybox fixture, as an ordinary
//! user.

mod common;

use std::fs;

use common::*;

#[test]
fn dockerignore_hides_files_from_copy_and_the_cache() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("multi"), "base"]);
    let ctx = lade.path("ctx");
    let file = |rel: &str, content: &str| {
        let p = ctx.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    };
    file(
        ".dockerignore",
        "# build output\n*.log\n/secret\nbuild\n!build/keep.txt\n**/*.tmp\n",
    );
    for f in [
        "a.txt",
        "b.log",
        "secret/key",
        "sub/c.log",
        "sub/d.tmp",
        "build/x.o",
        "build/keep.txt",
        "build/deep/y.o",
    ] {
        file(f, f);
    }
    let build = |df: &str| {
        fs::write(ctx.join("Dockerfile"), df).unwrap();
        let mut c = lade.cmd();
        c.args(["build", "-t", "t"]).arg(&ctx);
        run_cmd(c)
    };
    let df = "FROM base\nCOPY . /app/\nRUN true\n";
    let r = build(df).ok();
    assert_eq!(marks(&r.stdout), "*..");
    let out = lade.ok(["run", "t", "--", "find", "/app"]);
    let mut found: Vec<&str> = out.lines().collect();
    found.sort();
    assert_eq!(
        found,
        [
            "/app",
            "/app/.dockerignore",
            "/app/Dockerfile",
            "/app/a.txt",
            "/app/build",
            "/app/build/keep.txt",
            "/app/sub",
            "/app/sub/c.log",
        ]
    );

    // Changing ignored files changes nothing; changing a seen file misses its COPY.
    file("b.log", "changed");
    file("build/x.o", "changed");
    file("secret/key", "changed");
    assert_eq!(marks(&build(df).ok().stdout), "***");
    file("a.txt", "changed");
    assert_eq!(marks(&build(df).ok().stdout), "*..");

    // Naming an ignored file is an error; a glob that finds only ignored files too.
    let err = build("FROM base\nCOPY secret/key /k\n").fails_one_line();
    assert!(
        err.contains("secret/key") && err.contains("excluded by .dockerignore"),
        "{err}"
    );
    let err = build("FROM base\nCOPY *.log /logs/\n").fails_one_line();
    assert!(err.contains("excluded by .dockerignore"), "{err}");
    // A bad pattern names the file and line.
    file(".dockerignore", "ok\n[oops\n");
    let err = build("FROM base\n").fails_one_line();
    assert!(err.contains(".dockerignore:2"), "{err}");
    lade.fsck_ok();
}
