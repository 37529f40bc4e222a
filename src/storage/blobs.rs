//! The content-addressed blob store: each blob stored once, by digest, immutable.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::partial::Partials;
use crate::digest::{Algorithm, Digest, Expected, VerifyingReader};
use crate::error::{Error, IoContext, Result};

/// Copy buffer: large enough that per-read overhead vanishes next to hashing and inflating.
const BUF_SIZE: usize = 1 << 20;

#[derive(Clone)]
pub struct BlobStore {
    /// The user's `blobs/`, then the read-only stores' (see `read_only.rs`).
    dirs: super::Dirs,
    work: PathBuf,
    partials: Partials,
}

/// Opens a blob's stream at a byte offset (0: the whole blob), for
/// [`BlobStore::put_resumable`].
pub type OpenAt<'s> = dyn FnMut(u64) -> Result<Box<dyn Read + Send + 's>> + 's;

impl BlobStore {
    pub(super) fn new(dirs: super::Dirs, work: PathBuf, partials: Partials) -> BlobStore {
        BlobStore {
            dirs,
            work,
            partials,
        }
    }

    fn relative(digest: &Digest) -> PathBuf {
        Path::new(digest.algorithm().name()).join(digest.hex())
    }

    /// Where blob `digest` is read from: the user's store, else the first read-only store
    /// that has it, else (absent) where the user's store would keep it.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.find(digest).unwrap_or_else(|| self.own_path(digest))
    }

    /// Where the user's store keeps blob `digest`: the only place blobs are written.
    fn own_path(&self, digest: &Digest) -> PathBuf {
        self.dirs.own().join(Self::relative(digest))
    }

    fn find(&self, digest: &Digest) -> Option<PathBuf> {
        self.dirs.find(Self::relative(digest), Path::is_file)
    }

    /// Whether any store (the user's or a read-only one) has blob `digest`.
    pub fn has(&self, digest: &Digest) -> bool {
        self.find(digest).is_some()
    }

    pub fn open(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid(
                    format!("blob {digest}"),
                    "missing from the store (run `lade fsck`)",
                )
            } else {
                Error::io_path(&path, e)
            }
        })
    }

    /// The bytes of a small stored blob *without* hashing them again: for `lade run`, whose
    /// whole start is a few milliseconds and where even initialising the SHA-256 code (CPU
    /// feature detection, which traps to the hypervisor in a VM) showed in profiles. Blobs were
    /// verified when stored, `lade fsck` verifies them again, and `run` trusts the layer trees
    /// it mounts in the same way. Everything else reads with [`Self::read_to_vec`].
    pub fn read_to_vec_trusted(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid(format!("blob {digest}"), "missing from the store")
            } else {
                Error::io_path(&path, e)
            }
        })
    }

    pub fn read_to_vec(&self, digest: &Digest) -> Result<Vec<u8>> {
        let bytes = self.read_to_vec_trusted(digest)?;
        let actual = Digest::of_bytes(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::invalid(
                format!("blob {digest} in the store"),
                format!("corrupt (content hashes to {actual}); run `lade fsck --repair`"),
            ));
        }
        Ok(bytes)
    }

    /// Streams `data` into the store, verifying it against `expected` before it becomes
    /// visible. `what` names the blob and its source for error messages.
    pub fn put(&self, expected: &Expected, data: &mut dyn Read, what: &str) -> Result<PathBuf> {
        // No early return when the blob exists: callers ask `has` first, and `--always-download`
        // deliberately replaces a stored blob with a freshly verified copy.
        let final_path = self.own_path(&expected.digest);
        let tmp = self.temp_path(expected);
        let result = (|| {
            let mut out = File::create(&tmp).at(&tmp)?;
            let mut verifier = VerifyingReader::new(data, expected.clone(), what);
            copy_stream(&mut verifier, &mut out, what, &tmp)?;
            out.set_permissions(fs::Permissions::from_mode(0o444))
                .at(&tmp)?;
            drop(out);
            self.publish(&tmp, &final_path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| final_path)
    }

    /// Like [`put`](Self::put), but hands the stream to `consume` on its way to the file: every
    /// byte `consume` reads is written to the temporary file first, so a layer can be unpacked
    /// while it downloads without reading it twice. Whatever `consume` leaves unread is copied
    /// after it. The blob is published only if `consume` succeeded and the whole stream matched
    /// `expected`; `consume`'s result is worth keeping only then (the caller must keep anything
    /// it built unpublished until this returns Ok, since the digest is known only at the end).
    pub fn put_through<T>(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
        consume: impl FnOnce(&mut (dyn Read + Send)) -> Result<T>,
    ) -> Result<T> {
        let final_path = self.own_path(&expected.digest);
        let tmp = self.temp_path(expected);
        let result = (|| {
            let out = File::create(&tmp).at(&tmp)?;
            let verifier = VerifyingReader::new(data, expected.clone(), what);
            let mut tee = Tee {
                inner: verifier,
                out,
                path: &tmp,
                failed: None,
            };
            let value = consume(&mut tee)?;
            copy_stream(&mut tee, &mut io::sink(), what, &tmp)?;
            // Reads nothing more; makes sure the end of the stream was verified.
            tee.inner.finish()?;
            tee.out
                .set_permissions(fs::Permissions::from_mode(0o444))
                .at(&tmp)?;
            drop(tee.out);
            self.publish(&tmp, &final_path)?;
            Ok(value)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Like [`put_through`](Self::put_through), but the blob survives this process part-way:
    /// what arrives is kept in a partial file (`partial/` in the store), and a later call for the
    /// same blob (in this process or the next) reads that prefix back into `consume` and
    /// asks `open` only for the rest. A resumed download that fails other than by its source
    /// (its digest, or `consume` on the kept bytes) is tried once more from the first byte.
    pub fn put_resumable<T>(
        &self,
        expected: &Expected,
        open: &mut OpenAt<'_>,
        what: &str,
        mut consume: impl FnMut(&mut (dyn Read + Send)) -> Result<T>,
    ) -> Result<T> {
        let claimed = match expected.size {
            Some(size) => self.partials.claim(&expected.digest, size)?,
            None => None,
        };
        let Some(mut claimed) = claimed else {
            // No size to resume against, or another process is downloading this blob now.
            let mut data = open(0)?;
            return self.put_through(expected, &mut data, what, consume);
        };
        let mut retried = false;
        loop {
            let from = claimed.len();
            match self.resume_once(&claimed, expected, open, what, &mut consume) {
                Ok(value) => {
                    claimed.publish(&self.own_path(&expected.digest))?;
                    return Ok(value);
                }
                // The source failed (network, server): what arrived is kept for next time.
                Err((e, true)) => return Err(e),
                // The kept prefix may be what was wrong: once more, all from the source.
                Err((_, false)) if from > 0 && !retried => {
                    claimed.restart()?;
                    retried = true;
                }
                Err((e, false)) => {
                    claimed.restart()?;
                    return Err(e);
                }
            }
        }
    }

    /// One try of [`put_resumable`](Self::put_resumable); the flag on an error says whether
    /// the source failed.
    fn resume_once<T>(
        &self,
        claimed: &super::partial::Claimed,
        expected: &Expected,
        open: &mut OpenAt<'_>,
        what: &str,
        consume: &mut impl FnMut(&mut (dyn Read + Send)) -> Result<T>,
    ) -> std::result::Result<T, (Error, bool)> {
        let from = claimed.len();
        let rest: Box<dyn Read + Send + '_> = if expected.size.is_some_and(|s| from >= s) {
            Box::new(io::empty())
        } else {
            open(from).map_err(|e| (e, true))?
        };
        let failed = std::sync::atomic::AtomicBool::new(false);
        let tee = Tee {
            inner: rest,
            out: claimed.file(),
            path: claimed.path(),
            failed: Some(&failed),
        };
        let stream = claimed.prefix().chain(tee);
        let mut verifier = VerifyingReader::new(stream, expected.clone(), what);
        let source_failed = || failed.load(std::sync::atomic::Ordering::Relaxed);
        let value = consume(&mut verifier).map_err(|e| (e, source_failed()))?;
        copy_stream(&mut verifier, &mut io::sink(), what, claimed.path())
            .map_err(|e| (e, source_failed()))?;
        verifier.finish().map_err(|e| (e, source_failed()))?;
        Ok(value)
    }

    fn temp_path(&self, expected: &Expected) -> PathBuf {
        self.work.join(format!(
            "blob-{}-{:08x}",
            expected.digest.hex(),
            rand::random::<u32>()
        ))
    }

    /// Stores an in-memory blob (manifest, config, index) and returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(Algorithm::Sha256, bytes);
        let expected = Expected {
            digest: digest.clone(),
            size: Some(bytes.len() as u64),
        };
        if !self.has(&digest) {
            self.put(&expected, &mut &bytes[..], &format!("blob {digest}"))?;
        }
        Ok(digest)
    }

    fn publish(&self, tmp: &Path, final_path: &Path) -> Result<()> {
        if let Some(parent) = final_path.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        // rename() replaces atomically; a concurrent writer of the same digest wrote the same
        // verified bytes, so whichever lands last is equally right.
        fs::rename(tmp, final_path).at(final_path)
    }

    /// Every blob in the user's store (never a read-only store's), in no particular order;
    /// files with foreign names are reported as errors so that `fsck` can list them.
    pub fn list(&self) -> Result<Vec<std::result::Result<Digest, PathBuf>>> {
        let mut out = Vec::new();
        let dir = self.dirs.own();
        let Some(entries) = crate::fsutil::read_dir_if_exists(dir)? else {
            return Ok(out);
        };
        for alg_dir in entries {
            let alg_dir = alg_dir.at(dir)?;
            let alg = alg_dir.file_name().to_string_lossy().into_owned();
            let Ok(files) = fs::read_dir(alg_dir.path()) else {
                out.push(Err(alg_dir.path()));
                continue;
            };
            for f in files {
                let f = f.at(&alg_dir.path())?;
                let name = f.file_name().to_string_lossy().into_owned();
                match format!("{alg}:{name}").parse::<Digest>() {
                    Ok(d) => out.push(Ok(d)),
                    Err(_) => out.push(Err(f.path())),
                }
            }
        }
        Ok(out)
    }

    /// Re-hashes a stored blob; Ok(false) if its content no longer matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<bool> {
        let mut file = self.open(digest)?;
        let expected = Expected {
            digest: digest.clone(),
            size: None,
        };
        let what = format!("blob {digest}");
        let mut verifier = VerifyingReader::new(&mut file, expected, &what);
        match io::copy(&mut verifier, &mut io::sink()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(false),
            Err(e) => Err(Error::io(what, e)),
        }
    }

    /// Removes the partial downloads nobody is continuing that are of no more use: their
    /// blob is stored, or nothing was added to them for `max_age`. Returns how many.
    pub fn sweep_partials(&self, max_age: std::time::Duration) -> usize {
        let mut removed = 0;
        for (path, _, age) in self.partials.idle() {
            let stored = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.replacen('-', ":", 1).parse::<Digest>().ok())
                .is_some_and(|d| self.has(&d));
            if (stored || age > max_age.as_secs()) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Removes blob `digest` from the user's store (a read-only store's copy stays).
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        crate::fsutil::remove_file_if_exists(&self.own_path(digest)).map(drop)
    }
}

