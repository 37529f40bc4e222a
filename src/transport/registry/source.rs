//! `docker://REF` as an image source: manifests (verified against the reference's digest or
//! `Docker-Content-Digest`), and blobs as streams that resume with `Range` where a connection
//! dropped. Which digest a tag stands for is the caller's policy (see [`crate::pull`]): the
//! source reads the tag as the registry has it now unless told to read a digest instead.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header;

use super::client::{self, Client, MAX_ATTEMPTS, Request};
use super::known_blobs;
use super::{MANIFEST_ACCEPT, MANIFEST_TYPES, Options};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{self, Kind, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::{ImageSource, MAX_MANIFEST_BYTES};

/// Resumes of one blob, in all; consecutive resumes without progress are bounded by
/// [`MAX_ATTEMPTS`].
const MAX_RESUMES: u32 = 100;

pub struct RegistrySource {
    reference: Reference,
    client: Client,
    storage: Option<Arc<Storage>>,
    scope: String,
    /// Sizes of the blobs the manifests served so far name, so that a body that ends early
    /// (no `Content-Length`, connection closed) is recognised and resumed.
    sizes: Mutex<HashMap<Digest, u64>>,
    /// Blobs this repository served, for the store's record of where blobs are
    /// ([`known_blobs`]: later pushes to the same registry mount them).
    served: Mutex<Vec<Digest>>,
    top: Top,
    progress: Progress,
}

/// Where the top manifest comes from.
enum Top {
    /// The reference's tag, as the registry has it when the copy asks.
    Tag,
    /// A manifest digest: the reference's own, or one its tag was resolved to elsewhere.
    Digest(Digest),
    /// A manifest read already: the one the tag named when [`RegistrySource::resolve_tag`]
    /// asked, or the top one [`RegistrySource::hold_top`] read.
    Resolved(RawManifest),
}

impl RegistrySource {
    /// Prepares access to `reference`'s repository; no request is made yet. With `storage`,
    /// manifests already stored (by digest) are read from there instead of the network.
    pub fn open(
        reference: &Reference,
        opts: &Options,
        storage: Option<Arc<Storage>>,
    ) -> Result<RegistrySource> {
        let progress = opts.progress.clone();
        let client = Client::new(
            &reference.registry,
            reference.api_host(),
            opts,
            progress.clone(),
        )?;
        Ok(RegistrySource {
            scope: format!("repository:{}:pull", reference.repository),
            reference: reference.clone(),
            client,
            storage,
            sizes: Mutex::new(HashMap::new()),
            served: Mutex::new(Vec::new()),
            top: match &reference.digest {
                Some(d) => Top::Digest(d.clone()),
                None => Top::Tag,
            },
            progress,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The reference as given: what the source is described by, whatever digest it reads.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Asks the registry which manifest the tag names now, and makes that very manifest the
    /// top one the copy reads (no second request, and no surprise if the tag moves meanwhile).
    pub fn resolve_tag(&mut self) -> Result<Digest> {
        let m = self.fetch_manifest(self.tag(), None)?;
        let digest = m.digest.clone();
        self.top = Top::Resolved(m);
        Ok(digest)
    }

    /// Makes the manifest `digest` the top one (a tag pinned to it), read from the store when
    /// stored there; the source is still described by its reference.
    pub fn read_digest(&mut self, digest: Digest) {
        self.top = Top::Digest(digest);
    }

    /// Reads the top manifest now, as the copy would (the tag, or the digest it is pinned
    /// to), and keeps it as the one the copy reads: a caller that checks it first (`pull
    /// --verify-key`) and the copy then see one manifest, fetched once.
    pub fn hold_top(&mut self) -> Result<RawManifest> {
        let m = self.top_manifest()?;
        self.top = Top::Resolved(m.clone());
        Ok(m)
    }

    fn tag(&self) -> &str {
        self.reference.tag.as_deref().unwrap_or("latest")
    }

    fn what(&self, object: &str) -> String {
        format!("{object} of {}", self.describe())
    }

    /// GET /v2/NAME/manifests/REF, checked against `expected` (a digest reference) or else
    /// the `Docker-Content-Digest` header.
    fn fetch_manifest(&self, reference: &str, expected: Option<&Expected>) -> Result<RawManifest> {
        // A body cut short is retried like a reset before the headers (bounded).
        let mut attempt = 0;
        loop {
            match self.fetch_manifest_once(reference, expected) {
                Ok(m) => return Ok(m),
                Err((e, true)) if attempt + 1 < MAX_ATTEMPTS => {
                    let wait = std::time::Duration::from_millis(250) * 2u32.pow(attempt);
                    self.progress
                        .note(&format!("{e}; retrying in {:.1} s", wait.as_secs_f64()));
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One try; the flag on an error says whether another try may help.
    fn fetch_manifest_once(
        &self,
        reference: &str,
        expected: Option<&Expected>,
    ) -> std::result::Result<RawManifest, (Error, bool)> {
        let fatal = |e: Error| (e, false);
        let what = self.what(&format!("manifest {reference}"));
        let path = format!("/v2/{}/manifests/{reference}", self.reference.repository);
        let resp = self
            .client
            .get(&Request {
                path: &path,
                accept: Some(MANIFEST_ACCEPT),
                range_from: None,
                scope: &self.scope,
                what: &what,
            })
            .map_err(fatal)?;
        if resp.status() == StatusCode::NOT_FOUND
            && !resp
                .headers()
                .contains_key("docker-distribution-api-version")
            && let Ok(ping) = self.client.ping()
            && ping != StatusCode::OK
            && ping != StatusCode::UNAUTHORIZED
        {
            // Not even /v2/ is there: say so rather than "image not found".
            return Err(fatal(Error::invalid(
                &what,
                format!(
                    "{} does not look like a registry (GET /v2/ answered HTTP {})",
                    self.client.host(),
                    ping.as_u16()
                ),
            )));
        }
        if resp.status() != StatusCode::OK {
            return Err(fatal(self.client.status_error(&what, resp)));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES)
        {
            return Err(fatal(Error::invalid(
                &what,
                "larger than 4 MiB; not a manifest",
            )));
        }
        let hint = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .filter(|t| MANIFEST_TYPES.contains(&t.as_str()));
        let header_digest = match resp.headers().get("docker-content-digest") {
            None => None,
            Some(v) => match v.to_str().ok().map(|s| s.trim().parse::<Digest>()) {
                Some(Ok(d)) => Some(d),
                _ => {
                    self.progress.note(&format!(
                        "{what}: ignoring a Docker-Content-Digest header lade cannot use"
                    ));
                    None
                }
            },
        };
        let mut bytes = Vec::new();
        resp.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                let e = Error::invalid(
                    &what,
                    format!("reading it: {}", client::show(&e.to_string())),
                );
                (e, true)
            })?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(fatal(Error::invalid(
                &what,
                "larger than 4 MiB; not a manifest",
            )));
        }
        let from_header = header_digest.map(|digest| Expected { digest, size: None });
        let check = expected.or(from_header.as_ref());
        let m = RawManifest::new(bytes, hint.as_deref(), check, &what).map_err(fatal)?;
        self.remember_sizes(&m);
        Ok(m)
    }

    /// A manifest by digest from the store, if it is there (content-addressed, so as good as
    /// the registry's and verified on reading).
    fn stored_manifest(&self, expected: &Expected) -> Option<RawManifest> {
        let st = self.storage.as_ref()?;
        if !st.blobs().has(&expected.digest) {
            return None;
        }
        let bytes = st.blobs().read_to_vec(&expected.digest).ok()?;
        let m =
            RawManifest::new(bytes, None, Some(expected), &self.what("stored manifest")).ok()?;
        self.remember_sizes(&m);
        Some(m)
    }

    fn by_digest(&self, expected: &Expected) -> Result<RawManifest> {
        if let Some(m) = self.stored_manifest(expected) {
            return Ok(m);
        }
        self.fetch_manifest(&expected.digest.to_string(), Some(expected))
    }

    fn remember_sizes(&self, m: &RawManifest) {
        if m.kind != Kind::Image {
            return;
        }
        let Ok(parsed) = m.image() else { return };
        let Ok(mut sizes) = self.sizes.lock() else {
            return;
        };
        for d in std::iter::once(parsed.config()).chain(parsed.layers()) {
            if let Ok(e) = manifest::expected(d)
                && let Some(s) = e.size
            {
                sizes.insert(e.digest, s);
            }
        }
    }

    /// GET of blob `path` from byte `from` on: a 206 of exactly that range, or a 200 whose
    /// first `from` bytes are read and dropped (a server that ignores `Range`).
    fn blob_from(&self, path: &str, what: &str, from: u64) -> Result<Response> {
        let resp = self.client.get(&self.blob_request(path, what, from))?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                let start = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if start != Some(from) {
                    return Err(Error::invalid(
                        what,
                        format!(
                            "asked for the bytes from {from} on, the server sent another range"
                        ),
                    ));
                }
                Ok(resp)
            }
            StatusCode::OK => {
                let mut resp = resp;
                if from > 0 {
                    self.progress.note(&format!(
                        "{what}: the server ignores Range; reading {from} bytes again"
                    ));
                    let skipped = io::copy(&mut (&mut resp).take(from), &mut io::sink())
                        .map_err(|e| Error::io(what, e))?;
                    if skipped != from {
                        return Err(Error::invalid(
                            what,
                            format!("shorter than the {from} bytes read of it before"),
                        ));
                    }
                }
                Ok(resp)
            }
            _ => Err(self.client.status_error(what, resp)),
        }
    }

    fn blob_request<'a>(&'a self, path: &'a str, what: &'a str, from: u64) -> Request<'a> {
        Request {
            path,
            accept: None,
            range_from: (from > 0).then_some(from),
            scope: &self.scope,
            what,
        }
    }
}

impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn top_manifest(&self) -> Result<RawManifest> {
        match &self.top {
            Top::Tag => self.fetch_manifest(self.tag(), None),
            Top::Digest(d) => self.by_digest(&Expected {
                digest: d.clone(),
                size: None,
            }),
            Top::Resolved(m) => Ok(m.clone()),
        }
    }

    fn manifest(&self, expected: &Expected) -> Result<RawManifest> {
        self.by_digest(expected)
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        self.open_blob_at(digest, 0)
    }

    /// Asks for the blob from byte `offset` on with `Range`, as a cut connection is resumed.
    fn open_blob_at(&self, digest: &Digest, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        let path = format!("/v2/{}/blobs/{digest}", self.reference.repository);
        let what = self.what(&format!("blob {digest}"));
        let resp = self.blob_from(&path, &what, offset)?;
        if let Ok(mut served) = self.served.lock() {
            served.push(digest.clone());
        }
        let size = self.sizes.lock().ok().and_then(|s| s.get(digest).copied());
        Ok(Box::new(BlobStream {
            src: self,
            path,
            what,
            resp: Some(resp),
            got: offset,
            size,
            failures: 0,
            resumes: 0,
        }))
    }
}

