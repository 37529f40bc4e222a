//! `WWW-Authenticate` challenges (RFC 7235 syntax) as registries send them:
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`
//! or `Basic realm="Registry Realm"`, possibly several in one header.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased: `bearer`, `basic`, ...
    pub scheme: String,
    /// Parameters with lower-cased names, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in the given header values. Malformed parts are skipped rather than
/// failing: the caller decides what to do when no usable challenge is left.
pub fn parse(values: &[&str]) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        parse_one_header(v, &mut out);
    }
    out
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn quoted(&mut self) -> Option<String> {
        // at the opening quote
        self.i += 1;
        let mut v = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&v).into_owned()),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                c => v.push(c),
            }
        }
        None
    }
}

/// token68 and token characters (RFC 7230 tchar plus `/` and `=` for token68 values).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c)
}

fn parse_one_header(v: &str, out: &mut Vec<Challenge>) {
    let mut lx = Lexer {
        s: v.as_bytes(),
        i: 0,
    };
    let mut current: Option<Challenge> = None;
    // Bounded: every iteration consumes at least one byte or ends.
    loop {
        lx.skip_ws();
        while lx.peek() == Some(b',') {
            lx.i += 1;
            lx.skip_ws();
        }
        let Some(word) = lx.token() else {
            if lx.peek().is_some() {
                // Unexpected character: skip it.
                lx.i += 1;
                continue;
            }
            break;
        };
        lx.skip_ws();
        if lx.peek() == Some(b'=') {
            lx.i += 1;
            lx.skip_ws();
            let value = if lx.peek() == Some(b'"') {
                lx.quoted().unwrap_or_default()
            } else {
                let mut t = lx.token().unwrap_or_default();
                // token68 may end in '='
                while lx.peek() == Some(b'=') {
                    lx.i += 1;
                    t.push('=');
                }
                t
            };
            if let Some(c) = current.as_mut() {
                c.params.push((word.to_ascii_lowercase(), value));
            }
        } else {
            if let Some(c) = current.take() {
                out.push(c);
            }
            current = Some(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub() {
        let c = parse(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn several_and_odd_spacing() {
        let c = parse(&[
            r#"Basic realm="Registry Realm", Bearer  realm = "https://x/t" , service=reg, error="insufficient_scope""#,
            "Negotiate",
        ]);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].param("realm"), Some("https://x/t"));
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(c[2].scheme, "negotiate");
    }

    #[test]
    fn escapes_and_garbage() {
        let c = parse(&[r#"Bearer realm="a\"b",scope="x"#]);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        // unterminated quote: value dropped, no panic
        for junk in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer =",
            "Bearer realm=\"",
            "€ Bearer",
        ] {
            let _ = parse(&[junk]);
        }
    }
}
