//! Writing an image into a docker archive: see the module's documentation. Blobs are staged in
//! an OCI layout beside the archive; `commit` then writes the whole archive anew (the old
//! one's members copied across, read in place) to a temporary file renamed over it, under a
//! lock on its directory, so that the archive is replaced whole or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use rustix::fs::{FlockOperation, flock};

use super::tarball::Tarball;
use super::{
    ArchiveRef, MANIFEST_JSON, MAX_CONFIG, MAX_MANIFEST_JSON, ManifestItem, checked_path,
    parse_manifest_json, repo_tag,
};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Kind, OCI_INDEX, OCI_LAYOUT_REF_NAME, RawManifest};
use crate::reference::Reference;
use crate::transport::oci_layout::OciLayoutDestination;
use crate::transport::staged::{Staged, StagingDir, parent_dir};
use crate::transport::{CopiedImage, ImageDestination, MAX_MANIFEST_BYTES, layout};

/// The annotation Docker and containerd give an image's full name in `index.json`.
const IMAGE_NAME: &str = "io.containerd.image.name";
/// Files of the archive itself, written anew each time.
const OWN_FILES: [&str; 4] = ["oci-layout", "index.json", MANIFEST_JSON, "repositories"];

pub struct DockerArchiveDestination {
    /// `-`: standard output.
    file: PathBuf,
    name: Option<Reference>,
    /// Tags for the image when the destination names none (the source's own names).
    default_names: Vec<Reference>,
    staging: StagingDir,
    layout: OciLayoutDestination,
    /// The archive as it was when opened: blobs it has need not be copied.
    before: Option<Tarball>,
}

impl DockerArchiveDestination {
    pub fn create(file: &Path, name: Option<ArchiveRef>) -> Result<Self> {
        let what = format!("docker-archive:{}", file.display());
        let name = match name {
            None => None,
            Some(ArchiveRef::Tag(r)) => Some(r),
            Some(ArchiveRef::Index(n)) => {
                return Err(Error::invalid(
                    &what,
                    format!("@{n} chooses an image to read; name one to write as NAME:TAG"),
                ));
            }
        };
        let to_stdout = file == Path::new("-");
        if to_stdout && io::stdout().is_terminal() {
            return Err(Error::invalid(
                &what,
                "standard output is a terminal; redirect it to a file or a pipe",
            ));
        }
        let dir = if to_stdout {
            std::env::temp_dir()
        } else {
            parent_dir(file)
        };
        let staging = StagingDir::new(&dir, file, &what)?;
        let before = if to_stdout {
            None
        } else {
            existing(file, &what)?
        };
        let layout = OciLayoutDestination::create(staging.path(), None)?;
        Ok(DockerArchiveDestination {
            file: file.to_path_buf(),
            name,
            default_names: Vec::new(),
            staging,
            layout,
            before,
        })
    }

    /// Tags to give the image if the destination names none.
    pub fn with_default_names(mut self, names: Vec<Reference>) -> Self {
        self.default_names = names;
        self
    }

    fn what(&self) -> String {
        format!("docker-archive:{}", self.file.display())
    }

    /// Writes the archive: `old` (the archive now, if any) with the new image added.
    fn write(&self, image: &RawManifest, old: Option<&Tarball>, out: &mut dyn Write) -> Result<()> {
        let what = self.what();
        let tags: Vec<Reference> = match &self.name {
            Some(n) => vec![n.clone()],
            None => self.default_names.clone(),
        };
        let tags: Vec<Reference> = tags
            .into_iter()
            .filter(|t| t.tag.is_some())
            .map(|t| Reference { digest: None, ..t })
            .collect();
        let parsed = image.image()?;
        let config = Digest::try_from(parsed.config().digest())?;
        let layers = parsed
            .layers()
            .iter()
            .map(|d| Digest::try_from(d.digest()).map(|d| layout::blob_path(&d)))
            .collect::<Result<Vec<_>>>()?;
        let item = ManifestItem {
            config: layout::blob_path(&config),
            repo_tags: Some(tags.iter().filter_map(repo_tag).collect()),
            layers,
            other: serde_json::Map::new(),
        };
        let plan = Plan::make(old, item, image, &tags, &what)?;
        for path in plan.wanted_new() {
            let there = old.is_some_and(|t| t.has(&path) && !plan.dropped.contains(&path));
            if !there && !self.staging.path().join(&path).is_file() {
                return Err(Error::invalid(
                    &what,
                    format!("{path} is missing: the archive changed while copying; copy again"),
                ));
            }
        }
        plan.write_tar(old, &self.staging, out, &what)
    }
}

