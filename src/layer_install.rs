//! Unpacks an image's layers into the store's per-layer trees: in parallel (layers do not
//! depend on each other in overlayfs format), each streamed straight from its blob, or from the
//! network while the blob is stored ([`unpack_arriving`]), checked against its diff-ID, and
//! published only once every layer below it is in place. Where a tree is staged and how it is
//! published is the store's ([`crate::storage::StagedLayer`]); this module decides which
//! layers to unpack, checks them and chooses their keys.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest;
use crate::progress::Progress;
use crate::storage::{LayerInfo, LayerRef, LayerStore, StagedLayer, Storage};
use crate::unpack::{self, ApplyMode, ApplyOptions};

/// One layer to install: its blob (already verified in the store) and the diff-ID the
/// image config promises.
pub struct LayerJob {
    pub blob: Digest,
    pub diff_id: Digest,
}

/// A layer tree unpacked into the work area, not yet published.
pub struct Unpacked {
    staged: StagedLayer,
    info: LayerInfo,
    external: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    implicit: Vec<std::path::PathBuf>,
}

impl Unpacked {
    /// Tar entries the layer held.
    pub fn entries(&self) -> u64 {
        self.info.entries
    }

    /// Removes the staging tree (an unneeded or refused layer).
    pub fn discard(self) {
        self.staged.discard();
    }
}

/// Makes sure every layer has a tree in the store and returns how the image refers to them.
/// `staged` holds layers already unpacked while they downloaded, by blob digest: each is used
/// only if its diff-ID is the config's, and every one is either published or removed.
pub fn install_layers(
    storage: &Storage,
    jobs: &[LayerJob],
    staged: HashMap<Digest, Unpacked>,
    what: &str,
    progress: &Progress,
) -> Result<Vec<LayerRef>> {
    let layers = storage.layers();
    let diff_ids: Vec<Digest> = jobs.iter().map(|j| j.diff_id.clone()).collect();
    let chains = manifest::chain_ids(&diff_ids);

    // A tree whose layer needed copies from lower layers, or took the metadata of directories
    // it did not list from them, is keyed with the chain below it. A plain tree of a layer
    // with such directories was made as a bottom layer, and serves only there.
    let existing_key = |i: usize| -> Option<String> {
        let plain = LayerStore::key(&jobs[i].diff_id);
        if layers.has(&plain) && (i == 0 || !layers.info(&plain).is_ok_and(|x| x.implicit_dirs)) {
            return Some(plain);
        }
        let with_lower = i
            .checked_sub(1)
            .map(|below| LayerStore::key_with_lower(&jobs[i].diff_id, &chains[below]))?;
        layers.has(&with_lower).then_some(with_lower)
    };

    let missing: Vec<usize> = (0..jobs.len())
        .filter(|&i| existing_key(i).is_none())
        .collect();
    let staged = Mutex::new(staged);
    let outcome = crate::parallel::run_all(&missing, 2, |&i| {
        let ready = staged.lock().ok().and_then(|mut s| s.remove(&jobs[i].blob));
        match ready {
            Some(u) => {
                let label = format!("layer {}/{} ({})", i + 1, jobs.len(), jobs[i].blob.short());
                check_diff_id(u, &jobs[i], &label, what)
            }
            None => unpack_one(storage, &jobs[i], i, jobs.len(), what, progress),
        }
    });
    // Layers unpacked on arrival that turned out not to be needed (their tree was in the
    // store already, or --last-layer stops below them).
    for (_, u) in staged.into_inner().unwrap_or_else(|p| p.into_inner()) {
        u.discard();
    }
    if let Some(e) = outcome.error {
        for u in outcome.results.into_iter().flatten() {
            u.discard();
        }
        return Err(e);
    }
    let mut unpacked: Vec<Option<Unpacked>> = (0..jobs.len()).map(|_| None).collect();
    for (&i, u) in missing.iter().zip(outcome.results) {
        unpacked[i] = u;
    }

    // Publish bottom-up, so that a layer with hard links into lower layers can copy from
    // their published trees.
    let mut refs: Vec<LayerRef> = Vec::with_capacity(jobs.len());
    for (i, unpacked) in unpacked.into_iter().enumerate() {
        let key = match unpacked {
            None => match existing_key(i) {
                Some(k) => k,
                None => {
                    return Err(Error::invalid(
                        what,
                        format!("layer {} vanished from the store while in use", i + 1),
                    ));
                }
            },
            Some(mut u) => {
                // The bottom layer's implicit directories have nothing to take metadata from.
                let needs_lowers = !u.external.is_empty() || (i > 0 && !u.implicit.is_empty());
                let key = match i.checked_sub(1) {
                    _ if !needs_lowers => LayerStore::key(&jobs[i].diff_id),
                    None => {
                        return Err(Error::invalid(
                            what,
                            "the first layer has hard links to files outside it",
                        ));
                    }
                    Some(below) => {
                        let lowers: Vec<std::path::PathBuf> =
                            refs.iter().rev().map(|r| layers.tree(&r.tree)).collect();
                        let lower_refs: Vec<&std::path::Path> =
                            lowers.iter().map(|p| p.as_path()).collect();
                        let tree = u.staged.tree();
                        unpack::resolve_external_hardlinks(&tree, &u.external, &lower_refs)?;
                        unpack::adopt_lower_dirs(&tree, &u.implicit, &lower_refs)?;
                        u.info.lower_chain = Some(chains[below].clone());
                        LayerStore::key_with_lower(&jobs[i].diff_id, &chains[below])
                    }
                };
                layers.publish(u.staged, &key, &u.info)?;
                key
            }
        };
        refs.push(LayerRef {
            blob: jobs[i].blob.clone(),
            diff_id: jobs[i].diff_id.clone(),
            tree: key,
        });
    }
    Ok(refs)
}

