//! What signatures and artifacts need of a registry repository besides copying images:
//! manifests by any reference (absent is an answer, not an error), small blobs as bytes, and
//! OCI 1.1 referrers, through the registry's referrers API where it has one and through the
//! tag-schema fallback (an index tagged `<alg>-<hex>` listing the referrers of manifest
//! `<alg>:<hex>`) where it does not, as Distribution 2.8 does not.
//!
//! **Concurrent writers of a fallback index.** The registry offers no compare-and-swap:
//! conditional `PUT` (`If-Match`) is not in Distribution 2.8, so two writers that read the index
//! at once and each add their entry would leave only the second. [`Repository::add_referrer`]
//! therefore re-reads the index after its write and merges and writes again (with backoff)
//! until its entry is there, then waits a settle time longer than one read-modify-write cycle
//! and checks again, since a writer that read before our write may still overwrite it. What that
//! guarantees: no entry is lost while every writer's read-modify-write cycle is shorter than the
//! settle time (a second, or four times the writer's own cycle if longer); a writer stalled for
//! longer than that between its read and its write can still drop an entry, which the next
//! `add_referrer` of that referrer (or `lade copy --all`) restores. Readers never see a partial
//! index: each PUT replaces it whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::image::{Descriptor, ImageIndex};
use reqwest::header;
use reqwest::{Method, StatusCode};

use super::client::{self, Client};
use super::{MANIFEST_ACCEPT, Options, RegistryDestination};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::{OCI_INDEX, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::{ImageDestination, MAX_MANIFEST_BYTES};

/// Rounds of write-and-check of a fallback index before giving up.
const MAX_INDEX_ROUNDS: u32 = 12;
/// The shortest settle time before the second check of a fallback index.
const MIN_SETTLE: Duration = Duration::from_millis(1000);
/// Largest blob read into memory here (signature payloads, bundles, artifact configs).
pub const MAX_SMALL_BLOB: u64 = 4 << 20;

/// Where a registry keeps an image's referrers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersMode {
    /// `GET /v2/NAME/referrers/DIGEST` answers.
    Api,
    /// The tag-schema fallback index.
    Fallback,
}

