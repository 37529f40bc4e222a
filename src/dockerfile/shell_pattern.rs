//! The shell patterns of `${N#pat}`, `${N%pat}` and `${N/pat/rep}` (BuildKit's: `*`, `?`,
//! literal characters and the escapes `\*`, `\?`, `\\`; no bracket expressions), matched in
//! bounded time.
//!
//! A value can be up to a megabyte (the lexer's cap on a word), so trying every prefix,
//! suffix or substring with a backtracking matcher (O(n²·p), O(n³·p) for `/`) could run for
//! hours. Instead the pattern runs as a set of positions (an NFA) over the value once:
//! forwards for the prefixes that match, over the reversed value with the reversed pattern for
//! the suffixes, and for `/` once backwards to learn where matches can start, then forwards
//! from each start that is used. The work is counted, and a value and pattern that would need
//! more than [`MAX_STEPS`] is an error rather than a hang.

/// Work (pattern positions times characters) one operation may take: well under a second.
const MAX_STEPS: u64 = 1 << 24;

type Why<T> = Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

#[derive(Debug)]
pub struct Pattern(Vec<Tok>);

/// The positions of a running pattern, with the work spent so far.
struct Run<'p> {
    toks: &'p [Tok],
    states: Vec<usize>,
    next: Vec<usize>,
    seen: Vec<u64>,
    generation: u64,
    steps: &'p mut u64,
}

impl<'p> Run<'p> {
    fn new(toks: &'p [Tok], steps: &'p mut u64) -> Run<'p> {
        Run {
            toks,
            states: Vec::new(),
            next: Vec::new(),
            seen: vec![0; toks.len() + 1],
            generation: 1,
            steps,
        }
    }

    /// Adds position `i` and those a `*` lets it skip to (a star also matches nothing).
    fn add(seen: &mut [u64], generation: u64, toks: &[Tok], out: &mut Vec<usize>, mut i: usize) {
        loop {
            if seen[i] == generation {
                return;
            }
            seen[i] = generation;
            out.push(i);
            if toks.get(i) != Some(&Tok::Star) {
                return;
            }
            i += 1;
        }
    }

    fn start(&mut self) {
        Run::add(
            &mut self.seen,
            self.generation,
            self.toks,
            &mut self.states,
            0,
        );
    }

    fn accepting(&self) -> bool {
        self.states.contains(&self.toks.len())
    }

    fn is_dead(&self) -> bool {
        self.states.is_empty()
    }

    /// Consumes `c`; with `restart`, also starts a new match after it.
    fn step(&mut self, c: char, restart: bool) -> Why<()> {
        *self.steps += self.states.len() as u64 + 1;
        if *self.steps > MAX_STEPS {
            return Err(format!(
                "pattern matching needs more than {MAX_STEPS} steps on this value (a value and \
                 pattern this long are refused rather than left to run for minutes)"
            ));
        }
        self.generation += 1;
        self.next.clear();
        for &i in &self.states {
            let to = match self.toks.get(i) {
                Some(Tok::Star) => i,
                Some(Tok::Any) => i + 1,
                Some(Tok::Lit(l)) if *l == c => i + 1,
                _ => continue,
            };
            Run::add(
                &mut self.seen,
                self.generation,
                self.toks,
                &mut self.next,
                to,
            );
        }
        if restart {
            Run::add(
                &mut self.seen,
                self.generation,
                self.toks,
                &mut self.next,
                0,
            );
        }
        std::mem::swap(&mut self.states, &mut self.next);
        Ok(())
    }
}

