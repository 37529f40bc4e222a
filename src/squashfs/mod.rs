//! Single-file images, the form clusters keep images in (one file instead of thousands on a
//! parallel filesystem): SquashFS out (`lade copy SRC squashfs:FILE`) and SquashFS or SIF in
//! (`lade run FILE.sqfs`, `lade run FILE.sif`).
//!
//! - [`probe`]: what a file is (SquashFS, or SIF with a SquashFS partition, see [`sif`]),
//!   checked before anything is mounted.
//! - [`export`]: an image's layer trees written as one deterministic SquashFS file.
//! - [`serve`]: the file mounted with FUSE inside lade's own user namespace.
//! - [`supervise`]: the container as a child of lade, so that the FUSE server lives exactly
//!   as long as it does.
//!
//! What a lade SquashFS file holds besides the flattened image: the mount points `lade run`
//! and `ch-run` bind onto (as `ch-convert` adds them) where the image lacks them, and in
//! [`CONFIG_PATH`] the image's OCI config, byte for byte, which `lade run` applies as it
//! does a stored image's; [`ENVIRONMENT_PATH`] holds its `Env` in the form
//! `ch-run --set-env` reads. A file Apptainer built holds `/.singularity.d/` instead
//! ([`APPTAINER_METADATA_DIR`]), which `lade run` follows (`crate::run`'s `apptainer`).

pub mod export;
pub mod probe;
pub mod serve;
pub mod sif;
pub mod supervise;

pub use probe::ImageFile;

/// The image's OCI config inside a lade SquashFS file.
pub const CONFIG_PATH: &str = "ch/lade-image-config.json";
/// The image's environment as `KEY=VALUE` lines, `ch-run --set-env`'s default file.
pub const ENVIRONMENT_PATH: &str = "ch/environment";
/// Apptainer's and Singularity's metadata directory in an image they built: `env/*.sh`,
/// `runscript`, `actions/`, `labels.json`.
pub const APPTAINER_METADATA_DIR: &str = ".singularity.d";

/// Finds a helper program on `PATH`, for a clear error naming the package when it is missing.
pub(crate) fn find_program(name: &str, package: &str) -> crate::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            crate::Error::unsupported(
                name,
                format!("not found on PATH; install the {package} package"),
            )
        })
}
