//! `lade fsck`: checks every object in the store and every image's references.
//!
//! Only the user's store is checked: objects an image finds in a read-only store (see
//! `read_only.rs`) count as present, unchecked, and nothing there is repaired.
//!
//! - blobs: re-hashed against their names;
//! - layer trees: their description, and (unless `--quick`) their content against a fresh
//!   unpack of their blob (`layer_check.rs`);
//! - image records: readable, and naming blobs and trees that are stored;
//! - build cache records: readable, and naming stored layers;
//! - single-file image (SIF) records: readable, and naming a stored file of the size they
//!   record and the manifest it came in (the file's content is checked with the blobs).
//!
//! `--repair` makes the store usable again without losing anything it cannot get back: a
//! corrupt blob is removed (a pull fetches it again); a damaged tree is replaced by the fresh
//! unpack of its blob, or removed when there is none (a pull unpacks it again); an image
//! that names missing objects is removed, and so is a SIF's record whose file is missing or
//! of another size (a pull brings either back); an unreadable image record is moved aside to
//! `lost+found/images/`, and the report says where. An unreadable SIF record is reported and
//! left as it is: it is the only thing that keeps its file.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::layer_check::{self, Verdict};
use super::{LayerInfo, LayerRef, LayerStore, StagedLayer, Storage};
use crate::digest::Digest;
use crate::error::Result;

#[derive(Debug, Default, Clone, Copy)]
pub struct FsckOptions {
    /// Remove or replace what is broken.
    pub repair: bool,
    /// Skip comparing layer trees with their blobs (the slow part).
    pub quick: bool,
}

#[derive(Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub trees_checked: usize,
    /// Trees whose content was compared with their blob (none with `--quick`).
    pub trees_compared: usize,
    pub images_checked: usize,
    /// Single-file images' records (see `single_files.rs`).
    pub single_files_checked: usize,
    pub problems: Vec<String>,
    pub repaired: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the store as the module documentation says.
pub fn fsck(storage: &Storage, opts: FsckOptions) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let bad_blobs = check_blobs(storage, opts, &mut report)?;
    check_trees(storage, opts, &bad_blobs, &mut report)?;
    check_images(storage, opts, &mut report)?;
    check_build_cache(storage, opts.repair, &mut report)?;
    check_single_files(storage, opts.repair, &mut report)?;
    Ok(report)
}

/// Re-hashes every blob; returns the corrupt ones.
fn check_blobs(
    storage: &Storage,
    opts: FsckOptions,
    report: &mut FsckReport,
) -> Result<HashSet<Digest>> {
    let blobs = storage.blobs();
    let mut bad = HashSet::new();
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
                    if opts.repair {
                        blobs.remove(&d)?;
                        report.repaired.push(format!("removed corrupt blob {d}"));
                    }
                    bad.insert(d);
                }
            }
        }
    }
    Ok(bad)
}

