//! Shell-word processing and variable substitution, as BuildKit's `shell.Lex` does it.
//!
//! This is not a shell: there is no command substitution, no globbing and no field splitting
//! other than on whitespace. What it does, exactly as the Dockerfile reference and BuildKit
//! (`frontend/dockerfile/shell/lex.go`) define it:
//!
//! - `'…'` keeps everything literally; a single quote cannot be escaped inside.
//! - `"…"` keeps everything literally except `$` (substituted) and the escape character, which
//!   only escapes `"`, `$` and itself; before any other character it stays.
//! - Outside quotes the escape character (`\`, or `` ` `` under `# escape=``) makes the next
//!   character literal; at the very end of the word it disappears.
//! - `$NAME`, `${NAME}`, the special parameters `$@ $* $# $? $- $$ $! $0` and positional
//!   `$1`… (always unset in a build, so empty), and the modifiers `${N:-w}`, `${N-w}`,
//!   `${N:+w}`, `${N+w}`, `${N:?msg}`, `${N?msg}`, `${N#pat}`, `${N##pat}`, `${N%pat}`,
//!   `${N%%pat}`, `${N/pat/rep}` and `${N//pat/rep}` (patterns: `*`, `?`, `\*`, `\?`, `\\`).
//!   The word after a modifier is itself processed, so `${A:-${B:-x}}` nests.
//! - A `$` not followed by a name is literal. An unset variable becomes the empty string, as in
//!   Docker and sh (ch-image leaves `$UNSET` in place).
//! - Word splitting (for the instructions that take several words) happens after substitution,
//!   on whitespace that came from outside quotes or from a substituted value; quoted text and
//!   escaped characters never split. As in BuildKit an empty quoted word (`""`) yields no word,
//!   and `<<` keeps the blanks that follow it in its word (so `<< EOF` is one heredoc word).

use super::shell_pattern::Pattern;
use crate::error::{Error, Result};

/// How deeply `${…}` may nest before we refuse: arbitrary input must not exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The longest word substitution may make. Without a bound, a few lines of nested ARGs that
/// each repeat the one before a hundred times expand to gigabytes; BuildKit has none, and no
/// real Dockerfile comes near this.
pub const MAX_WORD_BYTES: usize = 1 << 20;

/// Fails once a word being made is over [`MAX_WORD_BYTES`].
fn check_len(len: usize) -> LexResult<()> {
    if len > MAX_WORD_BYTES {
        return Err(format!(
            "expands to more than {} MiB (nested variables repeating each other?)",
            MAX_WORD_BYTES >> 20
        ));
    }
    Ok(())
}

/// Options of one lexing pass; the defaults are those of ordinary instruction substitution.
#[derive(Clone, Copy, Debug)]
pub struct LexOptions {
    /// The Dockerfile's escape character (`\` unless the `escape` directive says `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output (used to detect quoted heredoc delimiters).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of substituting "".
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (COPY/ADD heredoc bodies: only `$` and escapes).
    pub skip_quotes: bool,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            escape: '\\',
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }
}

impl LexOptions {
    pub fn with_escape(escape: char) -> Self {
        LexOptions {
            escape,
            ..LexOptions::default()
        }
    }
}

/// Substitute variables in one word and remove its quotes and escapes, with `\` as the escape
/// character. Whitespace is kept; the result is one string (BuildKit's `ProcessWord`).
pub fn substitute(word: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    substitute_with(word, LexOptions::default(), vars)
}

/// [`substitute`] with explicit options (e.g. the Dockerfile's escape character).
pub fn substitute_with(
    word: &str,
    opts: LexOptions,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    process(word, opts, vars)
        .map(|(s, _)| s)
        .map_err(|why| Error::invalid(format!("'{word}'"), why))
}

/// Substitute variables, then split into words on unquoted whitespace (BuildKit's
/// `ProcessWords`), with `\` as the escape character.
pub fn split_words(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    split_words_with(text, LexOptions::default(), vars)
}

