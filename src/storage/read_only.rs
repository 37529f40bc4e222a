//! Read-only stores (`--ro-storage DIR`, `$LADE_RO_STORAGE`): lade storage directories another
//! user (a site's admin) filled, which this user reads in place and never changes. Podman's
//! `additionalimagestores`, without the lock file it needs there and the writes it tries.
//!
//! What such a store gives is used where it lies: its images by name, its blobs by digest, its
//! layer trees by key, each looked up in the user's store first, then in the read-only stores
//! in the order given ([`Dirs`]); so a pull or build makes only what none of them has, and an
//! image in the user's store may name blobs and trees that only a read-only store holds.
//!
//! Nothing here writes, creates or locks anything in a read-only store, not even a shared
//! `flock` (the store may sit on a read-only or lock-less filesystem): opening one only reads
//! its `VERSION`. Whatever writes goes to the user's store: [`super::BlobStore`],
//! [`super::LayerStore`] and [`super::ImageStore`] list, publish and remove only their own
//! directory, so `lade gc`, `delete` and `fsck` never see read-only objects as theirs.
//! Changing a read-only store while other users run its images is its owner's business
//! (adding is safe; removing breaks whoever uses what was removed).

use std::path::{Path, PathBuf};

use super::single_files::{SingleFile, SingleFiles};
use super::{FORMAT_VERSION, ImageRecord, ImageStore, Storage, Trash};
use crate::error::{Error, IoContext, Result};

/// The read-only stores to use: `--ro-storage` (each occurrence one store) if given, else
/// `$LADE_RO_STORAGE`, colon-separated and absolute (as `$LADE_STORAGE`).
pub fn resolve_paths(option: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !option.is_empty() {
        let cwd = std::env::current_dir().ctx(|| "current directory".into())?;
        return Ok(option.iter().map(|p| cwd.join(p)).collect());
    }
    let Some(env) = std::env::var_os("LADE_RO_STORAGE") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()) {
        if !part.is_absolute() {
            return Err(Error::invalid(
                format!("$LADE_RO_STORAGE entry {}", part.display()),
                "must be an absolute path",
            ));
        }
        out.push(part);
    }
    Ok(out)
}

/// The read-only stores a store at `own` uses when given `roots`: in their order, each once,
/// never `own` itself (`lade gestalt` shows them; [`Storage::with_read_only`] opens them).
pub fn distinct(own: &Path, roots: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for root in roots {
        if root != own && !out.contains(&root) {
            out.push(root);
        }
    }
    out
}

/// Checks that `root` is a lade store of this format, reading nothing but its `VERSION`.
pub(super) fn check(root: &Path) -> Result<()> {
    let what = || format!("read-only store {}", root.display());
    if !root.is_dir() {
        return Err(Error::invalid(
            what(),
            "does not exist or is not a directory",
        ));
    }
    let version_path = super::version_path(root);
    let text = match std::fs::read_to_string(&version_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(
                what(),
                "has no VERSION file: not a lade storage directory",
            ));
        }
        Err(e) => return Err(Error::io(what(), e)),
    };
    match text.trim().parse::<u32>() {
        Ok(FORMAT_VERSION) => Ok(()),
        Ok(v) => Err(Error::invalid(
            what(),
            format!("format version {v} is unknown to this lade (it knows {FORMAT_VERSION})"),
        )),
        Err(_) => Err(Error::invalid(
            what(),
            format!("VERSION file holds '{}', not a number", text.trim()),
        )),
    }
}

/// One kind of object's directory (`blobs`, `layers`, `images`) in the user's store and in
/// each read-only store: where lookups go, in order.
#[derive(Clone, Debug)]
pub(super) struct Dirs {
    own: PathBuf,
    read_only: Vec<PathBuf>,
}

impl Dirs {
    pub(super) fn new(own: PathBuf, read_only: Vec<PathBuf>) -> Dirs {
        Dirs { own, read_only }
    }

    /// The user's directory: the only one written, listed or removed from.
    pub(super) fn own(&self) -> &Path {
        &self.own
    }

    /// `relative` in the first directory, the user's first, where `present` holds for it.
    pub(super) fn find(
        &self,
        relative: impl AsRef<Path>,
        present: impl Fn(&Path) -> bool,
    ) -> Option<PathBuf> {
        self.all(relative).find(|p| present(p))
    }

