//! ORAS artifacts and SIF over `oras://` (issue 15), against the Python ORAS client (oras-py,
//! in the venv tests/run-all.sh makes) and Debian's Distribution 2.8 registry, which has no
//! referrers API: attachments go through the tag-schema fallback index, and several concurrent
//! `lade artifact attach` processes must not lose each other's entries.

mod common;
mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use support::insecure;
use support::proxy::{Action, Proxy};
use support::registry::Registry;
use support::trust::{OCI_MANIFEST, push_single, registry_get};

/// oras-py: `push HOST/REPO:TAG FILE[:TYPE]… [ANNOTATION_FILE]` (run in the files' directory,
/// as oras-py wants relative paths) or `pull HOST/REPO:TAG OUTDIR`.
const PY_ORAS: &str = r#"
import sys, oras.client
op, target = sys.argv[1], sys.argv[2]
c = oras.client.OrasClient(insecure=True)
if op == "push":
    files = [a for a in sys.argv[3:] if not a.endswith(".json")]
    ann = [a for a in sys.argv[3:] if a.endswith(".json")]
    r = c.push(target=target, files=files, annotation_file=ann[0] if ann else None)
    print(r.status_code)
else:
    for f in c.pull(target=target, outdir=sys.argv[3]):
        print(f)
"#;

fn oras_py(cwd: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(support::trust::python());
    c.arg("-c").arg(PY_ORAS).args(args).current_dir(cwd);
    run_cmd(c)
}

#[test]
fn oras_py_and_lade_exchange_files() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let work = lade.path("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("data.txt"), "from python\n").unwrap();
    fs::write(
        work.join("blob.bin"),
        (0..=255u8).cycle().take(300_000).collect::<Vec<_>>(),
    )
    .unwrap();

    // oras-py pushes, lade pulls.
    let py = reg.image("lab/from-py:1");
    oras_py(&work, &["push", &py, "data.txt", "blob.bin"]).ok();
    let out = lade.path("out");
    let listed = insecure(&lade, &["artifact", "pull", &py, out.to_str().unwrap()])
        .ok()
        .stdout;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    for f in ["data.txt", "blob.bin"] {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(work.join(f)).unwrap()
        );
    }
    // lade pull says what it is and how to fetch it, before any tar error.
    let err = insecure(&lade, &["pull", &py, "x"]).fails_one_line();
    assert!(
        err.contains("not a container image but an OCI artifact")
            && err.contains(&format!("lade artifact pull {py}")),
        "{err}"
    );

    // lade pushes (OCI 1.1 packing), oras-py pulls.
    let ours = reg.image("lab/from-lade:1");
    insecure(
        &lade,
        &[
            "artifact",
            "push",
            "--artifact-type",
            "application/vnd.example.data",
            &ours,
            work.join("data.txt").to_str().unwrap(),
            &format!(
                "{}:application/octet-stream",
                work.join("blob.bin").display()
            ),
        ],
    )
    .ok();
    let m: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        "/v2/lab/from-lade/manifests/1",
        OCI_MANIFEST,
    ))
    .unwrap();
    assert_eq!(m["artifactType"], "application/vnd.example.data");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["layers"][1]["mediaType"], "application/octet-stream");
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "data.txt"
    );
    let py_out = lade.path("py-out");
    fs::create_dir_all(&py_out).unwrap();
    oras_py(&work, &["pull", &ours, py_out.to_str().unwrap()]).ok();
    for f in ["data.txt", "blob.bin"] {
        assert_eq!(
            fs::read(py_out.join(f)).unwrap(),
            fs::read(work.join(f)).unwrap()
        );
    }
}

#[test]
fn titles_that_climb_out_are_refused() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let work = lade.path("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("a.txt"), "a\n").unwrap();
    for (n, title) in ["../escape.txt", "/tmp/absolute.txt"].iter().enumerate() {
        fs::write(
            work.join("ann.json"),
            serde_json::json!({"a.txt": {"org.opencontainers.image.title": title}}).to_string(),
        )
        .unwrap();
        let target = reg.image(&format!("lab/evil:{n}"));
        oras_py(&work, &["push", &target, "a.txt", "ann.json"]).ok();
        let out = lade.path(format!("out{n}"));
        let err =
            insecure(&lade, &["artifact", "pull", &target, out.to_str().unwrap()]).fails_one_line();
        assert!(
            err.contains(title) && err.contains("refus") || err.contains("climbs out"),
            "{err}"
        );
        assert!(!lade.path("escape.txt").exists() && !out.exists());
    }
}

