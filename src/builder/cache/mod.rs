//! The build cache, as the builder sees it: what a step's key is, when a stored record is a
//! hit, and `lade build-cache`'s policies. The records themselves, the links from image names
//! to states and the deleted images are the store's (`build-cache/` in
//! [`crate::storage::cache_records`] and [`crate::storage::image_links`]).
//!
//! A step's key is sha256 of its parent state's key, the instruction after substitution (with
//! the ARG values in scope), and the content of every context file the step reads; so a key
//! names one exact result, and a record's state never changes once written.
//!
//! Each record also names its parent key and the instruction as written, so the records form
//! a tree rooted at the FROM images (parent `image:<manifest digest>`) and `scratch`, which
//! `lade build-cache --tree` draws. Records written before these fields existed still give
//! hits (the key alone proves the match) and are rewritten with them on their next hit; until
//! then `--tree` shows them as orphans.
//!
//! - [`tree`]: the `--tree` drawing.
//! - [`manage`]: `lade build-cache` (summary, `--tree`, `--gc`, `--reset`).
//!
//! A record whose layers have left the store is a miss. `lade delete` keeps every layer a
//! record names (see [`crate::storage::gc`]): only `lade build-cache --gc` and `--reset`
//! release them.
//!
//! # Identical files are not shared between layer trees (a measured decision)
//!
//! ch-image stores identical files once (Git objects). The obvious lade equivalent, hard
//! linking every build layer's regular files into a content store `files/sha256/<hex>` keyed
//! by content and metadata, is not safe with how the store uses inodes:
//!
//! - a shared inode between two layer trees already *means* a hard link: it is how
//!   `resolve_external_hardlinks` keeps a layer's hard link to a lower layer's file, and
//!   `flatten_trees` (`lade unpack`, `lade run` without overlayfs, `COPY --from`) links every
//!   later path of an inode it has copied once. Tried by hand (two `COPY f` steps to `/x/f`
//!   and `/y/f`, then `ln -f` between the two trees): `lade unpack` gave one inode, nlink 2,
//!   for both paths, so writing one file changed the other;
//! - through overlayfs (lowers on one filesystem) a container sees the lower inode number:
//!   the same experiment in `lade run` showed `/x/f` and `/y/f` with the same st_ino and
//!   nlink 2, i.e. as hard links, to tar, `cp -a`, rsync `-H`, du and the RUN steps of later
//!   builds, which would pack them as tar hard links;
//! - `hardlinks.rs` reads nlink 1 as "not linked elsewhere".
//!
//! Telling such sharing from real hard links would need a per-layer list of hard link groups
//! read by flatten and the hard link resolver, and would still leave the overlayfs inode
//! numbers visible. Sharing extents rather than inodes (FICLONE / FIDEDUPERANGE on btrfs or
//! XFS) keeps separate inodes and is the safe way; this machine's ext4 has no reflinks, so it
//! could be neither measured nor tested here, and is left for later. `tests/build_cache.rs`
//! (`identical_files_in_two_layers_stay_separate_files`) guards the current behaviour.

pub mod manage;
pub mod tree;

use crate::digest::Digest;
use crate::error::Result;
use crate::storage::{CacheRecords, Storage};

pub use crate::storage::State;

/// The builder's view of the cache records: lookups that count as hits, and new records.
pub struct BuildCache {
    records: CacheRecords,
}

/// A step's key from its parts.
pub fn step_key(parent: &str, instruction: &str, inputs: &str) -> String {
    let text = format!("{parent}\n{instruction}\n{inputs}");
    Digest::sha256_of(text.as_bytes()).hex().to_string()
}

/// An instruction's text on one line, as the records hold it and the tree shows it.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl BuildCache {
    pub fn new(storage: &Storage) -> BuildCache {
        BuildCache {
            records: storage.cache_records(),
        }
    }

    /// The state recorded under `key`, if any and if all its layers are still in the store.
    /// A hit marks the record used; a record from before parents were recorded is rewritten
    /// with `parent` and `instruction`, so that it joins the tree. A record of a read-only
    /// store is a hit too (its layers are used where they are), copied into the user's cache,
    /// whose tree and collection know only the user's records.
    pub fn get(
        &self,
        storage: &Storage,
        key: &str,
        parent: &str,
        instruction: &str,
    ) -> Result<Option<State>> {
        let Some((record, own)) = self.records.find(key)? else {
            return Ok(None);
        };
        if !record.state.layers.iter().all(|l| storage.holds_layer(l)) {
            return Ok(None);
        }
        if !own || record.parent.is_none() || record.instruction.is_none() {
            self.put(key, parent, instruction, &record.state)?;
        } else {
            self.records.touch(key);
        }
        Ok(Some(record.state))
    }

    /// Records `state` as the result of `instruction` on state `parent`.
    pub fn put(&self, key: &str, parent: &str, instruction: &str, state: &State) -> Result<()> {
        self.records.put(key, parent, &one_line(instruction), state)
    }
}
