//! BuildKit's `RUN --mount` in `lade build`, on the busybox fixture, as an ordinary user:
//! cache mounts that outlive builds and stay out of images (with `sharing=`), bind mounts of
//! the context or a stage (read-only, `rw` discarded, `.dockerignore` kept, in the cache
//! key), secrets that reach no layer, cache record or output, tmpfs, the SSH agent, and the
//! errors; and BuildKit's refusal of `${VAR:#…}` and `${VAR:%…}`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

impl BuildCtx {
    /// Writes `df` and runs `lade build EXTRA... -t TAG CTX`.
    fn build_extra(&self, extra: &[&str], tag: &str, df: &str) -> Run {
        fs::write(self.ctx.join("Dockerfile"), df).unwrap();
        run_cmd(self.build_cmd(extra, tag))
    }

    /// `cat FILE` in image `tag`.
    fn cat(&self, tag: &str, file: &str) -> String {
        self.lade.ok(["run", tag, "--", "cat", file])
    }

    /// Every entry name of every layer blob of `tag`.
    fn all_layer_names(&self, tag: &str) -> Vec<String> {
        let r = self.record(tag);
        let mut names = Vec::new();
        for l in r["layers"].as_array().unwrap() {
            let blob = self.blob(l["blob"].as_str().unwrap());
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
            for e in tar.entries().unwrap() {
                names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
            }
        }
        names
    }
}

/// The apt pattern: a cache mount at the package cache keeps what one build downloaded for
/// the next (here a stand-in package file), and no image holds it or its mount point.
#[test]
fn cache_mount_survives_between_builds_and_stays_out_of_the_image() {
    let b = BuildCtx::new();
    let df = "FROM base\n\
              RUN --mount=type=cache,target=/var/cache/apt \
              sh -c 'ls /var/cache/apt > /seen; echo deb > /var/cache/apt/hello.deb'\n";
    b.build_extra(&[], "one", df).ok();
    assert_eq!(b.cat("one", "/seen"), "");
    // The next build of the step (rerun: --no-cache) finds what the first left.
    b.build_extra(&["--no-cache"], "two", df).ok();
    assert_eq!(b.cat("two", "/seen"), "hello.deb\n");
    // Another Dockerfile with the same target shares it (the id defaults to the target);
    // another id does not.
    let df2 = "FROM base\n\
               RUN --mount=type=cache,target=/var/cache/apt ls /var/cache/apt > /seen2\n\
               RUN --mount=type=cache,id=other,target=/var/cache/apt ls /var/cache/apt > /seen3\n";
    b.build_extra(&[], "three", df2).ok();
    assert_eq!(b.cat("three", "/seen2"), "hello.deb\n");
    assert_eq!(b.cat("three", "/seen3"), "");
    for tag in ["one", "two", "three"] {
        let names = b.all_layer_names(tag);
        assert!(
            !names
                .iter()
                .any(|n| n.contains("hello.deb") || n.contains("var/")),
            "{tag}: {names:?}"
        );
        let out = b.lade.ok(["run", tag, "--", "ls", "/"]);
        assert!(!out.lines().any(|l| l == "var"), "{tag}: {out}");
    }
    // Nor a cache key: a changed cache leaves the step a hit.
    let r = b.build_extra(&[], "four", df).ok();
    assert_eq!(marks(&r.stdout), "**");
    // `lade build-cache` counts it; --reset removes it.
    let out = b.lade.ok(["build-cache"]);
    assert!(out.contains("cache mounts:        2"), "{out}");
    let out = b.lade.ok(["build-cache", "--reset"]);
    assert!(out.contains("cache mounts:        0"), "{out}");
    b.build_extra(&["--no-cache"], "five", df).ok();
    assert_eq!(b.cat("five", "/seen"), "");
    b.lade.fsck_ok();
}