    /// `relative` in every directory, the user's first, whether it exists or not (for
    /// records merged across the stores).
    pub(super) fn all(&self, relative: impl AsRef<Path>) -> impl Iterator<Item = PathBuf> + '_ {
        let relative = relative.as_ref().to_path_buf();
        std::iter::once(&self.own)
            .chain(&self.read_only)
            .map(move |d| d.join(&relative))
    }
}

/// A stored object (an image's or a SIF's record) and which store holds it.
#[derive(Debug, Clone)]
pub struct InStore<T> {
    pub record: T,
    /// The read-only store it is in; `None`: the user's store.
    pub read_only_store: Option<PathBuf>,
}

/// A stored image and which store holds it.
pub type ListedImage = InStore<ImageRecord>;
/// A stored single-file image (SIF) and which store holds it.
pub type ListedSingleFile = InStore<SingleFile>;

impl Storage {
    /// Adds the read-only stores `roots` to look objects up in after this one, checking each
    /// (`check`); a store named twice, or naming this store itself, counts once.
    pub fn with_read_only(mut self, roots: Vec<PathBuf>) -> Result<Storage> {
        for root in distinct(&self.root, roots) {
            if !self.read_only.contains(&root) {
                check(&root)?;
                self.read_only.push(root);
            }
        }
        Ok(self)
    }

    /// The directory `name` in this store and in each read-only store.
    pub(super) fn dirs(&self, name: &str) -> Dirs {
        Dirs::new(
            self.root.join(name),
            self.read_only.iter().map(|r| r.join(name)).collect(),
        )
    }

    /// Every image a name lookup can find, by store: the user's first, then each read-only
    /// store's that no earlier store names, sorted by name within each store. Unreadable
    /// records are errors in the list, as in [`ImageStore::list`].
    pub fn list_all_images(&self) -> Result<Vec<std::result::Result<ListedImage, Error>>> {
        self.first_of_each_name(
            self.images().list()?,
            |root| images_of(root).list(),
            |r| &r.name,
        )
    }

    /// Every single-file image (SIF) a name lookup can find, by store as
    /// [`list_all_images`](Self::list_all_images) lists images. Records that do not parse
    /// are errors in the list.
    pub fn list_all_single_files(
        &self,
    ) -> Result<Vec<std::result::Result<ListedSingleFile, Error>>> {
        self.first_of_each_name(
            self.single_files().entries()?,
            |root| single_files_of(root).entries(),
            |r| &r.name,
        )
    }

