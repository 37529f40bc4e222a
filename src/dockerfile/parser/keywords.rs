//! Typing one split line: each keyword's arguments and options checked and turned into its
//! [`Instruction`] (or a [`From`]), with Docker's error messages.

use super::options::{Fk, Flags, interval, no_flags, parse_mount};
use super::split::{
    MaybeJson, Split, fields, is_field_sep, is_space, maybe_json, parse_words, split_command,
};
use crate::dockerfile::heredoc::{Heredoc, parse_heredoc_word};
use crate::dockerfile::instructions::*;

/// A typed line: FROM starts a stage, everything else goes into one.
pub(super) enum Parsed {
    From(From),
    Instr(Instruction),
}

/// Type one split line (not ONBUILD).
pub(super) fn typed(
    s: &Split,
    heredocs: Vec<Heredoc>,
    esc: char,
) -> std::result::Result<Parsed, String> {
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
            let f = files_flags(s, &[("from", Fk::Str), ("parents", Fk::Bool)])?;
            Instruction::Copy(Copy {
                files: files(s, &f, &heredocs, "COPY")?,
                from: f.str("from"),
            })
        }
        "add" => {
            let f = files_flags(
                s,
                &[
                    ("keep-git-dir", Fk::Bool),
                    ("checksum", Fk::Str),
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

pub(super) fn parse_onbuild(
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

/// The options COPY and ADD share (see [`Files`]), and `own`, those of one of them.
fn files_flags(s: &Split, own: &[(&'static str, Fk)]) -> std::result::Result<Flags, String> {
    let shared = [
        ("chown", Fk::Str),
        ("chmod", Fk::Str),
        ("link", Fk::Bool),
        ("exclude", Fk::Strs),
    ];
    let spec: Vec<_> = shared.iter().chain(own).copied().collect();
    Flags::parse(&s.flags, &spec)
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
