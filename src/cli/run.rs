//! `lade run`: start-up critical (a container's whole cost can be a few milliseconds), so
//! `main` parses it with a command that knows nothing else (see `parse_run_quickly`).

use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::{Error, Result};
use lade::run::{self, RunImage, RunOptions, process, rootfs::Upper};
use lade::storage::{self, LockMode, Storage};

#[derive(Args)]
pub struct RunArgs {
    /// Bind host SRC at DST inside (DST defaults to SRC; created if missing); repeatable
    #[arg(short, long = "bind", value_name = "SRC[:DST]")]
    binds: Vec<String>,
    /// Writable root: changes vanish on exit, or are kept in DIR with --write=DIR
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "", value_name = "DIR")]
    write: Option<String>,
    /// User ID inside the container (e.g. 0); the caller's own by default
    #[arg(long)]
    uid: Option<u32>,
    /// Group ID inside the container
    #[arg(long)]
    gid: Option<u32>,
    /// Do not bind the home directory at /home/$USER
    #[arg(long)]
    no_home: bool,
    /// Working directory inside [default: the image's WorkingDir, else /]
    #[arg(short = 'c', long = "cd", value_name = "DIR")]
    cd: Option<String>,
    /// Set variables: K=V, or a file of K=V lines; repeatable
    #[arg(long, value_name = "FILE|K=V")]
    set_env: Vec<String>,
    /// Remove variables matching GLOB; repeatable
    #[arg(long, value_name = "GLOB")]
    unset_env: Vec<String>,
    /// Image name in the store, or a directory holding a root filesystem (e.g. from `lade
    /// unpack`). A path starting with / or . is a directory; a bare name is the stored image
    /// of that name, or, if it is not a stored image, the directory of that name (as ch-run
    /// DIR)
    image: String,
    /// Command and arguments [default: the image's Entrypoint and Cmd]
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn run(args: RunArgs, c: &Common) -> Result<ExitCode> {
    let mut set_env = Vec::new();
    for a in &args.set_env {
        set_env.extend(process::parse_set_env(a)?);
    }
    let binds = args
        .binds
        .iter()
        .map(|b| run::parse_bind(b))
        .collect::<Result<Vec<_>>>()?;
    let upper = match args.write.as_deref() {
        None => Upper::Scratch { writable: false },
        Some("") => Upper::Scratch { writable: true },
        Some(dir) => Upper::Keep(
            std::path::absolute(dir).map_err(|e| Error::io(format!("--write={dir}"), e))?,
        ),
    };
    let opts = RunOptions {
        image: RunImage::Arg(args.image),
        user: process::UserChoices {
            command: args.command,
            set_env,
            unset_env: args.unset_env,
            cwd: args.cd,
            host_env: std::env::vars().collect(),
        },
        binds,
        upper,
        uid: args.uid,
        gid: args.gid,
        no_home: args.no_home,
    };
    let g = c.global;
    let (path, _) = storage::resolve_path(g.storage.as_deref())?;
    let mode = if g.no_lock {
        LockMode::None
    } else {
        LockMode::Shared
    };
    // No work area: a run writes nothing to the store but its mount points.
    let storage = Storage::open_without_work_area(&path, mode)?;
    match run::run(&storage, &opts)? {}
}
