//! RUN, the parent side: the command line of the step (shell, exec form or heredoc script,
//! `--force=fakeroot`'s wrapper and init steps), lade itself started as the hidden `lade
//! build-run-step` over the state's layer trees (the child: [`run_step`](mod@super::run_step)),
//! and the upper directory it leaves made into a layer ([`super::layer`]).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use super::driver::{Builder, resolve_path};
use super::mounts::Prepared;
use super::{SSH_AGENT_INSIDE, config, force, layer};
use crate::builder::cache::{State, step_key};
use crate::dockerfile::{Instruction, Located, RunPlan, Scope};
use crate::error::{Error, IoContext, Result};
use crate::storage::LayerRef;

impl Builder<'_> {
    pub(super) fn run(
        &mut self,
        ins: &Located<Instruction>,
        r: &crate::dockerfile::Run,
        state: &State,
        scope: &Scope,
        forced: Option<&force::Config>,
    ) -> Result<LayerRef> {
        let at = self.where_(ins);
        if r.network
            .as_deref()
            .is_some_and(|n| n != "default" && n != "host")
        {
            self.progress.warn(&format!(
                "{at}: RUN --network ignored (the host network is used)"
            ));
        }
        let (mut argv, stdin) = match r.plan() {
            RunPlan::Exec(v) => (v, None),
            RunPlan::Shell(s) => {
                let mut v = config::shell(&state.config);
                v.push(s);
                (v, None)
            }
            RunPlan::Script { content, .. } => {
                let first = content.lines().next().unwrap_or("");
                let mut v: Vec<String> = first
                    .trim_start_matches("#!")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                if v.is_empty() {
                    v = config::shell(&state.config).into_iter().take(1).collect();
                }
                v.push("/dev/stdin".into());
                (v, Some(content))
            }
        };
        if let Some(c) = forced {
            argv = c.wrap(argv);
            self.progress
                .info(&format!("--force=fakeroot: RUN: new command: {argv:?}"));
        }
        if let Some(u) = state
            .config
            .container()
            .and_then(|c| c.user.get())
            .filter(|u| !u.is_empty() && *u != "0" && *u != "root" && *u != "0:0")
        {
            self.progress.warn(&format!(
                "{at}: RUN runs as uid 0; USER {u} applies to the image's containers only"
            ));
        }
        let mounts = self.prepare_mounts(&at, &r.mounts, state)?;
        let mut env = run_env(state, scope);
        env.extend(mounts.env.iter().cloned());
        let (status, layer) = self.run_argv(&at, state, &argv, stdin, &env, &mounts, true)?;
        match layer {
            Some(l) if status.success() => Ok(l),
            _ => Err(Error::invalid(
                at,
                format!("RUN failed with {}: {}", exit_how(status), ins.text),
            )),
        }
    }

    /// Runs `argv` over the state (lade's runtime, as uid 0, the `-b` binds and the step's
    /// `--mount`s mounted) and returns how it ended, with the layer of its changes when it
    /// succeeded and `keep`.
    #[allow(clippy::too_many_arguments)]
    fn run_argv(
        &self,
        at: &str,
        state: &State,
        argv: &[String],
        stdin: Option<String>,
        env: &[String],
        mounts: &Prepared,
        keep: bool,
    ) -> Result<(std::process::ExitStatus, Option<LayerRef>)> {
        if state.layers.is_empty() {
            return Err(Error::invalid(
                format!("{at}: RUN"),
                "the image has no files to run anything with (FROM scratch)",
            ));
        }
        // Not in the work area: `lade run` mounts its tmpfs over the store's tmp/.
        let dir = self.storage.build_tmp().create()?;
        let exe = std::env::current_exe().ctx(|| "lade's own executable".into())?;
        // The child's command line: the binary's `build-run-step` options, which it turns
        // into a [`super::RunStepOptions`].
        let mut cmd = std::process::Command::new(exe);
        cmd.args(self.storage.location_args())
            .arg("build-run-step")
            .arg("--upper")
            .arg(&dir)
            .arg("--cd")
            .arg(config::workdir(&state.config));
        for l in &state.layers {
            cmd.arg(format!("--layer={}", l.tree));
        }
        for e in env {
            cmd.arg(format!("--env={e}"));
        }
        for b in &self.binds {
            cmd.arg(format!("--bind={b}"));
        }
        if let Some(sock) = &self.ssh_auth_sock {
            // As an argument of its own: the path may hold ':' or be non-UTF-8, unlike `-b`.
            cmd.arg("--ssh-auth-sock").arg(sock);
        }
        for m in &mounts.mounts {
            let json = serde_json::to_string(m)
                .map_err(|_| Error::invalid(format!("{at}: --mount"), "paths must be UTF-8"))?;
            cmd.arg(format!("--mount={json}"));
        }
        for (name, file) in &mounts.secret_env {
            let mut arg = std::ffi::OsString::from(format!("--secret-env={name}="));
            arg.push(file);
            cmd.arg(arg);
        }
        cmd.arg("--").args(argv);
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        } else {
            cmd.stdin(std::process::Stdio::null());
        }
        let result = (|| {
            let mut child = cmd.spawn().ctx(|| format!("{at}: starting RUN"))?;
            if let (Some(content), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let _ = pipe.write_all(content.as_bytes());
            }
            let status = child.wait().ctx(|| format!("{at}: waiting for RUN"))?;
            if !status.success() || !keep {
                return Ok((status, None));
            }
            let upper = dir.join("upper");
            self.remove_mount_points(state, &upper, &mounts.targets());
            Ok((status, Some(self.commit_layer(&upper)?)))
        })();
        let _ = crate::fsutil::remove_all(&dir);
        result
    }

    /// `lade run` creates its mount points (/dev, /proc, /sys, /etc/hosts, /etc/resolv.conf)
    /// when the image lacks them: they are not the step's work, so they leave the layer.
    fn remove_mount_points(&self, state: &State, upper: &Path, step_mounts: &[String]) {
        for rel in ["dev", "proc", "sys", "etc/hosts", "etc/resolv.conf"] {
            let p = upper.join(rel);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            // An image symlink at /etc/hosts or /etc/resolv.conf is hidden by the mount point
            // during the step (`lade run` replaces it): it comes back when the file goes.
            if self.exists_in(state, rel) && !self.is_symlink_in(state, rel) {
                continue;
            }
            if m.is_dir() {
                let _ = std::fs::remove_dir(&p); // only if empty
            } else if m.is_file() && m.len() == 0 {
                let _ = std::fs::remove_file(&p);
            }
        }
        // `-b` targets the image lacked, and the parents made for them: mount points, not
        // the step's work (ch-image leaves them in the image). The SSH agent's likewise.
        let dsts = self
            .binds
            .iter()
            .map(|b| b.split_once(':').map_or(b.as_str(), |(_, d)| d))
            .chain(self.ssh_auth_sock.as_ref().map(|_| SSH_AGENT_INSIDE))
            .chain(step_mounts.iter().map(String::as_str));
        for dst in dsts {
            let mut rel = resolve_path("/", dst).trim_start_matches('/').to_string();
            while !rel.is_empty() && !self.exists_in(state, &rel) {
                let p = upper.join(&rel);
                let gone = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
                    Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
                    _ => false,
                };
                if !gone {
                    break;
                }
                rel = Path::new(&rel)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
        }
        let etc = upper.join("etc");
        if self.is_dir_in(state, "/etc") && !layer::is_opaque(&etc) {
            let _ = std::fs::remove_dir(&etc); // a copy-up left empty
        }
        self.remove_copy_ups(state, upper, step_mounts);
    }

    /// `--force=fakeroot`'s init steps before the first RUN that needs the wrapper: each
    /// check runs (its changes dropped) and, when it fails, its command runs as a layer of
    /// its own. The whole is one cache step after `key`, so a rebuild runs nothing.
    pub(super) fn fakeroot_init(
        &self,
        c: &force::Config,
        mut state: State,
        key: &str,
        scope: &Scope,
        at: &str,
    ) -> Result<(State, String)> {
        const INIT: &str = "RUN --force=fakeroot init steps";
        let inputs = format!("{}{}", c.fingerprint(), self.epoch_input());
        let k = step_key(key, "--force=fakeroot init", &inputs);
        if self.read_cache
            && let Some(s) = self.cache.get(&self.storage, &k, key, INIT)?
        {
            self.progress
                .info("--force=fakeroot: init steps: cached, nothing to do");
            return Ok((s, k));
        }
        let env = run_env(&state, scope);
        let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.to_string()];
        for (i, (check, command)) in c.init.iter().enumerate() {
            let i = i + 1;
            self.progress.info(&format!(
                "--force=fakeroot: init step {i}: checking: $ {check}"
            ));
            let none = Prepared::default();
            let (status, _) = self.run_argv(at, &state, &sh(check), None, &env, &none, false)?;
            if status.success() {
                self.progress.info(&format!(
                    "--force=fakeroot: init step {i}: exit 0, step not needed"
                ));
                continue;
            }
            self.progress
                .info(&format!("--force=fakeroot: init step {i}: $ {command}"));
            let (status, layer) =
                self.run_argv(at, &state, &sh(command), None, &env, &none, true)?;
            let Some(layer) = layer.filter(|_| status.success()) else {
                return Err(Error::invalid(
                    format!("{at}: --force=fakeroot init step {i}"),
                    format!("failed with {}: {command}", exit_how(status)),
                ));
            };
            self.push_history(
                &mut state,
                &format!("RUN --force=fakeroot init step {i}: {command}"),
                Some(layer),
            );
        }
        if self.write_cache {
            self.cache.put(&k, key, INIT, &state)?;
        }
        Ok((state, k))
    }
}

/// The environment of a RUN step: the ARGs in scope that ENV does not override, then the
/// image's ENV.
fn run_env(state: &State, scope: &Scope) -> Vec<String> {
    let env_list = config::env(&state.config);
    let mut env: Vec<String> = Vec::new();
    for (k, v) in scope.args() {
        if !env_list
            .iter()
            .any(|e| e.split('=').next() == Some(k.as_str()))
        {
            env.push(format!("{k}={v}"));
        }
    }
    env.extend(env_list);
    env
}

/// How a process ended, for messages.
fn exit_how(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}
