//! What is attached to manifests in the store: cosign's tag-schema manifests (`sha256-<hex>.sig`)
//! and OCI 1.1 referrers (signature bundles, SBOMs, any artifact whose `subject` is the
//! manifest), one small JSON file per subject manifest:
//!
//! ```text
//! $STORAGE/attachments/<alg>-<hex>.json   {"tags": {TAG: DIGEST}, "referrers": [DESCRIPTOR]}
//! ```
//!
//! The manifests and their blobs are ordinary blobs. Garbage collection keeps the attachments
//! of every manifest it keeps ([`mark_live`]) and forgets those of manifests it removes.
//! Updates are serialised by an exclusive `flock` on the directory, so concurrent signers of one
//! stored image both land.
//!
//! With read-only stores ([`super::read_only`]) a subject's attachments are those of its record
//! in every store: a tag from the first store that has it (the user's first), referrers from
//! all of them. So the signatures an admin keeps with a shared image verify for the user, and
//! a signature the user adds (the admin's `.sig` manifest with one more layer, in the user's
//! store) takes the place of the admin's tag for the user. Every write, lock and removal is the
//! user's record's only.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::PathBuf;

use oci_spec::image::Descriptor;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Kind, RawManifest};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attached {
    /// Tag-schema tags (`sha256-<hex>.sig`) and the manifests they name.
    #[serde(default)]
    pub tags: BTreeMap<String, Digest>,
    /// Referrer manifests, as descriptors (with `artifactType` and annotations).
    #[serde(default)]
    pub referrers: Vec<Descriptor>,
}

impl Attached {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.referrers.is_empty()
    }
}

pub struct AttachmentStore {
    dirs: super::Dirs,
}

impl AttachmentStore {
    pub(super) fn new(dirs: super::Dirs) -> AttachmentStore {
        AttachmentStore { dirs }
    }

    fn file_name(subject: &Digest) -> String {
        format!("{}-{}.json", subject.algorithm().name(), subject.hex())
    }

    /// The user's record of `subject`: the only one written or removed.
    fn path(&self, subject: &Digest) -> PathBuf {
        self.dirs.own().join(Self::file_name(subject))
    }

    /// What is attached to `subject` in any store: the user's record, then each read-only
    /// store's, merged (see the module's comment).
    pub fn get(&self, subject: &Digest) -> Result<Attached> {
        let mut merged = Attached::default();
        for path in self.dirs.all(Self::file_name(subject)) {
            let Some(a) = crate::fsutil::read_json_if_exists::<Attached>(&path)? else {
                continue;
            };
            for (tag, digest) in a.tags {
                merged.tags.entry(tag).or_insert(digest);
            }
            for d in a.referrers {
                if !merged.referrers.iter().any(|m| m.digest() == d.digest()) {
                    merged.referrers.push(d);
                }
            }
        }
        Ok(merged)
    }

    /// The user's own record of `subject`.
    fn get_own(&self, subject: &Digest) -> Result<Attached> {
        Ok(crate::fsutil::read_json_if_exists(&self.path(subject))?.unwrap_or_default())
    }

    /// Changes the user's record of `subject` under an exclusive lock (other writers wait).
    pub fn update(&self, subject: &Digest, change: impl FnOnce(&mut Attached)) -> Result<()> {
        let dir = self.dirs.own();
        fs::create_dir_all(dir).at(dir)?;
        let handle = File::open(dir).at(dir)?;
        flock(&handle, FlockOperation::LockExclusive).map_err(|e| Error::io_path(dir, e.into()))?;
        let mut a = self.get_own(subject)?;
        change(&mut a);
        let path = self.path(subject);
        if a.is_empty() {
            return crate::fsutil::remove_file_if_exists(&path).map(drop);
        }
        let json = serde_json::to_vec_pretty(&a)
            .map_err(|e| Error::json(path.display().to_string(), e))?;
        crate::fsutil::write_atomic(&path, &json)
    }

    /// Every subject with attachments in the user's store.
    pub fn subjects(&self) -> Result<Vec<Digest>> {
        Ok(crate::fsutil::json_files(self.dirs.own())?
            .into_iter()
            .filter_map(|(stem, _)| {
                let (alg, hex) = stem.split_once('-')?;
                format!("{alg}:{hex}").parse::<Digest>().ok()
            })
            .collect())
    }

    pub fn remove(&self, subject: &Digest) -> Result<()> {
        crate::fsutil::remove_file_if_exists(&self.path(subject)).map(drop)
    }
}

