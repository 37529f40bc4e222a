//! lade's error type. Every variant names the object and the cause so that the CLI can print it
//! as one clear line.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("invalid image reference '{reference}': {why}")]
    BadReference { reference: String, why: String },

    #[error("invalid digest '{digest}': {why}")]
    BadDigest { digest: String, why: String },

    #[error("invalid transport '{spec}': {why}")]
    BadTransport { spec: String, why: String },

    #[error("storage directory {path}: {why}")]
    Storage { path: PathBuf, why: String },

    #[error("image not found: {0}")]
    ImageNotFound(String),

    #[error("{what}: malformed JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what}: {why}")]
    Invalid { what: String, why: String },

    #[error("{what}: unsupported: {why}")]
    Unsupported { what: String, why: String },

    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        // A verifying reader reports a digest or size mismatch as InvalidData wrapping our own
        // message, which already names the object; avoid saying the name twice.
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn io_path(path: &Path, source: io::Error) -> Error {
        Error::io(path.display().to_string(), source)
    }

    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn unsupported(what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Unsupported {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Error {
        Error::Json {
            what: what.into(),
            source,
        }
    }

    pub fn storage(path: &Path, why: impl Into<String>) -> Error {
        Error::Storage {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// Adds "what" context to `io::Result`s.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io_path(path, e))
    }
}
