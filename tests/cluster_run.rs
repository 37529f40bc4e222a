//! `lade run FILE` on single-file images (issue 14): a SquashFS file made by `mksquashfs` from
//! a directory, and the same inside a SIF file, run with every `run` option as a stored
//! image; files that are not images, truncated or corrupt are one-line errors; the FUSE
//! server and its mount never outlive the container: not after a normal exit, not after
//! Ctrl-C, not after `kill -9` of lade.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A busybox root filesystem (from Debian's busybox-static) without any mount point.
fn busybox_dir(scratch: &Scratch) -> PathBuf {
    let dir = scratch.join("busybox-root");
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "id", "cat", "ls", "sleep", "touch", "pwd", "echo", "env", "true",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/hello"), "hello from a squashfs\n").unwrap();
    dir
}

/// `mksquashfs DIR FILE`, as a user would make one.
fn mksquashfs(dir: &Path, file: &Path) {
    let mut c = Command::new("mksquashfs");
    c.arg(dir)
        .arg(file)
        .args(["-noappend", "-quiet", "-no-progress"]);
    run_cmd(c).ok();
}

fn sif_of(squashfs: &Path, sif: &Path) {
    let bytes = fs::read(squashfs).unwrap();
    fs::write(sif, lade::squashfs::sif::testing::sif_with(&bytes, 2, 1)).unwrap();
}

struct Files {
    lade: Lade,
    sqfs: PathBuf,
    sif: PathBuf,
}

fn files() -> Files {
    let lade = Lade::new();
    let dir = busybox_dir(&lade.scratch);
    let sqfs = lade.path("busybox.sqfs");
    mksquashfs(&dir, &sqfs);
    let sif = lade.path("busybox.sif");
    sif_of(&sqfs, &sif);
    Files { lade, sqfs, sif }
}

#[test]
fn squashfs_and_sif_files_run_with_every_option() {
    let f = files();
    let lade = &f.lade;
    let bind = lade.path("bound");
    fs::create_dir_all(&bind).unwrap();
    fs::write(bind.join("note"), "from the host\n").unwrap();
    let sqfs = f.sqfs.to_str().unwrap().to_string();
    let sif = f.sif.to_str().unwrap().to_string();
    for image in [sqfs.clone(), format!("squashfs:{sqfs}"), sif.clone()] {
        let out = lade.ok([
            "run",
            &image,
            "--",
            "/bin/sh",
            "-c",
            "cat /data/hello; id -u",
        ]);
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(out, format!("hello from a squashfs\n{uid}\n"), "{image}");
        let r = lade.run(["run", &image, "--", "/bin/sh", "-c", "exit 42"]);
        assert_eq!(r.status.code(), Some(42), "{image}: {}", r.stderr);
        // --uid/--gid, --cd, --set-env, --unset-env, -b: as for a stored image.
        let out = lade.ok([
            "run",
            "--uid",
            "0",
            "--gid",
            "0",
            "--cd",
            "/data",
            "--set-env",
            "GREETING=hi",
            "--unset-env",
            "HOME",
            "-b",
            &format!("{}:/mnt/host", bind.display()),
            &image,
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g; pwd; echo $GREETING; echo ${HOME:-none}; cat /mnt/host/note; \
             ls -ld /data | cut -c1-10",
        ]);
        assert_eq!(
            out, "0\n0\n/data\nhi\nnone\nfrom the host\ndrwxr-xr-x\n",
            "{image}"
        );
        // Read-only by default; --write gives a root whose changes vanish.
        let r = lade.run(["run", &image, "--", "/bin/touch", "/data/new"]);
        assert_ne!(
            r.status.code(),
            Some(0),
            "{image}: wrote to a read-only root"
        );
        lade.ok(["run", "--write", &image, "--", "/bin/touch", "/data/new"]);
        let r = lade.run(["run", &image, "--", "/bin/cat", "/data/new"]);
        assert_ne!(r.status.code(), Some(0), "{image}: --write changes stayed");
        // --write=DIR keeps them.
        let keep = lade.path(format!("keep-{}", image.len()));
        lade.ok([
            "run",
            &format!("--write={}", keep.display()),
            &image,
            "--",
            "/bin/sh",
            "-c",
            "echo kept > /data/new",
        ]);
        assert_eq!(
            fs::read_to_string(keep.join("upper/data/new")).unwrap(),
            "kept\n"
        );
        let e = lade
            .run(["run", &image, "--", "no-such-command"])
            .fails_one_line();
        assert!(e.contains("not found in the image"), "{e}");
    }
    assert_no_server_left(&f.sqfs);
    assert_no_server_left(&f.sif);
}

