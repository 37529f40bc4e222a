//! The `lade` command: argument parsing and output only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod cli {
    pub mod build;
}

use lade::copy::{CopyOptions, copy_image};
use lade::error::{Error, Result};
use lade::platform::ArchChoice;
use lade::progress::Progress;
use lade::reference::Reference;
use lade::storage::{self, LockMode, Storage};
use lade::transport::{self, Context, ImageLocation, store::StoreDestination};

#[derive(Parser)]
#[command(
    name = "lade",
    version,
    about = "Pull, unpack, copy and manage OCI container images without privileges",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Storage directory [default: $LADE_STORAGE, else /var/tmp/$USER.lade]
    #[arg(short, long, global = true, value_name = "DIR")]
    storage: Option<PathBuf>,
    /// Do not lock the storage directory (concurrent lades risk corruption)
    #[arg(long, global = true)]
    no_lock: bool,
    /// Architecture: host, yolo, or a registry name such as arm64/v8
    #[arg(
        short,
        long,
        global = true,
        default_value = "host",
        value_name = "ARCH"
    )]
    arch: String,
    /// More chatter; repeat for more
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Authenticated registry access (credentials from $LADE_USERNAME/$LADE_PASSWORD, login
    /// files, or a prompt); anonymous otherwise
    #[arg(long, global = true, env = "LADE_AUTH",
          value_parser = clap::builder::BoolishValueParser::new())]
    auth: bool,
    /// Ask for the registry password every time one is needed (one-time passwords)
    #[arg(long, global = true)]
    password_many: bool,
    /// Do not verify registries' TLS certificates, and allow plain HTTP (risky)
    #[arg(long, global = true)]
    tls_no_verify: bool,
    /// Also trust the PEM certificates in FILE for registries
    #[arg(long, global = true, value_name = "FILE", env = "LADE_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Bring an image into the store from a registry, oci:DIR[:REF] or oci-archive:FILE[:REF]
    Pull {
        /// Parse IMAGE_REF, print a report and exit, touching neither network nor store
        #[arg(long)]
        parse_only: bool,
        /// Unpack only the first N layers (debugging)
        #[arg(long, value_name = "N")]
        last_layer: Option<usize>,
        /// Copy every blob even if the store has it
        #[arg(long)]
        always_download: bool,
        /// Fail if a registry tag is not pinned in ./lade-tags.lock
        #[arg(long)]
        locked: bool,
        /// Source: IMAGE_REF (a registry) or TRANSPORT:…
        source: String,
        /// Name in the store [default: the source's own reference]
        dest_ref: Option<String>,
    },
    /// Copy an image between transports (docker://, oci:, oci-archive:, lade:), digests preserved
    Copy {
        /// Copy every platform of a multi-architecture index
        #[arg(long)]
        all: bool,
        source: String,
        destination: String,
    },
    /// Push a stored image (or a directory, with --image) to a registry, digests preserved
    Push {
        /// Push the tree in DIR, packed as one layer, instead of a stored image
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Compression of layers packed from a tree
        #[arg(long, value_enum, default_value_t = PushCompression::Gzip)]
        compression: PushCompression,
        /// The stored image (with --image: only the default destination)
        image_ref: String,
        /// Registry reference to push to [default: IMAGE_REF]
        dest_ref: Option<String>,
    },
    /// Write an image's flattened root filesystem to DIR (absent or empty)
    Unpack { image_ref: String, dir: PathBuf },
    /// List images in the store, or show one
    List {
        /// Long format: platform, digest, layers, source
        #[arg(short, long)]
        long: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// List the tags of IMAGE_REF's repository in its registry
        #[arg(long, requires = "image_ref")]
        tags: bool,
        image_ref: Option<String>,
    },
    /// Delete images whose names match GLOB (quote it), then unused blobs and layers; a
    /// docker://REF deletes that tag or manifest from its registry, where allowed
    Delete {
        #[arg(required = true)]
        globs: Vec<String>,
    },
    /// Make an image from a directory or tarball (with or without one top-level directory)
    Import { path: PathBuf, image_ref: String },
    /// Run a command in an image: user and mount namespaces, no daemon, no privileges
    Run(RunArgs),
    /// Verify every object in the store
    Fsck {
        /// Remove corrupt objects and unusable images (pull them again afterwards)
        #[arg(long)]
        repair: bool,
    },
    /// Delete everything in the storage directory
    Reset,
    /// Print configuration and features: storage-path, storage-version, arch, version
    Gestalt { selector: Option<String> },
    /// Build an image from a Dockerfile, unprivileged, with a build cache
    Build(cli::build::BuildArgs),
    /// Summarise the build cache; --reset, --gc and --tree first, in that order
    BuildCache {
        /// Forget every cached build step, and free the layers only the cache used
        #[arg(long)]
        reset: bool,
        /// Drop the states no image's build reaches, and free their layers
        #[arg(long)]
        gc: bool,
        /// Print a text tree of the cached states, from their FROM images
        #[arg(long)]
        tree: bool,
    },
    /// Bring back an image `lade delete` removed, if its layers are still stored
    Undelete { image_ref: String },
    #[command(hide = true)]
    BuildRunStep(cli::build::RunStepArgs),
}

