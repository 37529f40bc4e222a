//! Is a layer tree what its layer says? `lade fsck` unpacks the layer's blob again into the
//! work area, with the same code a pull uses, and compares the two trees entry by entry
//! ([`super::tree_diff`]). Nothing is recorded when a tree is published, so pulls pay nothing
//! for the check, and every store, old or new, is checked the same way.
//!
//! A tree a build made was not unpacked from its blob but packed into it; unpacking can
//! differ from it where lade's unpacking adjusts what it writes (permissions, special files).
//! Such a tree is also good if packing it again gives the diff-ID it was stored under.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{LayerInfo, StagedLayer, Storage};
use crate::digest::{Algorithm, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::pack::{PackOptions, pack_tree_with};
use crate::unpack::{self, ApplyMode, ApplyOptions};

pub enum Verdict {
    Good,
    /// The tree is not its layer's; `rederived` is a correct tree to put in its place, when
    /// one could be made.
    Bad {
        why: String,
        rederived: Option<StagedLayer>,
    },
}

/// Checks layer `key`'s tree (described by `info`) against its blob, which must be stored
/// and verified. `lowers` are the trees below it, topmost first, for a tree that holds copies
/// of files from lower layers (`info.lower_chain`); without them those copies are checked by
/// type only and no replacement is made.
pub fn check(
    storage: &Storage,
    key: &str,
    info: &LayerInfo,
    lowers: Option<&[PathBuf]>,
) -> Result<Verdict> {
    let stored = storage.layers().tree(key);
    let staged = storage.stage_layer("fsck")?;
    let scratch = staged.tree();
    let result = (|| {
        let fresh = unpack_fresh(storage, info, lowers, &scratch)?;
        if let Some(why) = fresh.wrong_diff_id {
            return Ok(Some((why, false)));
        }
        let mut found = super::tree_diff::differences(&scratch, &stored, &fresh.unknown)
            .map_err(|e| Error::io(format!("comparing {}", stored.display()), e))?;
        if let Some(lowers) = lowers {
            found.extend(broken_links_below(
                &scratch,
                &stored,
                &fresh.external,
                lowers,
            ));
        }
        // (Builds make no trees with copies of lower layers' files: links are not packed.)
        let built_intact = info.lower_chain.is_none() && packs_to_its_diff_id(&stored, info);
        if found.is_empty() || built_intact {
            return Ok(None);
        }
        let complete = lowers.is_some() || fresh.unknown.is_empty();
        Ok(Some((found.join("; "), complete)))
    })();
    match result {
        Ok(None) => {
            staged.discard();
            Ok(Verdict::Good)
        }
        Ok(Some((why, complete))) => {
            let rederived = if complete {
                Some(staged)
            } else {
                staged.discard();
                None
            };
            Ok(Verdict::Bad { why, rederived })
        }
        Err(e) => {
            staged.discard();
            Err(e)
        }
    }
}

/// Layer `info`'s tree made afresh from its blob, for a tree that must be made again: its
/// lower trees changed under it (see `broken_links_below`).
pub fn rederive(storage: &Storage, info: &LayerInfo, lowers: &[PathBuf]) -> Result<StagedLayer> {
    let staged = storage.stage_layer("fsck")?;
    match unpack_fresh(storage, info, Some(lowers), &staged.tree()) {
        Ok(Fresh {
            wrong_diff_id: None,
            ..
        }) => Ok(staged),
        Ok(Fresh {
            wrong_diff_id: Some(why),
            ..
        }) => {
            staged.discard();
            Err(Error::invalid(format!("layer {}", info.diff_id), why))
        }
        Err(e) => {
            staged.discard();
            Err(e)
        }
    }
}

/// What unpacking a layer's blob afresh gave.
struct Fresh {
    /// Why the blob is not the layer, if it is not.
    wrong_diff_id: Option<String>,
    /// The layer's hard links to files of lower layers (link, target).
    external: Vec<(PathBuf, PathBuf)>,
    /// Placeholders left unfilled (no lower trees given): their content is unknown.
    unknown: BTreeSet<PathBuf>,
}

/// Unpacks layer `info`'s blob into `scratch` (not yet existing) as a pull would, copies of
/// lower layers' files made from `lowers` when given.
fn unpack_fresh(
    storage: &Storage,
    info: &LayerInfo,
    lowers: Option<&[PathBuf]>,
    scratch: &Path,
) -> Result<Fresh> {
    std::fs::create_dir(scratch).at(scratch)?;
    let blob = storage.blobs().open(&info.blob)?;
    let what = format!("layer {} (blob {})", info.diff_id, info.blob);
    let report = unpack::apply_layer(
        io::BufReader::with_capacity(1 << 20, blob),
        scratch,
        &ApplyOptions {
            mode: ApplyMode::OverlayTree,
            what: &what,
        },
    )?;
    let mut fresh = Fresh {
        wrong_diff_id: None,
        unknown: BTreeSet::new(),
        external: report.external_hardlinks,
    };
    // Directories the layer did not list take their metadata from the layers below, in a
    // tree stored above them (`layer_install`): as a pull made it, or unknown without them.
    let adopted = if info.lower_chain.is_some() {
        report.implicit_dirs
    } else {
        Vec::new()
    };
    if report.diff_id != info.diff_id {
        fresh.wrong_diff_id = Some(format!(
            "its blob {} unpacks to diff-ID {}, not {}",
            info.blob, report.diff_id, info.diff_id
        ));
        return Ok(fresh);
    }
    match lowers {
        Some(lowers) => {
            let lowers: Vec<&Path> = lowers.iter().map(|p| p.as_path()).collect();
            unpack::resolve_external_hardlinks(scratch, &fresh.external, &lowers)?;
            unpack::adopt_lower_dirs(scratch, &adopted, &lowers)?;
        }
        None => {
            fresh.unknown = fresh.external.iter().map(|(l, _)| l.clone()).collect();
            fresh.unknown.extend(adopted);
        }
    }
    Ok(fresh)
}

/// A copy of a lower layer's file is a hard link to it wherever unpacking could make one
/// (so that flattening keeps the image's link): where the fresh unpack shares the lower
/// file's inode, the stored tree must too. It does not after the lower tree was replaced
/// under it.
fn broken_links_below(
    scratch: &Path,
    stored: &Path,
    links: &[(PathBuf, PathBuf)],
    lowers: &[PathBuf],
) -> Vec<String> {
    let inode = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let mut broken = Vec::new();
    for (link, target) in links {
        let Some(fresh) = inode(&scratch.join(link)) else {
            continue;
        };
        let below = lowers.iter().find_map(|l| inode(&l.join(target)));
        if below == Some(fresh) && inode(&stored.join(link)) != Some(fresh) {
            broken.push(format!(
                "/{}: not a hard link to /{} of the layer below",
                link.display(),
                target.display()
            ));
        }
    }
    broken
}

/// Whether packing `tree` as a build packs its layers gives `info.diff_id`: the tree is then
/// intact, whatever unpacking its blob would adjust.
fn packs_to_its_diff_id(tree: &Path, info: &LayerInfo) -> bool {
    let opts = PackOptions {
        fixed_mtime: None,
        overlay: true,
    };
    let hashing = HashingWriter::new(io::sink(), Algorithm::Sha256);
    match pack_tree_with(tree, hashing, opts) {
        Ok((hashing, _)) => hashing.finish().1 == info.diff_id,
        Err(_) => false,
    }
}