#[test]
fn refused_oci_1_1_manifests_fall_back_to_1_0_packing() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    // The first manifest PUT is refused, as by a registry that does not know OCI 1.1 fields.
    proxy.set_rule(|h, nth| {
        if h.method == "PUT" && h.path().contains("/manifests/") && nth == 0 {
            Action::Status(
                400,
                vec![("Content-Type".into(), "application/json".into())],
                r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#.into(),
            )
        } else {
            Action::Forward
        }
    });
    let lade = Lade::new();
    let file = lade.path("f.txt");
    fs::write(&file, "x\n").unwrap();
    let target = format!("{}/lab/old:1", proxy.host());
    let r = insecure(
        &lade,
        &[
            "artifact",
            "push",
            "--artifact-type",
            "application/vnd.example.old",
            &target,
            file.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(r.stderr.contains("OCI 1.0 packing"), "{}", r.stderr);
    let m: serde_json::Value =
        serde_json::from_slice(&registry_get(&reg, "/v2/lab/old/manifests/1", OCI_MANIFEST))
            .unwrap();
    assert_eq!(m["config"]["mediaType"], "application/vnd.example.old");
    assert!(m.get("artifactType").is_none(), "{m}");
    let out = lade.path("out");
    insecure(&lade, &["artifact", "pull", &target, out.to_str().unwrap()]).ok();
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"x\n");
}

#[test]
fn concurrent_attaches_lose_no_fallback_index_entry() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let subject = push_single(&reg, "lab/subject:1");
    const N: usize = 6;
    let mut children = Vec::new();
    for i in 0..N {
        let f = lade.path(format!("sbom-{i}.json"));
        fs::write(&f, format!("{{\"n\":{i}}}\n")).unwrap();
        let mut c = lade.cmd();
        c.args([
            "--tls-no-verify",
            "artifact",
            "attach",
            "--subject",
            &subject,
        ])
        .args(["--artifact-type", "application/spdx+json"])
        .arg(&f)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        children.push(c.spawn().unwrap());
    }
    let mut attached = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        attached.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    let listed = insecure(&lade, &["artifact", "list", &subject]).ok().stdout;
    for d in &attached {
        assert!(listed.contains(d.as_str()), "{d} lost:\n{listed}");
    }
    assert_eq!(listed.lines().count(), N, "{listed}");
    // The fallback index is what holds them (Distribution 2.8 has no referrers API).
    let hex = support::layout_digest(&fixtures().layout(), "single");
    let index: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        &format!("/v2/lab/subject/manifests/sha256-{}", &hex[7..]),
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), N);
}

/// Bytes no compressor or deduplication makes small, `n` of them.
fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The blob `digest` of an OCI layout, hashed here (not by lade).
fn layout_blob_digest(layout: &Path, digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').unwrap();
    sha256(&fs::read(layout.join("blobs").join(alg).join(hex)).unwrap())
}

