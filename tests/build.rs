//! `lade build`: Dockerfiles executed unprivileged, each result checked by unpacking the image
//! and reading its config, plus the build cache's hit/miss behaviour.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

impl BuildCtx {
    /// Unpack `tag` into a new directory of the scratch directory.
    fn unpack(&self, tag: &str) -> PathBuf {
        let dir = self.lade.path(format!("unpacked-{tag}-{}", rand_suffix()));
        self.lade
            .ok(["unpack".as_ref(), tag.as_ref(), dir.as_os_str()]);
        dir
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn config_instructions_are_recorded_as_docker_does() {
    let b = BuildCtx::new();
    let out = b.build_ok(
        "cfg",
        r#"FROM base
MAINTAINER someone <x@example.com>
ENV A=1 B="two words"
ENV C $A-x
LABEL org.example.k=v "other"="w"
WORKDIR /work
WORKDIR sub
USER 1000:1000
EXPOSE 80 53/udp
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost || exit 1
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/echo"]
CMD hello
"#,
    );
    assert!(out.contains("grown in 16 instructions: cfg"), "{out}");
    let cfg = b.config("cfg");
    let c = &cfg["config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert!(env.contains(&"B=two words"), "{env:?}");
    assert!(env.contains(&"C=1-x"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "base Env kept");
    assert_eq!(c["Labels"]["org.example.k"], "v");
    assert_eq!(c["Labels"]["other"], "w");
    assert_eq!(c["WorkingDir"], "/work/sub");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"80/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}, "/cache": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q localhost || exit 1"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 3);
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    // CMD in shell form goes through the SHELL in force.
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-ec", "hello"]));
    assert_eq!(cfg["author"], "someone <x@example.com>");

    // History: one entry per instruction after FROM; only WORKDIR (creating dirs) has layers.
    let hist = cfg["history"].as_array().unwrap();
    let ours: Vec<&Value> = hist.iter().rev().take(15).collect::<Vec<_>>();
    let by: Vec<&str> = ours
        .iter()
        .rev()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(by[0], "MAINTAINER someone <x@example.com>");
    assert_eq!(by[14], "CMD hello");
    for h in &ours {
        let by = h["created_by"].as_str().unwrap();
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        assert_eq!(empty, !by.starts_with("WORKDIR"), "{h}");
    }
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    let non_empty = hist
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    assert_eq!(layers, non_empty);

    // WORKDIR created its directories; `lade run` uses the result.
    let root = b.unpack("cfg");
    assert!(root.join("work/sub").is_dir());
    let out = b.lade.ok(["run", "--no-home", "cfg", "--", "/bin/pwd"]);
    assert_eq!(out.trim(), "/bin/pwd", "ENTRYPOINT echo");
    b.build_ok("wd", "FROM base\nWORKDIR /a/b\nCMD [\"/bin/pwd\"]\n");
    let out = b.lade.ok(["run", "--no-home", "wd"]);
    assert_eq!(out.trim(), "/a/b");
}

#[test]
fn entrypoint_resets_inherited_cmd() {
    let b = BuildCtx::new();
    b.build_ok("e1", "FROM base\nCMD [\"a\"]\n");
    b.build_ok("e2", "FROM e1\nENTRYPOINT [\"/bin/echo\"]\n");
    assert!(b.config("e2")["config"].get("Cmd").is_none());
    b.build_ok("e3", "FROM e1\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"b\"]\n");
    assert_eq!(b.config("e3")["config"]["Cmd"], serde_json::json!(["b"]));
}

#[test]
fn run_creates_and_deletes_files_as_a_layer() {
    let b = BuildCtx::new();
    let out = b.build_ok(
        "r",
        r#"FROM base
ARG WHO=world
ENV GREETING=hello
RUN echo "$GREETING $WHO" > /greeting && id -u > /uid && rm /bin/ls && rm -r /data/opq && mkdir /tmp/t && echo x > /tmp/t/f
RUN ["/bin/sh", "-c", "echo exec > /exec"]
RUN <<EOF
echo heredoc > /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo script > /script
EOF
"#,
    );
    assert_eq!(marks(&out), "*......");
    let root = b.unpack("r");
    assert_eq!(read(&root.join("greeting")), "hello world\n");
    assert_eq!(read(&root.join("uid")), "0\n");
    assert_eq!(read(&root.join("exec")), "exec\n");
    assert_eq!(read(&root.join("heredoc")), "heredoc\n");
    assert_eq!(read(&root.join("script")), "script\n");
    assert_eq!(
        read(&root.join("tmp/t/f")),
        "x\n",
        "/tmp is the image's in a build"
    );
    assert!(fs::symlink_metadata(root.join("bin/ls")).is_err());
    assert!(!root.join("data/opq").exists());
    assert!(root.join("bin/busybox").is_file());

    // The deletion is a whiteout in the RUN's layer; the mount points lade run made are not.
    let cfg = b.config("r");
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    let rec = b.record("r");
    let first_run = &rec["layers"][layers - 4]["blob"];
    let blob = b.blob(first_run.as_str().unwrap());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "bin/.wh.ls"), "{names:?}");
    assert!(names.iter().any(|n| n == "data/.wh.opq"), "{names:?}");
    assert!(names.iter().any(|n| n == "greeting"), "{names:?}");
    for n in ["proc", "sys", "dev", "etc/hosts", "etc/resolv.conf"] {
        assert!(
            !names.iter().any(|x| x.trim_end_matches('/') == n),
            "{n} in {names:?}"
        );
    }
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut raw)
        .unwrap();
    let diff_id = sha256(&raw);
    assert_eq!(cfg["rootfs"]["diff_ids"][layers - 4], diff_id.as_str());
    b.lade.fsck_ok();
}

