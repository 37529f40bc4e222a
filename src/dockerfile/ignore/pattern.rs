//! One `.dockerignore` pattern, compiled and matched as moby's patternmatcher (`Pattern`)
//! does: a pattern without wildcards compares as a string, `dir/**` as a prefix, `**…` as a
//! suffix, and anything else is translated character by character into a Go regular
//! expression (`*` → `[^/]*`, `?` → `[^/]`, `**` → `(.*/)?` or `.*`, `[`, `]` and `\x` copied
//! as they are, `.+()|{}$` escaped) that [`goregex`](super::goregex) reads with Go's rules.
//!
//! Following the translation literally is what makes lade agree with Docker on the corners a
//! tidier glob engine gets "right" differently: `**` glued to other characters (`**.pyc`,
//! `a**/*.txt`) crosses directories, `{` `}` are literal, `?` and `[^…]` take one character
//! (and `[^…]` may take a `/`), `[a*]` is not a class of `a` and `*`, a `^` anywhere in a
//! wildcard pattern anchors (so `a^b*` matches nothing), and so on.

use regex_automata::meta::Regex;

use super::{go, goregex};

/// How a pattern matches, as moby's `matchType`.
#[derive(Debug)]
enum Kind {
    /// The whole path equals the pattern.
    Exact(Vec<u8>),
    /// `…**` with no other wildcard: the path starts with the part before `**`.
    Prefix(Vec<u8>),
    /// `**…` with no other wildcard: the path ends with the part after `**` (or, for `**/x`,
    /// is `x`).
    Suffix(Vec<u8>),
    Regex(Box<Regex>),
}

#[derive(Debug)]
pub struct Pattern {
    kind: Kind,
}

/// Characters moby escapes because they mean something to Go's regexp but nothing to a glob.
fn should_escape(c: char) -> bool {
    ".+()|{}$".contains(c)
}

impl Pattern {
    /// Compiles a cleaned pattern (without its `!`). `Err` says why it is malformed: Go's
    /// `filepath.Match` refuses it (Docker checks that first), or the regular expression it
    /// becomes does not compile (Docker finds that when it first matches a path with it, which
    /// fails the build just the same; lade says so when it reads the file).
    pub fn new(cleaned: &[u8]) -> Result<Pattern, String> {
        if !go::match_syntax_ok(cleaned) {
            return Err("syntax error in pattern".into());
        }
        let (kind, regex) = translate(cleaned);
        let kind = match kind {
            KindOf::Exact => Kind::Exact(cleaned.to_vec()),
            // moby cuts the pattern's bytes, not its characters (which matters only if it
            // starts or ends with something that is not a plain character; faithfully kept).
            KindOf::Prefix => Kind::Prefix(cleaned[..cleaned.len().saturating_sub(2)].to_vec()),
            KindOf::Suffix => Kind::Suffix(cleaned.get(2..).unwrap_or_default().to_vec()),
            KindOf::Regex => {
                let hir = goregex::parse(&regex)
                    .map_err(|e| format!("error parsing regexp: {e}: `{regex}`"))?;
                let re = Regex::builder()
                    .build_from_hir(&hir)
                    .map_err(|e| format!("pattern too complex: {e}"))?;
                Kind::Regex(Box::new(re))
            }
        };
        Ok(Pattern { kind })
    }

    /// Whether `path` (relative to the context, `/`-separated, cleaned) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        match &self.kind {
            Kind::Exact(p) => path == p.as_slice(),
            Kind::Prefix(p) => path.starts_with(p),
            Kind::Suffix(s) => path.ends_with(s) || (s.first() == Some(&b'/') && path == &s[1..]),
            // Go's regexp reads a string that is not UTF-8 one U+FFFD per bad byte.
            Kind::Regex(re) => match std::str::from_utf8(path) {
                Ok(s) => re.is_match(s),
                Err(_) => re.is_match(&go::runes(path)),
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum KindOf {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// moby's `Pattern.compile` (with `/` as the separator): the match type, and the regular
/// expression text when it is [`KindOf::Regex`].
fn translate(cleaned: &[u8]) -> (KindOf, String) {
    // Go's text/scanner reads characters (a bad byte is U+FFFD) and skips a leading BOM.
    let text = go::runes(cleaned);
    let mut chars = text
        .strip_prefix('\u{feff}')
        .unwrap_or(&text)
        .chars()
        .peekable();
    let mut re = String::from("^");
    let mut kind = KindOf::Exact;
    let mut i = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // `…**` at the end accepts everything, as in .gitignore.
                    if kind == KindOf::Exact {
                        kind = KindOf::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = KindOf::Regex;
                    }
                } else {
                    // Any number of directories, none included.
                    re.push_str("(.*/)?");
                    kind = KindOf::Regex;
                }
                if i == 0 {
                    kind = KindOf::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = KindOf::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = KindOf::Regex;
            }
            c if should_escape(c) => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.next() {
                Some(n) => {
                    re.push('\\');
                    re.push(n);
                    kind = KindOf::Regex;
                }
                // A trailing `\` stays (the syntax check has refused it already).
                None => re.push('\\'),
            },
            '[' | ']' => {
                re.push(c);
                kind = KindOf::Regex;
            }
            c => re.push(c),
        }
        i += 1;
    }
    re.push('$');
    (kind, re)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moby's own TestCompile table (patternmatcher_test.go, `compileTests`): the match type
    /// each pattern gets and, for regular expressions, the exact expression.
    #[test]
    fn translation_is_mobys() {
        use KindOf::*;
        for (pattern, kind, regex) in [
            ("*", Regex, r"^[^/]*$"),
            ("file*", Regex, r"^file[^/]*$"),
            ("*file", Regex, r"^[^/]*file$"),
            ("a*/b", Regex, r"^a[^/]*/b$"),
            ("**", Suffix, ""),
            ("**/**", Regex, r"^(.*/)?.*$"),
            ("dir/**", Prefix, ""),
            ("**/dir", Suffix, ""),
            ("**/dir2/*", Regex, r"^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Regex, r"^(.*/)?dir2/.*$"),
            ("**file", Suffix, ""),
            ("**/file*txt", Regex, r"^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Regex, r"^(.*/)?(.*/)?[^/]*\.txt$"),
            ("a[b-d]e", Regex, r"^a[b-d]e$"),
            (".*", Regex, r"^\.[^/]*$"),
            ("abc.def", Exact, ""),
            ("abc?def", Regex, r"^abc[^/]def$"),
            ("**/foo/bar", Suffix, ""),
            ("a(b)c/def", Exact, ""),
            ("a.|)$(}+{bc", Exact, ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Exact,
                "",
            ),
        ] {
            let (k, re) = translate(&go::clean(pattern.as_bytes()));
            assert!(k == kind, "{pattern}: wrong match type");
            if kind == Regex {
                assert_eq!(re, regex, "{pattern}");
            }
        }
    }
}
