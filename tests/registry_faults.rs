//! Network faults, injected by a proxy (tests/support/proxy.rs) between lade and a real
//! registry on loopback: connections cut mid-blob (resumed with Range, not restarted: the
//! bytes are counted), 5xx, 429 with Retry-After, no Content-Length, 401 for a missing
//! repository, blobs redirected to another port (without the Authorization header), lying
//! headers and bodies. Every case ends in a correct image or one clear line of error.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::proxy::{Action, BlobServer, Proxy};
use support::registry::Registry;

const IMAGE: &str = "test/multi:v1";

/// A registry with the fixtures' multi-layer image, a proxy in front, and the layers of the
/// image (digest, size), biggest first.
fn setup() -> (Registry, Proxy, Vec<(String, u64)>) {
    let f = fixtures();
    let reg = Registry::anonymous();
    reg.push(&f.oci("multi"), IMAGE, &[]);
    let proxy = Proxy::start(reg.port);
    (reg, proxy, support::layers_by_size(&f.layout(), "multi"))
}

fn pull(lade: &Lade, proxy: &Proxy, extra: &[&str]) -> Run {
    let name = format!("{}/{IMAGE}", proxy.host());
    let mut args = vec!["--tls-no-verify", "-v"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["pull", &name, "img"]);
    lade.run(args)
}

/// The pulled image must be exactly the one pushed.
fn check_image(lade: &Lade) {
    let want = support::layout_digest(&fixtures().layout(), "multi");
    assert_eq!(stored_digest(lade, "img"), want);
    lade.fsck_ok();
    let got = lade.path("got");
    lade.ok(["unpack".as_ref(), "img".as_ref(), got.as_os_str()]);
    lade.ok(["pull", &fixtures().oci("multi"), "ref"]);
    let reference = lade.path("ref");
    lade.ok(["unpack".as_ref(), "ref".as_ref(), reference.as_os_str()]);
    assert_same_tree(&reference, &got, &CompareOpts::default());
}

/// How many manifest requests the proxy has seen.
fn manifest_requests(proxy: &Proxy) -> usize {
    proxy
        .log()
        .iter()
        .filter(|l| l.path.contains("/manifests/"))
        .count()
}

fn blob_path(digest: &str) -> String {
    format!("/v2/test/multi/blobs/{digest}")
}

#[test]
fn connection_cut_mid_blob_is_resumed_not_restarted() {
    let (_reg, proxy, layers) = setup();
    let (digest, size) = layers[0].clone();
    assert!(size > 1000, "the biggest layer is only {size} bytes");
    let cut_at = size / 3;
    let path = blob_path(&digest);
    let p = path.clone();
    // Cut twice: at a third, then a third further on.
    proxy.set_rule(move |head, nth| match nth {
        0 if head.path() == p => Action::Cut(cut_at),
        1 if head.path() == p => Action::Cut(cut_at),
        _ => Action::Forward,
    });
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    let log: Vec<_> = proxy.log().into_iter().filter(|l| l.path == path).collect();
    assert_eq!(log.len(), 3, "{}", proxy.dump());
    assert_eq!(log[0].range, None);
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={cut_at}-").as_str())
    );
    assert_eq!(log[1].status, 206);
    assert_eq!(
        log[2].range.as_deref(),
        Some(format!("bytes={}-", 2 * cut_at).as_str())
    );
    let sent: u64 = log.iter().map(|l| l.body_bytes).sum();
    assert_eq!(
        sent,
        size,
        "bytes sent for the blob, in all:\n{}",
        proxy.dump()
    );
    check_image(&lade);
}

#[test]
fn cut_without_content_length_is_resumed_by_the_manifest_size() {
    let (_reg, proxy, layers) = setup();
    let (digest, size) = layers[0].clone();
    let path = blob_path(&digest);
    let p = path.clone();
    // No Content-Length and cut: to HTTP the body simply ends; only the size in the manifest
    // tells it is short.
    proxy.set_rule(move |head, nth| {
        if head.path() != p {
            return Action::NoContentLength;
        }
        match nth {
            0 => Action::Cut(size / 2),
            _ => Action::NoContentLength,
        }
    });
    // NoContentLength on every other response too (manifests, config, other layers).
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    let log: Vec<_> = proxy.log().into_iter().filter(|l| l.path == path).collect();
    assert_eq!(log.len(), 2, "{}", proxy.dump());
    let sent: u64 = log.iter().map(|l| l.body_bytes).sum();
    assert_eq!(sent, size, "{}", proxy.dump());
    check_image(&lade);
}

