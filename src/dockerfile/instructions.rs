//! Typed Dockerfile instructions, and their `--parse-only` rendering.
//!
//! Every string that is subject to variable substitution is kept exactly as written (quotes,
//! escapes and `$VAR`s included): the builder calls [`Located::expand`] (in
//! [`substitution`](super::substitution)) with the variables in scope at that point to get the
//! final values. Strings that are not substituted (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK
//! commands; ONBUILD triggers) are final as parsed.

use std::fmt;
use std::time::Duration;

use super::heredoc::{Heredoc, parse_heredoc_word};

/// Parser directives (`# escape=…`, `# syntax=…`, `# check=…`) from the top of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// The escape and line-continuation character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=`: recorded only; lade has one built-in frontend.
    pub syntax: Option<String>,
    /// `# check=`: recorded only (BuildKit's build checks).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A value with the source lines it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// First physical line (1-based) of the instruction.
    pub line: usize,
    /// Last physical line, including continuation lines and heredoc bodies.
    pub end_line: usize,
    /// The logical line after continuation joining and comment removal, without heredoc
    /// bodies: what Docker records as the instruction text.
    pub text: String,
    pub value: T,
}

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    pub file_name: String,
    pub directives: Directives,
    /// `ARG`s before the first `FROM`: in scope for `FROM` lines only (and for `ARG NAME`
    /// re-declarations inside a stage), as in Docker.
    pub pre_from_args: Vec<Located<Vec<ArgDecl>>>,
    pub stages: Vec<Stage>,
    /// Non-fatal findings, e.g. empty continuation lines (Docker warns about them too).
    pub warnings: Vec<String>,
}

/// One build stage: a `FROM` and the instructions up to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub from: Located<From>,
    /// The `AS` name, lower-cased as Docker does.
    pub name: Option<String>,
    pub instructions: Vec<Located<Instruction>>,
}

/// `FROM [--platform=P] [--arg=K=V]… IMAGE [AS NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    /// Image reference, a previous stage's name, or `scratch` (raw: substituted with the
    /// pre-FROM ARGs).
    pub image: String,
    /// The `AS` name, lower-cased and validated (`^[a-z][a-z0-9-_.]*$`).
    pub name: Option<String>,
    pub platform: Option<String>,
    /// ch-image's `--arg=NAME=VALUE`: like an `ARG NAME=VALUE` at the top of the stage.
    pub args: Vec<(String, String)>,
}

/// One `ARG` declaration: `NAME` or `NAME=default` (the default raw).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// Shell form (a string the builder runs with the current SHELL) or exec form (JSON array).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `RUN --mount=…` (one per flag), kept as parsed; option values are substituted by
/// [`Instruction::expand_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `bind` (default), `cache`, `tmpfs`, `secret` or `ssh`.
    pub kind: String,
    /// All `key[=value]` fields in order, keys lower-cased, `type` excluded.
    pub options: Vec<(String, Option<String>)>,
}

impl Mount {
    /// The value of the first option named any of `keys`.
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }
    pub fn target(&self) -> Option<&str> {
        self.get(&["target", "dst", "destination"])
    }
    pub fn source(&self) -> Option<&str> {
        self.get(&["source", "src"])
    }
    pub fn from(&self) -> Option<&str> {
        self.get(&["from"])
    }
    /// `ro`/`readonly` (also `readonly=true`); `rw` makes it writable. Bind mounts default to
    /// read-only, as in BuildKit.
    pub fn readonly(&self) -> bool {
        let mut ro = self.kind == "bind";
        for (k, v) in &self.options {
            let yes = v.as_deref().is_none_or(|v| v.eq_ignore_ascii_case("true"));
            match k.as_str() {
                "ro" | "readonly" => ro = yes,
                "rw" | "readwrite" => ro = !yes,
                _ => {}
            }
        }
        ro
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// Heredocs named in the command, in order, with their bodies.
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
}

/// What a `RUN` executes, resolved the way BuildKit does it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunPlan {
    /// Exec form: run these arguments directly.
    Exec(Vec<String>),
    /// Run this script with the current SHELL (e.g. `/bin/sh -c SCRIPT`).
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: write `content` to a file named `name` with
    /// mode 0755 and run it directly (BuildKit mounts it under `/dev/pipes/`).
    Script { name: String, content: String },
}

