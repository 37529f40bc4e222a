//! `lade build`: executing a parsed Dockerfile.
//!
//! A build state is a list of layers in the store plus an image config
//! ([`crate::builder::cache::State`], the config typed as [`crate::image_config::ImageConfig`]).
//! Each instruction turns one state into the next:
//!
//! - config-only instructions (ENV, LABEL, CMD, …) edit the config and add a history entry
//!   with `empty_layer` ([`config`]);
//! - RUN runs lade itself as a child (the hidden `lade build-run-step`,
//!   [`run_step`](mod@run_step)) over the state's layer trees, as uid 0 in a user namespace,
//!   with the overlay's upper directory kept in the work area: that directory is already a
//!   layer tree in store format, so it is packed into a layer blob (whiteouts and opaque
//!   markers converted to OCI's `.wh.` entries) and published ([`run`], [`layer`]);
//! - COPY, ADD and WORKDIR (when it must create the directory) write a fresh staging tree that
//!   becomes a layer the same way ([`files`], [`layer`]).
//!
//! Every step's result is recorded in the build cache ([`crate::builder::cache`]); a hit reuses
//! it with no execution and reports `N*` instead of `N.`, as ch-image does ([`driver`]). The
//! image is written and named only at the end ([`commit`]), so a failed build leaves no image.
//! A stage starts from `scratch`, an earlier stage or an image, pulled if missing ([`base`]);
//! what a state holds at a path is read from its layer trees ([`state_files`]).
//!
//! `--force=fakeroot` ([`force`]) wraps package-manager steps in fakeroot after init steps
//! recorded as cache steps of their own; `-b` binds host directories into every RUN (not part
//! of the cache key, as ch-image). The host variables ch-image passes through
//! ([`crate::dockerfile::passes_through`]: proxies, `USER`, `SSH_AUTH_SOCK`) reach every RUN and
//! stay out of the cache key too; the SSH agent's socket is bound in at [`SSH_AGENT_INSIDE`].
//!
//! ADD of an `http(s)://` URL downloads the file ([`fetch`]). The context's `.dockerignore`
//! ([`crate::dockerfile::ignore`]) hides files from COPY and ADD and so from the cache keys.
//!
//! BuildKit's `RUN --mount` ([`mounts`]): cache directories kept in the store, binds of the
//! context or of a stage, secrets given with `--secret` ([`secrets`]), tmpfs, the SSH agent.
//!
//! Reproducible builds: with `SOURCE_DATE_EPOCH` (the environment, `--build-arg`, a global
//! `ARG` default, or `--timestamp`), every time the build writes is clamped to it, as BuildKit's
//! `rewrite-timestamp` does: file times in new layers ([`layer`]), the history entries' and
//! the image's `created`. It is part of every step's cache key.
//!
//! Not supported yet (clear errors): ADD of Git repositories, COPY
//! `--parents`/`--exclude`. Ignored with a warning: `--chown` (as ch-image), `FROM
//! --platform`, `USER` for RUN (RUN is always uid 0, as ch-image). A base image's ONBUILD
//! triggers run right after its FROM (an image from the store or a registry, not a stage)
//! and are not inherited, as in Docker.
//!
//! Everything the build reports goes through [`Progress`]: the step lines and the final
//! `grown in N instructions: TAG` are its results (standard output, at every verbosity),
//! the rest are its progress and warnings.

pub mod base;
pub mod cache;
pub mod commit;
pub mod config;
pub mod driver;
pub mod fetch;
pub mod files;
pub mod force;
pub mod layer;
pub mod mounts;
pub mod run;
pub mod run_step;
pub mod secrets;
pub mod state_files;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::builder::cache::BuildCache;
use crate::dockerfile::{Dockerfile, Instruction, Scope, scope_error};
use crate::error::{Error, IoContext, Result};
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport;

pub use driver::resolve_path;
pub use run_step::{RunStepOptions, SSH_AGENT_INSIDE, run_step};

