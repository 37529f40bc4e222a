//! `lade fsck` sees what is wrong in a store and `--repair` leaves it usable (issue 12 item
//! 5, issue 13 item 6); `undelete` and `list --format json` of images that are not there
//! (issue 12 item 11).

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;

use common::*;

/// The layer tree (its `tree/` directory) of `lade`'s store that holds `rel`.
fn tree_holding(lade: &Lade, rel: &str) -> PathBuf {
    fs::read_dir(lade.storage.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("tree"))
        .find(|t| t.join(rel).exists())
        .unwrap_or_else(|| panic!("no layer tree holds {rel}"))
}

/// `lade unpack` of `name` must equal umoci's rootless unpack of the fixtures' `multi`.
#[track_caller]
fn assert_is_multi(lade: &Lade, name: &str) {
    let out = lade.path(format!("out-{name}"));
    let _ = remove_tree(&out);
    lade.ok([
        OsString::from("unpack"),
        name.into(),
        out.clone().into_os_string(),
    ]);
    let s = Scratch::new("umoci");
    let want = umoci_unpack(
        &format!("{}:multi", fixtures().layout().display()),
        &s.join("bundle"),
    );
    assert_same_tree(&want, &out, &vs_umoci());
}

#[test]
fn a_flipped_byte_in_a_layer_tree_is_found_and_repaired() {
    let lade = Lade::new();
    let src = fixtures().oci("multi");
    lade.ok(["pull", &src, "img"]);
    lade.fsck_ok();
    let file = tree_holding(&lade, "data/random.bin").join("data/random.bin");
    let mut bytes = fs::read(&file).unwrap();
    bytes[12_345] ^= 0x01;
    fs::write(&file, bytes).unwrap();

    let out = lade.run(["fsck"]).fails();
    let report = lade.run(["fsck"]).stdout;
    assert!(
        report.contains("/data/random.bin: content differs from byte 12345"),
        "fsck does not say what differs:\n{report}\n{out}"
    );
    // --quick skips the comparison, and says so.
    let quick = lade.ok(["fsck", "--quick"]);
    assert!(quick.contains("not compared: --quick"), "{quick}");

    let repaired = lade.ok(["fsck", "--repair"]);
    assert!(repaired.contains("repaired: "), "{repaired}");
    lade.fsck_ok();
    lade.ok(["pull", &src, "img"]);
    assert_is_multi(&lade, "img");
}

#[test]
fn a_tree_missing_files_is_rebuilt_by_the_next_pull() {
    // What a killed delete of old lade left: info.json beside half a tree.
    let lade = Lade::new();
    let src = fixtures().oci("multi");
    lade.ok(["pull", &src, "img"]);
    let tree = tree_holding(&lade, "bin/busybox");
    remove_tree(&tree.join("bin")).unwrap();
    let report = lade.run(["fsck"]);
    assert!(!report.success(), "{}", report.stdout);
    assert!(report.stdout.contains("/bin: missing"), "{}", report.stdout);
    // Without a blob to unpack it from, a repair removes the tree; the pull unpacks it.
    let blobs = lade.storage.join("blobs/sha256");
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(tree.parent().unwrap().join("info.json")).unwrap())
            .unwrap();
    let blob = info["blob"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    fs::remove_file(blobs.join(blob)).unwrap();
    let repaired = lade.ok(["fsck", "--repair"]);
    assert!(repaired.contains("removed "), "{repaired}");
    lade.fsck_ok();
    lade.ok(["pull", &src, "img"]);
    lade.fsck_ok();
    assert_is_multi(&lade, "img");
}

