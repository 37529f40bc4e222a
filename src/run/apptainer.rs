//! Running a single-file image that Apptainer (or Singularity) built, as `apptainer exec` and
//! `apptainer run` do: lade's own copy of Apptainer's action script, run by the image's
//! `/bin/sh`, sources the image's `/.singularity.d/env/*.sh` in lexical order, then runs the
//! command (`lade run FILE -- CMD ARGS`, Apptainer's `exec`) or the image's runscript (`lade
//! run FILE`, Apptainer's `run` without arguments; `lade run FILE --
//! /.singularity.d/runscript ARGS` passes it arguments).
//!
//! Why a script of lade's and not the image's `/.singularity.d/actions/exec`: Apptainer
//! itself has not run those since Singularity 3.6. Its runtime interprets an action script
//! of its own (`internal/pkg/util/fs/files/action_script.sh`, in an interpreter built into
//! Apptainer), which sources the same env scripts with two additions the image's copies lack
//! (the default PATH's directories appended after the Docker environment, the host's
//! variables restored where the scripts set nothing). An image's `actions/` may be an old
//! Singularity 2 version, or broken, and Apptainer runs the image all the same; so does lade.
//! The env scripts are shell and may compute values (`export PATH=/opt/x/bin:$PATH`, `$(...)`),
//! so a shell runs them; lade has none of its own inside the container, hence the image's
//! `/bin/sh` (every image `apptainer build` makes from a def file or a Docker image with a
//! shell has one). Apptainer's built-in interpreter also runs images without any shell
//! (distroless); lade refuses those with an error naming the file rather than running the
//! command without the environment the image declares: that would silently run other
//! programs (the system's `python` instead of the image's conda one) with other libraries.
//!
//! The environment, in Apptainer's order: the scripts run with HOME, the default PATH and
//! Apptainer's variables (below) only, as Apptainer clears the host's (but HOME) before
//! sourcing; then
//! the host's pass-through variables come back where the scripts set none (Apptainer restores
//! every host variable; lade passes only those of [`super::process`]'s list, as for every
//! image); then `--set-env` (Apptainer's `--env`, which it injects after `99-base.sh`), then
//! `--unset-env`, whose globs are matched by the shell (`*`, `?` and `[...]` as lade's).
//!
//! Apptainer's variables set for the scripts and the command: `APPTAINER_CONTAINER` and
//! `SINGULARITY_CONTAINER` (the image file's absolute path on the host, for a stored SIF its
//! blob), `APPTAINER_NAME` and `SINGULARITY_NAME` (that path's last component),
//! `APPTAINER_COMMAND` (`exec` or `run`), and `APPTAINER_ENVIRONMENT` and
//! `SINGULARITY_ENVIRONMENT` (`/.singularity.d/env/91-environment.sh`, as Apptainer sets
//! them). Not done: SCIF apps (`--app`), and the `/.singularity.d/libs` handling of `--nv`.

use std::path::Path;

use super::process::{DEFAULT_PATH, PASS_THROUGH, ProcessSpec, UserChoices};
use crate::error::{Error, Result};

/// Sources the env scripts as Apptainer's action script does: `fixpath` appends the default
/// PATH's directories that PATH lacks after the Docker environment (whose PATH replaces the
/// default one), and gives a PATH to `90-environment.sh` when none is set; images older than
/// Singularity 2.3 have a single `/environment` instead.
const SOURCE_ENV_SCRIPTS: &str = r#"__lade_fixpath() {
    if [ -z "${PATH:-}" ]; then
        PATH=@DEFAULT_PATH@
    else
        for __lade_dir in @DEFAULT_DIRS@; do
            case ":$PATH:" in
            *":$__lade_dir:"*) ;;
            *) PATH="$PATH:$__lade_dir" ;;
            esac
        done
    fi
    export PATH
}
if [ -d /.singularity.d/env ]; then
    for __lade_script in /.singularity.d/env/*.sh; do
        if [ -f "$__lade_script" ]; then
            case "$__lade_script" in
            /.singularity.d/env/90-environment.sh)
                [ -n "${PATH+set}" ] || __lade_fixpath
                . "$__lade_script"
                ;;
            /.singularity.d/env/10-docker2singularity.sh|/.singularity.d/env/10-docker.sh)
                . "$__lade_script"
                __lade_fixpath
                ;;
            *)
                . "$__lade_script"
                ;;
            esac
        fi
    done
elif [ -f /environment ]; then
    . /environment
    __lade_fixpath
fi
"#;

/// Unsets every exported variable whose name matches the shell pattern `$__lade_pattern`.
const UNSET_MATCHING: &str = r#"__lade_names=$(export -p | while IFS= read -r __lade_line; do
    case "$__lade_line" in
    "export "*|"declare -x "*)
        __lade_line=${__lade_line#export }
        __lade_line=${__lade_line#declare -x }
        printf '%s\n' "${__lade_line%%=*}"
        ;;
    esac
done)
for __lade_name in $__lade_names; do
    case "$__lade_name" in
    $__lade_pattern) unset "$__lade_name" ;;
    esac
done
"#;

/// `apptainer exec`: the command, looked up on the PATH the scripts made.
const EXEC: &str = r#"case "$1" in
*/*) [ -e "$1" ] ;;
*) command -v "$1" >/dev/null 2>&1 ;;
esac || {
    printf "lade: error: command '%s' not found in the image %s (PATH=%s)\n" "$1" @FILE@ "$PATH" >&2
    exit 127
}
exec "$@"
"#;

