//! lade: a fully unprivileged OCI container image tool.
//!
//! The library holds everything; the `lade` binary is a thin command-line layer over it.
//!
//! - [`reference`]: Docker image references and their normalisation.
//! - [`digest`]: digests and the streaming verifier every byte passes through.
//! - [`manifest`], [`platform`]: manifests, indexes and platform choice.
//! - [`transport`]: image sources and destinations (`oci:`, `oci-archive:`, the store).
//! - [`copy`]: the one generic copy between any two transports; [`pull`]: a copy into the
//!   store, tags resolved through [`lockfile`].
//! - [`lockfile`]: the project's tag lock file, `lade-tags.lock`.
//! - [`storage`]: the storage directory and its content-addressed parts.
//! - [`unpack`]: applying layers safely, without privileges.
//! - [`builder`]: `lade build`, over the Dockerfile language of [`build`].
//! - [`image_config`], [`image_writer`]: the typed image config, and the one writer of the
//!   images lade makes (a build, `import`, `push --image`).
//! - [`compression`]: a layer's compression, for packing and unpacking alike.

pub mod build;
pub mod builder;
pub mod compression;
pub mod copy;
pub mod digest;
pub mod error;
pub mod export;
pub mod fsck;
pub mod fsutil;
pub mod gc;
pub mod image_config;
pub mod image_writer;
pub mod import;
pub mod layer_install;
pub mod lockfile;
pub mod manifest;
pub mod pack;
pub mod parallel;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod run;
pub mod storage;
pub mod transport;
pub mod undelete;
pub mod unpack;

pub use error::{Error, Result};
