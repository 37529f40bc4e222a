//! lade: a fully unprivileged OCI container image tool.
//!
//! The library holds everything; the `lade` binary is a thin command-line layer over it.

pub mod digest;
pub mod error;
pub mod reference;
pub mod unpack;

pub use error::{Error, Result};
