//! `lade build`: executing a parsed Dockerfile.
//!
//! A build state is a list of layers in the store plus an image config ([`State`]). Each
//! instruction turns one state into the next:
//!
//! - config-only instructions (ENV, LABEL, CMD, …) edit the config and add a history entry
//!   with `empty_layer`;
//! - RUN runs lade itself as a child (the hidden `lade build-run-step`) over the state's
//!   layer trees, as uid 0 in a user namespace, with the overlay's upper directory kept in the
//!   work area: that directory is already a layer tree in store format, so it is packed into a
//!   layer blob (whiteouts and opaque markers converted to OCI's `.wh.` entries) and published;
//! - COPY, ADD and WORKDIR (when it must create the directory) write a fresh staging tree that
//!   becomes a layer the same way ([`files`], [`layer`]).
//!
//! Every step's result is recorded in the build cache ([`crate::build::cache`]); a hit reuses
//! it with no execution and prints `N*` instead of `N.`, as ch-image does. The image is named
//! only at the end, so a failed build leaves no image.
//!
//! `--force=fakeroot` ([`force`]) wraps package-manager steps in fakeroot after init steps
//! recorded as cache steps of their own; `-b` binds host directories into every RUN (not part
//! of the cache key, as ch-image). The host variables ch-image passes through
//! ([`crate::build::passes_through`]: proxies, `USER`, `SSH_AUTH_SOCK`) reach every RUN and stay out
//! of the cache key too; the SSH agent's socket is bound in at [`SSH_AGENT_INSIDE`].
//!
//! ADD of an `http(s)://` URL downloads the file ([`fetch`]). The context's `.dockerignore`
//! ([`crate::build::ignore`]) hides files from COPY and ADD and so from the cache keys.
//!
//! Not supported yet (clear errors): `RUN --mount`, ADD of Git repositories, COPY
//! `--parents`/`--exclude`. Ignored with a warning: `--chown` (as ch-image), `FROM
//! --platform`, `USER` for RUN (RUN is always uid 0, as ch-image). A base image's ONBUILD
//! triggers run right after its FROM (an image from the store or a registry, not a stage)
//! and are not inherited, as in Docker.

pub mod fetch;
pub mod files;
pub mod force;
pub mod layer;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::build::cache::{BuildCache, State, step_key};
use crate::build::{
    ArgDecl, Command, Dockerfile, Healthcheck, Instruction, Located, RunPlan, Scope,
};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{OCI_MANIFEST, RawManifest};
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::{LayerRef, Storage};
use crate::transport::store::StoreDestination;
use crate::transport::{self, CopiedImage, ImageDestination, ImageLocation};

/// `lade build` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// Name of the image to create [default: inferred as ch-image does]
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tag: Option<String>,
    /// Dockerfile, or - for standard input [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    pub file: Option<String>,
    /// Set build argument K to V (K alone: from the environment); repeatable
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Use no build cache at all (neither read nor write it)
    #[arg(long)]
    pub no_cache: bool,
    /// Execute every instruction even on cache hits (and record the results)
    #[arg(long)]
    pub rebuild: bool,
    /// Fail if a FROM tag is not pinned in ./lade-tags.lock (as `lade pull --locked`)
    #[arg(long)]
    pub locked: bool,
    /// Parse the Dockerfile, print it, and stop
    #[arg(long)]
    pub parse_only: bool,
    /// Print the instructions with variables substituted, executing nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Inject ch-image's workarounds for package managers (MODE: fakeroot, the default)
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true,
          default_missing_value = "fakeroot")]
    pub force: Option<String>,
    /// Don't check whether --force would help a failed RUN
    #[arg(long)]
    pub no_force_detect: bool,
    /// For RUN only: bind-mount host directory SRC at DST (default SRC); repeatable
    #[arg(short = 'b', long = "bind", value_name = "SRC[:DST]")]
    pub binds: Vec<String>,
    /// Context directory
    pub context: PathBuf,
}

/// The hidden `lade build-run-step`: one RUN over layer trees, changes kept in UPPER.
#[derive(clap::Args, Debug, Clone)]
pub struct RunStepArgs {
    /// Layer tree key, bottom first; repeatable
    #[arg(long = "layer")]
    pub layers: Vec<String>,
    #[arg(long)]
    pub upper: PathBuf,
    #[arg(long)]
    pub cd: String,
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// `SRC:DST`, both absolute (checked by `lade build`); repeatable
    #[arg(long = "bind")]
    pub binds: Vec<String>,
    /// The host's SSH agent socket, to bind at /.lade-ssh-agent.sock with SSH_AUTH_SOCK set
    /// to that path
    #[arg(long)]
    pub ssh_auth_sock: Option<PathBuf>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Where a RUN step finds the host's SSH agent socket (`SSH_AUTH_SOCK`, ch-image's pass-through
/// variable). The host's path is no use inside: agents put their sockets under /tmp, which a
/// build step does not share with the host. A name of lade's own directly under the root:
/// every image has that directory and it is never a symbolic link, so the mount point can
/// always be made, and it is removed from the step's layer afterwards
/// (`Builder::remove_mount_points`).
pub const SSH_AGENT_INSIDE: &str = "/.lade-ssh-agent.sock";

/// Runs one RUN step in this process (the child side of [`Builder::run`]).
pub fn run_step(storage: &Storage, a: RunStepArgs) -> Result<Infallible> {
    use crate::run::{RunImage, RunOptions, process::UserChoices, rootfs::Upper};
    // The host's pass-through variables first, so that ARG and ENV override them (Docker: ENV
    // beats a predefined ARG); in `set_env`, not `host_env`, whose list is `lade run`'s and
    // would narrow [`crate::build::passes_through`]. SSH_AUTH_SOCK is a host path: the step gets the
    // inside one below, or none.
    let mut set_env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| crate::build::passes_through(k) && k != "SSH_AUTH_SOCK")
        .collect();
    let mut binds = a
        .binds
        .iter()
        .map(|b| crate::run::parse_bind(b))
        .collect::<Result<Vec<_>>>()?;
    if let Some(sock) = a.ssh_auth_sock {
        // Looked at again for each step: the agent may have gone since the build started
        // (killed, or its session ended), which is the same harmless warning as at the start,
        // not a failed bind.
        if std::fs::metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) {
            binds.push((sock, PathBuf::from(SSH_AGENT_INSIDE)));
            set_env.push(("SSH_AUTH_SOCK".to_string(), SSH_AGENT_INSIDE.to_string()));
        } else {
            crate::progress::Progress::new(0).warn(&format!(
                "SSH_AUTH_SOCK={}: gone since the build started; this RUN step gets no SSH agent",
                sock.display()
            ));
        }
    }
    set_env.extend(a.env.iter().map(|e| match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.clone(), String::new()),
    }));
    let opts = RunOptions {
        image: RunImage::Layers(a.layers),
        user: UserChoices {
            command: a.command,
            set_env,
            unset_env: Vec::new(),
            cwd: Some(a.cd),
            host_env: Vec::new(),
        },
        binds,
        upper: Upper::Keep(a.upper),
        uid: Some(0),
        gid: Some(0),
        no_home: true,
    };
    crate::run::run(storage, &opts)
}

