//! The `.dockerignore` matcher against Docker's own test tables.
//!
//! Test data copied from moby/patternmatcher (Apache-2.0, as lade), `patternmatcher_test.go`
//! at commit 1d6a3f429bf0541b7f69372adecc787fabc0c701: `TestMatches` (`tests` and
//! `multiPatternTests`), `matchTests` (which that file took from Go's `filepath.Match` tests),
//! the single-test functions above them, and `ignorefile/ignorefile_test.go`'s `TestReadAll`.
//! The expectations are theirs, unchanged; only the Go syntax is translated.

use std::path::Path;

use super::*;

/// moby's `testMatchType`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    Fail,
    Exact,
    Inexact,
}
use Want::*;

fn ignore(patterns: &[&str]) -> Result<Ignore> {
    Ignore::parse(&patterns.join("\n"), "t")
}

/// `MatchesOrParentMatches(text)` of moby's matcher made of `patterns`.
fn or_parent(patterns: &[&str], text: &str) -> bool {
    ignore(patterns)
        .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
        .excluded(Path::new(text))
}

/// `MatchesExact(text)`: the pattern against the path itself, no parents.
fn exact(pattern: &str, text: &str) -> bool {
    let ig = ignore(&[pattern]).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    ig.patterns[0].0.matches(text.as_bytes())
}

const MATCHES: &[(&str, &str, Want)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact), // weird one
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    // The non-Windows additions.
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

