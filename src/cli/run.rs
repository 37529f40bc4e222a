//! `lade run`: start-up critical (a container's whole cost can be a few milliseconds), so
//! `main` parses it with a command that knows nothing else (see `parse_run_quickly`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Common;
use lade::error::{Error, Result};
use lade::reference::Reference;
use lade::run::{self, RunImage, RunOptions, process, rootfs::Upper};
use lade::storage::{self, LockMode, Storage};

#[derive(Args, Debug, PartialEq)]
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
    /// Image name in the store, a directory holding a root filesystem (e.g. from `lade
    /// unpack`), a single-file image (SquashFS or SIF: squashfs:FILE, a path, or a name
    /// ending .sqfs, .squashfs or .sif), or oras://REF (a SIF, pulled into the store when not
    /// there yet). A path starting with / or . is a file or directory; a bare name is the
    /// stored image of that name, else the SIF stored under that name (`lade pull oras://REF
    /// NAME`); a name that is not a stored image or SIF is the directory of that name (as
    /// ch-run)
    image: String,
    /// Command and arguments [default: the image's Entrypoint and Cmd, or the runscript of a
    /// file Apptainer built, whose commands run as with `apptainer exec`]
    #[arg(last = true)]
    command: Vec<String>,
}

impl RunArgs {
    /// `lade run IMAGE -- COMMAND...` without options (see `parse_plain_run` in main.rs).
    pub fn plain(image: &str, command: &[&str]) -> RunArgs {
        RunArgs {
            binds: Vec::new(),
            write: None,
            uid: None,
            gid: None,
            no_home: false,
            cd: None,
            set_env: Vec::new(),
            unset_env: Vec::new(),
            image: image.to_string(),
            command: command.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// What IMAGE names: `squashfs:FILE` is a file; `oras://REF` is the SIF stored under REF
/// (see [`sif_in_store`]); a path (starting with `/` or `.`) is a file or a directory,
/// whichever it is; a name with a single-file image's extension that exists as a file is
/// that file; a name `docker://` or `lade:` prefixes is a stored image (or stored SIF); any
/// other transport must be pulled first; a bare name is left to [`run::plan::resolve`] (a
/// stored image, else a stored SIF, else a directory of that name).
fn image_of(arg: &str) -> Result<RunImage> {
    if let Some(reference) = lade::artifact::sif::parse_oras(arg) {
        return Ok(RunImage::StoredFile(reference?));
    }
    if let Some(file) = arg.strip_prefix("squashfs:") {
        return Ok(RunImage::File(PathBuf::from(file)));
    }
    let path = PathBuf::from(arg);
    if arg.starts_with('/') || arg.starts_with('.') {
        return Ok(if path.is_file() {
            RunImage::File(path)
        } else {
            RunImage::Directory(path)
        });
    }
    let file_like = [".sqfs", ".squashfs", ".sif"]
        .iter()
        .any(|ext| arg.ends_with(ext));
    if file_like && path.is_file() {
        return Ok(RunImage::File(path));
    }
    let prefixed = arg
        .strip_prefix("docker://")
        .or_else(|| arg.strip_prefix("lade:"));
    let name = prefixed.unwrap_or(arg);
    if let Some((transport, _)) = name.split_once(':')
        && matches!(transport, "oci" | "oci-archive" | "docker-archive" | "dir")
    {
        return Err(Error::invalid(
            format!("lade run {arg}"),
            format!(
                "run takes a stored image, a directory or a SquashFS/SIF file; bring it in first: lade pull {arg} NAME, then lade run NAME"
            ),
        ));
    }
    Ok(match prefixed {
        Some(name) => RunImage::Stored(Reference::parse(name)?),
        None => RunImage::Arg(arg.to_string()),
    })
}

pub fn run(args: RunArgs, c: &Common) -> Result<ExitCode> {
    let image = image_of(&args.image)?;
    let stored = matches!(image, RunImage::Stored(_) | RunImage::Arg(_));
    let given = args.image.clone();
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
        image,
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
        step_mounts: Vec::new(),
    };
    let g = c.global;
    let (path, _) = storage::resolve_path(g.storage.as_deref())?;
    let mode = if g.no_lock {
        LockMode::None
    } else {
        LockMode::Shared
    };
    // No work area: a run writes nothing to the store but its mount points.
    let storage =
        Storage::open_without_work_area(&path, mode)?.with_read_only(c.read_only_stores()?)?;
    if let RunImage::StoredFile(reference) = &opts.image {
        sif_in_store(&storage, reference, c)?;
    }
    match run::run(&storage, &opts) {
        Ok(never) => match never {},
        // A name that is not stored may well be on a registry.
        Err(Error::ImageNotFound(what)) if stored => Err(Error::ImageNotFound(format!(
            "{what}; to get it from a registry: lade pull {given}"
        ))),
        Err(e) => Err(e),
    }
}

/// `lade run oras://REF`: the SIF is pulled into the store under the name REF, as `lade pull
/// oras://REF` would, when it is not there yet. One that is there runs without asking the
/// registry, as `lade run docker://REF` runs the stored image: a container starts in
/// milliseconds and cluster compute nodes often have no registry to ask; `lade pull
/// oras://REF` takes a tag that has moved.
fn sif_in_store(storage: &Storage, reference: &Reference, c: &Common) -> Result<()> {
    if let Some(record) = storage.single_files().get(reference)?
        && storage.blobs().has(&record.blob)
    {
        return Ok(());
    }
    // Pulling writes blobs: a handle with a work area, given up before the run.
    let writable = c.open_storage(LockMode::Shared)?;
    c.progress.info(&format!("pulling oras://{reference}"));
    lade::artifact::sif::pull_to_store(&writable, reference, reference, &c.registry(), c.progress)?;
    Ok(())
}