fn check_trees(
    storage: &Storage,
    opts: FsckOptions,
    bad_blobs: &HashSet<Digest>,
    report: &mut FsckReport,
) -> Result<()> {
    let layers = storage.layers();
    let blobs = storage.blobs();
    let lowers = if opts.quick {
        HashMap::new()
    } else {
        trees_below(storage)?
    };
    // Trees with copies of lower layers' files come after the trees they build on: those
    // copies are hard links to the lower trees' files, so a repair of a lower tree makes
    // them again (see `Trees::change`).
    let mut keys: Vec<(String, Result<LayerInfo>)> = layers
        .list()?
        .into_iter()
        .map(|k| {
            let info = layers.info(&k);
            (k, info)
        })
        .collect();
    keys.sort_by_key(|(k, info)| {
        let builds_on_lowers = info.as_ref().is_ok_and(|i| i.lower_chain.is_some());
        (builds_on_lowers, lowers.get(k).map_or(0, Vec::len))
    });
    let mut trees = Trees {
        storage,
        layers,
        lowers,
        opts,
        remake: HashSet::new(),
        gone: HashSet::new(),
        report,
    };
    for (key, info) in keys {
        // Removed by the repair of a tree below it, and not to be made again: a pull does.
        if trees.gone.contains(&key) && !trees.remake.contains(&key) {
            continue;
        }
        trees.report.trees_checked += 1;
        let info = match info {
            Ok(info) if key.starts_with(&LayerStore::key(&info.diff_id)) => info,
            Ok(info) => {
                let why = format!("describes diff-ID {}", info.diff_id);
                trees.problem(&key, why, "misnamed")?;
                continue;
            }
            Err(e) => {
                trees.problem(&key, e.to_string(), "broken")?;
                continue;
            }
        };
        if opts.quick {
            continue;
        }
        if trees.remake.remove(&key) {
            trees.remake(&key, &info)?;
            continue;
        }
        if bad_blobs.contains(&info.blob) {
            // Reported already. A tree that cannot be checked is not kept by a repair, or a
            // pull would reuse it unchecked beside the blob it fetches again.
            trees.change(&key, None, "unverifiable")?;
            continue;
        }
        if !blobs.has(&info.blob) {
            let why = format!("its blob {} is missing, so it cannot be checked", info.blob);
            trees.problem(&key, why, "unverifiable")?;
            continue;
        }
        trees.report.trees_compared += 1;
        let below = trees.below(&key);
        match layer_check::check(storage, &key, &info, below.as_deref()) {
            Ok(Verdict::Good) => {}
            Ok(Verdict::Bad { why, rederived }) => {
                let why = format!("differs from its layer: {why}");
                match rederived {
                    Some(staged) if opts.repair => {
                        trees
                            .report
                            .problems
                            .push(format!("layer tree {key}: {why}"));
                        trees.change(&key, Some(staged), "damaged")?;
                    }
                    Some(staged) => {
                        staged.discard();
                        trees.problem(&key, why, "damaged")?;
                    }
                    None => trees.problem(&key, why, "damaged")?,
                }
            }
            Err(e) => trees.problem(&key, format!("cannot be checked: {e}"), "uncheckable")?,
        }
    }
    Ok(())
}

/// The layer trees' part of a check, and of a repair.
struct Trees<'a> {
    storage: &'a Storage,
    layers: LayerStore,
    /// Keys of the trees below each tree that sits above others ([`trees_below`]).
    lowers: HashMap<String, Vec<String>>,
    opts: FsckOptions,
    /// Trees removed because a tree below them changed, to make again when their turn comes.
    remake: HashSet<String>,
    /// Trees this repair removed (linked to a tree it changed), not to be checked again.
    gone: HashSet<String>,
    report: &'a mut FsckReport,
}

