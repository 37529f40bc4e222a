//! The Dockerfile parser: physical lines to logical lines to typed instructions.
//!
//! The rules are BuildKit's (`frontend/dockerfile/parser`), which the Dockerfile reference
//! describes and which ch-image follows for everything it supports:
//!
//! - Parser directives (`# escape=`` ` ``, `# syntax=…`, `# check=…`; names case-insensitive,
//!   whitespace around `=` allowed) are recognised only in the leading run of directive lines.
//!   The first line that is anything else (an instruction, an ordinary comment, an empty line,
//!   an unknown directive) ends them; later ones are plain comments. Each may appear once.
//!   (ch-image supports no directives at all; we follow Docker.)
//! - A comment is a line whose first non-blank character is `#`; a `#` anywhere else is data.
//! - A line ending in the escape character (optionally followed by spaces/tabs) continues on
//!   the next line, unless that escape character is itself escaped (`\\`). Comment lines and
//!   blank lines inside a continuation are dropped (blank ones with a warning, as Docker does);
//!   continuation lines keep their leading whitespace.
//! - Keywords are case-insensitive. Options (`--name=value`) come right after the keyword.
//! - After a RUN, COPY or ADD line (also under ONBUILD) naming heredocs (`<<EOF`, `<<-EOF`,
//!   `<<"EOF"`, `2<<EOF`), the following lines up to each delimiter are the heredoc bodies,
//!   read in order, taken verbatim (no comment or continuation processing).

use super::heredoc::{Heredoc, heredocs_from_line, parse_heredoc_word};
use super::instructions::*;
use crate::error::{Error, Result};
use std::time::Duration;

/// Parse a whole Dockerfile. `file_name` is used in error messages (`file:line: why`).
pub fn parse(text: &str, file_name: &str) -> Result<Dockerfile> {
    Parser::new(text, file_name).run()
}

struct Parser<'a> {
    lines: Vec<&'a str>,
    idx: usize,
    file: &'a str,
    directives: Directives,
    directives_done: bool,
    seen: Vec<String>,
    warnings: Vec<String>,
}

/// One instruction before typing: keyword as written, raw options, the rest of the line.
struct Split {
    keyword: String,
    flags: Vec<String>,
    rest: String,
}

enum Parsed {
    From(From),
    Instr(Instruction),
}

/// Whitespace as Go's `unicode.IsSpace`.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_field_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw)
        .trim_start_matches(is_space)
        .starts_with('#')
}

