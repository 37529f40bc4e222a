//! `lade build-cache`: the summary, `--tree`, `--gc` and `--reset`.
//!
//! # What `--gc` keeps
//!
//! ch-image's `--gc` is `git gc`: it drops what no branch reaches. lade does the same with its
//! own branches, the links from image names to states ([`crate::storage::image_links`]):
//!
//! - kept: every state on the chain from a FROM image to the final state of an image that
//!   still exists with the manifest its build made, and to each of its stages' final states
//!   (so `COPY --from` stages stay hits);
//! - dropped: every other state. That is the old versions of steps that were since changed,
//!   states of images deleted (or overwritten by a pull or a `--no-cache` build), records
//!   that do not parse or whose layers are gone, and records from before parents were
//!   recorded that no image names (their chains cannot be followed);
//! - then the store is collected as `lade delete` does ([`crate::storage::gc`]): layers no image and
//!   no remaining record uses go, and deleted images whose layers went are forgotten (so
//!   `lade delete IMG; lade build-cache --gc` releases IMG's space and `undelete IMG` fails).
//!
//! No "recently used" rule: what is kept is decided by the images alone, which makes `--gc`
//! predictable, and a state dropped from a Dockerfile that is still in use costs one rebuild
//! of that step. `--gc` takes the exclusive storage lock, so it never runs under a build.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::one_line;
use super::tree::{self, Node};
use crate::error::Result;
use crate::reference::Reference;
use crate::storage::gc::{collect_garbage, forget_deleted_imports, refuse_unreadable_records};
use crate::storage::{Record, Storage};

/// What `lade build-cache` was asked to do (in this order, then the summary is printed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub reset: bool,
    pub gc: bool,
    pub tree: bool,
}

/// What `lade build-cache` did and found: [`text`](Self::text) is what it prints, and the
/// struct itself is `--format json`'s output.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    /// `--reset`: blobs and layer trees freed.
    pub reset: Option<Collected>,
    pub gc: Option<GcReport>,
    #[serde(skip)]
    pub tree: Option<String>,
    pub summary: Summary,
}

#[derive(Debug, serde::Serialize)]
pub struct Collected {
    pub blobs_removed: usize,
    pub trees_removed: usize,
}

impl Outcome {
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.reset {
            out.push_str(&format!(
                "build cache reset: removed {} blobs and {} layer trees\n",
                r.blobs_removed, r.trees_removed
            ));
        }
        if let Some(r) = &self.gc {
            out.push_str(&format!(
                "build cache gc: removed {} states, {} blobs and {} layer trees; \
                 forgot {} deleted images\n",
                r.states_removed, r.blobs_removed, r.trees_removed, r.deleted_forgotten
            ));
        }
        if let Some(t) = &self.tree {
            out.push_str(t);
            out.push('\n');
        }
        out.push_str(&self.summary.text());
        out
    }
}

/// Runs `lade build-cache`.
pub fn build_cache(storage: &Storage, opts: Options) -> Result<Outcome> {
    let reset = if opts.reset {
        storage.remove_build_cache()?;
        // BuildKit's prune takes its cache mounts too: they are the build cache's.
        storage.cache_mounts().remove_all()?;
        let r = collect_garbage(storage)?;
        Some(Collected {
            blobs_removed: r.blobs_removed,
            trees_removed: r.trees_removed,
        })
    } else {
        None
    };
    let gc = if opts.gc { Some(gc(storage)?) } else { None };
    let tree = if opts.tree {
        Some(draw_tree(storage)?)
    } else {
        None
    };
    Ok(Outcome {
        reset,
        gc,
        tree,
        summary: summary(storage)?,
    })
}

#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub states_removed: usize,
    pub blobs_removed: usize,
    pub trees_removed: usize,
    pub deleted_forgotten: usize,
}