#[test]
fn failing_run_names_the_line_and_status_and_leaves_no_image() {
    let b = BuildCtx::new();
    let r = b.build("bad", "FROM base\nRUN true\n\nRUN exit 3\nRUN echo never\n");
    let stdout = r.stdout.clone();
    let err = r.fails_one_line();
    assert!(err.contains("Dockerfile:4"), "{err}");
    assert!(err.contains("exit status 3"), "{err}");
    assert!(!stdout.contains("echo never"), "{stdout}");
    assert!(!b.lade.list().iter().any(|n| n.starts_with("bad")));
    // The steps before the failure are cached.
    let r = b.build("bad", "FROM base\nRUN true\n\nRUN exit 3\nRUN echo never\n");
    assert!(marks(&r.stdout).starts_with("**."), "{}", r.stdout);
}

#[test]
fn copy_rules() {
    let b = BuildCtx::new();
    b.file("a.txt", "a\n");
    b.file("b.log", "b\n");
    b.file("c.log", "c\n");
    b.file("dir/x", "x\n");
    b.file("dir/sub/y", "y\n");
    std::os::unix::fs::symlink("x", b.ctx.join("dir/link")).unwrap();
    fs::set_permissions(
        b.ctx.join("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let r = b
        .build(
            "cp",
            r#"FROM base
COPY a.txt /new/name
COPY a.txt /into/
COPY *.log /logs/
COPY dir /d
COPY dir/ /d2/
WORKDIR /w
COPY a.txt .
COPY --chown=1:1 a.txt rel/
COPY <<EOF /here.txt
inline
EOF
COPY dir/sub/y /data
COPY a.txt /tmp/
WORKDIR /tmp/wd
"#,
        )
        .ok();
    assert!(r.stderr.contains("--chown ignored"), "{}", r.stderr);
    let root = b.unpack("cp");
    assert_eq!(read(&root.join("new/name")), "a\n");
    let mode = fs::metadata(root.join("new/name")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o750
    );
    assert_eq!(read(&root.join("into/a.txt")), "a\n");
    assert_eq!(read(&root.join("logs/b.log")), "b\n");
    assert_eq!(read(&root.join("logs/c.log")), "c\n");
    // A directory source copies its contents.
    assert_eq!(read(&root.join("d/x")), "x\n");
    assert_eq!(read(&root.join("d/sub/y")), "y\n");
    assert_eq!(fs::read_link(root.join("d/link")).unwrap(), Path::new("x"));
    assert!(!root.join("d/dir").exists());
    assert_eq!(read(&root.join("d2/sub/y")), "y\n");
    assert_eq!(read(&root.join("w/a.txt")), "a\n");
    assert_eq!(read(&root.join("w/rel/a.txt")), "a\n");
    assert_eq!(read(&root.join("here.txt")), "inline\n");
    // /data is a directory in the base image: the file goes inside.
    assert_eq!(read(&root.join("data/y")), "y\n");
    // Existing directories keep their modes in the merged image.
    let tmp = fs::metadata(root.join("tmp")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&tmp) & 0o7777,
        0o1777
    );
    assert_eq!(read(&root.join("tmp/a.txt")), "a\n");
    assert!(root.join("tmp/wd").is_dir());

    // More than one source makes the destination a directory even without a slash (the
    // manual's rule 2.2; more in copy_rules_of_the_ch_image_manual).
    b.build_ok("cp2", "FROM base\nCOPY a.txt b.log /notdir\n");
    assert_eq!(read(&b.unpack("cp2").join("notdir/b.log")), "b\n");
    let err = b
        .build("cp3", "FROM base\nCOPY missing /x\n")
        .fails_one_line();
    assert!(err.contains("missing"), "{err}");
    let err = b
        .build("cp4", "FROM base\nADD https://example.com/x.git /x\n")
        .fails_one_line();
    assert!(err.contains("not supported yet"), "{err}");
}

#[test]
fn add_unpacks_local_archives() {
    let b = BuildCtx::new();
    let src = b.lade.path("arch");
    fs::create_dir_all(src.join("top")).unwrap();
    fs::write(src.join("top/f"), "in tar\n").unwrap();
    let tgz = b.ctx.join("a.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg("top")
        .status()
        .unwrap();
    assert!(st.success());
    b.file("plain.gz.txt", "not an archive\n");
    b.build_ok(
        "add",
        "FROM base\nADD a.tar.gz /opt/\nADD plain.gz.txt /p\nCOPY a.tar.gz /kept/\n",
    );
    let root = b.unpack("add");
    assert_eq!(read(&root.join("opt/top/f")), "in tar\n");
    assert_eq!(read(&root.join("p")), "not an archive\n");
    assert!(root.join("kept/a.tar.gz").is_file(), "COPY does not unpack");
}

#[test]
fn multi_stage_copy_from_and_scratch() {
    let b = BuildCtx::new();
    let out = b.build_ok(
        "ms",
        r#"ARG BASE=base
FROM $BASE AS builder
RUN mkdir -p /out && echo built > /out/artifact
FROM scratch
COPY --from=builder /out/artifact /artifact
COPY --from=0 /bin/busybox /bin/
FROM builder AS again
RUN cat /out/artifact > /again
FROM scratch
COPY --from=again /again /
COPY --from=base /etc/hostname /
"#,
    );
    assert!(out.contains("grown in 11 instructions: ms"), "{out}");
    let root = b.unpack("ms");
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["again", "hostname"]);
    assert_eq!(read(&root.join("again")), "built\n");
    let cfg = b.config("ms");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn cache_hits_and_misses() {
    let b = BuildCtx::new();
    b.file("one", "1\n");
    b.file("two", "2\n");
    let df = "FROM base\nRUN echo a > /a\nCOPY one /one\nRUN echo b > /b\nCOPY two /two\nENV X=1\n";
    let first = b.build_ok("c", df);
    assert_eq!(marks(&first), "*.....");
    let manifest = b.record("c")["manifest"].clone();

    // Unchanged: nothing executes.
    let second = b.build_ok("c", df);
    assert_eq!(marks(&second), "******", "{second}");
    assert!(second.contains("grown in 6 instructions: c"));
    assert_eq!(b.record("c")["layers"], b.record("c")["layers"]);
    let _ = manifest;

    // One step changed: it and the ones after run again.
    let df2 = df.replace("echo b", "echo B");
    let third = b.build_ok("c", &df2);
    assert_eq!(marks(&third), "***...", "{third}");
    assert_eq!(read(&b.unpack("c").join("b")), "B\n");

    // A context file changed: exactly the COPY reading it misses (and what follows).
    b.file("two", "22\n");
    let fourth = b.build_ok("c", &df2);
    assert_eq!(marks(&fourth), "****..", "{fourth}");
    b.file("one", "11\n");
    let fifth = b.build_ok("c", &df2);
    assert_eq!(marks(&fifth), "**....", "{fifth}");
    let root = b.unpack("c");
    assert_eq!(read(&root.join("one")), "11\n");
    assert_eq!(read(&root.join("two")), "22\n");

    // Build args are part of the key.
    let dfa = "FROM base\nARG V=1\nRUN echo $V > /v\n";
    assert_eq!(marks(&b.build_ok("a", dfa)), "*..");
    assert_eq!(marks(&b.build_ok("a", dfa)), "***");
    let r = b
        .lade
        .run([
            "build".as_ref(),
            "--build-arg".as_ref(),
            "V=2".as_ref(),
            "-t".as_ref(),
            "a".as_ref(),
            b.ctx.as_os_str(),
        ])
        .ok();
    assert_eq!(marks(&r.stdout), "*..");
    assert_eq!(read(&b.unpack("a").join("v")), "2\n");

    // --no-cache and --rebuild execute everything; reset forgets.
    let r = b
        .lade
        .run([
            "build".as_ref(),
            "--rebuild".as_ref(),
            "-t".as_ref(),
            "a".as_ref(),
            b.ctx.as_os_str(),
        ])
        .ok();
    assert_eq!(marks(&r.stdout), "*..");
    let r = b
        .lade
        .run([
            "build".as_ref(),
            "--no-cache".as_ref(),
            "-t".as_ref(),
            "a".as_ref(),
            b.ctx.as_os_str(),
        ])
        .ok();
    assert_eq!(marks(&r.stdout), "*..");
    assert_eq!(marks(&b.build_ok("a", dfa)), "***");
    b.lade.ok(["build-cache", "--reset"]);
    assert_eq!(marks(&b.build_ok("a", dfa)), "*..");
    b.lade.fsck_ok();
}

#[test]
fn parse_only_dry_run_force_and_inferred_tag() {
    let b = BuildCtx::new();
    fs::write(
        b.ctx.join("Dockerfile"),
        "FROM base\nARG N=5\nRUN echo $N\n",
    )
    .unwrap();
    let out = b
        .lade
        .ok(["build".as_ref(), "--parse-only".as_ref(), b.ctx.as_os_str()]);
    assert!(out.contains("RUN"), "{out}");
    let out = b
        .lade
        .ok(["build".as_ref(), "--dry-run".as_ref(), b.ctx.as_os_str()]);
    assert!(out.contains("nothing executed"), "{out}");
    assert!(b.lade.list().iter().all(|n| !n.starts_with("ctx")));
    let err = b
        .lade
        .run(["build".as_ref(), "--force=x".as_ref(), b.ctx.as_os_str()])
        .fails_one_line();
    assert!(err.contains("unknown mode"), "{err}");
    let err = b.lade.run(["build", "-"]).fails_one_line();
    assert!(err.contains("not supported yet"), "{err}");

    // No -t: the context directory's name; Dockerfile.NAME: NAME.
    let out = b.lade.ok(["build".as_ref(), b.ctx.as_os_str()]);
    assert!(out.contains("grown in 3 instructions: ctx"), "{out}");
    fs::write(b.ctx.join("Dockerfile.Foo@Bar"), "FROM base\n").unwrap();
    let out = b.lade.ok([
        "build".as_ref(),
        "-f".as_ref(),
        b.ctx.join("Dockerfile.Foo@Bar").as_os_str(),
        b.ctx.as_os_str(),
    ]);
    assert!(out.contains("grown in 1 instructions: foobar"), "{out}");
    // -f - reads standard input.
    let mut c = b.lade.cmd();
    c.args(["build", "-t", "stdin", "-f", "-"]).arg(&b.ctx);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM base\nLABEL from=stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(b.config("stdin")["config"]["Labels"]["from"], "stdin");
}

#[test]
fn built_image_copies_out_as_oci() {
    let b = BuildCtx::new();
    b.build_ok("out", "FROM base\nRUN echo hi > /hi\n");
    let layout = b.lade.path("layout");
    b.lade.ok([
        "copy".to_string(),
        "lade:out".to_string(),
        format!("oci:{}:out", layout.display()),
    ]);
    let other = Lade::new();
    other.ok([
        "pull".to_string(),
        format!("oci:{}:out", layout.display()),
        "again".to_string(),
    ]);
    let dir = other.path("u");
    other.ok(["unpack".as_ref(), "again".as_ref(), dir.as_os_str()]);
    assert_eq!(read(&dir.join("hi")), "hi\n");
    assert!(!dir.join("bin/hi").exists());
    let _ = b.last_layer_names("out");
}

#[test]
fn debris_of_dead_builds_is_swept_and_user_warns() {
    let b = BuildCtx::new();
    let debris = b.lade.storage.join("build-tmp/4194303.deadbeef/upper");
    fs::create_dir_all(&debris).unwrap();
    let r = b
        .build("u", "FROM base\nUSER 1000\nRUN id -u > /who\n")
        .ok();
    assert!(r.stderr.contains("RUN runs as uid 0"), "{}", r.stderr);
    assert!(!debris.parent().unwrap().exists());
    assert_eq!(read(&b.unpack("u").join("who")), "0\n");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let b = BuildCtx::new();
    b.build_ok(
        "parent",
        "FROM base\nONBUILD RUN echo fired > /fired\nONBUILD ENV T=1\n",
    );
    let parent = b.config("parent");
    assert_eq!(
        parent["config"]["OnBuild"],
        serde_json::json!(["RUN echo fired > /fired", "ENV T=1"])
    );
    assert!(!b.unpack("parent").join("fired").exists());
    let out = b.build_ok("child", "FROM parent\nRUN cat /fired > /copied\n");
    assert_eq!(marks(&out), "*...", "{out}");
    let root = b.unpack("child");
    assert_eq!(read(&root.join("fired")), "fired\n");
    assert_eq!(read(&root.join("copied")), "fired\n");
    let cfg = b.config("child");
    assert!(cfg["config"].get("OnBuild").is_none(), "{cfg}");
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "T=1"), "{env:?}");
    // Cached like any step.
    let out = b.build_ok("child", "FROM parent\nRUN cat /fired > /copied\n");
    assert_eq!(marks(&out), "****", "{out}");
}