#[test]
fn no_content_length_anywhere() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|_, _| Action::NoContentLength);
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    check_image(&lade);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let (_reg, proxy, layers) = setup();
    let blob = blob_path(&layers[1].0);
    proxy.set_rule(move |head, nth| {
        if head.path().contains("/manifests/") && nth < 2 {
            return Action::Status(500, vec![], "oops".into());
        }
        if head.path() == blob && nth == 0 {
            return Action::Status(503, vec![], "busy".into());
        }
        Action::Forward
    });
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    assert_eq!(manifest_requests(&proxy), 3, "{}", proxy.dump());
    check_image(&lade);

    // Always 500: a bounded number of tries, then one clear line.
    proxy.set_rule(|head, _| {
        if head.path().contains("/manifests/") {
            Action::Status(
                500,
                vec![],
                "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"disk on fire\"}]}".into(),
            )
        } else {
            Action::Forward
        }
    });
    proxy.clear();
    let t = Instant::now();
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(err.contains("500") && err.contains("disk on fire"), "{err}");
    let tries = proxy.log().len();
    assert!((2..=6).contains(&tries), "{tries} tries:\n{}", proxy.dump());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn rate_limit_honours_retry_after() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|head, nth| {
        if head.path().contains("/manifests/") && nth == 0 {
            Action::Status(
                429,
                vec![("Retry-After".into(), "2".into())],
                "slow down".into(),
            )
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    let t = Instant::now();
    pull(&lade, &proxy, &[]).ok();
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    check_image(&lade);

    // Asked to wait an hour: no waiting, a clear error.
    proxy.set_rule(|_, _| {
        Action::Status(429, vec![("Retry-After".into(), "3600".into())], "".into())
    });
    let t = Instant::now();
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(
        err.contains("rate limited") && err.contains("3600"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn unauthorized_reads_as_not_found_or_not_authorized() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|head, _| {
        if head.path().starts_with("/v2/missing/") {
            Action::Status(
                401,
                vec![("WWW-Authenticate".into(), "Basic realm=\"registry\"".into())],
                "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".into(),
            )
        } else if head.path().starts_with("/v2/forbidden/") {
            Action::Status(403, vec![], "".into())
        } else if head.path().starts_with("/v2/bad/") {
            Action::Status(400, vec![], "".into())
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    for (repo, code) in [("missing", "401"), ("forbidden", "403"), ("bad", "400")] {
        let name = format!("{}/{repo}/x:1", proxy.host());
        let err = lade
            .run(["-q", "--tls-no-verify", "pull", &name])
            .fails_one_line();
        assert!(
            err.contains("not found or not authorized")
                && err.contains(code)
                && err.contains("--auth"),
            "{err}"
        );
        assert!(err.contains(&name), "{err}");
    }
}

#[test]
fn blobs_redirected_to_another_port_without_authorization() {
    // Token auth, so that lade has an Authorization header to (not) pass on.
    let dir = Scratch::new("token");
    let ts = support::token::TokenServer::start(&dir.join("t"), Default::default());
    let mut reg = Registry::start(ts.registry_auth(), false);
    reg.push_creds = Some(("alice".into(), "s3cret-Pa55".into()));
    let f = fixtures();
    reg.push(&f.oci("multi"), "public/multi:v1", &[]);
    let proxy = Proxy::start(reg.port);
    let blobs = BlobServer::start(f.layout());
    let port = blobs.port;
    proxy.set_rule(
        move |head, _| match head.path().split_once("/blobs/sha256:") {
            Some((_, hex)) => Action::Redirect(format!(
                "http://127.0.0.1:{port}/blobs/sha256/{hex}?X-Signature=t0p-s3cret"
            )),
            None => Action::Forward,
        },
    );
    let lade = Lade::new();
    let name = format!("{}/public/multi:v1", proxy.host());
    lade.run(["--tls-no-verify", "pull", &name, "img"]).ok();
    check_image(&lade);
    let served = blobs.requests.lock().unwrap().clone();
    assert!(!served.is_empty());
    assert!(
        served.iter().all(|(_, auth)| !auth),
        "Authorization reached the other host: {served:?}"
    );
    let to_proxy: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.contains("/blobs/"))
        .collect();
    assert!(
        to_proxy.iter().all(|l| l.authorization),
        "the registry itself got no token:\n{}",
        proxy.dump()
    );

    // The redirect target serves other bytes: a clear error that names the blob, and not
    // the signature of the URL.
    let (wrong, _) = support::layers_by_size(&f.layout(), "multi")[0].clone();
    let wrong_hex = wrong.strip_prefix("sha256:").unwrap().to_string();
    proxy.set_rule(
        move |head, _| match head.path().split_once("/blobs/sha256:") {
            Some(_) => Action::Redirect(format!(
                "http://127.0.0.1:{port}/blobs/sha256/{wrong_hex}?X-Signature=t0p-s3cret"
            )),
            None => Action::Forward,
        },
    );
    let err = Lade::new()
        .run(["-q", "--tls-no-verify", "pull", &name])
        .fails_one_line();
    assert!(err.contains("mismatch") && err.contains("blob"), "{err}");
    assert!(!err.contains("t0p-s3cret"), "{err}");
}

#[test]
fn lying_docker_content_digest_is_refused() {
    let (_reg, proxy, _) = setup();
    let liar = format!("sha256:{}", "ab".repeat(32));
    let l = liar.clone();
    proxy.set_rule(move |head, _| {
        if head.path().contains("/manifests/") {
            Action::SetHeader("Docker-Content-Digest".into(), l.clone())
        } else {
            Action::Forward
        }
    });
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(
        err.contains("digest mismatch") && err.contains(&liar),
        "{err}"
    );
}

#[test]
fn wrong_or_missing_media_type_is_tolerated() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|head, _| {
        if head.path().contains("/manifests/") {
            Action::SetHeader("Content-Type".into(), "text/plain".into())
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    check_image(&lade);
}

#[test]
fn not_a_registry_is_told_apart_from_not_found() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|_, _| Action::Status(404, vec![], "<html>nothing here</html>".into()));
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(err.contains("does not look like a registry"), "{err}");
    // The registry's own 404 for a missing tag stays "not found".
    proxy.set_rule(|_, _| Action::Forward);
    let name = format!("{}/test/multi:nope", proxy.host());
    let err = Lade::new()
        .run(["-q", "--tls-no-verify", "pull", &name])
        .fails_one_line();
    assert!(
        err.contains("not found") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
}

#[test]
fn server_ignoring_range_is_read_again_from_the_start() {
    let (_reg, proxy, layers) = setup();
    let (digest, size) = layers[0].clone();
    let path = blob_path(&digest);
    let p = path.clone();
    proxy.set_rule(move |head, nth| match nth {
        0 if head.path() == p => Action::Cut(size / 2),
        1 if head.path() == p => Action::IgnoreRange,
        _ => Action::Forward,
    });
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    let log: Vec<_> = proxy.log().into_iter().filter(|l| l.path == path).collect();
    assert_eq!(log.len(), 2, "{}", proxy.dump());
    assert_eq!(log[1].status, 200, "{}", proxy.dump());
    check_image(&lade);
}

#[test]
fn a_blob_that_never_comes_is_a_bounded_clear_error() {
    let (_reg, proxy, layers) = setup();
    let path = blob_path(&layers[0].0);
    let p = path.clone();
    proxy.set_rule(move |head, _| {
        if head.path() == p {
            Action::Cut(0)
        } else {
            Action::Forward
        }
    });
    let t = Instant::now();
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(
        err.contains(&layers[0].0) && err.contains("gave up"),
        "{err}"
    );
    let tries = proxy.log().iter().filter(|l| l.path == path).count();
    assert!((2..=6).contains(&tries), "{tries} tries:\n{}", proxy.dump());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[test]
fn schema1_manifest_is_a_clear_error() {
    let (_reg, proxy, _) = setup();
    proxy.set_rule(|head, _| {
        if head.path().contains("/manifests/") {
            Action::Status(
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
                )],
                r#"{"schemaVersion":1,"name":"test/multi","tag":"v1","fsLayers":[],"history":[]}"#
                    .into(),
            )
        } else {
            Action::Forward
        }
    });
    let err = pull(&Lade::new(), &proxy, &["-q"]).fails_one_line();
    assert!(err.contains("schema 1"), "{err}");
}

#[test]
fn resets_before_and_during_responses_are_retried() {
    let (_reg, proxy, layers) = setup();
    let blob = blob_path(&layers[1].0);
    proxy.set_rule(move |head, nth| {
        if head.path().contains("/manifests/") {
            return match nth {
                0 => Action::Close,
                1 => Action::Cut(10),
                _ => Action::Forward,
            };
        }
        if head.path() == blob && nth == 0 {
            return Action::Close;
        }
        Action::Forward
    });
    let lade = Lade::new();
    pull(&lade, &proxy, &[]).ok();
    assert_eq!(manifest_requests(&proxy), 3, "{}", proxy.dump());
    check_image(&lade);
}

/// Layers are unpacked while they download, so a blob whose digest fails only at its very
/// end has already been unpacked in full: that tree, and every other layer's, must stay out
/// of the store (nothing is published before the image is committed), and a clean pull
/// afterwards must work.
#[test]
fn a_layer_failing_its_digest_at_the_end_leaves_nothing_unpacked() {
    let (_reg, proxy, layers) = setup();
    let (digest, size) = layers[0].clone();
    // A valid uncompressed tar with one file, padded with zeros (read as the padding after
    // the end blocks) to the size the manifest promises: only the digest can tell.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "impostor", &b"hello\n"[..]).unwrap();
    let mut body = b.into_inner().unwrap();
    assert!((body.len() as u64) < size, "layer too small for the test");
    body.resize(size as usize, 0);
    let body = String::from_utf8(body).unwrap();
    let p = blob_path(&digest);
    proxy.set_rule(move |head, _| {
        if head.path() == p {
            let ct = (
                "Content-Type".to_string(),
                "application/octet-stream".to_string(),
            );
            Action::Status(200, vec![ct], body.clone())
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    let err = pull(&lade, &proxy, &["-q"]).fails_one_line();
    assert!(
        err.contains("digest mismatch") && err.contains(&digest),
        "{err}"
    );
    let published: Vec<_> = std::fs::read_dir(lade.storage.join("layers"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(published.is_empty(), "layer trees published: {published:?}");
    let hex = digest.trim_start_matches("sha256:");
    assert!(!lade.storage.join("blobs/sha256").join(hex).exists());
    assert!(lade.list().is_empty());
    lade.fsck_ok();
    proxy.set_rule(|_, _| Action::Forward);
    pull(&lade, &proxy, &["-q"]).ok();
    check_image(&lade);
}