#[test]
fn copy_all_streams_attachments_of_any_size_and_skips_what_is_there() {
    let reg = Registry::anonymous();
    let proxy = Proxy::start(reg.port);
    let lade = Lade::new();
    push_single(&reg, "lab/big:1");
    let subject = format!("{}/lab/big:1", proxy.host());
    let hex = &support::layout_digest(&fixtures().layout(), "single")[7..];
    let work = lade.path("work");
    fs::create_dir_all(&work).unwrap();
    // A referrer (lade's attach, through the fallback index) and a tag-schema SBOM (pushed by
    // oras-py), each bigger than the 4 MiB lade reads into memory.
    let big = incompressible(20 << 20, 1);
    let sbom = incompressible(6 << 20, 2);
    fs::write(work.join("big.bin"), &big).unwrap();
    fs::write(work.join("sbom.spdx"), &sbom).unwrap();
    let (big_digest, sbom_digest) = (sha256(&big), sha256(&sbom));
    insecure(
        &lade,
        &[
            "artifact",
            "attach",
            "--subject",
            &subject,
            "--artifact-type",
            "application/vnd.example.big",
            work.join("big.bin").to_str().unwrap(),
        ],
    )
    .ok();
    let sbom_tag = format!("sha256-{hex}.sbom");
    oras_py(
        &work,
        &[
            "push",
            &reg.image(&format!("lab/big:{sbom_tag}")),
            "sbom.spdx",
        ],
    )
    .ok();

    // registry → oci: layout: both blobs whole, as hashed here.
    let layout = lade.path("layout");
    let oci = format!("oci:{}:x", layout.display());
    let r = insecure(
        &lade,
        &["copy", "--all", &format!("docker://{subject}"), &oci],
    )
    .ok();
    assert!(
        r.stderr.contains("1 other tags, 1 referrers"),
        "{}",
        r.stderr
    );
    for d in [&big_digest, &sbom_digest] {
        assert_eq!(&layout_blob_digest(&layout, d), d);
    }
    // Again: nothing is fetched that the layout has (no GET of either big blob).
    proxy.clear();
    insecure(
        &lade,
        &["copy", "--all", &format!("docker://{subject}"), &oci],
    )
    .ok();
    let refetched: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| {
            l.method == "GET" && (l.path.ends_with(&big_digest) || l.path.ends_with(&sbom_digest))
        })
        .collect();
    assert!(refetched.is_empty(), "{}", proxy.dump());

    // registry → store, store → another repository; oras-py reads the copies back.
    insecure(
        &lade,
        &["copy", "--all", &format!("docker://{subject}"), "lade:big"],
    )
    .ok();
    for d in [&big_digest, &sbom_digest] {
        let stored = lade.storage.join("blobs/sha256").join(&d[7..]);
        assert_eq!(&sha256(&fs::read(stored).unwrap()), d);
    }
    let copy = reg.image("lab/copy:1");
    insecure(
        &lade,
        &["copy", "--all", "lade:big", &format!("docker://{copy}")],
    )
    .ok();
    let index: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        &format!("/v2/lab/copy/manifests/sha256-{hex}"),
        support::OCI_INDEX,
    ))
    .unwrap();
    let referrer = index["manifests"][0]["digest"].as_str().unwrap();
    for (target, file, want) in [
        (reg.image(&format!("lab/copy@{referrer}")), "big.bin", &big),
        (
            reg.image(&format!("lab/copy:{sbom_tag}")),
            "sbom.spdx",
            &sbom,
        ),
    ] {
        let out = lade.path(format!("py-{file}"));
        fs::create_dir_all(&out).unwrap();
        oras_py(&work, &["pull", &target, out.to_str().unwrap()]).ok();
        assert!(fs::read(out.join(file)).unwrap() == *want, "{file} differs");
    }

    // A corrupt source blob is refused, in one line naming it.
    let (alg, big_hex) = big_digest.split_once(':').unwrap();
    let path = layout.join("blobs").join(alg).join(big_hex);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10 << 20] ^= 1;
    fs::write(&path, bytes).unwrap();
    let other = Lade::new();
    let err = other
        .run(["copy", "--all", &oci, "lade:corrupt"])
        .fails_one_line();
    assert!(err.contains(big_hex), "{err}");
}

/// A SIF file laid out as the format's reference implementation writes one, holding `body`
/// as its partition (not a root filesystem: moving a SIF does not look inside).
fn fake_sif(path: &Path, body: &str) {
    fs::write(
        path,
        lade::squashfs::sif::testing::sif_with(body.as_bytes(), 2, 1),
    )
    .unwrap();
}

