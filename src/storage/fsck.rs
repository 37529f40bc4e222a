//! `lade fsck`: checks every object in the store and every image's references.

use super::{LayerStore, Storage};
use crate::digest::Digest;
use crate::error::Result;

#[derive(Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub trees_checked: usize,
    pub images_checked: usize,
    pub problems: Vec<String>,
    pub repaired: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-hashes every blob, checks every layer tree's description, and checks that every image
/// names blobs and trees that exist. With `repair`, corrupt blobs and images that cannot be
/// used are removed (a new pull brings them back).
pub fn fsck(storage: &Storage, repair: bool) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let blobs = storage.blobs();
    for entry in blobs.list()? {
        match entry {
            Err(path) => report.problems.push(format!(
                "{}: not a blob (foreign file name)",
                path.display()
            )),
            Ok(d) => {
                report.blobs_checked += 1;
                if !blobs.verify(&d)? {
                    report
                        .problems
                        .push(format!("blob {d}: content does not match its digest"));
                    if repair {
                        blobs.remove(&d)?;
                        report.repaired.push(format!("removed corrupt blob {d}"));
                    }
                }
            }
        }
    }
    let layers = storage.layers();
    for key in layers.list()? {
        report.trees_checked += 1;
        match layers.info(&key) {
            Ok(info) if key.starts_with(&LayerStore::key(&info.diff_id)) => {}
            Ok(info) => report.problems.push(format!(
                "layer tree {key}: describes diff-ID {}",
                info.diff_id
            )),
            Err(e) => {
                report.problems.push(format!("layer tree {key}: {e}"));
                if repair {
                    layers.remove(&key)?;
                    report
                        .repaired
                        .push(format!("removed broken layer tree {key}"));
                }
            }
        }
    }
    let images = storage.images();
    for record in images.list()? {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.problems.push(format!("image record: {e}"));
                continue;
            }
        };
        report.images_checked += 1;
        let mut missing: Vec<String> = Vec::new();
        let need: Vec<&Digest> = [&record.manifest, &record.config]
            .into_iter()
            .chain(record.layers.iter().map(|l| &l.blob))
            .collect();
        for d in need {
            if !blobs.has(d) {
                missing.push(format!("blob {d}"));
            }
        }
        for l in &record.layers {
            if !layers.has(&l.tree) {
                missing.push(format!("layer tree {}", l.tree));
            }
        }
        if !missing.is_empty() {
            report.problems.push(format!(
                "image {}: missing {}",
                record.name,
                missing.join(", ")
            ));
            if repair && let Ok(name) = record.reference() {
                images.remove(&name)?;
                report
                    .repaired
                    .push(format!("removed unusable image {}", record.name));
            }
        }
    }
    check_build_cache(storage, repair, &mut report)?;
    Ok(report)
}

/// Every build cache record must parse and name layers that are stored: collection keeps
/// them (see [`super::gc`]), so a missing one means something removed it behind lade's back.
/// Such a record would only be a miss, so repairing removes it.
fn check_build_cache(storage: &Storage, repair: bool, report: &mut FsckReport) -> Result<()> {
    let cache = storage.cache_records();
    for (key, record) in cache.list()? {
        let problem = match record {
            None => Some("does not parse".to_string()),
            Some(r) => {
                let missing: Vec<String> = r
                    .state
                    .layers
                    .iter()
                    .filter(|l| !storage.holds_layer(l))
                    .map(|l| l.diff_id.short().to_string())
                    .collect();
                (!missing.is_empty()).then(|| format!("missing layers {}", missing.join(", ")))
            }
        };
        if let Some(p) = problem {
            report
                .problems
                .push(format!("build cache state {}: {p}", short(&key)));
            if repair {
                cache.remove(&key)?;
                report
                    .repaired
                    .push(format!("removed build cache state {}", short(&key)));
            }
        }
    }
    Ok(())
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}