/// [`split_words`] with explicit options.
pub fn split_words_with(
    text: &str,
    opts: LexOptions,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    process(text, opts, vars)
        .map(|(_, w)| w)
        .map_err(|why| Error::invalid(format!("'{text}'"), why))
}

/// The lexer proper: returns the processed word and its split words, or the reason it failed.
pub(crate) fn process(
    text: &str,
    opts: LexOptions,
    vars: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<(String, Vec<String>), String> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        opts,
        raw_escapes: opts.raw_escapes,
        vars,
        depth: 0,
    };
    lx.process_until(None, opts.raw_escapes)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    opts: LexOptions,
    /// Current raw-escapes setting: BuildKit switches it on while reading `#`, `%` and `/`
    /// patterns so that `\*` reaches the pattern matcher.
    raw_escapes: bool,
    vars: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A character that may split: whitespace ends the current word.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

type LexResult<T> = std::result::Result<T, String>;

/// The input ended inside something that `what` should have closed (BuildKit's wording).
fn unterminated(what: &str) -> String {
    format!("unexpected end of statement while looking for matching {what}")
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process until `stop` (consumed) or the end of input (`stop` = None).
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_until_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_until_inner(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            let quotes = !self.opts.skip_quotes;
            if c == '$' {
                let s = self.dollar()?;
                check_len(result.len() + s.len())?;
                result.push_str(&s);
                words.add_str(&s);
            } else if c == '<' {
                let s = self.possible_heredoc();
                result.push_str(&s);
                words.add_raw_str(&s);
            } else if quotes && c == '\'' {
                let s = self.single_quote()?;
                result.push_str(&s);
                words.add_raw_str(&s);
            } else if quotes && c == '"' {
                let s = self.double_quote()?;
                result.push_str(&s);
                words.add_raw_str(&s);
            } else {
                self.pos += 1;
                if c == self.opts.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    // The escape character makes the next one literal; at the end it vanishes.
                    let Some(n) = self.next() else { break };
                    words.add_raw_char(n);
                    result.push(n);
                } else {
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        match stop {
            Some(s) => Err(unterminated(&s.to_string())),
            None => Ok((result, words.finish())),
        }
    }

    /// The word of a `${…}` modifier, up to `stop`. Running out of input there is reported as
    /// the `missing` syntax error rather than the nested word's own complaint.
    fn operand(&mut self, stop: char, raw_escapes: bool, missing: &str) -> LexResult<String> {
        match self.process_until(Some(stop), raw_escapes) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(missing.into()),
            Err(e) => Err(e),
        }
    }

    /// `<<` keeps the blanks after it in its word, so that `<< EOF` is one heredoc word
    /// (BuildKit's processPossibleHeredoc); a lone `<` is an ordinary character.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    /// Consume the opening quote; the output starts with it only under `raw_quotes`.
    fn open_quote(&mut self) -> String {
        let open = self.next();
        match open {
            Some(q) if self.opts.raw_quotes => q.to_string(),
            _ => String::new(),
        }
    }

    /// The quoted string done, its closing quote (already consumed) kept as the opening one.
    fn close_quote(&self, mut out: String, quote: char) -> String {
        if self.opts.raw_quotes {
            out.push(quote);
        }
        out
    }

    fn single_quote(&mut self) -> LexResult<String> {
        let mut out = self.open_quote();
        loop {
            match self.next() {
                None => return Err(unterminated("single-quote")),
                Some('\'') => return Ok(self.close_quote(out, '\'')),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> LexResult<String> {
        let mut out = self.open_quote();
        loop {
            match self.peek() {
                None => return Err(unterminated("double-quote")),
                Some('"') => {
                    self.pos += 1;
                    return Ok(self.close_quote(out, '"'));
                }
                Some('$') => {
                    let s = self.dollar()?;
                    check_len(out.len() + s.len())?;
                    out.push_str(&s);
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == self.opts.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            // An escape just before the end of input is dropped; the missing
                            // quote is reported on the next turn.
                            None => continue,
                            // Only these can be escaped inside double quotes; before anything
                            // else the escape character stays, as in sh.
                            Some(n) if n == '"' || n == '$' || n == self.opts.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    fn dollar(&mut self) -> LexResult<String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("variable substitutions nested too deeply".into());
        }
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn dollar_inner(&mut self) -> LexResult<String> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.opts.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.opts.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (null_is_unset, op) = if ch == ':' {
                    (true, self.next())
                } else {
                    (false, Some(ch))
                };
                let Some(op) = op else {
                    return Err("syntax error: missing '}'".into());
                };
                // BuildKit (since moby/buildkit#5146) refuses `${VAR:#…}` and `${VAR:%…}`:
                // the colon has no meaning there, and silently dropping it hid typos. Checked
                // before the operand, so that it holds for unset variables too.
                if null_is_unset && (op == '#' || op == '%') {
                    return Err(format!("unsupported modifier (:{op}) in substitution"));
                }
                let mods = if null_is_unset {
                    format!(":{op}")
                } else {
                    op.to_string()
                };
                // `#` and `%` patterns keep their escapes so the matcher sees `\*`.
                let raw = op == '#' || op == '%';
                let word = self.operand('}', raw, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if self.opts.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{mods}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pat = Pattern::parse(&pat)?;
                        if op == '#' {
                            pat.trim_prefix(&value, greedy)
                        } else {
                            pat.trim_suffix(&value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({mods}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.operand('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.operand('}', true, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                if self.opts.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let pat = Pattern::parse(&pattern)?;
                pat.replace(
                    &value.unwrap_or_default(),
                    &replacement,
                    all,
                    MAX_WORD_BYTES,
                )
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional parameter;
    /// or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.peek().filter(|d| d.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "S" => Some("x y".into()),
            "P" => Some("/usr/local/bin".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        substitute(s, &env).unwrap()
    }

    #[test]
    fn basics() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}b"), "ab");
        assert_eq!(w("$Ab"), "");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "a");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("a\\"), "a");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("$"), "$");
        assert_eq!(w("$/"), "$/");
        assert_eq!(w("$1x"), "x");
        assert_eq!(w("$$"), "");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${A:-x}"), "a");
        assert_eq!(w("${E:-x}"), "x");
        assert_eq!(w("${E-x}"), "");
        assert_eq!(w("${U-x}"), "x");
        assert_eq!(w("${A:+x}"), "x");
        assert_eq!(w("${E:+x}"), "");
        assert_eq!(w("${E+x}"), "x");
        assert_eq!(w("${U+x}"), "");
        assert_eq!(w("${U:-${A:-z}}"), "a");
        assert_eq!(w("${P#*/}"), "usr/local/bin");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${P%/*}"), "/usr/local");
        assert_eq!(w("${P%%/*}"), "");
        assert_eq!(w("${P/local/x}"), "/usr/x/bin");
        assert_eq!(w("${P//\\//_}"), "_usr_local_bin");
        assert!(substitute("${U?}", &env).is_err());
        assert!(substitute("${E:?no}", &env).is_err());
        assert!(substitute("${A", &env).is_err());
        assert!(substitute("${}", &env).is_err());
        assert!(substitute("${A:=x}", &env).is_err());
        // The colon forms of # and % are errors, as in BuildKit, set or not, shortest or
        // longest, not the forms without the colon.
        for bad in ["${P:#*/}", "${P:##*/}", "${P:%/*}", "${P:%%/*}", "${U:#x}"] {
            let e = substitute(bad, &env).unwrap_err().to_string();
            assert!(e.contains("unsupported modifier (:"), "{bad}: {e}");
        }
    }

    #[test]
    fn splitting() {
        let s = |t: &str| split_words(t, &env).unwrap();
        assert_eq!(s("a  b"), ["a", "b"]);
        assert_eq!(s("$S"), ["x", "y"]);
        assert_eq!(s("\"$S\""), ["x y"]);
        assert_eq!(s("a\\ b"), ["a b"]);
        assert_eq!(s("a \"\" b"), ["a", "b"]);
    }
}
