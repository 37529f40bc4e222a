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

/// What `lade delete` removed: an image, or a single-file image (a SIF's record; its file
/// goes with the collection that follows). Shown as the familiar name, a SIF's with `SIF `
/// before it, so that an image and a SIF of the same name read apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletedName {
    Image(String),
    SingleFile(String),
}

impl std::fmt::Display for DeletedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeletedName::Image(name) => f.write_str(name),
            DeletedName::SingleFile(name) => write!(f, "SIF {name}"),
        }
    }
}

/// A `lade delete` argument: a shell glob as in `ch-image delete 'foo*'`, matched against a
/// stored name in full and in its familiar form; a plain reference also matches its
/// normalised forms (alpine = docker.io/library/alpine:latest).
struct NamePattern {
    glob: globset::GlobMatcher,
    exact: Option<Reference>,
}

impl NamePattern {
    fn new(pattern: &str) -> Result<NamePattern> {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| Error::invalid(format!("pattern '{pattern}'"), e.to_string()))?
            .compile_matcher();
        Ok(NamePattern {
            glob,
            exact: Reference::parse(pattern).ok(),
        })
    }

    /// Whether the name a record holds (`stored`, a full reference) matches.
    fn matches(&self, stored: &str) -> bool {
        self.glob.is_match(stored)
            || Reference::parse(stored)
                .is_ok_and(|n| self.glob.is_match(n.familiar()) || self.exact.as_ref() == Some(&n))
    }
}

/// Deletes every image and every single-file image (SIF) of the user's whose name matches
/// `pattern` ([`NamePattern`]). Returns what it deleted; no match is an error, and so is an
/// unreadable image record (nothing is deleted then: collection could not follow). Deleted
/// images are remembered for `lade undelete` ([`remember_deleted`]); a SIF is not: nothing
/// but its record keeps its file, which the collection after a delete removes, as it forgets
/// a pulled image no build uses (pull it again).
pub fn delete_matching(storage: &Storage, pattern: &str) -> Result<Vec<DeletedName>> {
    refuse_unreadable_records(storage)?;
    let pattern_matches = NamePattern::new(pattern)?;
    let images = storage.images();
    let mut deleted = Vec::new();
    for record in images.list()?.into_iter().flatten() {
        let Ok(name) = record.reference() else {
            continue;
        };
        if pattern_matches.matches(&record.name) {
            remember_deleted(storage, &record, &name)?;
            if images.remove(&name)? {
                deleted.push(DeletedName::Image(name.familiar()));
            }
        }
    }
    let single_files = storage.single_files();
    for record in single_files.list()? {
        let Ok(name) = Reference::parse(&record.name) else {
            continue;
        };
        if pattern_matches.matches(&record.name) && single_files.remove(&name)? {
            deleted.push(DeletedName::SingleFile(name.familiar()));
        }
    }
    if deleted.is_empty() {
        // What read-only stores hold is never the user's to delete.
        if let Some((what, store)) = read_only_match(storage, &pattern_matches)? {
            return Err(Error::invalid(
                what,
                format!(
                    "is in the read-only store {}, which lade never changes",
                    store.display()
                ),
            ));
        }
        return Err(Error::ImageNotFound(format!(
            "no image matches '{pattern}'"
        )));
    }
    Ok(deleted)
}