/// `lade build`. `open_storage` is called only when the build needs the store.
pub fn build(
    args: &BuildArgs,
    open_storage: impl FnOnce() -> Result<Arc<Storage>>,
    registry: transport::registry::Options,
    arch: ArchChoice,
    progress: &Progress,
) -> Result<()> {
    if args.context.as_os_str() == "-" {
        return Err(Error::unsupported(
            "lade build -",
            "a context from standard input is not supported yet",
        ));
    }
    let context = std::path::absolute(&args.context).ctx(|| args.context.display().to_string())?;
    let (text, file_name) = match args.file.as_deref() {
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
    };
    let df = crate::build::parse(&text, &file_name)?;
    for w in &df.warnings {
        progress.warn(w);
    }
    if args.parse_only {
        print!("{df}");
        return Ok(());
    }
    let force = match args.force.as_deref() {
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
    let binds = bind_args(&args.binds)?;
    if !context.is_dir() {
        return Err(Error::invalid(
            format!("context {}", context.display()),
            "not a directory",
        ));
    }
    let ignore = crate::build::ignore::Ignore::load(&context)?;
    let tag = match &args.tag {
        Some(t) => Reference::parse(t)?,
        None => Reference::parse(&infer_tag(args.file.as_deref(), &context))?,
    };
    let mut build_args = Vec::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.push((a.clone(), v));
                }
            }
        }
    }
    let mut scope = Scope::new(build_args);
    for (k, v) in std::env::vars() {
        if crate::build::passes_through(&k) && k != "SSH_AUTH_SOCK" {
            scope.predefine(&k, &v);
        }
    }
    // `$SSH_AUTH_SOCK` in the Dockerfile means where the socket is inside, as in RUN's
    // environment: the host's path is no use in the image.
    if args.dry_run {
        if std::env::var_os("SSH_AUTH_SOCK").is_some_and(|v| !v.is_empty()) {
            scope.predefine("SSH_AUTH_SOCK", SSH_AGENT_INSIDE);
        }
        dry_run(&df, &mut scope)?;
        return Ok(());
    }
    let ssh_auth_sock = ssh_agent_socket(progress);
    if ssh_auth_sock.is_some() {
        scope.predefine("SSH_AUTH_SOCK", SSH_AGENT_INSIDE);
    }
    let storage = open_storage()?;
    sweep_build_tmp(&storage);
    let mut b = Builder {
        cache: BuildCache::new(&storage),
        storage,
        read_cache: !args.no_cache && !args.rebuild,
        write_cache: !args.no_cache,
        progress,
        registry,
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
        force_detect: !args.no_force_detect,
        binds,
        ssh_auth_sock,
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
    println!("grown in {n} instructions: {}", tag.familiar());
    Ok(())
}

/// `-b SRC[:DST]` as `SRC:DST` with both absolute; SRC must exist now, so the error names
/// the option rather than a RUN step.
fn bind_args(binds: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in binds {
        let (src, dst) = crate::run::parse_bind(b)?;
        std::fs::metadata(&src).ctx(|| format!("-b {b}: source"))?;
        match (src.to_str(), dst.to_str()) {
            (Some(s), Some(d)) if !s.contains(':') => out.push(format!("{s}:{d}")),
            _ => {
                return Err(Error::invalid(
                    format!("-b {b}"),
                    "paths must be UTF-8, and SRC without ':'",
                ));
            }
        }
    }
    Ok(out)
}

/// The host's SSH agent socket for RUN steps: `SSH_AUTH_SOCK` made absolute, when it names a
/// socket. A stale value (the agent gone, or a session that forwarded one ended) is common
/// and harmless unless a step needs the agent, so it is a warning, not an error.
fn ssh_agent_socket(progress: &Progress) -> Option<PathBuf> {
    let v = std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty())?;
    let path = Path::new(&v);
    let why = match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Relative is unusual but valid on the host; the bind needs the absolute path.
            match std::path::absolute(path) {
                Ok(p) => return Some(p),
                Err(e) => e.to_string(),
            }
        }
        Ok(_) => "not a socket".to_string(),
        Err(e) => e.to_string(),
    };
    progress.warn(&format!(
        "SSH_AUTH_SOCK={}: {why}; RUN steps get no SSH agent",
        path.display()
    ));
    None
}

/// Removes RUN upper directories (`$STORAGE/build-tmp/<pid>.<rand>`) left by builds that
/// died (kill -9): their process is gone.
fn sweep_build_tmp(storage: &Storage) {
    let dir = storage.root().join("build-tmp");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = crate::fsutil::remove_all(&e.path());
        }
    }
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

fn dry_run(df: &Dockerfile, scope: &mut Scope) -> Result<()> {
    let mut n = 0;
    for a in &df.pre_from_args {
        n += 1;
        let decls = expand_args(df, a, scope)?;
        scope.declare_args(&decls);
        println!("{n:3}. {}", a.text);
    }
    for st in &df.stages {
        n += 1;
        let from = st.from.expand(df, &|v| scope.get_global(v))?;
        println!("{n:3}. {}", from);
        scope.begin_stage(std::iter::empty());
        for ins in &st.instructions {
            n += 1;
            let x = ins.expand(df, &|v| scope.get(v))?;
            match &x {
                Instruction::Arg(d) => scope.declare_args(d),
                Instruction::Env(kv) => scope.set_env(kv),
                _ => {}
            }
            println!("{n:3}. {}", x);
        }
    }
    println!("dry run: {n} instructions, nothing executed");
    Ok(())
}

