//! Deleting images and collecting what nothing needs any more. Runs under the exclusive
//! storage lock, so no pull or build is half-way through.
//!
//! Only the user's store is collected: blobs, trees and records of read-only stores (see
//! `read_only.rs`) are never listed, marked or removed here, and an image of the user's that
//! uses a read-only store's objects simply keeps nothing of its own for them.
//!
//! Mark and sweep. What is live:
//!
//! - everything an image record uses (manifest, index, config, layer blobs and trees);
//! - every layer a build cache record ([`super::cache_records`]) names, so that `lade delete
//!   IMG` followed by a rebuild of the same Dockerfile is all hits, as in ch-image (whose
//!   `delete` leaves the cache alone); `lade build-cache --gc` and `--reset` are what release
//!   cache space;
//! - the manifest, index and config of each deleted image `lade undelete` can still restore,
//!   i.e. whose layers are live by the rules above. A deleted image whose layers are not (a
//!   pulled image no build used), or whose name exists again, is forgotten here;
//! - the whole of each deleted image `lade import` made (nothing else could bring it back),
//!   until `lade build-cache --gc` forgets it ([`forget_deleted_imports`]) or `--reset`.
//!
//! Every object goes as a whole (see [`super::Trash`]): image records first, then layer
//! trees, then blobs, so that a kill part-way leaves only unused objects for the next collection.
//! An image record that cannot be read stops collection before anything is removed: what it
//! keeps cannot be known (`lade fsck --repair` moves it aside).

use std::collections::HashSet;

use globset::GlobBuilder;

use super::{ImageRecord, Storage};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Kind, RawManifest};
use crate::reference::Reference;

/// Deletes every image whose name (full or familiar) matches `pattern`, a shell glob as in
/// `ch-image delete 'foo*'`. Returns the names deleted; no match is an error, and so is an
/// unreadable image record (nothing is deleted then: collection could not follow).
pub fn delete_matching(storage: &Storage, pattern: &str) -> Result<Vec<String>> {
    refuse_unreadable_records(storage)?;
    let glob = GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map_err(|e| Error::invalid(format!("pattern '{pattern}'"), e.to_string()))?
        .compile_matcher();
    // A plain reference also matches its normalised forms (alpine = docker.io/library/alpine:latest).
    let exact = Reference::parse(pattern).ok();
    let images = storage.images();
    let mut deleted = Vec::new();
    for record in images.list()?.into_iter().flatten() {
        let Ok(name) = record.reference() else {
            continue;
        };
        let hit = glob.is_match(&record.name)
            || glob.is_match(name.familiar())
            || exact.as_ref().is_some_and(|e| *e == name);
        if hit {
            remember_deleted(storage, &record, &name)?;
            if images.remove(&name)? {
                deleted.push(name.familiar());
            }
        }
    }
    if deleted.is_empty() {
        // Images of read-only stores are never the user's to delete.
        let read_only = storage.list_all_images()?.into_iter().flatten().find(|l| {
            l.read_only_store.is_some()
                && (glob.is_match(&l.record.name)
                    || l.record
                        .reference()
                        .is_ok_and(|n| glob.is_match(n.familiar()) || exact.as_ref() == Some(&n)))
        });
        if let Some(l) = read_only {
            let name = l
                .record
                .reference()
                .map_or(l.record.name.clone(), |n| n.familiar());
            return Err(Error::invalid(
                format!("image {name}"),
                format!(
                    "is in the read-only store {}, which lade never changes",
                    l.read_only_store.unwrap_or_default().display()
                ),
            ));
        }
        return Err(Error::ImageNotFound(format!(
            "no image matches '{pattern}'"
        )));
    }
    Ok(deleted)
}

/// Remembers image `record` for `lade undelete`, with its cache states if it was built here,
/// and drops its link.
fn remember_deleted(storage: &Storage, record: &ImageRecord, name: &Reference) -> Result<()> {
    let links = storage.image_links();
    let keys = links
        .get(name)?
        .filter(|l| l.manifest == record.manifest)
        .map(|l| l.keys)
        .unwrap_or_default();
    storage.deleted_images().remember(record, keys)?;
    links.unlink(name)
}

/// How long a partial download nothing adds to is kept for a pull to continue.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub trees_removed: usize,
    /// Deleted images forgotten: their layers are gone, or their name exists again.
    pub deleted_forgotten: usize,
}

/// An error naming the first image record that cannot be read, if any: collection must not
/// start then.
pub fn refuse_unreadable_records(storage: &Storage) -> Result<()> {
    match storage.images().unreadable()?.into_iter().next() {
        None => Ok(()),
        Some((path, e)) => Err(Error::invalid(
            format!("image record {}", path.display()),
            format!(
                "unreadable ({e}); lade cannot tell what it keeps, so nothing was removed; \
                 `lade fsck --repair` moves it aside"
            ),
        )),
    }
}

