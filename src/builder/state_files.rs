//! What a build state holds at a path, read from its layer trees without flattening them: the
//! topmost layer that has an entry decides (a whiteout, a 0/0 character device, hides it).

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::driver::{Builder, resolve_path};
use crate::builder::cache::State;

impl Builder<'_> {
    /// What the state has at `rel` (relative to the root): the entry of the topmost layer
    /// that has one (a whiteout included), with its path in that layer's tree.
    fn top_entry(&self, state: &State, rel: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let layers = self.storage.layers();
        state.layers.iter().rev().find_map(|l| {
            let p = layers.tree(&l.tree).join(rel);
            std::fs::symlink_metadata(&p).ok().map(|m| (p, m))
        })
    }

    /// The permission bits of directory `rel` in the state, if it is one there.
    pub(super) fn dir_mode_in(&self, state: &State, rel: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let (_, m) = self.top_entry(state, rel)?;
        m.is_dir().then(|| m.permissions().mode() & 0o7777)
    }

    /// Whether `path` (absolute) is a directory in the state: the topmost layer that has it
    /// decides (a whiteout hides it).
    pub(super) fn is_dir_in(&self, state: &State, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return true;
        }
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| !m.file_type().is_char_device() && m.is_dir())
    }

    /// `abs` with the image state's symbolic links followed, as the kernel would inside the
    /// container: absolute targets start again at the image root and `..` stops there; at
    /// most 40 links, then the rest is taken as written. COPY and ADD write through a
    /// destination that is (or runs through) a link, as Docker and ch-image do (the manual's
    /// COPY rule 3.1).
    pub(super) fn resolve_links_in(&self, state: &State, abs: &str) -> String {
        use std::collections::VecDeque;
        let mut done: Vec<String> = Vec::new();
        let mut todo: VecDeque<String> = abs
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(c),
            }
            if links >= 40 {
                continue;
            }
            let rel = done.join("/");
            let Some((path, meta)) = self.top_entry(state, &rel) else {
                continue;
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            links += 1;
            done.pop();
            let target = target.to_string_lossy().into_owned();
            if target.starts_with('/') {
                done.clear();
            }
            for part in target.split('/').filter(|c| !c.is_empty()).rev() {
                todo.push_front(part.to_string());
            }
        }
        format!("/{}", done.join("/"))
    }

    /// Whether `rel` is a symbolic link in the state (the topmost layer that has it decides).
    pub(super) fn is_symlink_in(&self, state: &State, rel: &str) -> bool {
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| m.file_type().is_symlink())
    }

    /// Whether `rel` exists in the state (the topmost layer that has it decides).
    pub(super) fn exists_in(&self, state: &State, rel: &str) -> bool {
        self.top_entry(state, rel)
            .is_some_and(|(_, m)| !(m.file_type().is_char_device() && m.rdev() == 0))
    }

    /// The text of regular file `abs` in the state (symbolic links followed inside the
    /// image, at most 64 KiB: enough for the small release files it is used on).
    pub(super) fn read_file_in(&self, state: &State, abs: &str) -> Option<String> {
        let mut path = resolve_path("/", abs);
        for _ in 0..16 {
            let rel = path.trim_start_matches('/').to_string();
            let (tree, meta) = self.top_entry(state, &rel)?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&tree).ok()?;
                let parent = Path::new(&path).parent().unwrap_or(Path::new("/"));
                path = resolve_path(&parent.to_string_lossy(), &target.to_string_lossy());
                continue;
            }
            if !ft.is_file() {
                return None; // a directory, or a whiteout
            }
            let mut text = String::new();
            std::fs::File::open(&tree)
                .ok()?
                .take(64 * 1024)
                .read_to_string(&mut text)
                .ok()?;
            return Some(text);
        }
        None
    }
}