/// The archive at `file` if there is one to add to; an empty file counts as none, and a file
/// that is not a docker archive is refused rather than overwritten.
fn existing(file: &Path, what: &str) -> Result<Option<Tarball>> {
    match fs::metadata(file) {
        Ok(md) if md.len() == 0 => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io_path(file, e)),
    }
    let refuse = || {
        Error::invalid(
            what,
            format!(
                "exists and is not a docker archive (no {MANIFEST_JSON}); refusing to overwrite \
                 it (remove it first)"
            ),
        )
    };
    let tar = Tarball::open(file, what).map_err(|_| refuse())?;
    if !tar.has(MANIFEST_JSON) {
        return Err(refuse());
    }
    Ok(Some(tar))
}

/// What the new archive holds.
struct Plan {
    items: Vec<ManifestItem>,
    index: Vec<Descriptor>,
    /// The new image's entry, by position in `items`.
    new: usize,
    new_manifest: String,
    /// Members of the old archive left out: the files of images dropped.
    dropped: HashSet<String>,
}

impl Plan {
    /// Adds `item` (the image `manifest`, tagged `tags`) to the images of `old`.
    fn make(
        old: Option<&Tarball>,
        item: ManifestItem,
        manifest: &RawManifest,
        tags: &[Reference],
        what: &str,
    ) -> Result<Plan> {
        let (mut items, mut index) = match old {
            Some(t) => (
                parse_manifest_json(&t.read_small(MANIFEST_JSON, MAX_MANIFEST_JSON)?, what)?,
                old_index(t, what)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        // The same image already there (same config, same layer files) gains the tags.
        let same = items.iter().position(|it| {
            checked_path(&it.config, what).ok().as_ref() == Some(&item.config)
                && it.layers.len() == item.layers.len()
                && it
                    .layers
                    .iter()
                    .zip(&item.layers)
                    .all(|(a, b)| checked_path(a, what).ok().as_ref() == Some(b))
        });
        // A tag names one image: it leaves the image that had it; one left with none goes.
        let mut orphans = Vec::new();
        for (i, it) in items.iter_mut().enumerate() {
            if Some(i) == same || it.tags().is_empty() {
                continue;
            }
            let kept: Vec<String> = it
                .tags()
                .iter()
                .filter(|t| Reference::parse(t).map_or(true, |r| !tags.contains(&r)))
                .cloned()
                .collect();
            if kept.is_empty() {
                orphans.push(i);
            }
            it.repo_tags = Some(kept);
        }
        index.retain(|d| {
            let named = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(IMAGE_NAME))
                .and_then(|n| Reference::parse(n).ok());
            named.is_none_or(|n| !tags.contains(&n))
        });
        let new = match same {
            Some(i) => {
                let have = items[i].repo_tags.get_or_insert_with(Vec::new);
                for t in item.tags() {
                    if !have.contains(t) {
                        have.push(t.clone());
                    }
                }
                i
            }
            None => {
                items.push(item);
                items.len() - 1
            }
        };
        let mut plan = Plan {
            items,
            index,
            new,
            new_manifest: layout::blob_path(&manifest.digest),
            dropped: HashSet::new(),
        };
        if let Some(t) = old {
            plan.drop_items(t, &orphans, what)?;
        }
        plan.name_in_index(manifest, tags);
        Ok(plan)
    }

    /// Removes the entries `orphans` and whatever of the old archive only they used.
    fn drop_items(&mut self, tar: &Tarball, orphans: &[usize], what: &str) -> Result<()> {
        if orphans.is_empty() {
            return Ok(());
        }
        let mut gone_manifests = HashSet::new();
        let mut gone_paths = BTreeSet::new();
        for &i in orphans {
            let it = &self.items[i];
            gone_paths.extend(item_paths(tar, it, what));
            for d in &self.index {
                if manifest_of(tar, d, it, what).is_some() {
                    gone_manifests.insert(d.digest().to_string());
                    gone_paths.insert(layout::blob_path(&Digest::try_from(d.digest())?));
                }
            }
        }
        self.index
            .retain(|d| !gone_manifests.contains(&d.digest().to_string()));
        let mut kept = std::mem::take(&mut self.items);
        let mut i = 0;
        kept.retain(|_| {
            i += 1;
            !orphans.contains(&(i - 1))
        });
        self.new -= orphans.iter().filter(|&&o| o < self.new).count();
        self.items = kept;
        let mut used: HashSet<String> = self
            .items
            .iter()
            .flat_map(|it| item_paths(tar, it, what))
            .collect();
        used.insert(self.new_manifest.clone());
        for d in &self.index {
            if let Ok(dg) = Digest::try_from(d.digest()) {
                used.insert(layout::blob_path(&dg));
            }
        }
        self.dropped = gone_paths
            .into_iter()
            .filter(|p| !used.contains(p))
            .collect();
        Ok(())
    }

    /// `index.json` names the new image by each of its tags, as Docker does; an untagged
    /// image is listed once, unnamed.
    fn name_in_index(&mut self, manifest: &RawManifest, tags: &[Reference]) {
        let plain = manifest.descriptor();
        for t in tags {
            let mut d = plain.clone();
            d.set_annotations(Some(HashMap::from([
                (IMAGE_NAME.to_string(), t.to_string()),
                (
                    OCI_LAYOUT_REF_NAME.to_string(),
                    t.tag.clone().unwrap_or_default(),
                ),
            ])));
            self.index.push(d);
        }
        if tags.is_empty() && !self.index.iter().any(|d| d.digest() == plain.digest()) {
            self.index.push(plain);
        }
    }

    /// The paths the new image's entry needs.
    fn wanted_new(&self) -> Vec<String> {
        let it = &self.items[self.new];
        let mut paths = vec![it.config.clone(), self.new_manifest.clone()];
        paths.extend(it.layers.iter().cloned());
        paths
    }

    /// `repositories`, for loaders older than `manifest.json`: name → tag → top layer's ID.
    fn repositories(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for it in &self.items {
            let Some(top) = it.layers.last() else {
                continue;
            };
            let id = match top.strip_suffix("/layer.tar") {
                Some(dir) => dir.rsplit('/').next().unwrap_or(dir),
                None => top
                    .rsplit('/')
                    .next()
                    .unwrap_or(top)
                    .trim_end_matches(".tar"),
            };
            for r in it.references() {
                let name = Reference {
                    tag: None,
                    digest: None,
                    ..r.clone()
                }
                .familiar();
                repos
                    .entry(name)
                    .or_default()
                    .insert(r.tag.clone().unwrap_or_default(), id.to_string());
            }
        }
        repos
    }

    fn write_tar(
        &self,
        old: Option<&Tarball>,
        staging: &StagingDir,
        out: &mut dyn Write,
        what: &str,
    ) -> Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.index,
        });
        let json = |r: serde_json::Result<Vec<u8>>| r.map_err(|e| Error::json(what, e));
        let own: [(&str, Vec<u8>); 4] = [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json", json(serde_json::to_vec(&index))?),
            (MANIFEST_JSON, json(serde_json::to_vec(&self.items))?),
            (
                "repositories",
                json(serde_json::to_vec(&self.repositories()))?,
            ),
        ];
        let mut w = TarWriter::new(out, what);
        for (path, bytes) in &own {
            w.file(path, bytes.len() as u64, &mut &bytes[..])?;
        }
        let mut written: HashSet<String> = OWN_FILES.iter().map(|s| s.to_string()).collect();
        if let Some(t) = old {
            let mut files: Vec<&String> = t.files().collect();
            files.sort();
            for path in files {
                if written.contains(path) || self.dropped.contains(path) {
                    continue;
                }
                w.file(path, t.size(path)?, &mut t.open_member(path)?)?;
                written.insert(path.clone());
            }
            let mut links: Vec<_> = t.links().collect();
            links.sort_by_key(|(p, _)| p.as_str());
            for (path, link) in links {
                if !self.dropped.contains(path) && written.insert(path.clone()) {
                    w.link(path, &link.raw, link.hard)?;
                }
            }
        }
        for path in staging.blobs()? {
            if written.insert(path.clone()) {
                let full = staging.path().join(&path);
                let mut f = File::open(&full).at(&full)?;
                let len = f.metadata().at(&full)?.len();
                w.file(&path, len, &mut f)?;
            }
        }
        w.finish()
    }
}

