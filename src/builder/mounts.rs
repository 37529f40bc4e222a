//! BuildKit's `RUN --mount`, the parent side: each mount of a RUN step turned into what the
//! step's container mounts ([`StepMount`], made by [`crate::run::rootfs::mount_step_mounts`]
//! in the child), and what a mount adds to the step's cache key.
//!
//! - `type=cache`: a directory of the store's that outlives builds
//!   ([`crate::storage::cache_mounts`]), per `id` (default: the target), held with
//!   `sharing=shared|private|locked` for the step; made with `mode` (default 0755), seeded
//!   from `from`/`source` when given. Never in a layer or a cache key.
//! - `type=bind`: `source` (default the root) of the context, or of a stage or image with
//!   `from=`, read-only unless `rw`; a writable bind, or one of a context directory
//!   `.dockerignore` hides something in, mounts a private copy, discarded after the step. Its
//!   content is in the cache key, as with BuildKit: changing a bound file reruns the step.
//! - `type=secret`: a `lade build --secret` (by `id`, default the target's name) copied into
//!   a file private to the step (mode 0400 unless `mode`) and bound read-only at `target`
//!   (default `/run/secrets/ID`), or set as the variable `env=`; never in a layer, the cache
//!   key or the build's output. Missing: an error with `required=true`, else no mount.
//! - `type=tmpfs`: a fresh tmpfs (`size` bytes at most).
//! - `type=ssh`: the host's SSH agent (the one `SSH_AUTH_SOCK` names, which every RUN gets
//!   anyway), bound at `target` (default `/run/buildkit/ssh_agent.N`) with `SSH_AUTH_SOCK`
//!   pointing there.
//!
//! Relative targets are relative to the working directory, as with BuildKit. `uid` and `gid`
//! other than 0 are ignored with a warning: a RUN step is uid 0 and owns every file (lade
//! maps no other user, as ch-image). The mount points a step's root lacked are removed from
//! its layer afterwards (`Builder::remove_mount_points`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::driver::{Builder, resolve_path};
use super::files;
use crate::builder::cache::State;
use crate::dockerfile::Mount;
use crate::error::{Error, IoContext, Result};
use crate::run::rootfs::StepMount;
use crate::storage::{HeldCacheMount, Sharing};

/// A RUN step's mounts, ready for `lade build-run-step`; what it holds (cache mount locks,
/// the step's private copies) is released when it is dropped, after the step.
#[derive(Default)]
pub(super) struct Prepared {
    pub(super) mounts: Vec<StepMount>,
    /// `NAME`, and the private file holding the secret it is set to.
    pub(super) secret_env: Vec<(String, PathBuf)>,
    /// Variables the mounts set (`SSH_AUTH_SOCK` for `type=ssh`).
    pub(super) env: Vec<String>,
    _held: Vec<HeldCacheMount>,
    scratch: Option<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(d) = &self.scratch {
            let _ = crate::fsutil::remove_all(d);
        }
    }
}

impl Prepared {
    /// The targets, for removing the mount points made for them from the step's layer.
    pub(super) fn targets(&self) -> Vec<String> {
        self.mounts
            .iter()
            .map(|m| m.target().to_string_lossy().into_owned())
            .collect()
    }
}

/// A mount's target, absolute (relative ones are relative to `workdir`).
fn target_of(m: &Mount, workdir: &str) -> Option<String> {
    m.target().map(|t| resolve_path(workdir, t))
}

/// `mode=` in octal, or `default`.
fn mode_of(m: &Mount, default: u32) -> Result<u32> {
    match m.get(&["mode"]) {
        None => Ok(default),
        Some(s) => u32::from_str_radix(s, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| Error::invalid(format!("mode={s}"), "expected an octal mode")),
    }
}

