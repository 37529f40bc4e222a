//! `.dockerignore` matched as Docker's matcher (moby/patternmatcher) does, through a real
//! `lade build` as an ordinary user: the corners where globset, which lade used before, and
//! Docker disagree (issue 12, item 7). The matcher's unit tests check Docker's own tables.

mod common;

use common::*;

#[test]
fn dockerignore_corners_match_docker() {
    let b = BuildCtx::new();
    // `**.pyc` crosses directories; `{` is literal (an unbalanced one does not fail the
    // build); `?` takes one character, `é` being two bytes; a BOM starts the file.
    b.file(".dockerignore", "\u{feff}**.pyc\nbrace{\n{a,b}.txt\nx?\n");
    for f in [
        "keep.txt",
        "m.pyc",
        "pkg/sub/n.pyc",
        "brace{",
        "a.txt",
        "{a,b}.txt",
        "xé",
        "xyz",
    ] {
        b.file(f, f);
    }
    b.build("t", "FROM base\nCOPY . /app/\n").ok();
    let out = b.lade.ok(["run", "t", "--", "find", "/app", "-type", "f"]);
    let mut found: Vec<&str> = out.lines().collect();
    found.sort();
    assert_eq!(
        found,
        [
            "/app/.dockerignore",
            "/app/Dockerfile",
            "/app/a.txt",
            "/app/keep.txt",
            "/app/xyz",
        ]
    );
}

#[test]
fn malformed_dockerignore_patterns_fail_as_in_docker() {
    for bad in ["[]a]", "[-x]", "[x-]", "[a-b-c]", "!"] {
        let b = BuildCtx::new();
        b.file(".dockerignore", &format!("ok\n{bad}\n"));
        let err = b.build("t", "FROM base\nCOPY . /app/\n").fails_one_line();
        assert!(err.contains(".dockerignore:2"), "{bad}: {err}");
    }
}