/// `lade build-cache --gc`: forgets deleted images `lade import` made, so that collection
/// releases their layers. Returns how many.
pub fn forget_deleted_imports(storage: &Storage) -> Result<usize> {
    let mut forgotten = 0;
    for listed in storage.deleted_images().list()? {
        if listed.value.record.is_import() {
            listed.remove()?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// Removes blobs and layer trees that nothing live (see the module documentation) reaches.
pub fn collect_garbage(storage: &Storage) -> Result<GcReport> {
    // An unreadable record could keep anything: never collect on a guess.
    refuse_unreadable_records(storage)?;
    let blobs = storage.blobs();
    let layers = storage.layers();
    let mut live_blobs: HashSet<Digest> = HashSet::new();
    let mut live_trees: HashSet<String> = HashSet::new();
    for record in storage.images().list()? {
        let record: ImageRecord = record?;
        mark_record(storage, &record, &mut live_blobs);
        live_trees.extend(record.layers.iter().map(|l| l.tree.clone()));
    }
    // A record that does not parse is a miss anyway: it keeps nothing.
    for (_, record) in storage.cache_records().list()? {
        for l in record.iter().flat_map(|r| &r.state.layers) {
            live_blobs.insert(l.blob.clone());
            live_trees.insert(l.tree.clone());
        }
    }
    let mut report = GcReport::default();
    let images = storage.images();
    for listed in storage.deleted_images().list()? {
        let d = &listed.value;
        // An image of that name exists again (rebuilt, pulled, undeleted): nothing to restore.
        // (One of a read-only store does not count: the user's would come first.)
        let superseded = d
            .record
            .reference()
            .map_or(true, |n| images.get_own(&n).ok().flatten().is_some());
        let restorable = !superseded
            && (d.record.is_import()
                || d.record
                    .layers
                    .iter()
                    .all(|l| live_trees.contains(&l.tree) && live_blobs.contains(&l.blob)));
        if restorable {
            mark_record(storage, &d.record, &mut live_blobs);
            live_trees.extend(d.record.layers.iter().map(|l| l.tree.clone()));
        } else {
            listed.remove()?;
            report.deleted_forgotten += 1;
        }
    }
    // Signatures and artifacts attached to what is kept, and single-file images (issue 15).
    live_blobs.extend(storage.single_files().live()?);
    super::attachments::mark_live(storage, &mut live_blobs)?;
    // Trees before blobs: a tree is checked against its blob (`lade fsck`), so a kill here
    // must not leave a tree without one. Trees with copies of lower layers' files first:
    // those copies are hard links to the lower trees' files, and a tree left behind by a
    // kill would stay linked to the files of a lower tree that a later pull makes afresh.
    let mut dead: Vec<(bool, String)> = layers
        .list()?
        .into_iter()
        .filter(|k| !live_trees.contains(k))
        .map(|k| {
            let on_lowers = layers.info(&k).map_or(true, |i| i.lower_chain.is_some());
            (!on_lowers, k)
        })
        .collect();
    dead.sort();
    for (_, key) in dead {
        layers.remove(&key)?;
        report.trees_removed += 1;
    }
    for d in blobs.list()?.into_iter().flatten() {
        if !live_blobs.contains(&d) {
            blobs.remove(&d)?;
            report.blobs_removed += 1;
        }
    }
    // Partial downloads ([`super::partial`]) stay for the next pull, unless useless or old.
    blobs.sweep_partials(PARTIAL_MAX_AGE);
    // Flattened copies made by `lade run` without overlayfs, keyed by manifest digest.
    let flat = storage.flat();
    for name in flat.names() {
        let live = live_blobs.iter().any(|d| d.hex() == name);
        if !live {
            flat.remove(&name)?;
            report.trees_removed += 1;
        }
    }
    Ok(report)
}

fn mark_record(storage: &Storage, record: &ImageRecord, live: &mut HashSet<Digest>) {
    live.insert(record.manifest.clone());
    live.insert(record.config.clone());
    live.extend(record.layers.iter().map(|l| l.blob.clone()));
    if let Some(index) = &record.index {
        live.insert(index.clone());
    }
    // Blobs the manifest lists beyond the unpacked layers (--last-layer) stay too.
    if let Ok(bytes) = storage.blobs().read_to_vec(&record.manifest)
        && let Ok(m) = RawManifest::new(bytes, None, None, "manifest")
        && m.kind == Kind::Image
        && let Ok(parsed) = m.image()
    {
        for d in parsed.layers() {
            if let Ok(d) = Digest::try_from(d.digest()) {
                live.insert(d);
            }
        }
    }
}
