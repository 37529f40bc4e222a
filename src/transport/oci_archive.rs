//! `oci-archive:FILE[:REF]`: an OCI image layout in a (plain) tar file.
//!
//! Reading does not extract: one pass over the tar headers (seeking past contents) maps each
//! member to its offset, and blobs are then read in place.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::oci_layout::OciLayoutDestination;
use super::staged::{Staged, StagingDir, parent_dir};
use super::{CopiedImage, ImageDestination, ImageSource, layout};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::RawManifest;

pub struct OciArchiveSource {
    file: PathBuf,
    what: String,
    members: HashMap<String, (u64, u64)>,
    top: RawManifest,
}

impl OciArchiveSource {
    pub fn open(file: &Path, name: Option<&str>) -> Result<OciArchiveSource> {
        let what = format!("oci-archive:{}", file.display());
        let handle = File::open(file).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::ImageNotFound(format!("{what}: no such file"))
            } else {
                Error::io_path(file, e)
            }
        })?;
        let members = index_members(handle, &what)?;
        let read_member = |path: &str, limit: u64| -> Result<Vec<u8>> {
            let Some(&(offset, size)) = members.get(path) else {
                return Err(Error::invalid(&what, format!("{path} is missing")));
            };
            if size > limit {
                return Err(Error::invalid(
                    &what,
                    format!("{path} is too large ({size} bytes)"),
                ));
            }
            let mut f = File::open(file).at(file)?;
            f.seek(SeekFrom::Start(offset)).at(file)?;
            let mut bytes = Vec::with_capacity(size as usize);
            f.take(size).read_to_end(&mut bytes).at(file)?;
            Ok(bytes)
        };
        let layout_file = read_member("oci-layout", 4096).ok();
        layout::check_layout_file(layout_file.as_deref(), &what)?;
        let index_bytes = read_member("index.json", super::MAX_MANIFEST_BYTES)?;
        let index = layout::parse_index(&index_bytes, &what)?;
        let desc = layout::select(&index, name, &what)?;
        let top = layout::read_manifest(desc, &what, |d, size| {
            read_member(&layout::blob_path(d), size)
        })?;
        let what = match name {
            Some(n) => format!("{what}:{n}"),
            None => what,
        };
        Ok(OciArchiveSource {
            file: file.to_path_buf(),
            what,
            members,
            top,
        })
    }
}

/// Maps normalised member paths to (data offset, size) for regular files.
fn index_members(handle: File, what: &str) -> Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(handle);
    let mut members = HashMap::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| Error::invalid(what, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::invalid(what, format!("bad tar member: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| Error::invalid(what, format!("bad member name: {e}")))?;
        let path = path.to_string_lossy();
        let path = path.trim_start_matches("./").to_string();
        members.insert(path, (entry.raw_file_position(), entry.size()));
    }
    Ok(members)
}

impl ImageSource for OciArchiveSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let path = layout::blob_path(digest);
        let Some(&(offset, size)) = self.members.get(&path) else {
            return Err(Error::invalid(
                &self.what,
                format!("blob {digest} is missing"),
            ));
        };
        let mut f = File::open(&self.file).at(&self.file)?;
        f.seek(SeekFrom::Start(offset)).at(&self.file)?;
        Ok(Box::new(f.take(size)))
    }
}

/// Builds the layout in a staging directory beside the archive, and on commit writes the tar
/// to a temporary file renamed over FILE: the archive is replaced whole or not at all. Like
/// skopeo, the new archive holds just this image.
pub struct OciArchiveDestination {
    file: PathBuf,
    name: Option<String>,
    staging: StagingDir,
    layout: OciLayoutDestination,
}

impl OciArchiveDestination {
    pub fn create(file: &Path, name: Option<String>) -> Result<Self> {
        let what = format!("oci-archive:{}", file.display());
        let staging = StagingDir::new(&parent_dir(file), file, &what)?;
        let layout = OciLayoutDestination::create(staging.path(), name.clone())?;
        Ok(OciArchiveDestination {
            file: file.to_path_buf(),
            name,
            staging,
            layout,
        })
    }

    /// Writes the layout as a tar, each directory before what it holds, in a fixed order so
    /// that the same image makes the same tar.
    fn write_archive(&self, out: &mut File, tmp: &Path) -> Result<()> {
        let mut builder = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
        let uid = u64::from(rustix::process::getuid().as_raw());
        let gid = u64::from(rustix::process::getgid().as_raw());
        let mut append = |rel: &str, is_dir: bool| -> Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            // The writer's own IDs: extractors chown to them, which an unprivileged
            // reader can do only for its own IDs.
            header.set_uid(uid);
            header.set_gid(gid);
            if is_dir {
                header.set_size(0);
                header.set_mode(0o755);
                header.set_entry_type(tar::EntryType::Directory);
                return builder.append_data(&mut header, rel, io::empty()).at(tmp);
            }
            let full = self.staging.path().join(rel);
            let mut src = File::open(&full).at(&full)?;
            header.set_size(src.metadata().at(&full)?.len());
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, rel, &mut src).at(tmp)
        };
        append("oci-layout", false)?;
        append("index.json", false)?;
        // Directory entries too: extractors (skopeo's among them) otherwise create the
        // directories themselves and then fail to chown them when unprivileged.
        append("blobs", true)?;
        let mut last_dir = "";
        let blobs = self.staging.blobs()?;
        for blob in &blobs {
            let dir = blob.rsplit_once('/').map_or("", |(dir, _)| dir);
            if dir != last_dir {
                append(dir, true)?;
                last_dir = dir;
            }
            append(blob, false)?;
        }
        builder.into_inner().at(tmp)?.flush().at(tmp)
    }
}

impl Staged for OciArchiveDestination {
    fn inner(&self) -> &dyn ImageDestination {
        &self.layout
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("oci-archive:{}:{n}", self.file.display()),
            None => format!("oci-archive:{}", self.file.display()),
        }
    }

    fn finish(&mut self, image: &CopiedImage) -> Result<()> {
        self.layout.commit(image)?;
        self.staging
            .replace(&self.file, |out, tmp| self.write_archive(out, tmp))
    }
}
