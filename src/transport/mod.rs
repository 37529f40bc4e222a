//! Where images live, behind one interface: an [`ImageSource`] gives manifests and blob
//! streams, an [`ImageDestination`] takes blobs and manifests and finally names the image.
//! `pull`, `copy` and `push` are all [`crate::copy::copy_image`] between two of them; which
//! two, and with what policy (tag pins, mount sources), is decided by [`crate::pull`],
//! [`crate::copy::copy_between`] and [`crate::push`], not here.

pub mod docker_archive;
mod layout;
pub mod oci_archive;
pub mod oci_layout;
pub mod registry;
pub mod squashfs;
mod staged;
pub mod store;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::RawManifest;
use crate::reference::Reference;
use crate::storage::{OpenAt, Storage};

/// A parsed transport specification such as `oci:/tmp/img:latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLocation {
    /// `docker://REF`: a registry.
    Registry(Reference),
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    OciLayout { dir: PathBuf, name: Option<String> },
    /// `oci-archive:FILE[:REF]`: a tar archive of an OCI image layout.
    OciArchive { file: PathBuf, name: Option<String> },
    /// `docker-archive:FILE[:NAME:TAG|:@N]`: a `docker save` tar (`-`: standard input or
    /// output).
    DockerArchive {
        file: PathBuf,
        name: Option<docker_archive::ArchiveRef>,
    },
    /// `lade:NAME`: lade's own storage directory.
    Store(Reference),
    /// `squashfs:FILE`: the image flattened into one SquashFS file (a destination only).
    SquashFs(PathBuf),
}

pub const TRANSPORTS: &str = "docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF], \
                              docker-archive:FILE[:NAME:TAG|:@N], lade:NAME, squashfs:FILE";

impl ImageLocation {
    /// Parses a transport-qualified location. A bare name is refused, because it would be
    /// ambiguous between the store and a registry.
    pub fn parse(spec: &str) -> Result<ImageLocation> {
        let bad = |why: String| Error::BadTransport {
            spec: spec.to_string(),
            why,
        };
        if let Some(rest) = spec.strip_prefix("docker://") {
            return Ok(ImageLocation::Registry(Reference::parse(rest)?));
        }
        let Some((transport, rest)) = spec.split_once(':') else {
            return Err(bad(format!("no transport; use one of {TRANSPORTS}")));
        };
        match transport {
            "oci" | "oci-archive" => {
                // As containers-transports(5): everything after the path's first ':' is the
                // reference, so paths with ':' cannot be named (as in skopeo).
                let (path, name) = match rest.split_once(':') {
                    Some((p, n)) => (p, Some(n)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("empty path".into()));
                }
                if let Some(n) = name {
                    validate_layout_ref(n).map_err(bad)?;
                }
                let name = name.map(str::to_string);
                Ok(if transport == "oci" {
                    ImageLocation::OciLayout {
                        dir: PathBuf::from(path),
                        name,
                    }
                } else {
                    ImageLocation::OciArchive {
                        file: PathBuf::from(path),
                        name,
                    }
                })
            }
            "docker-archive" => {
                // As containers-transports(5): the path ends at its first ':', and the rest
                // is a reference (which may itself hold ':') or @N.
                let (path, name) = match rest.split_once(':') {
                    Some((p, n)) => (p, Some(n)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("empty path".into()));
                }
                let name = name
                    .map(docker_archive::ArchiveRef::parse)
                    .transpose()
                    .map_err(bad)?;
                Ok(ImageLocation::DockerArchive {
                    file: PathBuf::from(path),
                    name,
                })
            }
            "lade" => Ok(ImageLocation::Store(Reference::parse(rest)?)),
            "squashfs" if rest.is_empty() => Err(bad("empty path".into())),
            "squashfs" => Ok(ImageLocation::SquashFs(PathBuf::from(rest))),
            "docker" => Err(bad("registry references are written docker://REF".into())),
            other => Err(bad(format!(
                "unknown transport '{other}'; use one of {TRANSPORTS}"
            ))),
        }
    }

    /// Parses the source of `lade pull`: like [`parse`](Self::parse), except that a plain
    /// image reference means a registry, as with `docker pull` and `ch-image pull`.
    pub fn parse_pull_source(spec: &str) -> Result<ImageLocation> {
        if ImageLocation::names_transport(spec) {
            ImageLocation::parse(spec)
        } else {
            Ok(ImageLocation::Registry(Reference::parse(spec)?))
        }
    }

    /// Whether `spec` starts with a transport's prefix (else it is a plain image reference).
    pub fn names_transport(spec: &str) -> bool {
        [
            "docker://",
            "oci:",
            "oci-archive:",
            "docker-archive:",
            "lade:",
            "squashfs:",
        ]
        .iter()
        .any(|p| spec.starts_with(p))
    }