#[test]
fn a_damaged_built_tree_is_found_but_an_intact_one_passes() {
    let b = BuildCtx::new();
    b.build_ok(
        "built",
        "FROM base\nRUN echo hello > /ro && chmod 0444 /ro && mkdir /d && chmod 0555 /d \
         && mkfifo /fifo\n",
    );
    // Unpacking the layer's blob again would raise the modes and skip the FIFO: the tree
    // is intact all the same, since it packs to its diff-ID.
    b.lade.fsck_ok();
    let ro = tree_holding(&b.lade, "ro").join("ro");
    fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&ro, "hellO\n").unwrap();
    let report = b.lade.run(["fsck"]);
    assert!(!report.success(), "{}", report.stdout);
    b.lade.ok(["fsck", "--repair"]);
    b.lade.fsck_ok();
    let out = b.lade.ok(["run", "built", "--", "/bin/cat", "/ro"]);
    assert_eq!(out, "hello\n");
}

#[test]
fn an_unreadable_image_record_is_moved_aside_and_delete_then_works() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "a"]);
    lade.ok(["pull", &fixtures().oci("multi"), "b"]);
    let bad = lade.storage.join("images/bad.json");
    fs::write(&bad, "{\"name\": 3").unwrap();

    // Delete cannot know what the unreadable record keeps: it deletes nothing, and says why.
    let r = lade.run(["delete", "a"]);
    assert!(
        !r.stdout.contains("deleted"),
        "said deleted for a failed command: {}",
        r.stdout
    );
    let err = r.fails_one_line();
    assert!(
        err.contains("bad.json") && err.contains("fsck --repair"),
        "{err}"
    );
    assert!(lade.list().iter().any(|l| l.starts_with("a:")));

    let fsck = lade.run(["fsck"]);
    assert!(!fsck.success());
    let repaired = lade.ok(["fsck", "--repair"]);
    let aside = lade.storage.join("lost+found/images/bad.json");
    assert!(
        repaired.contains(&format!("to {}", aside.display())),
        "the report does not say where the record went:\n{repaired}"
    );
    assert_eq!(fs::read_to_string(&aside).unwrap(), "{\"name\": 3");
    assert!(!bad.exists());
    lade.fsck_ok();

    assert_eq!(lade.ok(["delete", "a"]), "deleted a:latest\n");
    lade.fsck_ok();
    assert_is_multi(&lade, "b");
}

#[test]
fn an_imported_image_can_be_undeleted_until_build_cache_gc() {
    let lade = Lade::new();
    let root = lade.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/motd"), "imported\n").unwrap();
    lade.ok([
        OsString::from("import"),
        root.into_os_string(),
        "imp:v1".into(),
    ]);
    let before = lade.ok(["list", "--format", "json", "imp:v1"]);
    lade.ok(["delete", "imp:v1"]);
    assert_eq!(lade.ok(["undelete", "imp:v1"]), "undeleted imp:v1\n");
    assert_eq!(lade.ok(["list", "--format", "json", "imp:v1"]), before);
    let out = lade.path("out");
    lade.ok([
        OsString::from("unpack"),
        "imp:v1".into(),
        out.clone().into_os_string(),
    ]);
    assert_eq!(
        fs::read_to_string(out.join("etc/motd")).unwrap(),
        "imported\n"
    );
    lade.fsck_ok();
    // build-cache --gc releases what a deleted import keeps.
    lade.ok(["delete", "imp:v1"]);
    lade.ok(["build-cache", "--gc"]);
    lade.run(["undelete", "imp:v1"]).fails_one_line();
    assert_eq!(
        fs::read_dir(lade.storage.join("layers")).unwrap().count(),
        0,
        "the deleted import's layer was kept"
    );
}

#[test]
fn list_as_json_of_a_missing_image_is_an_error() {
    let lade = Lade::new();
    lade.ok(["pull", &fixtures().oci("single"), "a"]);
    let r = lade.run(["list", "--format", "json", "nosuch"]);
    assert_eq!(r.stdout, "", "printed for a missing image: {}", r.stdout);
    let err = r.fails_one_line();
    assert!(err.contains("nosuch"), "{err}");
    // The JSON of an image that is there still parses.
    let v: serde_json::Value =
        serde_json::from_str(&lade.ok(["list", "--format", "json", "a"])).unwrap();
    assert_eq!(v["name"], "docker.io/library/a:latest");
}
