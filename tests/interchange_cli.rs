//! What scripts and shells expect of lade's command line: completion scripts that complete,
//! manual pages that `man` renders, and `--format json` output with the fields the README's
//! schema promises (parsed with serde_json here, fields checked, not just "it parses").

mod common;

use std::process::Command;

use common::*;

/// The bash script, sourced into a real bash, completes `lade pu<TAB>` to pull and push, and
/// the options of a subcommand.
#[test]
fn bash_completion_completes_subcommands_and_options() {
    let lade = Lade::new();
    let script = lade.path("lade.bash");
    std::fs::write(&script, lade.ok(["completion", "bash"])).unwrap();
    let complete = |words: &[&str]| -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let words = words.join(" ");
        let mut c = Command::new("bash");
        c.arg("--norc").arg("-c").arg(format!(
            r#"source "$1" || exit 9
COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_lade lade "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
        ));
        c.arg("bash").arg(&script);
        let out = run_cmd(c).ok().stdout;
        out.lines().map(str::to_string).collect()
    };
    let mut subs = complete(&["lade", "pu"]);
    subs.sort();
    assert_eq!(subs, ["pull", "push"]);
    let opts = complete(&["lade", "list", "--f"]);
    assert_eq!(opts, ["--format"], "{opts:?}");
    assert!(complete(&["lade", "list", "--format", ""]).contains(&"json".to_string()));
    // The other shells' scripts are generated too, and name the commands.
    for shell in ["zsh", "fish"] {
        let s = lade.ok(["completion", shell]);
        assert!(
            s.contains("build-cache") && s.contains("pull"),
            "{shell}: {s}"
        );
    }
    let err = lade.run(["completion", "tcsh"]).fails();
    assert!(
        err.contains("'tcsh'") && err.contains("bash, zsh, fish"),
        "{err}"
    );
}

