//! `.dockerignore` in the build context: what COPY sees, `!` exceptions, errors, and the
//! cache not missing on changes to ignored files; on the busybox fixture, as an ordinary
//! user.

mod common;

use common::*;

#[test]
fn dockerignore_hides_files_from_copy_and_the_cache() {
    let b = BuildCtx::new();
    b.file(
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
        b.file(f, f);
    }
    let df = "FROM base\nCOPY . /app/\nRUN true\n";
    let r = b.build("t", df).ok();
    assert_eq!(marks(&r.stdout), "*..");
    let out = b.lade.ok(["run", "t", "--", "find", "/app"]);
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
    b.file("b.log", "changed");
    b.file("build/x.o", "changed");
    b.file("secret/key", "changed");
    assert_eq!(marks(&b.build("t", df).ok().stdout), "***");
    b.file("a.txt", "changed");
    assert_eq!(marks(&b.build("t", df).ok().stdout), "*..");

    // Naming an ignored file is an error; a glob that finds only ignored files too.
    let err = b
        .build("t", "FROM base\nCOPY secret/key /k\n")
        .fails_one_line();
    assert!(
        err.contains("secret/key") && err.contains("excluded by .dockerignore"),
        "{err}"
    );
    let err = b
        .build("t", "FROM base\nCOPY *.log /logs/\n")
        .fails_one_line();
    assert!(err.contains("excluded by .dockerignore"), "{err}");
    // A bad pattern names the file and line.
    b.file(".dockerignore", "ok\n[oops\n");
    let err = b.build("t", "FROM base\n").fails_one_line();
    assert!(err.contains(".dockerignore:2"), "{err}");
    b.lade.fsck_ok();
}
