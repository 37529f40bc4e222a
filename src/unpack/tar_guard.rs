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
//! The framing must be exactly the `tar` crate's (0.4.46, `Archive::next_entry` and
//! `next_entry_raw`), or a layer could walk the two out of step and slip a huge record past
//! (issue 13: a `size=` meant for a file applied to a `g` header did). So it is decided with
//! the crate's own header accessors, step by step as the crate does:
//! - a header block of zeros ends the archive (the parser stops reading);
//! - a header's data is its size field, or the `size` of a PAX record read just before it,
//!   unless the header is itself an extension header (`L`, `K`, `x`, `g`, whatever its magic);
//! - an `L`, `K` or `x` header is read whole into memory only in a ustar or GNU header: that
//!   is what the cap applies to. A PAX record stays pending until the next header that is not
//!   one of those three, which takes it (a `g` or old-style `L` included);
//! - a GNU sparse header (`S`) is followed by extension blocks while each says more follow,
//!   then by its data;
//! - data is padded to 512 bytes.
//!
//! Where the crate would fail on a header (an unreadable size, an overflow, a sparse header
//! that is not GNU), the guard stops following: nothing after it is parsed.

use std::io::{self, Read, Seek, SeekFrom};

/// The largest extension record accepted. Linux xattr values are at most 64 KiB and names at
/// most 4 KiB; 1 MiB leaves room for many of both.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

pub struct ExtensionLimit<R> {
    inner: R,
    limit: u64,
    header: tar::Header,
    filled: usize,
    state: State,
    /// The PAX record read last, until a header takes it.
    pending_pax: Option<Vec<u8>>,
    /// Test builds: where each header the parser hands on (not a long name or PAX header)
    /// starts and ends, to compare with the `tar` crate's own positions.
    #[cfg(test)]
    log: Vec<(u64, u64)>,
    #[cfg(test)]
    pos: u64,
}

enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Collecting a GNU sparse extension block; `data` bytes (padded) follow the last one.
    SparseBlock { data: u64 },
    /// Passing `left` bytes of an entry's data and padding; `pax` collects a PAX record of
    /// `size` bytes.
    Data {
        left: u64,
        pax: Option<(Vec<u8>, u64)>,
    },
    /// The parser stops here (end of archive, or a header it cannot read): nothing to follow.
    Done,
}

