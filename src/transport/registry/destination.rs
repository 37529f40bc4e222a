//! `docker://REF` as an image destination: pushing, as the distribution spec has it.
//!
//! - `has_blob`: `HEAD /v2/NAME/blobs/DIGEST` (with a pull token);
//! - `reuse_blob`: a mount from another repository of the same registry, tried before the
//!   copier opens the source, so a mounted blob is never read;
//! - `put_blob`: an upload (see `upload`: monolithic or chunked, restarted or resumed after
//!   failures), after a mount if none was tried;
//! - `put_manifest`: `PUT /v2/NAME/manifests/DIGEST`, exact bytes and media type;
//! - `commit`: the top manifest `PUT` by tag, last, so that nothing is tagged unless every
//!   blob and manifest is there.
//!
//! Every request uses a `pull,push` token: a registry that first offered a read-only token
//! (for the `HEAD`s, or to an anonymous client) is asked again with the wider scope.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use reqwest::blocking::Response;
use reqwest::header;
use reqwest::{Method, StatusCode};

use super::client::{self, Client};
use super::known_blobs;
use super::upload::{self, Upload};
use super::{AuthMode, Options};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::manifest::RawManifest;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::Storage;
use crate::transport::{CopiedImage, ImageDestination};

pub struct RegistryDestination {
    reference: Reference,
    client: Client,
    storage: Option<Arc<Storage>>,
    pull_scope: String,
    push_scope: String,
    /// Repositories of this registry that may hold the image's blobs (mount sources).
    mount_from: Vec<String>,
    /// From the store's record: blob → repositories of this registry holding it.
    known: HashMap<Digest, Vec<String>>,
    /// Blobs this push made sure of, for the record.
    done: Mutex<Vec<Digest>>,
    /// Blobs whose mounts `reuse_blob` already tried (and the registry refused).
    mount_tried: Mutex<HashSet<Digest>>,
    upload: upload::Settings,
    progress: Progress,
}

/// Repositories tried for a mount, per blob.
const MAX_MOUNT_TRIES: usize = 3;

impl RegistryDestination {
    /// Prepares pushing to `reference`; no request is made yet. Pushing implies
    /// authenticated mode (credentials are asked for only if the registry wants them).
    pub fn open(
        reference: &Reference,
        opts: &Options,
        storage: Option<Arc<Storage>>,
    ) -> Result<RegistryDestination> {
        let opts = Options {
            auth: AuthMode::Authenticated,
            ..opts.clone()
        };
        let progress = opts.progress.clone();
        let client = Client::new(
            &reference.registry,
            reference.api_host(),
            &opts,
            progress.clone(),
        )?;
        let known = storage
            .as_ref()
            .map(|s| known_blobs::read(s, &reference.registry))
            .unwrap_or_default();
        Ok(RegistryDestination {
            pull_scope: format!("repository:{}:pull", reference.repository),
            push_scope: format!("repository:{}:pull,push", reference.repository),
            reference: reference.clone(),
            client,
            storage,
            mount_from: Vec::new(),
            known,
            done: Mutex::new(Vec::new()),
            mount_tried: Mutex::new(HashSet::new()),
            upload: upload::Settings::from_env(),
            progress,
        })
    }

    /// Repositories of the same registry the image's blobs may be mounted from (the source
    /// of a registry-to-registry copy, the repository a stored image was pulled from).
    pub fn with_mount_sources(mut self, repositories: Vec<String>) -> Self {
        self.mount_from = repositories;
        self
    }

    /// The repository of `loc` if it is on the same registry as this destination.
    pub fn same_registry_repository(&self, other: &Reference) -> Option<String> {
        (other.registry == self.reference.registry && other.repository != self.reference.repository)
            .then(|| other.repository.clone())
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.reference.repository)
    }

    fn what_blob(&self, digest: &Digest) -> String {
        format!("blob {digest} to {}", self.describe())
    }

    fn mount_candidates(&self, digest: &Digest) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let known = self.known.get(digest).into_iter().flatten();
        for r in known.chain(self.mount_from.iter()) {
            if *r != self.reference.repository && !out.contains(r) {
                out.push(r.clone());
            }
        }
        out.truncate(MAX_MOUNT_TRIES);
        out
    }
}

