//! The build cache as a whole: `lade delete` keeps what the cache needs, `lade build-cache`
//! (summary, `--tree`, `--gc`, `--reset`), `lade undelete`, records from before parents were
//! kept, and concurrent builds on one store.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Writes a context directory `name` with `files` and the Dockerfile `df`.
fn context(lade: &Lade, name: &str, df: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = lade.path(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    for (rel, content) in files {
        fs::write(ctx.join(rel), content).unwrap();
    }
    ctx
}

fn build(lade: &Lade, tag: &str, ctx: &Path) -> Run {
    lade.run([
        "build".as_ref(),
        "-t".as_ref(),
        tag.as_ref(),
        ctx.as_os_str(),
    ])
}

#[track_caller]
fn build_ok(lade: &Lade, tag: &str, ctx: &Path) -> String {
    build(lade, tag, ctx).ok().stdout
}

fn unpacked_file(lade: &Lade, tag: &str, rel: &str) -> String {
    let dir = lade.path(format!("unpacked-{tag}-{}", rand::random::<u32>()));
    lade.ok(["unpack".as_ref(), tag.as_ref(), dir.as_os_str()]);
    let text = fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let _ = remove_tree(&dir);
    text
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn layer_trees(lade: &Lade) -> usize {
    count(&lade.storage.join("layers"))
}

fn states(lade: &Lade) -> usize {
    fs::read_dir(lade.storage.join("build-cache"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

const DF: &str = "FROM base\nRUN echo a > /a\nCOPY one /one\nRUN echo b > /b\nENV X=1\n";

#[test]
fn delete_then_rebuild_is_all_hits() {
    let lade = base_store();
    let ctx = context(&lade, "ctx", DF, &[("one", "1\n")]);
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "*....");
    let trees = layer_trees(&lade);
    lade.ok(["delete", "img"]);
    assert!(!lade.list().iter().any(|l| l.contains("img")));
    // The cache's layers stayed: nothing was collected but the image's own manifest/config.
    assert_eq!(layer_trees(&lade), trees);
    lade.fsck_ok();
    let again = build_ok(&lade, "img", &ctx);
    assert_eq!(marks(&again), "*****", "{again}");
    assert_eq!(unpacked_file(&lade, "img", "b"), "b\n");
    assert_eq!(unpacked_file(&lade, "img", "one"), "1\n");
    // Deleting the base image too: its layers are in the cache records as well.
    lade.ok(["delete", "*"]);
    lade.fsck_ok();
    lade.ok(["undelete", "base"]);
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "*****");
    lade.fsck_ok();
}

#[test]
fn tree_and_summary_show_the_states() {
    let lade = base_store();
    let a = context(
        &lade,
        "a",
        "FROM base\nRUN echo foo > /f\nRUN echo bar > /g\n",
        &[],
    );
    let c = context(
        &lade,
        "c",
        "FROM base\nRUN echo foo > /f\nRUN echo qux \\\n    > /g\n",
        &[],
    );
    build_ok(&lade, "a", &a);
    assert_eq!(marks(&build_ok(&lade, "c", &c)), "**.");
    let out = lade.ok(["build-cache", "--tree"]);
    let expected = "* FROM base:latest\n\
                    * RUN echo foo > /f\n\
                    |-* RUN echo bar > /g  (a:latest)\n\
                    `-* RUN echo qux > /g  (c:latest)\n";
    assert!(out.starts_with(expected), "{out}");
    assert!(out.contains("states:              3\n"), "{out}");
    assert!(out.contains("named images:        2\n"), "{out}");
    // Every layer is some image's: nothing is cache-only yet.
    assert!(out.contains("cache-only layers:   0\n"), "{out}");
    lade.ok(["delete", "c"]);
    let out = lade.ok(["build-cache", "--tree"]);
    assert!(
        out.contains("`-* RUN echo qux > /g  (deleted: c:latest)\n"),
        "{out}"
    );
    assert!(out.contains("named images:        1\n"), "{out}");
    assert!(out.contains("deleted images:      1"), "{out}");
    assert!(out.contains("cache-only layers:   1\n"), "{out}");
    // Without --tree: the summary only.
    let out = lade.ok(["build-cache"]);
    assert!(out.starts_with("states:"), "{out}");
}

#[test]
fn gc_frees_unreachable_states_and_keeps_named_ones() {
    let lade = base_store();
    let ctx = context(&lade, "ctx", DF, &[("one", "1\n")]);
    build_ok(&lade, "img", &ctx);
    let other = context(
        &lade,
        "other",
        "FROM base\nRUN echo o > /o\nRUN echo p > /p\n",
        &[],
    );
    build_ok(&lade, "other", &other);
    // A new version of one step: the old RUN echo b state (and its ENV child) is unreachable.
    fs::write(ctx.join("Dockerfile"), DF.replace("echo b", "echo B")).unwrap();
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "***..");
    // multi-stage: the first stage's states are kept through the link to its final state.
    let ms = context(
        &lade,
        "ms",
        "FROM base AS one\nRUN echo s > /s\nFROM base\nCOPY --from=one /s /t\n",
        &[],
    );
    build_ok(&lade, "ms", &ms);
    let before_states = states(&lade);
    let before_trees = layer_trees(&lade);
    lade.ok(["delete", "other"]);
    assert_eq!(
        layer_trees(&lade),
        before_trees,
        "delete kept the cache's layers"
    );

    let out = lade.ok(["build-cache", "--gc"]);
    // Dropped: RUN echo b and its ENV (2), other's two RUNs (2).
    assert!(
        out.contains("removed 4 states, "),
        "{out}\nbefore: {before_states}"
    );
    assert!(out.contains("forgot 1 deleted images"), "{out}");
    assert_eq!(states(&lade), before_states - 4);
    // Freed: the layers of echo b, echo o and echo p.
    assert_eq!(layer_trees(&lade), before_trees - 3);
    lade.fsck_ok();
    // Kept: the named images' states are still all hits; the dropped ones run again.
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "*****");
    assert_eq!(marks(&build_ok(&lade, "ms", &ms)), "****");
    assert_eq!(marks(&build_ok(&lade, "other", &other)), "*..");
    let err = lade.run(["undelete", "nothing"]).fails_one_line();
    assert!(err.contains("nothing"), "{err}");
    // A second gc has nothing to do.
    let out = lade.ok(["build-cache", "--gc"]);
    assert!(out.contains("removed 0 states, "), "{out}");
    assert!(out.contains(" and 0 layer trees"), "{out}");

    // --reset forgets every state and frees the layers only the cache used.
    lade.ok(["delete", "img"]);
    let out = lade.ok(["build-cache", "--reset"]);
    assert!(out.contains("states:              0\n"), "{out}");
    lade.fsck_ok();
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "*....");
}