#[derive(Args)]
struct RunArgs {
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
    /// Image reference in the store, or an unpacked root directory
    image: String,
    /// Command and arguments [default: the image's Entrypoint and Cmd]
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PushCompression {
    Gzip,
    Zstd,
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = parse_run_quickly().unwrap_or_else(Cli::parse);
    let progress = Progress::new(if cli.global.quiet {
        -1
    } else {
        cli.global.verbose.min(3) as i8
    });
    match run(cli, &progress) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lade: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `lade run` is a start-up path (a container's whole cost can be a few milliseconds), and
/// building clap's tree of every subcommand was a measurable share of it. So `run` is first
/// parsed with a command that knows only the global options and `run`; anything else, and any
/// error, help or version request, falls through to the full parser, which owns every message.
fn parse_run_quickly() -> Option<Cli> {
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Cheap pre-check: without a literal `run` argument this cannot be a run.
    if !args.iter().skip(1).any(|a| a == "run") {
        return None;
    }
    let run = RunArgs::augment_args(clap::Command::new("run"));
    let lade = Global::augment_args(clap::Command::new("lade"))
        .subcommand(run)
        .disable_help_flag(true)
        .disable_version_flag(true);
    let matches = lade.try_get_matches_from(&args).ok()?;
    let (name, sub) = matches.subcommand()?;
    if name != "run" {
        return None;
    }
    Some(Cli {
        global: Global::from_arg_matches(&matches).ok()?,
        command: Command::Run(RunArgs::from_arg_matches(sub).ok()?),
    })
}

/// The error and its causes on one line.
fn one_line(e: &Error) -> String {
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

fn open_storage(g: &Global, mode: LockMode) -> Result<Arc<Storage>> {
    let (path, _) = storage::resolve_path(g.storage.as_deref())?;
    let mode = if g.no_lock { LockMode::None } else { mode };
    Ok(Arc::new(Storage::open(&path, mode)?))
}

fn run(cli: Cli, progress: &Progress) -> Result<ExitCode> {
    let g = &cli.global;
    let arch: ArchChoice = g.arch.parse()?;
    match cli.command {
        Command::Pull {
            parse_only,
            last_layer,
            always_download,
            locked,
            source,
            dest_ref,
        } => {
            if parse_only {
                let r = Reference::parse(source.strip_prefix("docker://").unwrap_or(&source))?;
                print!("{}", r.parse_report());
                return Ok(ExitCode::SUCCESS);
            }
            let src_loc = ImageLocation::parse_pull_source(&source)?;
            let dest_name = dest_ref.as_deref().map(Reference::parse).transpose()?;
            let storage = open_storage(g, LockMode::Shared)?;
            let registry = match &src_loc {
                ImageLocation::Registry(_) => {
                    lade::pull::with_project_lock(registry_options(g, progress), locked)?
                }
                _ => registry_options(g, progress),
            };
            let opts = lade::pull::PullOptions {
                arch,
                last_layer,
                always_download,
            };
            let (name, image) =
                lade::pull::pull(&storage, &src_loc, dest_name, &registry, &opts, progress)?;
            progress.info(&format!("done: {} {}", name.familiar(), image.top.digest));
        }
        Command::Copy {
            all,
            source,
            destination,
        } => {
            let src_loc = ImageLocation::parse(&source)?;
            let dst_loc = ImageLocation::parse(&destination)?;
            let uses_store = matches!(src_loc, ImageLocation::Store(_))
                || matches!(dst_loc, ImageLocation::Store(_));
            let storage = if uses_store {
                Some(open_storage(g, LockMode::Shared)?)
            } else {
                None
            };
            let ctx = Context {
                storage,
                registry: registry_options(g, progress),
            };
            let src = transport::open_source(&src_loc, &ctx)?;
            let mut dst: Box<dyn transport::ImageDestination> = match (&dst_loc, &ctx.storage) {
                (ImageLocation::Store(name), Some(st)) => Box::new(
                    StoreDestination::new(st.clone(), name.clone()).with_progress(progress.clone()),
                ),
                (ImageLocation::Registry(r), _) => {
                    let d = lade::transport::registry::RegistryDestination::open(
                        r,
                        &ctx.registry,
                        ctx.storage.clone(),
                    )?;
                    let from = match &src_loc {
                        ImageLocation::Registry(s) => d.same_registry_repository(s),
                        _ => None,
                    };
                    Box::new(d.with_mount_sources(from.into_iter().collect()))
                }
                _ => transport::open_destination(&dst_loc, &ctx)?,
            };
            let opts = CopyOptions {
                arch,
                all,
                ..CopyOptions::default()
            };
            let image = copy_image(&*src, &mut *dst, &opts, progress)?;
            progress.info(&format!("copied {} {}", dst.describe(), image.top.digest));
        }
        Command::Push {
            image,
            compression,
            image_ref,
            dest_ref,
        } => {
            push(
                g,
                progress,
                arch,
                image,
                compression,
                &image_ref,
                dest_ref.as_deref(),
            )?;
        }
        Command::Unpack { image_ref, dir } => {
            let name = Reference::parse(&image_ref)?;
            let storage = open_storage(g, LockMode::Shared)?;
            let out = lade::export::unpack_to_dir(&storage, &name, &dir)?;
            progress.info(&format!(
                "unpacked {} to {}",
                name.familiar(),
                out.display()
            ));
        }
        Command::List {
            long,
            format,
            tags,
            image_ref,
        } => {
            if tags {
                let r = image_ref.as_deref().unwrap_or_default();
                let r = Reference::parse(r.strip_prefix("docker://").unwrap_or(r))?;
                let opts = registry_options(g, progress);
                for t in lade::transport::registry::list_tags(&r, &opts)? {
                    println!("{t}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            // `docker://REF` asks the registry even about an image that came from elsewhere.
            let (one, ask_remote) = match image_ref.as_deref() {
                Some(r) => match r.strip_prefix("docker://") {
                    Some(rest) => (Some(rest), true),
                    None => (Some(r), false),
                },
                None => (None, false),
            };
            let storage = open_storage(g, LockMode::Shared)?;
            list(&storage, long, format, one)?;
            if let Some(r) = one
                && format == Format::Text
            {
                let name = Reference::parse(r)?;
                let record = storage.images().get(&name)?;
                // A local image the registry has nothing to say about (from oci:, a build, an
                // import, or pulled under another name) is not worth a request, nor a network
                // error when the registry is unreachable.
                let from_elsewhere = record
                    .as_ref()
                    .filter(|rec| rec.source != format!("docker://{name}"));
                match from_elsewhere {
                    Some(rec) if !ask_remote => {
                        println!(
                            "available remotely:  not asked (the image came from {}; \
                             `lade list docker://{r}` asks the registry)",
                            rec.source
                        );
                        println!("host architecture:   {}", lade::platform::host_arch());
                    }
                    _ => list_remote(&name, &registry_options(g, progress)),
                }
            }
        }
        Command::Delete { globs } => {
            let (remote, globs): (Vec<String>, Vec<String>) =
                globs.into_iter().partition(|g| g.starts_with("docker://"));
            let mut failed = None;
            for r in &remote {
                let result = Reference::parse(&r["docker://".len()..]).and_then(|name| {
                    lade::transport::registry::delete_remote(&name, &registry_options(g, progress))
                });
                match result {
                    Ok(done) => println!("{r}: {done}"),
                    Err(e) => {
                        eprintln!("lade: error: {}", one_line(&e));
                        failed = Some(ExitCode::FAILURE);
                    }
                }
            }
            if globs.is_empty() {
                return Ok(failed.unwrap_or(ExitCode::SUCCESS));
            }
            let storage = open_storage(g, LockMode::Exclusive)?;
            for glob in &globs {
                match lade::gc::delete_matching(&storage, glob) {
                    Ok(names) => names.iter().for_each(|n| println!("deleted {n}")),
                    Err(e) => {
                        eprintln!("lade: error: {}", one_line(&e));
                        failed = Some(ExitCode::FAILURE);
                    }
                }
            }
            let report = lade::gc::collect_garbage(&storage)?;
            progress.note(&format!(
                "removed {} unused blobs and {} unused layer trees",
                report.blobs_removed, report.trees_removed
            ));
            if let Some(code) = failed {
                return Ok(code);
            }
        }
        Command::Import { path, image_ref } => {
            let name = Reference::parse(&image_ref)?;
            let storage = open_storage(g, LockMode::Shared)?;
            lade::import::import(&storage, &path, &name, progress)?;
            progress.info(&format!(
                "imported {} as {}",
                path.display(),
                name.familiar()
            ));
        }
        Command::Fsck { repair } => {
            let mode = if repair {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            };
            let storage = open_storage(g, mode)?;
            let report = lade::fsck::fsck(&storage, repair)?;
            for p in &report.problems {
                println!("problem: {p}");
            }
            for r in &report.repaired {
                println!("repaired: {r}");
            }
            println!(
                "checked {} blobs, {} layer trees, {} images: {}",
                report.blobs_checked,
                report.trees_checked,
                report.images_checked,
                if report.is_clean() {
                    "no problems".to_string()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            if !report.is_clean() && !repair {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Reset => {
            let (path, _) = storage::resolve_path(g.storage.as_deref())?;
            storage::reset(&path)?;
            progress.info(&format!("reset {}", path.display()));
        }
        Command::Run(args) => return run_container(g, args),
        Command::Gestalt { selector } => return gestalt(g, selector.as_deref()),
        Command::Build(args) => lade::builder::build(
            &args.options(),
            || open_storage(g, LockMode::Shared),
            lade::pull::with_project_lock(registry_options(g, progress), args.locked)?,
            arch,
            progress,
        )?,
        Command::BuildCache { reset, gc, tree } => {
            let mode = if reset || gc {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            };
            let storage = open_storage(g, mode)?;
            let opts = lade::build::cache::manage::Options { reset, gc, tree };
            print!(
                "{}",
                lade::build::cache::manage::build_cache(&storage, opts)?
            );
        }
        Command::Undelete { image_ref } => {
            let name = Reference::parse(&image_ref)?;
            let storage = open_storage(g, LockMode::Shared)?;
            let restored = lade::undelete::undelete(&storage, &name)?;
            println!("undeleted {restored}");
        }
        Command::BuildRunStep(args) => {
            let storage = open_storage(g, LockMode::Shared)?;
            match lade::builder::run_step(&storage, args.into(), progress)? {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_container(g: &Global, args: RunArgs) -> Result<ExitCode> {
    use lade::run::{self, RunImage, RunOptions, process, rootfs::Upper};
    let looks_like_dir = args.image.starts_with('/') || args.image.starts_with('.');
    let image = if looks_like_dir {
        RunImage::Directory(PathBuf::from(&args.image))
    } else {
        RunImage::Stored(Reference::parse(&args.image)?)
    };
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
    };
    let (path, _) = storage::resolve_path(g.storage.as_deref())?;
    let mode = if g.no_lock {
        LockMode::None
    } else {
        LockMode::Shared
    };
    let storage = Storage::open_without_work_area(&path, mode)?;
    match run::run(&storage, &opts)? {}
}

fn gestalt(g: &Global, selector: Option<&str>) -> Result<ExitCode> {
    let (path, _) = storage::resolve_path(g.storage.as_deref())?;
    let facts = [
        ("storage-path", path.display().to_string()),
        ("storage-version", storage::FORMAT_VERSION.to_string()),
        ("arch", lade::platform::host_arch()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    match selector {
        None => {
            for (k, v) in facts {
                println!("{k:16} {v}");
            }
        }
        Some(sel) => match facts.iter().find(|(k, _)| *k == sel) {
            Some((_, v)) => println!("{v}"),
            None => {
                let known: Vec<&str> = facts.iter().map(|(k, _)| *k).collect();
                return Err(Error::invalid(
                    format!("gestalt selector '{sel}'"),
                    format!("unknown; known selectors: {}", known.join(", ")),
                ));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `lade push`: a stored image (its original blobs, so its digest is kept) or a tree packed
/// deterministically, to a registry; blobs first, the tag last.
fn push(
    g: &Global,
    progress: &Progress,
    arch: ArchChoice,
    image: Option<PathBuf>,
    compression: PushCompression,
    image_ref: &str,
    dest_ref: Option<&str>,
) -> Result<()> {
    use lade::transport::registry::RegistryDestination;
    let name = Reference::parse(image_ref)?;
    let dest = match dest_ref {
        Some(d) => Reference::parse(d.strip_prefix("docker://").unwrap_or(d))?,
        None => name.clone(),
    };
    let storage = open_storage(g, LockMode::Shared)?;
    let opts = registry_options(g, progress);
    let dst = RegistryDestination::open(&dest, &opts, Some(storage.clone()))?;
    let (src, mount_from): (Box<dyn transport::ImageSource>, Vec<String>) = match &image {
        Some(dir) => {
            let compression = match compression {
                PushCompression::Gzip => lade::compression::Compression::Gzip,
                PushCompression::Zstd => lade::compression::Compression::Zstd,
                PushCompression::None => lade::compression::Compression::None,
            };
            progress.info(&format!("packing {}", dir.display()));
            let top = lade::pack::pack_image(&storage, dir, compression, progress)?;
            let what = format!("tree {}", dir.display());
            (
                Box::new(lade::pack::PackedSource {
                    storage: storage.clone(),
                    top,
                    what,
                }),
                Vec::new(),
            )
        }
        None => {
            let record = storage.images().require(&name)?;
            // Where the image was pulled from may save uploads (a mount).
            let from = record
                .source
                .strip_prefix("docker://")
                .and_then(|s| Reference::parse(s).ok())
                .and_then(|s| dst.same_registry_repository(&s));
            (
                Box::new(transport::store::StoreSource::open(storage.clone(), &name)?),
                from.into_iter().collect(),
            )
        }
    };
    let mut dst = dst.with_mount_sources(mount_from);
    progress.info(&format!(
        "pushing {} to {}",
        src.describe(),
        transport::ImageDestination::describe(&dst)
    ));
    let opts = CopyOptions {
        arch,
        ..CopyOptions::default()
    };
    let image = copy_image(&*src, &mut dst, &opts, progress)?;
    progress.info(&format!("pushed docker://{dest} {}", image.top.digest));
    Ok(())
}

fn registry_options(g: &Global, progress: &Progress) -> lade::transport::registry::Options {
    lade::transport::registry::Options {
        tls_no_verify: g.tls_no_verify,
        ca_file: g.tls_ca_file.clone(),
        auth: g.auth,
        password_many: g.password_many,
        progress: progress.clone(),
        ..Default::default()
    }
}

/// The remote half of `lade list REF`, as ch-image shows it: the full remote reference and
/// every architecture the registry offers, with its manifest digest.
fn list_remote(name: &Reference, opts: &lade::transport::registry::Options) {
    let remote = lade::transport::registry::inspect(name, opts);
    match &remote {
        Ok(r) => {
            println!("full remote ref:     {}", r.full_ref);
            println!("available remotely:  yes");
            println!("remote digest:       {}", r.digest);
            println!(
                "remote arch-aware:   {}",
                if r.arch_aware { "yes" } else { "no" }
            );
        }
        // Only a registry that answered "no such image" says no; anything else (no network,
        // refused, unauthorized) leaves it unknown.
        Err(e @ Error::ImageNotFound(_)) => {
            println!("available remotely:  no ({})", one_line(e));
        }
        Err(e) => {
            println!("available remotely:  unknown ({})", one_line(e));
        }
    }
    println!("host architecture:   {}", lade::platform::host_arch());
    if let Ok(r) = &remote {
        if r.arch_aware {
            let width = r
                .archs
                .iter()
                .map(|(a, _)| a.len())
                .max()
                .unwrap_or(0)
                .max(8);
            for (i, (arch, digest)) in r.archs.iter().enumerate() {
                let label = if i == 0 { "archs available:" } else { "" };
                println!("{label:20} {arch:width$}  {digest}");
            }
            if r.archs.is_empty() {
                println!("archs available:     none named");
            }
        } else {
            println!("archs available:     unknown (architecture-unaware image)");
        }
    }
    if let Ok(Some(lock)) = lade::lockfile::TagLock::open_in(std::path::Path::new("."))
        && let Some(d) = lock.get(name)
    {
        println!("pinned in {}: {d}", lock.path().display());
    }
}

fn list(storage: &Storage, long: bool, format: Format, one: Option<&str>) -> Result<()> {
    let images = storage.images();
    if let Some(r) = one {
        let name = Reference::parse(r)?;
        let record = images.get(&name)?;
        if format == Format::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(&record).map_err(|e| Error::json("list", e))?
            );
            return Ok(());
        }
        println!("details of image:    {}", name.familiar());
        println!("full reference:      {name}");
        match record {
            None => println!("in local storage:    no"),
            Some(rec) => {
                println!("in local storage:    yes");
                println!(
                    "platform:            {}",
                    rec.platform.as_deref().unwrap_or("unknown")
                );
                println!("manifest digest:     {}", rec.manifest);
                if let Some(i) = &rec.index {
                    println!("from index:          {i}");
                }
                println!("config digest:       {}", rec.config);
                println!("layers:              {}", rec.layers.len());
                println!("source:              {}", rec.source);
            }
        }
        return Ok(());
    }
    let mut records = Vec::new();
    for r in images.list()? {
        match r {
            Ok(r) => records.push(r),
            Err(e) => eprintln!("lade: warning: {e}"),
        }
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).map_err(|e| Error::json("list", e))?
        );
        return Ok(());
    }
    for rec in records {
        let name = rec
            .reference()
            .map(|r| r.familiar())
            .unwrap_or_else(|_| rec.name.clone());
        let arch = rec
            .platform
            .as_deref()
            .map(|p| p.strip_prefix("linux/").unwrap_or(p).to_string())
            .unwrap_or_else(|| "unknown".into());
        if long {
            println!(
                "{name:40} {arch:10} {} {:>3} layers  {}",
                &rec.manifest.to_string()[..19],
                rec.layers.len(),
                rec.source
            );
        } else {
            println!("{name} ({arch})");
        }
    }
    Ok(())
}