/// `--gc`, as the module documentation describes. Needs the exclusive storage lock.
pub fn gc(storage: &Storage) -> Result<GcReport> {
    refuse_unreadable_records(storage)?;
    let cache = storage.cache_records();
    let links = storage.image_links();
    let live = links.live(&storage.images())?;
    for listed in links.list()? {
        if !live.contains(&listed.value) {
            listed.remove()?;
        }
    }
    // A record whose layers are gone is a miss forever: drop it whatever links to it.
    let records: HashMap<String, Option<Record>> = cache
        .list()?
        .into_iter()
        .map(|(k, r)| {
            let usable = r.filter(|r| r.state.layers.iter().all(|l| storage.holds_layer(l)));
            (k, usable)
        })
        .collect();
    let mut keep: HashSet<&str> = HashSet::new();
    for link in &live {
        for key in &link.keys {
            let mut key = key.as_str();
            while let Some(Some(r)) = records.get(key) {
                if !keep.insert(key) {
                    break; // the rest of the chain is marked already
                }
                match r.parent.as_deref() {
                    Some(p) => key = p,
                    None => break,
                }
            }
        }
    }
    let mut report = GcReport::default();
    for key in records.keys() {
        if !keep.contains(key.as_str()) {
            cache.remove(key)?;
            report.states_removed += 1;
        }
    }
    // Deleted imports are kept restorable until now (see crate::storage::gc).
    let imports_forgotten = forget_deleted_imports(storage)?;
    let r = collect_garbage(storage)?;
    report.blobs_removed = r.blobs_removed;
    report.trees_removed = r.trees_removed;
    report.deleted_forgotten = r.deleted_forgotten + imports_forgotten;
    Ok(report)
}

/// Names of the images (and deleted images) by the state keys they point at.
fn names_by_key(storage: &Storage) -> Result<HashMap<String, Vec<String>>> {
    let images = storage.images();
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for link in storage.image_links().live(&images)? {
        let name = Reference::parse(&link.name).map_or(link.name.clone(), |r| r.familiar());
        if let Some(k) = link.keys.first() {
            names.entry(k.clone()).or_default().push(name);
        }
    }
    for listed in storage.deleted_images().list()? {
        let d = listed.value;
        let Ok(reference) = d.record.reference() else {
            continue;
        };
        if images.get(&reference).ok().flatten().is_some() {
            continue; // superseded by an image of the same name
        }
        let name = reference.familiar();
        if let Some(k) = d.keys.first() {
            names
                .entry(k.clone())
                .or_default()
                .push(format!("deleted: {name}"));
        }
    }
    Ok(names)
}

/// `--tree`.
pub fn draw_tree(storage: &Storage) -> Result<String> {
    let records = storage.cache_records().list()?;
    if records.is_empty() {
        return Ok("(the build cache is empty)\n".into());
    }
    let names = names_by_key(storage)?;
    let mut image_names: HashMap<String, Vec<String>> = HashMap::new();
    for r in storage.images().list()?.into_iter().flatten() {
        let name = r.reference().map_or(r.name.clone(), |n| n.familiar());
        image_names
            .entry(format!("image:{}", r.manifest))
            .or_default()
            .push(name);
    }
    let mut nodes = Vec::new();
    let mut roots: HashSet<String> = HashSet::new();
    let keys: HashSet<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    for (key, record) in &records {
        let (parent, label, created) = match record {
            Some(r) => {
                let text = r
                    .instruction
                    .as_deref()
                    .unwrap_or("(instruction not recorded)");
                (r.parent.clone(), one_line(text), r.created.unwrap_or(0))
            }
            None => (None, "(unreadable record)".into(), 0),
        };
        let label = match names.get(key) {
            Some(n) => format!("{label}  ({})", n.join(", ")),
            None => label,
        };
        // Every state hangs from its FROM image, `scratch`, or a placeholder root saying why
        // its parent is unknown.
        let parent = match parent {
            Some(p) if keys.contains(p.as_str()) => p,
            Some(p) if p.starts_with("image:") || p == "scratch" => p,
            Some(_) => "?missing".into(),
            None => "?unknown".into(),
        };
        if !keys.contains(parent.as_str()) {
            roots.insert(parent.clone());
        }
        // Siblings oldest first; within one second (`created` is in seconds), by their text.
        nodes.push(Node {
            id: key.clone(),
            parent: Some(parent),
            order: (created, label.clone()),
            label,
        });
    }
    for root in roots {
        let label = if root == "scratch" {
            "FROM scratch".to_string()
        } else if root == "?missing" {
            "(parent state no longer cached)".into()
        } else if root == "?unknown" {
            "(recorded before lade kept parents)".into()
        } else {
            match image_names.get(&root) {
                Some(n) => format!("FROM {}", n.join(", ")),
                None => format!(
                    "FROM {} (image no longer stored)",
                    root.trim_start_matches("image:")
                ),
            }
        };
        nodes.push(Node {
            id: root.clone(),
            parent: None,
            label: label.clone(),
            order: (0, label),
        });
    }
    Ok(tree::render(nodes))
}