/// The old archive's `index.json` entries (none if it has none or it does not parse: Docker
/// before 25 wrote none, and `manifest.json` is what lists the images).
fn old_index(tar: &Tarball, what: &str) -> Result<Vec<Descriptor>> {
    if !tar.has("index.json") {
        return Ok(Vec::new());
    }
    let bytes = tar.read_small("index.json", MAX_MANIFEST_BYTES)?;
    Ok(layout::parse_index(&bytes, what)
        .map(|i| i.manifests().clone())
        .unwrap_or_default())
}

/// The members an entry uses: its config and layers (and what links among them point at),
/// and, for an entry of the legacy form, the other files of its layers' directories.
fn item_paths(tar: &Tarball, it: &ManifestItem, what: &str) -> Vec<String> {
    let mut paths: Vec<String> = std::iter::once(&it.config)
        .chain(&it.layers)
        .filter_map(|p| checked_path(p, what).ok())
        .collect();
    let links: HashMap<&String, &super::tarball::Link> = tar.links().collect();
    let mut i = 0;
    while i < paths.len() && i < 1024 {
        if let Some(l) = links.get(&paths[i]) {
            paths.push(l.target.clone());
        }
        i += 1;
    }
    let dirs: HashSet<&str> = paths
        .iter()
        .filter(|p| !p.starts_with("blobs/"))
        .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d))
        .collect();
    let siblings: Vec<String> = tar
        .files()
        .chain(tar.links().map(|(p, _)| p))
        .filter(|p| p.rsplit_once('/').is_some_and(|(d, _)| dirs.contains(d)))
        .cloned()
        .collect();
    paths.extend(siblings);
    paths
}

