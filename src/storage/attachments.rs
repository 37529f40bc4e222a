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
    dir: PathBuf,
}

impl AttachmentStore {
    pub(super) fn new(dir: PathBuf) -> AttachmentStore {
        AttachmentStore { dir }
    }

    fn path(&self, subject: &Digest) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.json",
            subject.algorithm().name(),
            subject.hex()
        ))
    }

    pub fn get(&self, subject: &Digest) -> Result<Attached> {
        Ok(crate::fsutil::read_json_if_exists(&self.path(subject))?.unwrap_or_default())
    }

    /// Changes the attachments of `subject` under an exclusive lock (other writers wait).
    pub fn update(&self, subject: &Digest, change: impl FnOnce(&mut Attached)) -> Result<()> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let handle = File::open(&self.dir).at(&self.dir)?;
        flock(&handle, FlockOperation::LockExclusive)
            .map_err(|e| Error::io_path(&self.dir, e.into()))?;
        let mut a = self.get(subject)?;
        change(&mut a);
        let path = self.path(subject);
        if a.is_empty() {
            return crate::fsutil::remove_file_if_exists(&path).map(drop);
        }
        let json = serde_json::to_vec_pretty(&a)
            .map_err(|e| Error::json(path.display().to_string(), e))?;
        crate::fsutil::write_atomic(&path, &json)
    }

    /// Every subject with attachments.
    pub fn subjects(&self) -> Result<Vec<Digest>> {
        Ok(crate::fsutil::json_files(&self.dir)?
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
/// manifests that are not live. Unreadable attachment records keep nothing and are left alone.
pub fn mark_live(storage: &super::Storage, live: &mut HashSet<Digest>) -> Result<()> {
    let store = storage.attachments();
    let subjects = store.subjects()?;
    let mut todo: Vec<Digest> = subjects
        .iter()
        .filter(|s| live.contains(s))
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
        if !live.contains(&s) {
            store.remove(&s)?;
        }
    }
    Ok(())
}
