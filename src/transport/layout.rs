//! What `oci:` and `oci-archive:` share: reading `index.json` and choosing the image in it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, OCI_LAYOUT_REF_NAME, RawManifest};

/// The blob path inside a layout for a digest.
pub(super) fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// Opens a file of a layout directory for reading, if it is a regular file: a FIFO in place of
/// a blob would block forever and a link to `/dev/zero` never end. The open itself does not
/// block (`O_NONBLOCK`, which a regular file ignores) so that a FIFO is refused, not waited on.
pub(super) fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .at(path)?;
    let ft = file.metadata().at(path)?.file_type();
    if ft.is_file() {
        return Ok(file);
    }
    let kind = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    Err(Error::io_path(
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{kind}, where a regular file must be"),
        ),
    ))
}

/// A small file of a layout (`index.json`, `oci-layout`, a manifest), at most `max` bytes.
pub(super) fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .at(path)?;
    if bytes.len() as u64 > max {
        return Err(Error::invalid(
            path.display().to_string(),
            format!(
                "larger than {} MiB, too large for what it should be",
                max >> 20
            ),
        ));
    }
    Ok(bytes)
}

pub(super) fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    manifest::parse_json(bytes).map_err(|why| Error::invalid(format!("{what}/index.json"), why))
}

pub(super) fn check_layout_file(bytes: Option<&[u8]>, what: &str) -> Result<()> {
    let Some(bytes) = bytes else {
        return Err(Error::invalid(
            what,
            "not an OCI image layout (no oci-layout file)",
        ));
    };
    #[derive(serde::Deserialize)]
    struct LayoutFile {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let f: LayoutFile =
        serde_json::from_slice(bytes).map_err(|e| Error::json(format!("{what}/oci-layout"), e))?;
    if !f.version.starts_with("1.") {
        return Err(Error::unsupported(
            what,
            format!("image layout version {} (1.x is supported)", f.version),
        ));
    }
    Ok(())
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(OCI_LAYOUT_REF_NAME))
        .map(String::as_str)
}

/// Describes what a layout holds, for errors: "latest (sha256:1234…), <unnamed> (…)".
fn holdings(index: &ImageIndex) -> String {
    let items: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| {
            let name = ref_name(d).unwrap_or("<unnamed>");
            let digest = d.digest().to_string();
            let short: String = digest.chars().take(19).collect();
            format!("{name} ({short})")
        })
        .collect();
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// Chooses the descriptor named `name`, or the only one when no name is given.
pub(super) fn select<'a>(
    index: &'a ImageIndex,
    name: Option<&str>,
    what: &str,
) -> Result<&'a Descriptor> {
    match name {
        Some(name) => {
            let found: Vec<&Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| ref_name(d) == Some(name))
                .collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(Error::ImageNotFound(format!(
                    "'{name}' in {what}; it holds: {}",
                    holdings(index)
                ))),
                _ => Err(Error::invalid(
                    what,
                    format!("{} images are named '{name}'", found.len()),
                )),
            }
        }
        None => match index.manifests().as_slice() {
            [one] => Ok(one),
            [] => Err(Error::ImageNotFound(format!("{what} holds no image"))),
            _ => Err(Error::invalid(
                what,
                format!(
                    "holds {} images, so name one as {what}:REF; it holds: {}",
                    index.manifests().len(),
                    holdings(index)
                ),
            )),
        },
    }
}

/// Reads and verifies the manifest a descriptor points at, given a way to read layout blobs.
pub(super) fn read_manifest(
    desc: &Descriptor,
    what: &str,
    read: impl FnOnce(&Digest, u64) -> Result<Vec<u8>>,
) -> Result<RawManifest> {
    let expected = manifest::expected(desc)?;
    if desc.size() > crate::transport::MAX_MANIFEST_BYTES {
        return Err(Error::invalid(
            what,
            format!("manifest of {} bytes is too large", desc.size()),
        ));
    }
    let bytes = read(&expected.digest, desc.size())?;
    let media_type = desc.media_type().to_string();
    RawManifest::new(
        bytes,
        Some(&media_type),
        Some(&expected),
        &format!("manifest {} of {what}", expected.digest),
    )
}