#[test]
fn files_that_are_not_images_are_one_line_errors() {
    let f = files();
    let lade = &f.lade;
    let bytes = fs::read(&f.sqfs).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.sqfs",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "not a SquashFS or SIF",
        ),
        ("empty.sqfs", Vec::new(), "not a SquashFS or SIF"),
        ("cut.sqfs", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("cut-superblock.sqfs", bytes[..40].to_vec(), "truncated"),
        (
            "cut.sif",
            {
                let sif = fs::read(&f.sif).unwrap();
                sif[..sif.len() - 100].to_vec()
            },
            "truncated",
        ),
        (
            "data-only.sif",
            lade::squashfs::sif::testing::sif_with(&bytes, 3, 1),
            "no primary system partition",
        ),
        (
            "tables-garbled.sqfs",
            {
                // Everything after the superblock is noise: the server cannot even find
                // the root directory.
                let mut b = bytes.clone();
                let n = b.len();
                b[96..n].iter_mut().for_each(|x| *x = 0x5a);
                b
            },
            "squashfuse could not serve it",
        ),
    ];
    for (name, content, expected) in cases {
        let path = lade.path(name);
        fs::write(&path, content).unwrap();
        let e = lade
            .run(["run", path.to_str().unwrap(), "--", "/bin/true"])
            .fails_one_line();
        assert!(e.contains(expected), "{name}: {e}");
        assert!(
            e.contains(name),
            "{name}: the error does not name the file: {e}"
        );
        assert_no_server_left(&path);
    }
}

/// Processes of this user whose command line names `file` (the FUSE server), or whose mount
/// table has a FUSE mount of it.
fn servers_and_mounts_of(file: &Path) -> Vec<String> {
    let needle = file.to_str().unwrap();
    let mut found = Vec::new();
    let me = rustix::process::getuid().as_raw();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path();
        let Ok(status) = fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let mine = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|u| u == me.to_string());
        if !mine {
            continue;
        }
        let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("squashfuse") && cmdline.contains(needle) {
            found.push(format!("process {pid}: {cmdline}"));
        }
        let mounts = fs::read_to_string(dir.join("mountinfo")).unwrap_or_default();
        for l in mounts.lines().filter(|l| l.contains("fuse.squashfuse")) {
            if l.contains(needle) {
                found.push(format!("mount in process {pid}: {l}"));
            }
        }
    }
    found
}

/// Waits up to five seconds (a killed process takes a moment to go) for no server and no
/// mount of `file` to be left.
#[track_caller]
fn assert_no_server_left(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = servers_and_mounts_of(file);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let own = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!own.contains(file.to_str().unwrap()), "{own}");
}

/// Starts `lade run FILE -- sleep` in a process group of its own (as a shell runs a job) and
/// waits until the container is sleeping.
fn start_sleeper(lade: &Lade, file: &Path) -> std::process::Child {
    let marker = lade.path("started");
    let _ = fs::remove_file(&marker);
    let mut c = lade.cmd();
    c.args(["run", "-b"])
        .arg(format!("{}:/mnt/host", lade.scratch.path().display()))
        .arg(file)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "touch /mnt/host/started; exec sleep 7777",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !servers_and_mounts_of(file).is_empty(),
        "no server found while the container runs: the test could not see one"
    );
    child
}

#[test]
fn no_server_or_mount_outlives_the_container() {
    let f = files();
    let lade = &f.lade;
    // Normal exit.
    lade.ok(["run", f.sqfs.to_str().unwrap(), "--", "/bin/true"]);
    assert_no_server_left(&f.sqfs);

    // Ctrl-C: the terminal signals the whole foreground process group.
    let child = start_sleeper(lade, &f.sif);
    let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGINT),
        "lade should die of the container's SIGINT: {out:?}"
    );
    assert_no_server_left(&f.sif);

    // A batch system's SIGTERM to lade alone reaches the container.
    let child = start_sleeper(lade, &f.sqfs);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
    assert_no_server_left(&f.sqfs);

    // kill -9 of lade: nothing can be cleaned up by lade itself.
    let mut child = start_sleeper(lade, &f.sqfs);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_server_left(&f.sqfs);
    // ... and the container went too (it was lade's child, with PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleepers() > 0 {
        assert!(Instant::now() < deadline, "the container outlived lade");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `sleep 7777` processes the containers of these tests run.
fn sleepers() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmdline == b"sleep\x007777\x00"
        })
        .count()
}