const MULTI: &[(&[&str], &str, Want)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", Fail),
    (
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo",
        Exact,
    ),
    (
        &[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        ],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
    (
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
];

/// `matchTests`: (pattern, name, matches, is a bad pattern).
const GO_MATCH: &[(&str, &str, bool, bool)] = &[
    ("abc", "abc", true, false),
    ("*", "abc", true, false),
    ("*c", "abc", true, false),
    ("a*", "a", true, false),
    ("a*", "abc", true, false),
    ("a*", "ab/c", true, false),
    ("a*/b", "abc/b", true, false),
    ("a*/b", "a/c/b", false, false),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
    ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
    ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
    ("ab[c]", "abc", true, false),
    ("ab[b-d]", "abc", true, false),
    ("ab[e-g]", "abc", false, false),
    ("ab[^c]", "abc", false, false),
    ("ab[^b-d]", "abc", false, false),
    ("ab[^e-g]", "abc", true, false),
    ("a\\*b", "a*b", true, false),
    ("a\\*b", "ab", false, false),
    ("a?b", "a☺b", true, false),
    ("a[^a]b", "a☺b", true, false),
    ("a???b", "a☺b", false, false),
    ("a[^a][^a][^a]b", "a☺b", false, false),
    ("[a-ζ]*", "α", true, false),
    ("*[a-ζ]", "A", false, false),
    ("a?b", "a/b", false, false),
    ("a*b", "a/b", false, false),
    ("[\\]a]", "]", true, false),
    ("[\\-]", "-", true, false),
    ("[x\\-]", "x", true, false),
    ("[x\\-]", "-", true, false),
    ("[x\\-]", "z", false, false),
    ("[\\-x]", "x", true, false),
    ("[\\-x]", "-", true, false),
    ("[\\-x]", "a", false, false),
    ("[]a]", "]", false, true),
    ("[-]", "-", false, true),
    ("[x-]", "x", false, true),
    ("[x-]", "-", false, true),
    ("[x-]", "z", false, true),
    ("[-x]", "x", false, true),
    ("[-x]", "-", false, true),
    ("[-x]", "a", false, true),
    ("\\", "a", false, true),
    ("[a-b-c]", "a", false, true),
    ("[", "a", false, true),
    ("[^", "a", false, true),
    ("[^bc", "a", false, true),
    ("a[", "a", false, true), // was nil but IMO its wrong
    ("a[", "ab", false, true),
    ("*x", "xxx", true, false),
];

#[test]
fn moby_matches_table() {
    for &(pattern, text, want) in MATCHES {
        assert_eq!(
            exact(pattern, text),
            want == Exact,
            "MatchesExact: pattern {pattern:?}, text {text:?}"
        );
        assert_eq!(
            or_parent(&[pattern], text),
            want != Fail,
            "MatchesOrParentMatches: pattern {pattern:?}, text {text:?}"
        );
    }
    for &(patterns, text, want) in MULTI {
        assert_eq!(
            or_parent(patterns, text),
            want != Fail,
            "patterns {patterns:?}, text {text:?}"
        );
    }
}

#[test]
fn go_filepath_match_table() {
    for &(pattern, name, matches, bad) in GO_MATCH {
        match ignore(&[pattern]) {
            Err(_) => assert!(bad, "{pattern:?} refused"),
            Ok(ig) => {
                assert!(!bad, "{pattern:?} accepted");
                assert_eq!(
                    ig.excluded(Path::new(name)),
                    matches,
                    "pattern {pattern:?}, name {name:?}"
                );
            }
        }
    }
}

#[test]
fn moby_single_tests() {
    // TestWildcardMatches, TestPatternMatches, the exclusion tests.
    assert!(or_parent(&["*"], "fileutils.go"));
    assert!(or_parent(&["*.go"], "fileutils.go"));
    assert!(or_parent(&["!fileutils.go", "*.go"], "fileutils.go"));
    assert!(!or_parent(&["docs", "!docs/README.md"], "docs/README.md"));
    assert!(!or_parent(&["docs/", "!docs/README.md"], "docs/README.md"));
    assert!(!or_parent(&["docs/*", "!docs/README.md"], "docs/README.md"));
    assert!(!or_parent(&["*.go", "!fileutils.go"], "fileutils.go"));
    // TestSingleExclamationError, TestMatchesWithMalformedPatterns.
    assert!(ignore(&["!"]).is_err());
    assert!(ignore(&["["]).is_err());
    // TestMatchesWithNoPatterns.
    assert!(!or_parent(&[], "/any/path/there"));
    // TestCleanPatterns*: blanks dropped, spaces trimmed around `!`.
    assert_eq!(ignore(&["docs", "config", ""]).unwrap().patterns.len(), 2);
    assert!(
        ignore(&["docs", "  !docs/README.md"])
            .unwrap()
            .has_exceptions()
    );
    assert!(
        ignore(&["docs", "!docs/README.md  "])
            .unwrap()
            .has_exceptions()
    );
    // TestMatchesOrParentMatchesMalformedPatternDoesNotPanicOnRepeatedCall: Docker finds
    // `[Local-Only]` bad (its range l-O is reversed) at the first match; lade when reading.
    assert!(ignore(&["[Local-Only]/"]).is_err());
}

#[test]
fn moby_read_all() {
    // ignorefile_test.go's TestReadAll, through the same line reading.
    let content =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    let got: Vec<String> = content
        .split('\n')
        .filter_map(|l| read_line(l.as_bytes()))
        .map(|(p, e)| {
            format!(
                "{}{}",
                if e { "!" } else { "" },
                String::from_utf8_lossy(&p)
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
}

/// The corners issue 12 lists, and others where Go's regexp decides, each checked against
/// what Docker's code does with it (worked through its translation by hand).
#[test]
fn docker_corners() {
    // `**` glued to other characters crosses directories.
    assert!(or_parent(&["**.pyc"], "a/b/c.pyc"));
    assert!(or_parent(&["a**/*.txt"], "a/b/c/d.txt"));
    assert!(or_parent(&["a**/*.txt"], "ab.txt"));
    // Braces are literal, and an unbalanced one is fine.
    assert!(or_parent(&["{a,b}.txt"], "{a,b}.txt"));
    assert!(!or_parent(&["{a,b}.txt"], "a.txt"));
    assert!(or_parent(&["x{*"], "x{y"));
    // One character, not one byte.
    assert!(or_parent(&["?"], "é"));
    assert!(or_parent(&["[^a]"], "☺"));
    assert!(!or_parent(&["??"], "é"));
    // `[^…]` becomes a regexp class, which takes a `/` too.
    assert!(or_parent(&["a[^x]b"], "a/b"));
    // A backslash escapes in a class.
    assert!(or_parent(&["[\\]]x"], "]x"));
    // Go's regexp syntax inside classes and escapes.
    assert!(or_parent(&["[[:digit:]]*"], "7up"));
    assert!(!or_parent(&["[[:digit:]]*"], "up"));
    assert!(or_parent(&["\\d"], "5"));
    assert!(!or_parent(&["\\d"], "d"));
    assert!(ignore(&["\\q"]).is_err(), "\\q is no Go escape");
    assert!(ignore(&["[[:nope:]]"]).is_err());
    // `[a*]`: the `*` becomes `[^/]*`, whose `]` closes the class.
    assert!(or_parent(&["[a*]"], "a]"));
    assert!(!or_parent(&["[a*]"], "a"));
    // `^` anchors in a wildcard pattern, and is a character in a plain one.
    assert!(!or_parent(&["a^b*"], "a^bc"));
    assert!(or_parent(&["a^b"], "a^b"));
    // Cleaning: `..` at the start is kept (and matches nothing), `!/` is a lone `!`.
    assert!(!or_parent(&["../a"], "a"));
    assert!(or_parent(&["x/../a"], "a"));
    assert!(ignore(&["!/"]).is_err());
    // A BOM starts the file, not the pattern; `\r\n` line ends; `#` only at the very start.
    let ig = Ignore::parse_bytes(b"\xef\xbb\xbfa\r\n # b\n", "t").unwrap();
    assert!(ig.excluded(Path::new("a")));
    assert!(ig.excluded(Path::new("# b")));
    // Bytes that are not UTF-8 are one character each to `?`.
    let ig = Ignore::parse_bytes(b"x?\n", "t").unwrap();
    assert!(ig.excluded(Path::new(std::ffi::OsStr::from_bytes(b"x\xff"))));
}

#[test]
fn errors_name_the_line() {
    let e = Ignore::parse("ok\n[unclosed\n", ".dockerignore")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".dockerignore:2"), "{e}");
    let long = "a".repeat(70_000);
    let e = Ignore::parse(&format!("x\n{long}\n"), ".dockerignore")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".dockerignore:2") && e.contains("64 KiB"), "{e}");
}