/// A manifest as a registry names it: its digest, media type and size.
#[derive(Debug, Clone)]
pub struct Head {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

pub struct Repository {
    reference: Reference,
    client: Client,
    opts: Options,
    storage: Option<Arc<Storage>>,
    scope: String,
    pusher: std::sync::OnceLock<RegistryDestination>,
    progress: Progress,
}

/// The fallback tag of `subject`: `<alg>-<hex>`, cut to the 128 characters a tag may have.
pub fn fallback_tag(subject: &Digest) -> String {
    let mut t = format!("{}-{}", subject.algorithm().name(), subject.hex());
    t.truncate(128);
    t
}

impl Repository {
    /// Prepares access to `reference`'s repository; no request is made yet. Writing (blobs,
    /// manifests) asks for credentials as a push does.
    pub fn open(
        reference: &Reference,
        opts: &Options,
        storage: Option<Arc<Storage>>,
    ) -> Result<Repository> {
        let client = Client::for_reference(reference, opts)?;
        Ok(Repository {
            scope: format!("repository:{}:pull", reference.repository),
            reference: reference.clone(),
            client,
            opts: opts.clone(),
            storage,
            pusher: std::sync::OnceLock::new(),
            progress: opts.progress.clone(),
        })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// What the reference names a manifest by: its digest, else its tag, else `latest`.
    pub fn named(&self) -> String {
        match (&self.reference.digest, &self.reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The manifest the reference names; an error if there is none.
    pub fn named_manifest(&self) -> Result<RawManifest> {
        let named = self.named();
        self.manifest(&named)?.ok_or_else(|| {
            Error::ImageNotFound(format!("{}{}", self.describe(), self.reference.suffix()))
        })
    }

    pub fn describe(&self) -> String {
        format!("docker://{}", self.reference.name())
    }

    fn path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.reference.repository)
    }

    /// The repository as a push destination (opened on first use, then kept: one
    /// authentication for every blob and manifest written).
    pub fn pusher(&self) -> Result<&RegistryDestination> {
        if let Some(p) = self.pusher.get() {
            return Ok(p);
        }
        let d = RegistryDestination::open(&self.reference, &self.opts, self.storage.clone())?;
        Ok(self.pusher.get_or_init(|| d))
    }

    /// `HEAD` of a manifest by tag or digest; `None` if the registry has none.
    pub fn head(&self, reference: &str) -> Result<Option<Head>> {
        let what = format!("manifest {reference} of {}", self.describe());
        let path = self.path(&format!("manifests/{reference}"));
        let resp = self
            .client
            .send(Method::HEAD, &path, &self.scope, &what, &|b| {
                b.header(header::ACCEPT, MANIFEST_ACCEPT)
            })?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.client.status_error(&what, resp));
        }
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let media_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let size = resp.content_length();
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) if size > 0 => Ok(Some(Head {
                digest,
                media_type,
                size,
            })),
            // A registry that leaves something out of HEAD answers GET in full.
            _ => Ok(self.manifest(reference)?.map(|m| Head {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
        }
    }

    /// A manifest by tag or digest, verified (against the digest named, else the registry's
    /// `Docker-Content-Digest`); `None` if the registry has none.
    pub fn manifest(&self, reference: &str) -> Result<Option<RawManifest>> {
        let what = format!("manifest {reference} of {}", self.describe());
        let path = self.path(&format!("manifests/{reference}"));
        let resp = self.client.get(&client::Request {
            path: &path,
            accept: Some(MANIFEST_ACCEPT),
            range_from: None,
            scope: &self.scope,
            what: &what,
        })?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.client.status_error(&what, resp));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let hint = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &what)?;
        let named = reference.parse::<Digest>().ok().or(header_digest);
        let expected = named.map(|digest| Expected { digest, size: None });
        RawManifest::new(bytes, hint.as_deref(), expected.as_ref(), &what).map(Some)
    }

    /// A blob of at most [`MAX_SMALL_BLOB`] bytes, verified against `expected`.
    pub fn blob(&self, expected: &Expected) -> Result<Vec<u8>> {
        let what = format!("blob {} of {}", expected.digest, self.describe());
        let limit = expected.size.unwrap_or(MAX_SMALL_BLOB);
        if limit > MAX_SMALL_BLOB {
            return Err(Error::invalid(
                &what,
                format!("{limit} bytes; more than lade reads into memory here"),
            ));
        }
        let resp = self.open_blob(&expected.digest)?;
        let bytes = read_limited(resp, limit, &what)?;
        check_bytes(&bytes, expected, &what)?;
        Ok(bytes)
    }

    /// A blob as a stream (for artifact files of any size); the caller verifies it.
    pub fn open_blob(&self, digest: &Digest) -> Result<reqwest::blocking::Response> {
        let what = format!("blob {digest} of {}", self.describe());
        let path = self.path(&format!("blobs/{digest}"));
        let resp = self.client.get(&client::Request {
            path: &path,
            accept: None,
            range_from: None,
            scope: &self.scope,
            what: &what,
        })?;
        if !resp.status().is_success() {
            return Err(self.client.status_error(&what, resp));
        }
        Ok(resp)
    }

    /// Uploads a blob unless the repository has it.
    pub fn put_blob(
        &self,
        expected: &Expected,
        data: &mut (dyn std::io::Read + Send),
        what: &str,
    ) -> Result<()> {
        let p = self.pusher()?;
        if p.has_blob(&expected.digest)? {
            return Ok(());
        }
        p.put_blob(expected, data, what)
    }

    pub fn put_blob_bytes(&self, bytes: &[u8], what: &str) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let expected = Expected {
            digest: digest.clone(),
            size: Some(bytes.len() as u64),
        };
        self.put_blob(&expected, &mut &bytes[..], what)?;
        Ok(digest)
    }

    /// `PUT` of a manifest under `reference` (a tag, or its own digest). Returns whether the
    /// registry says it processed the manifest's `subject` (the `OCI-Subject` header of a
    /// registry with the referrers API). A registry that refuses the manifest's content
    /// (HTTP 400) gives an [`Error::Unsupported`], which artifact pushes answer with the OCI
    /// 1.0 packing.
    pub fn put_manifest(&self, m: &RawManifest, reference: &str) -> Result<bool> {
        let pusher = self.pusher()?;
        let (resp, what) = pusher.send_manifest(m, reference)?;
        if resp.status() == StatusCode::BAD_REQUEST {
            let e = self.client.status_error(&what, resp);
            return Err(Error::unsupported(
                &what,
                format!("the registry refused the manifest ({e})"),
            ));
        }
        let headers = pusher.check_manifest_put(resp, m, &what)?;
        Ok(headers.contains_key("oci-subject"))
    }

    /// Whether the registry has the referrers API, and if so the referrers of `subject`
    /// (every page). A registry without it answers 404 (Distribution 2.8) or 405.
    fn referrers_api(&self, subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
        let what = format!("referrers of {subject} in {}", self.describe());
        let mut target = self.path(&format!("referrers/{subject}"));
        let mut out = Vec::new();
        for _ in 0..1000 {
            let resp = self.client.get(&client::Request {
                path: &target,
                accept: Some(OCI_INDEX),
                range_from: None,
                scope: &self.scope,
                what: &what,
            })?;
            let status = resp.status();
            if matches!(status.as_u16(), 404 | 405 | 400) && out.is_empty() {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(self.client.status_error(&what, resp));
            }
            let is_index = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(OCI_INDEX));
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(super::repository::next_link);
            let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &what)?;
            if !is_index && out.is_empty() {
                // Something answered, but not the referrers API (a catch-all route).
                if ImageIndex::from_reader(&bytes[..]).is_err() {
                    return Ok(None);
                }
            }
            let index = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| Error::invalid(&what, e.to_string()))?;
            out.extend(index.manifests().iter().cloned());
            match next {
                Some(link) => {
                    let url = self.client.resolve(&link);
                    let Ok(u) = reqwest::Url::parse(&url) else {
                        break;
                    };
                    target = match u.query() {
                        Some(q) => format!("{}?{q}", u.path()),
                        None => u.path().to_string(),
                    };
                }
                None => break,
            }
        }
        Ok(Some(out))
    }

    /// The referrers of `subject` and where they were found. Without the API, the fallback
    /// index's entries (none if it does not exist).
    pub fn referrers(&self, subject: &Digest) -> Result<(ReferrersMode, Vec<Descriptor>)> {
        if let Some(list) = self.referrers_api(subject)? {
            return Ok((ReferrersMode::Api, list));
        }
        let list = match self.fallback_index(subject)? {
            Some(index) => index.manifests().clone(),
            None => Vec::new(),
        };
        Ok((ReferrersMode::Fallback, list))
    }

    fn fallback_index(&self, subject: &Digest) -> Result<Option<ImageIndex>> {
        let tag = fallback_tag(subject);
        let Some(m) = self.manifest(&tag)? else {
            return Ok(None);
        };
        ImageIndex::from_reader(&m.bytes[..])
            .map(Some)
            .map_err(|e| {
                Error::invalid(
                    format!("referrers index {tag} of {}", self.describe()),
                    format!("not an image index: {e}"),
                )
            })
    }

    /// Pushes `m`, a manifest whose `subject` is `subject` (its blobs already pushed), by
    /// digest, and makes it findable among the subject's referrers: by the registry itself
    /// where it says so, else by adding `desc` (its descriptor, with `artifactType` and
    /// annotations) to the fallback index (see the module documentation for the guarantee).
    pub fn add_referrer(
        &self,
        m: &RawManifest,
        desc: &Descriptor,
        subject: &Digest,
    ) -> Result<ReferrersMode> {
        let processed = self.put_manifest(m, &m.digest.to_string())?;
        if processed {
            return Ok(ReferrersMode::Api);
        }
        // Some registries process subjects without saying so: if the API lists it, done.
        if let Some(list) = self.referrers_api(subject)? {
            if list
                .iter()
                .any(|d| d.digest().to_string() == m.digest.to_string())
            {
                return Ok(ReferrersMode::Api);
            }
        }
        self.merge_into_fallback(desc, subject)?;
        Ok(ReferrersMode::Fallback)
    }

    fn merge_into_fallback(&self, desc: &Descriptor, subject: &Digest) -> Result<()> {
        let tag = fallback_tag(subject);
        let what = format!("referrers index {tag} of {}", self.describe());
        let want = desc.digest().to_string();
        let listed = |index: &Option<ImageIndex>| {
            index
                .as_ref()
                .is_some_and(|i| i.manifests().iter().any(|d| d.digest().to_string() == want))
        };
        let mut round = 0;
        let mut settled_checks = 0;
        let mut cycle = Duration::ZERO;
        loop {
            let started = Instant::now();
            let current = self.fallback_index(subject)?;
            if listed(&current) {
                // In place: wait out writers that may have read before us, then look again.
                if settled_checks >= 1 {
                    return Ok(());
                }
                settled_checks += 1;
                let settle = MIN_SETTLE.max(cycle * 4);
                std::thread::sleep(jitter(settle));
                continue;
            }
            if round >= MAX_INDEX_ROUNDS {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "other writers kept replacing it; gave up after {MAX_INDEX_ROUNDS} \
                         rounds (the manifest {want} is pushed; run the command again to list it)"
                    ),
                ));
            }
            if round > 0 {
                self.progress.note(&format!(
                    "{what}: another writer replaced it; merging again (round {})",
                    round + 1
                ));
                std::thread::sleep(jitter(Client::backoff(round.min(4) - 1)));
            }
            let mut manifests = current.map(|i| i.manifests().clone()).unwrap_or_default();
            manifests.retain(|d| d.digest().to_string() != want);
            manifests.push(desc.clone());
            let bytes = index_bytes(&manifests, &what)?;
            let index = RawManifest::new(bytes, Some(OCI_INDEX), None, &what)?;
            self.put_manifest(&index, &tag)?;
            cycle = cycle.max(started.elapsed());
            settled_checks = 0;
            round += 1;
        }
    }
}

/// An OCI index listing `manifests`, as the tag-schema fallback writes it.
pub fn index_bytes(manifests: &[Descriptor], what: &str) -> Result<Vec<u8>> {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&v).map_err(|e| Error::json(what, e))
}

/// A wait of `d` to `1.5 d`, so that retrying writers spread out.
fn jitter(d: Duration) -> Duration {
    let extra = rand::random::<f64>() * 0.5;
    d + d.mul_f64(extra)
}

fn read_limited(resp: reqwest::blocking::Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid(what, format!("reading it: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Error::invalid(what, format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Checks bytes against a digest and size.
pub fn check_bytes(bytes: &[u8], expected: &Expected, what: &str) -> Result<()> {
    let actual = Digest::of_bytes(expected.digest.algorithm(), bytes);
    if actual != expected.digest {
        return Err(Error::invalid(
            what,
            format!(
                "digest mismatch: expected {}, got {actual}",
                expected.digest
            ),
        ));
    }
    if let Some(size) = expected.size
        && size != bytes.len() as u64
    {
        return Err(Error::invalid(
            what,
            format!("size mismatch: expected {size} bytes, got {}", bytes.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }
}
