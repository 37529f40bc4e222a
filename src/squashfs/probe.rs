//! What a single-file image is, checked before anything is mounted: a SquashFS file, or a SIF
//! file with a SquashFS partition at some offset. The superblock is checked for consistency
//! (format 4.0, a sane block size, its tables inside the bytes it says it uses, and those
//! bytes present), so that a file that is not an image, or a truncated one, is a one-line
//! error here instead of a FUSE server failing later.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::sif;
use crate::error::{Error, Result};

const SUPERBLOCK_LEN: usize = 96;
const MAGIC: &[u8; 4] = b"hsqs";
/// No table: SquashFS writes all ones for an absent optional table.
const NO_TABLE: u64 = u64::MAX;

/// A single-file image, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Absolute, so that it stays valid after the container's root changes.
    pub path: PathBuf,
    pub format: Format,
    /// Where the SquashFS filesystem starts in the file (0 unless SIF).
    pub offset: u64,
    /// Bytes of the filesystem, from its superblock.
    pub bytes_used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    SquashFs,
    Sif,
}

impl ImageFile {
    pub fn open(path: &Path) -> Result<ImageFile> {
        let path = std::path::absolute(path).map_err(|e| Error::io_path(path, e))?;
        ImageFile::open_as(&path, &path.display().to_string())
    }

    /// [`ImageFile::open`], with errors naming the file `what` (a stored file's blob is
    /// better named by its image).
    pub fn open_as(path: &Path, what: &str) -> Result<ImageFile> {
        let path = std::path::absolute(path).map_err(|e| Error::io(what, e))?;
        let file = File::open(&path).map_err(|e| Error::io(what, e))?;
        let meta = file.metadata().map_err(|e| Error::io(what, e))?;
        if !meta.is_file() {
            return Err(Error::invalid(what, "not a regular file"));
        }
        let len = meta.len();
        let mut head = [0u8; sif::HEADER_LEN];
        let n = read_up_to(&file, &mut head, what)?;
        let head = &head[..n];
        let (format, offset, available) = if head.starts_with(MAGIC) {
            (Format::SquashFs, 0, len)
        } else if sif::is_sif(head) {
            let (offset, size) = sif::squashfs_partition(&file, len, what)?;
            (Format::Sif, offset, size)
        } else {
            return Err(Error::invalid(
                what,
                "not a SquashFS or SIF image (no SquashFS superblock, no SIF header)",
            ));
        };
        let mut sb = [0u8; SUPERBLOCK_LEN];
        sif::read_exact_at(&file, &mut sb, offset, what, "the SquashFS superblock")?;
        let bytes_used = check_superblock(&sb, available).map_err(|why| {
            let place = if offset == 0 {
                String::new()
            } else {
                format!(" (SquashFS partition at byte {offset})")
            };
            Error::invalid(what, format!("{why}{place}"))
        })?;
        Ok(ImageFile {
            path,
            format,
            offset,
            bytes_used,
        })
    }
}

fn read_up_to(file: &File, buf: &mut [u8], what: &str) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(what, e)),
        }
    }
    Ok(n)
}