impl ImageDestination for RegistryDestination {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let what = self.what_blob(digest);
        let path = self.repo_path(&format!("blobs/{digest}"));
        let resp = self
            .client
            .send(Method::HEAD, &path, &self.pull_scope, &what, &|b| b)?;
        let have = match resp.status() {
            s if s.is_success() => true,
            // Not found; or not readable, which a push may still be allowed to change.
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => false,
            _ => return Err(self.client.status_error(&what, resp)),
        };
        if have && let Ok(mut d) = self.done.lock() {
            d.push(digest.clone());
        }
        Ok(have)
    }

    fn reuse_blob(&self, expected: &Expected, _what: &str) -> Result<bool> {
        let upload = self.upload(self.mount_candidates(&expected.digest));
        if upload.mount_from.is_empty() {
            return Ok(false);
        }
        let mounted = upload.mount_only(&expected.digest)?;
        if mounted {
            self.note_done(&expected.digest);
        } else if let Ok(mut tried) = self.mount_tried.lock() {
            tried.insert(expected.digest.clone());
        }
        Ok(mounted)
    }

    fn put_blob(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<()> {
        let tried = self
            .mount_tried
            .lock()
            .map(|t| t.contains(&expected.digest))
            .unwrap_or(false);
        let mount_from = if tried {
            Vec::new()
        } else {
            self.mount_candidates(&expected.digest)
        };
        self.upload(mount_from)
            .run(expected, data, &format!("{what} to {}", self.describe()))?;
        self.note_done(&expected.digest);
        Ok(())
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        self.put_manifest_as(manifest, &manifest.digest.to_string())
    }

    fn commit(&mut self, image: &CopiedImage) -> Result<()> {
        match (&self.reference.tag, &self.reference.digest) {
            (_, Some(d)) if *d != image.top.digest => {
                return Err(Error::invalid(
                    self.describe(),
                    format!(
                        "the image's manifest is {}, not the digest named",
                        image.top.digest
                    ),
                ));
            }
            (Some(tag), _) => self.put_manifest_as(&image.top, tag)?,
            (None, Some(_)) => self.put_manifest_as(&image.top, &image.top.digest.to_string())?,
            (None, None) => self.put_manifest_as(&image.top, "latest")?,
        }
        self.record();
        Ok(())
    }
}

impl RegistryDestination {
    fn upload(&self, mount_from: Vec<String>) -> Upload<'_> {
        Upload {
            client: &self.client,
            repository: &self.reference.repository,
            scope: &self.push_scope,
            target: self.describe(),
            mount_from,
            storage: self.storage.as_deref(),
            settings: self.upload,
            progress: &self.progress,
        }
    }

    fn note_done(&self, digest: &Digest) {
        if let Ok(mut d) = self.done.lock() {
            d.push(digest.clone());
        }
    }

    fn put_manifest_as(&self, manifest: &RawManifest, reference: &str) -> Result<()> {
        let (resp, what) = self.send_manifest(manifest, reference)?;
        self.check_manifest_put(resp, manifest, &what).map(drop)
    }

    /// `PUT` of a manifest under `reference`; the response whatever its status, and what
    /// to call the manifest in messages.
    pub(super) fn send_manifest(
        &self,
        manifest: &RawManifest,
        reference: &str,
    ) -> Result<(Response, String)> {
        let what = format!("manifest {} to {}", manifest.digest, self.describe());
        let path = self.repo_path(&format!("manifests/{reference}"));
        let body = manifest.bytes.clone();
        let media_type = manifest.media_type.clone();
        let resp = self
            .client
            .send(Method::PUT, &path, &self.push_scope, &what, &|b| {
                b.header(header::CONTENT_TYPE, media_type.as_str())
                    .body(body.clone())
            })?;
        Ok((resp, what))
    }

    /// Checks the answer to [`send_manifest`](Self::send_manifest): a success, with the
    /// digest the registry computed (if it says) the manifest's own; returns its headers.
    pub(super) fn check_manifest_put(
        &self,
        resp: Response,
        manifest: &RawManifest,
        what: &str,
    ) -> Result<reqwest::header::HeaderMap> {
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self.client.status_error(what, resp));
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            && d.trim() != manifest.digest.to_string()
        {
            return Err(Error::invalid(
                what,
                format!("the registry computed digest {}", client::show(d)),
            ));
        }
        Ok(resp.headers().clone())
    }

    /// Notes in the store which blobs this repository now holds (best effort: the record
    /// only saves later uploads).
    fn record(&self) {
        let (Some(storage), Ok(done)) = (&self.storage, self.done.lock()) else {
            return;
        };
        known_blobs::note(
            storage,
            &self.reference.registry,
            &self.reference.repository,
            &done,
        );
    }
}
