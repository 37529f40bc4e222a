//! `ADD http://…`: the file downloaded into the layer with mode 0600 and the server's
//! Last-Modified as mtime, named from the URL or the destination, `--checksum` verified, the
//! cache keyed by content (or by the checksum, downloading nothing), and clear errors; against
//! a tiny HTTP server on 127.0.0.1.

mod common;
mod support;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use support::http;

const BODY: &[u8] = b"hello over http\n";
/// Sent with BODY; the downloaded file's mtime must be this (1445412480 s), as in Docker.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// Serves BODY at /files/hello.txt, 404 elsewhere; counts requests.
fn serve() -> (u16, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let port = http::serve(move |head| {
        c.fetch_add(1, Ordering::SeqCst);
        if head.path() == "/files/hello.txt" {
            let date = ("Last-Modified", LAST_MODIFIED.to_string());
            (200, vec![date], BODY.to_vec())
        } else {
            (404, Vec::new(), b"no\n".to_vec())
        }
    });
    (port, count)
}

#[test]
fn add_url_downloads_verifies_and_caches() {
    let (port, count) = serve();
    let b = BuildCtx::new();
    let build = |df: &str| {
        fs::write(b.ctx.join("Dockerfile"), df).unwrap();
        let mut c = b.build_cmd(&[], "t");
        for v in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"] {
            c.env_remove(v);
        }
        run_cmd(c)
    };
    let url = format!("http://127.0.0.1:{port}/files/hello.txt");
    let sum = sha256(BODY);
    let df = format!(
        "FROM base\n\
         ADD {url} /dl/\n\
         ADD {url} /named\n\
         ADD --checksum={sum} {url}?x=1 /sum.txt\n"
    );
    let r = build(&df).ok();
    assert_eq!(marks(&r.stdout), "*...", "{}", r.stderr);
    // One download per URL per build.
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let out = b.lade.ok([
        "run",
        "t",
        "--",
        "/bin/sh",
        "-c",
        "cat /dl/hello.txt /named /sum.txt; stat -c '%a %Y' /dl/hello.txt /named /sum.txt",
    ]);
    let text = String::from_utf8_lossy(BODY);
    let meta = "600 1445412480\n".repeat(3);
    assert_eq!(out, format!("{text}{text}{text}{meta}"));

    // A rebuild: the content is the same, so every step hits; the step with a checksum
    // downloads nothing.
    let r = build(&df).ok();
    assert_eq!(marks(&r.stdout), "****", "{}", r.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // Errors are one line naming the URL.
    let bad = "0".repeat(64);
    let err = build(&format!(
        "FROM base\nADD --checksum=sha256:{bad} {url} /x\n"
    ))
    .fails_one_line();
    assert!(
        err.contains("checksum mismatch") && err.contains(&url),
        "{err}"
    );
    let err = build(&format!("FROM base\nADD http://127.0.0.1:{port}/nope /x\n")).fails_one_line();
    assert!(err.contains("404") && err.contains("/nope"), "{err}");
    let err = build(&format!("FROM base\nADD http://127.0.0.1:{port}/ /d/\n")).fails_one_line();
    assert!(err.contains("cannot tell a file name"), "{err}");
    let err = build(&format!("FROM base\nADD --checksum=md5:00 {url} /x\n")).fails_one_line();
    assert!(err.contains("--checksum=md5:00"), "{err}");
    fs::write(b.ctx.join("local"), "x").unwrap();
    let err = build(&format!("FROM base\nADD --checksum={sum} local /x\n")).fails_one_line();
    assert!(err.contains("exactly one source"), "{err}");
    // Nothing listens on port 1.
    let err = build("FROM base\nADD http://127.0.0.1:1/f /x\n").fails_one_line();
    assert!(err.contains("download failed"), "{err}");
    b.lade.fsck_ok();
}