#[test]
fn sif_files_go_over_oras_as_apptainer_packs_them() {
    let reg = Registry::anonymous();
    let lade = Lade::new();
    let work = lade.path("work");
    fs::create_dir_all(&work).unwrap();
    let sif = work.join("tool.sif");
    fake_sif(&sif, "payload-1");
    let target = reg.image("lab/tool:1.0");
    insecure(
        &lade,
        &["copy", sif.to_str().unwrap(), &format!("oras://{target}")],
    )
    .ok();
    let m: serde_json::Value = serde_json::from_slice(&registry_get(
        &reg,
        "/v2/lab/tool/manifests/1.0",
        OCI_MANIFEST,
    ))
    .unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.sylabs.sif.config.v1+json"
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.sylabs.sif.layer.v1.sif"
    );
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "tool.sif"
    );
    // oras-py fetches it as a file; lade fetches it back the same.
    let py_out = lade.path("py");
    fs::create_dir_all(&py_out).unwrap();
    oras_py(&work, &["pull", &target, py_out.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read(py_out.join("tool.sif")).unwrap(),
        fs::read(&sif).unwrap()
    );
    let back = lade.path("back.sif");
    insecure(
        &lade,
        &["copy", &format!("oras://{target}"), back.to_str().unwrap()],
    )
    .ok();
    assert_eq!(fs::read(&back).unwrap(), fs::read(&sif).unwrap());
    // Into the store, where a later run finds it.
    let out = insecure(&lade, &["pull", &format!("oras://{target}"), "tool"]).ok();
    let stored = out
        .stderr
        .split("SIF file ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(')');
    assert_eq!(fs::read(stored).unwrap(), fs::read(&sif).unwrap());
    // A SIF whose partition is no root filesystem is kept, but does not run: the error
    // names the image.
    let err = insecure(&lade, &["run", "tool", "--", "/bin/true"]).fails_one_line();
    assert!(err.contains("image tool:latest (SIF sha256:"), "{err}");
    assert!(err.contains("SquashFS"), "{err}");
    // `lade pull` without oras:// says how.
    let err = insecure(&lade, &["pull", &target, "x"]).fails_one_line();
    assert!(err.contains(&format!("lade pull oras://{target}")), "{err}");
    // A file that is not a SIF is not pushed.
    let not = work.join("not.sif");
    fs::write(&not, "plain text").unwrap();
    let err = insecure(
        &lade,
        &["copy", not.to_str().unwrap(), &format!("oras://{target}")],
    )
    .fails_one_line();
    assert!(err.contains("not a SIF"), "{err}");

    // The legacy, misspelled layer type of Singularity < 3.7, pushed by oras-py.
    let old = work.join("old.sif");
    fake_sif(&old, "payload-legacy");
    let legacy = reg.image("lab/legacy:1");
    oras_py(
        &work,
        &[
            "push",
            &legacy,
            "old.sif:appliciation/vnd.sylabs.sif.layer.tar",
        ],
    )
    .ok();
    let got = lade.path("legacy.sif");
    insecure(
        &lade,
        &["copy", &format!("oras://{legacy}"), got.to_str().unwrap()],
    )
    .ok();
    assert_eq!(fs::read(&got).unwrap(), fs::read(&old).unwrap());
    // Two files are not a SIF image.
    let two = reg.image("lab/two:1");
    oras_py(&work, &["push", &two, "old.sif", "tool.sif"]).ok();
    let err = insecure(
        &lade,
        &[
            "copy",
            &format!("oras://{two}"),
            lade.path("t.sif").to_str().unwrap(),
        ],
    )
    .fails_one_line();
    assert!(err.contains("single layer"), "{err}");
    // Nor are they, or a file of another type, or nothing, run; nothing is stored.
    let data = reg.image("lab/data:1");
    oras_py(&work, &["push", &data, "not.sif"]).ok();
    for (image, why) in [
        (data, "is not a SIF"),
        (two, "single layer"),
        (reg.image("lab/none:1"), "lab/none"),
    ] {
        let err = insecure(
            &lade,
            &["run", &format!("oras://{image}"), "--", "/bin/true"],
        )
        .fails_one_line();
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(
        fs::read_dir(lade.storage.join("single-files"))
            .unwrap()
            .count(),
        1,
        "only the SIF pulled as tool"
    );
}

/// A real SIF (its primary partition a SquashFS file `lade copy` wrote from a built image, so
/// that the image's config is inside) pushed with `lade copy FILE.sif oras://`, then run by
/// the name it was pulled as and by `oras://REF`, with the image's environment and the
/// command's exit status; a stored image keeps its name; what is not a SIF is refused.
#[test]
fn sif_images_pulled_over_oras_run_by_name_and_by_reference() {
    let b = BuildCtx::new();
    let lade = &b.lade;
    b.file("hello", "hello from a SIF\n");
    b.build_ok(
        "sifimg",
        "FROM base\nENV GREETING=set-in-the-image\nCOPY hello /hello\n",
    );
    let sqfs = lade.path("img.sqfs");
    lade.ok([
        "copy",
        "lade:sifimg",
        &format!("squashfs:{}", sqfs.display()),
    ]);
    let sif = lade.path("img.sif");
    fs::write(
        &sif,
        lade::squashfs::sif::testing::sif_with(&fs::read(&sqfs).unwrap(), 2, 1),
    )
    .unwrap();
    let reg = Registry::anonymous();
    let target = reg.image("lab/runme:1");
    let oras = format!("oras://{target}");
    insecure(lade, &["copy", sif.to_str().unwrap(), &oras]).ok();
    let script = "cat /hello; echo $GREETING; exit 7";

    // By the name it was pulled as.
    insecure(lade, &["pull", &oras, "runme"]).ok();
    let r = lade.run(["run", "runme", "--", "/bin/sh", "-c", script]);
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);
    assert_eq!(r.stdout, "hello from a SIF\nset-in-the-image\n");
    // A stored image of the same name wins over the SIF.
    insecure(lade, &["pull", &oras, "base"]).ok();
    let out = lade.ok([
        "run",
        "base",
        "--",
        "/bin/sh",
        "-c",
        "echo ${GREETING:-unset}",
    ]);
    assert_eq!(out, "unset\n");

    // By reference, into a store that does not have it yet: pulled, then run.
    let fresh = Lade::new();
    let r = insecure(&fresh, &["run", &oras, "--", "/bin/sh", "-c", script]);
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);
    assert_eq!(r.stdout, "hello from a SIF\nset-in-the-image\n");
    assert!(
        r.stderr.contains(&format!("pulling {oras}")),
        "{}",
        r.stderr
    );
    // Kept under REF: the next run (and `lade run REF`) needs no registry.
    drop(reg);
    let r = fresh.run(["run", &oras, "--", "/bin/sh", "-c", script]);
    assert_eq!(r.status.code(), Some(7), "{}", r.stderr);
    assert_eq!(r.stdout, "hello from a SIF\nset-in-the-image\n");
    assert!(!r.stderr.contains("pulling"), "{}", r.stderr);
    let out = fresh.ok(["run", &target, "--", "/bin/cat", "/hello"]);
    assert_eq!(out, "hello from a SIF\n");
}