/// Checks a SquashFS superblock against the `available` bytes; returns the bytes it uses.
fn check_superblock(sb: &[u8; SUPERBLOCK_LEN], available: u64) -> Result<u64, String> {
    let u16_at = |at: usize| u16::from_le_bytes([sb[at], sb[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
    let u64_at = |at: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&sb[at..at + 8]);
        u64::from_le_bytes(v)
    };
    if &sb[..4] != MAGIC {
        return Err("no SquashFS superblock where one should be".into());
    }
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return Err(format!(
            "SquashFS format {major}.{minor} is not supported (lade reads 4.0)"
        ));
    }
    let corrupt = |why: String| Err(format!("corrupt SquashFS superblock: {why}"));
    let block_size = u32_at(12);
    let block_log = u16_at(22);
    if !(4096..=1 << 20).contains(&block_size)
        || !block_size.is_power_of_two()
        || u32::from(block_log) != block_size.trailing_zeros()
    {
        return corrupt(format!("block size {block_size}, log {block_log}"));
    }
    let compression = u16_at(20);
    if !(1..=6).contains(&compression) {
        return corrupt(format!("compression {compression}"));
    }
    if u32_at(4) == 0 || u16_at(26) == 0 {
        return corrupt("no inodes or no IDs".into());
    }
    let bytes_used = u64_at(40);
    let (ids, inodes, dirs) = (u64_at(48), u64_at(64), u64_at(72));
    if !(inodes < dirs && dirs < bytes_used && ids < bytes_used) {
        return corrupt(format!(
            "tables at {inodes}, {dirs}, {ids} outside its {bytes_used} bytes"
        ));
    }
    for (name, at) in [("xattr", 56), ("fragment", 80), ("export", 88)] {
        let start = u64_at(at);
        if start != NO_TABLE && start >= bytes_used {
            return corrupt(format!(
                "{name} table at {start}, beyond its {bytes_used} bytes"
            ));
        }
    }
    if bytes_used > available {
        return Err(format!(
            "truncated: the SquashFS filesystem needs {bytes_used} bytes, {available} are there"
        ));
    }
    Ok(bytes_used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A consistent superblock of a filesystem of `used` bytes.
    fn superblock(used: u64) -> Vec<u8> {
        let mut sb = vec![0u8; SUPERBLOCK_LEN];
        sb[..4].copy_from_slice(MAGIC);
        sb[4..8].copy_from_slice(&5u32.to_le_bytes());
        sb[12..16].copy_from_slice(&131072u32.to_le_bytes());
        sb[20..22].copy_from_slice(&1u16.to_le_bytes());
        sb[22..24].copy_from_slice(&17u16.to_le_bytes());
        sb[26..28].copy_from_slice(&1u16.to_le_bytes());
        sb[28..30].copy_from_slice(&4u16.to_le_bytes());
        sb[40..48].copy_from_slice(&used.to_le_bytes());
        sb[48..56].copy_from_slice(&(used - 8).to_le_bytes());
        sb[56..64].copy_from_slice(&NO_TABLE.to_le_bytes());
        sb[64..72].copy_from_slice(&96u64.to_le_bytes());
        sb[72..80].copy_from_slice(&200u64.to_le_bytes());
        sb[80..88].copy_from_slice(&NO_TABLE.to_le_bytes());
        sb[88..96].copy_from_slice(&NO_TABLE.to_le_bytes());
        sb
    }

    fn image(bytes: &[u8]) -> (tempfile::NamedTempFile, Result<ImageFile>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let r = ImageFile::open(f.path());
        (f, r)
    }

    #[test]
    fn accepts_squashfs_and_sif() {
        let mut fs = superblock(4096);
        fs.resize(4096, 0);
        let (_f, r) = image(&fs);
        let img = r.unwrap();
        assert_eq!(
            (img.format, img.offset, img.bytes_used),
            (Format::SquashFs, 0, 4096)
        );

        let sif = sif::testing::sif_with(&fs, 2, 1);
        let (_f, r) = image(&sif);
        let img = r.unwrap();
        assert_eq!(img.format, Format::Sif);
        assert_eq!(&sif[img.offset as usize..][..4], MAGIC);
    }

    #[test]
    fn refuses_other_truncated_and_corrupt_files() {
        let (_f, r) = image(b"#!/bin/sh\necho not an image\n");
        assert!(r.unwrap_err().to_string().contains("not a SquashFS or SIF"));
        let (_f, r) = image(b"");
        assert!(r.unwrap_err().to_string().contains("not a SquashFS or SIF"));

        let mut fs = superblock(8192);
        fs.resize(5000, 0);
        let (_f, r) = image(&fs);
        assert!(r.unwrap_err().to_string().contains("truncated"));
        let (_f, r) = image(&fs[..50]);
        assert!(r.unwrap_err().to_string().contains("truncated"));

        let mut bad = superblock(4096);
        bad.resize(4096, 0);
        bad[12..16].copy_from_slice(&1000u32.to_le_bytes());
        let (_f, r) = image(&bad);
        assert!(r.unwrap_err().to_string().contains("corrupt"));

        let mut v3 = superblock(4096);
        v3.resize(4096, 0);
        v3[28..30].copy_from_slice(&3u16.to_le_bytes());
        let (_f, r) = image(&v3);
        assert!(r.unwrap_err().to_string().contains("format 3.0"));
    }
}