/// The manifest `desc` points at, if it is the image of entry `it`.
fn manifest_of(tar: &Tarball, desc: &Descriptor, it: &ManifestItem, what: &str) -> Option<()> {
    let m = layout::read_manifest(desc, what, |d, size| {
        tar.read_small(&layout::blob_path(d), size)
    })
    .ok()?;
    if m.kind != Kind::Image {
        return None;
    }
    let parsed = m.image().ok()?;
    let config_path = checked_path(&it.config, what).ok()?;
    let config = Digest::sha256_of(&tar.read_small(&config_path, MAX_CONFIG).ok()?);
    if Digest::try_from(parsed.config().digest()).ok()? != config
        || parsed.layers().len() != it.layers.len()
    {
        return None;
    }
    for (d, p) in parsed.layers().iter().zip(&it.layers) {
        let digest = Digest::try_from(d.digest()).ok()?;
        if checked_path(p, what).ok()? != layout::blob_path(&digest) {
            return None;
        }
    }
    Some(())
}

/// A tar writer that gives every file its directories first, and the same fixed metadata to
/// everything (time 0, the writer's own IDs, which an unprivileged extractor can chown to).
struct TarWriter<'a> {
    builder: tar::Builder<io::BufWriter<&'a mut dyn Write>>,
    dirs: HashSet<String>,
    what: &'a str,
    uid: u64,
    gid: u64,
}

impl<'a> TarWriter<'a> {
    fn new(out: &'a mut dyn Write, what: &'a str) -> Self {
        TarWriter {
            builder: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out)),
            dirs: HashSet::new(),
            what,
            uid: u64::from(rustix::process::getuid().as_raw()),
            gid: u64::from(rustix::process::getgid().as_raw()),
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h
    }

    fn err(&self, e: io::Error) -> Error {
        Error::io(format!("writing {}", self.what), e)
    }

    fn parents(&mut self, path: &str) -> Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            if self.dirs.insert(dir.to_string()) {
                let mut h = self.header(tar::EntryType::Directory, 0o755, 0);
                self.builder
                    .append_data(&mut h, format!("{dir}/"), io::empty())
                    .map_err(|e| self.err(e))?;
            }
            at += i + 1;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        self.parents(path)?;
        let mut h = self.header(tar::EntryType::Regular, 0o644, size);
        // Exactly `size` bytes: a source that is shorter fails here rather than shifting
        // every later member.
        let mut limited = data.take(size);
        self.builder
            .append_data(&mut h, path, &mut limited)
            .map_err(|e| self.err(e))
    }

    fn link(&mut self, path: &str, target: &str, hard: bool) -> Result<()> {
        self.parents(path)?;
        let kind = if hard {
            tar::EntryType::Link
        } else {
            tar::EntryType::Symlink
        };
        let mut h = self.header(kind, 0o777, 0);
        self.builder
            .append_link(&mut h, path, target)
            .map_err(|e| self.err(e))
    }

    fn finish(self) -> Result<()> {
        let what = self.what;
        let mut w = self
            .builder
            .into_inner()
            .map_err(|e| Error::io(format!("writing {what}"), e))?;
        w.flush()
            .map_err(|e| Error::io(format!("writing {what}"), e))
    }
}

impl Staged for DockerArchiveDestination {
    fn inner(&self) -> &dyn ImageDestination {
        &self.layout
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{}:{}", self.what(), n.familiar()),
            None => self.what(),
        }
    }

    fn has_blob_already(&self, digest: &Digest) -> bool {
        self.before
            .as_ref()
            .is_some_and(|t| t.has(&layout::blob_path(digest)))
    }

    fn finish(&mut self, image: &CopiedImage) -> Result<()> {
        let what = self.what();
        if image.top.kind != Kind::Image {
            return Err(Error::unsupported(
                &what,
                "a docker archive holds single-platform images; copy without --all",
            ));
        }
        if self.file == Path::new("-") {
            let mut out = io::stdout().lock();
            return self.write(&image.top, None, &mut out);
        }
        // One writer at a time per directory: each adds to the archive as the other left it.
        let dir = parent_dir(&self.file);
        let dir_handle = File::open(&dir).at(&dir)?;
        flock(&dir_handle, FlockOperation::LockExclusive)
            .map_err(|e| Error::io_path(&dir, e.into()))?;
        let old = existing(&self.file, &what)?;
        self.staging.replace(&self.file, |out, _| {
            self.write(&image.top, old.as_ref(), out)
        })
    }
}
