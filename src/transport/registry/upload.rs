//! Uploading one blob to a registry repository, as the distribution spec has it: a
//! cross-repository mount (`POST …/uploads/?mount=D&from=R`) when the blob is known to be in
//! another repository of the same registry, else (or when the registry answers 202, refusing
//! the mount) an upload session, then either
//! - one monolithic `PUT ?digest=` whose body streams from the source (a layer is never held
//!   in memory), used when the store holds the blob, so that a dropped connection restarts the
//!   upload from the store's copy; or
//! - chunks (`PATCH` with `Content-Range`, at least `OCI-Chunk-Min-Length` bytes each, the last
//!   one in the closing `PUT ?digest=`), each held in memory until the registry has it, so that
//!   a dropped connection resumes where the registry's `Range` says; used for streams that
//!   cannot be read again (another registry, a layout).
//!
//! A registry refusing `PATCH` gets the monolithic `PUT` (the chunk held plus the rest of the
//! stream); one refusing the monolithic `PUT` gets chunks (from the store's copy). The content
//! is checked as it goes: a corrupt source never completes an upload.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use reqwest::blocking::{Body, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};

use super::client::{self, Client, MAX_ATTEMPTS};
use crate::digest::{Digest, Expected, Hasher};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::Storage;

/// Bytes per chunk of a chunked upload (raised to the registry's `OCI-Chunk-Min-Length`).
const CHUNK: usize = 16 << 20;
/// Largest `OCI-Chunk-Min-Length` honoured: a chunk is held in memory.
const MAX_CHUNK: u64 = 256 << 20;
/// Buffers between the source and a streamed body.
const PIPE_BUF: usize = 1 << 20;
/// Restarts or resumes of one blob upload, in all.
const MAX_RESTARTS: u32 = 10;

/// How to upload a blob's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Monolithic,
    Chunked,
}

/// Where an upload session stands.
struct Session {
    /// The `Location` to use next (absolute).
    url: String,
    /// Bytes the registry has.
    offset: u64,
    min_chunk: u64,
}

enum Started {
    Mounted,
    Session(Session),
}

/// What a failed upload attempt leaves.
enum Failure {
    /// Worth starting again if the bytes can be had again.
    Transient(Error),
    /// The registry refuses this way of uploading: try the other.
    Refused(Error),
    Fatal(Error),
}

/// How blobs are uploaded, from the environment: `LADE_PUSH_UPLOAD=monolithic|chunked` forces a
/// way and `LADE_PUSH_CHUNK_SIZE` sets the chunk size (tests, benchmarks, registries with
/// quirks).
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    mode: Mode,
    chunk: usize,
}

impl Settings {
    pub(super) fn from_env() -> Settings {
        let mode = match std::env::var("LADE_PUSH_UPLOAD").as_deref() {
            Ok("monolithic") => Mode::Monolithic,
            Ok("chunked") => Mode::Chunked,
            _ => Mode::Auto,
        };
        let chunk = std::env::var("LADE_PUSH_CHUNK_SIZE")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| (1..=MAX_CHUNK as usize).contains(n))
            .unwrap_or(CHUNK);
        Settings { mode, chunk }
    }
}

/// One blob's upload to one repository.
pub(super) struct Upload<'a> {
    pub client: &'a Client,
    /// The repository uploaded to.
    pub repository: &'a str,
    /// Its `pull,push` token scope.
    pub scope: &'a str,
    /// The destination as messages name it.
    pub target: String,
    /// Repositories of the same registry to try mounting the blob from, in order.
    pub mount_from: Vec<String>,
    /// The store, whose copy of the blob (if any) can be sent again after a failure.
    pub storage: Option<&'a Storage>,
    pub settings: Settings,
    pub progress: &'a Progress,
}