/// Remove a trailing continuation character, reporting whether the line ends there.
fn trim_continuation(line: &str, esc: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(body) = t.strip_suffix(esc) {
        // `foo\\` ends in an escaped escape character: not a continuation (BuildKit's
        // `([^\\])\\[ \t]*$|^\\[ \t]*$`).
        if body.is_empty() || !body.ends_with(esc) {
            return (body.to_string(), false);
        }
    }
    (line.to_string(), true)
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, file: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            lines: text.split_inclusive('\n').collect(),
            idx: 0,
            file,
            directives: Directives::default(),
            directives_done: false,
            seen: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn err(&self, line: usize, why: impl Into<String>) -> Error {
        Error::invalid(format!("{}:{line}", self.file), why)
    }

    /// Check a line for a parser directive while they are still allowed.
    fn directive(&mut self, token: &str, line: usize) -> Result<()> {
        if self.directives_done {
            return Ok(());
        }
        let Some((name, value)) = directive_parts(token) else {
            self.directives_done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.directives_done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(self.err(
                line,
                format!("only one {name} parser directive can be used"),
            ));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                v => {
                    return Err(self.err(
                        line,
                        format!("invalid escape token '{v}' does not match ` or \\"),
                    ));
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
        Ok(())
    }

    /// BuildKit's processLine: strip the newline (and leading blanks on an instruction's first
    /// line), look for a directive, and blank out a comment.
    fn process_line(&mut self, raw: &str, strip_left: bool, line: usize) -> Result<String> {
        let mut token = trim_newline(raw);
        if strip_left {
            token = token.trim_start_matches(is_space);
        }
        self.directive(token, line)?;
        Ok(if token.starts_with('#') {
            String::new()
        } else {
            token.to_string()
        })
    }

    fn run(mut self) -> Result<Dockerfile> {
        let mut pre_from_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut any = false;
        while self.idx < self.lines.len() {
            let raw = self.lines[self.idx];
            self.idx += 1;
            let start = self.idx;
            let first = self.process_line(raw, true, start)?;
            let esc = self.directives.escape;
            let (mut line, mut eol) = trim_continuation(&first, esc);
            if eol && line.is_empty() {
                continue;
            }
            let mut empty_continuation = false;
            while !eol && self.idx < self.lines.len() {
                let raw = self.lines[self.idx];
                self.idx += 1;
                let cur = self.idx;
                let processed = self.process_line(raw, false, cur)?;
                if is_comment(raw) {
                    continue;
                }
                if processed.trim_start_matches(is_space).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (cont, e) = trim_continuation(&processed, esc);
                line.push_str(&cont);
                eol = e;
            }
            if empty_continuation {
                // Docker warns that these will become errors; it names the joined line.
                self.warnings.push(format!(
                    "{}:{start}: empty continuation line found in: {}",
                    self.file,
                    line.trim()
                ));
            }
            any = true;
            let parsed = self.instruction(&line, start)?;
            // After instruction(): heredoc bodies count as the instruction's lines.
            let (end_line, text) = (self.idx, line.trim().to_string());
            fn located<T>(line: usize, end_line: usize, text: String, value: T) -> Located<T> {
                Located {
                    line,
                    end_line,
                    text,
                    value,
                }
            }
            match parsed {
                Parsed::From(f) => {
                    let name = f.name.clone();
                    stages.push(Stage {
                        from: located(start, end_line, text, f),
                        name,
                        instructions: Vec::new(),
                    });
                }
                Parsed::Instr(i) => match (stages.last_mut(), i) {
                    (Some(s), i) => s.instructions.push(located(start, end_line, text, i)),
                    (None, Instruction::Arg(a)) => {
                        pre_from_args.push(located(start, end_line, text, a))
                    }
                    (None, i) => {
                        return Err(self.err(
                            start,
                            format!(
                                "{} before the first FROM (only ARG may precede FROM)",
                                i.keyword()
                            ),
                        ));
                    }
                },
            }
        }
        if !any {
            return Err(Error::invalid(self.file, "file with no instructions"));
        }
        if stages.is_empty() {
            return Err(Error::invalid(self.file, "no FROM instruction"));
        }
        Ok(Dockerfile {
            file_name: self.file.to_string(),
            directives: self.directives,
            pre_from_args,
            stages,
            warnings: self.warnings,
        })
    }

    /// Type one logical line (reading its heredoc bodies from the following lines).
    fn instruction(&mut self, line: &str, start: usize) -> Result<Parsed> {
        let split = split_command(line);
        let kw = split.keyword.to_ascii_lowercase();
        // Heredocs belong to RUN/COPY/ADD, also as ONBUILD triggers.
        let target = if kw == "onbuild" {
            split_command(&split.rest).keyword.to_ascii_lowercase()
        } else {
            kw.clone()
        };
        // Not in the JSON form: there `<<EOF` can only be inside a string (BuildKit's
        // canContainHeredoc).
        let inner_rest = if kw == "onbuild" {
            split_command(&split.rest).rest
        } else {
            split.rest.clone()
        };
        let json = matches!(maybe_json(&inner_rest), Ok(MaybeJson::Json(_)));
        let heredocs = if matches!(target.as_str(), "run" | "copy" | "add") && !json {
            let heads = heredocs_from_line(line).map_err(|e| self.err(start, e))?;
            let mut docs = Vec::new();
            for mut h in heads {
                let mut terminated = false;
                while self.idx < self.lines.len() {
                    let raw = self.lines[self.idx];
                    self.idx += 1;
                    let mut t = trim_newline(raw);
                    if h.chomp {
                        t = t.trim_start_matches('\t');
                    }
                    if t == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(raw);
                }
                if !terminated {
                    return Err(self.err(start, format!("unterminated heredoc <<{}", h.name)));
                }
                docs.push(h);
            }
            docs
        } else {
            Vec::new()
        };
        let esc = self.directives.escape;
        if kw == "onbuild" {
            let inner = parse_onbuild(&split, line, heredocs, esc);
            return inner.map(Parsed::Instr).map_err(|e| self.err(start, e));
        }
        typed(&split, heredocs, esc).map_err(|e| self.err(start, e))
    }
}

/// `#` + optional blanks + `name` + blanks `=` blanks + `value` (BuildKit's directive regex).
fn directive_parts(token: &str) -> Option<(&str, &str)> {
    let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r');
    let rest = token.strip_prefix('#')?.trim_start_matches(ws);
    let end = rest
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let name = &rest[..end];
    if !name.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let value = rest[end..]
        .trim_start_matches(ws)
        .strip_prefix('=')?
        .trim_matches(ws);
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// BuildKit's splitCommand: keyword, leading `--options`, and the trimmed rest.
fn split_command(line: &str) -> Split {
    let line = line.trim_matches(is_space);
    let (keyword, rest) = match line.find(is_field_sep) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_field_sep)),
        None => (line, ""),
    };
    let (rest, flags) = if rest.is_empty() {
        (String::new(), Vec::new())
    } else {
        extract_flags(rest)
    };
    Split {
        keyword: keyword.to_string(),
        flags,
        rest: rest.trim_matches(is_space).to_string(),
    }
}