/// Garbage collection's hook: marks, for every live manifest, its attached manifests and their
/// blobs (and what is attached to those, transitively), and forgets the attachments of
/// manifests that are not live. A manifest of an image in a read-only store counts as live: the
/// user's signatures of the admin's image stay. Unreadable attachment records keep nothing
/// and are left alone.
pub fn mark_live(storage: &super::Storage, live: &mut HashSet<Digest>) -> Result<()> {
    let store = storage.attachments();
    let subjects = store.subjects()?;
    let read_only: HashSet<Digest> = storage
        .list_all_images()?
        .into_iter()
        .flatten()
        .filter(|l| l.read_only_store.is_some())
        .flat_map(|l| std::iter::once(l.record.manifest).chain(l.record.index))
        .collect();
    let mut todo: Vec<Digest> = subjects
        .iter()
        .filter(|s| live.contains(s) || read_only.contains(s))
        .cloned()
        .collect();
    let mut seen: HashSet<Digest> = HashSet::new();
    while let Some(subject) = todo.pop() {
        if !seen.insert(subject.clone()) {
            continue;
        }
        let Ok(a) = store.get(&subject) else { continue };
        let attached = a.tags.values().cloned().chain(
            a.referrers
                .iter()
                .filter_map(|d| Digest::try_from(d.digest()).ok()),
        );
        for m in attached {
            live.insert(m.clone());
            if let Ok(bytes) = storage.blobs().read_to_vec(&m)
                && let Ok(raw) = RawManifest::new(bytes, None, None, "attached manifest")
                && raw.kind == Kind::Image
                && let Ok(parsed) = raw.image()
            {
                for d in std::iter::once(parsed.config()).chain(parsed.layers()) {
                    if let Ok(d) = Digest::try_from(d.digest()) {
                        live.insert(d);
                    }
                }
            }
            todo.push(m);
        }
    }
    for s in subjects {
        if !live.contains(&s) && !read_only.contains(&s) {
            store.remove(&s)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LockMode, Storage};

    /// The descriptor of a (referrer) manifest that differs with `seed`.
    fn referrer(seed: &[u8]) -> Descriptor {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": Digest::sha256_of(seed).to_string(), "size": 1},
            "layers": [],
        });
        RawManifest::new(m.to_string().into_bytes(), None, None, "test")
            .unwrap()
            .descriptor()
    }

    #[test]
    fn records_merge_across_stores_and_only_the_users_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (theirs, mine) = (tmp.path().join("theirs"), tmp.path().join("mine"));
        let subject = Digest::sha256_of(b"subject");
        let (sig_theirs, sig_mine, att) = (
            Digest::sha256_of(b"sig-a"),
            Digest::sha256_of(b"sig-b"),
            Digest::sha256_of(b"att"),
        );
        let (r_theirs, r_mine) = (referrer(b"a"), referrer(b"b"));
        {
            let admin = Storage::open(&theirs, LockMode::None).unwrap();
            admin
                .attachments()
                .update(&subject, |a| {
                    a.tags.insert("s.sig".into(), sig_theirs.clone());
                    a.tags.insert("s.att".into(), att.clone());
                    a.referrers.push(r_theirs.clone());
                })
                .unwrap();
        }
        let user = Storage::open(&mine, LockMode::None)
            .unwrap()
            .with_read_only(vec![theirs.clone()])
            .unwrap();
        let store = user.attachments();
        assert_eq!(store.get(&subject).unwrap().tags["s.sig"], sig_theirs);
        store
            .update(&subject, |a| {
                a.tags.insert("s.sig".into(), sig_mine.clone());
                a.referrers.push(r_mine.clone());
                a.referrers.push(r_theirs.clone());
            })
            .unwrap();
        let merged = store.get(&subject).unwrap();
        // The user's tag wins; the admin's other tag shows; each referrer once, the user's first.
        assert_eq!(merged.tags["s.sig"], sig_mine);
        assert_eq!(merged.tags["s.att"], att);
        let digests: Vec<_> = merged
            .referrers
            .iter()
            .map(|d| d.digest().clone())
            .collect();
        assert_eq!(
            digests,
            [r_mine.digest().clone(), r_theirs.digest().clone()]
        );
        // Only the user's record was written, listed and removed.
        assert_eq!(store.subjects().unwrap(), std::slice::from_ref(&subject));
        store.remove(&subject).unwrap();
        let left = store.get(&subject).unwrap();
        assert_eq!(left.tags["s.sig"], sig_theirs);
        assert!(store.subjects().unwrap().is_empty());
        let admin = Storage::open(&theirs, LockMode::None).unwrap();
        assert_eq!(admin.attachments().get(&subject).unwrap().tags.len(), 2);
    }
}
