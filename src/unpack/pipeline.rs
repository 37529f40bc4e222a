//! The two-thread pipeline of one layer: a decompression thread reads the blob and inflates it
//! into 256 KiB chunks, and the caller's thread parses tar and writes files from them. On 2 cores
//! this overlaps inflate (the floor) with hashing and syscalls.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use crate::digest::{Algorithm, Digest, Hasher};

use crate::compression::{self, Magic};

/// 256 KiB rather than 1 MiB: a chunk is hashed (diff-ID) and then copied into the tar reader
/// while it is still in the consumer's L2 cache, and every layer's fresh buffers (chunks in
/// flight, the file-write buffer) fault in a quarter of the pages. Measured on the pull bench:
/// peak RSS 31 -> 21 MiB, page faults ~7000 -> ~3200, CPU time unchanged within noise.
pub(crate) const CHUNK: usize = 256 << 10;

/// Chunks queued between the threads: enough to ride out a burst of small files on one side or
/// a slow stretch of network on the other, while bounding memory to about a MiB per layer.
const IN_FLIGHT: usize = 4;

/// A failure of the decompression thread. Kept apart from tar errors because it is the deeper
/// cause: a digest mismatch or corrupt gzip usually shows up as a tar error first.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// Reading the blob failed (network, or the caller's digest/size verification).
    Source(io::Error),
    /// The compressed data is corrupt or truncated.
    Decode(io::Error),
}

enum Msg {
    /// A buffer and how much of it holds data (buffers keep their full length, so a recycled
    /// one is not zero-filled again).
    Data(Vec<u8>, usize),
    Failed(Upstream),
}

/// Marks errors of the blob itself, so they are not blamed on the decoder they pass through.
#[derive(Debug)]
struct SourceError(io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for SourceError {}

struct Tagged<R>(R);

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), SourceError(e)))
    }
}

fn classify(e: io::Error) -> Upstream {
    if e.get_ref().is_some_and(|inner| inner.is::<SourceError>()) {
        match e.into_inner().map(|inner| inner.downcast::<SourceError>()) {
            Some(Ok(src)) => Upstream::Source(src.0),
            Some(Err(other)) => Upstream::Decode(io::Error::other(other)),
            None => Upstream::Decode(io::Error::other("unknown error")),
        }
    } else {
        Upstream::Decode(e)
    }
}

/// Runs `consume` on this thread with a reader of the decompressed stream, while another thread
/// reads and decompresses `blob`. Fails only if the thread cannot be started.
pub(crate) fn run<R: Read + Send, T>(
    blob: R,
    magic: Magic,
    consume: impl FnOnce(&mut ChunkReader) -> T,
) -> io::Result<T> {
    thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
        let (recycle_tx, recycle_rx) = mpsc::channel();
        let producer = thread::Builder::new()
            .name("lade-inflate".into())
            .spawn_scoped(s, move || produce(blob, magic, tx, recycle_rx))?;
        let mut reader = ChunkReader::new(rx, recycle_tx);
        let out = consume(&mut reader);
        // Dropping the receiver unblocks a producer that is still sending after an early error.
        drop(reader);
        if let Err(panic) = producer.join() {
            std::panic::resume_unwind(panic);
        }
        Ok(out)
    })
}

