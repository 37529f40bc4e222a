//! Apptainer/Singularity's SIF container format, read just far enough to find the SquashFS
//! root filesystem inside: the global header, then the descriptor table, then the partition
//! descriptor of the primary system partition. Everything else in the file (definition file,
//! signatures, labels) lade leaves alone.
//!
//! The layout, from the format's reference implementation (sylabs/sif, `pkg/sif`; all
//! integers little-endian, structures packed as Go's `encoding/binary` writes them):
//!
//! ```text
//! global header, 128 bytes at offset 0:
//!   0  launch script [32]   32 magic "SIF_MAGIC\0" [10]   42 version "01\0" [3]
//!   45 arch [3]   48 uuid [16]   64 ctime i64   72 mtime i64
//!   80 descriptors free i64   88 descriptors total i64
//!   96 descriptors offset i64   104 descriptors size i64   112 data offset i64   120 data size i64
//! descriptor, 585 bytes each, `total` of them at `descriptors offset`:
//!   0 data type i32 (0x4004 = partition)   4 used u8   5 id u32   9 group u32   13 link u32
//!   17 offset i64   25 size i64   33 size with padding i64   41 ctime   49 mtime   57 uid
//!   65 gid   73 name [128]   201 extra [384]
//! partition extra: 0 fs type i32 (1 = SquashFS, 5 = encrypted SquashFS)
//!   4 partition type i32 (1 = system, 2 = primary system, 3 = data, 4 = overlay)   8 arch [3]
//! ```
//!
//! A SIF may hold several system partitions; Apptainer runs the primary one, and so does lade
//! (or the only SquashFS system partition, for files written before "primary" existed).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 128;
const MAGIC: &[u8; 10] = b"SIF_MAGIC\0";
const DESCRIPTOR_LEN: usize = 585;
/// Far more than any SIF tool writes (the default table has 48), small enough to read whole.
const MAX_DESCRIPTORS: u64 = 4096;

const DATA_PARTITION: i32 = 0x4004;
const FS_SQUASHFS: i32 = 1;
const FS_ENCRYPTED_SQUASHFS: i32 = 5;
const PART_SYSTEM: i32 = 1;
const PART_PRIMARY_SYSTEM: i32 = 2;

/// Whether the first bytes of a file are a SIF global header.
pub fn is_sif(head: &[u8]) -> bool {
    head.len() >= 42 && &head[32..42] == MAGIC
}

/// Whether the file at `path` starts as a SIF file does (its magic at byte 32), as Apptainer
/// checks a file before pushing it and after pulling it: a SIF need not hold a root
/// filesystem to be moved, so nothing past the magic is read here.
pub fn check_file(path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let mut head = Vec::with_capacity(HEADER_LEN);
    File::open(path)
        .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(|e| Error::io(&what, e))?;
    if !is_sif(&head) {
        return Err(Error::invalid(what, NOT_SIF));
    }
    Ok(())
}

const NOT_SIF: &str = "not a SIF file (no SIF_MAGIC at byte 32)";

/// Where the SquashFS root filesystem lies in a SIF file: (offset, length).
pub fn squashfs_partition(file: &File, file_len: u64, what: &str) -> Result<(u64, u64)> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_at(file, &mut header, 0, what, "its global header")?;
    if !is_sif(&header) {
        return Err(Error::invalid(what, NOT_SIF));
    }
    if &header[42..44] != b"01" {
        return Err(Error::unsupported(
            what,
            format!(
                "SIF format version '{}' (lade reads version 01)",
                String::from_utf8_lossy(&header[42..44])
            ),
        ));
    }
    let total = i64_at(&header, 88);
    let table_offset = i64_at(&header, 96);
    let bad = |why: String| Error::invalid(what, format!("corrupt SIF header: {why}"));
    let total = u64::try_from(total)
        .ok()
        .filter(|&t| t <= MAX_DESCRIPTORS)
        .ok_or_else(|| bad(format!("{total} descriptors")))?;
    let table_offset = u64::try_from(table_offset)
        .map_err(|_| bad(format!("descriptor table at offset {table_offset}")))?;
    let table_len = total * DESCRIPTOR_LEN as u64;
    if table_offset.saturating_add(table_len) > file_len {
        return Err(Error::invalid(
            what,
            format!(
                "truncated: its descriptor table ends at byte {} but the file has {file_len}",
                table_offset + table_len
            ),
        ));
    }
    let mut table = vec![0u8; table_len as usize];
    read_exact_at(file, &mut table, table_offset, what, "its descriptor table")?;
    let partitions: Vec<Partition> = table
        .chunks_exact(DESCRIPTOR_LEN)
        .filter_map(Partition::parse)
        .collect();
    let chosen = partitions
        .iter()
        .find(|p| p.part_type == PART_PRIMARY_SYSTEM)
        .or_else(|| {
            let systems: Vec<&Partition> = partitions
                .iter()
                .filter(|p| p.part_type == PART_SYSTEM)
                .collect();
            (systems.len() == 1).then(|| systems[0])
        })
        .ok_or_else(|| {
            Error::invalid(
                what,
                format!(
                    "the SIF file has no primary system partition ({} partitions)",
                    partitions.len()
                ),
            )
        })?;
    match chosen.fs_type {
        FS_SQUASHFS => {}
        FS_ENCRYPTED_SQUASHFS => {
            return Err(Error::unsupported(
                what,
                "its root filesystem is an encrypted SquashFS partition",
            ));
        }
        other => {
            return Err(Error::unsupported(
                what,
                format!("its root filesystem partition has type {other}, not SquashFS (1)"),
            ));
        }
    }
    let (offset, len) = (chosen.offset, chosen.len);
    let (Ok(offset), Ok(len)) = (u64::try_from(offset), u64::try_from(len)) else {
        return Err(bad(format!("partition at {offset}, {len} bytes")));
    };
    if offset.saturating_add(len) > file_len {
        return Err(Error::invalid(
            what,
            format!(
                "truncated: its SquashFS partition ends at byte {} but the file has {file_len}",
                offset.saturating_add(len)
            ),
        ));
    }
    Ok((offset, len))
}