/// What `lade build` is asked to do (the command line's options; the binary parses them).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `-t`: the image's name; when `None`, inferred as ch-image does ([`infer_tag`]).
    pub tag: Option<String>,
    /// `-f`: the Dockerfile, `-` for standard input; when `None`, `CONTEXT/Dockerfile`.
    pub file: Option<String>,
    /// `--build-arg`: `K=V`, or `K` alone to take V from the environment.
    pub build_args: Vec<String>,
    /// Neither read nor write the build cache.
    pub no_cache: bool,
    /// Execute every instruction even on cache hits (and record the results).
    pub rebuild: bool,
    /// Parse the Dockerfile, report it, and stop.
    pub parse_only: bool,
    /// Report the instructions with variables substituted, executing nothing.
    pub dry_run: bool,
    /// `--force[=MODE]` as given: `fakeroot` or `none` (checked when the build starts).
    pub force: Option<String>,
    /// Whether a failed RUN looks for what `--force` would have changed.
    pub force_detect: bool,
    /// `-b SRC[:DST]`: host directories bound into every RUN.
    pub binds: Vec<String>,
    /// `--timestamp`: the build's `SOURCE_DATE_EPOCH`, over the build argument and the
    /// environment variable of that name.
    pub timestamp: Option<u64>,
    /// `--secret id=ID,src=FILE|env=VAR`: secrets for `RUN --mount=type=secret`.
    pub secrets: Vec<String>,
    /// The context directory.
    pub context: PathBuf,
}

/// `lade build`. `open_storage` is called only when the build needs the store; `pins` resolve
/// FROM's registry tags as `lade pull` does.
pub fn build(
    opts: &BuildOptions,
    open_storage: impl FnOnce() -> Result<Arc<Storage>>,
    registry: transport::registry::Options,
    pins: crate::pull::TagPins,
    arch: ArchChoice,
    progress: &Progress,
) -> Result<()> {
    if opts.context.as_os_str() == "-" {
        return Err(Error::unsupported(
            "lade build -",
            "a context from standard input is not supported yet",
        ));
    }
    let context = std::path::absolute(&opts.context).ctx(|| opts.context.display().to_string())?;
    let (text, file_name) = read_dockerfile(opts.file.as_deref(), &context)?;
    let df = crate::dockerfile::parse(&text, &file_name)?;
    for w in &df.warnings {
        progress.warn(w);
    }
    if opts.parse_only {
        for line in df.to_string().lines() {
            progress.result(line);
        }
        return Ok(());
    }
    let force = match opts.force.as_deref() {
        None | Some("none") => false,
        Some("fakeroot") => true,
        Some("seccomp") => {
            return Err(Error::unsupported(
                "lade build --force=seccomp",
                "not supported yet (use --force=fakeroot)",
            ));
        }
        Some(m) => {
            return Err(Error::invalid(
                format!("lade build --force={m}"),
                "unknown mode (expected fakeroot or none)",
            ));
        }
    };
    let binds = run_step::bind_args(&opts.binds)?;
    let secrets = secrets::parse_all(&opts.secrets)?;
    if !context.is_dir() {
        return Err(Error::invalid(
            format!("context {}", context.display()),
            "not a directory",
        ));
    }
    let ignore = crate::dockerfile::ignore::Ignore::load(&context)?;
    let tag = match &opts.tag {
        Some(t) => Reference::parse(t)?,
        None => Reference::parse(&infer_tag(opts.file.as_deref(), &context))?,
    };
    let mut build_args = Vec::new();
    for a in &opts.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.push((a.clone(), v));
                }
            }
        }
    }
    // SOURCE_DATE_EPOCH is a build argument, as with BuildKit (`ARG SOURCE_DATE_EPOCH` shows
    // it to RUN; a global ARG may give a default); `--timestamp` and the environment variable
    // set it.
    let caller_epoch = match opts.timestamp {
        Some(t) => Some(t),
        None => match build_args.iter().find(|(k, _)| k == SOURCE_DATE_EPOCH) {
            Some((_, v)) => Some(parse_epoch(
                &format!("--build-arg {SOURCE_DATE_EPOCH}={v}"),
                v,
            )?),
            None => match std::env::var(SOURCE_DATE_EPOCH) {
                Ok(v) if !v.is_empty() => {
                    Some(parse_epoch(&format!("{SOURCE_DATE_EPOCH}={v}"), &v)?)
                }
                _ => None,
            },
        },
    };
    if let Some(e) = caller_epoch {
        build_args.retain(|(k, _)| k != SOURCE_DATE_EPOCH);
        build_args.push((SOURCE_DATE_EPOCH.to_string(), e.to_string()));
    }
    let mut scope = Scope::new(build_args);
    for (k, v) in std::env::vars() {
        if crate::dockerfile::passes_through(&k) && k != "SSH_AUTH_SOCK" {
            scope.predefine(&k, &v);
        }
    }
    // `$SSH_AUTH_SOCK` in the Dockerfile means where the socket is inside, as in RUN's
    // environment: the host's path is no use in the image.
    if opts.dry_run {
        if std::env::var_os("SSH_AUTH_SOCK").is_some_and(|v| !v.is_empty()) {
            scope.predefine("SSH_AUTH_SOCK", SSH_AGENT_INSIDE);
        }
        return dry_run(&df, &mut scope, progress);
    }
    let ssh_auth_sock = run_step::ssh_agent_socket(progress);
    if ssh_auth_sock.is_some() {
        scope.predefine("SSH_AUTH_SOCK", SSH_AGENT_INSIDE);
    }
    let storage = open_storage()?;
    storage.build_tmp().sweep_dead();
    let mut b = driver::Builder {
        cache: BuildCache::new(&storage),
        storage,
        read_cache: !opts.no_cache && !opts.rebuild,
        write_cache: !opts.no_cache,
        progress,
        registry,
        pins,
        arch,
        context,
        df,
        n: 0,
        stages: Vec::new(),
        flat: HashMap::new(),
        dirs_to_restore: Default::default(),
        fetched: Default::default(),
        ignore,
        force,
        force_detect: opts.force_detect,
        binds,
        ssh_auth_sock,
        caller_epoch,
        epoch: None,
        secrets,
    };
    let result = b.build_all(&mut scope, &tag);
    for dir in b.flat.values() {
        let _ = crate::fsutil::remove_all(dir);
    }
    for f in b.fetched.borrow().values() {
        if let Some(dir) = f.path.parent() {
            let _ = crate::fsutil::remove_all(dir);
        }
    }
    let n = result?;
    progress.result(&format!("grown in {n} instructions: {}", tag.familiar()));
    Ok(())
}