/// `apptainer run`: the runscript, else Apptainer's fallbacks.
const RUN: &str = r#"if [ -x /.singularity.d/runscript ]; then
    exec /.singularity.d/runscript "$@"
elif [ -x /apptainer ]; then
    exec /apptainer "$@"
fi
echo "lade: warning: no runscript in the image "@FILE@" (/.singularity.d/runscript), running /bin/sh" >&2
exec /bin/sh "$@"
"#;

/// The shell that runs the scripts: the image's.
const SHELL: &str = "/bin/sh";

/// Where Apptainer points `APPTAINER_ENVIRONMENT`.
const ENVIRONMENT_FILE: &str = "/.singularity.d/env/91-environment.sh";

/// The process for the Apptainer image `file` (its path on the host): the image's `/bin/sh`
/// running lade's action script, with the command as its arguments.
pub fn process_spec(file: &Path, user: &UserChoices) -> Result<ProcessSpec> {
    let action = if user.command.is_empty() {
        "run"
    } else {
        "exec"
    };
    let container = file.display().to_string();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| container.clone());
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some((_, home)) = user.host_env.iter().find(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), home.clone()));
    }
    env.push(("PATH".into(), DEFAULT_PATH.into()));
    for prefix in ["APPTAINER", "SINGULARITY"] {
        env.push((format!("{prefix}_CONTAINER"), container.clone()));
        env.push((format!("{prefix}_NAME"), name.clone()));
    }
    env.push(("APPTAINER_COMMAND".into(), action.into()));

    let mut script = String::from("# lade's Apptainer action script (see src/run/apptainer.rs)\n");
    script.push_str(
        &SOURCE_ENV_SCRIPTS
            .replace("@DEFAULT_PATH@", DEFAULT_PATH)
            .replace("@DEFAULT_DIRS@", &DEFAULT_PATH.replace(':', " ")),
    );
    for (k, v) in &user.host_env {
        if k != "HOME" && PASS_THROUGH.contains(&k.as_str()) {
            script.push_str(&format!(
                "[ -n \"${{{k}+set}}\" ] || export {k}={}\n",
                quote(v)
            ));
        }
    }
    let unset = user
        .unset_env
        .iter()
        .map(|pattern| {
            globset::Glob::new(pattern)
                .map(|g| g.compile_matcher())
                .map_err(|e| Error::invalid(format!("--unset-env '{pattern}'"), e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    for (k, v) in &user.set_env {
        if is_variable_name(k) {
            script.push_str(&format!("export {k}={}\n", quote(v)));
        } else if !unset.iter().any(|g| g.is_match(k)) {
            // No script can set such a name: it passes through the shell untouched.
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
    }
    for prefix in ["APPTAINER", "SINGULARITY"] {
        script.push_str(&format!(
            "export {prefix}_ENVIRONMENT={}\n",
            quote(ENVIRONMENT_FILE)
        ));
    }
    for pattern in &user.unset_env {
        script.push_str(&format!("__lade_pattern={}\n", quote(pattern)));
        script.push_str(UNSET_MATCHING);
    }
    // The file named literally: `--unset-env` may have removed APPTAINER_CONTAINER.
    let command = if action == "run" { RUN } else { EXEC };
    script.push_str(&command.replace("@FILE@", &quote(&container)));

    let mut argv = vec![
        SHELL.to_string(),
        "-c".into(),
        script,
        format!("lade {action}"),
    ];
    argv.extend(user.command.iter().cloned());
    let cwd = user.cwd.clone().unwrap_or_else(|| "/".to_string());
    Ok(ProcessSpec { argv, env, cwd })
}

/// The error for an Apptainer image whose shell could not be started; called inside the
/// container, where `/bin/sh` is the image's.
pub fn shell_error(file: &Path, err: &std::io::Error) -> Error {
    let what = format!("{} (an Apptainer image)", file.display());
    let needed = "lade runs its /.singularity.d/env scripts with it";
    let why = match err.raw_os_error() {
        Some(libc::ENOENT) if std::fs::symlink_metadata(SHELL).is_err() => {
            format!("it has no {SHELL}; {needed}")
        }
        Some(libc::ENOENT) => format!(
            "its {SHELL} cannot start: a symbolic link's target or its program interpreter is \
             missing; {needed}"
        ),
        Some(libc::EACCES) => format!("its {SHELL} is not executable; {needed}"),
        _ => format!("cannot start its {SHELL}: {err}; {needed}"),
    };
    Error::invalid(what, why)
}

/// A name a POSIX shell can assign.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `value` as one single-quoted shell word, taken literally.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::super::process::tests::user;
    use super::*;

    /// The paths in the script are absolute, so the env scripts themselves are sourced only
    /// inside images, in the integration tests (tests/cluster_run.rs).
    #[test]
    fn exec_and_run_arguments() {
        let spec = process_spec(Path::new("/data/x.sif"), &user(&["python", "-V"])).unwrap();
        assert_eq!(spec.argv[0], "/bin/sh");
        assert_eq!(spec.argv[1], "-c");
        assert_eq!(&spec.argv[3..], ["lade exec", "python", "-V"]);
        assert!(spec.argv[2].ends_with("exec \"$@\"\n"));
        let get = |k: &str| {
            spec.env
                .iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("APPTAINER_CONTAINER").as_deref(), Some("/data/x.sif"));
        assert_eq!(get("SINGULARITY_NAME").as_deref(), Some("x.sif"));
        assert_eq!(get("APPTAINER_COMMAND").as_deref(), Some("exec"));
        assert_eq!(get("PATH").as_deref(), Some(DEFAULT_PATH));
        assert_eq!(spec.cwd, "/");

        let spec = process_spec(Path::new("/data/x.sif"), &user(&[])).unwrap();
        assert_eq!(&spec.argv[3..], ["lade run"]);
        assert!(spec.argv[2].ends_with("exec /bin/sh \"$@\"\n"));
    }

    #[test]
    fn values_are_quoted_and_odd_names_pass_through() {
        let mut u = user(&["true"]);
        for (k, v) in [("A", "it's $(x)"), ("not-a-name", "v")] {
            u.set_env.push((k.into(), v.into()));
        }
        for (k, v) in [("LANG", "C.UTF-8"), ("LD_PRELOAD", "evil.so")] {
            u.host_env.push((k.into(), v.into()));
        }
        let spec = process_spec(Path::new("/x.sif"), &u).unwrap();
        let script = &spec.argv[2];
        assert!(script.contains(r"export A='it'\''s $(x)'"), "{script}");
        assert!(script.contains("[ -n \"${LANG+set}\" ] || export LANG='C.UTF-8'"));
        assert!(!script.contains("LD_PRELOAD"));
        assert!(spec.env.contains(&("not-a-name".into(), "v".into())));
        assert!(!script.contains("not-a-name"));
    }

    /// Runs `spec` with `shell` (a command line) in place of the image's `/bin/sh`.
    fn run_with(shell: &[&str], spec: &ProcessSpec) -> std::process::Output {
        std::process::Command::new(shell[0])
            .args(&shell[1..])
            .args(&spec.argv[1..])
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    #[test]
    fn the_script_runs_in_the_shells_images_have() {
        // Without env scripts (no /.singularity.d on the host): the shell syntax, the quoting,
        // the unset patterns and the missing-command check, in dash (Debian's and Ubuntu's
        // /bin/sh), bash (Red Hat's) and busybox (Alpine's), those of them this host has.
        let mut u = user(&["sh", "-c", "echo \"$A|${B-unset}|${KEEP-gone}\""]);
        u.set_env = vec![
            ("A".into(), "it's $(x)".into()),
            ("B".into(), "b".into()),
            ("KEEP".into(), "k".into()),
        ];
        u.unset_env = vec!["B*".into()];
        let spec = process_spec(Path::new("/x.sif"), &u).unwrap();
        let missing = process_spec(Path::new("/x.sif"), &user(&["no-such-command"])).unwrap();
        let missing_path = process_spec(Path::new("/x.sif"), &user(&["/no/such"])).unwrap();
        let shells: [&[&str]; 3] = [&["dash"], &["bash", "--posix"], &["busybox", "sh"]];
        let mut ran = 0;
        for shell in shells {
            let found = std::process::Command::new(shell[0])
                .args(&shell[1..])
                .args(["-c", "true"])
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                continue;
            }
            ran += 1;
            let out = run_with(shell, &spec);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "it's $(x)|unset|k\n",
                "{shell:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for (spec, name) in [(&missing, "no-such-command"), (&missing_path, "/no/such")] {
                let out = run_with(shell, spec);
                assert_eq!(out.status.code(), Some(127), "{shell:?}");
                let expected =
                    format!("lade: error: command '{name}' not found in the image /x.sif");
                assert!(
                    String::from_utf8_lossy(&out.stderr).starts_with(&expected),
                    "{shell:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        assert!(ran > 0, "no POSIX shell found");
    }

    #[test]
    fn names() {
        assert!(is_variable_name("_A1"));
        assert!(!is_variable_name("1A"));
        assert!(!is_variable_name(""));
        assert!(!is_variable_name("A-B"));
    }
}
