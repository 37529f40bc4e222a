//! Instruction options (`--name=value` after the keyword): BuildKit's BFlags, checked against
//! each instruction's list, and the option values with a syntax of their own (`--mount`'s CSV
//! fields, HEALTHCHECK's Go durations).

use std::time::Duration;

use super::split::Split;
use crate::dockerfile::instructions::Mount;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Fk {
    Bool,
    Str,
    Strs,
}

/// Parsed options of one instruction (BuildKit's BFlags).
pub(super) struct Flags(Vec<(&'static str, Vec<String>)>);

impl Flags {
    pub(super) fn parse(
        raw: &[String],
        spec: &[(&'static str, Fk)],
    ) -> std::result::Result<Flags, String> {
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

    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    /// A string option; `--name=` (empty) counts as absent, as in Docker.
    pub(super) fn str(&self, name: &str) -> Option<String> {
        self.all(name).pop().filter(|s| !s.is_empty())
    }
    pub(super) fn bool(&self, name: &str) -> Option<bool> {
        self.all(name).pop().map(|v| v == "true")
    }
}

pub(super) fn no_flags(s: &Split) -> std::result::Result<(), String> {
    Flags::parse(&s.flags, &[]).map(|_| ())
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

pub(super) fn interval(f: &Flags, name: &str) -> std::result::Result<Option<Duration>, String> {
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

/// `--mount=type=cache,target=/x,…`: CSV fields (`"…"` quoting as Go's encoding/csv).
pub(super) fn parse_mount(spec: &str) -> std::result::Result<Mount, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration("300ms").unwrap(), 300_000_000);
        assert!(go_duration("5").is_err());
        assert!(go_duration("5x").is_err());
    }
}
