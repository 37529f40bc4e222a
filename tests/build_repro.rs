//! Reproducible builds: with `SOURCE_DATE_EPOCH` (or `--timestamp`) the same Dockerfile and
//! context built in two fresh stores, at two different times, give the same manifest digest,
//! as with BuildKit's `rewrite-timestamp`. What differs from one day to the next is faked: the
//! second build runs later, its context files have other mtimes, the URL that ADD downloads
//! says another `Last-Modified`. Each source of time is looked at on its own (the layers'
//! entry times, the gzip headers, the config's and history's `created`), and without the
//! epoch the two builds differ, so the comparison can fail. Also: SHELL is kept in the config
//! and an image built FROM one uses it.

mod common;
mod support;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use support::http;

const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";

/// Serves a file at /files/data.txt with the `Last-Modified` in `date`, which the test
/// changes between builds.
fn serve(date: Arc<Mutex<String>>) -> u16 {
    http::serve(move |head| {
        if head.path() == "/files/data.txt" {
            let d = ("Last-Modified", date.lock().unwrap().clone());
            (200, vec![d], b"downloaded\n".to_vec())
        } else {
            (404, Vec::new(), b"no\n".to_vec())
        }
    })
}

/// An HTTP date for `secs` since 1970 (by `date`, which every test machine has).
fn http_date(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sets the mtime of every file in `dir` (recursively) to `secs`.
fn touch_all(dir: &Path, secs: u64) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            touch_all(&p, secs);
        }
        fs::File::options()
            .read(true)
            .open(&p)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }
}

/// A multi-step Dockerfile with every kind of step that writes a time: RUN (new files and a
/// copied-up directory), COPY (context mtimes), ADD of a local archive and of a URL
/// (`Last-Modified`), WORKDIR making a directory, and config-only steps (history).
fn context(b: &BuildCtx, port: u16) {
    b.file("app/main.sh", "echo main\n");
    b.file("app/lib/util.sh", "echo util\n");
    let tar_src = b.lade.path("tar-src");
    fs::create_dir_all(tar_src.join("pkg")).unwrap();
    fs::write(tar_src.join("pkg/file"), "in the archive\n").unwrap();
    // Older than the epoch: kept as it is (clamped, not replaced).
    fs::File::options()
        .write(true)
        .open(tar_src.join("pkg/file"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&tar_src)
        .arg("-cf")
        .arg(b.ctx.join("pkg.tar"))
        .arg("pkg")
        .status()
        .unwrap();
    assert!(st.success());
    let df = format!(
        "FROM base\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         ENV APP=/opt/app\n\
         WORKDIR /opt/app\n\
         COPY app/ ./\n\
         ADD pkg.tar /opt/\n\
         ADD http://127.0.0.1:{port}/files/data.txt /opt/dl/\n\
         RUN echo built > out && mkdir -p /var/lib/x && touch /var/lib/x/f /etc/new\n\
         RUN --mount=type=cache,target=/cache date > /cache/last && echo cached > cached\n\
         LABEL org.example.kind=repro\n\
         CMD [\"./main.sh\"]\n"
    );
    fs::write(b.ctx.join("Dockerfile"), df).unwrap();
}

/// Builds the context as it is in a fresh store, with `env` added; returns the store.
fn build_fresh(ctx: &BuildCtx, extra: &[&str], env: &[(&str, &str)]) -> BuildCtx {
    let fresh = BuildCtx::in_store(base_store());
    let mut c = fresh.lade.cmd();
    c.arg("build").args(extra).args(["-t", "r"]).arg(&ctx.ctx);
    c.env_remove("SOURCE_DATE_EPOCH");
    for v in ["http_proxy", "HTTP_PROXY"] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    run_cmd(c).ok();
    fresh
}

/// Every (path, mtime) of the image's layers that the build made (those after the base's),
/// and the gzip header's MTIME field of each of their blobs.
fn built_layer_times(b: &BuildCtx, base_layers: usize) -> (Vec<(String, u64)>, Vec<u32>) {
    let r = b.record("r");
    let mut entries = Vec::new();
    let mut gzip_times = Vec::new();
    for l in &r["layers"].as_array().unwrap()[base_layers..] {
        let blob = b.blob(l["blob"].as_str().unwrap());
        assert_eq!(&blob[..2], &[0x1f, 0x8b], "not gzip");
        gzip_times.push(u32::from_le_bytes(blob[4..8].try_into().unwrap()));
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        for e in tar.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            entries.push((path, e.header().mtime().unwrap()));
        }
    }
    (entries, gzip_times)
}

/// The two builds, a "day" apart: the second one later, with other context mtimes and
/// another Last-Modified, all after the epoch. Returns the context and the two stores.
fn two_days(env: &[(&str, &str)]) -> (BuildCtx, BuildCtx, BuildCtx) {
    let date = Arc::new(Mutex::new(http_date(now() - 3600)));
    let port = serve(date.clone());
    let b = BuildCtx::new();
    context(&b, port);
    touch_all(&b.ctx, now() - 7200);
    let day1 = build_fresh(&b, &[], env);
    std::thread::sleep(Duration::from_millis(1100));
    touch_all(&b.ctx, now());
    *date.lock().unwrap() = http_date(now() - 60);
    let day2 = build_fresh(&b, &[], env);
    (b, day1, day2)
}