/// BuildKit's extractBuilderFlags: leading words starting with `--` are options (quotes and
/// `\` are processed within them); a lone `--` ends them.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Ph {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Ph::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    let at = |p: usize| chars.get(p).map_or(line.len(), |&(i, _)| i);
    loop {
        let ch = chars.get(pos).map(|&(_, c)| c);
        if phase == Ph::Spaces {
            let Some(c) = ch else { break };
            if is_space(c) {
                pos += 1;
                continue;
            }
            if c != '-' || chars.get(pos + 1).map(|&(_, c)| c) != Some('-') {
                return (line[at(pos)..].to_string(), words);
            }
            phase = Ph::Word;
        }
        let Some(c) = ch else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        if phase == Ph::Word {
            if is_space(c) {
                phase = Ph::Spaces;
                if word == "--" {
                    return (line[at(pos)..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if c == '\'' || c == '"' {
                quote = c;
                blank_ok = true;
                phase = Ph::Quote;
                pos += 1;
                continue;
            }
            let mut c = c;
            if c == '\\' {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = chars[pos].1;
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // In quotes.
        if c == quote {
            phase = Ph::Word;
            pos += 1;
            continue;
        }
        let mut c = c;
        if c == '\\' {
            if pos + 1 == chars.len() {
                phase = Ph::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = chars[pos].1;
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's parseWords (ENV, LABEL, ARG): split on blanks outside quotes, keeping quotes and
/// escapes in the words for substitution to process later.
fn parse_words(rest: &str, esc: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut in_word, mut in_quote, mut blank_ok) = (false, false, false);
    let mut quote = '\0';
    let mut pos = 0;
    while pos <= chars.len() {
        let ch = chars.get(pos).copied();
        if !in_word && !in_quote {
            match ch {
                None => break,
                Some(c) if is_space(c) => {
                    pos += 1;
                    continue;
                }
                Some(_) => in_word = true,
            }
        }
        let Some(mut c) = ch else {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        if in_quote {
            if c == quote {
                in_quote = false;
                in_word = true;
            }
            if c == esc && quote != '\'' {
                if pos + 1 == chars.len() {
                    in_quote = false;
                    in_word = true;
                    pos += 1;
                    continue;
                }
                pos += 1;
                word.push(c);
                c = chars[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // In a word.
        if is_space(c) {
            in_word = false;
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            blank_ok = false;
            pos += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = c;
            blank_ok = true;
            in_quote = true;
            in_word = false;
        }
        if c == esc {
            if pos + 1 == chars.len() {
                pos += 1;
                continue;
            }
            word.push(c);
            pos += 1;
            c = chars[pos];
        }
        word.push(c);
        pos += 1;
    }
    words
}

/// Whitespace-delimited fields (FROM, EXPOSE, non-JSON COPY/ADD/VOLUME): no quote handling at
/// this stage, as in Docker.
fn fields(rest: &str) -> Vec<String> {
    rest.split(is_field_sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

enum MaybeJson {
    Json(Vec<String>),
    NotJson,
}

/// A JSON array of strings, or not JSON at all (then the caller uses the shell/word form). An
/// array with non-strings is an error, as in Docker.
fn maybe_json(rest: &str) -> std::result::Result<MaybeJson, String> {
    let t = rest.trim_start_matches(is_space);
    if !t.starts_with('[') {
        return Ok(MaybeJson::NotJson);
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(t) {
        Ok(v) => v
            .into_iter()
            .map(|x| match x {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(
                    "when using JSON array syntax, arrays must be comprised of strings only".into(),
                ),
            })
            .collect::<std::result::Result<Vec<_>, String>>()
            .map(MaybeJson::Json),
        Err(_) => Ok(MaybeJson::NotJson),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fk {
    Bool,
    Str,
    Strs,
}

/// Parsed options of one instruction (BuildKit's BFlags).
struct Flags(Vec<(&'static str, Vec<String>)>);

impl Flags {
    fn parse(raw: &[String], spec: &[(&'static str, Fk)]) -> std::result::Result<Flags, String> {
        let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
        for arg in raw {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(sname, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            let slot = match out.iter().position(|(n, _)| *n == sname) {
                Some(_) if kind != Fk::Strs => {
                    return Err(format!("duplicate flag specified: --{name}"));
                }
                Some(i) => i,
                None => {
                    out.push((sname, Vec::new()));
                    out.len() - 1
                }
            };
            let v = match (kind, value) {
                (Fk::Bool, Some("")) => return Err(format!("missing a value on flag: --{name}")),
                (Fk::Bool, None) => "true".to_string(),
                (Fk::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".into(),
                    "false" => "false".into(),
                    _ => {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        ));
                    }
                },
                (_, None) => return Err(format!("missing a value on flag: --{name}")),
                (_, Some(v)) => v.to_string(),
            };
            out[slot].1.push(v);
        }
        Ok(Flags(out))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    /// A string option; `--name=` (empty) counts as absent, as in Docker.
    fn str(&self, name: &str) -> Option<String> {
        self.all(name).pop().filter(|s| !s.is_empty())
    }
    fn bool(&self, name: &str) -> Option<bool> {
        self.all(name).pop().map(|v| v == "true")
    }
}

fn no_flags(s: &Split) -> std::result::Result<(), String> {
    Flags::parse(&s.flags, &[]).map(|_| ())
}

fn parse_onbuild(
    s: &Split,
    line: &str,
    heredocs: Vec<Heredoc>,
    esc: char,
) -> std::result::Result<Instruction, String> {
    if s.rest.is_empty() {
        return Err("ONBUILD requires at least one argument".into());
    }
    no_flags(s)?;
    let inner = split_command(&s.rest);
    let kw = inner.keyword.to_ascii_uppercase();
    match kw.as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "MAINTAINER" | "FROM" => return Err(format!("{kw} isn't allowed as an ONBUILD trigger")),
        _ => {}
    }
    let mut expression = {
        let t = line.trim_start_matches(is_space);
        t.get(7..)
            .unwrap_or("")
            .trim_start_matches(is_space)
            .to_string()
    };
    for h in &heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    match typed(&inner, heredocs, esc)? {
        Parsed::Instr(i) => Ok(Instruction::Onbuild(Onbuild {
            expression,
            instruction: Box::new(i),
        })),
        Parsed::From(_) => Err("FROM isn't allowed as an ONBUILD trigger".into()),
    }
}

fn shell_or_exec(rest: &str, what: &str) -> std::result::Result<Command, String> {
    if rest.is_empty() {
        return Err(format!("{what} requires at least one argument"));
    }
    Ok(match maybe_json(rest)? {
        MaybeJson::Json(v) => Command::Exec(v),
        MaybeJson::NotJson => Command::Shell(rest.to_string()),
    })
}

fn exactly_one(s: &Split, what: &str) -> std::result::Result<String, String> {
    no_flags(s)?;
    if s.rest.is_empty() {
        return Err(format!("{what} requires exactly one argument"));
    }
    Ok(s.rest.clone())
}

fn key_values(s: &Split, what: &str, esc: char) -> std::result::Result<Vec<KeyValue>, String> {
    no_flags(s)?;
    let words = parse_words(&s.rest, esc);
    if words.is_empty() {
        return Err(format!("{what} requires at least one argument"));
    }
    let mut out = Vec::new();
    if !words[0].contains('=') {
        // Legacy `ENV key value…`: one pair, the value is the rest of the line as written.
        match s.rest.split_once(is_field_sep) {
            Some((k, v)) => out.push(KeyValue {
                key: k.to_string(),
                value: v.trim_start_matches(is_field_sep).to_string(),
            }),
            None => return Err(format!("{what} must have two arguments")),
        }
    } else {
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(format!(
                    "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
                ));
            };
            out.push(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            });
        }
    }
    if out.iter().any(|kv| kv.key.is_empty()) {
        return Err(format!("{what} names can not be blank"));
    }
    Ok(out)
}

/// Go's time.ParseDuration, for HEALTHCHECK options. Returns nanoseconds.
fn go_duration(s: &str) -> std::result::Result<i128, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        rest = &rest[unit_end..];
        total += n * unit;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

fn interval(f: &Flags, name: &str) -> std::result::Result<Option<Duration>, String> {
    let Some(v) = f.str(name) else {
        return Ok(None);
    };
    let ns = go_duration(&v)?;
    if ns == 0 {
        return Ok(None);
    }
    if ns < 1_000_000 {
        return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
    }
    Ok(Some(Duration::from_nanos(ns as u64)))
}

fn healthcheck(s: &Split) -> std::result::Result<Healthcheck, String> {
    let rest = s.rest.as_str();
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    let typ = rest[..sep].to_ascii_uppercase();
    let cmd = rest[sep..].trim_start_matches(is_space);
    if typ == "NONE" {
        if !cmd.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        // Docker ignores options here; they can only be a mistake, so say so.
        if !s.flags.is_empty() {
            return Err("HEALTHCHECK NONE takes no options".into());
        }
        return Ok(Healthcheck::None);
    }
    let f = Flags::parse(
        &s.flags,
        &[
            ("interval", Fk::Str),
            ("timeout", Fk::Str),
            ("start-period", Fk::Str),
            ("start-interval", Fk::Str),
            ("retries", Fk::Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
    }
    let command = match maybe_json(cmd)? {
        MaybeJson::Json(v) if !v.is_empty() => Command::Exec(v),
        MaybeJson::NotJson if !cmd.is_empty() => Command::Shell(cmd.to_string()),
        _ => return Err("Missing command after HEALTHCHECK CMD".into()),
    };
    let retries = match f.str("retries") {
        None => None,
        Some(r) => {
            let n: i32 = r
                .strip_prefix('+')
                .unwrap_or(&r)
                .parse()
                .map_err(|_| format!("invalid --retries value \"{r}\""))?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            Some(n as u32)
        }
    };
    Ok(Healthcheck::Check {
        command,
        interval: interval(&f, "interval")?,
        timeout: interval(&f, "timeout")?,
        start_period: interval(&f, "start-period")?,
        start_interval: interval(&f, "start-interval")?,
        retries,
    })
}

/// `--mount=type=cache,target=/x,…`: CSV fields (`"…"` quoting as Go's encoding/csv).
pub(crate) fn parse_mount(spec: &str) -> std::result::Result<Mount, String> {
    let mut fields = Vec::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("invalid mount '{spec}': unterminated quote")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
            if !matches!(chars.get(i), None | Some(',')) {
                return Err(format!("invalid mount '{spec}': extraneous \" in field"));
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!("invalid mount '{spec}': bare \" in field"));
                }
                field.push(c);
                i += 1;
            }
        }
        fields.push(field);
        if chars.get(i) == Some(&',') {
            i += 1;
        } else {
            break;
        }
    }
    let mut kind = "bind".to_string();
    let mut options = Vec::new();
    for f in fields {
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (f.trim().to_ascii_lowercase(), None),
        };
        match (k.as_str(), &v) {
            ("type", Some(t)) => {
                let t = t.to_ascii_lowercase();
                if !matches!(t.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(format!("unsupported mount type \"{t}\""));
                }
                kind = t;
            }
            ("ro" | "readonly" | "rw" | "readwrite" | "required", _) => options.push((k, v)),
            (
                "from" | "source" | "src" | "target" | "dst" | "destination" | "id" | "sharing"
                | "mode" | "uid" | "gid" | "size" | "env",
                Some(_),
            ) => options.push((k, v)),
            (_, None) => {
                return Err(format!(
                    "invalid field '{f}' in --mount: must be a key=value pair"
                ));
            }
            _ => return Err(format!("unexpected key '{k}' in '{f}'")),
        }
    }
    let m = Mount { kind, options };
    if matches!(m.kind.as_str(), "bind" | "cache" | "tmpfs") && m.target().is_none() {
        return Err(format!("--mount of type {} needs a target", m.kind));
    }
    if let Some(s) = m.get(&["sharing"])
        && !matches!(s, "shared" | "private" | "locked")
    {
        return Err(format!("unrecognized sharing parameter \"{s}\" in --mount"));
    }
    Ok(m)
}

fn files(
    s: &Split,
    f: &Flags,
    heredocs: &[Heredoc],
    what: &str,
) -> std::result::Result<Files, String> {
    let (args, json) = match maybe_json(&s.rest)? {
        MaybeJson::Json(v) => (v, true),
        MaybeJson::NotJson => (fields(&s.rest), false),
    };
    if args.len() < 2 {
        return Err(format!(
            "{what} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let (dest, srcs) = args.split_last().ok_or("no destination")?;
    if parse_heredoc_word(dest).is_some() {
        return Err(format!("{what} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::new();
    for src in srcs {
        let source = match parse_heredoc_word(src) {
            Some(mut h) if !json => {
                // The body comes from the heredoc of that name read after the line (the
                // last one if a name repeats, as in BuildKit).
                if let Some(b) = heredocs.iter().rev().find(|b| b.name == h.name) {
                    h.content = b.content.clone();
                }
                Source::Heredoc(h)
            }
            _ => {
                let c = Source::classify(src);
                if what == "COPY" && !matches!(c, Source::Path(_)) {
                    return Err(format!("source can't be a URL for COPY: {src}"));
                }
                c
            }
        };
        sources.push(source);
    }
    Ok(Files {
        sources,
        dest: dest.clone(),
        json,
        chown: f.str("chown"),
        chmod: f.str("chmod"),
        link: f.bool("link").unwrap_or(false),
        parents: f.bool("parents").unwrap_or(false),
        exclude: f.all("exclude"),
    })
}

/// Type one split line (not ONBUILD).
fn typed(s: &Split, heredocs: Vec<Heredoc>, esc: char) -> std::result::Result<Parsed, String> {
    let kw = s.keyword.to_ascii_lowercase();
    let rest = s.rest.as_str();
    let i = match kw.as_str() {
        "from" => {
            let f = Flags::parse(&s.flags, &[("platform", Fk::Str), ("arg", Fk::Strs)])?;
            let args = fields(rest);
            let name = match args.len() {
                1 => None,
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let n = args[2].to_ascii_lowercase();
                    let mut cs = n.chars();
                    let ok = cs.next().is_some_and(|c| c.is_ascii_lowercase())
                        && cs.all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !ok {
                        return Err(format!(
                            "invalid name for build stage: \"{}\", name can't start with a number or contain symbols",
                            args[2]
                        ));
                    }
                    Some(n)
                }
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            let mut fargs = Vec::new();
            for a in f.all("arg") {
                match a.split_once('=') {
                    Some((k, v)) if !k.is_empty() => fargs.push((k.to_string(), v.to_string())),
                    _ => return Err(format!("--arg must be NAME=VALUE, not \"{a}\"")),
                }
            }
            return Ok(Parsed::From(From {
                image: args[0].clone(),
                name,
                platform: f.str("platform"),
                args: fargs,
            }));
        }
        "run" => {
            let f = Flags::parse(
                &s.flags,
                &[
                    ("mount", Fk::Strs),
                    ("network", Fk::Str),
                    ("security", Fk::Str),
                ],
            )?;
            let command = shell_or_exec(rest, "RUN")?;
            if let Command::Exec(v) = &command
                && v.is_empty()
            {
                return Err("RUN requires at least one argument".into());
            }
            if let Some(n) = f.str("network")
                && !matches!(n.as_str(), "default" | "none" | "host")
            {
                return Err(format!("unsupported network mode \"{n}\""));
            }
            if let Some(n) = f.str("security")
                && !matches!(n.as_str(), "sandbox" | "insecure")
            {
                return Err(format!("unsupported security mode \"{n}\""));
            }
            let mounts = f
                .all("mount")
                .iter()
                .map(|m| parse_mount(m))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Instruction::Run(Run {
                command,
                heredocs,
                mounts,
                network: f.str("network"),
                security: f.str("security"),
            })
        }
        "cmd" => {
            no_flags(s)?;
            Instruction::Cmd(shell_or_exec(rest, "CMD")?)
        }
        "entrypoint" => {
            no_flags(s)?;
            Instruction::Entrypoint(shell_or_exec(rest, "ENTRYPOINT")?)
        }
        "shell" => {
            no_flags(s)?;
            match maybe_json(rest)? {
                MaybeJson::Json(v) if !v.is_empty() => Instruction::Shell(v),
                _ if rest.is_empty() || rest.trim() == "[]" => {
                    return Err("SHELL requires at least one argument".into());
                }
                _ => return Err("SHELL requires the arguments to be in JSON form".into()),
            }
        }
        "copy" => {
            let f = Flags::parse(
                &s.flags,
                &[
                    ("chown", Fk::Str),
                    ("from", Fk::Str),
                    ("chmod", Fk::Str),
                    ("link", Fk::Bool),
                    ("parents", Fk::Bool),
                    ("exclude", Fk::Strs),
                ],
            )?;
            Instruction::Copy(Copy {
                files: files(s, &f, &heredocs, "COPY")?,
                from: f.str("from"),
            })
        }
        "add" => {
            let f = Flags::parse(
                &s.flags,
                &[
                    ("chown", Fk::Str),
                    ("chmod", Fk::Str),
                    ("link", Fk::Bool),
                    ("keep-git-dir", Fk::Bool),
                    ("checksum", Fk::Str),
                    ("exclude", Fk::Strs),
                    ("unpack", Fk::Bool),
                ],
            )?;
            Instruction::Add(Add {
                files: files(s, &f, &heredocs, "ADD")?,
                checksum: f.str("checksum"),
                keep_git_dir: f.bool("keep-git-dir").unwrap_or(false),
                unpack: f.bool("unpack"),
            })
        }
        "env" => Instruction::Env(key_values(s, "ENV", esc)?),
        "label" => Instruction::Label(key_values(s, "LABEL", esc)?),
        "arg" => {
            no_flags(s)?;
            let words = parse_words(rest, esc);
            if words.is_empty() {
                return Err("ARG requires at least one argument".into());
            }
            let mut decls = Vec::new();
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                };
                if name.is_empty() {
                    return Err("ARG names can not be blank".into());
                }
                decls.push(ArgDecl { name, default });
            }
            Instruction::Arg(decls)
        }
        "workdir" => Instruction::Workdir(exactly_one(s, "WORKDIR")?),
        "user" => Instruction::User(exactly_one(s, "USER")?),
        "stopsignal" => Instruction::StopSignal(exactly_one(s, "STOPSIGNAL")?),
        "maintainer" => Instruction::Maintainer(exactly_one(s, "MAINTAINER")?),
        "expose" => {
            no_flags(s)?;
            let v = fields(rest);
            if v.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(v)
        }
        "volume" => {
            no_flags(s)?;
            let v = match maybe_json(rest)? {
                MaybeJson::Json(v) => v,
                MaybeJson::NotJson => fields(rest),
            };
            if v.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            let mut out = Vec::new();
            for x in v {
                let x = x.trim_matches(is_space);
                if x.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                out.push(x.to_string());
            }
            Instruction::Volume(out)
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(s)?),
        _ => return Err(format!("unknown instruction '{}'", s.keyword)),
    };
    Ok(Parsed::Instr(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ".into(), false));
        assert_eq!(trim_continuation("a \\ \t", '\\'), ("a ".into(), false));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\".into(), true));
        assert_eq!(trim_continuation("\\", '\\'), ("".into(), false));
        assert_eq!(trim_continuation("a `", '`'), ("a ".into(), false));
    }

    #[test]
    fn flags() {
        let (rest, f) = extract_flags("--from=a --chown=\"x y\" src dst");
        assert_eq!(f, ["--from=a", "--chown=x y"]);
        assert_eq!(rest, "src dst");
        let (rest, f) = extract_flags("--link -- --weird dst");
        assert_eq!(f, ["--link"]);
        assert_eq!(rest, " --weird dst");
    }

    #[test]
    fn words() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f'", '\\'),
            ["a=\"b c\"", "d='e f'"]
        );
        assert_eq!(parse_words("a=b\\ c", '\\'), ["a=b\\ c"]);
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration("300ms").unwrap(), 300_000_000);
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
    }
}
