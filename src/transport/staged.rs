//! Destinations that write through another one and differ only in their last step:
//! `oci-archive:` and `docker-archive:` stage an OCI layout beside their file and write the tar,
//! `squashfs:` writes into the store and makes its file from the layer trees. [`Staged`] hands
//! each blob stream straight to the inner destination; [`StagingDir`] is the archives' work area.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{CopiedImage, ImageDestination};
use crate::digest::{Digest, Expected};
use crate::error::{Error, IoContext, Result};
use crate::manifest::RawManifest;
use crate::storage::OpenAt;

/// What a staged destination says itself; the impl below makes it an [`ImageDestination`].
pub trait Staged: Send + Sync {
    /// Where blobs and manifests go until the end.
    fn inner(&self) -> &dyn ImageDestination;
    /// How the destination names itself (the result, not the work area).
    fn describe(&self) -> String;
    /// Whether the result has the blob without staging it (an archive added to). No by default.
    fn has_blob_already(&self, _digest: &Digest) -> bool {
        false
    }
    /// `commit`: makes the result from what was staged; nothing is visible before it succeeds.
    fn finish(&mut self, image: &CopiedImage) -> Result<()>;
}

/// Every method but `describe` and `commit` is the inner destination's, the optional ones too:
/// a staged destination takes blobs as its inner one does (the store's resumed downloads and
/// unpacking on arrival, a layout's streamed writes), with no method forgotten.
impl<T: Staged> ImageDestination for T {
    fn describe(&self) -> String {
        Staged::describe(self)
    }
    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.has_blob_already(digest) || self.inner().has_blob(digest)?)
    }
    fn expect_image(&self, manifest: &RawManifest) -> Result<()> {
        self.inner().expect_image(manifest)
    }
    fn reuse_blob(&self, expected: &Expected, what: &str) -> Result<bool> {
        self.inner().reuse_blob(expected, what)
    }
    fn put_blob(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<()> {
        self.inner().put_blob(expected, data, what)
    }
    fn put_blob_resumable(
        &self,
        expected: &Expected,
        open: &mut OpenAt<'_>,
        what: &str,
    ) -> Result<()> {
        self.inner().put_blob_resumable(expected, open, what)
    }
    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        self.inner().put_manifest(manifest)
    }
    fn commit(&mut self, image: &CopiedImage) -> Result<()> {
        self.finish(image)
    }
}

/// The directory `file` is in (`.` for a bare name).
pub fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The work area of a destination that writes one file: a hidden directory beside it (on its
/// filesystem, so the finished file is a rename away), removed with all in it when dropped.
pub struct StagingDir(PathBuf);

impl StagingDir {
    /// A work area in `dir` (which must exist; else the error names `what`) for `file`, not
    /// yet made: what stages into it makes it.
    pub fn new(dir: &Path, file: &Path, what: &str) -> Result<StagingDir> {
        if !dir.is_dir() {
            return Err(Error::invalid(
                what,
                format!("directory {} does not exist", dir.display()),
            ));
        }
        Ok(StagingDir(crate::fsutil::hidden_sibling(
            dir,
            file,
            "lade-staging",
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The blobs staged in the layout here, as sorted paths in it (`blobs/sha256/HEX`), without
    /// the temporary files (`.tmp-…`) of unfinished writes.
    pub fn blobs(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let blobs = self.0.join("blobs");
        let Some(algs) = crate::fsutil::read_dir_if_exists(&blobs)? else {
            return Ok(out);
        };
        for alg in algs.flatten() {
            let dir = alg.path();
            for f in fs::read_dir(&dir).at(&dir)?.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    out.push(format!(
                        "blobs/{}/{name}",
                        alg.file_name().to_string_lossy()
                    ));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Replaces `file` whole or not at all: `write` fills a temporary file (it is told its path,
    /// for errors), renamed over `file` once `write` succeeds and its data is on disk (else a
    /// crash soon after the rename could leave an empty file where the old archive was), and
    /// else removed.
    pub fn replace(
        &self,
        file: &Path,
        write: impl FnOnce(&mut File, &Path) -> Result<()>,
    ) -> Result<()> {
        let tmp = self.0.with_extension("tar");
        let result = (|| {
            let mut out = File::create(&tmp).at(&tmp)?;
            write(&mut out, &tmp)?;
            out.sync_data().at(&tmp)?;
            fs::rename(&tmp, file).at(file)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = crate::fsutil::remove_all(&self.0);
    }
}