/// `lade man --output DIR` writes one page per command, and `man -l` renders them.
#[test]
fn man_renders_the_generated_pages() {
    let lade = Lade::new();
    let dir = lade.path("man/man1");
    lade.run(["man", "--output", dir.to_str().unwrap()]).ok();
    for page in ["lade.1", "lade-pull.1", "lade-copy.1", "lade-build.1"] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    assert!(
        !dir.join("lade-build-run-step.1").exists(),
        "hidden command documented"
    );
    let render = |page: &str| {
        let mut c = Command::new("man");
        c.arg("-l").arg(dir.join(page));
        c.env("MANPAGER", "cat").env("MANWIDTH", "100");
        run_cmd(c).ok().stdout
    };
    let top = render("lade.1");
    assert!(top.contains("NAME") && top.contains("SYNOPSIS"), "{top}");
    assert!(top.contains("--storage"), "{top}");
    let pull = render("lade-pull.1");
    assert!(
        pull.contains("lade-pull") && pull.contains("--parse-only"),
        "{pull}"
    );
    // Without --output: the top page on standard output, the same as the file.
    let stdout = lade.ok(["man"]);
    assert_eq!(stdout, std::fs::read_to_string(dir.join("lade.1")).unwrap());
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `lade inspect` agrees with `skopeo inspect` field for field on the same image (an OCI
/// layout), and on a stored copy; `--raw` and `--config` print bytes whose digests are the
/// manifest's and the image ID.
#[test]
fn inspect_agrees_with_skopeo() {
    let f = fixtures();
    let lade = Lade::new();
    let image = f.oci("multi");
    let mut c = Command::new("skopeo");
    c.args(["inspect", &image]);
    let theirs = json(&run_cmd(c).ok().stdout);
    let ours = json(&lade.ok(["inspect", &image]));
    for field in [
        "Digest",
        "RepoTags",
        "Created",
        "DockerVersion",
        "Architecture",
        "Os",
        "Layers",
        "Env",
        "Labels",
    ] {
        assert_eq!(
            ours[field], theirs[field],
            "{field}: ours {ours} theirs {theirs}"
        );
    }
    // LayersData (skopeo 1.10+) describes each layer as its manifest does.
    let layers = ours["LayersData"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    for (l, d) in layers.iter().zip(ours["Layers"].as_array().unwrap()) {
        assert_eq!(&l["Digest"], d);
        assert!(l["Size"].as_u64().unwrap() > 0);
        assert_eq!(l["MIMEType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    }
    let raw = lade.run(["inspect", "--raw", &image]).ok().stdout;
    assert_eq!(sha256(raw.as_bytes()), ours["Digest"].as_str().unwrap());
    let config = lade
        .run(["inspect", "--config", "--raw", &image])
        .ok()
        .stdout;
    assert_eq!(sha256(config.as_bytes()), ours["ImageID"].as_str().unwrap());
    let parsed = json(&lade.ok(["inspect", "--config", &image]));
    assert_eq!(parsed["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    // A stored image (a bare name) describes itself the same way, with its name.
    lade.ok(["pull", &image, "local/multi:2"]);
    let stored = json(&lade.ok(["inspect", "local/multi:2"]));
    assert_eq!(stored["Digest"], ours["Digest"]);
    assert_eq!(stored["ImageID"], ours["ImageID"]);
    assert_eq!(stored["Name"], "docker.io/local/multi");
    assert_eq!(stored["RepoTags"], serde_json::json!(["local/multi:2"]));
    let text = lade.ok(["inspect", "--format", "text", "local/multi:2"]);
    assert!(text.contains("platform:      linux/amd64"), "{text}");
    let err = lade.run(["inspect", "nosuch:1"]).fails_one_line();
    assert!(err.contains("nosuch"), "{err}");
}

/// `--format json` of `list`, `fsck`, `build-cache` and `gestalt`: the fields the README's
/// schema names, with the values the text form shows.
#[test]
fn json_formats_carry_the_documented_fields() {
    let f = fixtures();
    let lade = Lade::new();
    lade.ok(["pull", &f.oci("single"), "one"]);
    let listed = json(&lade.ok(["list", "--format", "json"]));
    let rec = &listed.as_array().unwrap()[0];
    assert_eq!(rec["name"], "docker.io/library/one:latest");
    assert_eq!(rec["kind"], "image");
    assert_eq!(rec["platform"], "linux/amd64");
    assert_eq!(rec["source"], f.oci("single").as_str());
    assert!(rec["manifest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(rec["layers"].as_array().unwrap().len(), 1);
    let fsck = json(&lade.ok(["fsck", "--format", "json"]));
    assert_eq!(fsck["clean"], true);
    assert_eq!(fsck["images_checked"], 1);
    assert_eq!(fsck["trees_checked"], 1);
    assert_eq!(fsck["problems"], serde_json::json!([]));
    // A flipped blob: a problem named, and the exit status says so, as in text.
    let layer = rec["layers"][0]["blob"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let path = lade.storage.join("blobs/sha256").join(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let r = lade.run(["fsck", "--format", "json"]);
    assert!(!r.success());
    let fsck = json(&r.stdout);
    assert_eq!(fsck["clean"], false);
    assert!(
        fsck["problems"][0].as_str().unwrap().contains(layer),
        "{fsck}"
    );
    let cache = json(&lade.ok(["build-cache", "--format", "json"]));
    assert_eq!(cache["summary"]["states"], 0);
    assert_eq!(cache["gc"], serde_json::Value::Null);
    let gc = json(&lade.ok(["build-cache", "--gc", "--format", "json"]));
    assert_eq!(gc["gc"]["states_removed"], 0);
    assert!(gc["summary"]["cache_only_bytes"].is_u64());
    let gestalt = json(&lade.ok(["gestalt", "--format", "json"]));
    assert_eq!(gestalt["storage-path"], lade.storage.to_str().unwrap());
    assert_eq!(gestalt["ro-storage"], serde_json::json!([]));
    assert_eq!(
        gestalt["storage-version"],
        lade.ok(["gestalt", "storage-version"]).trim()
    );
    assert_eq!(
        json(&lade.ok(["gestalt", "--format", "json", "arch"])),
        gestalt["arch"]
    );
}