/// The summary `lade build-cache` always prints.
pub fn summary(storage: &Storage) -> Result<Summary> {
    let records = storage.cache_records().list()?;
    let images = storage.images();
    let named = storage.image_links().live(&images)?.len();
    // Deleted images whose name exists again are forgotten at the next collection.
    let deleted = storage
        .deleted_images()
        .list()?
        .iter()
        .filter(|listed| {
            listed
                .value
                .record
                .reference()
                .is_ok_and(|n| images.get(&n).ok().flatten().is_none())
        })
        .count();
    let mut image_trees = HashSet::new();
    for r in storage.images().list()?.into_iter().flatten() {
        image_trees.extend(r.layers.into_iter().map(|l| l.tree));
    }
    // Trees of read-only stores are no space of the user's to release.
    let own_trees: HashSet<String> = storage.layers().list()?.into_iter().collect();
    let mut cache_only = HashMap::new();
    for (_, r) in &records {
        for l in r.iter().flat_map(|r| &r.state.layers) {
            if !image_trees.contains(&l.tree) && own_trees.contains(&l.tree) {
                cache_only.insert(l.tree.clone(), l.blob.clone());
            }
        }
    }
    let layers = storage.layers();
    let blobs = storage.blobs();
    let mut seen = HashSet::new();
    let mut bytes = 0;
    for (tree, blob) in &cache_only {
        bytes += disk_use(&layers.entry_dir(tree), &mut seen);
        bytes += disk_use(&blobs.path(blob), &mut seen);
    }
    let mounts = storage.cache_mounts().list();
    let mut mount_bytes = 0;
    for (_, dir) in &mounts {
        mount_bytes += disk_use(dir, &mut seen);
    }
    Ok(Summary {
        states: records.len(),
        named_images: named,
        deleted_images: deleted,
        cache_only_layers: cache_only.len(),
        cache_only_bytes: bytes,
        cache_mounts: mounts.len(),
        cache_mount_bytes: mount_bytes,
    })
}

/// The build cache's numbers.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub states: usize,
    pub named_images: usize,
    /// Deleted images `lade undelete` can bring back.
    pub deleted_images: usize,
    /// Layers only cached build steps use, and the disk space they take.
    pub cache_only_layers: usize,
    pub cache_only_bytes: u64,
    /// The persistent directories of `RUN --mount=type=cache`, and the disk space they take.
    pub cache_mounts: usize,
    pub cache_mount_bytes: u64,
}

impl Summary {
    pub fn text(&self) -> String {
        format!(
            "states:              {}\n\
             named images:        {}\n\
             deleted images:      {}  (lade undelete)\n\
             cache-only layers:   {}\n\
             cache-only disk use: {}\n\
             cache mounts:        {}  ({}; RUN --mount=type=cache)\n",
            self.states,
            self.named_images,
            self.deleted_images,
            self.cache_only_layers,
            human(self.cache_only_bytes),
            self.cache_mounts,
            human(self.cache_mount_bytes),
        )
    }
}

/// Bytes allocated under `path`, each inode counted once across calls (hard links).
fn disk_use(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