/// The management commands see stored SIFs: `list` in its text, long and JSON forms (and for
/// one name), beside an image of the same name, which `run NAME` runs first; `fsck` checks
/// their files; `delete` takes them by glob, and the collection after it frees a file once no
/// record names it, after which `run NAME` says the name is unknown. A deleted SIF is not
/// kept for `undelete` (nothing but its record keeps its file).
#[test]
fn stored_sifs_are_listed_checked_and_deleted() {
    let lade = base_store();
    let reg = Registry::anonymous();
    let sif = lade.path("tool.sif");
    fake_sif(&sif, "payload-for-list");
    let bytes = fs::read(&sif).unwrap();
    let (size, digest) = (bytes.len() as u64, sha256(&bytes));
    let oras = format!("oras://{}", reg.image("lab/tool:1.0"));
    insecure(&lade, &["copy", sif.to_str().unwrap(), &oras]).ok();
    insecure(&lade, &["pull", &oras, "tool"]).ok();
    // The same file under the name of the stored image `base`.
    insecure(&lade, &["pull", &oras, "base"]).ok();
    drop(reg);

    // Text: images first, then SIFs, marked; the one an image hides says how it runs.
    let human = indicatif::HumanBytes(size).to_string();
    assert_eq!(
        lade.ok(["list"]),
        format!(
            "base:latest (amd64)\n\
             base:latest [sif, {human}]  [image base:latest runs first; this SIF: lade run oras://base:latest]\n\
             tool:latest [sif, {human}]\n"
        )
    );
    let long = lade.ok(["list", "-l"]);
    let tool_line = long
        .lines()
        .find(|l| l.starts_with("tool:latest "))
        .unwrap();
    let columns: Vec<&str> = tool_line.split_whitespace().collect();
    assert_eq!(columns[1], "[sif]", "{long}");
    assert_eq!(columns[2], &digest[..19], "{long}");
    assert_eq!(columns.last(), Some(&oras.as_str()), "{long}");
    assert_eq!(long.lines().count(), 3, "{long}");

    // JSON: images as they were (with kind), then the SIFs' records.
    let listed: serde_json::Value =
        serde_json::from_str(&lade.ok(["list", "--format", "json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["kind"], "image");
    assert_eq!(listed[0]["name"], "docker.io/library/base:latest");
    assert!(listed[0]["layers"].is_array() && listed[0]["config"].is_string());
    let sifs: Vec<&serde_json::Value> = listed.iter().filter(|e| e["kind"] == "sif").collect();
    assert_eq!(sifs.len(), 2);
    for (entry, name, shadowed) in [(sifs[0], "base", true), (sifs[1], "tool", false)] {
        assert_eq!(entry["name"], format!("docker.io/library/{name}:latest"));
        assert_eq!(entry["size"], size);
        assert_eq!(entry["blob"], digest.as_str());
        assert_eq!(entry["source"], oras.as_str());
        assert_eq!(entry["shadowed_by_image"], shadowed);
        assert_eq!(entry["store"]["read_only"], false);
        assert_eq!(entry["store"]["path"], lade.storage.to_str().unwrap());
    }
    let one: serde_json::Value =
        serde_json::from_str(&lade.ok(["list", "--format", "json", "tool"])).unwrap();
    assert_eq!(&one, sifs[1]);
    let both: serde_json::Value =
        serde_json::from_str(&lade.ok(["list", "--format", "json", "base"])).unwrap();
    assert_eq!(both["kind"], "image");
    assert_eq!(&both["same_name_sif"], sifs[0]);
    // One SIF in detail, without asking a registry (it is gone) about `docker://tool`.
    let details = lade.ok(["list", "tool"]);
    assert!(
        details.starts_with("details of SIF:      tool:latest\n"),
        "{details}"
    );
    assert!(
        details.contains(&format!("size:                {human} ({size} bytes)\n")),
        "{details}"
    );
    assert!(
        details.contains(&format!("file digest:         {digest}\n")),
        "{details}"
    );
    assert!(!details.contains("remotely"), "{details}");

    let fsck: serde_json::Value =
        serde_json::from_str(&lade.ok(["fsck", "--format", "json"])).unwrap();
    assert_eq!(
        (fsck["sifs_checked"].as_u64(), &fsck["clean"]),
        (Some(2), &serde_json::json!(true))
    );
    // A file of another size than its record says (cut short behind lade's back).
    let file = lade
        .storage
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..]);
    let cut = lade.path("cut");
    fs::copy(&file, &cut).unwrap();
    let mut perms = fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&file, perms.clone()).unwrap();
    fs::write(&file, &bytes[..100]).unwrap();
    let r = lade.run(["fsck"]);
    assert!(!r.success(), "{}", r.stdout);
    let out = r.stdout;
    assert!(out.contains(&format!("SIF docker.io/library/tool:latest: its file, blob {digest}, is 100 bytes; the record says {size}")), "{out}");
    fs::copy(&cut, &file).unwrap();
    lade.fsck_ok();

    // Deleted by glob; the file stays while the other record names it.
    assert_eq!(lade.ok(["delete", "to*"]), "deleted SIF tool:latest\n");
    assert!(file.exists());
    let err = lade
        .run(["run", "tool", "--", "/bin/true"])
        .fails_one_line();
    assert!(err.contains("tool:latest"), "{err}");
    // A name that matches nothing, as for images.
    let err = lade.run(["delete", "tool"]).fails_one_line();
    assert!(err.contains("no image matches 'tool'"), "{err}");
    let err = lade.run(["undelete", "tool"]).fails_one_line();
    assert!(err.contains("not among the deleted images"), "{err}");
    // A name both an image and a SIF have: both go, and the file with the last record.
    assert_eq!(
        lade.ok(["delete", "base"]),
        "deleted base:latest\ndeleted SIF base:latest\n"
    );
    assert!(!file.exists(), "the SIF's file is still in blobs/");
    assert_eq!(
        fs::read_dir(lade.storage.join("single-files"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(lade.ok(["list"]), "");
    let err = lade
        .run(["run", "base", "--", "/bin/true"])
        .fails_one_line();
    assert!(err.contains("base:latest"), "{err}");
}
