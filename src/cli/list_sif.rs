//! `lade list`'s entries for single-file images: SIFs pulled over `oras://` and kept in the
//! store by name (`single-files/`), shown after the images in every form of the listing and
//! marked `[sif]`. `lade run NAME` runs a stored image of that name before a SIF of it (see
//! `lade::run::plan::resolve`), so a SIF an image's name hides says so, and how it still runs:
//! `lade run oras://NAME`, which names the stored SIF alone.

use indicatif::HumanBytes;
use serde_json::Value;

use lade::error::{Error, Result};
use lade::reference::Reference;
use lade::storage::{ListedSingleFile, Storage};

/// A stored SIF as `lade list` shows it.
pub struct ShownSif {
    pub listed: ListedSingleFile,
    /// The name as `docker` would print it (the record's own if it does not parse).
    pub familiar: String,
    /// Whether a stored image has the same name, and so runs instead with `lade run NAME`.
    pub shadowed: bool,
}

impl ShownSif {
    fn new(storage: &Storage, listed: ListedSingleFile) -> ShownSif {
        let name = Reference::parse(&listed.record.name);
        let familiar = name
            .as_ref()
            .map_or_else(|_| listed.record.name.clone(), Reference::familiar);
        // An image record that cannot be read stops `lade run NAME` before it reaches the
        // SIF as surely as one that can.
        let shadowed = name.is_ok_and(|n| !matches!(storage.images().get(&n), Ok(None)));
        ShownSif {
            listed,
            familiar,
            shadowed,
        }
    }

    /// What follows the name in both text forms: the read-only store, and the image that
    /// hides it.
    fn notes(&self) -> String {
        let mut out = super::list::store_note(self.listed.read_only_store.as_deref());
        if self.shadowed {
            out += &format!(
                "  [image {0} runs first; this SIF: lade run oras://{0}]",
                self.familiar
            );
        }
        out
    }

    /// `lade list`'s line.
    pub fn line(&self) -> String {
        format!(
            "{} [sif, {}]{}",
            self.familiar,
            HumanBytes(self.listed.record.size),
            self.notes()
        )
    }

    /// `lade list -l`'s line, in the image lines' columns: `[sif]` for the platform, the
    /// file's digest (what `sha256sum` says of it), its size for the layers, the source.
    pub fn long_line(&self) -> String {
        let r = &self.listed.record;
        let digest = r.blob.to_string();
        format!(
            "{:40} {:10} {} {:>10}  {}{}",
            self.familiar,
            "[sif]",
            digest.get(..19).unwrap_or(&digest),
            HumanBytes(r.size).to_string(),
            r.source,
            self.notes()
        )
    }

    /// `lade list --format json`'s entry: the record as stored (`name`, `blob`, `size`,
    /// `manifest`, `source`), `kind: "sif"`, `store` as images have it, and
    /// `shadowed_by_image`.
    pub fn json(&self, storage: &Storage) -> Result<Value> {
        let mut v =
            serde_json::to_value(&self.listed.record).map_err(|e| Error::json("list", e))?;
        if let Some(map) = v.as_object_mut() {
            map.insert("kind".into(), "sif".into());
            map.insert(
                "store".into(),
                super::list::store_json(storage, self.listed.read_only_store.as_deref()),
            );
            map.insert("shadowed_by_image".into(), self.shadowed.into());
        }
        Ok(v)
    }

    /// `lade list NAME`'s details.
    pub fn print_details(&self) {
        let r = &self.listed.record;
        println!("details of SIF:      {}", self.familiar);
        println!("full reference:      {}", r.name);
        match &self.listed.read_only_store {
            Some(dir) => println!(
                "in local storage:    yes, read-only store {}",
                dir.display()
            ),
            None => println!("in local storage:    yes"),
        }
        println!(
            "size:                {} ({} bytes)",
            HumanBytes(r.size),
            r.size
        );
        println!("file digest:         {}", r.blob);
        println!("manifest digest:     {}", r.manifest);
        println!("source:              {}", r.source);
        if self.shadowed {
            println!(
                "runs with:           lade run oras://{0} (lade run {0} runs the image)",
                self.familiar
            );
        } else {
            println!("runs with:           lade run {}", self.familiar);
        }
    }
}

/// Every SIF a name lookup finds, the user's first, then each read-only store's (as
/// [`Storage::list_all_single_files`]); a record that cannot be read is a warning.
pub fn all(storage: &Storage) -> Result<Vec<ShownSif>> {
    let mut out = Vec::new();
    for listed in storage.list_all_single_files()? {
        match listed {
            Ok(l) => out.push(ShownSif::new(storage, l)),
            Err(e) => eprintln!("lade: warning: {e}"),
        }
    }
    Ok(out)
}

/// The SIF stored as `name`, if there is one (the one `lade run oras://NAME` runs).
pub fn named(storage: &Storage, name: &Reference) -> Result<Option<ShownSif>> {
    let full = name.to_string();
    Ok(storage
        .list_all_single_files()?
        .into_iter()
        .flatten()
        .find(|l| l.record.name == full)
        .map(|l| ShownSif::new(storage, l)))
}
