//! Here-documents: recognising a `<<EOF` word, and the [`Heredoc`] it names.
//!
//! The word rules are BuildKit's (`parser.ParseHeredoc`): `^(\d*)<<(-?)\s*([^<]*)$`, the
//! delimiter lexed as one shell word, quoted anywhere (`<<"EOF"`, `<<E'O'F`) meaning a literal
//! body. The parser reads the bodies from the lines after the instruction; the builder asks
//! [`Run::plan`](super::Run::plan) whether a RUN is a lone heredoc. Both need the same word
//! rules, so they are here, below both: the lexer is all this module uses.

use super::lexer::{self, LexOptions};

/// A here-document: `<<NAME`, `<<-NAME`, `<<"NAME"`, `<<'NAME'`, `2<<NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed.
    pub name: String,
    /// The lines between the instruction and the delimiter, each with its newline, as written.
    pub content: String,
    /// `<<-`: leading tabs are stripped from the body lines and from the delimiter line.
    pub chomp: bool,
    /// False when any part of the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// The file descriptor before `<<` (0 when absent).
    pub fd: u32,
}

impl Heredoc {
    /// The body with `<<-`'s leading tabs removed from every line.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// A heredoc word (`<<EOF`, `<<-"EOF"`, `3<<EOF`) or None.
pub(super) fn parse_heredoc_word(src: &str) -> Option<Heredoc> {
    try_heredoc_word(src).ok().flatten()
}

fn try_heredoc_word(src: &str) -> std::result::Result<Option<Heredoc>, String> {
    // ^(\d*)<<(-?)\s*([^<]*)$
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    // `\s*`: blanks between `<<` and the delimiter (the lexer keeps them in the word).
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = src[..digits].parse::<u32>().unwrap_or(0);
    let none = |_: &str| None;
    let plain = LexOptions {
        skip_unset: true,
        ..LexOptions::default()
    };
    let (_, words) = lexer::process(rest, plain, &none)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = LexOptions {
        raw_quotes: true,
        ..plain
    };
    let (_, raw_words) = lexer::process(rest, raw, &none)?;
    if raw_words.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        chomp,
        expand: quotes(&words[0]) == quotes(&raw_words[0]),
        fd,
    }))
}

/// The heredocs an instruction line names, in order (always lexed with `\`, as BuildKit does).
pub(super) fn heredocs_from_line(line: &str) -> std::result::Result<Vec<Heredoc>, String> {
    let opts = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..LexOptions::default()
    };
    let words = match lexer::process(line, opts, &|_| None) {
        Ok((_, w)) => w,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = try_heredoc_word(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}