impl Upload<'_> {
    /// Uploads one blob (or mounts it), restarting a failed upload from the store's copy where
    /// there is one; `what` names the blob and destination for messages.
    pub(super) fn run(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<()> {
        let digest = &expected.digest;
        let mut consumed = 0u64;
        let mut restarts = 0u32;
        let mut try_mount = true;
        let mut mode = match (self.settings.mode, expected.size) {
            (Mode::Auto, Some(_)) if self.stored(digest).is_some() => Mode::Monolithic,
            (Mode::Auto, _) | (_, None) => Mode::Chunked,
            (m, _) => m,
        };
        loop {
            let session = match self.start(digest, try_mount)? {
                Started::Mounted => break,
                Started::Session(s) => s,
            };
            try_mount = false;
            // After bytes were read from `data`, only the store's copy can be sent again.
            let mut stored;
            let source: &mut dyn Read = if consumed == 0 {
                &mut *data
            } else if let Some(f) = self.stored(digest) {
                stored = f;
                consumed = 0;
                &mut stored
            } else {
                return Err(Error::invalid(
                    what,
                    format!(
                        "the upload failed after {consumed} bytes and the source cannot be read \
                         again; push again"
                    ),
                ));
            };
            let failure = match mode {
                Mode::Monolithic | Mode::Auto => {
                    let size = expected.size.unwrap_or(0);
                    match self.put_streamed(&session, expected, size, source, &mut consumed, what) {
                        Ok(()) => break,
                        Err(Failure::Refused(e)) => {
                            self.progress
                                .note(&format!("{e}; trying a chunked upload instead"));
                            mode = Mode::Chunked;
                            Failure::Transient(e)
                        }
                        // A link that drops a long request may carry short ones: the restart
                        // goes in chunks, each resumable.
                        Err(Failure::Transient(e)) => {
                            mode = Mode::Chunked;
                            Failure::Transient(e)
                        }
                        Err(f) => f,
                    }
                }
                Mode::Chunked => {
                    match self.put_chunked(session, expected, source, &mut consumed, what) {
                        Ok(()) => break,
                        Err(ChunkFailure::Refused(e, session, held)) => {
                            self.progress
                                .note(&format!("{e}; trying a monolithic upload instead"));
                            let mut rest = io::Cursor::new(held).chain(&mut *source);
                            let Some(size) = expected.size else {
                                return Err(e);
                            };
                            let mut c = 0;
                            match self
                                .put_streamed(&session, expected, size, &mut rest, &mut c, what)
                            {
                                Ok(()) => break,
                                Err(
                                    Failure::Transient(e) | Failure::Refused(e) | Failure::Fatal(e),
                                ) => {
                                    return Err(e);
                                }
                            }
                        }
                        Err(ChunkFailure::Fatal(e)) => Failure::Fatal(e),
                    }
                }
            };
            let e = match failure {
                Failure::Transient(e) => e,
                Failure::Refused(e) | Failure::Fatal(e) => return Err(e),
            };
            restarts += 1;
            if restarts > MAX_RESTARTS.min(MAX_ATTEMPTS) {
                return Err(e);
            }
            let wait = Client::backoff(restarts - 1);
            self.progress.note(&format!(
                "{e}; restarting the upload in {:.1} s",
                wait.as_secs_f64()
            ));
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// Tries each mount source in turn, without sending any of the blob's bytes: true once
    /// one mounts. A refusal's upload session is cancelled (the caller has not opened its
    /// source yet, and uploads, if it must, through [`run`](Self::run)).
    pub(super) fn mount_only(&self, digest: &Digest) -> Result<bool> {
        let what = format!("blob {digest} to {}", self.target);
        for from in &self.mount_from {
            match self.try_mount_from(digest, from, &what)? {
                Started::Mounted => return Ok(true),
                Started::Session(s) => self.cancel(&s.url),
            }
        }
        Ok(false)
    }

    /// One `POST …/uploads/?mount=D&from=R`: mounted, or the session the registry opened
    /// instead.
    fn try_mount_from(&self, digest: &Digest, from: &str, what: &str) -> Result<Started> {
        let target = format!(
            "{}?mount={}&from={}",
            self.path("blobs/uploads/"),
            digest,
            client::percent_encode(from)
        );
        let resp = self
            .client
            .send(Method::POST, &target, self.scope, what, &|b| {
                b.header(header::CONTENT_LENGTH, 0)
            })?;
        match resp.status() {
            StatusCode::CREATED => {
                self.progress
                    .note(&format!("{}: mounted from {from}", digest.short()));
                Ok(Started::Mounted)
            }
            StatusCode::ACCEPTED => {
                self.progress.note(&format!(
                    "{}: not mounted from {from} (the registry opened an upload instead)",
                    digest.short()
                ));
                Ok(Started::Session(self.session_from(&resp, what)?))
            }
            _ => Err(self.client.status_error(what, resp)),
        }
    }

    /// Mounts the blob from a repository that has it, or opens an upload session.
    fn start(&self, digest: &Digest, try_mount: bool) -> Result<Started> {
        let what = format!("blob {digest} to {}", self.target);
        let candidates: &[String] = if try_mount { &self.mount_from } else { &[] };
        let mut session = None;
        for (i, from) in candidates.iter().enumerate() {
            match self.try_mount_from(digest, from, &what)? {
                Started::Mounted => return Ok(Started::Mounted),
                Started::Session(s) if i + 1 < candidates.len() => self.cancel(&s.url),
                Started::Session(s) => session = Some(s),
            }
        }
        if let Some(s) = session {
            return Ok(Started::Session(s));
        }
        let resp = self.client.send(
            Method::POST,
            &self.path("blobs/uploads/"),
            self.scope,
            &what,
            &|b| b.header(header::CONTENT_LENGTH, 0),
        )?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.client.status_error(&what, resp));
        }
        Ok(Started::Session(self.session_from(&resp, &what)?))
    }

    fn session_from(&self, resp: &Response, what: &str) -> Result<Session> {
        let url = self.location(resp.headers(), what)?;
        let min_chunk = resp
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if min_chunk > MAX_CHUNK {
            return Err(Error::unsupported(
                what,
                format!(
                    "the registry wants chunks of at least {min_chunk} bytes (OCI-Chunk-Min-Length); lade holds at most {MAX_CHUNK}"
                ),
            ));
        }
        Ok(Session {
            url,
            offset: 0,
            min_chunk,
        })
    }

    /// The `Location` header, resolved against the registry (it may be relative).
    fn location(&self, headers: &HeaderMap, what: &str) -> Result<String> {
        let loc = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid(what, "the registry gave no upload Location"))?;
        let url = self.client.resolve(loc);
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            Error::invalid(
                what,
                format!("upload Location '{}': {e}", client::strip_query(loc)),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(
                what,
                format!("upload Location '{}' is not HTTP", client::strip_query(loc)),
            ));
        }
        Ok(url)
    }

    /// Best effort: tells the registry an upload session will not be used.
    fn cancel(&self, url: &str) {
        let _ = self
            .client
            .send(Method::DELETE, url, self.scope, "cancel upload", &|b| b);
    }

    /// `url` with `digest=D` added to its query.
    fn with_digest(url: &str, digest: &Digest, what: &str) -> Result<String> {
        let mut u = reqwest::Url::parse(url).map_err(|e| Error::invalid(what, e.to_string()))?;
        u.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        Ok(u.to_string())
    }

    /// Checks the answer to the closing `PUT`.
    fn finished(&self, resp: Response, digest: &Digest, what: &str) -> Result<()> {
        if resp.status() != StatusCode::CREATED {
            return Err(self.client.status_error(what, resp));
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            && d != digest.to_string()
        {
            return Err(Error::invalid(
                what,
                format!("the registry stored it as {}", client::show(d)),
            ));
        }
        Ok(())
    }

    /// One monolithic `PUT ?digest=` whose body is `data` streamed (`size` bytes), checked
    /// against `expected` as it goes: the last buffer is sent only once the digest is known to
    /// match, so a corrupt source never completes an upload. `consumed` counts bytes read.
    fn put_streamed(
        &self,
        session: &Session,
        expected: &Expected,
        size: u64,
        data: &mut dyn Read,
        consumed: &mut u64,
        what: &str,
    ) -> std::result::Result<(), Failure> {
        let url =
            Self::with_digest(&session.url, &expected.digest, what).map_err(Failure::Fatal)?;
        let auth = self
            .client
            .auth_header(self.scope)
            .map_err(Failure::Fatal)?;
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let http = self.client.http();
        let outcome = std::thread::scope(|scope| {
            let sender = scope.spawn(move || {
                let mut b = http
                    .put(url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Body::sized(
                        PipeReader {
                            rx,
                            cur: Vec::new(),
                            pos: 0,
                            left: size,
                        },
                        size,
                    ));
                if let Some(a) = auth {
                    b = b.header(header::AUTHORIZATION, a);
                }
                b.send()
            });
            let pumped = pump(data, tx, expected, size, consumed, what);
            let sent = sender.join();
            (pumped, sent)
        });
        let (pumped, sent) = outcome;
        // A source that failed explains more than the request it cut short.
        pumped.map_err(Failure::Fatal)?;
        match sent {
            Ok(Ok(resp)) => self.judge_put(resp, &expected.digest, what),
            Ok(Err(e)) => Err(self.request_failure(&e, what, "PUT")),
            Err(_) => Err(Failure::Fatal(Error::invalid(
                what,
                "upload thread panicked",
            ))),
        }
    }

    fn judge_put(
        &self,
        resp: Response,
        digest: &Digest,
        what: &str,
    ) -> std::result::Result<(), Failure> {
        let status = resp.status();
        if status.is_server_error() {
            return Err(Failure::Transient(self.client.status_error(what, resp)));
        }
        if matches!(status.as_u16(), 405 | 413 | 415 | 416 | 501) {
            return Err(Failure::Refused(self.client.status_error(what, resp)));
        }
        self.finished(resp, digest, what).map_err(Failure::Fatal)
    }

    fn request_failure(&self, e: &reqwest::Error, what: &str, method: &str) -> Failure {
        let err = Error::invalid(what, format!("{method}: {}", client::chain(e)));
        if Client::is_transient(e) || e.is_request() || e.is_body() {
            Failure::Transient(err)
        } else {
            Failure::Fatal(err)
        }
    }

    /// The store's copy of a blob, if it has one (verified when it was stored).
    fn stored(&self, digest: &Digest) -> Option<std::fs::File> {
        let s = self.storage?;
        s.blobs().has(digest).then(|| s.blobs().open(digest).ok())?
    }

    /// Chunked upload of `data` (from `session.offset`, `size` bytes in all if known): each
    /// chunk is held until the registry confirms it, and resent from where its `Range` says
    /// after a failure. The last chunk goes in the closing `PUT ?digest=`.
    fn put_chunked(
        &self,
        mut session: Session,
        expected: &Expected,
        data: &mut dyn Read,
        consumed: &mut u64,
        what: &str,
    ) -> std::result::Result<(), ChunkFailure> {
        let chunk = (self.settings.chunk as u64)
            .max(session.min_chunk)
            .min(MAX_CHUNK) as usize;
        let mut hasher = Hasher::new(expected.digest.algorithm());
        let mut buf: Vec<u8> = Vec::with_capacity(chunk);
        let mut restarts = 0u32;
        let mut first = true;
        loop {
            buf.clear();
            let got = read_full(data, &mut buf, chunk)
                .map_err(|e| ChunkFailure::Fatal(Error::io(what.to_string(), e)))?;
            *consumed += got as u64;
            hasher.update(&buf);
            let last = got < chunk || expected.size.is_some_and(|s| *consumed >= s);
            if last {
                let extra = if expected.size.is_some_and(|s| *consumed >= s) {
                    let mut one = [0u8; 1];
                    data.read(&mut one)
                        .map_err(|e| ChunkFailure::Fatal(Error::io(what.to_string(), e)))?
                } else {
                    0
                };
                check_content(expected, *consumed, extra, hasher.clone(), what)
                    .map_err(ChunkFailure::Fatal)?;
            }
            let start = session.offset;
            let end = start + buf.len() as u64;
            // Send buf (from what the registry already has of it), resuming on failures.
            loop {
                let skip = (session.offset - start) as usize;
                let part = buf[skip..].to_vec();
                let result = if last {
                    let url = Self::with_digest(&session.url, &expected.digest, what)
                        .map_err(ChunkFailure::Fatal)?;
                    self.send_part(Method::PUT, &url, part, session.offset, what)
                } else {
                    self.send_part(Method::PATCH, &session.url, part, session.offset, what)
                };
                let failure = match result {
                    Ok(resp) if last => match self.judge_put(resp, &expected.digest, what) {
                        Ok(()) => return Ok(()),
                        Err(f) => f,
                    },
                    Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                        session.url = self
                            .location(resp.headers(), what)
                            .map_err(ChunkFailure::Fatal)?;
                        session.offset = end;
                        break;
                    }
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let e = self.client.status_error(what, resp);
                        if s >= 500 || s == 416 && !first {
                            Failure::Transient(e)
                        } else if matches!(s, 400 | 405 | 415 | 416 | 501) && first {
                            // Refused before any byte was accepted: the held chunk and the
                            // rest of the stream can go monolithic.
                            return Err(ChunkFailure::Refused(e, session, buf));
                        } else {
                            Failure::Fatal(e)
                        }
                    }
                    Err(f) => f,
                };
                let e = match failure {
                    Failure::Transient(e) => e,
                    Failure::Refused(e) | Failure::Fatal(e) => return Err(ChunkFailure::Fatal(e)),
                };
                restarts += 1;
                if restarts > MAX_RESTARTS {
                    return Err(ChunkFailure::Fatal(e));
                }
                std::thread::sleep(Client::backoff(restarts.min(4) - 1));
                // Where is the upload now?
                let (url, have) = self
                    .status(&session.url, what)
                    .map_err(ChunkFailure::Fatal)?;
                if have < start || have > end {
                    return Err(ChunkFailure::Fatal(Error::invalid(
                        what,
                        format!(
                            "after {e}, the registry has {have} bytes of the upload, outside the chunk \
                             {start}-{end} lade holds; push again"
                        ),
                    )));
                }
                self.progress
                    .note(&format!("{e}; resuming the upload at byte {have}"));
                session.url = url;
                session.offset = have;
            }
            first = false;
        }
    }

    fn send_part(
        &self,
        method: Method,
        url: &str,
        part: Vec<u8>,
        offset: u64,
        what: &str,
    ) -> std::result::Result<Response, Failure> {
        let len = part.len() as u64;
        let add = |b: reqwest::blocking::RequestBuilder| {
            let b = b
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len);
            let b = if len > 0 {
                b.header(
                    header::CONTENT_RANGE,
                    format!("{offset}-{}", offset + len - 1),
                )
            } else {
                b
            };
            b.body(part.clone())
        };
        // `send` retries only failures before a response; resumes are ours.
        self.client
            .send(method, url, self.scope, what, &add)
            .map_err(Failure::Transient)
    }

    /// `GET` of the upload's status: its new `Location` and how many bytes the registry has.
    fn status(&self, url: &str, what: &str) -> Result<(String, u64)> {
        let resp = self
            .client
            .send(Method::GET, url, self.scope, what, &|b| b)?;
        if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
            return Err(self.client.status_error(what, resp));
        }
        let url = self
            .location(resp.headers(), what)
            .unwrap_or_else(|_| url.to_string());
        let have = resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.trim().trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map(|end| end + 1)
            .unwrap_or(0);
        Ok((url, have))
    }
    fn path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.repository)
    }
}

