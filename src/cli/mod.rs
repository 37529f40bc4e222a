//! The command line: the options every command shares, the list of commands, and one small
//! module per command that turns its arguments into a library call and its result into
//! output. No command's work is done here.

mod artifact;
mod build;
mod completion;
mod copy;
mod delete;
mod fsck;
mod gestalt;
mod import;
mod inspect;
mod key;
mod list;
mod list_remote;
mod list_sif;
mod login;
mod pull;
mod push;
mod reset;
pub mod run;
mod sign;
mod undelete;
mod unpack;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use lade::error::{Error, Result};
use lade::platform::ArchChoice;
use lade::progress::Progress;
use lade::storage::{self, LockMode, Storage};
use lade::transport::registry;

#[derive(Parser)]
#[command(
    name = "lade",
    version,
    about = "Build, run, pull, push and copy OCI container images, unprivileged and without a daemon",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// `Default` is what clap makes of no option and none of [`Global::ENV_VARS`] set (checked by
/// a test in main.rs).
#[derive(Args, Debug, PartialEq)]
pub struct Global {
    /// Storage directory [default: $LADE_STORAGE, else /var/tmp/$USER.lade]
    #[arg(short, long, global = true, value_name = "DIR")]
    pub storage: Option<PathBuf>,
    /// Also use images, blobs and layers of the lade store DIR in place, read-only: never
    /// written or locked; looked in after the storage directory, in the order given
    /// (repeatable) [default: $LADE_RO_STORAGE, colon-separated]
    #[arg(long = "ro-storage", global = true, value_name = "DIR")]
    pub ro_storage: Vec<PathBuf>,
    /// Do not lock the storage directory (concurrent lades risk corruption)
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Architecture: host, yolo, or a registry name such as arm64/v8
    #[arg(
        short,
        long,
        global = true,
        default_value = "host",
        value_name = "ARCH"
    )]
    pub arch: String,
    /// More chatter; repeat for more
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Authenticated registry access: credentials from $LADE_USERNAME/$LADE_PASSWORD, login
    /// files or a prompt, sent whenever asked (--auth=no: as --no-auth) [default: reads go
    /// anonymously, then with a login file's credentials if the registry refuses that]
    #[arg(long, global = true, env = "LADE_AUTH", value_name = "YES|NO",
          num_args = 0..=1, require_equals = true, default_missing_value = "yes",
          overrides_with = "no_auth", hide_possible_values = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auth: Option<bool>,
    /// Strictly anonymous reads, as ch-image's without --auth: never a stored login's
    /// credentials (push still authenticates)
    #[arg(long, global = true, overrides_with = "auth")]
    pub no_auth: bool,
    /// Ask for the registry password every time one is needed (one-time passwords)
    #[arg(long, global = true)]
    pub password_many: bool,
    /// Do not verify registries' TLS certificates, and allow plain HTTP (risky)
    #[arg(long, global = true)]
    pub tls_no_verify: bool,
    /// Also trust the PEM certificates in FILE for registries
    #[arg(long, global = true, value_name = "FILE", env = "LADE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Bring an image into the store from a registry, oci:DIR[:REF], oci-archive:FILE[:REF]
    /// or docker-archive:FILE[:NAME:TAG|:@N]
    Pull(pull::PullArgs),
    /// Copy an image between transports (docker://, oci:, oci-archive:, docker-archive:,
    /// lade:), digests preserved
    Copy(copy::CopyArgs),
    /// Push a stored image (or a directory, with --image) to a registry or another transport,
    /// digests preserved
    Push(push::PushArgs),
    /// Write an image's flattened root filesystem to DIR (absent or empty)
    Unpack(unpack::UnpackArgs),
    /// List images in the store, or show one
    List(list::ListArgs),
    /// Describe an image from any transport as `skopeo inspect` does (JSON); a bare name is
    /// an image in the store
    Inspect(inspect::InspectArgs),
    /// Delete images whose names match GLOB (quote it), then unused blobs and layers; a
    /// docker://REF deletes that tag or manifest from its registry, where allowed
    Delete(delete::DeleteArgs),
    /// Make an image from a directory or tarball (with or without one top-level directory)
    Import(import::ImportArgs),
    /// Run a command in an image: user and mount namespaces, no daemon, no privileges
    Run(run::RunArgs),
    /// Verify every object in the store (not the read-only stores': what an image finds
    /// there counts as present)
    Fsck(fsck::FsckArgs),
    /// Delete everything in the storage directory
    Reset,
    /// Print configuration and features: storage-path, ro-storage, storage-version, arch,
    /// version
    Gestalt(gestalt::GestaltArgs),
    /// Build an image from a Dockerfile, unprivileged, with a build cache
    Build(build::BuildArgs),
    /// Summarise the build cache; --reset, --gc and --tree first, in that order
    BuildCache(build::BuildCacheArgs),
    /// Bring back an image `lade delete` removed, if its layers are still stored
    Undelete(undelete::UndeleteArgs),
    /// Check credentials against a registry, then save them in a login file (or its
    /// credential helper) for later commands
    Login(login::LoginArgs),
    /// Remove a registry's credentials from the login file
    Logout(login::LogoutArgs),
    /// Print a shell completion script (bash, zsh or fish) for lade
    Completion(completion::CompletionArgs),
    /// Print lade's manual page, or write every page into a directory with --output
    Man(completion::ManArgs),
    /// Push, pull, attach and list ORAS artifacts (files in a registry)
    Artifact(artifact::ArtifactArgs),
    /// Make a key pair in cosign's formats
    Key(key::KeyArgs),
    /// Sign an image as cosign does (a registry image, oci:DIR[:REF] or lade:NAME)
    Sign(sign::SignArgs),
    /// Check every signature of an image against a public key
    Verify(sign::VerifyArgs),
    #[command(hide = true)]
    BuildRunStep(build::RunStepArgs),
}