fn expand_args(df: &Dockerfile, a: &Located<Vec<ArgDecl>>, scope: &Scope) -> Result<Vec<ArgDecl>> {
    let ins = Located {
        line: a.line,
        end_line: a.end_line,
        text: a.text.clone(),
        value: Instruction::Arg(a.value.clone()),
    };
    match ins.expand(df, &|v| scope.get(v))? {
        Instruction::Arg(d) => Ok(d),
        _ => unreachable!("ARG expands to ARG"),
    }
}

struct Builder<'a> {
    storage: Arc<Storage>,
    cache: BuildCache,
    read_cache: bool,
    write_cache: bool,
    progress: &'a Progress,
    registry: transport::registry::Options,
    arch: ArchChoice,
    context: PathBuf,
    df: Dockerfile,
    n: usize,
    /// Each finished stage's state and key, for `FROM stage` and `COPY --from`.
    stages: Vec<(State, String)>,
    /// Flattened roots of stages and images that `COPY --from` reads, by state key.
    flat: HashMap<String, PathBuf>,
    /// Directories of a staging tree to give their final modes once it is written.
    dirs_to_restore: std::cell::RefCell<Vec<(PathBuf, u32)>>,
    /// Files that ADD downloaded during this build, by URL (each in a scratch directory of
    /// its own, under the URL's file name).
    fetched: std::cell::RefCell<HashMap<String, fetch::Fetched>>,
    /// The context's `.dockerignore`.
    ignore: crate::build::ignore::Ignore,
    /// `--force=fakeroot`.
    force: bool,
    /// Whether a failed RUN looks for what `--force` would have changed.
    force_detect: bool,
    /// `-b` as `SRC:DST` with both absolute, for `lade build-run-step --bind`.
    binds: Vec<String>,
    /// The host's SSH agent socket, bound into every RUN at [`SSH_AGENT_INSIDE`].
    ssh_auth_sock: Option<PathBuf>,
}