impl Run {
    /// The command as BuildKit resolves heredocs: a lone `<<EOF` runs the body itself (as an
    /// executable file if it starts with `#!`), anything else passes the command line followed
    /// by the heredocs verbatim to the shell, which then handles them itself.
    pub fn plan(&self) -> RunPlan {
        match &self.command {
            Command::Exec(v) => RunPlan::Exec(v.clone()),
            Command::Shell(s) if self.heredocs.is_empty() => RunPlan::Shell(s.clone()),
            Command::Shell(s) => {
                let first = &self.heredocs[0];
                if parse_heredoc_word(s.trim()).is_some() {
                    let body = first.body();
                    if body.starts_with("#!") {
                        RunPlan::Script {
                            name: first.name.clone(),
                            content: body,
                        }
                    } else {
                        RunPlan::Shell(body)
                    }
                } else {
                    let mut full = s.clone();
                    for h in &self.heredocs {
                        full.push('\n');
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                    }
                    RunPlan::Shell(full)
                }
            }
        }
    }
}

/// A COPY/ADD source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path (or glob) in the context or `--from` stage/image, raw.
    Path(String),
    /// An `http://`/`https://` URL (ADD only).
    Url(String),
    /// A Git repository (ADD only): `git@…`, `git://…`, or an http(s) URL ending in `.git`.
    Git(String),
    /// An inline file from `<<EOF`, named after its delimiter.
    Heredoc(Heredoc),
}

impl Source {
    /// Classify a (substituted) source word.
    pub fn classify(word: &str) -> Source {
        let lower = word.to_ascii_lowercase();
        let http = lower.starts_with("http://") || lower.starts_with("https://");
        let path = word.split(['#', '?']).next().unwrap_or(word);
        if lower.starts_with("git@")
            || lower.starts_with("git://")
            || (http && (path.ends_with(".git") || path.ends_with(".git/")))
        {
            Source::Git(word.to_string())
        } else if http {
            Source::Url(word.to_string())
        } else {
            Source::Path(word.to_string())
        }
    }
}

/// What COPY and ADD share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub sources: Vec<Source>,
    pub dest: String,
    /// Written in JSON (exec) form.
    pub json: bool,
    /// `--chown`: kept so the builder can warn that it is ignored (ch-image's rule).
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY): keep the source paths' parent directories.
    pub parents: bool,
    /// `--exclude=PATTERN`, repeatable.
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub files: Files,
    /// `--from=STAGE|IMAGE|INDEX`.
    pub from: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Add {
    pub files: Files,
    /// `--checksum=sha256:…` for URL sources.
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `--unpack=false` keeps local archives packed; None means the default (unpack).
    pub unpack: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check {
        /// `CMD` exec form, or shell form (Docker's `CMD-SHELL`).
        command: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as written after `ONBUILD` (plus heredoc bodies): what goes in the image
    /// config's `OnBuild` list.
    pub expression: String,
    pub instruction: Box<Instruction>,
}

/// Every instruction except FROM (which starts a [`Stage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Copy(Copy),
    Add(Add),
    /// `ENV k=v …` or the legacy `ENV k v` (one pair, value = rest of the line).
    Env(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    Label(Vec<KeyValue>),
    Cmd(Command),
    Entrypoint(Command),
    /// JSON form only.
    Shell(Vec<String>),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
    Maintainer(String),
}

impl Instruction {
    /// The keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Label(_) => "LABEL",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

impl Dockerfile {
    /// The index of the stage named `name` (case-insensitive) or numbered `name`, among the
    /// stages before `before` (a stage can only refer to earlier ones).
    pub fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        self.stages[..before.min(self.stages.len())]
            .iter()
            .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
    }
}

// ---- Display: the `--parse-only` rendering -------------------------------------------------
//
// One line per instruction, every string JSON-quoted so that the output is unambiguous (and
// shows exactly what the parser kept: raw text before substitution).

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn qs(v: &[String]) -> String {
    let inner: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shell(s) => write!(f, "{}", q(s)),
            Command::Exec(v) => write!(f, "{}", qs(v)),
        }
    }
}

impl fmt::Display for Heredoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<<{}{}{} {}",
            if self.fd != 0 {
                self.fd.to_string()
            } else {
                String::new()
            },
            if self.chomp { "-" } else { "" },
            if self.expand {
                q(&self.name)
            } else {
                format!("'{}'", self.name)
            },
            q(&self.content)
        )
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path(p) => write!(f, "{}", q(p)),
            Source::Url(u) => write!(f, "url:{}", q(u)),
            Source::Git(g) => write!(f, "git:{}", q(g)),
            Source::Heredoc(h) => write!(f, "{h}"),
        }
    }
}

fn flag(f: &mut fmt::Formatter<'_>, name: &str, v: &Option<String>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " --{name}={}", q(v)),
        None => Ok(()),
    }
}