impl Global {
    /// The environment variables that set global options.
    pub const ENV_VARS: [&str; 2] = ["LADE_AUTH", "LADE_TLS_CA_FILE"];

    /// `--no-auth` wins over `$LADE_AUTH` (the command line over the environment); of
    /// `--auth` and `--no-auth` on the command line, the last one counts.
    fn auth_mode(&self) -> registry::AuthMode {
        match (self.no_auth, self.auth) {
            (true, _) | (false, Some(false)) => registry::AuthMode::Anonymous,
            (false, Some(true)) => registry::AuthMode::Authenticated,
            (false, None) => registry::AuthMode::AnonymousThenLogins,
        }
    }
}

impl Default for Global {
    fn default() -> Global {
        Global {
            storage: None,
            ro_storage: Vec::new(),
            no_lock: false,
            arch: "host".to_string(),
            verbose: 0,
            quiet: false,
            auth: None,
            no_auth: false,
            password_many: false,
            tls_no_verify: false,
            tls_ca_file: None,
        }
    }
}

/// What every command gets besides its own arguments.
pub struct Common<'a> {
    pub global: &'a Global,
    pub arch: ArchChoice,
    pub progress: &'a Progress,
}

impl Common<'_> {
    /// The storage directory, locked as `mode` asks unless `--no-lock`.
    pub fn open_storage(&self, mode: LockMode) -> Result<Arc<Storage>> {
        let (path, _) = storage::resolve_path(self.global.storage.as_deref())?;
        let mode = if self.global.no_lock {
            LockMode::None
        } else {
            mode
        };
        let storage = Storage::open(&path, mode)?.with_read_only(self.read_only_stores()?)?;
        Ok(Arc::new(storage))
    }

    /// The read-only stores: `--ro-storage`, else `$LADE_RO_STORAGE`.
    pub fn read_only_stores(&self) -> Result<Vec<PathBuf>> {
        storage::resolve_read_only_paths(&self.global.ro_storage)
    }

    /// How to reach registries, from the global options.
    pub fn registry(&self) -> registry::Options {
        let g = self.global;
        registry::Options {
            tls_no_verify: g.tls_no_verify,
            ca_file: g.tls_ca_file.clone(),
            auth: g.auth_mode(),
            password_many: g.password_many,
            progress: self.progress.clone(),
            ..Default::default()
        }
    }
}

