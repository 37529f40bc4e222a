//! Read-only stores (`--ro-storage`, `$LADE_RO_STORAGE`): a store one user filled and then
//! made read-only serves another store's `run`, `build FROM`, `copy`, `push`, `list` and
//! `pull` in place, and nothing is ever written or locked there.
//!
//! "Another user" is the same test user here (CI has one): the shared store is made
//! read-only with `chmod -R a-w` (which stops its owner's writes too) and its lock file
//! unreadable (so that any lock, even a shared one, fails), and a listing of every entry with
//! its mode, size and mtime must be the same after every command.

mod common;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use support::registry::Registry;

/// Every entry under `root` with its mode, size and mtime (to the nanosecond).
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        // Entries of a directory that can be read but not searched cannot be looked at:
        // nothing could write there either.
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            (m.mode(), m.size(), m.mtime(), m.mtime_nsec()),
        );
        // Layer trees keep the image's modes, 0000 directories included: not listed.
        if m.is_dir()
            && let Ok(entries) = fs::read_dir(&p)
        {
            todo.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    out
}

/// Makes the store `lade` read-only: its lock file unreadable, every entry without write
/// permission. Returns its snapshot.
fn freeze(lade: &Lade) -> Snapshot {
    let lock = lade.storage.join("lock");
    if lock.exists() {
        fs::set_permissions(&lock, fs::Permissions::from_mode(0o000)).unwrap();
    }
    let mut c = std::process::Command::new("chmod");
    c.args(["-R", "a-w"]).arg(&lade.storage);
    run_cmd(c).ok();
    snapshot(&lade.storage)
}

type Snapshot = BTreeMap<PathBuf, (u32, u64, i64, i64)>;

#[track_caller]
fn assert_untouched(shared: &Lade, before: &Snapshot) {
    assert!(
        snapshot(&shared.storage) == *before,
        "the read-only store changed"
    );
}

/// None of the user's blobs `own` is one the shared store has: nothing was copied.
#[track_caller]
fn assert_none_copied(own: &[String], shared: &Lade) {
    for blob in own {
        let theirs = shared.storage.join("blobs/sha256").join(blob);
        assert!(!theirs.exists(), "{blob} copied");
    }
}

/// A fresh store that uses `shared` as its read-only store.
struct Using<'a> {
    own: Lade,
    shared: &'a Lade,
}

