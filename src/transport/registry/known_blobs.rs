//! The store's record of which repositories of which registries hold which blobs
//! (`$STORAGE/registry-blobs`, lines `DIGEST HOST/REPOSITORY`): written by pushes and by pulls
//! (a repository that served a blob holds it), read by pushes to mount a blob from another
//! repository of the same registry instead of uploading it (pull a base image, build on it,
//! push next to it: the base layers are mounted). Best effort throughout: a wrong or lost line
//! costs an upload, never correctness, since a failed mount falls back to uploading.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::digest::Digest;
use crate::storage::Storage;

/// A record bigger than this is not read, and is started afresh on the next write.
const MAX_BYTES: u64 = 8 << 20;

/// Notes that `registry/repository` holds `digests`. One append of whole lines per call, so
/// concurrent processes do not tear each other's lines.
pub fn note(storage: &Storage, registry: &str, repository: &str, digests: &[Digest]) {
    if digests.is_empty() {
        return;
    }
    let lines: String = digests
        .iter()
        .map(|d| format!("{d} {registry}/{repository}\n"))
        .collect();
    let path = storage.registry_blobs_file();
    let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES);
    let file = if too_big {
        std::fs::File::create(&path)
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    };
    if let Ok(mut f) = file {
        let _ = f.write_all(lines.as_bytes());
    }
}

/// The record for `registry`: blob → repositories holding it.
pub fn read(storage: &Storage, registry: &str) -> HashMap<Digest, Vec<String>> {
    let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
    let path = storage.registry_blobs_file();
    let Ok(f) = std::fs::File::open(&path) else {
        return out;
    };
    let mut text = String::new();
    if f.take(MAX_BYTES).read_to_string(&mut text).is_err() {
        return out;
    }
    for line in text.lines() {
        let Some((d, loc)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(d), Some((reg, repo))) = (d.parse::<Digest>(), loc.split_once('/')) else {
            continue;
        };
        if reg == registry {
            let v = out.entry(d).or_default();
            if !v.iter().any(|r| r == repo) {
                v.push(repo.to_string());
            }
        }
    }
    out
}
