//! `.dockerignore`: which context files COPY and ADD (and so the build cache) do not see,
//! decided exactly as Docker decides it.
//!
//! Docker's rules are code, not a specification: the reading of the file (moby's
//! `ignorefile.ReadAll`) and the matcher (moby's `patternmatcher`), which leans on Go's
//! `filepath.Clean`, `filepath.Match` (for the syntax check only) and `regexp`. lade follows
//! that code step for step:
//!
//! - the file is split into lines (a trailing `\r` dropped, a UTF-8 BOM at its start removed,
//!   a line over 64 KiB refused as Go's line scanner refuses it); a line starting with `#` is
//!   a comment; white space around a pattern is trimmed;
//! - `!pattern` re-includes what it matches; a lone `!` is an error;
//! - a pattern is cleaned like Go's `filepath.Clean` (a leading `..` is kept, and then matches
//!   nothing) and a leading `/` dropped, so patterns are relative to the context root;
//! - a pattern `filepath.Match` finds malformed (`[]a]`, `[-x]`, `[x-]`, `[a-b-c]`, an unclosed
//!   `[`, a trailing `\`) is an error, as is one whose regular expression Go would not compile;
//! - matching is [`pattern`]'s: moby's translation into a Go regular expression;
//! - a path is excluded when a pattern matches it or one of its parent directories; the last
//!   pattern that matches decides (`MatchesOrParentMatches`).
//!
//! Why by hand: no crate has these semantics. globset (and the `glob`, `wildmatch`,
//! `ignore`/gitignore crates) differ from Docker on each point above: `**` only as a whole
//! component, `{a,b}` alternation (so an unbalanced brace fails), classes and `?` over bytes,
//! no escapes in classes, lenient classes. The regular expression engine is a crate
//! (regex-automata); only Go's syntax is read here ([`goregex`]).

mod go;
mod goregex;
mod pattern;
#[cfg(test)]
mod tests;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use pattern::Pattern;

use crate::error::{Error, IoContext, Result};

/// Longest line Go's `bufio.Scanner` reads with its default buffer; Docker fails on longer.
const MAX_LINE: usize = 64 * 1024 - 1;

/// The parsed patterns of one `.dockerignore` (empty when there is none).
#[derive(Debug, Default)]
pub struct Ignore {
    /// (pattern, is an exception `!…`), in file order.
    patterns: Vec<(Pattern, bool)>,
}

impl Ignore {
    /// `CONTEXT/.dockerignore`, if there is one.
    pub fn load(context: &Path) -> Result<Ignore> {
        let path = context.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => Ignore::parse_bytes(&bytes, ".dockerignore"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Parses the text of a `.dockerignore`; errors name `file:line`.
    pub fn parse(text: &str, file: &str) -> Result<Ignore> {
        Ignore::parse_bytes(text.as_bytes(), file)
    }

    /// Parses a `.dockerignore` as bytes (patterns need not be UTF-8, as in Docker).
    pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<Ignore> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let mut patterns = Vec::new();
        let mut lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for (i, line) in lines.into_iter().enumerate() {
            let at = || format!("{file}:{}", i + 1);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                return Err(Error::invalid(at(), "line longer than 64 KiB"));
            }
            let Some((cleaned, exception)) = read_line(line) else {
                continue;
            };
            let shown = || String::from_utf8_lossy(&cleaned).into_owned();
            if exception && cleaned.is_empty() {
                return Err(Error::invalid(at(), "illegal exclusion pattern: \"!\""));
            }
            let p = Pattern::new(&cleaned)
                .map_err(|why| Error::invalid(format!("{}: pattern {}", at(), shown()), why))?;
            patterns.push((p, exception));
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
        let path = rel.as_os_str().as_bytes();
        let parents = parent_dirs(path);
        let mut excluded = false;
        for (p, exception) in &self.patterns {
            // Only a pattern that could change the outcome is evaluated (as moby does).
            if excluded != *exception {
                continue;
            }
            if p.matches(path) || parents.iter().any(|d| p.matches(d)) {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// The parent directories `MatchesOrParentMatches` tries for `path`: Go's `filepath.Dir`,
/// then each of its leading parts (`a`, `a/b` for `a/b/c`); none for a path without `/`.
fn parent_dirs(path: &[u8]) -> Vec<Vec<u8>> {
    let Some(last) = path.iter().rposition(|&c| c == b'/') else {
        return Vec::new();
    };
    let dir = go::clean(&path[..=last]);
    if dir == b"." {
        return Vec::new();
    }
    let parts: Vec<&[u8]> = dir.split(|&c| c == b'/').collect();
    (1..=parts.len()).map(|n| parts[..n].join(&b'/')).collect()
}

/// One line as moby's `ReadAll` then `patternmatcher.New` make it a pattern: `None` for a
/// comment or a blank line, else the cleaned pattern and whether it was an exception (`!`).
fn read_line(line: &[u8]) -> Option<(Vec<u8>, bool)> {
    if line.starts_with(b"#") {
        return None;
    }
    let mut p = go::trim_space(line);
    if p.is_empty() {
        return None;
    }
    let exception = p[0] == b'!';
    if exception {
        p = go::trim_space(&p[1..]);
    }
    let mut cleaned = Vec::new();
    if !p.is_empty() {
        cleaned = go::clean(p);
        if cleaned.len() > 1 && cleaned[0] == b'/' {
            cleaned.remove(0);
        }
    }
    if !exception {
        return Some((cleaned, false));
    }
    // `New` cleans `!PATTERN` once more, which turns `!/` into a lone `!`.
    let mut again = vec![b'!'];
    again.extend_from_slice(&cleaned);
    let again = go::clean(&again);
    Some((again[1..].to_vec(), true))
}