/// `mode=` applies when the cache is made; `from=`/`source=` seed it; `ro` mounts it
/// read-only; `uid=` other than 0 is ignored with a warning (a step is uid 0).
#[test]
fn cache_mount_options() {
    let b = BuildCtx::new();
    let df = "FROM base AS seed\n\
              RUN mkdir -p /s/sub && echo seeded > /s/sub/f\n\
              FROM base\n\
              RUN --mount=type=cache,id=m,target=/c,mode=0750,from=seed,source=/s/sub,uid=1000 \
              sh -c 'stat -c %a /c > /mode; cat /c/f > /seeded'\n\
              RUN --mount=type=cache,id=m,target=/c,ro \
              sh -c 'touch /c/x 2>/dev/null && echo writable > /ro || echo read-only > /ro'\n";
    let r = b.build_extra(&[], "t", df).ok();
    assert_eq!(b.cat("t", "/mode"), "750\n");
    assert_eq!(b.cat("t", "/seeded"), "seeded\n");
    assert_eq!(b.cat("t", "/ro"), "read-only\n");
    assert!(
        r.stderr.contains("uid= ignored: a RUN step is uid 0"),
        "{}",
        r.stderr
    );
}

/// `sharing=locked`: a second build waits for the first to release the cache, so their
/// steps do not overlap; `sharing=private`: a second build, while the first holds the cache,
/// gets a new one. The two builds meet through a directory bound into both (`-b`).
#[test]
fn cache_mount_sharing_locked_and_private() {
    let b = BuildCtx::new();
    let sync = b.lade.path("sync");
    fs::create_dir_all(&sync).unwrap();
    let bind = format!("{}:/sync", sync.display());
    let start = |tag: &str, df: &str| {
        let dir = b.lade.path(format!("ctx-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("Dockerfile"), df).unwrap();
        let mut c = b.lade.cmd();
        c.args(["build", "-b", &bind, "-t", tag]).arg(&dir);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let wait = |c: std::process::Child| {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Locked: each step logs start, waits a moment, logs end: never interleaved.
    let locked = |who: &str| {
        format!(
            "FROM base\n\
             RUN --mount=type=cache,id=lk,target=/c,sharing=locked \
             sh -c 'echo start {who} >> /c/log; sleep 1; echo end {who} >> /c/log; cp /c/log /log'\n"
        )
    };
    let a = start("la", &locked("a"));
    std::thread::sleep(Duration::from_millis(300));
    let c = start("lb", &locked("b"));
    wait(a);
    wait(c);
    // The step that ran second copied the whole log.
    let last = [b.cat("la", "/log"), b.cat("lb", "/log")]
        .into_iter()
        .max_by_key(|l| l.lines().count())
        .unwrap();
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(lines.len(), 4, "{last}");
    assert!(
        lines[0].starts_with("start") && lines[1].starts_with("end"),
        "{last}"
    );
    assert_eq!(lines[0][6..], lines[1][4..], "{last}");
    assert!(
        lines[2].starts_with("start") && lines[3].starts_with("end"),
        "{last}"
    );

    // Private: each step marks its cache, then waits until the other step has started.
    let private = |me: &str, other: &str| {
        format!(
            "FROM base\n\
             RUN --mount=type=cache,id=pv,target=/c,sharing=private \
             sh -c 'touch /c/{me} /sync/{me}; i=0; \
             while [ ! -e /sync/{other} ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done; \
             ls /c > /seen'\n"
        )
    };
    let a = start("pa", &private("a", "b"));
    let c = start("pb", &private("b", "a"));
    wait(a);
    wait(c);
    assert_eq!(b.cat("pa", "/seen"), "a\n");
    assert_eq!(b.cat("pb", "/seen"), "b\n");
}

/// Bind mounts of the context: read-only by default, `rw` writable with the writes
/// discarded, `.dockerignore` applied, never in the layer, and in the cache key (changing a
/// bound file reruns the step; changing another file does not).
#[test]
fn bind_mount_of_the_context() {
    let b = BuildCtx::new();
    b.file("src/a.txt", "first\n");
    b.file("src/secret.key", "hidden\n");
    b.file("other.txt", "x\n");
    b.file(".dockerignore", "src/*.key\n");
    let df = "FROM base\n\
              RUN --mount=type=bind,source=src,target=/src \
              sh -c 'ls /src > /listing; cat /src/a.txt > /content; \
              touch /src/new 2>/dev/null && echo writable > /ro || echo read-only > /ro'\n\
              RUN --mount=type=bind,source=src,target=/w,rw \
              sh -c 'echo changed > /w/a.txt && touch /w/made && ls /w > /rw'\n\
              RUN --mount=type=bind,target=/whole ls /whole > /root-listing\n";
    let r = b.build_extra(&[], "t", df).ok();
    assert_eq!(marks(&r.stdout), "*...");
    assert_eq!(b.cat("t", "/listing"), "a.txt\n");
    assert_eq!(b.cat("t", "/content"), "first\n");
    assert_eq!(b.cat("t", "/ro"), "read-only\n");
    assert_eq!(b.cat("t", "/rw"), "a.txt\nmade\n");
    assert!(b.cat("t", "/root-listing").contains("other.txt"));
    // The writes went nowhere: not to the context, not to the image.
    assert_eq!(
        fs::read_to_string(b.ctx.join("src/a.txt")).unwrap(),
        "first\n"
    );
    assert!(!b.ctx.join("src/made").exists());
    let names = b.all_layer_names("t");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("src") || n.starts_with('w')),
        "{names:?}"
    );
    // The cache follows what is bound.
    b.file("other.txt", "y\n");
    let r = b.build_extra(&[], "t", df).ok();
    assert_eq!(marks(&r.stdout), "***.", "{}", r.stdout);
    b.file("src/a.txt", "second\n");
    let r = b.build_extra(&[], "t", df).ok();
    assert_eq!(marks(&r.stdout), "*...");
    assert_eq!(b.cat("t", "/content"), "second\n");
    // A source outside the context, or missing, is a one-line error.
    std::os::unix::fs::symlink("/etc", b.ctx.join("escape")).unwrap();
    let e = b
        .build_extra(
            &[],
            "t",
            "FROM base\nRUN --mount=type=bind,source=escape,target=/e ls /e\n",
        )
        .fails_one_line();
    assert!(e.contains("source=escape") && e.contains("outside"), "{e}");
    let e = b
        .build_extra(
            &[],
            "t",
            "FROM base\nRUN --mount=type=bind,source=nope,target=/e ls /e\n",
        )
        .fails_one_line();
    assert!(e.contains("source=nope"), "{e}");
}

/// `from=` binds a directory of another stage (or image).
#[test]
fn bind_mount_from_a_stage() {
    let b = BuildCtx::new();
    let df = "FROM base AS build\n\
              RUN mkdir /out && echo artefact > /out/app\n\
              FROM base\n\
              RUN --mount=type=bind,from=build,source=/out,target=/in cp /in/app /app\n\
              RUN --mount=type=bind,from=base,source=/bin,target=/b test -e /b/busybox\n";
    b.build_extra(&[], "t", df).ok();
    assert_eq!(b.cat("t", "/app"), "artefact\n");
    let names = b.all_layer_names("t");
    assert!(!names.iter().any(|n| n.starts_with("in")), "{names:?}");
}

/// A tmpfs: a fresh, writable filesystem of the size asked, gone after the step. Steps that
/// write only into their mounts make no layer (as with BuildKit), so two of them, and a RUN
/// over them, stack (the same empty tree twice is more than overlayfs takes).
#[test]
fn tmpfs_mount_and_steps_that_change_nothing() {
    let b = BuildCtx::new();
    let df = "FROM base\n\
              RUN --mount=type=tmpfs,target=/scratch,size=1m \
              sh -c 'echo x > /scratch/f && grep \" /scratch \" /proc/mounts > /mounts'\n\
              RUN --mount=type=tmpfs,target=/scratch touch /scratch/y\n\
              RUN --mount=type=cache,target=/c touch /c/z\n\
              RUN echo after > /after\n";
    b.build_extra(&[], "t", df).ok();
    let mounts = b.cat("t", "/mounts");
    assert!(mounts.starts_with("tmpfs /scratch tmpfs"), "{mounts}");
    assert!(mounts.contains("size=1024k"), "{mounts}");
    assert_eq!(b.cat("t", "/after"), "after\n");
    let base = b.record("base")["layers"].as_array().unwrap().len();
    assert_eq!(b.record("t")["layers"].as_array().unwrap().len(), base + 2);
    let cfg = b.config("t");
    let history = cfg["history"].as_array().unwrap();
    let empty: Vec<bool> = history[history.len() - 4..]
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(empty, [false, true, true, false]);
}

/// All the bytes of files under `dir`, for looking for a value.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file()
            && let Ok(bytes) = fs::read(&p)
        {
            out.push((p, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Secrets from a file and from a variable reach the step (as a file and as a variable),
/// and never a layer, a cache record, a file of the store, or the build's output. The
/// Dockerfile compares a checksum, so that the value is not in it either.
#[test]
fn secrets_reach_the_step_and_nothing_else() {
    const VALUE: &str = "s3cr3t-lade-VALUE-7f1c";
    let sum = sha256(VALUE.as_bytes());
    let sum = sum.strip_prefix("sha256:").unwrap_or(&sum);
    let b = BuildCtx::new();
    let file = b.lade.path("token.txt");
    fs::write(&file, VALUE).unwrap();
    let df = format!(
        "FROM base\n\
         RUN --mount=type=secret,id=tok \
         sh -c 'sha256sum /run/secrets/tok | grep -q {sum} && echo file-ok > /file-ok'\n\
         RUN --mount=type=secret,id=env-tok,target=/etc/tok,mode=0440 \
         sh -c 'sha256sum /etc/tok | grep -q {sum} && stat -c %a /etc/tok > /env-ok'\n\
         RUN --mount=type=secret,id=tok,env=TOKEN \
         sh -c 'printf %s \"$TOKEN\" | sha256sum | grep -q {sum} && echo var-ok > /var-ok'\n\
         RUN --mount=type=secret,id=absent ls /run > /no-secret 2>&1 || true\n"
    );
    fs::write(b.ctx.join("Dockerfile"), &df).unwrap();
    let secret_file = format!("id=tok,src={}", file.display());
    let mut c = b.build_cmd(
        &[
            "--secret",
            &secret_file,
            "--secret",
            "id=env-tok,env=LADE_TEST_TOKEN",
            "-v",
        ],
        "t",
    );
    c.env("LADE_TEST_TOKEN", VALUE);
    let r = run_cmd(c).ok();
    assert_eq!(b.cat("t", "/file-ok"), "file-ok\n");
    assert_eq!(b.cat("t", "/env-ok"), "440\n");
    assert_eq!(b.cat("t", "/var-ok"), "var-ok\n");
    // Not required: absent means not mounted.
    assert!(b.cat("t", "/no-secret").contains("No such file"));
    // Nowhere: the output, the layers (decompressed), any file of the store.
    let v = VALUE.as_bytes();
    assert!(!contains(r.stdout.as_bytes(), v) && !contains(r.stderr.as_bytes(), v));
    for l in b.record("t")["layers"].as_array().unwrap() {
        let blob = b.blob(l["blob"].as_str().unwrap());
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut tar).unwrap();
        assert!(!contains(&tar, v), "layer {l}");
    }
    for (path, bytes) in files_under(&b.lade.storage) {
        assert!(!contains(&bytes, v), "{}", path.display());
    }
    let names = b.all_layer_names("t");
    assert!(
        !names.iter().any(|n| n.starts_with("run") || n == "etc/tok"),
        "{names:?}"
    );
    // A hit needs no secret; a run without one that requires it fails in one line.
    let r = b.build_extra(&[], "t", &df).ok();
    assert_eq!(marks(&r.stdout), "*****");
    let e = b
        .build_extra(
            &[],
            "t",
            "FROM base\nRUN --mount=type=secret,id=tok,required=true true\n",
        )
        .fails_one_line();
    assert!(e.contains("secret tok") && e.contains("required"), "{e}");
    let e =
        run_cmd(b.build_cmd(&["--secret", "id=x,env=LADE_NOT_SET_ANYWHERE"], "t")).fails_one_line();
    assert!(e.contains("LADE_NOT_SET_ANYWHERE is not set"), "{e}");
}

/// `type=ssh` binds the host's agent socket at BuildKit's place and points SSH_AUTH_SOCK at
/// it; without an agent, `required=true` is an error.
#[test]
fn ssh_mount() {
    let b = BuildCtx::new();
    let sock = b.lade.path("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let df = "FROM base\n\
              RUN --mount=type=ssh sh -c 'test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /where'\n";
    fs::write(b.ctx.join("Dockerfile"), df).unwrap();
    let mut c = b.build_cmd(&[], "t");
    c.env("SSH_AUTH_SOCK", &sock);
    run_cmd(c).ok();
    assert_eq!(b.cat("t", "/where"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(b.last_layer_names("t"), ["where"]);
    let mut c = b.build_cmd(&["--no-cache"], "t");
    fs::write(
        b.ctx.join("Dockerfile"),
        "FROM base\nRUN --mount=type=ssh,required=true true\n",
    )
    .unwrap();
    c.env_remove("SSH_AUTH_SOCK");
    let e = run_cmd(c).fails_one_line();
    assert!(e.contains("type=ssh") && e.contains("no SSH agent"), "{e}");
}

#[test]
fn unknown_mount_types_and_colon_trims_are_one_line_errors() {
    let b = BuildCtx::new();
    let e = b
        .build("t", "FROM base\nRUN --mount=type=nfs,target=/x true\n")
        .fails_one_line();
    assert!(e.contains("nfs"), "{e}");
    // BuildKit's rule: ${VAR:#…} and ${VAR:%…} are errors, not the forms without a colon.
    for bad in ["${V:#*/}", "${V:%%/*}"] {
        let df = format!("FROM base\nARG V=/a/b\nENV X={bad}\n");
        let e = b.build("t", &df).fails_one_line();
        assert!(e.contains("unsupported modifier"), "{bad}: {e}");
    }
}

/// The real thing, where the Debian tarball is at hand (tests/run-all.sh makes it): apt's
/// package cache and lists in cache mounts, as Docker's documentation suggests. The second
/// build (every step rerun) finds the package the first downloaded, and neither image holds
/// the cache.
#[test]
fn apt_cache_mount_on_debian() {
    let Some(tarball) = std::env::var_os("LADE_DEBIAN_TARBALL").map(PathBuf::from) else {
        eprintln!("skipped: LADE_DEBIAN_TARBALL is not set");
        return;
    };
    let lade = Lade::new();
    lade.ok(["import".as_ref(), tarball.as_os_str(), "debian".as_ref()]);
    let b = BuildCtx::in_store(lade);
    let df = "FROM debian\n\
              RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
              --mount=type=cache,target=/var/lib/apt,sharing=locked \
              ls /var/cache/apt/archives > /before 2>&1; \
              apt-get update && apt-get install -y --no-install-recommends hello\n";
    let r = b.build_extra(&["--force"], "h1", df).ok();
    assert!(r.stdout.contains("Setting up hello"), "{}", r.stdout);
    assert!(!b.cat("h1", "/before").contains(".deb"));
    let r = b.build_extra(&["--force", "--no-cache"], "h2", df).ok();
    let before = b.cat("h2", "/before");
    assert!(before.lines().any(|l| l.starts_with("hello_")), "{before}");
    assert!(r.stdout.contains("Need to get 0 B"), "{}", r.stdout);
    assert_eq!(b.lade.ok(["run", "h2", "--", "hello"]), "Hello, world!\n");
    // The step's layer (the base and the --force init steps have apt files of their own).
    for tag in ["h1", "h2"] {
        let names = b.last_layer_names(tag);
        assert!(
            names.iter().any(|n| n == "usr/bin/hello"),
            "{tag}: {names:?}"
        );
        let cached: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("var/cache/apt") || n.starts_with("var/lib/apt"))
            .collect();
        assert!(cached.is_empty(), "{tag}: {cached:?}");
    }
}