/// A reader that writes what passes through it to a file: the stored copy of a blob that is
/// being consumed (unpacked) at the same time.
struct Tee<'p, R, W> {
    inner: R,
    out: W,
    path: &'p Path,
    /// Set when reading `inner` failed (the source), as opposed to writing the file.
    failed: Option<&'p std::sync::atomic::AtomicBool>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| {
            if let Some(f) = self.failed {
                f.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })?;
        // A full disk must not pass for a network error: name the file.
        self.out.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        })?;
        Ok(n)
    }
}

/// Copies with a 1 MiB buffer, attributing read errors to the source (`what`) and write errors
/// (full disk, quota) to the destination file.
pub fn copy_stream(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    what: &str,
    dst_path: &Path,
) -> Result<u64> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(what, e)),
        };
        dst.write_all(&buf[..n]).at(dst_path)?;
        total += n as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockMode, Storage};

    /// A store (kept alive by the TempDir) and a 3 MB blob to put in it.
    fn setup() -> (tempfile::TempDir, Storage, Vec<u8>, Expected) {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(&tmp.path().join("s"), LockMode::None).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = Expected {
            digest: Digest::sha256_of(&data),
            size: Some(data.len() as u64),
        };
        (tmp, storage, data, expected)
    }

    /// A source that fails after `fail_after` bytes, as a killed download or a lost network.
    struct Failing<'a> {
        data: &'a [u8],
        fail_after: usize,
    }

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_after == 0 {
                return Err(io::Error::other("connection lost"));
            }
            let n = buf.len().min(self.fail_after).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.fail_after -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_download_cut_short_continues_where_it_stopped() {
        let (_tmp, storage, data, expected) = setup();
        let blobs = storage.blobs();
        let mut asked = Vec::new();
        let mut cut = |offset: u64| -> Result<Box<dyn Read + Send + '_>> {
            asked.push(offset);
            Ok(Box::new(Failing {
                data: &data[offset as usize..],
                fail_after: 1_000_000,
            }))
        };
        let consumed = |s: &mut (dyn Read + Send)| {
            let mut all = Vec::new();
            s.read_to_end(&mut all).map_err(|e| Error::io("test", e))?;
            Ok(all)
        };
        assert!(
            blobs
                .put_resumable(&expected, &mut cut, "blob", consumed)
                .is_err()
        );
        assert!(
            blobs
                .put_resumable(&expected, &mut cut, "blob", consumed)
                .is_err()
        );
        let mut rest = |offset: u64| -> Result<Box<dyn Read + Send + '_>> {
            assert_eq!(offset, 2_000_000);
            Ok(Box::new(&data[offset as usize..]))
        };
        // The consumer sees every byte, the kept ones first.
        let seen = blobs
            .put_resumable(&expected, &mut rest, "blob", consumed)
            .unwrap();
        assert_eq!(asked, [0, 1_000_000]);
        assert_eq!(seen, data);
        assert_eq!(blobs.read_to_vec(&expected.digest).unwrap(), data);
        assert_eq!(blobs.sweep_partials(std::time::Duration::ZERO), 0);
    }

    #[test]
    fn a_bad_kept_prefix_is_replaced_by_a_whole_download() {
        let (_tmp, storage, data, expected) = setup();
        let blobs = storage.blobs();
        let mut bad = data.clone();
        bad[10] ^= 1;
        let mut cut = |_: u64| -> Result<Box<dyn Read + Send + '_>> {
            Ok(Box::new(Failing {
                data: &bad,
                fail_after: 1_500_000,
            }))
        };
        let drain = |_: &mut (dyn Read + Send)| Ok(());
        assert!(
            blobs
                .put_resumable(&expected, &mut cut, "blob", drain)
                .is_err()
        );
        let mut asked = Vec::new();
        let mut good = |offset: u64| -> Result<Box<dyn Read + Send + '_>> {
            asked.push(offset);
            Ok(Box::new(&data[offset as usize..]))
        };
        blobs
            .put_resumable(&expected, &mut good, "blob", drain)
            .unwrap();
        assert_eq!(asked, [1_500_000, 0]);
        assert!(blobs.verify(&expected.digest).unwrap());
    }
}
