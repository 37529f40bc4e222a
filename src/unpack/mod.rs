//! Applying OCI image layers (image-spec `layer.md`) to directory trees, without privileges.
//!
//! A layer is *applied*, not merely extracted, in one of two forms ([`ApplyMode`]): one
//! overlayfs-format tree per layer (stacked at run time), or the flattened image. Both share every
//! rule below, so [`flatten_trees`] of the per-layer trees gives what applying the layers with
//! [`ApplyMode::Flatten`] gives.
//!
//! The rules, each chosen so that no layer can write outside its root:
//!
//! - **Member names** are cleaned lexically as if rooted at `/`: a leading `/` is stripped, empty
//!   and `.` components dropped, and `..` resolved lexically without ever climbing above the root
//!   (`../x` and `a/../../x` become `x`), like umoci's `CleanPath`. A name that was absolute or
//!   tried to climb gets a warning; a name with a NUL byte is an error.
//! - **Symlinks** are created verbatim (absolute and `..` targets stay as they are) and are never
//!   followed while writing: every path is resolved beneath the root with `openat2(
//!   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from a directory fd.
//! - **Parent directories** missing from the layer are created (`0755`). A non-directory standing
//!   where a parent directory must be (a symlink, a file, a whiteout) is replaced by a directory,
//!   with a warning except for whiteouts. Docker and umoci instead follow such a symlink within
//!   the root; lade never follows one, and replacing is also what overlayfs shows when a layer's
//!   directory covers a lower symlink, so both modes and `lade run` agree.
//! - **Type changes** replace: an entry whose path holds something else (a file where a directory
//!   was, or the reverse) removes it first; a directory entry for an existing directory only
//!   updates its metadata and keeps the contents.
//! - **Whiteouts** `.wh.NAME` hide only what the lower layers have, wherever they stand in the
//!   tar: a path this layer itself creates (or a directory holding something this layer creates)
//!   stays, like umoci's "upper paths". **Opaque markers** `.wh..wh..opq` hide everything the
//!   lower layers have in their directory, before or after the layer's own children. A whiteout
//!   of a path that does not exist is fine. In OverlayTree mode these become a 0/0 character
//!   device and `user.overlay.opaque=y`; a directory that replaces a whiteout of the same layer is
//!   made opaque, since in a flattened image it would start empty.
//! - **Hard links** resolve their target (cleaned like names) beneath the root without following
//!   symlinks; they may point at files of earlier layers. A target that is missing, a directory,
//!   reached through a symlink, or deleted by the layer is an error. In OverlayTree mode a target
//!   absent from the layer becomes an empty placeholder file listed in
//!   [`LayerReport::external_hardlinks`], to be filled by [`resolve_external_hardlinks`].
//! - **FIFOs** are created (`mknod(S_IFIFO)` needs no privilege). **Devices** are skipped with a
//!   warning (an unprivileged user cannot create them); the only devices lade creates are its own
//!   whiteouts.
//! - **Metadata** (the fix-ups live in `meta.rs`): ownership ignored; modes exactly the image's,
//!   setuid/setgid/sticky and `0000` included (as `umoci --rootless`); only `user.*` xattrs other
//!   than `user.overlay.*`; mtimes and atimes kept to the nanosecond (PAX); directory metadata
//!   applied after the layer's last entry, deepest first. Where a mode locks lade out of a tree
//!   it works on (a lower layer's `0555` directory in Flatten mode, a `0000` one when flattening
//!   or looking up hard-link targets), it grants itself access and puts the mode back
//!   (`access.rs`, umoci's `unpriv` approach).
//! - **Corrupt input** (bad compressed data, a bad tar header, a stream that ends inside an entry)
//!   is an error naming the layer and the cause. A tar that ends cleanly between entries but
//!   without its end-of-archive blocks is accepted with a warning, as GNU tar and Go's
//!   archive/tar (which most layers are written with) accept it. A PAX header or GNU long
//!   name larger than 1 MiB is refused at its header (`tar_guard.rs`): the `tar` crate would
//!   read it whole into memory.
//!
//! Nothing is fsynced: the caller syncs the filesystem once and publishes the tree by rename.

mod access;
mod apply;
mod copy;
mod flatten;
mod hardlinks;
mod leaf;
mod meta;
mod names;
mod pipeline;
mod safe_fs;
mod tar_guard;
mod tree;
mod workers;

use std::path::PathBuf;

pub(crate) use access::{DIR_RX, Granted, grant_dir_path, open_file_path};
pub use apply::apply_layer;
pub use flatten::flatten_trees;
pub use hardlinks::{adopt_lower_dirs, resolve_external_hardlinks};
pub(crate) use safe_fs::remove_all_at;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// Unpack one layer into its own fresh, empty tree in overlayfs format (the store keeps one
    /// such tree per layer, keyed by diff-ID, and `lade run` stacks them with unprivileged
    /// overlayfs): a whiteout `.wh.NAME` becomes a 0/0 character device NAME (creatable
    /// unprivileged since Linux 5.8), an opaque marker `.wh..wh..opq` sets the xattr
    /// `user.overlay.opaque=y` on its directory (overlayfs mounted with `userxattr`). If the
    /// filesystem refuses either, the error is [`crate::Error::Unsupported`], and the caller
    /// falls back to Flatten.
    OverlayTree,
    /// Apply the layer on top of the tree already in `root` (flattened image, like `umoci
    /// unpack`): whiteouts delete from lower layers, opaque markers empty the lower directory,
    /// exactly per OCI image-spec layer.md.
    Flatten,
}

pub struct ApplyOptions<'a> {
    pub mode: ApplyMode,
    /// Names the layer in messages, e.g. "layer sha256:ab12… of oci:/x".
    pub what: &'a str,
}

#[derive(Debug)]
pub struct LayerReport {
    /// sha256 of the decompressed tar stream, all of it including padding after the end blocks.
    pub diff_id: crate::digest::Digest,
    pub compression: crate::compression::Compression,
    /// Tar entries read, skipped ones and whiteouts included.
    pub entries: u64,
    /// E.g. "skipped character device dev/null", "member name ../x neutralised to x".
    pub warnings: Vec<String>,
    /// OverlayTree mode only: hard links whose target is not in this layer (it lives in a lower
    /// layer); the caller resolves them with [`resolve_external_hardlinks`] once the lower trees
    /// exist. (link path, target path), both relative.
    pub external_hardlinks: Vec<(PathBuf, PathBuf)>,
    /// OverlayTree mode only: parent directories the layer needed but did not list (umoci
    /// writes such layers). Applied on the image below, such a directory is the one already
    /// there, with its metadata; in a tree of its own it is made `0755`, and the caller gives
    /// it the lower layers' metadata with [`adopt_lower_dirs`] once their trees exist, so that
    /// the overlay shows what a flattened image would. Relative paths.
    pub implicit_dirs: Vec<PathBuf>,
}