impl Using<'_> {
    fn new(shared: &Lade) -> Using<'_> {
        Using {
            own: Lade::new(),
            shared,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut c = self.own.cmd();
        c.arg("--ro-storage").arg(&self.shared.storage).args(args);
        run_cmd(c)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok().stdout
    }

    /// The names of the entries of the user's store's directory `dir` (blobs/sha256, layers).
    fn own_entries(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.own.storage.join(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A store with the busybox fixture (`multi`) as `base` and `tool` built on it (one RUN
/// layer, an ENV).
fn filled_store() -> Lade {
    let b = BuildCtx::new();
    b.build_ok("tool", TOOL_DOCKERFILE);
    b.lade
}

const TOOL_DOCKERFILE: &str = "FROM base\nENV WHO=admin\nRUN echo made-in-a > /from-a\n";

#[test]
fn a_read_only_store_serves_run_build_copy_push_and_list_untouched() {
    let shared = filled_store();
    let tool_digest = stored_digest(&shared, "tool");
    let shared_layers = entries(&shared.storage.join("layers"));
    let before = freeze(&shared);
    let user = Using::new(&shared);

    // run: the image's config applies, the exit status comes back.
    let r = user.run(&[
        "run",
        "tool",
        "--",
        "/bin/sh",
        "-c",
        "cat /from-a; echo $WHO; exit 3",
    ]);
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    assert_eq!(r.stdout, "made-in-a\nadmin\n");

    // build FROM it: the new image is the user's, its base layers stay where they are.
    let ctx = user.own.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM tool\nRUN echo made-in-b > /from-b\n",
    )
    .unwrap();
    user.ok(&["build", "-t", "child", ctx.to_str().unwrap()]);
    let both = "cat /from-a /from-b; echo $WHO";
    let out = user.ok(&["run", "child", "--", "/bin/sh", "-c", both]);
    assert_eq!(out, "made-in-a\nmade-in-b\nadmin\n");
    let own_layers = user.own_entries("layers");
    assert_eq!(own_layers.len(), 1, "only the new layer: {own_layers:?}");
    assert!(!shared_layers.contains(&own_layers[0]));
    // Its layer blob, config and manifest; nothing of the shared store's.
    let own_blobs = user.own_entries("blobs/sha256");
    assert_eq!(own_blobs.len(), 3, "{own_blobs:?}");
    assert_none_copied(&own_blobs, &shared);

    // copy and push to OCI layouts: the same image, digest for digest, as skopeo sees it.
    let copied = format!("oci:{}:tool", user.own.path("copied").display());
    user.ok(&["copy", "lade:tool", &copied]);
    assert_eq!(skopeo_digest(&copied), tool_digest);
    let pushed = format!("oci:{}:tool", user.own.path("pushed").display());
    user.ok(&["push", "tool", &pushed]);
    assert_eq!(skopeo_digest(&pushed), tool_digest);

    // list: which store each image is in.
    let listed = user.ok(&["list"]);
    let shared_suffix = format!("[read-only: {}]", shared.storage.display());
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{name}:latest (")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listed}"))
            .to_string()
    };
    assert!(line("tool").ends_with(&shared_suffix), "{listed}");
    assert!(line("base").ends_with(&shared_suffix), "{listed}");
    assert!(!line("child").contains("read-only"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&user.ok(&["list", "--format", "json"])).unwrap();
    let store_of = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == format!("docker.io/library/{name}:latest"))
            .unwrap_or_else(|| panic!("{name} not in {json}"))["store"]
            .clone()
    };
    assert_eq!(store_of("tool")["read_only"], true);
    assert_eq!(store_of("tool")["path"], shared.storage.to_str().unwrap());
    assert_eq!(store_of("child")["read_only"], false);
    assert!(user.ok(&["list", "tool"]).contains("yes, read-only store"));
    let one: serde_json::Value =
        serde_json::from_str(&user.ok(&["list", "--format", "json", "tool"])).unwrap();
    assert_eq!(one["store"]["read_only"], true);
    let inspected: serde_json::Value =
        serde_json::from_str(&user.ok(&["inspect", "tool"])).unwrap();
    assert_eq!(inspected["Digest"], tool_digest.as_str());

    // Deleting a read-only image is refused; collecting in the user's store keeps what its
    // image needs and leaves the shared store alone.
    let e = user.run(&["delete", "tool"]).fails_one_line();
    assert!(e.contains("read-only store"), "{e}");
    user.ok(&["build-cache", "--reset"]);
    user.ok(&["build-cache", "--gc"]);
    assert_eq!(user.own_entries("layers"), own_layers);
    assert_eq!(user.own_entries("blobs/sha256"), own_blobs);
    let out = user.ok(&["run", "child", "--", "cat", "/from-b"]);
    assert_eq!(out, "made-in-b\n");
    user.ok(&["fsck"]);
    user.ok(&["delete", "child"]);
    assert!(user.own_entries("layers").is_empty());
    assert!(user.own_entries("blobs/sha256").is_empty());
    user.ok(&["run", "tool", "--", "true"]);
    // Rebuilt and deleted, its steps stay cached: only its own layer is space the cache
    // holds, not the read-only store's trees its records also name.
    user.ok(&["build", "-t", "child", ctx.to_str().unwrap()]);
    user.ok(&["delete", "child"]);
    let cache: serde_json::Value =
        serde_json::from_str(&user.ok(&["build-cache", "--format", "json"])).unwrap();
    assert_eq!(cache["summary"]["cache_only_layers"], 1, "{cache}");
    assert_eq!(user.own_entries("layers").len(), 1);

    // The admin's Dockerfile, built again by the user: every step a hit in the read-only
    // store's cache, no step run and no layer made.
    let again = user.own.path("again");
    fs::create_dir_all(&again).unwrap();
    fs::write(again.join("Dockerfile"), TOOL_DOCKERFILE).unwrap();
    let out = user.ok(&["build", "-t", "again", again.to_str().unwrap()]);
    assert_eq!(marks(&out), "***", "{out}");
    assert_eq!(user.own_entries("layers").len(), 1);
    let out = user.ok(&["run", "again", "--", "cat", "/from-a"]);
    assert_eq!(out, "made-in-a\n");

    assert_untouched(&shared, &before);
}

