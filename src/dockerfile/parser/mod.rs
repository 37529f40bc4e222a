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
//!
//! This file keeps the line structure (directives, comments, continuation joining, heredoc
//! bodies) and the stages. Each logical line is then split (`split`: keyword, options, words),
//! its options checked (`options`), and typed per keyword (`keywords`).

mod keywords;
mod options;
mod split;

use super::heredoc::heredocs_from_line;
use super::instructions::*;
use crate::error::{Error, Result};
use keywords::{Parsed, parse_onbuild, typed};
use split::{MaybeJson, is_space, maybe_json, split_command};

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
}