/// The rules the ch-image manual lists under COPY ("Docker also behaves as follows"), one by one.
#[test]
fn copy_rules_of_the_ch_image_manual() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let b = BuildCtx::new();
    b.file("a.txt", "a\n");
    b.file("b.txt", "b\n");
    b.file("tree/sub/f", "f\n");
    b.file("tree/top", "t\n");
    b.file("foo/bar", "bar file\n");
    symlink("a.txt", b.ctx.join("link-to-a")).unwrap();
    symlink("../a.txt", b.ctx.join("tree/sub/deep-link")).unwrap();
    fs::set_permissions(b.ctx.join("tree/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(b.ctx.join("tree"), fs::Permissions::from_mode(0o700)).unwrap();
    b.build_ok(
        "rules",
        r#"FROM base
RUN mkdir -p /m/sub /foo/bar /real && chmod 0711 /m/sub /m && touch /foo/bar/baz && ln -s /real /dest-link
COPY /a.txt /abs-source
COPY a.txt b.txt /multi
COPY *.txt /glob
COPY tree /t
COPY tree /m
COPY link-to-a /deref
COPY tree/sub /s
COPY foo /foo
COPY a.txt /dest-link/
"#,
    );
    let root = b.unpack("rules");
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    // 1. Absolute source paths are rooted at the context.
    assert_eq!(read(&root.join("abs-source")), "a\n");
    // 2.2. More than one source (explicit or by wildcard) makes the destination a directory.
    assert_eq!(read(&root.join("multi/a.txt")), "a\n");
    assert_eq!(read(&root.join("multi/b.txt")), "b\n");
    assert_eq!(read(&root.join("glob/b.txt")), "b\n");
    // 2.3. A single directory source: the destination is created, with the contents inside.
    assert_eq!(read(&root.join("t/sub/f")), "f\n");
    assert_eq!(read(&root.join("t/top")), "t\n");
    // 3.1. A symlink named as the source is followed; 3.2. deeper ones are copied as links.
    assert_eq!(read(&root.join("deref")), "a\n");
    assert!(
        !fs::symlink_metadata(root.join("deref"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(root.join("s/deep-link")).unwrap(),
        Path::new("../a.txt")
    );
    // 3.1. A symlink named as the destination is followed.
    assert_eq!(read(&root.join("real/a.txt")), "a\n");
    assert!(
        fs::symlink_metadata(root.join("dest-link"))
            .unwrap()
            .is_symlink()
    );
    // 4. A directory at the same path, 2nd level or deeper, takes the source's metadata; the
    // destination itself (1st level) keeps its own.
    assert_eq!(mode("m"), 0o711);
    assert_eq!(mode("m/sub"), 0o750);
    // 5. At the 2nd level or deeper a different type replaces what was there.
    assert_eq!(read(&root.join("foo/bar")), "bar file\n");
}