/// Writes `text` at `rel` under `root` with `mode`, making its directory.
fn put(root: &Path, rel: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The busybox root laid out as `apptainer build` lays out an image built from a Docker image
/// (`ENV PATH=/opt/tool/bin:/usr/bin:/bin LANG=en_US.UTF-8 TOOL_HOME=/opt/tool`) and a def
/// file (`%environment` computing a value, `%runscript`). The env scripts hold the working
/// lines of Apptainer's templates (apptainer/apptainer at 917d665,
/// internal/pkg/build/sources/{01-base,90-environment,99-base,99-runtimevars}.sh, and the
/// Docker environment as `insertEnv` in conveyorPacker_oci.go writes it), without their
/// license headers. `/.singularity.d/actions/exec` is not executable and would fail if run:
/// Apptainer has not run an image's action scripts since Singularity 3.6, and lade does not
/// either (src/run/apptainer.rs).
fn apptainer_dir(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.join(name);
    fs::create_dir_all(&dir).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(busybox_dir(scratch).join("."))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_dir_all(scratch.join("busybox-root")).unwrap();
    let env = ".singularity.d/env";
    put(&dir, &format!("{env}/01-base.sh"), "#!/bin/sh\n", 0o755);
    put(
        &dir,
        &format!("{env}/10-docker2singularity.sh"),
        "#!/bin/sh\nexport PATH=\"/opt/tool/bin:/usr/bin:/bin\"\n\
         export LANG=\"${LANG:-\"en_US.UTF-8\"}\"\n\
         export TOOL_HOME=\"${TOOL_HOME:-\"/opt/tool\"}\"\n",
        0o755,
    );
    put(
        &dir,
        &format!("{env}/90-environment.sh"),
        "#!/bin/sh\n# Custom environment shell code should follow\n\n\
         export TOOL_DATA=\"$TOOL_HOME/data-$(cat /opt/tool/VERSION)\"\n\
         export PATH=\"$TOOL_HOME/extra:$PATH\"\n",
        0o755,
    );
    put(
        &dir,
        &format!("{env}/99-base.sh"),
        "#!/bin/sh\nif [ -z \"${LD_LIBRARY_PATH:-}\" ]; then\n    \
         LD_LIBRARY_PATH=\"/.singularity.d/libs\"\nelse\n    \
         LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH:/.singularity.d/libs\"\nfi\n\n\
         if [ -z \"${PS1:-}\" ]; then\n    PS1=\"Apptainer> \"\nfi\n\
         export LD_LIBRARY_PATH PS1\n",
        0o755,
    );
    put(
        &dir,
        &format!("{env}/99-runtimevars.sh"),
        "#!/bin/sh\nif [ -n \"${SING_USER_DEFINED_PATH:-}\" ]; then\n\t\
         PATH=\"${SING_USER_DEFINED_PATH}\"\nfi\nunset SING_USER_DEFINED_PATH\nexport PATH\n",
        0o755,
    );
    put(
        &dir,
        ".singularity.d/runscript",
        "#!/bin/sh\n\necho \"runscript of $APPTAINER_NAME with $# arguments: $*\"\n\
         exec tool \"$@\"\n",
        0o755,
    );
    put(
        &dir,
        ".singularity.d/actions/run",
        "#!/bin/sh\nfor script in /.singularity.d/env/*.sh; do\n    \
         if [ -f \"$script\" ]; then\n        . \"$script\"\n    fi\ndone\n\n\
         if test -x \"/.singularity.d/runscript\"; then\n    \
         exec \"/.singularity.d/runscript\" \"$@\"\nfi\n",
        0o755,
    );
    put(&dir, ".singularity.d/actions/exec", "exit 99\n", 0o644);
    put(&dir, "opt/tool/VERSION", "1.2\n", 0o644);
    put(
        &dir,
        "opt/tool/bin/tool",
        "#!/bin/sh\necho \"tool: $TOOL_DATA; args: $*\"\n",
        0o755,
    );
    dir
}

#[test]
fn apptainer_images_run_as_apptainer_runs_them() {
    let lade = Lade::new();
    let dir = apptainer_dir(&lade.scratch, "apptainer-root");
    let sqfs = lade.path("tool.sqfs");
    mksquashfs(&dir, &sqfs);
    let sif = lade.path("tool.sif");
    sif_of(&sqfs, &sif);
    let bind = lade.path("bound");
    fs::create_dir_all(&bind).unwrap();
    fs::write(bind.join("note"), "from the host\n").unwrap();
    let uid = rustix::process::getuid().as_raw();
    for file in [&sif, &sqfs] {
        let image = file.to_str().unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        // apptainer exec: the env scripts in order, the Docker PATH completed with the
        // default's directories, the def file's computed values; the command found on it.
        let out = lade.ok([
            "run",
            image,
            "--",
            "sh",
            "-c",
            "echo $PATH; echo $TOOL_DATA; echo $LANG; echo $LD_LIBRARY_PATH; \
             echo $APPTAINER_CONTAINER $SINGULARITY_NAME $APPTAINER_COMMAND; \
             echo $APPTAINER_ENVIRONMENT; tool x",
        ]);
        assert_eq!(
            out,
            format!(
                "/opt/tool/extra:/opt/tool/bin:/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:\
                 /usr/sbin:/sbin\n/opt/tool/data-1.2\nen_US.UTF-8\n/.singularity.d/libs\n\
                 {image} {name} exec\n/.singularity.d/env/91-environment.sh\n\
                 tool: /opt/tool/data-1.2; args: x\n"
            ),
            "{image}"
        );
        // apptainer run: the runscript, with no arguments ...
        let out = lade.ok(["run", image]);
        assert_eq!(
            out,
            format!("runscript of {name} with 0 arguments: \ntool: /opt/tool/data-1.2; args: \n"),
            "{image}"
        );
        // ... or with some, as `-- /.singularity.d/runscript ARGS`.
        let out = lade.ok(["run", image, "--", "/.singularity.d/runscript", "a", "b c"]);
        assert_eq!(
            out,
            format!(
                "runscript of {name} with 2 arguments: a b c\n\
                 tool: /opt/tool/data-1.2; args: a b c\n"
            ),
            "{image}"
        );
        // lade's options: --set-env wins over the image, --unset-env removes what the
        // scripts set, --uid, -b, --cd; the root stays read-only.
        let out = lade.ok([
            "run",
            "--uid",
            "0",
            "--cd",
            "/opt",
            "--set-env",
            "TOOL_DATA=mine",
            "--unset-env",
            "LD_*",
            "-b",
            &format!("{}:/mnt/host", bind.display()),
            image,
            "--",
            "sh",
            "-c",
            "id -u; pwd; echo $TOOL_DATA ${LD_LIBRARY_PATH:-unset}; cat /mnt/host/note; \
             touch /opt/new 2>/dev/null || echo read-only",
        ]);
        assert_eq!(
            out, "0\n/opt\nmine unset\nfrom the host\nread-only\n",
            "{image}"
        );
        let out = lade.ok(["run", image, "--", "id", "-u"]);
        assert_eq!(out, format!("{uid}\n"));
        // A command the image's PATH does not have: one line, exit 127 as Apptainer's.
        let r = lade.run(["run", image, "--", "no-such-command"]);
        assert_eq!(r.status.code(), Some(127), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("command 'no-such-command' not found in the image")
                && r.stderr.contains(image),
            "{}",
            r.stderr
        );
        assert_no_server_left(file);
    }
    // A file without /.singularity.d runs as before: no image environment, no default
    // command.
    let f = files();
    let plain = f.sif.to_str().unwrap();
    let out = f.lade.ok(["run", plain, "--", "sh", "-c", "echo $PATH"]);
    assert_eq!(
        out,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let e = f.lade.run(["run", plain]).fails_one_line();
    assert!(e.contains("no command given"), "{e}");
}

#[test]
fn broken_apptainer_images_are_clear_errors() {
    let lade = Lade::new();
    // No /bin/sh to run the env scripts with: one line naming the file and what is missing.
    let dir = apptainer_dir(&lade.scratch, "no-shell-root");
    fs::remove_file(dir.join("bin/sh")).unwrap();
    let sqfs = lade.path("no-shell.sqfs");
    mksquashfs(&dir, &sqfs);
    let sif = lade.path("no-shell.sif");
    sif_of(&sqfs, &sif);
    for args in [vec![], vec!["--", "/bin/busybox", "true"]] {
        let image = sif.to_str().unwrap();
        let e = lade
            .run(["run", image].into_iter().chain(args))
            .fails_one_line();
        assert!(
            e.contains(image) && e.contains("Apptainer image") && e.contains("no /bin/sh"),
            "{e}"
        );
    }
    assert_no_server_left(&sif);

    // No runscript: Apptainer's fallback, /bin/sh (here reading the empty standard input),
    // said on stderr.
    let dir = apptainer_dir(&lade.scratch, "no-runscript-root");
    fs::remove_file(dir.join(".singularity.d/runscript")).unwrap();
    let sqfs = lade.path("no-runscript.sqfs");
    mksquashfs(&dir, &sqfs);
    let r = lade.run(["run", sqfs.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("no runscript in the image") && r.stderr.contains(sqfs.to_str().unwrap()),
        "{}",
        r.stderr
    );

    // An env script that is not valid shell: the shell's error names it, and nothing runs.
    let dir = apptainer_dir(&lade.scratch, "bad-script-root");
    put(
        &dir,
        ".singularity.d/env/50-broken.sh",
        "if then fi (\n",
        0o755,
    );
    let sqfs = lade.path("bad-script.sqfs");
    mksquashfs(&dir, &sqfs);
    let r = lade.run(["run", sqfs.to_str().unwrap(), "--", "echo", "ran"]);
    assert_ne!(r.status.code(), Some(0));
    assert!(!r.stdout.contains("ran"), "{}", r.stdout);
    assert!(r.stderr.contains("50-broken.sh"), "{}", r.stderr);
}
