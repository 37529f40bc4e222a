//! A bound on tar extension records, which the `tar` crate reads whole into memory.
//!
//! PAX headers (`x`) and GNU long names (`L`, `K`) are small in every real layer (names,
//! times, a few xattrs), but their size is a 12-byte field of the header: a hostile layer can
//! claim gigabytes and the `tar` crate would allocate and fill a buffer that big before lade
//! sees the entry (it has no limit and no hook). This reader sits between the decompressor and
//! the tar parser, follows the archive's framing as the bytes stream past, and fails the read
//! with a clear error when an extension record is larger than [`MAX_EXTENSION`]. It copies
//! nothing and holds at most one header and one (bounded) PAX record.
//!
//! The framing followed is the `tar` crate's own: a 512-byte header, then GNU sparse extension
//! blocks while a header says more follow, then the entry's data padded to 512 bytes, where the
//! data size is the header's size field unless the PAX record just before gives `size=`.

use std::io::{self, Read};

/// The largest extension record accepted. Linux xattr values are at most 64 KiB and names at
/// most 4 KiB; 1 MiB leaves room for many of both.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

pub struct ExtensionLimit<R> {
    inner: R,
    header: [u8; BLOCK],
    filled: usize,
    state: State,
    /// The `size=` of the PAX record just read, for the next entry.
    pax_size: Option<u64>,
}

enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Collecting a GNU sparse extension block; data of `data` bytes follows.
    SparseBlock { data: u64 },
    /// Passing `left` bytes of an entry's data and padding; `pax` collects a PAX record.
    Data { left: u64, pax: Option<Vec<u8>> },
}

impl<R: Read> ExtensionLimit<R> {
    pub fn new(inner: R) -> Self {
        ExtensionLimit {
            inner,
            header: [0; BLOCK],
            filled: 0,
            state: State::Header,
            pax_size: None,
        }
    }

    /// Follows the framing over `bytes`, which the caller is about to hand on.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header | State::SparseBlock { .. } => {
                    let take = (BLOCK - self.filled).min(bytes.len());
                    self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
                    self.filled += take;
                    bytes = &bytes[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.block_complete()?;
                    }
                }
                State::Data { left, pax } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    if let Some(record) = pax {
                        record.extend_from_slice(&bytes[..take]);
                    }
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        if let State::Data {
                            pax: Some(record), ..
                        } = std::mem::replace(&mut self.state, State::Header)
                        {
                            self.pax_size = pax_size(&record);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn block_complete(&mut self) -> io::Result<()> {
        let h = &self.header;
        if let State::SparseBlock { data } = self.state {
            // An old-GNU sparse extension block: 21 entries of 24 bytes, then "more follow".
            self.state = if h[504] != 0 {
                State::SparseBlock { data }
            } else {
                data_state(data, None)
            };
            return Ok(());
        }
        if h.iter().all(|&b| b == 0) {
            // End-of-archive blocks (or padding after them): stay on header boundaries.
            self.pax_size = None;
            return Ok(());
        }
        let kind = h[156];
        // Like the `tar` crate, extension records count only in ustar and GNU headers; in an
        // old-style header the same type byte is an ordinary entry streamed to lade.
        let magic = &h[257..265];
        let recognized = magic == b"ustar\x0000" || magic == b"ustar  \0";
        let extension = recognized && matches!(kind, b'x' | b'L' | b'K');
        let Some(field_size) = numeric(&h[124..136]) else {
            // Unreadable: the tar parser reports the bad header; stop following the framing.
            self.state = data_state(u64::MAX, None);
            return Ok(());
        };
        let size = if extension {
            field_size
        } else {
            self.pax_size.take().unwrap_or(field_size)
        };
        if extension && size > MAX_EXTENSION {
            let what = if kind == b'x' {
                "PAX extended header"
            } else {
                "GNU long name"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what} of {size} bytes (lade accepts at most {MAX_EXTENSION}); \
                     refusing a layer that would need that much memory"
                ),
            ));
        }
        let pax = (extension && kind == b'x').then(|| Vec::with_capacity(size as usize));
        // Old-GNU sparse: `isextended` at byte 482 says extension blocks follow the header.
        self.state = if kind == b'S' && h[482] != 0 {
            State::SparseBlock { data: size }
        } else {
            data_state(size, pax)
        };
        Ok(())
    }
}

fn data_state(size: u64, pax: Option<Vec<u8>>) -> State {
    let padded = size.saturating_add(BLOCK as u64 - 1) / BLOCK as u64 * BLOCK as u64;
    if padded == 0 {
        // A record with no data: its `size=` (if any) still counts, as an empty map.
        State::Header
    } else {
        // Only the record's own bytes are parsed; the padding joins it but holds no records.
        State::Data { left: padded, pax }
    }
}

/// A tar numeric field: octal text, or base-256 when the high bit of the first byte is set.
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` key of a PAX record (`"%d size=%d\n"` lines), as the `tar` crate reads it.
fn pax_size(record: &[u8]) -> Option<u64> {
    let mut rest = record;
    let mut size = None;
    while !rest.is_empty() && rest[0] != 0 {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return size;
        }
        let line = &rest[space + 1..len];
        if let Some(value) = line.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    size
}

impl<R: Read> Read for ExtensionLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size_field: &[u8]) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..4].copy_from_slice(b"name");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[124..124 + size_field.len()].copy_from_slice(size_field);
        h[156] = kind;
        h
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, to cross every boundary at odd places.
        let mut r = ExtensionLimit::new(io::Cursor::new(data));
        let mut buf = [0u8; 37];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn huge_pax_header_is_refused_before_its_data() {
        // 100 GiB in octal, with no data following at all.
        let data = header(b'x', b"1440000000000");
        let err = read_all(&data).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("PAX extended header"), "{err}");
    }

    #[test]
    fn huge_gnu_long_name_in_base256_is_refused() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[8] = 0x01; // 2^24 bytes
        let data = header(b'L', &field);
        assert!(read_all(&data).is_err());
    }

    #[test]
    fn a_real_archive_passes_unchanged_and_pax_size_sets_the_framing() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(700);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let long = "d/".repeat(200) + "file";
        b.append_data(&mut h, &long, &[7u8; 700][..]).unwrap();
        // A PAX record with a size override, then an entry whose header says 0.
        let mut pax = tar::Header::new_ustar();
        let record = b"16 size=1000000\n";
        pax.set_size(record.len() as u64);
        pax.set_entry_type(tar::EntryType::XHeader);
        b.append_data(&mut pax, "pax", &record[..]).unwrap();
        let mut data = b.into_inner().unwrap();
        // The next header claims a huge GNU long name; it sits after 1,000,000 bytes of data,
        // so it is reached only if the PAX size is honoured.
        let mut file = header(b'0', b"0");
        file[148..156].copy_from_slice(b"        ");
        data.extend_from_slice(&file);
        data.extend_from_slice(&vec![0u8; 1_000_448]);
        data.extend_from_slice(&header(b'L', b"77777777777"));
        assert!(read_all(&data).is_err());
        // Without the long name the same stream passes through byte for byte.
        let cut = data.len() - BLOCK;
        assert_eq!(read_all(&data[..cut]).unwrap(), &data[..cut]);
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"00000001750\0"), Some(1000));
        assert_eq!(numeric(b"     1750 \0\0"), Some(1000));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"zz\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(pax_size(b"16 size=1000000\n"), Some(1_000_000));
        assert_eq!(pax_size(b"12 path=abc\n"), None);
    }
}
