//! `kill -9` at many points during `lade pull` and `lade unpack`, then the same command again:
//! it must complete, give the right result, and `lade fsck` must find the store consistent,
//! both right after the kill and after the re-run.
//!
//! Uses the `big` fixture (busybox, 10k small files, a 32 MiB random file) so that lade is
//! busy long enough for the kills to land at different stages. The kill delays are fractions
//! of a measured clean run, so they spread over the whole run on fast and slow machines alike.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::kill::{kill_after, os};
use common::*;

/// Fractions of a clean run's duration at which to kill, plus a few tiny absolute delays
/// (set-up: store creation, locking, reading the index).
const FRACTIONS: &[f64] = &[0.04, 0.12, 0.25, 0.45, 0.65, 0.85];
const EARLY_MS: &[u64] = &[1, 4];

fn big_src() -> String {
    format!("oci:{}:big", fixtures_big().big().display())
}

/// Reference tree: umoci's rootless unpack of the big image.
fn reference(s: &Scratch) -> std::path::PathBuf {
    umoci_unpack(
        &format!("{}:big", fixtures_big().big().display()),
        &s.join("bundle"),
    )
}

fn opts() -> CompareOpts {
    CompareOpts {
        root_mode: false,
        ..CompareOpts::default()
    }
}

/// Time one clean run of `args`.
fn clean_run(lade: &Lade, args: &[OsString]) -> Duration {
    let t = Instant::now();
    lade.run(args).ok();
    t.elapsed()
}

fn delays(clean: Duration) -> Vec<Duration> {
    let mut v: Vec<Duration> = EARLY_MS.iter().map(|&m| Duration::from_millis(m)).collect();
    v.extend(FRACTIONS.iter().map(|f| clean.mul_f64(*f)));
    v
}

#[track_caller]
fn fsck_after_kill(lade: &Lade, what: &str) {
    let r = lade.run(["fsck"]);
    assert!(
        r.success(),
        "{what}: lade fsck failed right after the kill (a crash must never leave a corrupt \
         or half-visible object)\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn kill_during_pull_then_pull_again() {
    let src = big_src();
    let s = Scratch::new("crash-ref");
    let want = Tree::scan(&reference(&s));
    let pull = os(&["pull", &src]);

    let clean = clean_run(&Lade::new(), &pull);
    eprintln!("clean pull of the big image: {clean:?}");

    let mut hits = 0;
    for d in delays(clean) {
        let what = format!("pull killed after {d:?}");
        eprintln!("{what}");
        let lade = Lade::new();
        if kill_after(&lade, &pull, d) {
            hits += 1;
        }
        fsck_after_kill(&lade, &what);
        let r = lade.run(&pull);
        assert!(
            r.success(),
            "{what}: the same pull again failed\nstderr: {}",
            r.stderr
        );
        lade.fsck_ok();
        assert!(
            lade.list().iter().any(|n| n.contains("big")),
            "{what}: not listed: {:?}",
            lade.list()
        );
        let out = lade.path("out");
        lade.ok([
            OsString::from("unpack"),
            OsString::from("big"),
            out.clone().into_os_string(),
        ]);
        assert_same_as_scanned(&want, &out, &opts());
    }
    assert!(
        hits >= 3,
        "only {hits} kills landed while lade pull was running; the test proves nothing"
    );
}

#[test]
fn repeated_kills_during_pull_on_one_store() {
    // Crash after crash on the same store, each time further along or earlier, then finish.
    let src = big_src();
    let pull = os(&["pull", &src]);
    let clean = clean_run(&Lade::new(), &pull);
    let lade = Lade::new();
    let mut ds = delays(clean);
    ds.reverse();
    for d in ds {
        kill_after(&lade, &pull, d);
        fsck_after_kill(&lade, &format!("pull killed after {d:?} (repeated)"));
    }
    lade.run(&pull).ok();
    lade.fsck_ok();
    let s = Scratch::new("crash-ref");
    let want = Tree::scan(&reference(&s));
    let out = lade.path("out");
    lade.ok([
        OsString::from("unpack"),
        OsString::from("big"),
        out.clone().into_os_string(),
    ]);
    assert_same_as_scanned(&want, &out, &opts());
}

fn unpack_args(out: &Path) -> Vec<OsString> {
    vec![
        "unpack".into(),
        "big".into(),
        out.as_os_str().to_os_string(),
    ]
}

#[test]
fn kill_during_unpack_then_unpack_again() {
    let src = big_src();
    let s = Scratch::new("crash-ref");
    let want = Tree::scan(&reference(&s));
    let lade = Lade::new();
    lade.ok(["pull", &src]);

    let clean = clean_run(&lade, &unpack_args(&lade.path("clean")));
    eprintln!("clean unpack of the big image: {clean:?}");
    let _ = remove_tree(&lade.path("clean"));

    let mut hits = 0;
    for (i, d) in delays(clean).into_iter().enumerate() {
        let what = format!("unpack killed after {d:?}");
        eprintln!("{what}");
        let out = lade.path(format!("out{i}"));
        let args = unpack_args(&out);
        if !kill_after(&lade, &args, d) {
            // it finished: the result must be complete (running it again would rightly
            // refuse the non-empty directory)
            lade.fsck_ok();
            assert_same_as_scanned(&want, &out, &opts());
            let _ = remove_tree(&out);
            continue;
        }
        hits += 1;
        fsck_after_kill(&lade, &what);
        let r = lade.run(&args);
        assert!(
            r.success(),
            "{what}: the same unpack again failed\nstderr: {}",
            r.stderr
        );
        lade.fsck_ok();
        assert_same_as_scanned(&want, &out, &opts());
        let _ = remove_tree(&out);
    }
    assert!(
        hits >= 3,
        "only {hits} kills landed while lade unpack was running; the test proves nothing"
    );
}

/// Kills aimed at the creation of a fresh store: wait until the storage directory appears,
/// then kill after 0–580 µs. The window between creating the store's first files and writing
/// its VERSION is narrow, so the delay-based tests above only hit it by luck.
#[test]
fn kill_during_store_creation() {
    let src = fixtures().oci("single");
    let pull = os(&["pull", &src]);
    let mut killed = 0;
    for i in 0..100u64 {
        let lade = Lade::new();
        let mut c = lade.cmd();
        c.args(&pull).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().expect("cannot start lade");
        let t0 = Instant::now();
        while !lade.storage.exists()
            && t0.elapsed() < Duration::from_secs(10)
            && child.try_wait().unwrap().is_none()
        {
            std::hint::spin_loop();
        }
        let extra = Duration::from_micros((i % 30) * 20);
        let t1 = Instant::now();
        while t1.elapsed() < extra {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if st.signal() == Some(9) {
            killed += 1;
        }
        let what = format!(
            "pull killed {extra:?} after the store directory appeared (left: {:?})",
            std::fs::read_dir(&lade.storage)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        fsck_after_kill(&lade, &what);
        let r = lade.run(&pull);
        assert!(
            r.success(),
            "{what}: the same pull again failed\nstderr: {}",
            r.stderr
        );
        lade.fsck_ok();
    }
    assert!(killed >= 50, "only {killed} of 100 kills landed");
}