/// A used partition descriptor.
struct Partition {
    offset: i64,
    len: i64,
    fs_type: i32,
    part_type: i32,
}

impl Partition {
    fn parse(d: &[u8]) -> Option<Partition> {
        let used = d[4] != 0;
        if !used || i32_at(d, 0) != DATA_PARTITION {
            return None;
        }
        Some(Partition {
            offset: i64_at(d, 17),
            len: i64_at(d, 25),
            fs_type: i32_at(d, 201),
            part_type: i32_at(d, 205),
        })
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    i32::from_le_bytes(v)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(v)
}

pub(super) fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    what: &str,
    part: &str,
) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::invalid(what, format!("truncated: the file ends inside {part}"))
        } else {
            Error::io(format!("{what}: reading {part}"), e)
        }
    })
}

/// Writing SIF files, for tests only (lade's and the integration tests): lade reads SIF but
/// does not write it.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A minimal SIF holding `squashfs` as its partition of type `part_type`, laid out as
    /// sylabs/sif's `CreateContainer` does: header, descriptor table, data at 4096-aligned
    /// offsets.
    pub fn sif_with(squashfs: &[u8], part_type: i32, fs_type: i32) -> Vec<u8> {
        let total = 48usize;
        let table_offset = HEADER_LEN;
        let data_offset = (table_offset + total * DESCRIPTOR_LEN).div_ceil(4096) * 4096;
        let mut out = vec![0u8; data_offset];
        out[..32].copy_from_slice(b"#!/usr/bin/env run-singularity\n\0");
        out[32..42].copy_from_slice(MAGIC);
        out[42..45].copy_from_slice(b"01\0");
        out[45..48].copy_from_slice(b"02\0");
        let put = |out: &mut Vec<u8>, at: usize, v: i64| {
            out[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut out, 80, total as i64 - 1);
        put(&mut out, 88, total as i64);
        put(&mut out, 96, table_offset as i64);
        put(&mut out, 104, DESCRIPTOR_LEN as i64);
        put(&mut out, 112, data_offset as i64);
        put(&mut out, 120, squashfs.len() as i64);
        let d = table_offset;
        out[d..d + 4].copy_from_slice(&DATA_PARTITION.to_le_bytes());
        out[d + 4] = 1;
        out[d + 5..d + 9].copy_from_slice(&1u32.to_le_bytes());
        put(&mut out, d + 17, data_offset as i64);
        put(&mut out, d + 25, squashfs.len() as i64);
        put(&mut out, d + 33, squashfs.len() as i64);
        out[d + 201..d + 205].copy_from_slice(&fs_type.to_le_bytes());
        out[d + 205..d + 209].copy_from_slice(&part_type.to_le_bytes());
        out.extend_from_slice(squashfs);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sif_with;
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        (f, bytes.len() as u64)
    }

    #[test]
    fn finds_the_primary_partition() {
        let sif = sif_with(b"hsqs-and-more", PART_PRIMARY_SYSTEM, FS_SQUASHFS);
        assert!(is_sif(&sif));
        let (f, len) = file_of(&sif);
        let (offset, size) = squashfs_partition(f.as_file(), len, "x.sif").unwrap();
        assert_eq!(offset % 4096, 0);
        assert_eq!(size, 13);
        assert_eq!(&sif[offset as usize..][..4], b"hsqs");
    }

    #[test]
    fn check_file_reads_only_the_magic() {
        // A SIF with no root filesystem is still a SIF to move around.
        let (f, _) = file_of(&sif_with(b"data", 3, 4));
        check_file(f.path()).unwrap();
        for not in [&b""[..], b"#!/bin/sh\n", &[0u8; 200]] {
            let (f, _) = file_of(not);
            let e = check_file(f.path()).unwrap_err();
            assert!(e.to_string().contains("not a SIF file"), "{e}");
        }
        let e = check_file(Path::new("/no/such.sif")).unwrap_err();
        assert!(e.to_string().contains("/no/such.sif"), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let encrypted = sif_with(b"data", PART_PRIMARY_SYSTEM, FS_ENCRYPTED_SQUASHFS);
        let (f, len) = file_of(&encrypted);
        let e = squashfs_partition(f.as_file(), len, "x.sif").unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");

        let data_only = sif_with(b"data", 3, FS_SQUASHFS);
        let (f, len) = file_of(&data_only);
        let e = squashfs_partition(f.as_file(), len, "x.sif").unwrap_err();
        assert!(e.to_string().contains("no primary system partition"), "{e}");

        // Cut inside the partition: the descriptor promises more than the file has.
        let whole = sif_with(&[7u8; 5000], PART_PRIMARY_SYSTEM, FS_SQUASHFS);
        let cut = &whole[..whole.len() - 10];
        let (f, len) = file_of(cut);
        let e = squashfs_partition(f.as_file(), len, "x.sif").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");

        // Cut inside the descriptor table.
        let (f, len) = file_of(&whole[..1000]);
        let e = squashfs_partition(f.as_file(), len, "x.sif").unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
