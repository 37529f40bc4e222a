//! Go's regular expression syntax (`regexp.Compile`: RE2 with Perl flags), for the expressions
//! moby's patternmatcher makes of `.dockerignore` patterns, parsed into regex-syntax's HIR so
//! that regex-automata runs them (in linear time, as Go's engine does).
//!
//! Why not hand the text to the `regex` crate: its syntax is not Go's where a pattern can
//! reach. moby copies a pattern's `[…]` and `\x` into the expression unchanged, so Go's rules
//! decide what they mean: inside a class `[` is an ordinary character (Rust nests classes, and
//! reads `&&`, `--`, `~~` as set operations), `[:alpha:]` is a POSIX class, `\d` `\s` `\w` are
//! ASCII (Rust's are Unicode), `\0`–`\7` start octal escapes, `\Q…\E` quotes, `\C` is an error.
//!
//! What reaches this parser is narrower than all of Go's syntax: moby escapes `.+()|{}$` and
//! turns `*` `?` into its own sub-expressions, so the text is literals, `[…]` classes, `\`
//! escapes, `^`, and moby's `[^/]`, `[^/]*`, `(.*/)?`, `.*`, `^…$`. Those are what is
//! parsed here, with Go's rules and error cases; `|`, `+` and groups are parsed too (they cost
//! a line each), counted repetitions `{n,m}` are not (a `{` is a literal).

use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Look, Repetition};

/// Groups nest at most this deep (moby makes one level; Go allows 1000).
const MAX_NESTING: usize = 100;

/// Parses `re` with Go's syntax; the error says what Go's would.
pub fn parse(re: &str) -> Result<Hir, String> {
    let mut p = Parser {
        chars: re.chars().collect(),
        pos: 0,
    };
    let hir = p.alternation(0)?;
    match p.peek() {
        None => Ok(hir),
        Some(_) => Err("unexpected )".into()),
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

/// `\d`, `\s`, `\w` (ASCII in Go) and their negations.
fn perl_class(c: char) -> Option<(bool, &'static [(char, char)])> {
    const DIGIT: &[(char, char)] = &[('0', '9')];
    const SPACE: &[(char, char)] = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];
    const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
    Some(match c {
        'd' => (false, DIGIT),
        'D' => (true, DIGIT),
        's' => (false, SPACE),
        'S' => (true, SPACE),
        'w' => (false, WORD),
        'W' => (true, WORD),
        _ => return None,
    })
}

/// Go's POSIX classes, `[:name:]` inside a class (`[:^name:]` negated).
fn posix_class(name: &str) -> Option<(bool, &'static [(char, char)])> {
    let (negated, name) = match name.strip_prefix('^') {
        Some(n) => (true, n),
        None => (false, name),
    };
    let ranges: &'static [(char, char)] = match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\x7f')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\x1f'), ('\x7f', '\x7f')],
        "digit" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    };
    Some((negated, ranges))
}

/// `\pX` / `\PX`: Go's one-letter Unicode general categories. (The braced form `\p{Name}`
/// cannot reach here: moby escapes `{`.)
fn unicode_category(name: char) -> Option<ClassUnicode> {
    // Go's `C` is Cc, Cf, Co and Cs, without the unassigned code points Unicode's C has.
    let spec = match name {
        'C' => r"[\p{Cc}\p{Cf}\p{Co}]",
        'L' => r"\pL",
        'M' => r"\pM",
        'N' => r"\pN",
        'P' => r"\pP",
        'S' => r"\pS",
        'Z' => r"\pZ",
        _ => return None,
    };
    match regex_syntax::parse(spec).ok()?.into_kind() {
        regex_syntax::hir::HirKind::Class(Class::Unicode(c)) => Some(c),
        _ => None,
    }
}

fn class_of(ranges: &[(char, char)], negated: bool) -> ClassUnicode {
    let mut c = ClassUnicode::new(ranges.iter().map(|&(a, b)| ClassUnicodeRange::new(a, b)));
    if negated {
        c.negate();
    }
    c
}

