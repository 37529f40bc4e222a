//! `docker://`: images in registries speaking the OCI distribution API (Docker Hub, Quay,
//! GHCR, GitLab, Harbor, Distribution, zot, ...).
//!
//! - [`client`]: one registry host: HTTPS (plain HTTP only with `--tls-no-verify`), retries
//!   with backoff, 429 `Retry-After`, redirects, and authentication as challenged;
//! - [`challenge`]: `WWW-Authenticate` parsing;
//! - [`credentials`]: where user name and password come from, kept out of every message;
//! - `tls`: the certificate authorities trusted, loaded lazily (the CA file, Mozilla's, then
//!   the system's);
//! - [`source`]: the [`ImageSource`](crate::transport::ImageSource): manifests by tag or
//!   digest, resumable blob streams.
//!
//! Policy is the commands': which digest a tag is pinned to (the project's lock file) is
//! decided in [`crate::pull`], which then has the source read that digest.
//!
//! Registry quirks (wrong or missing media types, no `Content-Length`, 401 for "not found")
//! are handled here and nowhere else.

pub mod challenge;
pub mod client;
pub mod credentials;
pub mod destination;
mod known_blobs;
pub mod source;
mod tls;

use std::path::PathBuf;

pub use destination::{RegistryDestination, delete_remote, list_tags};
pub use source::{RegistrySource, RemoteImage, inspect};

use crate::progress::Progress;

/// How to talk to registries, from the command line (ch-image's option names).
#[derive(Clone)]
pub struct Options {
    /// `--tls-no-verify`: accept any certificate, and plain HTTP, for this run.
    pub tls_no_verify: bool,
    /// `--tls-ca-file`: PEM certificates to trust besides the system's and Mozilla's.
    pub ca_file: Option<PathBuf>,
    /// `--auth` / `LADE_AUTH=yes`: authenticated mode (anonymous otherwise).
    pub auth: bool,
    /// `--password-many`: ask for the password every time one is needed.
    pub password_many: bool,
    /// Where credentials are looked up; `None`: this process's environment.
    pub env: Option<credentials::Env>,
    pub progress: Progress,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_no_verify: false,
            ca_file: None,
            auth: false,
            password_many: false,
            env: None,
            progress: Progress::silent(),
        }
    }
}
