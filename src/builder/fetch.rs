//! ADD of `http://` and `https://` URLs: the file is streamed to a scratch file while it is
//! hashed, checked against `--checksum` when given, and then placed like a local file
//! (mode 0600, as Docker does; never unpacked), with the server's `Last-Modified` as its
//! mtime when it sends one (Docker's rule; like any ADD, mtime stays out of the cache key).
//!
//! The cache: with `--checksum` the step's key holds the checksum, so a hit downloads
//! nothing; without it the file is downloaded on every build and its content hash is the key
//! (Docker also fetches the URL each time), and the download is reused if the step runs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::transport::registry::Options;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The blocking client applies this to each read of the body, not to the whole transfer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A downloaded file in the store's scratch area.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    /// sha256 of the content, or the algorithm `--checksum` asked for.
    pub digest: Digest,
}

/// ADD's `--checksum`, which only URL sources can have (one at a time: it names one file).
pub fn add_checksum(a: &crate::dockerfile::Add) -> Result<Option<Digest>> {
    let Some(c) = a.checksum.as_deref() else {
        return Ok(None);
    };
    let urls = a
        .files
        .sources
        .iter()
        .filter(|s| matches!(s, crate::dockerfile::Source::Url(_)))
        .count();
    if urls != 1 || a.files.sources.len() != 1 {
        return Err(Error::invalid(
            format!("ADD --checksum={c}"),
            "needs exactly one source, an http:// or https:// URL",
        ));
    }
    parse_checksum(c).map(Some)
}

/// `--checksum=ALG:HEX`, parsed (sha256 or sha512, as Docker).
pub fn parse_checksum(c: &str) -> Result<Digest> {
    c.parse::<Digest>()
        .map_err(|e| Error::invalid(format!("--checksum={c}"), e.to_string()))
}

/// The name an URL's file gets in a destination directory: the last segment of its path
/// (query and fragment dropped), as Docker.
pub fn file_name(url: &str) -> Result<String> {
    let no_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = no_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .split_once('/')
        .map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(n) if !n.is_empty() && n != "." && n != ".." => Ok(n.to_string()),
        _ => Err(Error::invalid(
            format!("ADD {url}"),
            "cannot tell a file name from the URL; give a destination that does not end in /",
        )),
    }
}

/// Downloads `url` to `dest`; `checksum`, when given, must match the content.
pub fn fetch(url: &str, dest: &Path, checksum: Option<&Digest>, opts: &Options) -> Result<Fetched> {
    let what = format!("ADD {url}");
    let mut b = reqwest::blocking::Client::builder()
        .user_agent(concat!("lade/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(READ_TIMEOUT);
    if opts.tls_no_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).at(ca)?;
        for c in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::invalid(format!("CA file {}", ca.display()), e.to_string()))?
        {
            b = b.add_root_certificate(c);
        }
    }
    let client = b
        .build()
        .map_err(|e| Error::invalid(&what, format!("HTTP client: {e}")))?;
    let mut resp = client
        .get(url)
        .send()
        .map_err(|e| Error::invalid(&what, format!("download failed: {}", error_chain(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::invalid(
            &what,
            format!("download failed: the server answered {status}"),
        ));
    }
    // An unparsable date is ignored, as Docker does: the file keeps the download's time.
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let algorithm = checksum.map_or(Algorithm::Sha256, Digest::algorithm);
    let file = File::create(dest).at(dest)?;
    let mut w = HashingWriter::new(BufWriter::new(file), algorithm);
    io::copy(&mut resp, &mut w)
        .map_err(|e| Error::invalid(&what, format!("download failed: {e}")))?;
    let (buf, digest, _) = w.finish();
    let mut file = buf
        .into_inner()
        .map_err(|e| Error::io_path(dest, e.into_error()))?;
    file.flush().at(dest)?;
    if let Some(t) = last_modified {
        file.set_modified(t).at(dest)?;
    }
    if let Some(want) = checksum
        && *want != digest
    {
        let _ = std::fs::remove_file(dest);
        return Err(Error::invalid(
            what,
            format!("checksum mismatch: expected {want}, got {digest}"),
        ));
    }
    Ok(Fetched {
        path: dest.to_path_buf(),
        digest,
    })
}

/// reqwest's error and its causes on one line (the cause says what really went wrong).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls() {
        assert_eq!(file_name("http://h/a/b.tar.gz").unwrap(), "b.tar.gz");
        assert_eq!(file_name("https://h:8080/x?y=1#z").unwrap(), "x");
        assert!(file_name("http://h/").is_err());
        assert!(file_name("http://h").is_err());
        assert!(file_name("http://h/dir/").is_err());
    }

    #[test]
    fn checksums() {
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        let e = parse_checksum("md5:abc").unwrap_err().to_string();
        assert!(e.contains("--checksum=md5:abc"), "{e}");
    }
}
