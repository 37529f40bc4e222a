//! A layer's compression: the one type that packing (`push --image`, `import`, build steps),
//! the store's layer records and unpacking share, with its media types, its recognition from a
//! blob's first bytes, and its encoders and decoders.

use std::fmt;
use std::io::{self, BufReader, Read, Write};

use crate::error::{Error, Result};

/// Size of the buffer between a compressed source and its decoder.
const INPUT_BUFFER: usize = 1 << 20;

/// How a layer blob is compressed. Unpacking tells it from the blob's first bytes (media types
/// lie often enough); packing is told (`push --compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn sniff(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// For messages ("corrupt gzip data").
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type of a layer compressed so.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The word a layer tree's `info.json` records (`none`, `gzip`, `zstd`).
    pub fn record_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The compression an `info.json` word names, if it names one.
    pub fn from_record_name(name: &str) -> Option<Compression> {
        [Compression::None, Compression::Gzip, Compression::Zstd]
            .into_iter()
            .find(|c| c.record_name() == name)
    }

    /// An encoder writing into `out`; [`Encoder::finish`] gives `out` back. gzip at level 1
    /// (three times faster than the default for a few percent more bytes), zstd at its default
    /// level 3.
    pub fn encoder<W: Write + Send + 'static>(self, out: W) -> io::Result<Box<dyn Encoder<W>>> {
        Ok(match self {
            Compression::None => Box::new(Plain(out)),
            Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            )),
            Compression::Zstd => Box::new(zstd::stream::write::Encoder::new(out, 3)?),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compressing writer that can be finished behind a `Box` (each codec's own `finish` is a
/// method of its concrete type), giving back the writer it wrote into.
pub trait Encoder<W>: Write + Send {
    fn finish(self: Box<Self>) -> io::Result<W>;
}

impl<W: Write + Send> Encoder<W> for flate2::write::GzEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        flate2::write::GzEncoder::finish(*self)
    }
}

impl<W: Write + Send> Encoder<W> for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        zstd::stream::write::Encoder::finish(*self)
    }
}

/// No compression: the writer itself.
struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Encoder<W> for Plain<W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        Ok(self.0)
    }
}

/// The first bytes of a stream, read to recognise its compression and replayed to the decoder.
pub(crate) struct Magic {
    bytes: [u8; 4],
    len: usize,
}

impl Magic {
    /// Reads up to four bytes; fewer only at end of stream (short reads are retried, since a
    /// network body may deliver one byte at a time).
    pub(crate) fn read(r: &mut impl Read) -> io::Result<Magic> {
        let mut magic = Magic {
            bytes: [0; 4],
            len: 0,
        };
        while magic.len < magic.bytes.len() {
            match r.read(&mut magic.bytes[magic.len..]) {
                Ok(0) => break,
                Ok(n) => magic.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(magic)
    }

    pub(crate) fn compression(&self) -> Compression {
        Compression::sniff(&self.bytes[..self.len])
    }
}

/// A reader yielding the decompressed stream of `magic` followed by `rest`.
pub(crate) fn decoder<'a>(
    magic: Magic,
    rest: impl Read + Send + 'a,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let compression = magic.compression();
    let stream = io::Cursor::new(magic.bytes)
        .take(magic.len as u64)
        .chain(rest);
    Ok(match compression {
        Compression::None => Box::new(stream),
        // Multi-member: gzip files may be concatenations (pigz, appending tools), and Go's
        // gzip reader, which produced and reads most layers, accepts them.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(INPUT_BUFFER, stream),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(
            BufReader::with_capacity(INPUT_BUFFER, stream),
        )?),
    })
}

/// Sniffs the magic bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, else plain tar) and returns a
/// decompressing reader.
pub fn decompress<'a>(
    r: impl Read + Send + 'a,
) -> Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let mut r = r;
    let magic = Magic::read(&mut r).map_err(|e| Error::io("reading a layer's first bytes", e))?;
    let compression = magic.compression();
    let reader = decoder(magic, r)
        .map_err(|e| Error::io(format!("starting the {compression} decoder"), e))?;
    Ok((compression, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn roundtrip(blob: &[u8]) -> (Compression, io::Result<Vec<u8>>) {
        let (c, mut r) = decompress(blob).unwrap();
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (c, res)
    }

    /// Delivers one byte per read, like a slow network.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn sniffs_and_decodes() {
        let data = b"hello, layer".repeat(1000);
        assert_eq!(roundtrip(&data).0, Compression::None);
        assert_eq!(roundtrip(&data).1.unwrap(), data);

        let (c, out) = roundtrip(&gzip(&data));
        assert_eq!((c, out.unwrap()), (Compression::Gzip, data.clone()));

        let z = zstd::encode_all(&data[..], 3).unwrap();
        let (c, out) = roundtrip(&z);
        assert_eq!((c, out.unwrap()), (Compression::Zstd, data.clone()));

        // Concatenated gzip members and zstd frames decode as one stream.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(roundtrip(&two).1.unwrap(), b"abcd");
        let mut two = zstd::encode_all(&b"ab"[..], 1).unwrap();
        two.extend(zstd::encode_all(&b"cd"[..], 1).unwrap());
        assert_eq!(roundtrip(&two).1.unwrap(), b"abcd");

        // Short inputs and one-byte reads.
        assert_eq!(roundtrip(b"").1.unwrap(), b"");
        assert_eq!(roundtrip(b"\x1f").1.unwrap(), b"\x1f");
        let g = gzip(&data);
        let (c, mut r) = decompress(Trickle(&g)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!((c, out), (Compression::Gzip, data));
    }

    #[test]
    fn encoders_round_trip_and_names_match() {
        let data = b"packed layer bytes".repeat(500);
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut enc = c.encoder(Vec::new()).unwrap();
            enc.write_all(&data).unwrap();
            let blob = enc.finish().unwrap();
            let (found, out) = roundtrip(&blob);
            assert_eq!((found, out.unwrap()), (c, data.clone()), "{c}");
            assert_eq!(Compression::from_record_name(c.record_name()), Some(c));
        }
        assert_eq!(Compression::from_record_name("lz4"), None);
    }

    #[test]
    fn corrupt_input_fails() {
        let data = b"some data that compresses".repeat(100);
        let g = gzip(&data);
        assert!(
            roundtrip(&g[..g.len() / 2]).1.is_err(),
            "truncated gzip accepted"
        );
        assert!(
            roundtrip(&g[..g.len() - 4]).1.is_err(),
            "gzip without size accepted"
        );
        let mut bad = g.clone();
        bad[20] ^= 0xff;
        assert!(roundtrip(&bad).1.is_err(), "corrupt gzip accepted");
        let mut trailing = g.clone();
        trailing.extend_from_slice(b"garbage!");
        assert!(roundtrip(&trailing).1.is_err(), "trailing garbage accepted");
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert!(
            roundtrip(&z[..z.len() - 3]).1.is_err(),
            "truncated zstd accepted"
        );
    }
}