#[test]
fn a_pull_fetches_only_what_no_store_has() {
    let shared = Lade::new();
    shared.ok(["pull", &fixtures().oci("multi"), "bb"]);
    let before = freeze(&shared);
    // The freeze works: used as a store of its own, even read-only commands fail (the lock).
    shared.run(["list"]).fails_one_line();
    let user = Using::new(&shared);

    // Everything the image needs is in the shared store: only its name is recorded.
    user.ok(&["pull", &fixtures().oci("multi"), "mine"]);
    assert!(user.own_entries("blobs/sha256").is_empty());
    assert!(user.own_entries("layers").is_empty());
    assert_eq!(user.own_entries("images").len(), 1);
    let out = user.ok(&["run", "mine", "--", "/bin/sh", "-c", "echo ok"]);
    assert_eq!(out, "ok\n");
    assert!(
        !user
            .ok(&["list"])
            .lines()
            .any(|l| l.starts_with("mine:") && l.contains("read-only"))
    );

    // An image the shared store lacks: fetched into the user's store, but no blob twice.
    user.ok(&["pull", &fixtures().oci("single"), "other"]);
    let own = user.own_entries("blobs/sha256");
    assert!(!own.is_empty());
    assert_none_copied(&own, &shared);
    user.ok(&["run", "other", "--", "cat", "/etc/hostname"]);
    assert_untouched(&shared, &before);
}

/// The line of `lade list` about `name`, with `$LADE_RO_STORAGE` set to `stores`.
#[track_caller]
fn listed_line(user: &Lade, stores: &str, name: &str) -> String {
    let mut c = user.cmd();
    c.env("LADE_RO_STORAGE", stores).arg("list");
    let listed = run_cmd(c).ok().stdout;
    let start = format!("{name}:latest (");
    let line = listed.lines().find(|l| l.starts_with(&start));
    line.unwrap_or_else(|| panic!("{name} not listed:\n{listed}"))
        .to_string()
}

#[test]
fn stores_are_searched_user_first_then_in_order_also_from_the_environment() {
    let first = Lade::new();
    first.ok(["pull", &fixtures().oci("single"), "bb"]);
    let second = filled_store();
    second.ok(["pull", &fixtures().oci("multi"), "bb"]);
    let before = (freeze(&first), freeze(&second));
    let user = Lade::new();
    let joined = format!("{}:{}", first.storage.display(), second.storage.display());

    let in_shared = |store: &Lade| format!("  [read-only: {}]", store.storage.display());
    assert!(listed_line(&user, &joined, "bb").ends_with(&in_shared(&first)));
    assert!(listed_line(&user, &joined, "tool").ends_with(&in_shared(&second)));
    // /etc/hostname says which fixture runs: `single` (the first store's bb) or `multi`.
    let mut c = user.cmd();
    c.env("LADE_RO_STORAGE", &joined)
        .args(["run", "bb", "--", "cat", "/etc/hostname"]);
    assert_eq!(run_cmd(c).ok().stdout, "single\n");
    // The option wins over the variable, and orders the stores.
    let mut c = user.cmd();
    c.env("LADE_RO_STORAGE", "/nonexistent")
        .arg("--ro-storage")
        .arg(&second.storage)
        .arg("--ro-storage")
        .arg(&first.storage)
        .args(["run", "bb", "--", "cat", "/etc/hostname"]);
    assert_eq!(run_cmd(c).ok().stdout, "layer2\n");
    // The user's own image of that name comes first.
    user.ok(["pull", &fixtures().oci("multi"), "bb"]);
    assert!(!listed_line(&user, &joined, "bb").contains("read-only"));
    // Deleted, the read-only one shows again; undeleted, the user's is back in front.
    let ctx = user.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM bb\nRUN echo mine > /mine\n").unwrap();
    let with_stores = |args: &[&str]| {
        let mut c = user.cmd();
        c.env("LADE_RO_STORAGE", &joined).args(args);
        run_cmd(c).ok().stdout
    };
    with_stores(&["build", "-t", "tool", ctx.to_str().unwrap()]);
    assert!(!listed_line(&user, &joined, "tool").contains("read-only"));
    with_stores(&["delete", "tool"]);
    assert!(listed_line(&user, &joined, "tool").ends_with(&in_shared(&second)));
    with_stores(&["undelete", "tool"]);
    assert!(!listed_line(&user, &joined, "tool").contains("read-only"));
    assert_eq!(
        with_stores(&["run", "tool", "--", "cat", "/mine"]),
        "mine\n"
    );
    assert_eq!(
        (snapshot(&first.storage), snapshot(&second.storage)),
        before
    );
}

