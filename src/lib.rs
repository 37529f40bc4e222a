//! lade: a fully unprivileged OCI container image tool.
//!
//! The library holds everything; the `lade` binary is a thin command-line layer over it, one
//! small file per command.
//!
//! Images and where they live:
//! - [`reference`](mod@reference): Docker image references, parsed and normalised.
//! - [`digest`]: content digests and the streaming verifier every byte passes through.
//! - [`manifest`]: manifests and indexes, as exact bytes and parsed.
//! - [`platform`]: choosing an image of an index by architecture (`--arch`).
//! - [`transport`]: image sources and destinations (registries, `oci:`, `oci-archive:`, the
//!   store, `squashfs:`), mechanism only.
//! - [`storage`]: the storage directory, every path in it and its parts; `delete` and garbage
//!   collection, `undelete` and `fsck` ([`storage::gc`], [`storage::undelete`], [`storage::fsck`]).
//!
//! Operations (the commands' policy):
//! - [`copy`]: the one generic copy between any two transports, and `lade copy`'s.
//! - [`pull`]: a copy into the store, registry tags resolved through [`lockfile`].
//! - [`lockfile`]: the project's tag lock file, `lade-tags.lock`.
//! - [`push`]: a stored image or a packed directory, copied to a registry.
//! - [`pack`]: a directory tree packed into a layer, deterministically.
//! - [`import`]: an image made from a directory or tarball.
//! - [`export`]: an image's flattened root filesystem written to a directory.
//! - [`inspect`]: what `skopeo inspect` shows of an image, from any transport.
//! - [`layer_install`]: an image's layers unpacked into the store's layer trees.
//! - [`unpack`]: applying layers safely, without privileges.
//! - [`run`]: running a command in an image, in user and mount namespaces.
//! - [`squashfs`]: single-file images: an image written as one SquashFS file, and SquashFS
//!   or SIF files served with FUSE for `run`.
//! - [`dockerfile`]: the Dockerfile language (lexer, parser, instructions, substitution,
//!   `.dockerignore`).
//! - [`builder`]: `lade build`: a Dockerfile built, with the build cache ([`builder::cache`]).
//! - [`image_config`], [`image_writer`]: the typed image config, and the one writer of the
//!   images lade makes (a build, `import`, `push --image`).
//! - [`compression`]: a layer's compression, for packing and unpacking alike.
//! - [`sign`]: cosign-compatible keys, signing and verification; [`attach`]: what is attached
//!   to an image (signatures, OCI referrers) wherever it lives; [`artifact`]: ORAS artifacts
//!   and SIF files over `oras://`.
//!
//! Plumbing:
//! - [`error`]: the error type, one clear line per failure.
//! - [`progress`]: progress bars, lines and verbosity.
//! - [`parallel`]: independent jobs on a few threads, stopping at the first error.
//! - [`fsutil`]: small filesystem helpers.

pub mod artifact;
pub mod attach;
pub mod builder;
pub mod compression;
pub mod copy;
pub mod digest;
pub mod dockerfile;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod image_config;
pub mod image_writer;
pub mod import;
pub mod inspect;
pub mod layer_install;
pub mod lockfile;
pub mod manifest;
pub mod pack;
pub mod parallel;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod run;
pub mod sign;
pub mod squashfs;
pub mod storage;
pub mod transport;
pub mod unpack;

pub use error::{Error, Result};