/// The first image, else single-file image, of a read-only store that `pattern` matches: what
/// it is (`image NAME`, `SIF NAME`) and the store.
fn read_only_match(
    storage: &Storage,
    pattern: &NamePattern,
) -> Result<Option<(String, std::path::PathBuf)>> {
    let images = storage
        .list_all_images()?
        .into_iter()
        .flatten()
        .map(|l| ("image", l.record.name, l.read_only_store));
    let single_files = storage
        .list_all_single_files()?
        .into_iter()
        .flatten()
        .map(|l| ("SIF", l.record.name, l.read_only_store));
    Ok(images
        .chain(single_files)
        .find_map(|(kind, name, store)| match store {
            Some(store) if pattern.matches(&name) => {
                let familiar = Reference::parse(&name).map_or(name, |n| n.familiar());
                Some((format!("{kind} {familiar}"), store))
            }
            _ => None,
        }))
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

/// An error naming the first image or SIF record that cannot be read, if any: collection
/// must not start then.
pub fn refuse_unreadable_records(storage: &Storage) -> Result<()> {
    if let Some((path, e)) = storage.images().unreadable()?.into_iter().next() {
        return Err(Error::invalid(
            format!("image record {}", path.display()),
            format!(
                "unreadable ({e}); lade cannot tell what it keeps, so nothing was removed; \
                 `lade fsck --repair` moves it aside"
            ),
        ));
    }
    // A SIF record is all that keeps its file: one that cannot be read stops collection too.
    if let Some(Err(e)) = storage
        .single_files()
        .entries()?
        .into_iter()
        .find(|r| r.is_err())
    {
        return Err(Error::invalid(
            "a SIF record",
            format!(
                "unreadable ({e}); lade cannot tell what it keeps, so nothing was removed; \
                 remove the record (its file is then collected) or pull the SIF again"
            ),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LockMode;
    use crate::storage::single_files::SingleFile;

    #[test]
    fn a_pattern_matches_full_familiar_and_normalised_names() {
        let p = |pattern: &str| NamePattern::new(pattern).unwrap();
        let tool = "docker.io/library/tool:1.0";
        assert!(p("tool:1.0").matches(tool));
        assert!(p("tool:*").matches(tool));
        assert!(p("docker.io/library/tool:1.0").matches(tool));
        assert!(p("*").matches(tool));
        assert!(!p("tool").matches(tool), "tool means tool:latest");
        assert!(p("tool").matches("docker.io/library/tool:latest"));
        assert!(p("127.0.0.1:5000/lab/*").matches("127.0.0.1:5000/lab/x:1"));
        assert!(!p("other*").matches(tool));
        let e = NamePattern::new("a[").err().unwrap().to_string();
        assert!(e.contains("pattern 'a['"), "{e}");
    }

    /// A SIF record in `storage` named `name`, its file holding `bytes`.
    fn put_sif(storage: &Storage, name: &str, bytes: &[u8]) -> SingleFile {
        let record = SingleFile {
            name: name.into(),
            blob: storage.blobs().put_bytes(bytes).unwrap(),
            size: bytes.len() as u64,
            manifest: storage.blobs().put_bytes(name.as_bytes()).unwrap(),
            source: format!("oras://example.org/{name}"),
        };
        storage.single_files().put(&record).unwrap();
        record
    }

    #[test]
    fn deleting_a_sif_removes_its_record_and_collection_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(tmp.path(), LockMode::None).unwrap();
        let gone = put_sif(&storage, "docker.io/library/tool:1", b"one");
        let kept = put_sif(&storage, "docker.io/library/other:1", b"two");
        assert_eq!(
            delete_matching(&storage, "to*").unwrap(),
            vec![DeletedName::SingleFile("tool:1".into())]
        );
        assert_eq!(
            DeletedName::SingleFile("tool:1".into()).to_string(),
            "SIF tool:1"
        );
        let report = collect_garbage(&storage).unwrap();
        assert_eq!(report.blobs_removed, 2, "the file and its manifest");
        assert!(!storage.blobs().has(&gone.blob) && !storage.blobs().has(&gone.manifest));
        assert!(storage.blobs().has(&kept.blob) && storage.blobs().has(&kept.manifest));
        // Nothing left to match: the error images get.
        let e = delete_matching(&storage, "tool:1").unwrap_err();
        assert!(matches!(e, Error::ImageNotFound(_)), "{e}");
        assert!(e.to_string().contains("no image matches 'tool:1'"), "{e}");
    }

    #[test]
    fn an_unreadable_sif_record_stops_collection() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(tmp.path(), LockMode::None).unwrap();
        let sif = put_sif(&storage, "docker.io/library/tool:1", b"one");
        let records = tmp.path().join("single-files");
        let file = std::fs::read_dir(&records)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&file, b"{ not json").unwrap();
        let e = collect_garbage(&storage).unwrap_err().to_string();
        assert!(
            e.contains("SIF record") && e.contains("nothing was removed"),
            "{e}"
        );
        assert!(storage.blobs().has(&sif.blob), "the file was collected");
    }

    #[test]
    fn a_read_only_stores_sif_is_refused_by_name_and_store() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        let record = {
            let admin = Storage::open(&theirs, LockMode::None).unwrap();
            put_sif(&admin, "docker.io/library/tool:1", b"one")
        };
        let user = Storage::open(&tmp.path().join("mine"), LockMode::None)
            .unwrap()
            .with_read_only(vec![theirs.clone()])
            .unwrap();
        let e = delete_matching(&user, "tool:*").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "SIF tool:1: is in the read-only store {}, which lade never changes",
                theirs.display()
            )
        );
        assert!(user.single_files().get(&"tool:1".parse().unwrap()).unwrap() == Some(record));
    }
}