    /// Whether this is `lade:NAME`, an image in the store (which must then be open).
    pub fn is_store(&self) -> bool {
        matches!(self, ImageLocation::Store(_))
    }

    /// Whether reading or writing this location needs the store open: `lade:NAME`, and
    /// `squashfs:FILE`, which is written from the store's layer trees.
    pub fn needs_store(&self) -> bool {
        matches!(self, ImageLocation::Store(_) | ImageLocation::SquashFs(_))
    }

    /// The image reference this location implies for naming it in the store, if any.
    pub fn implied_name(&self) -> Option<Result<Reference>> {
        match self {
            ImageLocation::Registry(r) | ImageLocation::Store(r) => Some(Ok(r.clone())),
            ImageLocation::OciLayout { name, .. } | ImageLocation::OciArchive { name, .. } => {
                name.as_deref().map(Reference::parse)
            }
            ImageLocation::SquashFs(_) => None,
            ImageLocation::DockerArchive { name, .. } => match name {
                Some(docker_archive::ArchiveRef::Tag(r)) => Some(Ok(r.clone())),
                _ => None,
            },
        }
    }
}

/// Layout reference names per the image-layout spec's `org.opencontainers.image.ref.name`
/// grammar (alphanumerics and `-._:@/+` separators); we refuse only what could not be one.
fn validate_layout_ref(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty reference after ':'".into());
    }
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "-._:@/+=".contains(c)))
    {
        return Err(format!(
            "reference '{name}' has characters not allowed in a layout ref.name"
        ));
    }
    Ok(())
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |n: &Option<String>| n.as_ref().map(|n| format!(":{n}")).unwrap_or_default();
        match self {
            ImageLocation::Registry(r) => write!(f, "docker://{r}"),
            ImageLocation::OciLayout { dir, name } => {
                write!(f, "oci:{}{}", dir.display(), opt(name))
            }
            ImageLocation::OciArchive { file, name } => {
                write!(f, "oci-archive:{}{}", file.display(), opt(name))
            }
            ImageLocation::DockerArchive { file, name } => {
                write!(f, "docker-archive:{}", file.display())?;
                match name {
                    Some(n) => write!(f, ":{n}"),
                    None => Ok(()),
                }
            }
            ImageLocation::Store(r) => write!(f, "lade:{}", r.familiar()),
            ImageLocation::SquashFs(file) => write!(f, "squashfs:{}", file.display()),
        }
    }
}

/// Reads an image: its top manifest (an image manifest or an index), the manifests an index
/// lists, and blobs as streams. Implementations need not verify blob streams; the copier wraps
/// them in a verifying reader. Manifests are returned verified.
pub trait ImageSource: Send + Sync {
    fn describe(&self) -> String;
    fn top_manifest(&self) -> Result<RawManifest>;
    fn manifest(&self, expected: &Expected) -> Result<RawManifest> {
        let mut bytes = Vec::new();
        let what = format!("manifest {} of {}", expected.digest, self.describe());
        let limit = expected
            .size
            .unwrap_or(MAX_MANIFEST_BYTES)
            .min(MAX_MANIFEST_BYTES);
        self.open_blob(&expected.digest)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&what, e))?;
        RawManifest::new(bytes, None, Some(expected), &what)
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>>;
    /// Names the source itself gives the image (a docker archive's tags), for a destination
    /// told none. None by default.
    fn names(&self) -> Vec<Reference> {
        Vec::new()
    }

    /// The blob's bytes from byte `offset` on, for a destination that kept the start from an
    /// earlier download. By default the whole stream with the first `offset` bytes skipped;
    /// a registry asks for the rest only.
    fn open_blob_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        let mut stream = self.open_blob(digest)?;
        if offset > 0 {
            let what = || format!("blob {digest} of {}", self.describe());
            let skipped = std::io::copy(&mut (&mut stream).take(offset), &mut std::io::sink())
                .map_err(|e| Error::io(what(), e))?;
            if skipped != offset {
                return Err(Error::invalid(
                    what(),
                    format!("shorter than the {offset} bytes stored of it before"),
                ));
            }
        }
        Ok(stream)
    }
}

/// Manifests are small; a bigger one is an attack or an accident, not an image.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// What a copy produced, for the destination to record.
#[derive(Debug, Clone)]
pub struct CopiedImage {
    /// The document the destination names: the index when copying all platforms, else the
    /// (possibly chosen) image manifest.
    pub top: RawManifest,
    /// The index the manifest was chosen from, when one platform was taken out of an index.
    pub from_index: Option<Digest>,
    /// `os/arch[/variant]` of the image manifest, when known.
    pub platform: Option<String>,
    pub source: String,
}