#[test]
fn source_date_epoch_gives_the_same_digest_on_two_days() {
    let epoch = EPOCH.to_string();
    let (ctx, day1, day2) = two_days(&[("SOURCE_DATE_EPOCH", &epoch)]);
    let digest = stored_digest(&day1.lade, "r");
    assert_eq!(digest, stored_digest(&day2.lade, "r"));

    // Each source of time, on its own.
    let config = day1.config("r");
    assert_eq!(config["created"], EPOCH_RFC3339);
    let history = config["history"].as_array().unwrap();
    let base_history = day1.config("base")["history"].as_array().unwrap().len();
    assert_eq!(history.len(), base_history + 10);
    for h in &history[base_history..] {
        assert_eq!(h["created"], EPOCH_RFC3339, "{h}");
    }
    let base_layers = day1.record("base")["layers"].as_array().unwrap().len();
    let (entries, gzip_times) = built_layer_times(&day1, base_layers);
    assert!(gzip_times.iter().all(|t| *t == 0), "{gzip_times:?}");
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "opt/app/main.sh",
        "opt/app/lib/util.sh",
        "opt/pkg/file",
        "opt/dl/data.txt",
        "opt/app/out",
        "var/lib/x/f",
        "etc/new",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    for (path, mtime) in &entries {
        assert!(*mtime <= EPOCH, "{path}: {mtime} after the epoch");
    }
    // The archive's entries keep their (older) times: clamped, not all set to the epoch.
    assert!(
        entries.iter().any(|(_, t)| *t < EPOCH),
        "nothing older than the epoch: {entries:?}"
    );
    // What lade run shows (the published layer trees) is what the blobs say.
    let shown = day1
        .lade
        .ok(["run", "r", "--", "stat", "-c", "%Y", "/opt/app/out"]);
    assert_eq!(shown.trim(), epoch);

    // --timestamp is the same thing: a rebuild with it is all hits; with another epoch,
    // whose layers and history differ, none is.
    let rebuild = |t: u64| {
        let mut c = day1.lade.cmd();
        c.args(["build", "--timestamp", &t.to_string(), "-t", "r2"])
            .arg(&ctx.ctx)
            .env_remove("SOURCE_DATE_EPOCH");
        run_cmd(c).ok()
    };
    assert_eq!(marks(&rebuild(EPOCH).stdout), "*".repeat(11));
    assert_eq!(stored_digest(&day1.lade, "r2"), digest);
    assert_eq!(
        marks(&rebuild(EPOCH + 1).stdout),
        format!("*{}", ".".repeat(10))
    );
    assert_ne!(stored_digest(&day1.lade, "r2"), digest);
}

#[test]
fn without_an_epoch_the_two_days_differ() {
    let (_ctx, day1, day2) = two_days(&[]);
    assert_ne!(
        stored_digest(&day1.lade, "r"),
        stored_digest(&day2.lade, "r")
    );
}

#[test]
fn a_bad_epoch_is_a_one_line_error() {
    let b = BuildCtx::new();
    fs::write(b.ctx.join("Dockerfile"), "FROM base\n").unwrap();
    let mut c = b.build_cmd(&[], "t");
    c.env("SOURCE_DATE_EPOCH", "yesterday");
    let e = run_cmd(c).fails_one_line();
    assert!(e.contains("SOURCE_DATE_EPOCH=yesterday"), "{e}");
    let e = b
        .build("t", "ARG SOURCE_DATE_EPOCH=soon\nFROM base\n")
        .fails_one_line();
    assert!(e.contains("Dockerfile: ARG SOURCE_DATE_EPOCH=soon"), "{e}");
}

/// SHELL is part of the image config, so an image built FROM it runs its shell-form
/// instructions with that shell, as Docker's would.
#[test]
fn shell_is_recorded_and_inherited() {
    let b = BuildCtx::new();
    b.build_ok("sh1", "FROM base\nSHELL [\"/bin/sh\", \"-xc\"]\n");
    assert_eq!(
        b.config("sh1")["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-xc"])
    );
    let r = b.build("sh2", "FROM sh1\nRUN echo inherited\n").ok();
    // `sh -x` traces the command on standard error: the inherited shell ran it.
    assert!(r.stderr.contains("+ echo inherited"), "{}", r.stderr);
    assert_eq!(
        b.config("sh2")["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-xc"])
    );
    // And it survives a copy out of the store and back.
    let layout = b.lade.path("layout");
    let dest = format!("oci:{}:sh1", layout.display());
    b.lade.ok(["copy", "lade:sh1", &dest]);
    let other = BuildCtx::in_store(base_store());
    other.lade.ok(["pull", &dest, "sh1"]);
    let r = other.build("sh3", "FROM sh1\nRUN echo again\n").ok();
    assert!(r.stderr.contains("+ echo again"), "{}", r.stderr);
}