fn literal(c: char) -> Hir {
    Hir::literal(c.to_string().into_bytes())
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn alternation(&mut self, depth: usize) -> Result<Hir, String> {
        let mut branches = vec![self.concat(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat(depth)?);
        }
        Ok(Hir::alternation(branches))
    }

    fn concat(&mut self, depth: usize) -> Result<Hir, String> {
        let mut items: Vec<Hir> = Vec::new();
        let mut last_was_repeat = false;
        while let Some(c) = self.peek() {
            let mut repeat = false;
            match c {
                ')' if depth > 0 => break,
                ')' => return Err("unexpected )".into()),
                '|' => break,
                '(' => {
                    self.pos += 1;
                    if self.peek() == Some('?') {
                        return Err("flags and named groups are not supported".into());
                    }
                    if depth >= MAX_NESTING {
                        return Err("expression nests too deeply".into());
                    }
                    items.push(self.alternation(depth + 1)?);
                    if self.next() != Some(')') {
                        return Err("missing closing )".into());
                    }
                }
                '^' => {
                    self.pos += 1;
                    items.push(Hir::look(Look::Start));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Hir::look(Look::End));
                }
                '.' => {
                    self.pos += 1;
                    items.push(Hir::class(Class::Unicode(class_of(&[('\n', '\n')], true))));
                }
                '[' => items.push(self.class()?),
                '*' | '+' | '?' => {
                    self.pos += 1;
                    // `x*?` is the non-greedy form; anything else stacked is an error.
                    let greedy = if self.peek() == Some('?') {
                        self.pos += 1;
                        false
                    } else {
                        true
                    };
                    if last_was_repeat {
                        return Err(format!("invalid nested repetition operator: {c}"));
                    }
                    let Some(sub) = items.pop() else {
                        return Err(format!("missing argument to repetition operator: {c}"));
                    };
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    items.push(Hir::repetition(Repetition {
                        min,
                        max,
                        greedy,
                        sub: Box::new(sub),
                    }));
                    repeat = true;
                }
                '\\' => self.escape_outside_class(&mut items)?,
                _ => {
                    self.pos += 1;
                    items.push(literal(c));
                }
            }
            last_was_repeat = repeat;
        }
        Ok(Hir::concat(items))
    }

    /// A `\` sequence outside a class; pushes what it means (literals one by one, so that a
    /// repetition applies to the last only).
    fn escape_outside_class(&mut self, items: &mut Vec<Hir>) -> Result<(), String> {
        let look = match self.peek_at(1) {
            Some('A') => Some(Look::Start),
            Some('z') => Some(Look::End),
            Some('b') => Some(Look::WordAscii),
            Some('B') => Some(Look::WordAsciiNegate),
            Some('C') => return Err(r"invalid escape sequence: \C".into()),
            Some('Q') => {
                // Everything up to `\E` (or the end) is literal.
                self.pos += 2;
                while self.pos < self.chars.len() {
                    if self.peek() == Some('\\') && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    let c = self.chars[self.pos];
                    self.pos += 1;
                    items.push(literal(c));
                }
                return Ok(());
            }
            _ => None,
        };
        if let Some(look) = look {
            self.pos += 2;
            items.push(Hir::look(look));
            return Ok(());
        }
        if let Some(class) = self.class_escape()? {
            items.push(Hir::class(Class::Unicode(class)));
            return Ok(());
        }
        let c = self.escape()?;
        items.push(literal(c));
        Ok(())
    }

    /// `\pX`, `\PX`, `\d` and friends at the current position (a `\`), if that is what is
    /// there.
    fn class_escape(&mut self) -> Result<Option<ClassUnicode>, String> {
        let Some(kind) = self.peek_at(1) else {
            return Ok(None);
        };
        if kind == 'p' || kind == 'P' {
            let name = self.peek_at(2);
            let mut class = name.and_then(unicode_category).ok_or_else(|| {
                format!(
                    "invalid character class range: \\{kind}{}",
                    name.map(String::from).unwrap_or_default()
                )
            })?;
            if kind == 'P' {
                class.negate();
            }
            self.pos += 3;
            return Ok(Some(class));
        }
        if let Some((negated, ranges)) = perl_class(kind) {
            self.pos += 2;
            return Ok(Some(class_of(ranges, negated)));
        }
        Ok(None)
    }

    /// Go's `parseEscape` at a `\`: the character it stands for.
    fn escape(&mut self) -> Result<char, String> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.next() else {
            return Err(r"trailing backslash at end of expression".into());
        };
        let invalid = |p: &Parser| {
            let seq: String = p.chars[start..p.pos.min(p.chars.len())].iter().collect();
            format!("invalid escape sequence: {seq}")
        };
        let octal = |c: Option<char>| c.and_then(|c| c.to_digit(8));
        match c {
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            '1'..='7' if octal(self.peek()).is_none() => Err(invalid(self)),
            '0'..='7' => {
                let mut r = c as u32 - '0' as u32;
                for _ in 0..2 {
                    let Some(d) = octal(self.peek()) else { break };
                    r = r * 8 + d;
                    self.pos += 1;
                }
                char::from_u32(r).ok_or_else(|| invalid(self))
            }
            'x' => {
                let hex = |c: Option<char>| c.and_then(|c| c.to_digit(16));
                match (hex(self.peek()), hex(self.peek_at(1))) {
                    (Some(a), Some(b)) => {
                        self.pos += 2;
                        char::from_u32(a * 16 + b).ok_or_else(|| invalid(self))
                    }
                    _ => {
                        self.pos = (self.pos + 2).min(self.chars.len());
                        Err(invalid(self))
                    }
                }
            }
            'a' => Ok('\x07'),
            'f' => Ok('\x0c'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0b'),
            _ => Err(invalid(self)),
        }
    }

    /// Go's `parseClass` at a `[`.
    fn class(&mut self) -> Result<Hir, String> {
        let start = self.pos;
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut class = ClassUnicode::empty();
        let mut first = true;
        loop {
            match self.peek() {
                None => {
                    let whole: String = self.chars[start..].iter().collect();
                    return Err(format!("missing closing ]: {whole}"));
                }
                Some(']') if !first => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            first = false;
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') {
                // `[:name:]` up to the first `:]` after it; with none it is just characters.
                let rest: String = self.chars[self.pos + 2..].iter().collect();
                if let Some(i) = rest.find(":]") {
                    let name = &rest[..i];
                    let Some((neg, ranges)) = posix_class(name) else {
                        return Err(format!("invalid character class range: [:{name}:]"));
                    };
                    class.union(&class_of(ranges, neg));
                    self.pos += 2 + name.chars().count() + 2;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                if let Some(c) = self.class_escape()? {
                    class.union(&c);
                    continue;
                }
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range: {lo}-{hi}"));
                }
            }
            class.union(&ClassUnicode::new([ClassUnicodeRange::new(lo, hi)]));
        }
        if negated {
            class.negate();
        }
        Ok(Hir::class(Class::Unicode(class)))
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.peek() {
            None => Err("missing closing ]".into()),
            Some('\\') => self.escape(),
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
        }
    }
}