impl Drop for RegistrySource {
    /// Records, once, which blobs this repository served (the repository holds them whether
    /// or not the copy went on to succeed).
    fn drop(&mut self) {
        if let (Some(storage), Ok(served)) = (&self.storage, self.served.get_mut()) {
            known_blobs::note(
                storage,
                &self.reference.registry,
                &self.reference.repository,
                served,
            );
        }
    }
}

/// A blob body that, when the connection drops or the body ends before the size the manifest
/// gave, asks again for the rest (`Range: bytes=N-`) and carries on. The copier's verifying
/// reader checks the whole: a server that sends other bytes on resumption fails the digest.
struct BlobStream<'a> {
    src: &'a RegistrySource,
    path: String,
    what: String,
    resp: Option<Response>,
    got: u64,
    size: Option<u64>,
    failures: u32,
    resumes: u32,
}

impl BlobStream<'_> {
    fn give_up_or_wait(&mut self, cause: String) -> io::Result<()> {
        self.resp = None;
        self.failures += 1;
        self.resumes += 1;
        let of = self.size.map(|s| format!(" of {s}")).unwrap_or_default();
        if self.failures >= MAX_ATTEMPTS || self.resumes > MAX_RESUMES {
            return Err(io::Error::other(format!(
                "{cause} at byte {}{of}; gave up after {} resumes",
                self.got,
                self.resumes - 1
            )));
        }
        let wait = std::time::Duration::from_millis(250) * 2u32.pow(self.failures - 1);
        self.src.progress.note(&format!(
            "{}: {cause} at byte {}{of}; resuming in {:.1} s",
            self.what,
            self.got,
            wait.as_secs_f64()
        ));
        std::thread::sleep(wait);
        Ok(())
    }

    /// Asks for the rest of the blob.
    fn reopen(&mut self) -> io::Result<()> {
        let resp = self
            .src
            .blob_from(&self.path, &self.what, self.got)
            .map_err(|e| io::Error::other(format!("resuming at byte {}: {e}", self.got)))?;
        self.resp = Some(resp);
        Ok(())
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Bounded: every pass either returns or counts a failure in give_up_or_wait.
        loop {
            let Some(resp) = self.resp.as_mut() else {
                if let Err(e) = self.reopen() {
                    self.give_up_or_wait(e.to_string())?;
                }
                continue;
            };
            match resp.read(buf) {
                Ok(0) => match self.size {
                    Some(s) if self.got < s => {
                        self.give_up_or_wait("connection closed early".into())?;
                    }
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.got += n as u64;
                    self.failures = 0;
                    return Ok(n);
                }
                Err(e) => {
                    let cause = client::read_failure(&e);
                    self.give_up_or_wait(cause)?;
                }
            }
        }
    }
}

/// `bytes 100-199/200` → 100.
fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }
}
