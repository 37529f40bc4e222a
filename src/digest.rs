//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and a streaming verifier.
//!
//! Every byte lade reads from anywhere (a registry, a layout, an archive, its own store) passes
//! through a [`VerifyingReader`] that checks both size and digest before the consumer may treat
//! the content as valid.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// The hash algorithms lade accepts in digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex part, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of an in-memory byte string (manifests, configs, indexes).
    pub fn of_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of_bytes(Algorithm::Sha256, bytes)
    }

    /// A short form for humans: the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest> {
        let bad = |why: &str| Error::BadDigest {
            digest: s.to_string(),
            why: why.to_string(),
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| bad("no ':' between algorithm and hex"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(bad(
                    "unsupported algorithm (sha256 and sha512 are accepted)",
                ));
            }
        };
        if hex.len() != algorithm.hex_len() {
            return Err(bad(&format!(
                "{} needs {} hex digits, found {}",
                alg,
                algorithm.hex_len(),
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("hex part must be lower-case 0-9a-f"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest> {
        d.to_string().parse()
    }
}

/// An incremental hasher for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// What a stream is expected to be: its digest and, when known, its exact size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub digest: Digest,
    pub size: Option<u64>,
}

/// A reader that hashes and counts everything passing through it, and fails the read that
/// reaches end-of-stream if the size or digest differs from what was expected. It also fails as
/// soon as more bytes arrive than the expected size, so a lying source cannot make lade consume
/// unbounded data.
///
/// A consumer that stops before end-of-stream (a tar reader seeing its end blocks) must call
/// [`VerifyingReader::finish`], which drains the remainder and verifies.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Expected,
    what: String,
    count: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// `what` names the object in errors from [`VerifyingReader::finish`]; errors from `read`
    /// say only the cause, since the consumer adds its own context.
    pub fn new(inner: R, expected: Expected, what: impl Into<String>) -> Self {
        let hasher = Some(Hasher::new(expected.digest.algorithm()));
        VerifyingReader {
            inner,
            hasher,
            expected,
            what: what.into(),
            count: 0,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.count
    }

    fn verify_end(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        if let Some(size) = self.expected.size
            && size != self.count
        {
            return Err(mismatch(format!(
                "size mismatch: expected {} bytes, got {}",
                size, self.count
            )));
        }
        let actual = hasher.finish();
        if actual != self.expected.digest {
            return Err(mismatch(format!(
                "digest mismatch: expected {}, got {}",
                self.expected.digest, actual
            )));
        }
        Ok(())
    }

    /// Reads whatever remains and verifies; returns the inner reader.
    pub fn finish(mut self) -> Result<R> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| Error::io(&self.what, e))?;
        self.verify_end().map_err(|e| Error::io(&self.what, e))?;
        Ok(self.inner)
    }
}

fn mismatch(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hasher.is_none() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.verify_end()?;
            return Ok(0);
        }
        self.count += n as u64;
        if let Some(size) = self.expected.size
            && self.count > size
        {
            return Err(mismatch(format!(
                "size mismatch: more than the expected {} bytes",
                size
            )));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A writer adapter that hashes what is written through it (diff-IDs while unpacking, digests
/// while packing).
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: io::Write> HashingWriter<W> {
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algorithm),
            count: 0,
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader adapter that hashes what is read through it without checking anything: used for the
/// diff-ID of a decompressed layer, which is compared with the config afterwards.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
            count: 0,
        }
    }
    /// Drains the rest of the stream (tar readers stop at the end blocks) and returns the digest.
    pub fn finish(mut self) -> io::Result<(R, Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.inner, self.hasher.finish(), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "sha256",
            "md5:abcd",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sha512_accepted() {
        let d = Digest::of_bytes(Algorithm::Sha512, b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    fn verify(data: &[u8], expected: Expected) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut r = VerifyingReader::new(data, expected, "test blob");
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn verifier_accepts_good_and_rejects_bad() {
        let good = Expected {
            digest: Digest::sha256_of(b"hello"),
            size: Some(5),
        };
        assert_eq!(verify(b"hello", good.clone()).unwrap(), b"hello");
        assert!(
            verify(b"hellp", good.clone())
                .unwrap_err()
                .contains("digest mismatch")
        );
        assert!(
            verify(b"hell", good.clone())
                .unwrap_err()
                .contains("size mismatch")
        );
        assert!(
            verify(b"hello!", good)
                .unwrap_err()
                .contains("size mismatch")
        );
        let unsized_ = Expected {
            digest: Digest::sha256_of(b"hello"),
            size: None,
        };
        assert!(verify(b"hello", unsized_).is_ok());
    }
}