#[test]
fn undelete_round_trip() {
    let lade = base_store();
    let ctx = context(&lade, "ctx", DF, &[("one", "1\n")]);
    build_ok(&lade, "img", &ctx);
    let record: Value =
        serde_json::from_str(&lade.ok(["list", "--format", "json", "img"])).unwrap();
    lade.ok(["delete", "img"]);
    let out = lade.ok(["undelete", "img"]);
    assert!(out.contains("undeleted img"), "{out}");
    let again: Value = serde_json::from_str(&lade.ok(["list", "--format", "json", "img"])).unwrap();
    assert_eq!(record, again, "the same image is back");
    assert_eq!(unpacked_file(&lade, "img", "one"), "1\n");
    lade.fsck_ok();
    // Its link to the cache is back too.
    let tree = lade.ok(["build-cache", "--tree"]);
    assert!(tree.contains("ENV X=1  (img:latest)"), "{tree}");

    // Refused: the name exists; and a name never deleted.
    let err = lade.run(["undelete", "img"]).fails_one_line();
    assert!(err.contains("exists"), "{err}");
    lade.run(["undelete", "never-was"]).fails_one_line();

    // A pulled image no build used: delete collects its layers, so it cannot come back.
    lade.ok(["pull", &fixtures().oci("single"), "lonely"]);
    lade.ok(["delete", "lonely"]);
    let err = lade.run(["undelete", "lonely"]).fails_one_line();
    assert!(err.contains("lonely"), "{err}");

    // After --gc, a deleted built image's states are released and it cannot come back.
    lade.ok(["delete", "img"]);
    lade.ok(["build-cache", "--gc"]);
    lade.run(["undelete", "img"]).fails_one_line();
    lade.fsck_ok();
}

#[test]
fn records_without_parents_still_hit_and_are_upgraded() {
    let lade = base_store();
    let ctx = context(&lade, "ctx", DF, &[("one", "1\n")]);
    build_ok(&lade, "img", &ctx);
    // Make every record look like the old format: state only.
    let dir = lade.storage.join("build-cache");
    for e in fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["parent", "instruction", "created"] {
                assert!(o.remove(k).is_some(), "{k} in {}", p.display());
            }
            fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        }
    }
    let tree = lade.ok(["build-cache", "--tree"]);
    assert!(
        tree.contains("(recorded before lade kept parents)"),
        "{tree}"
    );
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "*****");
    let tree = lade.ok(["build-cache", "--tree"]);
    assert!(!tree.contains("recorded before"), "{tree}");
    assert!(
        tree.starts_with("* FROM base:latest\n* RUN echo a > /a\n"),
        "{tree}"
    );
}

