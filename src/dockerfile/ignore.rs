//! `.dockerignore`: which context files COPY and ADD (and so the build cache) do not see.
//!
//! Docker's rules (moby's `dockerignore` reader and `patternmatcher`):
//!
//! - one pattern a line; lines starting with `#` are comments; blank lines are skipped;
//!   surrounding white space is trimmed;
//! - a pattern is cleaned like Go's `filepath.Clean` and a leading `/` dropped, so patterns
//!   are relative to the context root whatever they start with;
//! - syntax is Go's `filepath.Match` (`*` and `?` within one path component, `[…]` classes,
//!   `\` escapes) plus `**`, any number of components;
//! - a pattern that matches a directory excludes everything under it;
//! - `!pattern` re-includes what it matches; the last pattern that matches a path decides.
//!
//! Difference: `{a,b}` alternation, which Go's syntax lacks, is accepted (globset has it).

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, IoContext, Result};

/// The parsed patterns of one `.dockerignore` (empty when there is none).
#[derive(Debug, Default)]
pub struct Ignore {
    /// (matcher, is an exception `!…`), in file order.
    patterns: Vec<(GlobMatcher, bool)>,
}

/// Go's `filepath.Clean` on a slash path, made relative.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

impl Ignore {
    /// `CONTEXT/.dockerignore`, if there is one.
    pub fn load(context: &Path) -> Result<Ignore> {
        let path = context.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => Ignore::parse(&String::from_utf8_lossy(&bytes), ".dockerignore"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Parses the text of a `.dockerignore`; errors name `file:line`.
    pub fn parse(text: &str, file: &str) -> Result<Ignore> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let p = clean(p);
            let glob = GlobBuilder::new(&p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::invalid(format!("{file}:{}: pattern {p}", i + 1), e.to_string())
                })?;
            patterns.push((glob.compile_matcher(), exception));
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some `!` pattern might re-include a path under an excluded directory, so
    /// that the directory must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(_, e)| *e)
    }

    /// Whether `rel` (relative to the context root) is excluded: the last pattern that
    /// matches it or one of its parent directories decides.
    pub fn excluded(&self, rel: &Path) -> bool {
        let mut excluded = false;
        for (m, exception) in &self.patterns {
            // Only a pattern that could change the outcome needs evaluating.
            if excluded != *exception {
                continue;
            }
            if rel
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && m.is_match(a))
            {
                excluded = !exception;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, path: &str) -> bool {
        Ignore::parse(text, "t").unwrap().excluded(Path::new(path))
    }

    #[test]
    fn docker_rules() {
        let t = "# comment\n\n  *.log  \n/build\n!keep.log\nsecret/**/key\n**/tmp\n";
        assert!(ex(t, "a.log"));
        assert!(!ex(t, "d/a.log"), "* stays within a component");
        assert!(!ex(t, "keep.log"), "the later exception wins");
        assert!(ex(t, "build"));
        assert!(ex(t, "build/x/y"), "a directory's contents go with it");
        assert!(!ex(t, "src/build"));
        assert!(ex(t, "secret/key"));
        assert!(ex(t, "secret/a/b/key"));
        assert!(ex(t, "tmp"));
        assert!(ex(t, "a/b/tmp/c"));
        assert!(!ex(t, "# comment"));
        assert!(!ex(t, "main.c"));
        assert!(ex("./a/../b\n", "b/c"), "cleaned like filepath.Clean");
        assert!(ex("d\n!d/keep\n", "d/other"));
        assert!(!ex("d\n!d/keep\n", "d/keep"));
        assert!(ex("f?.txt\n", "f1.txt"));
        assert!(ex("[a-c]x\n", "bx"));
        assert!(!ex("[a-c]x\n", "dx"));
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let e = Ignore::parse("ok\n[unclosed\n", ".dockerignore")
            .unwrap_err()
            .to_string();
        assert!(e.contains(".dockerignore:2"), "{e}");
    }
}
