//! The pieces of Go's standard library Docker's `.dockerignore` reading leans on, with Go's
//! exact behaviour: `strings.TrimSpace`, `filepath.Clean`, the syntax check of
//! `filepath.Match`, and how Go decodes a byte string that is not valid UTF-8 (each bad byte
//! is one U+FFFD). Patterns and paths are bytes here, as they are Go strings there.

/// Go's `utf8.DecodeRune`: the first character of `b` and its length; an invalid or truncated
/// sequence is `U+FFFD` of length 1. `None` on empty input.
pub fn decode_rune(b: &[u8]) -> Option<(char, usize)> {
    let first = *b.first()?;
    let width = match first {
        0x00..=0x7f => return Some((first as char, 1)),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some((char::REPLACEMENT_CHARACTER, 1)),
    };
    // std's validation rejects what Go's does: overlong forms, surrogates, > U+10FFFF.
    match b.get(..width).map(std::str::from_utf8) {
        Some(Ok(s)) => s.chars().next().map(|c| (c, width)),
        _ => Some((char::REPLACEMENT_CHARACTER, 1)),
    }
}

/// `b` as Go's `for _, r := range string(b)` sees it: each invalid byte is one U+FFFD.
pub fn runes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut rest = b;
    while let Some((c, n)) = decode_rune(rest) {
        out.push(c);
        rest = &rest[n..];
    }
    out
}

/// Go's `strings.TrimSpace` (Unicode white space, which is what Rust's `is_whitespace` is).
pub fn trim_space(b: &[u8]) -> &[u8] {
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some((c, n)) = decode_rune(&b[at..]) {
        spans.push((at, at + n, c.is_whitespace()));
        at += n;
    }
    let start = spans.iter().find(|s| !s.2).map(|s| s.0);
    let end = spans.iter().rev().find(|s| !s.2).map(|s| s.1);
    match (start, end) {
        (Some(s), Some(e)) => &b[s..e],
        _ => &[],
    }
}

/// Go's `filepath.Clean` on Unix: one slash between elements, no `.` elements, `..` removes
/// the element before it (and is dropped at the root of an absolute path, kept at the start of
/// a relative one), no trailing slash; `.` for nothing.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if rooted {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Whether `filepath.Match` finds `pattern` malformed (`ErrBadPattern`) whatever the name:
/// a `[` class that is unclosed, empty, or has a `-` or `]` where a character should be,
/// an unfinished range, an invalid UTF-8 character in a class, or a trailing `\`.
///
/// Go's `Match` checks the syntax of every chunk (a run between `*`s) as it goes, and of the
/// rest of the pattern when the name runs out, so a pattern is refused exactly when one of its
/// chunks is malformed: that is what is checked here, chunk by chunk, as Go scans them.
pub fn match_syntax_ok(pattern: &[u8]) -> bool {
    let mut rest = pattern;
    loop {
        while rest.first() == Some(&b'*') {
            rest = &rest[1..];
        }
        if rest.is_empty() {
            return true;
        }
        let (chunk, after) = scan_chunk(rest);
        if !chunk_ok(chunk) {
            return false;
        }
        rest = after;
    }
}

/// Go's `scanChunk` after the leading stars: up to the next `*` outside a class.
fn scan_chunk(p: &[u8]) -> (&[u8], &[u8]) {
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' if i + 1 < p.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    p.split_at(i)
}

/// The syntax half of Go's `matchChunk`.
fn chunk_ok(mut chunk: &[u8]) -> bool {
    while let Some(&c) = chunk.first() {
        match c {
            b'[' => {
                chunk = &chunk[1..];
                if chunk.first() == Some(&b'^') {
                    chunk = &chunk[1..];
                }
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some(after_lo) = class_char(chunk) else {
                        return false;
                    };
                    chunk = after_lo;
                    // `class_char` leaves at least one byte.
                    if chunk[0] == b'-' {
                        let Some(after_hi) = class_char(&chunk[1..]) else {
                            return false;
                        };
                        chunk = after_hi;
                    }
                    ranges += 1;
                }
            }
            b'\\' => {
                if chunk.len() < 2 {
                    return false;
                }
                chunk = &chunk[2..];
            }
            _ => chunk = &chunk[1..],
        }
    }
    true
}

/// Go's `getEsc`: one (possibly escaped) class character; what follows it, which must not be
/// empty. `None` for a malformed one.
fn class_char(chunk: &[u8]) -> Option<&[u8]> {
    let mut c = chunk;
    match c.first() {
        None | Some(b'-' | b']') => return None,
        Some(b'\\') => {
            c = &c[1..];
            if c.is_empty() {
                return None;
            }
        }
        Some(_) => {}
    }
    let (r, n) = decode_rune(c)?;
    if r == char::REPLACEMENT_CHARACTER && n == 1 {
        return None;
    }
    let rest = &c[n..];
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(p: &str) -> String {
        String::from_utf8(clean(p.as_bytes())).unwrap()
    }

    #[test]
    fn clean_is_gos() {
        // Cases from Go's path/filepath cleantests.
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("a/../b:/../../c", "../c"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ] {
            assert_eq!(cl(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn trim_space_is_gos() {
        assert_eq!(trim_space(b" \t a b \r\n"), b"a b");
        assert_eq!(trim_space("\u{a0}x\u{3000}".as_bytes()), b"x");
        assert_eq!(trim_space(b"  "), b"");
        assert_eq!(trim_space(b" \xff "), b"\xff");
    }

    #[test]
    fn runes_replace_each_bad_byte() {
        assert_eq!(runes(b"a\xff\xfeb"), "a\u{fffd}\u{fffd}b");
        assert_eq!(runes(b"\xe2\x80 "), "\u{fffd}\u{fffd} ");
        assert_eq!(runes("é☺".as_bytes()), "é☺");
        assert_eq!(
            runes(b"\xed\xa0\x80"),
            "\u{fffd}\u{fffd}\u{fffd}",
            "a surrogate"
        );
    }
}