/// `size=` of a tmpfs: bytes, or with a `k`, `m` or `g` suffix (powers of 1024).
fn size_of(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" | "ki" => 10,
        "m" | "mi" => 20,
        "g" | "gi" => 30,
        _ => {
            return Err(Error::invalid(
                format!("size={s}"),
                "expected bytes, or k, m, g",
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| Error::invalid(format!("size={s}"), "expected bytes, or k, m, g"))
}

fn is_true(m: &Mount, key: &str) -> bool {
    m.options
        .iter()
        .any(|(k, v)| k == key && v.as_deref().is_none_or(|v| v.eq_ignore_ascii_case("true")))
}

impl Builder<'_> {
    /// What a RUN's mounts add to its cache key: the content a bind mount shows (context
    /// files, or the state of the `from` stage or image). Caches, secrets, tmpfs and the SSH
    /// agent add nothing, as with BuildKit.
    pub(super) fn mount_inputs(&mut self, mounts: &[Mount]) -> Result<String> {
        let mut out = String::new();
        for m in mounts.iter().filter(|m| m.kind == "bind") {
            let source = m.source().unwrap_or("/");
            let what = match m.from() {
                Some(from) => format!("from:{}:{source}", self.source_root(from)?.1),
                None => {
                    self.context_source(m)?;
                    files::hash_context_path(&self.context, &self.ignore, source)?
                }
            };
            out.push_str(&format!("\nmount:{what}"));
        }
        Ok(out)
    }

    /// Prepares the mounts of a RUN step on `state`; `at` names it in messages.
    pub(super) fn prepare_mounts(
        &mut self,
        at: &str,
        mounts: &[Mount],
        state: &State,
    ) -> Result<Prepared> {
        let workdir = super::config::workdir(&state.config);
        let mut p = Prepared::default();
        let mut ssh_n = 0;
        for m in mounts {
            let located = |e: Error| super::driver::located(&format!("{at}: --mount"), e);
            for key in ["uid", "gid"] {
                if m.get(&[key]).is_some_and(|v| v.trim() != "0") {
                    self.progress.warn(&format!(
                        "{at}: --mount {key}= ignored: a RUN step is uid 0 and owns every file"
                    ));
                }
            }
            match m.kind.as_str() {
                "cache" => self.cache_mount(m, &workdir, &mut p).map_err(located)?,
                "bind" => self.bind_mount(m, &workdir, &mut p).map_err(located)?,
                "tmpfs" => {
                    let size = m.get(&["size"]).map(size_of).transpose().map_err(located)?;
                    p.mounts.push(StepMount::Tmpfs {
                        target: target_of(m, &workdir).unwrap_or_default().into(),
                        size,
                    });
                }
                "secret" => self.secret_mount(m, &workdir, &mut p).map_err(located)?,
                "ssh" => {
                    let Some(sock) = &self.ssh_auth_sock else {
                        if is_true(m, "required") {
                            return Err(Error::invalid(
                                format!("{at}: --mount=type=ssh"),
                                "no SSH agent: SSH_AUTH_SOCK names no socket",
                            ));
                        }
                        continue;
                    };
                    if m.get(&["id"]).is_some_and(|i| i != "default") {
                        self.progress.warn(&format!(
                            "{at}: --mount=type=ssh id= ignored: lade passes the agent of SSH_AUTH_SOCK"
                        ));
                    }
                    let target = target_of(m, &workdir)
                        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_n}"));
                    ssh_n += 1;
                    p.env.push(format!("SSH_AUTH_SOCK={target}"));
                    p.mounts.push(StepMount::Bind {
                        source: sock.clone(),
                        target: target.into(),
                        writable: true,
                    });
                }
                other => {
                    return Err(Error::unsupported(
                        format!("{at}: --mount=type={other}"),
                        "unknown mount type (expected bind, cache, tmpfs, secret or ssh)",
                    ));
                }
            }
        }
        Ok(p)
    }

    /// The step's private directory for copies and secrets, made on first use.
    fn scratch(&self, p: &mut Prepared) -> Result<PathBuf> {
        if let Some(d) = &p.scratch {
            return Ok(d.clone());
        }
        let d = self.storage.build_tmp().create()?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).at(&d)?;
        }
        p.scratch = Some(d.clone());
        Ok(d)
    }

    fn cache_mount(&mut self, m: &Mount, workdir: &str, p: &mut Prepared) -> Result<()> {
        let target = target_of(m, workdir).unwrap_or_default();
        let id = m.get(&["id"]).map_or_else(|| target.clone(), String::from);
        let sharing = match m.get(&["sharing"]) {
            None | Some("shared") => Sharing::Shared,
            Some("private") => Sharing::Private,
            Some("locked") => Sharing::Locked,
            Some(s) => return Err(Error::invalid(format!("sharing={s}"), "unknown mode")),
        };
        let mode = mode_of(m, 0o755)?;
        // The seed of a new cache: `source` (default the root) of the `from` stage or image.
        let seed = match m.from() {
            Some(from) => {
                let root = self.source_root(from)?.0;
                Some(self.path_in_root(&root, m.source().unwrap_or("/"))?)
            }
            None => None,
        };
        let mut init = |dir: &Path| -> Result<()> {
            if let Some(s) = &seed {
                files::copy_tree(s, dir, true, None, None)?;
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).at(dir)
        };
        let progress = self.progress;
        let waiting = || {
            progress.info(&format!(
                "waiting for cache mount {id}: another build is using it (sharing=locked)"
            ))
        };
        let held = self
            .storage
            .cache_mounts()
            .hold(&id, sharing, &mut init, &waiting)?;
        p.mounts.push(StepMount::Bind {
            source: held.path.clone(),
            target: target.into(),
            writable: !m.readonly(),
        });
        p._held.push(held);
        Ok(())
    }

    fn bind_mount(&mut self, m: &Mount, workdir: &str, p: &mut Prepared) -> Result<()> {
        let target = target_of(m, workdir).unwrap_or_default();
        let source = m.source().unwrap_or("/");
        let writable = !m.readonly();
        let (path, filter_needed) = match m.from() {
            Some(from) => {
                let root = self.source_root(from)?.0;
                (self.path_in_root(&root, source)?, false)
            }
            None => {
                let path = self.context_source(m)?;
                let hides = files::hides_any(&self.context, &self.ignore, &path);
                (path, hides)
            }
        };
        // A writable bind's changes are discarded, and a context directory with ignored files
        // must not show them: both get a private copy.
        let path = if writable || filter_needed {
            let copy = self.scratch(p)?.join(format!("bind.{}", p.mounts.len()));
            let filter = (m.from().is_none()).then_some(files::Filter {
                root: &self.context,
                ignore: &self.ignore,
            });
            files::copy_tree(&path, &copy, true, None, filter)?;
            copy
        } else {
            path
        };
        p.mounts.push(StepMount::Bind {
            source: path,
            target: target.into(),
            writable,
        });
        Ok(())
    }

    fn secret_mount(&mut self, m: &Mount, workdir: &str, p: &mut Prepared) -> Result<()> {
        let target = target_of(m, workdir);
        let id = match (m.get(&["id"]), &target) {
            (Some(i), _) => i.to_string(),
            (None, Some(t)) => Path::new(t)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        if id.is_empty() {
            return Err(Error::invalid("type=secret", "needs an id or a target"));
        }
        let Some(source) = self.secrets.get(&id) else {
            if is_true(m, "required") {
                return Err(Error::invalid(
                    format!("secret {id}"),
                    format!("required, and not given (lade build --secret id={id},src=FILE)"),
                ));
            }
            return Ok(());
        };
        let value = source.read(&id)?;
        let mode = mode_of(m, 0o400)?;
        let file = self
            .scratch(p)?
            .join(format!("secret.{}", p.mounts.len() + p.secret_env.len()));
        write_private(&file, &value, mode)?;
        let env = m.get(&["env"]);
        if let Some(name) = env {
            p.secret_env.push((name.to_string(), file.clone()));
        }
        // With `env=`, a file too only when a target is named (BuildKit's rule).
        if env.is_none() || target.is_some() {
            let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
            p.mounts.push(StepMount::Bind {
                source: file,
                target: target.into(),
                writable: false,
            });
        }
        Ok(())
    }

    /// The directories of the state that making the mount points under them copied up into
    /// `upper` (a step's changes) and that are otherwise unchanged: empty, not opaque, with
    /// the state's mode. They would put a directory whose only change is its time into the
    /// layer, which a step without the mount would not have.
    pub(super) fn remove_copy_ups(&self, state: &State, upper: &Path, targets: &[String]) {
        for t in targets {
            let mut rel = Path::new(resolve_path("/", t).trim_start_matches('/'))
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            while !rel.as_os_str().is_empty() {
                let r = rel.to_string_lossy().into_owned();
                let dir = upper.join(&rel);
                if std::fs::symlink_metadata(&dir).is_err() {
                    // Not in the upper directory (never made, or removed as a mount point).
                    rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                    continue;
                }
                let unchanged = self.dir_mode_in(state, &r).is_some_and(|mode| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::symlink_metadata(&dir)
                        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 == mode)
                        && !super::layer::is_opaque(&dir)
                });
                // remove_dir fails unless empty, which is the last condition.
                if !unchanged || std::fs::remove_dir(&dir).is_err() {
                    break;
                }
                rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            }
        }
    }

    /// The context path a bind mount without `from` shows: its `source` (default the whole
    /// context), which must be there and, links followed, stay inside the context.
    fn context_source(&self, m: &Mount) -> Result<PathBuf> {
        let source = m.source().unwrap_or("/");
        let what = format!("type=bind,source={source}");
        let lexical = self
            .context
            .join(resolve_path("/", source).trim_start_matches('/'));
        if std::fs::symlink_metadata(&lexical).is_err() {
            return Err(Error::invalid(
                what,
                "no such file or directory in the build context",
            ));
        }
        match self.path_in_root(&self.context, source) {
            Err(Error::Invalid { why, .. }) => Err(Error::invalid(what, why)),
            other => other,
        }
    }

    /// `rel` in the directory `root` (the context, or a flattened stage), symbolic links
    /// followed, which must stay inside `root`.
    fn path_in_root(&self, root: &Path, rel: &str) -> Result<PathBuf> {
        let lexical = root.join(resolve_path("/", rel).trim_start_matches('/'));
        let real = std::fs::canonicalize(&lexical).ctx(|| format!("source {rel}"))?;
        let real_root = std::fs::canonicalize(root).at(root)?;
        if !real.starts_with(&real_root) {
            return Err(Error::invalid(
                format!("source {rel}"),
                "leads outside the directory it is taken from (a symbolic link)",
            ));
        }
        Ok(real)
    }
}

/// Writes `bytes` to a new file `path` with `mode`, readable by nobody else in between.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    f.write_all(bytes).at(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).at(path)
}

/// The build's `--secret`s, by id.
pub(super) type Secrets = HashMap<String, super::secrets::SecretSource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_sizes() {
        assert_eq!(size_of("4096").unwrap(), 4096);
        assert_eq!(size_of("64m").unwrap(), 64 << 20);
        assert_eq!(size_of("1G").unwrap(), 1 << 30);
        assert_eq!(size_of("2KiB").unwrap(), 2048);
        assert!(size_of("lots").is_err());
        assert!(size_of("5t").is_err());
    }
}
