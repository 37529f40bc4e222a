//! `docker://`: images in registries speaking the OCI distribution API (Docker Hub, Quay,
//! GHCR, GitLab, Harbor, Distribution, zot, ...).
//!
//! - [`client`]: one registry host: HTTPS (plain HTTP only with `--tls-no-verify`), retries
//!   with backoff, 429 `Retry-After`, redirects, one request loop answering login challenges;
//! - `auth`: the login state behind those answers: bearer tokens per scope, basic credentials;
//! - [`challenge`]: `WWW-Authenticate` parsing;
//! - [`credentials`]: where user name and password come from, kept out of every message;
//! - [`cred_helper`]: Docker's credential helpers (`docker-credential-NAME`);
//! - [`login`]: `lade login`/`logout`: credentials checked, then saved to a login file;
//! - `tls`: the certificate authorities trusted, loaded lazily (the CA file, Mozilla's, then
//!   the system's);
//! - [`source`]: the [`ImageSource`](crate::transport::ImageSource): manifests by tag or
//!   digest, resumable blob streams;
//! - [`destination`]: the [`ImageDestination`](crate::transport::ImageDestination): blobs
//!   (mounted or uploaded, see `upload`), manifests, the tag last;
//! - [`repository`]: what a reference names now, tag listing, remote deletion;
//! - [`referrers`]: manifests by any reference, small blobs, OCI 1.1 referrers (the API and
//!   its tag-schema fallback), for signatures and artifacts.
//!
//! Policy is the commands': which digest a tag is pinned to (the project's lock file) is
//! decided in [`crate::pull`], which then has the source read that digest.
//!
//! Registry quirks (wrong or missing media types, no `Content-Length`, 401 for "not found")
//! are handled here and nowhere else.

mod auth;
mod cert_validity;
pub mod challenge;
pub mod client;
pub mod cred_helper;
pub mod credentials;
pub mod destination;
mod known_blobs;
pub mod login;
pub mod referrers;
pub mod repository;
pub mod source;
mod tls;
mod upload;

use std::path::PathBuf;

pub use destination::RegistryDestination;
pub use repository::{RemoteImage, delete_remote, inspect, list_tags};
pub use source::RegistrySource;

use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::progress::Progress;

/// Every manifest type lade reads; registries may still answer with another.
const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The `Accept` header of every manifest request: [`MANIFEST_TYPES`], written out because a
/// constant cannot be joined at compile time (a test keeps the two equal).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                               application/vnd.oci.image.manifest.v1+json, \
                               application/vnd.docker.distribution.manifest.list.v2+json, \
                               application/vnd.docker.distribution.manifest.v2+json";

/// How to talk to registries, from the command line (ch-image's option names).
#[derive(Clone)]
pub struct Options {
    /// `--tls-no-verify`: accept any certificate, and plain HTTP, for this run.
    pub tls_no_verify: bool,
    /// `--tls-ca-file`: PEM certificates to trust besides the system's and Mozilla's.
    pub ca_file: Option<PathBuf>,
    /// When credentials are sent (`--auth`, `--no-auth`, `LADE_AUTH`).
    pub auth: AuthMode,
    /// `--password-many`: ask for the password every time one is needed.
    pub password_many: bool,
    /// Where credentials are looked up; `None`: this process's environment.
    pub env: Option<credentials::Env>,
    pub progress: Progress,
}

/// When reads send credentials. Push (and remote delete) always authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// `--no-auth` / `LADE_AUTH=no`: never, as ch-image without `--auth`.
    Anonymous,
    /// The default: anonymous first; when the registry refuses that, once more with the
    /// credentials a login file (or the credential helper it names) holds for the registry, as
    /// Podman, skopeo and Docker use them. Never `$LADE_USERNAME` or a prompt.
    #[default]
    AnonymousThenLogins,
    /// `--auth` / `LADE_AUTH=yes`: ch-image's authenticated mode, credentials from the
    /// environment, the login files or a prompt, sent whenever the registry asks.
    Authenticated,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_no_verify: false,
            ca_file: None,
            auth: AuthMode::default(),
            password_many: false,
            env: None,
            progress: Progress::silent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_names_every_manifest_type() {
        assert_eq!(MANIFEST_ACCEPT, MANIFEST_TYPES.join(", "));
    }
}
