//! RUN, the child side (the hidden `lade build-run-step`: one command over layer trees as uid
//! 0, its changes kept in an upper directory), and what both sides agree on before the first
//! step: the `-b` binds, the host's SSH agent socket, the upper directories of dead builds.

use std::convert::Infallible;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::storage::Storage;

/// Where a RUN step finds the host's SSH agent socket (`SSH_AUTH_SOCK`, ch-image's pass-through
/// variable). The host's path is no use inside: agents put their sockets under /tmp, which a
/// build step does not share with the host. A name of lade's own directly under the root:
/// every image has that directory and it is never a symbolic link, so the mount point can
/// always be made, and it is removed from the step's layer afterwards
/// (`Builder::remove_mount_points`).
pub const SSH_AGENT_INSIDE: &str = "/.lade-ssh-agent.sock";

/// One RUN step, as the parent build hands it to `lade build-run-step`.
#[derive(Debug, Clone)]
pub struct RunStepOptions {
    /// Layer tree keys, bottom first.
    pub layers: Vec<String>,
    /// Where the step's changes are kept (an overlay upper directory, under `upper/`).
    pub upper: PathBuf,
    /// The working directory inside.
    pub cd: String,
    /// `K=V` (a bare `K` sets it empty), after the host's pass-through variables.
    pub env: Vec<String>,
    /// `SRC:DST`, both absolute (checked by the parent build).
    pub binds: Vec<String>,
    /// The host's SSH agent socket, bound at [`SSH_AGENT_INSIDE`] with `SSH_AUTH_SOCK` set to
    /// that path.
    pub ssh_auth_sock: Option<PathBuf>,
    /// `RUN --mount`s, prepared by the parent ([`super::mounts`]).
    pub mounts: Vec<crate::run::rootfs::StepMount>,
    /// `RUN --mount=type=secret,env=NAME`: NAME set to the content of the file (a copy of the
    /// secret the parent made private to the step). Read here, so that the value is never on
    /// a command line, where other users could see it.
    pub secret_env: Vec<(String, PathBuf)>,
    pub command: Vec<String>,
}

/// Runs one RUN step in this process (the child side of `Builder::run`).
pub fn run_step(storage: &Storage, a: RunStepOptions, progress: &Progress) -> Result<Infallible> {
    use crate::run::{RunImage, RunOptions, process::UserChoices, rootfs::Upper};
    // The host's pass-through variables first, so that ARG and ENV override them (Docker: ENV
    // beats a predefined ARG); in `set_env`, not `host_env`, whose list is `lade run`'s and
    // would narrow [`crate::dockerfile::passes_through`]. SSH_AUTH_SOCK is a host path: the step
    // gets the inside one below, or none.
    let mut set_env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| crate::dockerfile::passes_through(k) && k != "SSH_AUTH_SOCK")
        .collect();
    let mut binds = a
        .binds
        .iter()
        .map(|b| crate::run::parse_bind(b))
        .collect::<Result<Vec<_>>>()?;
    if let Some(sock) = a.ssh_auth_sock {
        // Looked at again for each step: the agent may have gone since the build started
        // (killed, or its session ended), which is the same harmless warning as at the start,
        // not a failed bind.
        if std::fs::metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) {
            binds.push((sock, PathBuf::from(SSH_AGENT_INSIDE)));
            set_env.push(("SSH_AUTH_SOCK".to_string(), SSH_AGENT_INSIDE.to_string()));
        } else {
            progress.warn(&format!(
                "SSH_AUTH_SOCK={}: gone since the build started; this RUN step gets no SSH agent",
                sock.display()
            ));
        }
    }
    set_env.extend(a.env.iter().map(|e| match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.clone(), String::new()),
    }));
    for (name, file) in &a.secret_env {
        let value = std::fs::read_to_string(file).ctx(|| format!("secret for ${name}"))?;
        set_env.push((name.clone(), value));
    }
    let opts = RunOptions {
        image: RunImage::Layers(a.layers),
        user: UserChoices {
            command: a.command,
            set_env,
            unset_env: Vec::new(),
            cwd: Some(a.cd),
            host_env: Vec::new(),
        },
        binds,
        upper: Upper::Keep(a.upper),
        uid: Some(0),
        gid: Some(0),
        no_home: true,
        step_mounts: a.mounts,
    };
    crate::run::run(storage, &opts)
}

/// `-b SRC[:DST]` as `SRC:DST` with both absolute; SRC must exist now, so the error names
/// the option rather than a RUN step.
pub(super) fn bind_args(binds: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in binds {
        let (src, dst) = crate::run::parse_bind(b)?;
        std::fs::metadata(&src).ctx(|| format!("-b {b}: source"))?;
        match (src.to_str(), dst.to_str()) {
            (Some(s), Some(d)) if !s.contains(':') => out.push(format!("{s}:{d}")),
            _ => {
                return Err(Error::invalid(
                    format!("-b {b}"),
                    "paths must be UTF-8, and SRC without ':'",
                ));
            }
        }
    }
    Ok(out)
}

/// The host's SSH agent socket for RUN steps: `SSH_AUTH_SOCK` made absolute, when it names a
/// socket. A stale value (the agent gone, or a session that forwarded one ended) is common
/// and harmless unless a step needs the agent, so it is a warning, not an error.
pub(super) fn ssh_agent_socket(progress: &Progress) -> Option<PathBuf> {
    let v = std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty())?;
    let path = Path::new(&v);
    let why = match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Relative is unusual but valid on the host; the bind needs the absolute path.
            match std::path::absolute(path) {
                Ok(p) => return Some(p),
                Err(e) => e.to_string(),
            }
        }
        Ok(_) => "not a socket".to_string(),
        Err(e) => e.to_string(),
    };
    progress.warn(&format!(
        "SSH_AUTH_SOCK={}: {why}; RUN steps get no SSH agent",
        path.display()
    ));
    None
}