/// Writes an image: blobs first, then manifests, then [`commit`](Self::commit) names it.
/// Nothing is visible under the image's name until commit succeeds.
pub trait ImageDestination: Send + Sync {
    fn describe(&self) -> String;
    fn has_blob(&self, digest: &Digest) -> Result<bool>;
    /// Told, before its blobs come, the image manifest they belong to, so that layers can be
    /// treated as layers (the store unpacks them as they arrive). Nothing by default.
    fn expect_image(&self, _manifest: &RawManifest) -> Result<()> {
        Ok(())
    }
    /// Obtains a blob without its bytes if the destination can (a registry mounts it from
    /// another repository of its own); true when it now has it. Asked before the source is
    /// opened, so a blob obtained this way is never read. Nothing by default.
    fn reuse_blob(&self, _expected: &Expected, _what: &str) -> Result<bool> {
        Ok(false)
    }
    /// Stores a blob, verifying it against `expected`; `what` names it for errors. The stream
    /// is `Send` so that it can be consumed on another thread (decompression).
    fn put_blob(&self, expected: &Expected, data: &mut (dyn Read + Send), what: &str)
    -> Result<()>;
    /// Like [`put_blob`](Self::put_blob), with the stream opened by `open` at the byte the
    /// destination asks for: the store continues a download an earlier process began. By
    /// default the whole stream.
    fn put_blob_resumable(
        &self,
        expected: &Expected,
        open: &mut OpenAt<'_>,
        what: &str,
    ) -> Result<()> {
        let mut data = open(0)?;
        self.put_blob(expected, &mut data, what)
    }
    fn put_manifest(&self, manifest: &RawManifest) -> Result<()>;
    fn commit(&mut self, image: &CopiedImage) -> Result<()>;
}

/// Everything a transport may need to open.
pub struct Context {
    pub storage: Option<Arc<Storage>>,
    /// How to reach registries (TLS, authentication).
    pub registry: registry::Options,
}

fn need_storage(ctx: &Context) -> Result<Arc<Storage>> {
    ctx.storage
        .clone()
        .ok_or_else(|| Error::invalid("lade:", "storage directory not open"))
}

pub fn open_source(loc: &ImageLocation, ctx: &Context) -> Result<Box<dyn ImageSource>> {
    Ok(match loc {
        ImageLocation::Registry(r) => Box::new(registry::RegistrySource::open(
            r,
            &ctx.registry,
            ctx.storage.clone(),
        )?),
        ImageLocation::OciLayout { dir, name } => {
            Box::new(oci_layout::OciLayoutSource::open(dir, name.as_deref())?)
        }
        ImageLocation::OciArchive { file, name } => {
            Box::new(oci_archive::OciArchiveSource::open(file, name.as_deref())?)
        }
        ImageLocation::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveSource::open(file, name.as_ref())?,
        ),
        ImageLocation::Store(r) => Box::new(store::StoreSource::open(need_storage(ctx)?, r)?),
        ImageLocation::SquashFs(file) => {
            return Err(Error::unsupported(
                format!("squashfs:{}", file.display()),
                "a SquashFS file is a destination only (it keeps no layers); run it with \
                 'lade run FILE'",
            ));
        }
    })
}

/// Opens `loc` to write an image to, plainly: a store destination that reports nothing, a
/// registry destination that mounts nothing (`lade copy` chooses otherwise, see
/// [`crate::copy::copy_between`]).
pub fn open_destination(loc: &ImageLocation, ctx: &Context) -> Result<Box<dyn ImageDestination>> {
    Ok(match loc {
        ImageLocation::Registry(r) => Box::new(registry::RegistryDestination::open(
            r,
            &ctx.registry,
            ctx.storage.clone(),
        )?),
        ImageLocation::OciLayout { dir, name } => {
            Box::new(oci_layout::OciLayoutDestination::create(dir, name.clone())?)
        }
        ImageLocation::OciArchive { file, name } => Box::new(
            oci_archive::OciArchiveDestination::create(file, name.clone())?,
        ),
        ImageLocation::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveDestination::create(file, name.clone())?,
        ),
        ImageLocation::Store(r) => {
            Box::new(store::StoreDestination::new(need_storage(ctx)?, r.clone()))
        }
        ImageLocation::SquashFs(file) => {
            Box::new(squashfs::SquashFsDestination::new(need_storage(ctx)?, file))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(
            ImageLocation::parse("oci:/tmp/x:latest").unwrap(),
            ImageLocation::OciLayout {
                dir: "/tmp/x".into(),
                name: Some("latest".into())
            }
        );
        assert_eq!(
            ImageLocation::parse("oci-archive:a.tar").unwrap(),
            ImageLocation::OciArchive {
                file: "a.tar".into(),
                name: None
            }
        );
        assert_eq!(
            ImageLocation::parse("squashfs:/tmp/x.sqfs").unwrap(),
            ImageLocation::SquashFs("/tmp/x.sqfs".into())
        );
        for bad in [
            "alpine",
            "squashfs:",
            "oci:",
            "oci:/x:",
            "foo:bar",
            "docker:alpine",
            "oci:/x:a b",
        ] {
            assert!(ImageLocation::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