fn files(f: &mut fmt::Formatter<'_>, x: &Files) -> fmt::Result {
    flag(f, "chown", &x.chown)?;
    flag(f, "chmod", &x.chmod)?;
    if x.link {
        write!(f, " --link")?;
    }
    if x.parents {
        write!(f, " --parents")?;
    }
    for e in &x.exclude {
        write!(f, " --exclude={}", q(e))?;
    }
    let srcs: Vec<String> = x.sources.iter().map(|s| s.to_string()).collect();
    write!(
        f,
        " {}[{}] {}",
        if x.json { "json:" } else { "" },
        srcs.join(", "),
        q(&x.dest)
    )
}

fn kvs(f: &mut fmt::Formatter<'_>, v: &[KeyValue]) -> fmt::Result {
    for kv in v {
        write!(f, " {}={}", q(&kv.key), q(&kv.value))?;
    }
    Ok(())
}

fn dur(f: &mut fmt::Formatter<'_>, name: &str, d: &Option<Duration>) -> fmt::Result {
    match d {
        Some(d) => write!(f, " --{name}={d:?}"),
        None => Ok(()),
    }
}

impl fmt::Display for ArgDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.default {
            Some(d) => write!(f, "{}={}", q(&self.name), q(d)),
            None => write!(f, "{}", q(&self.name)),
        }
    }
}

impl fmt::Display for From {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FROM")?;
        flag(f, "platform", &self.platform)?;
        for (k, v) in &self.args {
            write!(f, " --arg={}={}", q(k), q(v))?;
        }
        write!(f, " {}", q(&self.image))?;
        if let Some(n) = &self.name {
            write!(f, " AS {}", q(n))?;
        }
        Ok(())
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.keyword())?;
        match self {
            Instruction::Run(r) => {
                for m in &r.mounts {
                    let mut parts = vec![format!("type={}", m.kind)];
                    for (k, v) in &m.options {
                        parts.push(match v {
                            Some(v) => format!("{k}={v}"),
                            None => k.clone(),
                        });
                    }
                    write!(f, " --mount={}", q(&parts.join(",")))?;
                }
                flag(f, "network", &r.network)?;
                flag(f, "security", &r.security)?;
                write!(f, " {}", r.command)?;
                for h in &r.heredocs {
                    write!(f, " {h}")?;
                }
                Ok(())
            }
            Instruction::Copy(c) => {
                flag(f, "from", &c.from)?;
                files(f, &c.files)
            }
            Instruction::Add(a) => {
                flag(f, "checksum", &a.checksum)?;
                if a.keep_git_dir {
                    write!(f, " --keep-git-dir")?;
                }
                if let Some(u) = a.unpack {
                    write!(f, " --unpack={u}")?;
                }
                files(f, &a.files)
            }
            Instruction::Env(v) | Instruction::Label(v) => kvs(f, v),
            Instruction::Arg(v) => {
                for a in v {
                    write!(f, " {a}")?;
                }
                Ok(())
            }
            Instruction::Workdir(s)
            | Instruction::User(s)
            | Instruction::StopSignal(s)
            | Instruction::Maintainer(s) => write!(f, " {}", q(s)),
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => write!(f, " {c}"),
            Instruction::Shell(v) | Instruction::Expose(v) | Instruction::Volume(v) => {
                write!(f, " {}", qs(v))
            }
            Instruction::Healthcheck(Healthcheck::None) => write!(f, " NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                dur(f, "interval", interval)?;
                dur(f, "timeout", timeout)?;
                dur(f, "start-period", start_period)?;
                dur(f, "start-interval", start_interval)?;
                if let Some(r) = retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " CMD {command}")
            }
            Instruction::Onbuild(o) => write!(f, " {}", o.instruction),
        }
    }
}

impl fmt::Display for Dockerfile {
    /// `lade build --parse-only`: directives, then one instruction per line, prefixed with
    /// its line number; stage boundaries are the FROM lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.directives.escape != '\\' {
            writeln!(f, "# escape={}", self.directives.escape)?;
        }
        if let Some(s) = &self.directives.syntax {
            writeln!(f, "# syntax={s}")?;
        }
        if let Some(s) = &self.directives.check {
            writeln!(f, "# check={s}")?;
        }
        for a in &self.pre_from_args {
            write!(f, "{}: ARG", a.line)?;
            for d in &a.value {
                write!(f, " {d}")?;
            }
            writeln!(f)?;
        }
        for (i, s) in self.stages.iter().enumerate() {
            writeln!(f, "{}: {}  # stage {i}", s.from.line, s.from.value)?;
            for ins in &s.instructions {
                writeln!(f, "{}: {}", ins.line, ins.value)?;
            }
        }
        Ok(())
    }
}
