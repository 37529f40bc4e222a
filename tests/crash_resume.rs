//! A pull killed (`kill -9`) part-way through a download, then pulled again, fetches only the
//! rest of each blob (issue 12 item 6): the bytes the registry serves over both pulls stay
//! within 10 % of the image's layers, counted by a proxy in front of a real Distribution
//! registry. The resumed layer still unpacks into a verified tree, and concurrent pulls of
//! the blob that is being resumed do not disturb each other.

mod common;
mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::kill::assert_on_disk_filesystem;
use common::*;
use support::proxy::Proxy;
use support::registry::Registry;

const IMAGE: &str = "test/big:v1";

/// A registry holding the fixtures' `big` image (busybox, 10k small files and a 32 MiB
/// random file), a counting proxy in front, and the image's layers (digest, size), biggest
/// first.
fn setup() -> (Registry, Proxy, Vec<(String, u64)>) {
    let f = fixtures_big();
    let reg = Registry::anonymous();
    reg.push(&format!("oci:{}:big", f.big().display()), IMAGE, &[]);
    let proxy = Proxy::start(reg.port);
    (reg, proxy, support::layers_by_size(&f.big(), "big"))
}

fn pull_cmd(lade: &Lade, proxy: &Proxy) -> std::process::Command {
    let mut c = lade.cmd();
    c.args(["--tls-no-verify", "-v", "pull"])
        .arg(format!("{}/{IMAGE}", proxy.host()))
        .arg("img");
    c
}

/// The bytes kept of blob `digest` in the store's partial downloads (0 if none).
fn kept(lade: &Lade, digest: &str) -> u64 {
    let name = digest.replacen(':', "-", 1);
    fs::metadata(lade.storage.join("partial").join(name)).map_or(0, |m| m.len())
}

/// Starts a pull and kills it once `at_least` bytes of blob `digest` are kept.
fn kill_pull_at(lade: &Lade, proxy: &Proxy, digest: &str, at_least: u64) {
    let mut child: Child = pull_cmd(lade, proxy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start lade");
    let deadline = Instant::now() + Duration::from_secs(120);
    while kept(lade, digest) < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before {at_least} bytes of {digest} arrived"
        );
        assert!(Instant::now() < deadline, "the pull does not progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Body bytes the proxy sent for blob requests, once every connection it served has ended.
fn blob_bytes_served(proxy: &Proxy) -> u64 {
    let count = || proxy.log().len();
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = count();
        if now == last {
            break;
        }
        last = now;
    }
    proxy
        .log()
        .iter()
        .filter(|l| l.path.contains("/blobs/"))
        .map(|l| l.body_bytes)
        .sum()
}

/// The pulled `img` must be umoci's unpack of the `big` image, and the store consistent.
fn assert_image_is_big(lade: &Lade) {
    lade.fsck_ok();
    let out = lade.path("out");
    let _ = remove_tree(&out);
    lade.ok(["unpack".as_ref(), "img".as_ref(), out.as_os_str()]);
    let s = Scratch::new("umoci");
    let want = umoci_unpack(
        &format!("{}:big", fixtures_big().big().display()),
        &s.join("bundle"),
    );
    let opts = CompareOpts {
        root_mode: false,
        ..CompareOpts::default()
    };
    assert_same_tree(&want, &out, &opts);
}

/// The command `r` said it continued blob `digest` at `kept_bytes`, and asked the registry
/// for the rest only.
fn assert_continued(r: &Run, proxy: &Proxy, digest: &str, kept_bytes: u64) {
    assert!(
        r.stderr
            .contains(&format!("continuing at byte {kept_bytes}")),
        "the command did not say it continued:\n{}",
        r.stderr
    );
    let ranged = proxy
        .log()
        .iter()
        .any(|l| l.path.ends_with(digest) && l.range == Some(format!("bytes={kept_bytes}-")));
    assert!(ranged, "no Range request for the rest:\n{}", proxy.dump());
}

#[test]
fn a_pull_killed_mid_blob_continues_where_it_stopped() {
    let (_reg, proxy, layers) = setup();
    let lade = Lade::new();
    assert_on_disk_filesystem(lade.scratch.path());
    let layers_size: u64 = layers.iter().map(|l| l.1).sum();
    let (big, big_size) = layers[0].clone();
    kill_pull_at(&lade, &proxy, &big, big_size / 2);
    let first = blob_bytes_served(&proxy);
    let kept_bytes = kept(&lade, &big);
    eprintln!("killed with {kept_bytes} of {big_size} bytes kept; {first} blob bytes served");

    proxy.clear();
    let r = run_cmd(pull_cmd(&lade, &proxy)).ok();
    assert_continued(&r, &proxy, &big, kept_bytes);
    let second = blob_bytes_served(&proxy);
    let total = first + second;
    eprintln!(
        "served {first} + {second} = {total} blob bytes for {layers_size} bytes of layers \
         ({:.1} %)",
        100.0 * total as f64 / layers_size as f64
    );
    assert!(
        total as f64 <= 1.10 * layers_size as f64,
        "the two pulls transferred {total} bytes for {layers_size} bytes of layers"
    );
    assert!(
        !lade.storage.join("partial").exists()
            || fs::read_dir(lade.storage.join("partial")).unwrap().count() == 0,
        "a partial download outlived its blob"
    );
    assert_image_is_big(&lade);
}

/// `copy` to a SquashFS file stages the image in the store, so it continues a download a
/// killed pull left, as `pull` does, with a Range request for the rest only.
#[test]
fn a_copy_to_squashfs_continues_a_killed_pull() {
    let (_reg, proxy, layers) = setup();
    let lade = Lade::new();
    let (big, big_size) = layers[0].clone();
    kill_pull_at(&lade, &proxy, &big, big_size / 2);
    let kept_bytes = kept(&lade, &big);
    proxy.clear();
    let file = lade.path("img.sqfs");
    let mut c = lade.cmd();
    c.args(["--tls-no-verify", "-v", "copy"])
        .arg(format!("docker://{}/{IMAGE}", proxy.host()))
        .arg(format!("squashfs:{}", file.display()));
    let r = run_cmd(c).ok();
    assert_continued(&r, &proxy, &big, kept_bytes);
    // The file is a whole SquashFS image that unsquashfs can list.
    let out = std::process::Command::new("unsquashfs")
        .arg("-l")
        .arg(&file)
        .output()
        .expect("cannot run unsquashfs");
    assert!(out.status.success(), "unsquashfs -l failed on the copy");
    assert!(String::from_utf8_lossy(&out.stdout).contains("squashfs-root/bin/busybox"));
}

#[test]
fn concurrent_pulls_of_a_blob_being_resumed_do_not_mix() {
    let (_reg, proxy, layers) = setup();
    let lade = Lade::new();
    let (big, big_size) = layers[0].clone();
    kill_pull_at(&lade, &proxy, &big, big_size / 3);
    // Three pulls at once into the store that kept a part: one continues it, the others
    // download on their own; all succeed with the same verified image.
    let children: Vec<Child> = (0..3)
        .map(|_| {
            pull_cmd(&lade, &proxy)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let blob = lade
        .storage
        .join("blobs/sha256")
        .join(big.strip_prefix("sha256:").unwrap());
    assert_eq!(sha256(&fs::read(&blob).unwrap()), big);
    assert!(!Path::new(&lade.storage.join("partial").join(big.replacen(':', "-", 1))).exists());
    assert_image_is_big(&lade);
}
