//! Unpacks an image's layers into the store's per-layer trees: in parallel (layers do not
//! depend on each other in overlayfs format), each streamed straight from its blob, checked
//! against its diff-ID, and published by rename.

use std::fs;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest;
use crate::progress::Progress;
use crate::storage::{LayerInfo, LayerRef, LayerStore, Storage};
use crate::unpack::{self, ApplyMode, ApplyOptions};

/// One layer to install: its blob (already verified in the store) and the diff-ID the
/// image config promises.
pub struct LayerJob {
    pub blob: Digest,
    pub diff_id: Digest,
}

struct Unpacked {
    staging: std::path::PathBuf,
    info: LayerInfo,
    external: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Makes sure every layer has a tree in the store and returns how the image refers to them.
/// `limit` (for `--last-layer`) unpacks only the first N layers.
pub fn install_layers(
    storage: &Storage,
    jobs: &[LayerJob],
    what: &str,
    progress: &Progress,
) -> Result<Vec<LayerRef>> {
    let layers = storage.layers();
    let diff_ids: Vec<Digest> = jobs.iter().map(|j| j.diff_id.clone()).collect();
    let chains = manifest::chain_ids(&diff_ids);

    // A tree whose layer needed copies from lower layers is keyed with the chain below it.
    let existing_key = |i: usize| -> Option<String> {
        let plain = LayerStore::key(&jobs[i].diff_id);
        if layers.has(&plain) {
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
    let outcome = crate::parallel::run_all(&missing, 2, |&i| {
        unpack_one(storage, &jobs[i], i, jobs.len(), what, progress)
    });
    if let Some(e) = outcome.error {
        for u in outcome.results.into_iter().flatten() {
            let _ = crate::fsutil::remove_all(&u.staging);
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
                let key = if u.external.is_empty() {
                    LayerStore::key(&jobs[i].diff_id)
                } else {
                    let Some(below) = i.checked_sub(1) else {
                        return Err(Error::invalid(
                            what,
                            "the first layer has hard links to files outside it",
                        ));
                    };
                    let lowers: Vec<std::path::PathBuf> =
                        refs.iter().rev().map(|r| layers.tree(&r.tree)).collect();
                    let lower_refs: Vec<&std::path::Path> =
                        lowers.iter().map(|p| p.as_path()).collect();
                    unpack::resolve_external_hardlinks(
                        &u.staging.join("tree"),
                        &u.external,
                        &lower_refs,
                    )?;
                    u.info.lower_chain = Some(chains[below].clone());
                    LayerStore::key_with_lower(&jobs[i].diff_id, &chains[below])
                };
                let info_path = u.staging.join("info.json");
                let json = serde_json::to_vec_pretty(&u.info)
                    .map_err(|e| Error::json(info_path.display().to_string(), e))?;
                fs::write(&info_path, json).at(&info_path)?;
                layers.publish(&u.staging, &key)?;
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
    let staging = storage.scratch_path("layer");
    let tree = staging.join("tree");
    fs::create_dir_all(&tree).at(&tree)?;
    let layer_what = format!(
        "layer {}/{} ({}) of {what}",
        index + 1,
        count,
        job.blob.short()
    );
    let result = (|| {
        let blobs = storage.blobs();
        let file = blobs.open(&job.blob)?;
        let size = file.metadata().ok().map(|m| m.len());
        let task = progress.bytes(
            &format!("layer {}/{} {}", index + 1, count, job.blob.short()),
            size,
        );
        let report = unpack::apply_layer(
            task.wrap_read(file),
            &tree,
            &ApplyOptions {
                mode: ApplyMode::OverlayTree,
                what: &layer_what,
            },
        )?;
        for w in &report.warnings {
            progress.warn(&format!("{layer_what}: {w}"));
        }
        if report.diff_id != job.diff_id {
            return Err(Error::invalid(
                &layer_what,
                format!(
                    "uncompressed content is {}, but the image config says {}",
                    report.diff_id, job.diff_id
                ),
            ));
        }
        task.finish(&format!("unpacked {} entries", report.entries));
        Ok(Unpacked {
            staging: staging.clone(),
            info: LayerInfo {
                diff_id: job.diff_id.clone(),
                blob: job.blob.clone(),
                compression: format!("{:?}", report.compression).to_lowercase(),
                entries: report.entries,
                lower_chain: None,
            },
            external: report.external_hardlinks,
        })
    })();
    if result.is_err() {
        let _ = crate::fsutil::remove_all(&staging);
    }
    result
}
