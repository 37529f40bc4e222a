//! Variable substitution: which strings of which instructions are expanded, with which
//! variables in scope ([`Scope`], Docker's rules).
//!
//! The parser keeps substitutable strings raw; the builder calls [`Located::expand`] per
//! instruction (and per FROM line) with the variables in scope at that point. The word-level
//! work (quotes, escapes, `${VAR:-x}` and the other modifiers, word splitting) is the
//! [`lexer`]'s; this module decides what gets it.
//!
//! # Which instructions, and where we differ from ch-image
//!
//! - Substituted (Docker's list): FROM (image, `--platform`; with the pre-FROM ARGs only),
//!   ADD/COPY (sources, destination, `--from`, `--chown`, `--chmod`, `--checksum`,
//!   `--exclude`; heredoc bodies unless the delimiter was quoted), ENV, LABEL, ARG (names and
//!   values), EXPOSE (also word-split), USER, VOLUME, WORKDIR, STOPSIGNAL, and RUN `--mount`
//!   option values.
//! - Also substituted, following ch-image ("substitution in every instruction"): MAINTAINER and
//!   ch-image's `FROM --arg` values.
//! - Not substituted, following Docker rather than ch-image: the commands of RUN, CMD,
//!   ENTRYPOINT, SHELL and HEALTHCHECK. They go to a shell that sees the ARG/ENV variables in
//!   its environment and expands them itself, with full shell syntax; substituting them first
//!   would break `$1`, `$(…)`, `$$` and single-quoted `$` in scripts that work under Docker.
//!   ONBUILD triggers are stored as written and substituted when they fire in a later build.
//! - An unset variable expands to "" (Docker). ch-image leaves `$UNSET` as written.
//! - `${VAR:-x}`/`${VAR:+x}` and the other modifiers are supported (ch-image rejects them).
//! - Scoping is Docker's (see [`Scope`]): pre-FROM ARGs are visible in FROM lines and, inside a
//!   stage, only after `ARG NAME` re-declares them; ch-image makes them visible everywhere.
//!   ENV beats ARG of the same name.
//! - The predefined variables ([`passes_through`]) are Docker's predefined proxy ARGs plus
//!   ch-image's additions, visible without an ARG.

use super::instructions::{
    Add, ArgDecl, Copy, Dockerfile, Files, From, Instruction, KeyValue, Located, Source,
};
use super::lexer::{self, LexOptions};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;
type Why<T> = std::result::Result<T, String>;

/// BuildKit's message for a word that failed, the word cut short if it is long.
fn failed(w: &str, e: String) -> String {
    let shown: String = w.chars().take(80).collect();
    let more = if shown.len() < w.len() { "…" } else { "" };
    format!("failed to process \"{shown}{more}\": {e}")
}

fn word(w: &str, esc: char, vars: Vars) -> Why<String> {
    lexer::process(w, LexOptions::with_escape(esc), vars)
        .map(|(s, _)| s)
        .map_err(|e| failed(w, e))
}

fn words(w: &str, esc: char, vars: Vars) -> Why<Vec<String>> {
    lexer::process(w, LexOptions::with_escape(esc), vars)
        .map(|(_, v)| v)
        .map_err(|e| failed(w, e))
}

fn opt(w: &Option<String>, esc: char, vars: Vars) -> Why<Option<String>> {
    w.as_deref().map(|w| word(w, esc, vars)).transpose()
}

fn kvs(v: &[KeyValue], esc: char, vars: Vars) -> Why<Vec<KeyValue>> {
    v.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: word(&kv.key, esc, vars)?,
                value: word(&kv.value, esc, vars)?,
            })
        })
        .collect()
}

fn expand_files(f: &Files, copy: bool, esc: char, vars: Vars) -> Why<Files> {
    let mut sources = Vec::new();
    for s in &f.sources {
        sources.push(match s {
            Source::Path(p) | Source::Url(p) | Source::Git(p) => {
                let w = word(p, esc, vars)?;
                let c = Source::classify(&w);
                if copy && !matches!(c, Source::Path(_)) {
                    return Err(format!("source can't be a URL for COPY: {w}"));
                }
                c
            }
            Source::Heredoc(h) => {
                let mut h = h.clone();
                // The body after `<<-` tab removal; quotes in it are data, `$` and `\` are
                // processed (BuildKit: a `\` lexer with SkipProcessQuotes).
                h.content = h.body();
                h.chomp = false;
                if h.expand {
                    let o = LexOptions {
                        skip_quotes: true,
                        ..LexOptions::default()
                    };
                    h.content = lexer::process(&h.content, o, vars)
                        .map(|(s, _)| s)
                        .map_err(|e| format!("failed to process heredoc <<{}: {e}", h.name))?;
                }
                Source::Heredoc(h)
            }
        });
    }
    Ok(Files {
        sources,
        dest: word(&f.dest, esc, vars)?,
        json: f.json,
        chown: opt(&f.chown, esc, vars)?,
        chmod: opt(&f.chmod, esc, vars)?,
        link: f.link,
        parents: f.parents,
        exclude: f
            .exclude
            .iter()
            .map(|e| word(e, esc, vars))
            .collect::<Why<_>>()?,
    })
}

