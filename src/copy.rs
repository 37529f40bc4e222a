//! The one generic image copy: read the top manifest, choose a platform (or take the whole
//! index), copy every blob the destination lacks as a verified stream, write manifests last,
//! then let the destination name the image. `pull`, `copy` and `push` are all this;
//! [`copy_between`] is `lade copy`'s choice of how to open the two ends.

use oci_spec::image::Descriptor;

use crate::digest::Expected;
use crate::error::{Error, Result};
use crate::manifest::{self, Kind, RawManifest};
use crate::platform::{self, ArchChoice};
use crate::progress::Progress;
use crate::transport::docker_archive::DockerArchiveDestination;
use crate::transport::registry::RegistryDestination;
use crate::transport::squashfs::SquashFsDestination;
use crate::transport::store::StoreDestination;
use crate::transport::{self, Context, CopiedImage, ImageDestination, ImageLocation, ImageSource};

#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub arch: ArchChoice,
    /// Copy every platform of an index, not only the chosen one.
    pub all: bool,
    /// Blob streams copied at once: both cores for local copies.
    pub parallel: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            arch: ArchChoice::Host,
            all: false,
            parallel: 2,
        }
    }
}

pub fn copy_image(
    src: &dyn ImageSource,
    dst: &mut dyn ImageDestination,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<CopiedImage> {
    let top = src.top_manifest()?;
    let source = src.describe();
    let image = match top.kind {
        Kind::Image => {
            copy_one(src, &*dst, &top, opts, progress)?;
            CopiedImage {
                top,
                from_index: None,
                platform: None,
                source,
            }
        }
        Kind::Index if opts.all => {
            let index = top.index()?;
            for desc in index.manifests() {
                let child = src.manifest(&manifest::expected(desc)?)?;
                match child.kind {
                    Kind::Image => copy_one(src, &*dst, &child, opts, progress)?,
                    Kind::Index => {
                        return Err(Error::unsupported(&source, "nested indexes with --all"));
                    }
                }
            }
            dst.put_manifest(&top)?;
            CopiedImage {
                top,
                from_index: None,
                platform: None,
                source,
            }
        }
        Kind::Index => {
            let index = top.index()?;
            let desc = platform::select(&index, &opts.arch, &source)?;
            if desc.platform().is_none() {
                progress.warn(&platform::unaware_warning(
                    &source,
                    "the index's only image names no platform",
                ));
            }
            let child = src.manifest(&manifest::expected(desc)?)?;
            if child.kind != Kind::Image {
                return Err(Error::unsupported(&source, "an index nested in an index"));
            }
            copy_one(src, &*dst, &child, opts, progress)?;
            CopiedImage {
                top: child,
                from_index: Some(top.digest.clone()),
                platform: platform::describe(desc),
                source,
            }
        }
    };
    dst.commit(&image)?;
    Ok(image)
}

/// `lade copy`: copies the image at `src` to `dst` and returns how the destination describes
/// itself, with what was copied. The store reports its unpacking; a registry destination may
/// mount blobs from the source's repository when both are on one registry. `ctx` must hold
/// the store if either end needs it (see [`ImageLocation::needs_store`]).
pub fn copy_between(
    src: &ImageLocation,
    dst: &ImageLocation,
    ctx: &Context,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<(String, CopiedImage)> {
    let source = transport::open_source(src, ctx)?;
    let mut destination: Box<dyn ImageDestination> = match (dst, &ctx.storage) {
        (ImageLocation::Store(name), Some(st)) => Box::new(
            StoreDestination::new(st.clone(), name.clone()).with_progress(progress.clone()),
        ),
        (ImageLocation::SquashFs(file), Some(st)) => {
            Box::new(SquashFsDestination::new(st.clone(), file).with_progress(progress.clone()))
        }
        (ImageLocation::Registry(r), _) => {
            let d = RegistryDestination::open(r, &ctx.registry, ctx.storage.clone())?;
            let from = match src {
                ImageLocation::Registry(s) => d.same_registry_repository(s),
                _ => None,
            };
            Box::new(d.with_mount_sources(from.into_iter().collect()))
        }
        // Tagged as the destination says, else with the names the source gives the image,
        // so that `docker load` shows names rather than `<none>`.
        (ImageLocation::DockerArchive { file, name }, _) => {
            let names = match (name, src) {
                (Some(_), _) => Vec::new(),
                (None, ImageLocation::Registry(r) | ImageLocation::Store(r)) => vec![r.clone()],
                (None, _) => source.names(),
            };
            Box::new(
                DockerArchiveDestination::create(file, name.clone())?.with_default_names(names),
            )
        }
        _ => transport::open_destination(dst, ctx)?,
    };
    let image = copy_image(&*source, &mut *destination, opts, progress)?;
    Ok((destination.describe(), image))
}

/// Copies the config and layers of one image manifest, then the manifest itself.
fn copy_one(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    manifest: &RawManifest,
    opts: &CopyOptions,
    progress: &Progress,
) -> Result<()> {
    let parsed = manifest.image()?;
    dst.expect_image(manifest)?;
    // The config first (tiny), then the biggest layers: with layers unpacked as they arrive,
    // starting the longest jobs first keeps both workers busy to the end.
    let mut layers: Vec<&Descriptor> = parsed.layers().iter().collect();
    layers.sort_by_key(|d| std::cmp::Reverse(d.size()));
    let blobs = std::iter::once(parsed.config())
        .chain(layers)
        .map(manifest::expected)
        .collect::<Result<Vec<Expected>>>()?;
    copy_blobs(src, dst, &blobs, opts.parallel, progress)?;
    dst.put_manifest(manifest)
}

/// Copies `blobs`, in this order and `parallel` at once, from `src` to `dst` as verified
/// streams of any size, skipping those the destination has (or can obtain without their
/// bytes); a blob listed twice is copied once. An image's config and layers, and the blobs of
/// what is attached to it (`lade copy --all`), go through here.
pub fn copy_blobs(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    blobs: &[Expected],
    parallel: usize,
    progress: &Progress,
) -> Result<()> {
    let mut todo: Vec<(&Expected, String)> = Vec::with_capacity(blobs.len());
    for expected in blobs {
        if todo.iter().any(|(e, _)| e.digest == expected.digest) {
            continue;
        }
        let what = format!("blob {} of {}", expected.digest, src.describe());
        todo.push((expected, what));
    }
    let outcome = crate::parallel::run_all(&todo, parallel, |(expected, what)| {
        copy_blob(src, dst, expected, what, progress)
    });
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn copy_blob(
    src: &dyn ImageSource,
    dst: &dyn ImageDestination,
    expected: &Expected,
    what: &str,
    progress: &Progress,
) -> Result<()> {
    if dst.has_blob(&expected.digest)? {
        progress.note(&format!("{}: already present", short_what(expected)));
        return Ok(());
    }
    // Before the source is opened: a registry source would otherwise start sending the blob.
    if dst.reuse_blob(expected, what)? {
        progress.note(&format!("{}: reused without copying", short_what(expected)));
        return Ok(());
    }
    let bar = progress.bytes(&short_what(expected), expected.size);
    let bar_ref = &bar;
    let mut opened = 0;
    let mut open = |offset: u64| -> Result<Box<dyn std::io::Read + Send + '_>> {
        opened += 1;
        if opened > 1 && offset == 0 {
            progress.note(&format!(
                "{}: the bytes kept from an earlier pull did not check out; copying it whole",
                short_what(expected)
            ));
        }
        let stream = src.open_blob_at(&expected.digest, offset)?;
        if offset > 0 {
            progress.note(&format!(
                "{}: continuing at byte {offset} (the bytes before were kept from an earlier pull)",
                short_what(expected)
            ));
            bar_ref.inc(offset);
        }
        Ok(Box::new(bar_ref.wrap_read(stream)))
    };
    dst.put_blob_resumable(expected, &mut open, what)?;
    bar.finish("copied");
    Ok(())
}

fn short_what(expected: &Expected) -> String {
    format!("blob {}", expected.digest.short())
}
