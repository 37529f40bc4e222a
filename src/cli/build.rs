//! `lade build`, `lade build-cache` and the hidden `lade build-run-step` (a build's RUN in its
//! own process): their options, turned into the library's [`BuildOptions`] and
//! [`RunStepOptions`], and thin calls into [`lade::builder`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::builder::{BuildOptions, RunStepOptions};
use lade::error::Result;
use lade::pull::TagPins;
use lade::storage::LockMode;

/// `lade build` options.
#[derive(Args, Debug, Clone)]
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
    /// Refuse a FROM image that carries no signature this public key verifies
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<std::path::PathBuf>,
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

impl BuildArgs {
    /// The build the options ask for (`--locked` is the registry options' business).
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            tag: self.tag.clone(),
            file: self.file.clone(),
            build_args: self.build_args.clone(),
            no_cache: self.no_cache,
            rebuild: self.rebuild,
            parse_only: self.parse_only,
            dry_run: self.dry_run,
            force: self.force.clone(),
            force_detect: !self.no_force_detect,
            binds: self.binds.clone(),
            context: self.context.clone(),
        }
    }
}

/// The hidden `lade build-run-step`: one RUN over layer trees, changes kept in UPPER. Its
/// only caller is `lade build` (`lade::builder::run`), which writes these options.
#[derive(Args, Debug, Clone)]
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

impl From<RunStepArgs> for RunStepOptions {
    fn from(a: RunStepArgs) -> RunStepOptions {
        RunStepOptions {
            layers: a.layers,
            upper: a.upper,
            cd: a.cd,
            env: a.env,
            binds: a.binds,
            ssh_auth_sock: a.ssh_auth_sock,
            command: a.command,
        }
    }
}

#[derive(Args)]
pub struct BuildCacheArgs {
    /// Forget every cached build step, and free the layers only the cache used
    #[arg(long)]
    reset: bool,
    /// Drop the states no image's build reaches, and free their layers
    #[arg(long)]
    gc: bool,
    /// Print a text tree of the cached states, from their FROM images
    #[arg(long, conflicts_with = "format")]
    tree: bool,
    /// Output: text, or JSON (what --reset and --gc did, and the summary)
    #[arg(long, value_enum, default_value_t = super::Format::Text)]
    format: super::Format,
}

pub fn build(args: BuildArgs, c: &Common) -> Result<ExitCode> {
    // FROM resolves registry tags through the project's lock file, as `lade pull` does.
    let verify = args
        .verify_key
        .as_deref()
        .map(lade::sign::keys::load_public)
        .transpose()?;
    let pins = TagPins::of_project(args.locked)?.verifying(verify);
    lade::builder::build(
        &args.options(),
        || c.open_storage(LockMode::Shared),
        c.registry(),
        pins,
        c.arch.clone(),
        c.progress,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn build_cache(args: BuildCacheArgs, c: &Common) -> Result<ExitCode> {
    let mode = if args.reset || args.gc {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let storage = c.open_storage(mode)?;
    let opts = lade::builder::cache::manage::Options {
        reset: args.reset,
        gc: args.gc,
        tree: args.tree,
    };
    let outcome = lade::builder::cache::manage::build_cache(&storage, opts)?;
    match args.format {
        super::Format::Json => super::print_json(&outcome)?,
        super::Format::Text => print!("{}", outcome.text()),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_step(args: RunStepArgs, c: &Common) -> Result<ExitCode> {
    let storage = c.open_storage(LockMode::Shared)?;
    match lade::builder::run_step(&storage, args.into(), c.progress)? {}
}
