//! Splitting one logical line, before it is typed: the keyword, its `--options`, and the
//! rest as words, fields or a JSON array, each the way BuildKit splits it for the instructions
//! that take it. Quotes and escapes stay in the words: substitution processes them later.

/// One instruction before typing: keyword as written, raw options, the rest of the line.
pub(super) struct Split {
    pub(super) keyword: String,
    pub(super) flags: Vec<String>,
    pub(super) rest: String,
}

/// Whitespace as Go's `unicode.IsSpace`.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
pub(super) fn is_field_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// BuildKit's splitCommand: keyword, leading `--options`, and the trimmed rest.
pub(super) fn split_command(line: &str) -> Split {
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
pub(super) fn extract_flags(line: &str) -> (String, Vec<String>) {
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
        } else if c == quote {
            phase = Ph::Word;
            pos += 1;
            continue;
        }
        // A character of the word, in quotes or not: `\` makes the next one literal, and at the
        // very end it vanishes (the word then ends at the end of input, quoted or not).
        let mut c = c;
        if c == '\\' {
            pos += 1;
            match chars.get(pos) {
                Some(&(_, next)) => c = next,
                None => continue,
            }
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's parseWords (ENV, LABEL, ARG): split on blanks outside quotes, keeping quotes and
/// escapes in the words for substitution to process later.
pub(super) fn parse_words(rest: &str, esc: char) -> Vec<String> {
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
pub(super) fn fields(rest: &str) -> Vec<String> {
    rest.split(is_field_sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) enum MaybeJson {
    Json(Vec<String>),
    NotJson,
}

/// A JSON array of strings, or not JSON at all (then the caller uses the shell/word form). An
/// array with non-strings is an error, as in Docker.
pub(super) fn maybe_json(rest: &str) -> std::result::Result<MaybeJson, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