fn announce(n: usize, hit: bool, text: &str) {
    println!("{n:3}{} {text}", if hit { '*' } else { '.' });
    let _ = std::io::stdout().flush();
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `path` made absolute against `base`, with `.` and `..` resolved lexically.
pub fn resolve_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(base).join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn config_obj(state: &mut State) -> &mut serde_json::Map<String, Value> {
    if !state.config.is_object() {
        state.config = json!({});
    }
    let top = state.config.as_object_mut().expect("object");
    let c = top.entry("config").or_insert_with(|| json!({}));
    if !c.is_object() {
        *c = json!({});
    }
    c.as_object_mut().expect("object")
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn map_insert(c: &mut serde_json::Map<String, Value>, field: &str, key: &str, value: Value) {
    let m = c.entry(field).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut()
        .expect("object")
        .insert(key.to_string(), value);
}

/// Appends a history entry for a step (and its layer, if it made one).
fn push_history(state: &mut State, created_by: &str, layer: Option<LayerRef>) {
    let mut h = serde_json::Map::new();
    h.insert("created".into(), json!(now_rfc3339()));
    h.insert("created_by".into(), json!(created_by));
    if layer.is_none() {
        h.insert("empty_layer".into(), json!(true));
    }
    if !state.config.is_object() {
        state.config = json!({});
    }
    let top = state.config.as_object_mut().expect("made an object above");
    let hist = top.entry("history").or_insert_with(|| json!([]));
    if !hist.is_array() {
        *hist = json!([]);
    }
    hist.as_array_mut()
        .expect("made an array above")
        .push(Value::Object(h));
    if let Some(l) = layer {
        state.layers.push(l);
    }
}

/// The words `--force` matches a RUN step's commands against: exec-form arguments, or the
/// shell command or script split on whitespace (no shell parsing, as ch-image).
fn run_words(plan: &RunPlan) -> Vec<&str> {
    match plan {
        RunPlan::Exec(v) => v.iter().map(String::as_str).collect(),
        RunPlan::Shell(s) => s.split_whitespace().collect(),
        RunPlan::Script { content, .. } => content.split_whitespace().collect(),
    }
}

/// How a process ended, for messages.
fn exit_how(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

fn nanos(d: &Option<std::time::Duration>) -> Option<Value> {
    d.map(|d| json!(d.as_nanos() as u64))
}

impl Builder<'_> {
    fn build_all(&mut self, scope: &mut Scope, tag: &Reference) -> Result<usize> {
        let df = self.df.clone();
        for a in &df.pre_from_args {
            self.n += 1;
            let decls = expand_args(&df, a, scope)?;
            scope.declare_args(&decls);
            announce(self.n, true, &a.text);
        }
        for si in 0..df.stages.len() {
            let done = self.stage(si, scope)?;
            self.stages.push(done);
        }
        let (state, _) = self
            .stages
            .last()
            .cloned()
            .ok_or_else(|| Error::invalid(&df.file_name, "no FROM instruction"))?;
        let manifest = self.commit_image(state, tag)?;
        // The image's link into the cache (its final state first), for `build-cache --tree`,
        // `--gc` and `undelete`.
        let refs = crate::build::cache::refs::Refs::new(&self.storage);
        if self.write_cache {
            let keys = self.stages.iter().rev().map(|(_, k)| k.clone()).collect();
            refs.link(tag, &manifest, keys)?;
        } else {
            refs.unlink(tag)?;
        }
        Ok(self.n)
    }

    fn shell(state: &State) -> Vec<String> {
        let s = string_list(state.config.get("config").and_then(|c| c.get("Shell")));
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    fn command_vec(c: &Command, state: &State) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = Self::shell(state);
                v.push(s.clone());
                v
            }
        }
    }

    fn workdir(state: &State) -> String {
        state
            .config
            .get("config")
            .and_then(|c| c.get("WorkingDir"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    /// The state a FROM starts from: its key, and whether it was already at hand.
    fn base(&mut self, image: &str, si: usize) -> Result<(State, String, bool)> {
        if image.eq_ignore_ascii_case("scratch") {
            let arch = crate::platform::host_arch();
            let arch = arch.split('/').next().unwrap_or("amd64").to_string();
            let config = json!({
                "architecture": arch,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            });
            return Ok((
                State {
                    layers: Vec::new(),
                    config,
                },
                "scratch".into(),
                true,
            ));
        }
        if let Some(i) = self.df.stage_index(image, si) {
            let (s, k) = self.stages[i].clone();
            return Ok((s, k, true));
        }
        let (record, hit) = self.image(image)?;
        let bytes = self.storage.blobs().read_to_vec(&record.config)?;
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::json(format!("config of {image}"), e))?;
        Ok((
            State {
                layers: record.layers.clone(),
                config,
            },
            format!("image:{}", record.manifest),
            hit,
        ))
    }

    /// An image from the store, pulled first if missing (as `lade pull`). A registry tag that
    /// the project's lock file governs goes through the pull path even when stored, so that it
    /// resolves (and is pinned) as `lade pull` would; the flag says the stored image was used.
    fn image(&self, image: &str) -> Result<(crate::storage::ImageRecord, bool)> {
        let name = Reference::parse(image)?;
        let loc = ImageLocation::parse_pull_source(image)?;
        let stored = self.storage.images().get(&name)?;
        if let Some(r) = &stored
            && !crate::pull::resolves_through_lock(&loc, &self.registry)
        {
            return Ok((r.clone(), true));
        }
        let opts = crate::pull::PullOptions {
            arch: self.arch.clone(),
            last_layer: None,
            always_download: false,
        };
        crate::pull::pull(
            &self.storage,
            &loc,
            Some(name.clone()),
            &self.registry,
            &opts,
            self.progress,
        )?;
        let record = self.storage.images().require(&name)?;
        let same = stored.is_some_and(|s| s.manifest == record.manifest);
        Ok((record, same))
    }

    fn stage(&mut self, si: usize, scope: &mut Scope) -> Result<(State, String)> {
        let df = self.df.clone();
        let stage = &df.stages[si];
        let from = stage.from.expand(&df, &|v| scope.get_global(v))?;
        self.n += 1;
        let (mut state, mut key, hit) = self.base(&from.image, si)?;
        announce(self.n, hit, &stage.from.text);
        if from.platform.is_some() {
            self.progress.warn(&format!(
                "{}:{}: FROM --platform ignored",
                df.file_name, stage.from.line
            ));
        }
        // The base image's ONBUILD triggers run first, as Docker does, and are not inherited.
        let mut steps: Vec<Located<Instruction>> = Vec::new();
        if key.starts_with("image:") {
            let triggers = string_list(state.config.get("config").and_then(|c| c.get("OnBuild")));
            for t in &triggers {
                let text = format!("FROM scratch\n{t}\n");
                let parsed = crate::build::parse(&text, &df.file_name).map_err(|e| {
                    Error::invalid(
                        format!(
                            "{}:{}: ONBUILD trigger of {}",
                            df.file_name, stage.from.line, from.image
                        ),
                        e.to_string(),
                    )
                })?;
                for mut ins in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                    ins.line = stage.from.line;
                    ins.end_line = stage.from.line;
                    steps.push(ins);
                }
            }
            if !triggers.is_empty() {
                config_obj(&mut state).remove("OnBuild");
            }
        }
        steps.extend(stage.instructions.iter().cloned());
        let env = string_list(state.config.get("config").and_then(|c| c.get("Env")));
        scope.begin_stage(env.iter().map(String::as_str));
        for (k, v) in &from.args {
            scope.declare_args(&[ArgDecl {
                name: k.clone(),
                default: Some(v.clone()),
            }]);
        }
        let mut cmd_set = false;
        // The distribution's workarounds, looked for only when --force or its hint may use
        // them; `init_done` once its init steps are in the state.
        let fakeroot = if self.force || self.force_detect {
            force::detect(|p| self.read_file_in(&state, p))
        } else {
            None
        };
        if self.force {
            match fakeroot {
                Some(c) => self.progress.info(&format!(
                    "--force=fakeroot: will use: {}: {}",
                    c.tag, c.name
                )),
                None if steps.iter().any(|s| matches!(s.value, Instruction::Run(_))) => {
                    self.progress.warn(&format!(
                        "{}:{}: --force=fakeroot: no suitable configuration for this image; RUN steps are left as they are",
                        df.file_name, stage.from.line
                    ))
                }
                None => {}
            }
        }
        let mut init_done = false;
        for ins in &steps {
            self.n += 1;
            let x = ins.expand(&df, &|v| scope.get(v))?;
            match &x {
                Instruction::Arg(d) => scope.declare_args(d),
                Instruction::Env(kv) => scope.set_env(kv),
                _ => {}
            }
            // The configuration whose wrapper this RUN gets (with --force), or whose hint it
            // gets on failure (without).
            let wants_fakeroot = match (&x, fakeroot) {
                (Instruction::Run(r), Some(c)) if c.wants(run_words(&r.plan()).into_iter()) => {
                    Some(c)
                }
                _ => None,
            };
            let forced = wants_fakeroot.filter(|_| self.force);
            if let Some(c) = forced
                && !init_done
            {
                (state, key) = self.fakeroot_init(c, state, &key, scope, &self.where_(ins))?;
                init_done = true;
            }
            let mut inputs = self.inputs(&x).map_err(|e| located(&self.where_(ins), e))?;
            if let Some(c) = forced {
                inputs.push('\n');
                inputs.push_str(&c.fingerprint());
            }
            let args: Vec<String> = scope
                .args()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let k = step_key(
                &key,
                &x.to_string(),
                &format!(
                    "{}\n{inputs}",
                    serde_json::to_string(&args).unwrap_or_default()
                ),
            );
            let cached = if self.read_cache {
                self.cache.get(&self.storage, &k, &key, &ins.text)?
            } else {
                None
            };
            let entrypoint_resets_cmd = matches!(x, Instruction::Entrypoint(_)) && !cmd_set;
            if matches!(x, Instruction::Cmd(_)) {
                cmd_set = true;
            }
            if let Some(s) = cached {
                announce(self.n, true, &ins.text);
                state = s;
            } else {
                announce(self.n, false, &ins.text);
                let done = self.execute(ins, &x, state, scope, entrypoint_resets_cmd, forced);
                if done.is_err()
                    && !self.force
                    && self.force_detect
                    && let Some(c) = wants_fakeroot
                {
                    self.progress.info(&format!(
                        "build failed: --force=fakeroot may fix it ({}: {})",
                        c.tag, c.name
                    ));
                }
                state = done?;
                if self.write_cache {
                    self.cache.put(&k, &key, &ins.text, &state)?;
                }
            }
            key = k;
        }
        Ok((state, key))
    }

    /// What a step reads besides its parent state: hashes of context files, or the state of a
    /// `--from` stage or image.
    fn inputs(&mut self, x: &Instruction) -> Result<String> {
        let (f, from) = match x {
            Instruction::Copy(c) => (&c.files, c.from.as_deref()),
            Instruction::Add(a) => {
                let mut urls = String::new();
                let checksum = add_checksum(a)?;
                for s in &a.files.sources {
                    if let crate::build::Source::Url(u) = s {
                        let d = &a.files.dest;
                        if d.ends_with('/') || d == "." || d.ends_with("/.") {
                            fetch::file_name(u)?; // before downloading: the file needs a name
                        }
                        // With a checksum the content is known without downloading it.
                        let d = match &checksum {
                            Some(c) => c.clone(),
                            None => self.fetch_url(u, None)?.digest,
                        };
                        urls.push_str(&format!("url:{u}:{d}\n"));
                    }
                }
                return Ok(format!(
                    "{urls}{}",
                    files::hash_sources(&self.context, &self.ignore, &a.files)?
                ));
            }
            _ => return Ok(String::new()),
        };
        match from {
            Some(from) => Ok(format!("from:{}", self.source_root(from)?.1)),
            None => files::hash_sources(&self.context, &self.ignore, f),
        }
    }

    /// The file ADD downloads from `url`, fetched once per build.
    pub(crate) fn fetch_url(&self, url: &str, checksum: Option<&Digest>) -> Result<fetch::Fetched> {
        if let Some(f) = self.fetched.borrow().get(url) {
            return Ok(f.clone());
        }
        let dir = self.storage.scratch_path("build-url");
        std::fs::create_dir_all(&dir).at(&dir)?;
        // A URL with no file name in it still downloads: its destination names the file.
        let name = fetch::file_name(url).unwrap_or_else(|_| "download".into());
        self.progress.info(&format!("downloading {url}"));
        let got = fetch::fetch(url, &dir.join(name), checksum, &self.registry);
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                let _ = crate::fsutil::remove_all(&dir);
                return Err(e);
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            // Docker gives downloaded files mode 0600.
            std::fs::set_permissions(&got.path, std::fs::Permissions::from_mode(0o600))
                .at(&got.path)?;
        }
        self.fetched
            .borrow_mut()
            .insert(url.to_string(), got.clone());
        Ok(got)
    }

    /// The flattened root of a `--from` stage or image, and its state key.
    fn source_root(&mut self, from: &str) -> Result<(PathBuf, String)> {
        let (state, key) = match self.df.stage_index(from, self.stages.len()) {
            Some(i) => self.stages[i].clone(),
            None => {
                let (r, _) = self.image(from)?;
                (
                    State {
                        layers: r.layers.clone(),
                        config: json!({}),
                    },
                    format!("image:{}", r.manifest),
                )
            }
        };
        if let Some(p) = self.flat.get(&key) {
            return Ok((p.clone(), key));
        }
        let dir = self.storage.scratch_path("build-from");
        std::fs::create_dir_all(&dir).at(&dir)?;
        let layers = self.storage.layers();
        let trees: Vec<PathBuf> = state.layers.iter().map(|l| layers.tree(&l.tree)).collect();
        let refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
        crate::unpack::flatten_trees(&refs, &dir)?;
        self.flat.insert(key.clone(), dir.clone());
        Ok((dir, key))
    }

    fn where_(&self, ins: &Located<Instruction>) -> String {
        format!("{}:{}", self.df.file_name, ins.line)
    }

    fn execute(
        &mut self,
        ins: &Located<Instruction>,
        x: &Instruction,
        mut state: State,
        scope: &Scope,
        entrypoint_resets_cmd: bool,
        forced: Option<&'static force::Config>,
    ) -> Result<State> {
        let mut layer: Option<LayerRef> = None;
        match x {
            Instruction::Arg(_) => return Ok(state),
            Instruction::Env(kvs) => {
                let c = config_obj(&mut state);
                let mut env = string_list(c.get("Env"));
                for kv in kvs {
                    let prefix = format!("{}=", kv.key);
                    env.retain(|e| !e.starts_with(&prefix) && e != &kv.key);
                    env.push(format!("{}={}", kv.key, kv.value));
                }
                c.insert("Env".into(), json!(env));
            }
            Instruction::Label(kvs) => {
                let c = config_obj(&mut state);
                for kv in kvs {
                    map_insert(c, "Labels", &kv.key, json!(kv.value));
                }
            }
            Instruction::Cmd(cmd) => {
                let v = Self::command_vec(cmd, &state);
                config_obj(&mut state).insert("Cmd".into(), json!(v));
            }
            Instruction::Entrypoint(cmd) => {
                let v = Self::command_vec(cmd, &state);
                let c = config_obj(&mut state);
                c.insert("Entrypoint".into(), json!(v));
                if entrypoint_resets_cmd {
                    c.remove("Cmd");
                }
            }
            Instruction::Shell(v) => {
                config_obj(&mut state).insert("Shell".into(), json!(v));
            }
            Instruction::User(u) => {
                config_obj(&mut state).insert("User".into(), json!(u));
            }
            Instruction::Expose(ports) => {
                let c = config_obj(&mut state);
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    map_insert(c, "ExposedPorts", &p, json!({}));
                }
            }
            Instruction::Volume(vs) => {
                let c = config_obj(&mut state);
                for v in vs {
                    map_insert(c, "Volumes", v, json!({}));
                }
            }
            Instruction::StopSignal(s) => {
                config_obj(&mut state).insert("StopSignal".into(), json!(s));
            }
            Instruction::Healthcheck(h) => {
                let v = match h {
                    Healthcheck::None => json!({"Test": ["NONE"]}),
                    Healthcheck::Check {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test: Vec<String> = match command {
                            Command::Exec(v) => std::iter::once("CMD".to_string())
                                .chain(v.clone())
                                .collect(),
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let mut m = serde_json::Map::new();
                        m.insert("Test".into(), json!(test));
                        for (k, d) in [
                            ("Interval", interval),
                            ("Timeout", timeout),
                            ("StartPeriod", start_period),
                            ("StartInterval", start_interval),
                        ] {
                            if let Some(n) = nanos(d) {
                                m.insert(k.into(), n);
                            }
                        }
                        if let Some(r) = retries {
                            m.insert("Retries".into(), json!(r));
                        }
                        Value::Object(m)
                    }
                };
                config_obj(&mut state).insert("Healthcheck".into(), v);
            }
            Instruction::Onbuild(o) => {
                let c = config_obj(&mut state);
                let mut list = string_list(c.get("OnBuild"));
                list.push(o.expression.clone());
                c.insert("OnBuild".into(), json!(list));
            }
            Instruction::Maintainer(m) => {
                state.config["author"] = json!(m);
            }
            Instruction::Workdir(w) => {
                let dir = resolve_path(&Self::workdir(&state), w);
                if !self.is_dir_in(&state, &dir) {
                    let tree = self.storage.scratch_path("build-tree");
                    let target = tree.join(dir.trim_start_matches('/'));
                    std::fs::create_dir_all(&tree).at(&tree)?;
                    files::prepare_dirs(self, &state, &tree, &dir)?;
                    std::fs::create_dir_all(&target).at(&target)?;
                    self.restore_dir_modes()?;
                    layer = Some(layer::commit_tree(&self.storage, &tree)?);
                }
                config_obj(&mut state).insert("WorkingDir".into(), json!(dir));
            }
            Instruction::Run(r) => {
                layer = Some(self.run(ins, r, &state, scope, forced)?);
            }
            Instruction::Copy(c) => {
                if c.files.chown.is_some() {
                    self.progress
                        .warn(&format!("{}: COPY --chown ignored", self.where_(ins)));
                }
                let root = match c.from.as_deref() {
                    Some(f) => Some(self.source_root(f)?.0),
                    None => None,
                };
                let tree = self.storage.scratch_path("build-tree");
                std::fs::create_dir_all(&tree).at(&tree)?;
                let res =
                    files::copy_files(self, &state, &c.files, root.as_deref(), false, None, &tree)
                        .and_then(|()| self.restore_dir_modes());
                if let Err(e) = res {
                    let _ = crate::fsutil::remove_all(&tree);
                    return Err(located(&self.where_(ins), e));
                }
                layer = Some(layer::commit_tree(&self.storage, &tree)?);
            }
            Instruction::Add(a) => {
                if a.files.chown.is_some() {
                    self.progress
                        .warn(&format!("{}: ADD --chown ignored", self.where_(ins)));
                }
                let tree = self.storage.scratch_path("build-tree");
                std::fs::create_dir_all(&tree).at(&tree)?;
                let unpack = a.unpack.unwrap_or(true);
                let res = add_checksum(a)
                    .and_then(|c| {
                        files::copy_files(self, &state, &a.files, None, unpack, c.as_ref(), &tree)
                    })
                    .and_then(|()| self.restore_dir_modes());
                if let Err(e) = res {
                    let _ = crate::fsutil::remove_all(&tree);
                    return Err(located(&self.where_(ins), e));
                }
                layer = Some(layer::commit_tree(&self.storage, &tree)?);
            }
        }
        push_history(&mut state, &ins.text, layer);
        Ok(state)
    }

    /// What the state has at `rel` (relative to the root): the entry of the topmost layer
    /// that has one (a whiteout included), with its path in that layer's tree.
    fn top_entry(&self, state: &State, rel: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let layers = self.storage.layers();
        state.layers.iter().rev().find_map(|l| {
            let p = layers.tree(&l.tree).join(rel);
            std::fs::symlink_metadata(&p).ok().map(|m| (p, m))
        })
    }

    /// The permission bits of directory `rel` in the state, if it is one there.
    pub(crate) fn dir_mode_in(&self, state: &State, rel: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let (_, m) = self.top_entry(state, rel)?;
        m.is_dir().then(|| m.permissions().mode() & 0o7777)
    }

    /// Gives the directories [`files::prepare_dirs`] made their image modes (they stayed
    /// owner-writable while files went in).
    fn restore_dir_modes(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in self.dirs_to_restore.borrow_mut().drain(..).rev() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).at(&p)?;
        }
        Ok(())
    }

    /// Whether `path` (absolute) is a directory in the state: the topmost layer that has it
    /// decides (a whiteout hides it).
    pub(crate) fn is_dir_in(&self, state: &State, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return true;
        }
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| !m.file_type().is_char_device() && m.is_dir())
    }

    /// `abs` with the image state's symbolic links followed, as the kernel would inside the
    /// container: absolute targets start again at the image root and `..` stops there; at
    /// most 40 links, then the rest is taken as written. COPY and ADD write through a
    /// destination that is (or runs through) a link, as Docker and ch-image do (the manual's
    /// COPY rule 3.1).
    pub(crate) fn resolve_links_in(&self, state: &State, abs: &str) -> String {
        use std::collections::VecDeque;
        let mut done: Vec<String> = Vec::new();
        let mut todo: VecDeque<String> = abs
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(c),
            }
            if links >= 40 {
                continue;
            }
            let rel = done.join("/");
            let Some((path, meta)) = self.top_entry(state, &rel) else {
                continue;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            links += 1;
            done.pop();
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            for part in target.split('/').filter(|c| !c.is_empty()).rev() {
                todo.push_front(part.to_string());
            }
        }
        format!("/{}", done.join("/"))
    }

    /// Whether `rel` is a symbolic link in the state (the topmost layer that has it decides).
    fn is_symlink_in(&self, state: &State, rel: &str) -> bool {
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| m.file_type().is_symlink())
    }

    /// Whether `rel` exists in the state (the topmost layer that has it decides).
    fn exists_in(&self, state: &State, rel: &str) -> bool {
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| !(m.file_type().is_char_device() && m.rdev() == 0))
    }

    /// `lade run` creates its mount points (/dev, /proc, /sys, /etc/hosts, /etc/resolv.conf)
    /// when the image lacks them: they are not the step's work, so they leave the layer.
    fn remove_mount_points(&self, state: &State, upper: &Path) {
        for rel in ["dev", "proc", "sys", "etc/hosts", "etc/resolv.conf"] {
            let p = upper.join(rel);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            // An image symlink at /etc/hosts or /etc/resolv.conf is hidden by the mount point
            // during the step (`lade run` replaces it): it comes back when the file goes.
            if self.exists_in(state, rel) && !self.is_symlink_in(state, rel) {
                continue;
            }
            if m.is_dir() {
                let _ = std::fs::remove_dir(&p); // only if empty
            } else if m.is_file() && m.len() == 0 {
                let _ = std::fs::remove_file(&p);
            }
        }
        // `-b` targets the image lacked, and the parents made for them: mount points, not
        // the step's work (ch-image leaves them in the image). The SSH agent's likewise.
        let dsts = self
            .binds
            .iter()
            .map(|b| b.split_once(':').map_or(b.as_str(), |(_, d)| d))
            .chain(self.ssh_auth_sock.as_ref().map(|_| SSH_AGENT_INSIDE));
        for dst in dsts {
            let mut rel = resolve_path("/", dst).trim_start_matches('/').to_string();
            while !rel.is_empty() && !self.exists_in(state, &rel) {
                let p = upper.join(&rel);
                let gone = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
                    Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
                    _ => false,
                };
                if !gone {
                    break;
                }
                rel = Path::new(&rel)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
        }
        let etc = upper.join("etc");
        if self.is_dir_in(state, "/etc") && !layer::is_opaque(&etc) {
            let _ = std::fs::remove_dir(&etc); // a copy-up left empty
        }
    }

    fn run(
        &self,
        ins: &Located<Instruction>,
        r: &crate::build::Run,
        state: &State,
        scope: &Scope,
        forced: Option<&force::Config>,
    ) -> Result<LayerRef> {
        let at = self.where_(ins);
        if !r.mounts.is_empty() {
            return Err(Error::unsupported(
                format!("{at}: RUN --mount"),
                "not supported yet",
            ));
        }
        if r.network
            .as_deref()
            .is_some_and(|n| n != "default" && n != "host")
        {
            self.progress.warn(&format!(
                "{at}: RUN --network ignored (the host network is used)"
            ));
        }
        let (mut argv, stdin) = match r.plan() {
            RunPlan::Exec(v) => (v, None),
            RunPlan::Shell(s) => {
                let mut v = Self::shell(state);
                v.push(s);
                (v, None)
            }
            RunPlan::Script { content, .. } => {
                let first = content.lines().next().unwrap_or("");
                let mut v: Vec<String> = first
                    .trim_start_matches("#!")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                if v.is_empty() {
                    v = Self::shell(state).into_iter().take(1).collect();
                }
                v.push("/dev/stdin".into());
                (v, Some(content))
            }
        };
        if let Some(c) = forced {
            argv = c.wrap(argv);
            self.progress
                .info(&format!("--force=fakeroot: RUN: new command: {argv:?}"));
        }
        if let Some(u) = state
            .config
            .get("config")
            .and_then(|c| c.get("User"))
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && *u != "0" && *u != "root" && *u != "0:0")
        {
            self.progress.warn(&format!(
                "{at}: RUN runs as uid 0; USER {u} applies to the image's containers only"
            ));
        }
        let env = Self::run_env(state, scope);
        let (status, layer) = self.run_argv(&at, state, &argv, stdin, &env, true)?;
        match layer {
            Some(l) if status.success() => Ok(l),
            _ => Err(Error::invalid(
                at,
                format!("RUN failed with {}: {}", exit_how(status), ins.text),
            )),
        }
    }

    /// The environment of a RUN step: the ARGs in scope that ENV does not override, then the
    /// image's ENV.
    fn run_env(state: &State, scope: &Scope) -> Vec<String> {
        let env_list = string_list(state.config.get("config").and_then(|c| c.get("Env")));
        let mut env: Vec<String> = Vec::new();
        for (k, v) in scope.args() {
            if !env_list
                .iter()
                .any(|e| e.split('=').next() == Some(k.as_str()))
            {
                env.push(format!("{k}={v}"));
            }
        }
        env.extend(env_list);
        env
    }

    /// Runs `argv` over the state (lade's runtime, as uid 0, the `-b` binds mounted) and
    /// returns how it ended, with the layer of its changes when it succeeded and `keep`.
    fn run_argv(
        &self,
        at: &str,
        state: &State,
        argv: &[String],
        stdin: Option<String>,
        env: &[String],
        keep: bool,
    ) -> Result<(std::process::ExitStatus, Option<LayerRef>)> {
        if state.layers.is_empty() {
            return Err(Error::invalid(
                format!("{at}: RUN"),
                "the image has no files to run anything with (FROM scratch)",
            ));
        }
        // Not in the work area: `lade run` mounts its tmpfs over the store's tmp/.
        let dir = self.storage.root().join("build-tmp").join(format!(
            "{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).at(&dir)?;
        let exe = std::env::current_exe().ctx(|| "lade's own executable".into())?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--storage")
            .arg(self.storage.root())
            .arg("build-run-step")
            .arg("--upper")
            .arg(&dir)
            .arg("--cd")
            .arg(Self::workdir(state));
        for l in &state.layers {
            cmd.arg(format!("--layer={}", l.tree));
        }
        for e in env {
            cmd.arg(format!("--env={e}"));
        }
        for b in &self.binds {
            cmd.arg(format!("--bind={b}"));
        }
        if let Some(sock) = &self.ssh_auth_sock {
            // As an argument of its own: the path may hold ':' or be non-UTF-8, unlike `-b`.
            cmd.arg("--ssh-auth-sock").arg(sock);
        }
        cmd.arg("--").args(argv);
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        } else {
            cmd.stdin(std::process::Stdio::null());
        }
        let result = (|| {
            let mut child = cmd.spawn().ctx(|| format!("{at}: starting RUN"))?;
            if let (Some(content), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let _ = pipe.write_all(content.as_bytes());
            }
            let status = child.wait().ctx(|| format!("{at}: waiting for RUN"))?;
            if !status.success() || !keep {
                return Ok((status, None));
            }
            let upper = dir.join("upper");
            self.remove_mount_points(state, &upper);
            Ok((status, Some(layer::commit_tree(&self.storage, &upper)?)))
        })();
        let _ = crate::fsutil::remove_all(&dir);
        result
    }

    /// `--force=fakeroot`'s init steps before the first RUN that needs the wrapper: each
    /// check runs (its changes dropped) and, when it fails, its command runs as a layer of
    /// its own. The whole is one cache step after `key`, so a rebuild runs nothing.
    fn fakeroot_init(
        &self,
        c: &force::Config,
        mut state: State,
        key: &str,
        scope: &Scope,
        at: &str,
    ) -> Result<(State, String)> {
        const INIT: &str = "RUN --force=fakeroot init steps";
        let k = step_key(key, "--force=fakeroot init", &c.fingerprint());
        if self.read_cache
            && let Some(s) = self.cache.get(&self.storage, &k, key, INIT)?
        {
            self.progress
                .info("--force=fakeroot: init steps: cached, nothing to do");
            return Ok((s, k));
        }
        let env = Self::run_env(&state, scope);
        let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.to_string()];
        for (i, (check, command)) in c.init.iter().enumerate() {
            let i = i + 1;
            self.progress.info(&format!(
                "--force=fakeroot: init step {i}: checking: $ {check}"
            ));
            let (status, _) = self.run_argv(at, &state, &sh(check), None, &env, false)?;
            if status.success() {
                self.progress.info(&format!(
                    "--force=fakeroot: init step {i}: exit 0, step not needed"
                ));
                continue;
            }
            self.progress
                .info(&format!("--force=fakeroot: init step {i}: $ {command}"));
            let (status, layer) = self.run_argv(at, &state, &sh(command), None, &env, true)?;
            let Some(layer) = layer.filter(|_| status.success()) else {
                return Err(Error::invalid(
                    format!("{at}: --force=fakeroot init step {i}"),
                    format!("failed with {}: {command}", exit_how(status)),
                ));
            };
            push_history(
                &mut state,
                &format!("RUN --force=fakeroot init step {i}: {command}"),
                Some(layer),
            );
        }
        if self.write_cache {
            self.cache.put(&k, key, INIT, &state)?;
        }
        Ok((state, k))
    }

    /// The text of regular file `abs` in the state (symbolic links followed inside the
    /// image, at most 64 KiB: enough for the small release files it is used on).
    fn read_file_in(&self, state: &State, abs: &str) -> Option<String> {
        let mut path = resolve_path("/", abs);
        for _ in 0..16 {
            let rel = path.trim_start_matches('/').to_string();
            let (tree, meta) = self.top_entry(state, &rel)?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&tree).ok()?;
                let parent = Path::new(&path).parent().unwrap_or(Path::new("/"));
                path = resolve_path(&parent.to_string_lossy(), &target.to_string_lossy());
                continue;
            }
            if !ft.is_file() {
                return None; // a directory, or a whiteout
            }
            let mut text = String::new();
            std::fs::File::open(&tree)
                .ok()?
                .take(64 * 1024)
                .read_to_string(&mut text)
                .ok()?;
            return Some(text);
        }
        None
    }

    fn commit_image(&self, mut state: State, tag: &Reference) -> Result<Digest> {
        let blobs = self.storage.blobs();
        let layers = self.storage.layers();
        let diff_ids: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
        state.config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        state.config["created"] = json!(now_rfc3339());
        let mut descs = Vec::new();
        for l in &state.layers {
            let media = match layers.info(&l.tree).map(|i| i.compression) {
                Ok(c) if c == "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
                Ok(c) if c == "none" => "application/vnd.oci.image.layer.v1.tar",
                _ => "application/vnd.oci.image.layer.v1.tar+gzip",
            };
            let path = blobs.path(&l.blob);
            let size = std::fs::metadata(&path).at(&path)?.len();
            descs.push(json!({"mediaType": media, "digest": l.blob.to_string(), "size": size}));
        }
        let config_bytes =
            serde_json::to_vec(&state.config).map_err(|e| Error::json("image config", e))?;
        let config_digest: Digest = blobs.put_bytes(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::json("image manifest", e))?;
        let raw = RawManifest::new(manifest_bytes, Some(OCI_MANIFEST), None, "image manifest")?;
        let digest = raw.digest.clone();
        let mut dest = StoreDestination::new(self.storage.clone(), tag.clone())
            .with_progress(self.progress.clone());
        dest.put_manifest(&raw)?;
        dest.commit(&CopiedImage {
            top: raw,
            from_index: None,
            platform: None,
            source: format!("build {}", self.context.display()),
        })?;
        Ok(digest)
    }
}

/// ADD's `--checksum`, which only URL sources can have (one at a time: it names one file).
fn add_checksum(a: &crate::build::Add) -> Result<Option<Digest>> {
    let Some(c) = a.checksum.as_deref() else {
        return Ok(None);
    };
    let urls = a
        .files
        .sources
        .iter()
        .filter(|s| matches!(s, crate::build::Source::Url(_)))
        .count();
    if urls != 1 || a.files.sources.len() != 1 {
        return Err(Error::invalid(
            format!("ADD --checksum={c}"),
            "needs exactly one source, an http:// or https:// URL",
        ));
    }
    fetch::parse_checksum(c).map(Some)
}

fn located(at: &str, e: Error) -> Error {
    match e {
        Error::Invalid { what, why } => Error::Invalid {
            what: format!("{at}: {what}"),
            why,
        },
        Error::Unsupported { what, why } => Error::Unsupported {
            what: format!("{at}: {what}"),
            why,
        },
        other => other,
    }
}