#[test]
fn concurrent_builds_delete_and_gc_on_one_store() {
    let lade = &base_store();
    // Overlapping Dockerfiles: the same first steps, then different ones.
    let df = |i: usize, extra: &str| {
        format!(
            "FROM base\nRUN echo shared > /shared\nCOPY one /one\nRUN echo {i} > /n\n\
             RUN dd if=/dev/zero of=/big bs=1024 count=64 2>/dev/null\n{extra}"
        )
    };
    let ctxs: Vec<PathBuf> = (0..3)
        .map(|i| context(lade, &format!("c{i}"), &df(i, ""), &[("one", "1\n")]))
        .collect();
    let check = |tags: &[&str]| {
        for (i, tag) in tags.iter().enumerate() {
            assert_eq!(unpacked_file(lade, tag, "n"), format!("{i}\n"));
            assert_eq!(unpacked_file(lade, tag, "shared"), "shared\n");
        }
        lade.fsck_ok();
    };

    // Cold cache: both builds run the shared steps at the same time and record the same keys.
    std::thread::scope(|s| {
        let jobs: Vec<_> = ctxs[..2]
            .iter()
            .enumerate()
            .map(|(i, ctx)| s.spawn(move || build(lade, &format!("img{i}"), ctx)))
            .collect();
        // A shared step may be a hit when the other build recorded it first: its key is the
        // same whichever build ran the step's parent.
        for j in jobs {
            let m = marks(&j.join().unwrap().ok().stdout);
            assert!(m.len() == 5 && m.starts_with('*') && &m[3..] == "..", "{m}");
        }
    });
    check(&["img0", "img1"]);

    // Builds with a new last step, concurrent with deleting an image and a cache gc.
    build_ok(lade, "victim", &ctxs[2]);
    for (i, ctx) in ctxs[..2].iter().enumerate() {
        fs::write(ctx.join("Dockerfile"), df(i, "RUN echo more > /more\n")).unwrap();
    }
    std::thread::scope(|s| {
        let jobs: Vec<_> = ctxs[..2]
            .iter()
            .enumerate()
            .map(|(i, ctx)| s.spawn(move || build(lade, &format!("img{i}"), ctx)))
            .chain([
                s.spawn(move || lade.run(["delete", "victim"])),
                s.spawn(move || lade.run(["build-cache", "--gc"])),
            ])
            .collect();
        for j in jobs {
            j.join().unwrap().ok();
        }
    });
    check(&["img0", "img1"]);
    assert_eq!(unpacked_file(lade, "img1", "more"), "more\n");
    assert!(!lade.list().iter().any(|l| l.contains("victim")));

    // Both again, at once, from a warm cache: all hits, the same layers.
    let layers = |t: &str| -> Value {
        let v: Value = serde_json::from_str(&lade.ok(["list", "--format", "json", t])).unwrap();
        v["layers"].clone()
    };
    let before = [layers("img0"), layers("img1")];
    std::thread::scope(|s| {
        let jobs: Vec<_> = ctxs[..2]
            .iter()
            .enumerate()
            .map(|(i, ctx)| s.spawn(move || build(lade, &format!("img{i}"), ctx)))
            .collect();
        for j in jobs {
            let r = j.join().unwrap().ok();
            assert_eq!(marks(&r.stdout), "******", "{}", r.stdout);
        }
    });
    assert_eq!([layers("img0"), layers("img1")], before);
    check(&["img0", "img1"]);
}

/// Identical files in two layers are two files, in `lade unpack` and in a container (see
/// "Identical files are not shared" in src/build/cache/mod.rs for why the store does not
/// share their inodes).
#[test]
fn identical_files_in_two_layers_stay_separate_files() {
    use std::os::unix::fs::MetadataExt;
    let lade = base_store();
    let ctx = context(
        &lade,
        "ctx",
        "FROM base\nCOPY f /x/f\nRUN echo 1 > /one\nCOPY f /y/f\n",
        &[("f", "same\n")],
    );
    build_ok(&lade, "d", &ctx);
    let dir = lade.path("u");
    lade.ok(["unpack".as_ref(), "d".as_ref(), dir.as_os_str()]);
    let (x, y) = (
        fs::metadata(dir.join("x/f")).unwrap(),
        fs::metadata(dir.join("y/f")).unwrap(),
    );
    assert_ne!(x.ino(), y.ino());
    assert_eq!((x.nlink(), y.nlink()), (1, 1));
    let out = lade.ok(["run", "d", "--", "stat", "-c", "%i %h", "/x/f", "/y/f"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_ne!(lines[0], lines[1], "{out}");
    assert!(lines.iter().all(|l| l.ends_with(" 1")), "{out}");
}

/// `lade fsck` checks the cache's records: one whose layer was removed behind lade's back is a
/// problem, which `--repair` (and `build-cache --gc`) removes; the step then runs again.
#[test]
fn fsck_checks_cache_records() {
    let lade = base_store();
    let ctx = context(&lade, "ctx", DF, &[("one", "1\n")]);
    build_ok(&lade, "img", &ctx);
    lade.ok(["delete", "img"]);
    lade.fsck_ok();
    // The layer of RUN echo b: the one tree holding /b.
    let layers = lade.storage.join("layers");
    let victim = fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("tree/b").exists())
        .unwrap()
        .path();
    remove_tree(&victim).unwrap();
    let out = lade.run(["fsck"]);
    assert!(!out.success());
    assert!(
        out.stdout.contains("build cache state ") && out.stdout.contains("missing layers"),
        "{}",
        out.stdout
    );
    let fixed = lade.ok(["fsck", "--repair"]);
    // RUN echo b and ENV X=1 after it both named that layer.
    assert_eq!(
        fixed.matches("removed build cache state").count(),
        2,
        "{fixed}"
    );
    lade.fsck_ok();
    assert_eq!(marks(&build_ok(&lade, "img", &ctx)), "***..");
    lade.fsck_ok();
}