impl Instruction {
    /// Substitute variables as the module documentation lists; `esc` is the Dockerfile's
    /// escape character. Returns the reason on failure (see [`Located::expand`]).
    pub fn expand_with(&self, esc: char, vars: Vars) -> Why<Instruction> {
        Ok(match self {
            Instruction::Run(r) => {
                let mut r = r.clone();
                for m in &mut r.mounts {
                    for (_, v) in &mut m.options {
                        *v = opt(v, esc, vars)?;
                    }
                }
                Instruction::Run(r)
            }
            Instruction::Copy(c) => Instruction::Copy(Copy {
                files: expand_files(&c.files, true, esc, vars)?,
                from: opt(&c.from, esc, vars)?,
            }),
            Instruction::Add(a) => Instruction::Add(Add {
                files: expand_files(&a.files, false, esc, vars)?,
                checksum: opt(&a.checksum, esc, vars)?,
                keep_git_dir: a.keep_git_dir,
                unpack: a.unpack,
            }),
            Instruction::Env(v) => Instruction::Env(kvs(v, esc, vars)?),
            Instruction::Label(v) => Instruction::Label(kvs(v, esc, vars)?),
            Instruction::Arg(v) => Instruction::Arg(
                v.iter()
                    .map(|a| {
                        Ok(ArgDecl {
                            name: word(&a.name, esc, vars)?,
                            default: opt(&a.default, esc, vars)?,
                        })
                    })
                    .collect::<Why<_>>()?,
            ),
            Instruction::Workdir(s) => Instruction::Workdir(word(s, esc, vars)?),
            Instruction::User(s) => Instruction::User(word(s, esc, vars)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(word(s, esc, vars)?),
            Instruction::Maintainer(s) => Instruction::Maintainer(word(s, esc, vars)?),
            Instruction::Expose(v) => {
                let mut out = Vec::new();
                for p in v {
                    out.extend(words(p, esc, vars)?);
                }
                Instruction::Expose(out)
            }
            Instruction::Volume(v) => {
                Instruction::Volume(v.iter().map(|x| word(x, esc, vars)).collect::<Why<_>>()?)
            }
            Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Shell(_)
            | Instruction::Healthcheck(_)
            | Instruction::Onbuild(_) => self.clone(),
        })
    }
}

impl From {
    /// Substitute the image, `--platform` and `--arg` values (with the pre-FROM ARGs).
    pub fn expand_with(&self, esc: char, vars: Vars) -> Why<From> {
        Ok(From {
            image: word(&self.image, esc, vars)?,
            name: self.name.clone(),
            platform: opt(&self.platform, esc, vars)?,
            args: self
                .args
                .iter()
                .map(|(k, v)| Ok((k.clone(), word(v, esc, vars)?)))
                .collect::<Why<_>>()?,
        })
    }
}

impl Located<Instruction> {
    /// [`Instruction::expand_with`], with errors located as `file:line`.
    pub fn expand(&self, df: &Dockerfile, vars: Vars) -> Result<Instruction> {
        self.value
            .expand_with(df.directives.escape, vars)
            .map_err(|why| Error::invalid(format!("{}:{}", df.file_name, self.line), why))
    }
}

impl Located<From> {
    /// [`From::expand_with`], with errors located as `file:line`.
    pub fn expand(&self, df: &Dockerfile, vars: Vars) -> Result<From> {
        self.value
            .expand_with(df.directives.escape, vars)
            .map_err(|why| Error::invalid(format!("{}:{}", df.file_name, self.line), why))
    }
}

/// Whether the host environment variable `name` is passed through to a build: one of the
/// predefined variables ([`Scope::predefine`]) visible to substitution without an ARG, and, in
/// the builder, set in every RUN step and never part of a cache key, so that a change of its
/// value is not a change of the build.
///
/// It lives with [`Scope`] because the set is the Dockerfile dialect's: Docker's reference
/// defines its predefined proxy ARGs as usable without an ARG and exempt from the build cache,
/// and ch-image's manual extends that set; the builder only supplies the host's values.
///
/// ch-image's manual (ch-image(1), "ARG and ENV"): the proxy variables of Docker's predefined
/// ARGs (`HTTP_PROXY`, `http_proxy`, …, `no_proxy`) and, "in addition, … passed through in
/// the same way", `SSH_AUTH_SOCK` and `USER`. Any `*_proxy` name in any case counts, as in
/// lade's substitution before this list existed (so `ALL_PROXY`, which curl reads, too).
/// `SSH_AUTH_SOCK` names a host path, so a RUN step gets the socket bound in, and both RUN's
/// environment and substitution see where it is inside, not the host's value (the builder's
/// `SSH_AGENT_INSIDE`).
pub fn passes_through(name: &str) -> bool {
    name == "SSH_AUTH_SOCK" || name == "USER" || name.to_ascii_lowercase().ends_with("_proxy")
}

/// Variables in scope during a build, with Docker's rules:
///
/// - Pre-FROM `ARG`s (the "global" scope) are visible to FROM lines only.
/// - Inside a stage, an `ARG NAME[=default]` makes NAME visible from there to the end of the
///   stage; its value is the `--build-arg` if given, else the default, else the global ARG's
///   value if one was declared before FROM, else it is declared but unset.
/// - ENV variables (the base image's, then ENV instructions) win over ARGs of the same name.
/// - Predefined variables (the host's proxy variables, `SSH_AUTH_SOCK` and `USER`; see
///   [`passes_through`]) are visible everywhere without an ARG.
///
/// The values a scope holds may total at most [`MAX_SCOPE_BYTES`]: each word is capped
/// ([`lexer::MAX_WORD_BYTES`]), but a line of `ARG B1=$A B2=$A …` would still hold a megabyte
/// per three bytes of Dockerfile.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    build_args: BTreeMap<String, String>,
    predefined: BTreeMap<String, String>,
    global: BTreeMap<String, Option<String>>,
    in_stage: bool,
    args: BTreeMap<String, Option<String>>,
    env: BTreeMap<String, String>,
    /// Bytes of the ARG and ENV values held (global, stage ARGs, ENV).
    held: usize,
}