#[test]
fn a_missing_or_foreign_read_only_store_is_a_one_line_error() {
    let user = Lade::new();
    let missing = user.path("no-such-store");
    let mut c = user.cmd();
    c.arg("--ro-storage").arg(&missing).arg("list");
    let e = run_cmd(c).fails_one_line();
    assert!(
        e.contains(missing.to_str().unwrap()) && e.contains("does not exist"),
        "{e}"
    );

    let foreign = user.path("foreign");
    fs::create_dir_all(foreign.join("stuff")).unwrap();
    let mut c = user.cmd();
    c.arg("--ro-storage")
        .arg(&foreign)
        .args(["run", "x", "--", "true"]);
    let e = run_cmd(c).fails_one_line();
    assert!(e.contains("not a lade storage directory"), "{e}");

    let mut c = user.cmd();
    c.env("LADE_RO_STORAGE", "relative/store").arg("list");
    let e = run_cmd(c).fails_one_line();
    assert!(
        e.contains("LADE_RO_STORAGE") && e.contains("absolute"),
        "{e}"
    );
}

/// A SIF pulled over `oras://` into the shared store runs by its name from the user's: the
/// record and the file are read where they are.
#[test]
fn a_sif_pulled_into_a_read_only_store_runs_by_name() {
    let b = BuildCtx::new();
    let shared = &b.lade;
    b.file("hello", "hello from a SIF\n");
    b.build_ok("sifimg", "FROM base\nCOPY hello /hello\n");
    let sqfs = shared.path("img.sqfs");
    shared.ok([
        "copy",
        "lade:sifimg",
        &format!("squashfs:{}", sqfs.display()),
    ]);
    let sif = shared.path("img.sif");
    let bytes = lade::squashfs::sif::testing::sif_with(&fs::read(&sqfs).unwrap(), 2, 1);
    fs::write(&sif, bytes).unwrap();
    let reg = Registry::anonymous();
    let oras = format!("oras://{}", reg.image("lab/runme:1"));
    support::insecure(shared, &["copy", sif.to_str().unwrap(), &oras]).ok();
    support::insecure(shared, &["pull", &oras, "runme"]).ok();
    drop(reg);
    let before = freeze(shared);

    let user = Using::new(shared);
    let r = user.run(&["run", "runme", "--", "/bin/sh", "-c", "cat /hello; exit 5"]);
    assert_eq!(r.status.code(), Some(5), "{}", r.stderr);
    assert_eq!(r.stdout, "hello from a SIF\n");
    assert!(user.own_entries("blobs/sha256").is_empty());

    // Listed as the admin's, in every form; not the user's to delete.
    let dir = shared.storage.display().to_string();
    let line = user
        .ok(&["list"])
        .lines()
        .find(|l| l.starts_with("runme:latest [sif, "))
        .map(str::to_string);
    let line = line.unwrap_or_default();
    assert!(line.ends_with(&format!("]  [read-only: {dir}]")), "{line}");
    let long = user.ok(&["list", "-l"]);
    assert!(
        long.lines().any(|l| l.starts_with("runme:latest ")
            && l.contains(" [sif] ")
            && l.ends_with(&format!("{oras}  [read-only: {dir}]"))),
        "{long}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&user.ok(&["list", "--format", "json"])).unwrap();
    let sif = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "sif")
        .unwrap();
    assert_eq!(sif["name"], "docker.io/library/runme:latest");
    assert_eq!(sif["store"]["read_only"], true);
    assert_eq!(sif["store"]["path"], dir.as_str());
    let details = user.ok(&["list", "runme"]);
    assert!(
        details.contains(&format!(
            "in local storage:    yes, read-only store {dir}\n"
        )),
        "{details}"
    );
    for pattern in ["runme", "run*"] {
        let e = user.run(&["delete", pattern]).fails_one_line();
        assert!(
            e.ends_with(&format!(
                "SIF runme:latest: is in the read-only store {dir}, which lade never changes"
            )),
            "{e}"
        );
    }
    // gestalt names the read-only stores in use, in each form.
    let gestalt = user.ok(&["gestalt"]);
    assert!(
        gestalt.contains(&format!("\nro-storage       {dir}\n")),
        "{gestalt}"
    );
    assert_eq!(user.ok(&["gestalt", "ro-storage"]), format!("{dir}\n"));
    let gestalt: serde_json::Value =
        serde_json::from_str(&user.ok(&["gestalt", "--format", "json"])).unwrap();
    assert_eq!(gestalt["ro-storage"], serde_json::json!([dir]));
    assert_eq!(
        user.own.ok(["gestalt", "--format", "json", "ro-storage"]),
        "[]\n"
    );
    assert_untouched(shared, &before);
}