enum ChunkFailure {
    /// `PATCH` refused on the first chunk: the session, and the chunk read.
    Refused(Error, Session, Vec<u8>),
    Fatal(Error),
}

/// Reads until `buf` holds `want` bytes or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    let mut got = 0;
    buf.resize(want, 0);
    while got < want {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(got);
                return Err(e);
            }
        }
    }
    buf.truncate(got);
    Ok(got)
}

fn check_content(
    expected: &Expected,
    count: u64,
    extra: usize,
    hasher: Hasher,
    what: &str,
) -> Result<()> {
    if let Some(size) = expected.size
        && (count != size || extra > 0)
    {
        let got = if extra > 0 {
            format!("more than {size}")
        } else {
            count.to_string()
        };
        return Err(Error::invalid(
            what,
            format!("the source gave {got} bytes, not {size}: corrupt source; nothing was tagged"),
        ));
    }
    let actual = hasher.finish();
    if actual != expected.digest {
        return Err(Error::invalid(
            what,
            format!(
                "the source's content has digest {actual}, not {}: corrupt source; nothing was \
                 tagged",
                expected.digest
            ),
        ));
    }
    Ok(())
}

/// Moves `size` bytes of `data` into `tx`, hashing; the last buffer goes only after the
/// content was found right, so that the registry never completes a corrupt upload.
fn pump(
    data: &mut dyn Read,
    tx: SyncSender<Vec<u8>>,
    expected: &Expected,
    size: u64,
    consumed: &mut u64,
    what: &str,
) -> Result<()> {
    let mut hasher = Hasher::new(expected.digest.algorithm());
    let mut held: Option<Vec<u8>> = None;
    let mut count = 0u64;
    loop {
        let mut buf = Vec::with_capacity(PIPE_BUF);
        let got =
            read_full(data, &mut buf, PIPE_BUF).map_err(|e| Error::io(what.to_string(), e))?;
        *consumed += got as u64;
        count += got as u64;
        if got == 0 {
            break;
        }
        hasher.update(&buf);
        if let Some(prev) = held.replace(buf)
            && tx.send(prev).is_err()
        {
            // The request ended (its error is reported by the caller).
            return Ok(());
        }
        if count > size {
            break;
        }
    }
    check_content(expected, count, 0, hasher, what)?;
    if let Some(last) = held {
        let _ = tx.send(last);
    }
    Ok(())
}

/// The receiving end of [`pump`], as a request body.
struct PipeReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// Bytes still to come: the body's end is `Ok(0)` only when all came.
    left: u64,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            if self.left == 0 {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(buf) => {
                    self.cur = buf;
                    self.pos = 0;
                }
                // The source ended or failed: hyper sees a short body and aborts the request
                // if it had fewer bytes than announced.
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source stream ended",
                    ));
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}
