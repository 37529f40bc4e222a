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
use crate::error::{IoContext, Result};
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
        std::fs::create_dir(&scratch).at(&scratch)?;
        let blob = storage.blobs().open(&info.blob)?;
        let what = format!("layer {} (blob {})", info.diff_id, info.blob);
        let report = unpack::apply_layer(
            io::BufReader::with_capacity(1 << 20, blob),
            &scratch,
            &ApplyOptions {
                mode: ApplyMode::OverlayTree,
                what: &what,
            },
        )?;
        if report.diff_id != info.diff_id {
            return Ok(Some((
                format!(
                    "its blob {} unpacks to diff-ID {}, not {}",
                    info.blob, report.diff_id, info.diff_id
                ),
                false,
            )));
        }
        let mut unknown = BTreeSet::new();
        let mut complete = true;
        if !report.external_hardlinks.is_empty() {
            match lowers {
                Some(lowers) => {
                    let lowers: Vec<&Path> = lowers.iter().map(|p| p.as_path()).collect();
                    unpack::resolve_external_hardlinks(
                        &scratch,
                        &report.external_hardlinks,
                        &lowers,
                    )?;
                }
                None => {
                    unknown.extend(report.external_hardlinks.iter().map(|(l, _)| l.clone()));
                    complete = false;
                }
            }
        }
        let mut found = super::tree_diff::differences(&scratch, &stored, &unknown)
            .map_err(|e| crate::error::Error::io(format!("comparing {}", stored.display()), e))?;
        if let Some(lowers) = lowers {
            found.extend(broken_links_below(
                &scratch,
                &stored,
                &report.external_hardlinks,
                lowers,
            ));
        }
        if found.is_empty() || packs_to_its_diff_id(&stored, info) {
            return Ok(None);
        }
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