    /// `own` (the user's store's entries), then each read-only store's (`of_store`), less
    /// those whose name (`name`) an earlier store has: what a lookup by name finds, with the
    /// store it finds it in. Errors (records that do not parse) stay in their store's place.
    fn first_of_each_name<T>(
        &self,
        own: Vec<Result<T>>,
        of_store: impl Fn(&Path) -> Result<Vec<Result<T>>>,
        name: impl Fn(&T) -> &str,
    ) -> Result<Vec<Result<InStore<T>>>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let others = self
            .read_only
            .iter()
            .map(|root| of_store(root).map(|list| (Some(root.clone()), list)));
        for listed in std::iter::once(Ok((None, own))).chain(others) {
            let (store, entries) = listed?;
            for entry in entries {
                match entry {
                    Ok(v) if !seen.insert(name(&v).to_string()) => {}
                    Ok(record) => out.push(Ok(InStore {
                        record,
                        read_only_store: store.clone(),
                    })),
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        Ok(out)
    }

    /// Whether `name` is found only in a read-only store; which one, if so.
    pub fn read_only_holder(&self, name: &crate::reference::Reference) -> Result<Option<PathBuf>> {
        if self.images().get_own(name)?.is_some() {
            return Ok(None);
        }
        for root in &self.read_only {
            if images_of(root).get(name)?.is_some() {
                return Ok(Some(root.clone()));
            }
        }
        Ok(None)
    }
}

/// The single-file images of the read-only store `root` alone, to read.
fn single_files_of(root: &Path) -> SingleFiles {
    SingleFiles::new(Dirs::new(root.join("single-files"), Vec::new()))
}

/// The images of the read-only store `root` alone, to read (it has no trash or lost+found:
/// nothing is removed or moved there).
fn images_of(root: &Path) -> ImageStore {
    ImageStore::new(
        Dirs::new(root.join("images"), Vec::new()),
        Trash::new(None),
        PathBuf::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_go_to_the_users_directory_first_then_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let [own, a, b] = ["own", "a", "b"].map(|n| tmp.path().join(n));
        for d in [&own, &a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(a.join("x"), "a").unwrap();
        std::fs::write(b.join("x"), "b").unwrap();
        std::fs::write(b.join("y"), "b").unwrap();
        let dirs = Dirs::new(own.clone(), vec![a.clone(), b.clone()]);
        assert_eq!(dirs.find("x", Path::is_file), Some(a.join("x")));
        assert_eq!(dirs.find("y", Path::is_file), Some(b.join("y")));
        assert_eq!(dirs.find("z", Path::is_file), None);
        std::fs::write(own.join("x"), "own").unwrap();
        assert_eq!(dirs.find("x", Path::is_file), Some(own.join("x")));
    }

    #[test]
    fn a_read_only_stores_records_are_found_but_never_the_users_to_list() {
        use crate::storage::{LockMode, single_files::SingleFile};
        let tmp = tempfile::tempdir().unwrap();
        let (theirs, mine) = (tmp.path().join("theirs"), tmp.path().join("mine"));
        let name: crate::reference::Reference = "tool:1".parse().unwrap();
        let record = SingleFile {
            name: name.to_string(),
            blob: crate::digest::Digest::sha256_of(b"sif"),
            size: 3,
            manifest: crate::digest::Digest::sha256_of(b"manifest"),
            source: "oras://example/tool:1".into(),
        };
        {
            let admin = Storage::open(&theirs, LockMode::None).unwrap();
            admin.single_files().put(&record).unwrap();
            admin.blobs().put_bytes(b"sif").unwrap();
        }
        let user = Storage::open(&mine, LockMode::None)
            .unwrap()
            .with_read_only(vec![theirs.clone()])
            .unwrap();
        assert_eq!(
            user.single_files().get(&name).unwrap(),
            Some(record.clone())
        );
        assert!(user.blobs().has(&record.blob));
        assert_eq!(
            user.blobs()
                .path(&record.blob)
                .parent()
                .unwrap()
                .parent()
                .unwrap(),
            theirs.join("blobs")
        );
        // Collection and listing see the user's store only; listing all, every store.
        let all: Vec<ListedSingleFile> = user
            .list_all_single_files()
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].record, record);
        assert_eq!(all[0].read_only_store.as_deref(), Some(theirs.as_path()));
        assert!(user.single_files().list().unwrap().is_empty());
        assert!(user.single_files().live().unwrap().is_empty());
        assert!(user.blobs().list().unwrap().is_empty());
        // Removing is the user's only: the read-only store's record stays.
        assert!(!user.single_files().remove(&name).unwrap());
        assert!(user.single_files().get(&name).unwrap().is_some());
        // The user's record of the same name hides the read-only store's.
        let mine_too = SingleFile { size: 4, ..record };
        user.single_files().put(&mine_too).unwrap();
        let all = user.list_all_single_files().unwrap();
        assert_eq!(all.len(), 1);
        let first = all[0].as_ref().unwrap();
        assert_eq!((first.record.size, &first.read_only_store), (4, &None));
    }

    #[test]
    fn the_stores_in_use_are_each_named_once_and_never_the_users_own() {
        let [own, a, b] = ["/s/own", "/s/a", "/s/b"].map(PathBuf::from);
        let given = [&a, &own, &b, &a, &b].map(|p| p.clone());
        assert_eq!(distinct(&own, given), vec![a, b]);
        assert!(distinct(&own, [own.clone()]).is_empty());
    }

    #[test]
    fn a_missing_or_foreign_directory_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let e = check(&missing).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
        let e = check(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a lade storage directory"), "{e}");
        std::fs::write(tmp.path().join("VERSION"), "99\n").unwrap();
        let e = check(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("format version 99"), "{e}");
        std::fs::write(tmp.path().join("VERSION"), format!("{FORMAT_VERSION}\n")).unwrap();
        check(tmp.path()).unwrap();
    }
}