/// The reproducible-builds convention's variable: every time a build writes is clamped to it.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// A `SOURCE_DATE_EPOCH` value: whole seconds since 1970 (as BuildKit, nothing else); `what`
/// names where it came from.
pub fn parse_epoch(what: &str, value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        Error::invalid(
            what,
            "not a SOURCE_DATE_EPOCH: give whole seconds since 1970 (e.g. `date +%s`)",
        )
    })
}

/// The Dockerfile's text and the name messages give it: `-f FILE`, `-f -` (standard input),
/// or `CONTEXT/Dockerfile`.
fn read_dockerfile(file: Option<&str>, context: &Path) -> Result<(String, String)> {
    Ok(match file {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .ctx(|| "Dockerfile from standard input".into())?;
            (s, "-".to_string())
        }
        Some(f) => (
            std::fs::read_to_string(f).ctx(|| format!("Dockerfile {f}"))?,
            f.to_string(),
        ),
        None => {
            let p = context.join("Dockerfile");
            (
                std::fs::read_to_string(&p).ctx(|| format!("Dockerfile {}", p.display()))?,
                "Dockerfile".to_string(),
            )
        }
    })
}

/// ch-image's rules for the image name when `-t` is absent.
pub fn infer_tag(file: Option<&str>, context: &Path) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let base = file
        .filter(|f| *f != "-")
        .and_then(|f| Path::new(f).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let name = match base.as_deref() {
        Some(b) if b.starts_with("Dockerfile.") => clean(&b["Dockerfile.".len()..]),
        Some(b) if b.ends_with(".dockerfile") => clean(&b[..b.len() - ".dockerfile".len()]),
        _ => match context.file_name() {
            Some(n) => clean(&n.to_string_lossy()),
            None => "root".into(),
        },
    };
    let name = if name.is_empty() { "root".into() } else { name };
    if name.contains(':') {
        name
    } else {
        format!("{name}:latest")
    }
}

/// `--dry-run`: each instruction with its variables substituted, numbered as a build would
/// number it; nothing executed.
fn dry_run(df: &Dockerfile, scope: &mut Scope, progress: &Progress) -> Result<()> {
    let mut n = 0;
    for a in &df.pre_from_args {
        n += 1;
        let decls = driver::expand_args(df, a, scope)?;
        scope
            .declare_args(&decls)
            .map_err(scope_error(df, a.line))?;
        progress.result(&format!("{n:3}. {}", a.text));
    }
    for st in &df.stages {
        n += 1;
        let from = st.from.expand(df, &|v| scope.get_global(v))?;
        progress.result(&format!("{n:3}. {from}"));
        scope.begin_stage(std::iter::empty());
        for ins in &st.instructions {
            n += 1;
            let x = ins.expand(df, &|v| scope.get(v))?;
            match &x {
                Instruction::Arg(d) => scope.declare_args(d),
                Instruction::Env(kv) => scope.set_env(kv),
                _ => Ok(()),
            }
            .map_err(scope_error(df, ins.line))?;
            progress.result(&format!("{n:3}. {x}"));
        }
    }
    progress.result(&format!("dry run: {n} instructions, nothing executed"));
    Ok(())
}