#[test]
fn signatures_kept_in_a_read_only_store_verify_for_the_user_who_adds_their_own() {
    use support::trust::{keygen, lade_pw};
    const PW: &str = "pw";
    let shared = Lade::new();
    let keys = shared.path("keys");
    fs::create_dir_all(&keys).unwrap();
    let (admin_key, admin_pub) = keygen(&shared, &keys, "admin", PW);
    let (user_key, user_pub) = keygen(&shared, &keys, "user", PW);
    let [admin_key, admin_pub, user_key, user_pub] =
        [&admin_key, &admin_pub, &user_key, &user_pub].map(|p| p.to_str().unwrap().to_string());
    shared.ok(["pull", &fixtures().oci("single"), "signed"]);
    lade_pw(
        &shared,
        PW,
        &["sign", "--bundle", "--key", &admin_key, "lade:signed"],
    )
    .ok();
    let before = freeze(&shared);
    let user = Using::new(&shared);
    let ro = shared.storage.to_str().unwrap();
    let verify = |key: &str| user.run(&["verify", "--key", key, "lade:signed"]);

    // The admin's signature and bundle verify for the user; the user's key finds nothing yet.
    let out = verify(&admin_pub).ok().stdout;
    assert!(
        out.contains("cosign signature") && out.contains("sigstore bundle"),
        "{out}"
    );
    let err = verify(&user_pub).fails_one_line();
    assert!(err.contains("no signature verifies"), "{err}");

    // The user signs too: written to the user's store, beside the admin's signature.
    lade_pw(
        &user.own,
        PW,
        &[
            "--ro-storage",
            ro,
            "sign",
            "--key",
            &user_key,
            "lade:signed",
        ],
    )
    .ok();
    assert!(user.own.storage.join("attachments").is_dir());
    // A collection in the user's store keeps the user's signature of the admin's image.
    user.ok(&["pull", &fixtures().oci("multi"), "other"]);
    user.ok(&["delete", "other"]);
    for key in [&admin_pub, &user_pub] {
        let out = verify(key).ok().stdout;
        assert!(out.contains("cosign signature"), "{out}");
    }
    // And `copy --all` takes both along, the admin's bundle with them.
    let layout = user.own.path("layout");
    let oci = format!("oci:{}:x", layout.display());
    user.ok(&["copy", "--all", "lade:signed", &oci]);
    for key in [&admin_pub, &user_pub] {
        user.ok(&["verify", "--key", key, &oci]);
    }
    assert!(
        user.ok(&["verify", "--key", &admin_pub, &oci])
            .contains("sigstore bundle")
    );
    user.ok(&["fsck"]);
    assert_untouched(&shared, &before);
}