fn produce<R: Read + Send>(blob: R, magic: Magic, tx: SyncSender<Msg>, recycle: Receiver<Vec<u8>>) {
    let mut blob = Tagged(blob);
    let result = (|| -> io::Result<()> {
        let mut decoder = compression::decoder(magic, &mut blob)?;
        loop {
            let mut buf = recycle.try_recv().unwrap_or_default();
            if buf.len() != CHUNK {
                buf.resize(CHUNK, 0);
            }
            let n = fill(&mut decoder, &mut buf)?;
            if n == 0 {
                break;
            }
            if tx.send(Msg::Data(buf, n)).is_err() {
                // The consumer gave up; its error is the one to report.
                return Ok(());
            }
            if n < CHUNK {
                break;
            }
        }
        drop(decoder);
        // Whatever follows the compressed stream (or what the decoder's buffer did not reach)
        // must still pass through the caller's verifier.
        io::copy(&mut blob, &mut io::sink())?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.send(Msg::Failed(classify(e)));
    }
}

/// Reads until `buf` is full or the stream ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The consumer's end: a `Read` over the chunks that also computes the diff-ID (the sha256 of
/// every decompressed byte, the padding after the tar end blocks included).
pub(crate) struct ChunkReader {
    rx: Receiver<Msg>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    /// How much of `cur` holds data.
    cur_len: usize,
    pos: usize,
    hasher: Hasher,
    total: u64,
    ended: bool,
    upstream: Option<Upstream>,
    failed: bool,
    last_read_zero_block: bool,
    /// Bytes handed on (read or skipped) from the start of the stream.
    consumed: u64,
}

impl ChunkReader {
    fn new(rx: Receiver<Msg>, recycle: Sender<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            rx,
            recycle,
            cur: Vec::new(),
            cur_len: 0,
            pos: 0,
            hasher: Hasher::new(Algorithm::Sha256),
            total: 0,
            ended: false,
            upstream: None,
            failed: false,
            last_read_zero_block: false,
            consumed: 0,
        }
    }

    /// Makes the next chunk current; false at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.failed {
            return Err(io::Error::other("the decompression thread failed"));
        }
        if self.ended {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Msg::Data(chunk, len)) => {
                self.hasher.update(&chunk[..len]);
                self.total += len as u64;
                self.cur_len = len;
                let old = std::mem::replace(&mut self.cur, chunk);
                if old.capacity() > 0 {
                    let _ = self.recycle.send(old);
                }
                self.pos = 0;
                Ok(true)
            }
            Ok(Msg::Failed(up)) => {
                self.failed = true;
                let e = io::Error::other(match &up {
                    Upstream::Source(e) | Upstream::Decode(e) => e.to_string(),
                });
                self.upstream = Some(up);
                Err(e)
            }
            Err(mpsc::RecvError) => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    /// The stream has been read to its end (so a parse error there means truncation).
    pub(crate) fn at_end(&self) -> bool {
        self.ended && self.pos == self.cur_len
    }

    /// Whether the tar reader's last read was an all-zero block, i.e. it stopped at the
    /// end-of-archive marker rather than at end of stream.
    pub(crate) fn saw_end_block(&self) -> bool {
        self.last_read_zero_block
    }

    /// Reads (and hashes) everything left, so the diff-ID covers the whole stream and the
    /// caller's verifier sees the whole blob.
    pub(crate) fn drain(&mut self) {
        self.pos = self.cur_len;
        while let Ok(true) = self.next_chunk() {
            self.pos = self.cur_len;
        }
    }

    pub(crate) fn take_upstream(&mut self) -> Option<Upstream> {
        self.upstream.take()
    }

    /// The diff-ID and size of what has been read so far (all of it, after `drain`).
    pub(crate) fn digest(&self) -> (Digest, u64) {
        (self.hasher.clone().finish(), self.total)
    }
}

impl Read for ChunkReader {
    /// Fills `out` across chunk boundaries, so the tar reader's 512-byte header reads are
    /// always single calls (which `saw_end_block` relies on).
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos == self.cur_len {
                match self.next_chunk() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) if n == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            let k = (out.len() - n).min(self.cur_len - self.pos);
            out[n..n + k].copy_from_slice(&self.cur[self.pos..self.pos + k]);
            n += k;
            self.pos += k;
        }
        self.last_read_zero_block = n == 512 && out[..n].iter().all(|b| *b == 0);
        self.consumed += n as u64;
        Ok(n)
    }
}

