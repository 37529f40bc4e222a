//! `lade list`: the store's images and single-file images (SIFs, see `list_sif.rs`), one of
//! them in detail (an image with what its registry offers), or a repository's tags. The
//! printing is the command line's; the facts come from the library.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::list_sif::ShownSif;
use super::{Common, Format, one_line};
use lade::error::{Error, Result};
use lade::reference::Reference;
use lade::storage::{ListedImage, LockMode, Storage};

#[derive(Args)]
pub struct ListArgs {
    /// Long format: platform, digest, layers, source
    #[arg(short, long)]
    long: bool,
    /// Output: text, or JSON records (with docker://REF, what the registry says too)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List the tags of IMAGE_REF's repository in its registry
    #[arg(long, requires = "image_ref")]
    tags: bool,
    /// Image or SIF to show (in the store, or docker://REF in its registry) [default: list the
    /// store]
    image_ref: Option<String>,
}

pub fn run(args: ListArgs, c: &Common) -> Result<ExitCode> {
    if args.tags {
        let r = args.image_ref.as_deref().unwrap_or_default();
        let r = Reference::parse(r.strip_prefix("docker://").unwrap_or(r))?;
        let opts = c.registry();
        let tags = lade::transport::registry::list_tags(&r, &opts)?;
        if args.format == Format::Json {
            super::print_json(&tags)?;
            return Ok(ExitCode::SUCCESS);
        }
        for t in tags {
            println!("{t}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // `docker://REF` asks the registry even about an image that came from elsewhere.
    let (one, ask_remote) = match args.image_ref.as_deref() {
        Some(r) => match r.strip_prefix("docker://") {
            Some(rest) => (Some(rest), true),
            None => (Some(r), false),
        },
        None => (None, false),
    };
    let storage = c.open_storage(LockMode::Shared)?;
    if let (Some(r), true, Format::Json) = (one, ask_remote, args.format) {
        return super::list_remote::print_json(&storage, r, &c.registry());
    }
    let sif = list(&storage, args.long, args.format, one)?;
    if let Some(r) = one
        && args.format == Format::Text
    {
        let name = Reference::parse(r)?;
        let record = storage.images().get(&name)?;
        // A SIF alone was shown in full: it came over `oras://`, and the registry's image of
        // its name is another thing.
        if record.is_none() && sif.is_some() {
            return Ok(ExitCode::SUCCESS);
        }
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
            _ => list_remote(&name, &c.registry()),
        }
        // The image runs by the name; the SIF of the same name after it.
        if let Some(sif) = sif {
            println!();
            sif.print_details();
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// Prints the listing, or the details of `one`: of its image, else of its SIF. Returns the SIF
/// `one` names, if any, for the caller to show after the image's remote facts.
fn list(
    storage: &Storage,
    long: bool,
    format: Format,
    one: Option<&str>,
) -> Result<Option<ShownSif>> {
    let images = storage.images();
    if let Some(r) = one {
        let name = Reference::parse(r)?;
        let sif = super::list_sif::named(storage, &name)?;
        let record = images.get(&name)?;
        if format == Format::Json {
            let json = match (record, &sif) {
                (Some(record), _) => {
                    let listed = ListedImage {
                        record,
                        read_only_store: storage.read_only_holder(&name)?,
                    };
                    let mut v = listed_json(storage, &listed)?;
                    if let (Some(sif), Some(map)) = (&sif, v.as_object_mut()) {
                        map.insert("same_name_sif".into(), sif.json(storage)?);
                    }
                    v
                }
                (None, Some(sif)) => sif.json(storage)?,
                // A missing image is an error, not `null`: scripts read the exit status.
                (None, None) => {
                    images.require(&name)?;
                    return Ok(None);
                }
            };
            super::print_json(&json)?;
            return Ok(None);
        }
        if record.is_none() && sif.is_some() {
            sif.iter().for_each(ShownSif::print_details);
            return Ok(sif);
        }
        println!("details of image:    {}", name.familiar());
        println!("full reference:      {name}");
        match record {
            None => println!("in local storage:    no"),
            Some(rec) => {
                match storage.read_only_holder(&name)? {
                    Some(dir) => {
                        println!(
                            "in local storage:    yes, read-only store {}",
                            dir.display()
                        )
                    }
                    None => println!("in local storage:    yes"),
                }
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
        return Ok(sif);
    }
    let mut listed = Vec::new();
    for r in storage.list_all_images()? {
        match r {
            Ok(r) => listed.push(r),
            Err(e) => eprintln!("lade: warning: {e}"),
        }
    }
    let sifs = super::list_sif::all(storage)?;
    if format == Format::Json {
        let mut records: Vec<serde_json::Value> = listed
            .iter()
            .map(|l| listed_json(storage, l))
            .collect::<Result<_>>()?;
        for sif in &sifs {
            records.push(sif.json(storage)?);
        }
        super::print_json(&records)?;
        return Ok(None);
    }
    for l in listed {
        let rec = &l.record;
        let name = rec
            .reference()
            .map(|r| r.familiar())
            .unwrap_or_else(|_| rec.name.clone());
        let arch = rec
            .platform
            .as_deref()
            .map(|p| p.strip_prefix("linux/").unwrap_or(p).to_string())
            .unwrap_or_else(|| "unknown".into());
        let store = store_note(l.read_only_store.as_deref());
        if long {
            println!(
                "{name:40} {arch:10} {} {:>3} layers  {}{store}",
                &rec.manifest.to_string()[..19],
                rec.layers.len(),
                rec.source
            );
        } else {
            println!("{name} ({arch}){store}");
        }
    }
    for sif in sifs {
        if long {
            println!("{}", sif.long_line());
        } else {
            println!("{}", sif.line());
        }
    }
    Ok(None)
}

/// `  [read-only: DIR]` for what a read-only store holds; nothing for the user's own.
pub(super) fn store_note(read_only_store: Option<&Path>) -> String {
    match read_only_store {
        Some(dir) => format!("  [read-only: {}]", dir.display()),
        None => String::new(),
    }
}

/// `store` in `list --format json`: the storage directory an entry is in, and whether that is
/// a read-only one.
pub(super) fn store_json(storage: &Storage, read_only_store: Option<&Path>) -> serde_json::Value {
    match read_only_store {
        Some(dir) => serde_json::json!({"path": dir, "read_only": true}),
        None => serde_json::json!({
            "path": Path::new(storage.location_arg()),
            "read_only": false,
        }),
    }
}

/// An image as `list --format json` shows it: its record as stored, `kind: "image"` (beside
/// SIFs' `"sif"`), and `store` ([`store_json`]).
fn listed_json(storage: &Storage, listed: &ListedImage) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(&listed.record).map_err(|e| Error::json("list", e))?;
    if let Some(map) = v.as_object_mut() {
        map.insert("kind".into(), "image".into());
        map.insert(
            "store".into(),
            store_json(storage, listed.read_only_store.as_deref()),
        );
    }
    Ok(v)
}