/// Runs the command; an error is printed by the caller.
pub fn run(cli: Cli, progress: &Progress) -> Result<ExitCode> {
    let c = Common {
        global: &cli.global,
        arch: cli.global.arch.parse()?,
        progress,
    };
    match cli.command {
        Command::Pull(args) => pull::run(args, &c),
        Command::Copy(args) => copy::run(args, &c),
        Command::Push(args) => push::run(args, &c),
        Command::Unpack(args) => unpack::run(args, &c),
        Command::List(args) => list::run(args, &c),
        Command::Inspect(args) => inspect::run(args, &c),
        Command::Delete(args) => delete::run(args, &c),
        Command::Import(args) => import::run(args, &c),
        Command::Run(args) => run::run(args, &c),
        Command::Fsck(args) => fsck::run(args, &c),
        Command::Reset => reset::run(&c),
        Command::Gestalt(args) => gestalt::run(args, &c),
        Command::Build(args) => build::build(args, &c),
        Command::BuildCache(args) => build::build_cache(args, &c),
        Command::Undelete(args) => undelete::run(args, &c),
        Command::Login(args) => login::login(args, &c),
        Command::Logout(args) => login::logout(args, &c),
        Command::Completion(args) => completion::completion(args, &c),
        Command::Man(args) => completion::man(args, &c),
        Command::Artifact(args) => artifact::run(args, &c),
        Command::Key(args) => key::run(args, &c),
        Command::Sign(args) => sign::sign(args, &c),
        Command::Verify(args) => sign::verify(args, &c),
        Command::BuildRunStep(args) => build::run_step(args, &c),
    }
}

/// `--format`: lines for people, or JSON for scripts (the schemas are in the README).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Prints `value` as pretty JSON on standard output. A reader that closed the pipe early
/// (`| head`) has what it wanted: that is not an error.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::json("output", e))?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(()),
    }
}

/// The error and its causes on one line.
pub fn one_line(e: &Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry::AuthMode;

    /// The mode the command line asks for (the environment is the integration tests').
    fn mode(args: &[&str]) -> AuthMode {
        match Cli::try_parse_from(args) {
            Ok(cli) => cli.global.auth_mode(),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn auth_and_no_auth() {
        if std::env::var_os("LADE_AUTH").is_some() {
            return; // It would decide for the options not given.
        }
        for (args, expected) in [
            (&["lade", "pull", "x"][..], AuthMode::AnonymousThenLogins),
            // A bare --auth takes no value: the word after it stays the image (a pull with
            // no image would not parse).
            (&["lade", "pull", "--auth", "no"], AuthMode::Authenticated),
            (&["lade", "--auth", "pull", "x"], AuthMode::Authenticated),
            (
                &["lade", "--auth=yes", "pull", "x"],
                AuthMode::Authenticated,
            ),
            (&["lade", "--auth=no", "pull", "x"], AuthMode::Anonymous),
            (&["lade", "pull", "--no-auth", "x"], AuthMode::Anonymous),
            (
                &["lade", "--auth", "--no-auth", "pull", "x"],
                AuthMode::Anonymous,
            ),
            (
                &["lade", "--no-auth", "--auth", "pull", "x"],
                AuthMode::Authenticated,
            ),
        ] {
            assert_eq!(mode(args), expected, "{args:?}");
        }
        assert!(Cli::try_parse_from(["lade", "--auth=maybe", "pull", "x"]).is_err());
    }
}