impl io::Seek for ChunkReader {
    /// Skips forward (`SeekFrom::Current` with a non-negative offset, the only seek the tar
    /// parser makes, over data and padding it does not read) without copying: the bytes are
    /// hashed already. Returns the position from the start of the stream, as the parser
    /// expects.
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let io::SeekFrom::Current(delta) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the layer stream only skips forward",
            ));
        };
        let mut left = u64::try_from(delta).map_err(|_| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the layer stream only skips forward",
            )
        })?;
        while left > 0 {
            if self.pos == self.cur_len && !self.next_chunk()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "unexpected EOF during skip",
                ));
            }
            let k = left.min((self.cur_len - self.pos) as u64);
            self.pos += k as usize;
            self.consumed += k;
            left -= k;
        }
        Ok(self.consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(blob: Vec<u8>) -> (io::Result<Vec<u8>>, Option<Upstream>, Digest, u64) {
        let magic_src = &mut &blob[..];
        let magic = Magic::read(magic_src).unwrap();
        let rest = magic_src.to_vec();
        run(&rest[..], magic, |r| {
            let mut out = Vec::new();
            let res = r.read_to_end(&mut out).map(|_| out);
            let (d, n) = r.digest();
            (res, r.take_upstream(), d, n)
        })
        .unwrap()
    }

    #[test]
    fn streams_and_hashes_everything() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let (out, up, digest, n) = read_all(data.clone());
        assert_eq!(out.unwrap(), data);
        assert!(up.is_none());
        assert_eq!(digest, Digest::sha256_of(&data));
        assert_eq!(n, data.len() as u64);
    }

    #[test]
    fn reports_decode_errors_apart() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &[7u8; 100_000]).unwrap();
        let mut g = e.finish().unwrap();
        g.truncate(g.len() - 6);
        let (out, up, _, _) = read_all(g);
        assert!(out.is_err());
        assert!(matches!(up, Some(Upstream::Decode(_))), "{up:?}");
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "digest mismatch",
            ))
        }
    }

    #[test]
    fn reports_source_errors_apart() {
        let magic = Magic::read(&mut &b"\x1f\x8b\x08\x00"[..]).unwrap();
        let up = run(Failing, magic, |r| {
            let _ = r.read_to_end(&mut Vec::new());
            r.take_upstream()
        })
        .unwrap();
        match up {
            Some(Upstream::Source(e)) => assert_eq!(e.to_string(), "digest mismatch"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skips_forward_across_chunks_and_still_hashes_everything() {
        use std::io::Seek;
        let data: Vec<u8> = (0..3 * CHUNK + 77).map(|i| (i % 253) as u8).collect();
        let magic = Magic::read(&mut &data[..4]).unwrap();
        let (got, pos, digest, end) = run(&data[4..], magic, |r| {
            let mut a = [0u8; 10];
            r.read_exact(&mut a).unwrap();
            let pos = r.seek(io::SeekFrom::Current(2 * CHUNK as i64)).unwrap();
            let mut b = [0u8; 10];
            r.read_exact(&mut b).unwrap();
            let end = r.seek(io::SeekFrom::Current(CHUNK as i64 + 100)).is_err();
            r.drain();
            ([a, b], pos, r.digest().0, end)
        })
        .unwrap();
        assert_eq!(got[0], data[..10]);
        assert_eq!(pos, 10 + 2 * CHUNK as u64);
        assert_eq!(got[1], data[10 + 2 * CHUNK..20 + 2 * CHUNK]);
        assert!(end, "skipping past the end is an error");
        assert_eq!(digest, Digest::sha256_of(&data));
    }

    #[test]
    fn early_consumer_exit_does_not_hang() {
        let data = vec![1u8; 20 * CHUNK];
        let magic = Magic::read(&mut &data[..4]).unwrap();
        let got = run(&data[4..], magic, |r| {
            let mut b = [0u8; 10];
            r.read(&mut b).unwrap()
        })
        .unwrap();
        assert_eq!(got, 10);
    }
}