impl Trees<'_> {
    fn below(&self, key: &str) -> Option<Vec<PathBuf>> {
        self.lowers
            .get(key)
            .map(|b| b.iter().map(|k| self.layers.tree(k)).collect())
    }

    /// Reports a problem with tree `key`; a repair removes the tree (a pull unpacks it again).
    fn problem(&mut self, key: &str, why: String, adjective: &str) -> Result<()> {
        self.report
            .problems
            .push(format!("layer tree {key}: {why}"));
        self.change(key, None, adjective)
    }

    /// With `--repair`, replaces tree `key` with `fresh`, or removes it. Trees with hard
    /// links to its files go first (they would stay linked to the old files, which a pull
    /// would not notice); those are made again after it, or left for a pull to make when it
    /// is gone. A kill in between leaves them absent, never stale.
    fn change(&mut self, key: &str, fresh: Option<StagedLayer>, adjective: &str) -> Result<()> {
        if !self.opts.repair {
            if let Some(staged) = fresh {
                staged.discard();
            }
            return Ok(());
        }
        let linked: Vec<String> = self
            .lowers
            .iter()
            .filter(|(k, below)| below.iter().any(|b| b == key) && self.builds_on_lowers(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &linked {
            // (Two trees below it may both change.)
            if self.gone.insert(k.clone()) {
                self.layers.remove(k)?;
            }
        }
        match fresh {
            Some(staged) => {
                self.layers.replace(staged, key)?;
                self.report.repaired.push(format!(
                    "replaced {adjective} layer tree {key} with a fresh unpack of its blob"
                ));
                self.remake.extend(linked);
            }
            None => {
                self.layers.remove(key)?;
                self.report.repaired.push(format!(
                    "removed {adjective} layer tree {key} (a pull unpacks it again)"
                ));
                for k in linked {
                    self.report.repaired.push(format!(
                        "removed layer tree {k}, which links to files of {key} (a pull \
                         unpacks it again)"
                    ));
                }
            }
        }
        Ok(())
    }

    fn builds_on_lowers(&self, key: &str) -> bool {
        self.layers.info(key).is_ok_and(|i| i.lower_chain.is_some())
    }

    /// Makes tree `key`, removed by [`change`](Self::change), again from its blob.
    fn remake(&mut self, key: &str, info: &LayerInfo) -> Result<()> {
        let made = self.below(key).map_or_else(
            || {
                Err(crate::error::Error::invalid(
                    key,
                    "its lower trees are unknown",
                ))
            },
            |below| layer_check::rederive(self.storage, info, &below),
        );
        let note = match made {
            Ok(staged) => {
                self.layers.publish(staged, key, info)?;
                format!("made layer tree {key} again over the trees it links to")
            }
            Err(e) => format!("left layer tree {key} for a pull to make again: {e}"),
        };
        self.report.repaired.push(note);
        Ok(())
    }
}

/// For each tree that sits above others in some image or build step, the keys of those
/// trees, topmost first: what a tree with copies of lower layers' files was made from.
fn trees_below(storage: &Storage) -> Result<HashMap<String, Vec<String>>> {
    let mut stacks: Vec<Vec<LayerRef>> = Vec::new();
    stacks.extend(
        storage
            .images()
            .list()?
            .into_iter()
            .flatten()
            .map(|r| r.layers),
    );
    stacks.extend(
        storage
            .cache_records()
            .list()?
            .into_iter()
            .filter_map(|(_, r)| r.map(|r| r.state.layers)),
    );
    stacks.extend(
        storage
            .deleted_images()
            .list()?
            .into_iter()
            .map(|d| d.value.record.layers),
    );
    let mut below = HashMap::new();
    for stack in stacks {
        for (i, l) in stack.iter().enumerate().skip(1) {
            below
                .entry(l.tree.clone())
                .or_insert_with(|| stack[..i].iter().rev().map(|l| l.tree.clone()).collect());
        }
    }
    Ok(below)
}

fn check_images(storage: &Storage, opts: FsckOptions, report: &mut FsckReport) -> Result<()> {
    let images = storage.images();
    let blobs = storage.blobs();
    let layers = storage.layers();
    for (path, e) in images.unreadable()? {
        report.problems.push(format!("image record: {e}"));
        if opts.repair {
            let aside = images.move_aside(&path)?;
            report.repaired.push(format!(
                "moved unreadable image record {} to {}",
                path.display(),
                aside.display()
            ));
        }
    }
    for record in images.list()?.into_iter().flatten() {
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
            if opts.repair
                && let Ok(name) = record.reference()
            {
                images.remove(&name)?;
                report
                    .repaired
                    .push(format!("removed unusable image {}", record.name));
            }
        }
    }
    Ok(())
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

/// Every SIF record must parse and name its file, stored with the size it records, and the
/// manifest it came in: collection keeps both (see [`super::gc`]). A record naming what is not
/// there cannot run, so repairing removes it (a pull brings it back).
fn check_single_files(storage: &Storage, repair: bool, report: &mut FsckReport) -> Result<()> {
    let single_files = storage.single_files();
    let blobs = storage.blobs();
    for entry in single_files.entries()? {
        let record = match entry {
            Ok(record) => record,
            Err(e) => {
                report.problems.push(format!("SIF record: {e}"));
                continue;
            }
        };
        report.single_files_checked += 1;
        let problem = if !blobs.has(&record.blob) {
            Some(format!("its file, blob {}, is missing", record.blob))
        } else if !blobs.has(&record.manifest) {
            Some(format!(
                "its manifest, blob {}, is missing",
                record.manifest
            ))
        } else {
            let path = blobs.path(&record.blob);
            let size = std::fs::metadata(&path)
                .map_err(|e| crate::error::Error::io_path(&path, e))?
                .len();
            (size != record.size).then(|| {
                format!(
                    "its file, blob {}, is {size} bytes; the record says {}",
                    record.blob, record.size
                )
            })
        };
        let Some(problem) = problem else {
            continue;
        };
        report
            .problems
            .push(format!("SIF {}: {problem}", record.name));
        if repair && let Ok(name) = crate::reference::Reference::parse(&record.name) {
            single_files.remove(&name)?;
            report.repaired.push(format!(
                "removed unusable SIF {} (pull it again: lade pull {} {})",
                record.name,
                record.source,
                name.familiar()
            ));
        }
    }
    Ok(())
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LockMode;
    use crate::storage::single_files::SingleFile;

    /// A store holding one SIF record whose file is `file` (stored) but that says `size`.
    fn store_with_sif(dir: &std::path::Path, file: &[u8], size: u64) -> Storage {
        let storage = Storage::open(dir, LockMode::None).unwrap();
        let blob = storage.blobs().put_bytes(file).unwrap();
        let manifest = storage.blobs().put_bytes(b"{}").unwrap();
        let record = SingleFile {
            name: "docker.io/library/tool:1".into(),
            blob,
            size,
            manifest,
            source: "oras://example.org/tool:1".into(),
        };
        storage.single_files().put(&record).unwrap();
        storage
    }

    #[test]
    fn a_sif_record_must_name_its_file_at_the_size_it_says() {
        let tmp = tempfile::tempdir().unwrap();
        let good = store_with_sif(&tmp.path().join("good"), b"sif-bytes", 9);
        let report = fsck(&good, FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.single_files_checked, 1);

        let bad = store_with_sif(&tmp.path().join("bad"), b"sif-bytes", 10);
        let report = fsck(&bad, FsckOptions::default()).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("is 9 bytes; the record says 10"),
            "{:?}",
            report.problems
        );
        assert!(!bad.single_files().list().unwrap().is_empty());
        let opts = FsckOptions {
            repair: true,
            quick: false,
        };
        let report = fsck(&bad, opts).unwrap();
        assert!(report.repaired[0].contains("lade pull oras://example.org/tool:1 tool:1"));
        assert!(bad.single_files().list().unwrap().is_empty());
        assert!(fsck(&bad, FsckOptions::default()).unwrap().is_clean());
    }

    #[test]
    fn a_sif_record_whose_file_is_gone_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = store_with_sif(tmp.path(), b"sif-bytes", 9);
        let blob = storage.single_files().list().unwrap()[0].blob.clone();
        storage.blobs().remove(&blob).unwrap();
        let report = fsck(&storage, FsckOptions::default()).unwrap();
        assert_eq!(
            report.problems,
            vec![format!(
                "SIF docker.io/library/tool:1: its file, blob {blob}, is missing"
            )]
        );
        std::fs::write(tmp.path().join("single-files/broken.json"), "{\"name\": 1}").unwrap();
        let report = fsck(&storage, FsckOptions::default()).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.starts_with("SIF record: ") && p.contains("broken.json")),
            "{:?}",
            report.problems
        );
    }
}
