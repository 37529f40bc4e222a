//! `lade undelete IMG`: brings back an image `lade delete` removed, as ch-image's `undelete`.
//!
//! `lade delete` remembers each image it removes (its whole record, and for a built image the
//! cache states it came from: [`super::image_links`]). The image comes back if its objects
//! are still in the store: a built image's layers are kept by its cache records until
//! `lade build-cache --gc` or `--reset`; a pulled image's only while some cached build step
//! uses them (collection forgets the others, see [`super::gc`]).

use super::Storage;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// Restores image `name`; returns its familiar name.
pub fn undelete(storage: &Storage, name: &Reference) -> Result<String> {
    let familiar = name.familiar();
    // A read-only store's image of that name stays; the user's comes first again.
    if storage.images().get_own(name)?.is_some() {
        return Err(Error::invalid(
            format!("undelete {familiar}"),
            "an image of that name exists; delete it first",
        ));
    }
    let deleted = storage.deleted_images();
    let Some(d) = deleted.get(name)? else {
        return Err(Error::ImageNotFound(format!(
            "{familiar} is not among the deleted images lade can restore (a deleted image is \
             forgotten once its layers are collected: by build-cache --gc or --reset, or at \
             once for a pulled image no cached build step uses)"
        )));
    };
    let blobs = storage.blobs();
    let layers = storage.layers();
    let mut missing: Vec<String> = [&d.record.manifest, &d.record.config]
        .into_iter()
        .chain(d.record.layers.iter().map(|l| &l.blob))
        .filter(|b| !blobs.has(b))
        .map(|b| format!("blob {}", b.short()))
        .collect();
    missing.extend(
        d.record
            .layers
            .iter()
            .filter(|l| !layers.has(&l.tree))
            .map(|l| format!("layer {}", l.diff_id.short())),
    );
    if !missing.is_empty() {
        return Err(Error::invalid(
            format!("undelete {familiar}"),
            format!(
                "its objects were collected ({}); pull or build it again",
                missing.join(", ")
            ),
        ));
    }
    let mut record = d.record.clone();
    // The index is provenance only; the image works without it.
    if record.index.as_ref().is_some_and(|i| !blobs.has(i)) {
        record.index = None;
    }
    storage.images().put(&record)?;
    if !d.keys.is_empty() {
        storage
            .image_links()
            .link(name, &record.manifest, d.keys.clone())?;
    }
    deleted.forget(name)?;
    Ok(familiar)
}