fn unpack_one(
    storage: &Storage,
    job: &LayerJob,
    index: usize,
    count: usize,
    what: &str,
    progress: &Progress,
) -> Result<Unpacked> {
    let label = format!("layer {}/{} ({})", index + 1, count, job.blob.short());
    let file = storage.blobs().open(&job.blob)?;
    let size = file.metadata().ok().map(|m| m.len());
    let task = progress.bytes(
        &format!("layer {}/{} {}", index + 1, count, job.blob.short()),
        size,
    );
    let u = unpack_to_staging(
        storage,
        task.wrap_read(file),
        &job.blob,
        &label,
        what,
        progress,
    )?;
    let u = check_diff_id(u, job, &label, what)?;
    task.finish(&format!("unpacked {} entries", u.info.entries));
    Ok(u)
}

/// Unpacks a layer blob that is still arriving (see [`crate::storage::BlobStore::put_through`])
/// into a staging tree of the work area. Nothing is published: the blob's digest is known only
/// at the end of the stream and the diff-ID the config promises only at commit, so the tree
/// waits for [`install_layers`] (or is removed with the work area).
pub fn unpack_arriving(
    storage: &Storage,
    stream: &mut (dyn Read + Send),
    blob: &Digest,
    what: &str,
    progress: &Progress,
) -> Result<Unpacked> {
    let label = format!("layer {}", blob.short());
    unpack_to_staging(storage, stream, blob, &label, what, progress)
}

/// Applies one layer into a fresh staging directory; its `info.diff_id` is what the content
/// hashed to, not yet checked against anything.
fn unpack_to_staging(
    storage: &Storage,
    stream: impl Read + Send,
    blob: &Digest,
    label: &str,
    what: &str,
    progress: &Progress,
) -> Result<Unpacked> {
    let staged = storage.stage_layer("layer")?;
    let tree = staged.tree();
    let layer_what = format!("{label} of {what}");
    let result = (|| {
        fs::create_dir(&tree).at(&tree)?;
        unpack::apply_layer(
            stream,
            &tree,
            &ApplyOptions {
                mode: ApplyMode::OverlayTree,
                what: &layer_what,
            },
        )
    })();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            staged.discard();
            return Err(e);
        }
    };
    for w in &report.warnings {
        progress.warn(&format!("{layer_what}: {w}"));
    }
    Ok(Unpacked {
        staged,
        info: LayerInfo {
            diff_id: report.diff_id,
            blob: blob.clone(),
            compression: format!("{:?}", report.compression).to_lowercase(),
            entries: report.entries,
            lower_chain: None,
            implicit_dirs: !report.implicit_dirs.is_empty(),
        },
        external: report.external_hardlinks,
        implicit: report.implicit_dirs,
    })
}

/// Keeps a staged layer only if its content is what the image config promises.
fn check_diff_id(u: Unpacked, job: &LayerJob, label: &str, what: &str) -> Result<Unpacked> {
    if u.info.diff_id == job.diff_id {
        return Ok(u);
    }
    let err = Error::invalid(
        format!("{label} of {what}"),
        format!(
            "uncompressed content is {}, but the image config says {}",
            u.info.diff_id, job.diff_id
        ),
    );
    u.discard();
    Err(err)
}