/// The most all variables in scope may hold together.
pub const MAX_SCOPE_BYTES: usize = 64 << 20;

fn held_len(v: Option<&Option<String>>) -> usize {
    v.and_then(|v| v.as_ref()).map_or(0, String::len)
}

/// The error for a failed [`Scope::declare_args`] or [`Scope::set_env`] at `line` of `df`.
pub fn scope_error(df: &Dockerfile, line: usize) -> impl Fn(String) -> Error + '_ {
    move |why| Error::invalid(format!("{}:{line}", df.file_name), why)
}

impl Scope {
    pub fn new(build_args: impl IntoIterator<Item = (String, String)>) -> Scope {
        Scope {
            build_args: build_args.into_iter().collect(),
            ..Scope::default()
        }
    }

    /// A variable visible everywhere without ARG (e.g. `HTTP_PROXY`).
    pub fn predefine(&mut self, name: &str, value: &str) {
        self.predefined.insert(name.to_string(), value.to_string());
    }

    /// The value of `name` at this point, for [`Instruction::expand_with`] (use
    /// [`Scope::get_global`] for FROM lines).
    pub fn get(&self, name: &str) -> Option<String> {
        if self.in_stage {
            if let Some(v) = self.env.get(name) {
                return Some(v.clone());
            }
            if let Some(v) = self.args.get(name) {
                return v.clone();
            }
        } else if let Some(v) = self.global.get(name) {
            return v.clone();
        }
        self.predefined.get(name).cloned()
    }

    /// The value of `name` for a FROM line: pre-FROM ARGs and predefined variables only,
    /// whatever stage the build is in.
    pub fn get_global(&self, name: &str) -> Option<String> {
        match self.global.get(name) {
            Some(v) => v.clone(),
            None => self.predefined.get(name).cloned(),
        }
    }

    /// Apply an (already expanded) ARG instruction: in the global scope before the first FROM,
    /// in the current stage after it.
    pub fn declare_args(&mut self, decls: &[ArgDecl]) -> Why<()> {
        for d in decls {
            let value = self
                .build_args
                .get(&d.name)
                .cloned()
                .or_else(|| d.default.clone());
            let added = value.as_ref().map_or(0, String::len);
            let old = if self.in_stage {
                let value = value.or_else(|| self.global.get(&d.name).cloned().flatten());
                held_len(self.args.insert(d.name.clone(), value).as_ref())
            } else {
                held_len(self.global.insert(d.name.clone(), value).as_ref())
            };
            self.held = self.held + added - old;
        }
        self.check_held()
    }

    fn check_held(&self) -> Why<()> {
        if self.held > MAX_SCOPE_BYTES {
            return Err(format!(
                "the ARG and ENV variables in scope hold more than {} MiB together",
                MAX_SCOPE_BYTES >> 20
            ));
        }
        Ok(())
    }

    /// Start a stage whose base image has environment `image_env` (`KEY=VALUE` strings).
    pub fn begin_stage<'s>(&mut self, image_env: impl IntoIterator<Item = &'s str>) {
        self.in_stage = true;
        self.args.clear();
        self.env = image_env
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.to_string(), String::new()),
            })
            .collect();
        self.held = self
            .global
            .values()
            .map(|v| held_len(Some(v)))
            .sum::<usize>()
            + self.env.values().map(String::len).sum::<usize>();
    }

    /// Apply an (already expanded) ENV instruction.
    pub fn set_env(&mut self, pairs: &[KeyValue]) -> Why<()> {
        for kv in pairs {
            let old = self.env.insert(kv.key.clone(), kv.value.clone());
            self.held = self.held + kv.value.len() - old.map_or(0, |v| v.len());
        }
        self.check_held()
    }

    /// The ARGs in scope with values, as `RUN` sees them in its environment (ENV separately).
    pub fn args(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    /// The stage's environment (base image ENV plus ENV instructions).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}