impl<R: Read> ExtensionLimit<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_EXTENSION)
    }

    fn with_limit(inner: R, limit: u64) -> Self {
        ExtensionLimit {
            inner,
            limit,
            header: tar::Header::new_old(),
            filled: 0,
            state: State::Header,
            pending_pax: None,
            #[cfg(test)]
            log: Vec::new(),
            #[cfg(test)]
            pos: 0,
        }
    }

    /// Follows the framing over `bytes`, which the caller is about to hand on.
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = match &mut self.state {
                State::Done => return Ok(()),
                State::Header | State::SparseBlock { .. } => {
                    let take = (BLOCK - self.filled).min(bytes.len());
                    self.header.as_mut_bytes()[self.filled..self.filled + take]
                        .copy_from_slice(&bytes[..take]);
                    self.filled += take;
                    take
                }
                State::Data { left, pax } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    if let Some((record, size)) = pax {
                        let want = (*size - record.len() as u64).min(take as u64) as usize;
                        record.extend_from_slice(&bytes[..want]);
                    }
                    *left -= take as u64;
                    take
                }
            };
            bytes = &bytes[take..];
            #[cfg(test)]
            {
                self.pos += take as u64;
            }
            match &mut self.state {
                State::Header | State::SparseBlock { .. } if self.filled == BLOCK => {
                    self.filled = 0;
                    self.block_complete()?;
                }
                State::Data { left: 0, pax } => {
                    if let Some((record, _)) = pax.take() {
                        self.pending_pax = Some(record);
                    }
                    self.state = State::Header;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn block_complete(&mut self) -> io::Result<()> {
        if let State::SparseBlock { data } = self.state {
            let mut ext = tar::GnuExtSparseHeader::new();
            ext.as_mut_bytes().copy_from_slice(self.header.as_bytes());
            self.state = if ext.is_extended() {
                State::SparseBlock { data }
            } else {
                data_state(data, None)
            };
            return Ok(());
        }
        let h = &self.header;
        if h.as_bytes().iter().all(|&b| b == 0) {
            self.state = State::Done;
            return Ok(());
        }
        let kind = h.entry_type();
        let extension_type = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let Ok(mut size) = h.entry_size() else {
            self.state = State::Done;
            return Ok(());
        };
        if !extension_type && let Some(pax_size) = self.pending_pax.as_deref().and_then(pax_size) {
            size = pax_size;
        }
        let Some(padded) = size
            .checked_add(BLOCK as u64 - 1)
            .map(|s| s & !(BLOCK as u64 - 1))
        else {
            self.state = State::Done;
            return Ok(());
        };
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        let read_whole = recognized
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if read_whole {
            if size > self.limit {
                let what = if kind.is_pax_local_extensions() {
                    "PAX extended header"
                } else {
                    "GNU long name"
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{what} of {size} bytes (lade accepts at most {}); refusing a layer \
                         that would need that much memory",
                        self.limit
                    ),
                ));
            }
            let pax = kind.is_pax_local_extensions().then(|| {
                (
                    Vec::with_capacity(size.min(BLOCK as u64 * 8) as usize),
                    size,
                )
            });
            self.state = data_state(padded, pax);
            if let State::Header = self.state
                && kind.is_pax_local_extensions()
            {
                self.pending_pax = Some(Vec::new());
            }
            return Ok(());
        }
        // An entry the parser hands on: it takes the pending PAX record.
        self.pending_pax = None;
        // (The crate's `raw_file_position` is just after the header, sparse blocks or not.)
        #[cfg(test)]
        self.log.push((self.pos - BLOCK as u64, self.pos));
        if kind.is_gnu_sparse() {
            let Some(gnu) = h.as_gnu() else {
                self.state = State::Done;
                return Ok(());
            };
            if gnu.is_extended() {
                self.state = State::SparseBlock { data: padded };
                return Ok(());
            }
        }
        self.state = data_state(padded, None);
        Ok(())
    }
}

fn data_state(padded: u64, pax: Option<(Vec<u8>, u64)>) -> State {
    if padded == 0 {
        State::Header
    } else {
        State::Data { left: padded, pax }
    }
}

/// The `size` of a PAX record as the `tar` crate reads it (`pax_extensions_value`): the first
/// `size` key, if everything up to it is well-formed and its value a number.
fn pax_size(record: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(record) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse::<u64>().ok();
    }
    None
}

impl<R: Read> Read for ExtensionLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for ExtensionLimit<R> {
    /// The parser skips the data and padding it does not read: within an entry's data (not a
    /// PAX record, which it reads whole) the framing needs only the count; anything else is
    /// read through [`observe`](Self::observe).
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(delta) = pos else {
            return self.inner.seek(pos);
        };
        let n = u64::try_from(delta).unwrap_or(0);
        if let State::Data { left, pax: None } = &mut self.state
            && n <= *left
        {
            *left -= n;
            if *left == 0 {
                self.state = State::Header;
            }
            #[cfg(test)]
            {
                self.pos += n;
            }
            return self.inner.seek(pos);
        }
        let mut buf = [0u8; BLOCK];
        let mut left = n;
        while left > 0 {
            let want = left.min(BLOCK as u64) as usize;
            match self.read(&mut buf[..want])? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "unexpected EOF during skip",
                    ));
                }
                k => left -= k as u64,
            }
        }
        self.inner.stream_position()
    }
}

#[cfg(test)]
mod tests;