impl Pattern {
    pub fn parse(p: &str) -> Why<Pattern> {
        let mut out = Vec::new();
        let mut it = p.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => out.push(Tok::Star),
                '?' => out.push(Tok::Any),
                '\\' => match it.peek().copied() {
                    // `\}` and `\/` only protect the ${} syntax; the escape is not part of it.
                    Some('}' | '/') => {}
                    Some(n @ ('*' | '?' | '\\')) => {
                        it.next();
                        out.push(Tok::Lit(n));
                    }
                    Some(n) => {
                        return Err(format!("invalid pattern ({p}): invalid escape '\\{n}'"));
                    }
                    None => return Err(format!("invalid pattern ({p}): trailing escape")),
                },
                c => out.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern(out))
    }

    fn reversed(&self) -> Pattern {
        Pattern(self.0.iter().rev().copied().collect())
    }

    /// The lengths of the prefixes of `v` the pattern matches, shortest first.
    fn prefix_lengths(&self, v: impl Iterator<Item = char>) -> Why<Vec<usize>> {
        let mut steps = 0;
        let mut run = Run::new(&self.0, &mut steps);
        run.start();
        let mut lens = Vec::new();
        if run.accepting() {
            lens.push(0);
        }
        for (n, c) in v.enumerate() {
            run.step(c, false)?;
            if run.is_dead() {
                break;
            }
            if run.accepting() {
                lens.push(n + 1);
            }
        }
        Ok(lens)
    }

    /// `${N#pat}` (shortest) and `${N##pat}` (longest): `value` less the prefix matched.
    pub fn trim_prefix(&self, value: &str, longest: bool) -> Why<String> {
        let lens = self.prefix_lengths(value.chars())?;
        let cut = if longest { lens.last() } else { lens.first() };
        Ok(match cut {
            Some(&n) => value.chars().skip(n).collect(),
            None => value.to_string(),
        })
    }

    /// `${N%pat}` (shortest) and `${N%%pat}` (longest): `value` less the suffix matched.
    pub fn trim_suffix(&self, value: &str, longest: bool) -> Why<String> {
        let lens = self.reversed().prefix_lengths(value.chars().rev())?;
        let cut = if longest { lens.last() } else { lens.first() };
        Ok(match cut {
            Some(&n) => {
                let keep = value.chars().count() - n;
                value.chars().take(keep).collect()
            }
            None => value.to_string(),
        })
    }

    /// `${N/pat/rep}` and `${N//pat/rep}`: leftmost, longest matches replaced; the result may
    /// not exceed `max_len` bytes.
    pub fn replace(
        &self,
        value: &str,
        replacement: &str,
        all: bool,
        max_len: usize,
    ) -> Why<String> {
        let v: Vec<char> = value.chars().collect();
        let mut steps = 0;
        let starts = self.match_starts(&v, &mut steps)?;
        let too_long = || format!("the replacement makes a value longer than {max_len} bytes");
        let mut out = String::new();
        let mut pos = 0;
        let mut last_match_end: Option<usize> = None;
        while pos <= v.len() {
            let Some(i) = (pos..=v.len()).find(|&k| starts[k]) else {
                break;
            };
            let j = self.longest_from(&v, i, &mut steps)?;
            // Like Go's ReplaceAll: an empty match right after the previous match is skipped.
            if i == j && last_match_end == Some(i) {
                if i < v.len() {
                    out.push(v[i]);
                }
                pos = i + 1;
                continue;
            }
            out.extend(&v[pos..i]);
            out.push_str(replacement);
            if out.len() > max_len {
                return Err(too_long());
            }
            last_match_end = Some(j);
            if !all {
                pos = j;
                break;
            }
            if j == i {
                if i < v.len() {
                    out.push(v[i]);
                }
                pos = i + 1;
            } else {
                pos = j;
            }
        }
        if pos <= v.len() {
            out.extend(&v[pos..]);
        }
        if out.len() > max_len {
            return Err(too_long());
        }
        Ok(out)
    }

    /// For each position of `v` (and its end), whether a match starts there: the reversed
    /// pattern run backwards, a new match begun at every position.
    fn match_starts(&self, v: &[char], steps: &mut u64) -> Why<Vec<bool>> {
        let rev = self.reversed();
        let mut run = Run::new(&rev.0, steps);
        run.start();
        let mut starts = vec![false; v.len() + 1];
        starts[v.len()] = run.accepting();
        for k in (0..v.len()).rev() {
            run.step(v[k], true)?;
            starts[k] = run.accepting();
        }
        Ok(starts)
    }

    /// The end of the longest match starting at `i` (one is known to exist).
    fn longest_from(&self, v: &[char], i: usize, steps: &mut u64) -> Why<usize> {
        let mut run = Run::new(&self.0, steps);
        run.start();
        let mut end = i;
        for (k, &c) in v.iter().enumerate().skip(i) {
            run.step(c, false)?;
            if run.is_dead() {
                break;
            }
            if run.accepting() {
                end = k + 1;
            }
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious matcher, to check the NFA against.
    fn naive(p: &[Tok], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((Tok::Star, rest)) => (0..=s.len()).any(|k| naive(rest, &s[k..])),
            Some((Tok::Any, rest)) => !s.is_empty() && naive(rest, &s[1..]),
            Some((Tok::Lit(c), rest)) => s.first() == Some(c) && naive(rest, &s[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn prefixes_and_starts_agree_with_naive_matching(
            pat in "[ab*?]{0,6}",
            value in "[ab]{0,10}",
        ) {
            let p = Pattern::parse(&pat).unwrap();
            let v: Vec<char> = value.chars().collect();
            let want: Vec<usize> = (0..=v.len()).filter(|&n| naive(&p.0, &v[..n])).collect();
            proptest::prop_assert_eq!(p.prefix_lengths(v.iter().copied()).unwrap(), want);
            let mut steps = 0;
            let starts = p.match_starts(&v, &mut steps).unwrap();
            for (i, &s) in starts.iter().enumerate() {
                let any = (i..=v.len()).any(|j| naive(&p.0, &v[i..j]));
                proptest::prop_assert_eq!(s, any, "start {}", i);
            }
        }
    }

    #[test]
    fn huge_values_fail_fast() {
        let big = "a".repeat(1 << 20);
        let p = Pattern::parse("*b*c").unwrap();
        let t = std::time::Instant::now();
        assert!(p.trim_prefix(&big, true).is_ok(), "one pass is cheap");
        assert!(p.replace(&big, "x", true, 1 << 20).is_ok());
        let stars = Pattern::parse(&"*a".repeat(200)).unwrap();
        let e = stars.trim_suffix(&big, false).unwrap_err();
        assert!(e.contains("steps"), "{e}");
        assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
        let e = Pattern::parse("?")
            .unwrap()
            .replace(&"a".repeat(1000), &"x".repeat(2000), true, 1 << 20)
            .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }
}
