//! The build driver: the stages in order, each instruction's cache key and lookup, and the
//! dispatch of a missed step to the part that executes it ([`super::config`], [`super::run`],
//! [`super::files`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{commit, config, fetch, files, force, layer};
use crate::builder::cache::{BuildCache, State, step_key};
use crate::digest::Digest;
use crate::dockerfile::{ArgDecl, Dockerfile, Instruction, Located, RunPlan, Scope, scope_error};
use crate::error::{Error, IoContext, Result};
use crate::platform::ArchChoice;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::{LayerRef, Storage};
use crate::transport;

/// One build's state while it runs.
pub(super) struct Builder<'a> {
    pub(super) storage: Arc<Storage>,
    pub(super) cache: BuildCache,
    pub(super) read_cache: bool,
    pub(super) write_cache: bool,
    pub(super) progress: &'a Progress,
    pub(super) registry: transport::registry::Options,
    /// How FROM's registry tags are resolved (the project's tag lock file).
    pub(super) pins: crate::pull::TagPins,
    pub(super) arch: ArchChoice,
    pub(super) context: PathBuf,
    pub(super) df: Dockerfile,
    /// Instructions announced so far (the `N.` / `N*` numbers).
    pub(super) n: usize,
    /// Each finished stage's state and key, for `FROM stage` and `COPY --from`.
    pub(super) stages: Vec<(State, String)>,
    /// Flattened roots of stages and images that `COPY --from` reads, by state key.
    pub(super) flat: HashMap<String, PathBuf>,
    /// Directories of a staging tree to give their final modes once it is written.
    pub(super) dirs_to_restore: std::cell::RefCell<Vec<(PathBuf, u32)>>,
    /// Files that ADD downloaded during this build, by URL (each in a scratch directory of
    /// its own, under the URL's file name).
    pub(super) fetched: std::cell::RefCell<HashMap<String, fetch::Fetched>>,
    /// The context's `.dockerignore`.
    pub(super) ignore: crate::dockerfile::ignore::Ignore,
    /// `--force=fakeroot`.
    pub(super) force: bool,
    /// Whether a failed RUN looks for what `--force` would have changed.
    pub(super) force_detect: bool,
    /// `-b` as `SRC:DST` with both absolute, for `lade build-run-step --bind`.
    pub(super) binds: Vec<String>,
    /// The host's SSH agent socket, bound into every RUN at [`super::SSH_AGENT_INSIDE`].
    pub(super) ssh_auth_sock: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH` as given by the caller (`--timestamp`, `--build-arg`, the
    /// environment); the build's own value ([`Builder::epoch`]) is known once the global ARGs
    /// are (a Dockerfile may give a default there, as with BuildKit).
    pub(super) caller_epoch: Option<u64>,
    /// The build's `SOURCE_DATE_EPOCH`: every time written into layers and the config is
    /// clamped to it ([`super::layer`], [`Builder::created`]).
    pub(super) epoch: Option<u64>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub(super) secrets: super::mounts::Secrets,
}

/// ARG instructions before the first FROM, expanded in the global scope.
pub(super) fn expand_args(
    df: &Dockerfile,
    a: &Located<Vec<ArgDecl>>,
    scope: &Scope,
) -> Result<Vec<ArgDecl>> {
    let ins = Located {
        line: a.line,
        end_line: a.end_line,
        text: a.text.clone(),
        value: Instruction::Arg(a.value.clone()),
    };
    match ins.expand(df, &|v| scope.get(v))? {
        Instruction::Arg(d) => Ok(d),
        _ => unreachable!("ARG expands to ARG"),
    }
}

impl Builder<'_> {
    /// Every stage, then the image of the last one, named `tag`; returns the number of
    /// instructions.
    pub(super) fn build_all(&mut self, scope: &mut Scope, tag: &Reference) -> Result<usize> {
        let df = self.df.clone();
        for a in &df.pre_from_args {
            self.n += 1;
            let decls = expand_args(&df, a, scope)?;
            scope
                .declare_args(&decls)
                .map_err(scope_error(&df, a.line))?;
            self.announce(true, &a.text);
        }
        self.epoch = match scope.get_global(super::SOURCE_DATE_EPOCH) {
            Some(v) => Some(super::parse_epoch(
                &format!("{}: ARG {}={v}", df.file_name, super::SOURCE_DATE_EPOCH),
                &v,
            )?),
            None => self.caller_epoch,
        };
        for si in 0..df.stages.len() {
            let done = self.stage(si, scope)?;
            self.stages.push(done);
        }
        let (state, _) = self
            .stages
            .last()
            .cloned()
            .ok_or_else(|| Error::invalid(&df.file_name, "no FROM instruction"))?;
        let manifest = commit::commit_image(self, state, tag)?;
        // The image's link into the cache (its final state first), for `build-cache --tree`,
        // `--gc` and `undelete`.
        let refs = self.storage.image_links();
        if self.write_cache {
            let keys = self.stages.iter().rev().map(|(_, k)| k.clone()).collect();
            refs.link(tag, &manifest, keys)?;
        } else {
            refs.unlink(tag)?;
        }
        Ok(self.n)
    }

    /// `  N. TEXT` for an executed instruction, `  N* TEXT` for a cache hit, as ch-image.
    pub(super) fn announce(&self, hit: bool, text: &str) {
        let mark = if hit { '*' } else { '.' };
        self.progress.result(&format!("{:3}{mark} {text}", self.n));
    }

    /// `FILE:LINE` of an instruction, for messages.
    pub(super) fn where_(&self, ins: &Located<Instruction>) -> String {
        format!("{}:{}", self.df.file_name, ins.line)
    }

    fn stage(&mut self, si: usize, scope: &mut Scope) -> Result<(State, String)> {
        let df = self.df.clone();
        let stage = &df.stages[si];
        let from = stage.from.expand(&df, &|v| scope.get_global(v))?;
        self.n += 1;
        let (mut state, mut key, hit) = self.base(&from.image, si)?;
        self.announce(hit, &stage.from.text);
        if from.platform.is_some() {
            self.progress.warn(&format!(
                "{}:{}: FROM --platform ignored",
                df.file_name, stage.from.line
            ));
        }
        // The base image's ONBUILD triggers run first, as Docker does, and are not inherited.
        let mut steps = if key.starts_with("image:") {
            self.onbuild_triggers(&mut state, stage.from.line, &from.image)?
        } else {
            Vec::new()
        };
        steps.extend(stage.instructions.iter().cloned());
        let env = config::env(&state.config);
        scope.begin_stage(env.iter().map(String::as_str));
        for (k, v) in &from.args {
            scope
                .declare_args(&[ArgDecl {
                    name: k.clone(),
                    default: Some(v.clone()),
                }])
                .map_err(scope_error(&df, stage.from.line))?;
        }
        let mut cmd_set = false;
        // The distribution's workarounds, looked for only when --force or its hint may use
        // them; `init_done` once its init steps are in the state.
        let fakeroot = if self.force || self.force_detect {
            force::detect(|p| self.read_file_in(&state, p))
        } else {
            None
        };
        if self.force {
            match fakeroot {
                Some(c) => self.progress.info(&format!(
                    "--force=fakeroot: will use: {}: {}",
                    c.tag, c.name
                )),
                None if steps.iter().any(|s| matches!(s.value, Instruction::Run(_))) => {
                    self.progress.warn(&format!(
                        "{}:{}: --force=fakeroot: no suitable configuration for this image; RUN steps are left as they are",
                        df.file_name, stage.from.line
                    ))
                }
                None => {}
            }
        }
        let mut init_done = false;
        for ins in &steps {
            self.n += 1;
            let x = ins.expand(&df, &|v| scope.get(v))?;
            match &x {
                Instruction::Arg(d) => scope.declare_args(d),
                Instruction::Env(kv) => scope.set_env(kv),
                _ => Ok(()),
            }
            .map_err(scope_error(&df, ins.line))?;
            // The configuration whose wrapper this RUN gets (with --force), or whose hint it
            // gets on failure (without).
            let wants_fakeroot = match (&x, fakeroot) {
                (Instruction::Run(r), Some(c)) if c.wants(run_words(&r.plan()).into_iter()) => {
                    Some(c)
                }
                _ => None,
            };
            let forced = wants_fakeroot.filter(|_| self.force);
            if let Some(c) = forced
                && !init_done
            {
                (state, key) = self.fakeroot_init(c, state, &key, scope, &self.where_(ins))?;
                init_done = true;
            }
            let mut inputs = self.inputs(&x).map_err(|e| located(&self.where_(ins), e))?;
            if let Some(c) = forced {
                inputs.push('\n');
                inputs.push_str(&c.fingerprint());
            }
            let args: Vec<String> = scope
                .args()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let k = step_key(
                &key,
                &x.to_string(),
                &format!(
                    "{}\n{inputs}{}",
                    serde_json::to_string(&args).unwrap_or_default(),
                    self.epoch_input()
                ),
            );
            let cached = if self.read_cache {
                self.cache.get(&self.storage, &k, &key, &ins.text)?
            } else {
                None
            };
            let entrypoint_resets_cmd = matches!(x, Instruction::Entrypoint(_)) && !cmd_set;
            if matches!(x, Instruction::Cmd(_)) {
                cmd_set = true;
            }
            if let Some(s) = cached {
                self.announce(true, &ins.text);
                state = s;
            } else {
                self.announce(false, &ins.text);
                let done = self.execute(ins, &x, state, scope, entrypoint_resets_cmd, forced);
                if done.is_err()
                    && !self.force
                    && self.force_detect
                    && let Some(c) = wants_fakeroot
                {
                    self.progress.info(&format!(
                        "build failed: --force=fakeroot may fix it ({}: {})",
                        c.tag, c.name
                    ));
                }
                state = done?;
                if self.write_cache {
                    self.cache.put(&k, &key, &ins.text, &state)?;
                }
            }
            key = k;
        }
        Ok((state, key))
    }

    /// What a step reads besides its parent state: hashes of context files, or the state of a
    /// `--from` stage or image.
    fn inputs(&mut self, x: &Instruction) -> Result<String> {
        let (f, from) = match x {
            Instruction::Copy(c) => (&c.files, c.from.as_deref()),
            Instruction::Add(a) => {
                let mut urls = String::new();
                let checksum = fetch::add_checksum(a)?;
                for s in &a.files.sources {
                    if let crate::dockerfile::Source::Url(u) = s {
                        let d = &a.files.dest;
                        if d.ends_with('/') || d == "." || d.ends_with("/.") {
                            fetch::file_name(u)?; // before downloading: the file needs a name
                        }
                        // With a checksum the content is known without downloading it.
                        let d = match &checksum {
                            Some(c) => c.clone(),
                            None => self.fetch_url(u, None)?.digest,
                        };
                        urls.push_str(&format!("url:{u}:{d}\n"));
                    }
                }
                return Ok(format!(
                    "{urls}{}",
                    files::hash_sources(&self.context, &self.ignore, &a.files)?
                ));
            }
            Instruction::Run(r) => return self.mount_inputs(&r.mounts),
            _ => return Ok(String::new()),
        };
        match from {
            Some(from) => Ok(format!("from:{}", self.source_root(from)?.1)),
            None => files::hash_sources(&self.context, &self.ignore, f),
        }
    }

    /// Executes one instruction on `state` and returns the next state.
    fn execute(
        &mut self,
        ins: &Located<Instruction>,
        x: &Instruction,
        mut state: State,
        scope: &Scope,
        entrypoint_resets_cmd: bool,
        forced: Option<&'static force::Config>,
    ) -> Result<State> {
        let layer: Option<LayerRef> = match x {
            Instruction::Arg(_) => return Ok(state),
            Instruction::Workdir(w) => self.workdir(&mut state, w)?,
            Instruction::Run(r) => Some(self.run(ins, r, &state, scope, forced)?),
            Instruction::Copy(c) => Some(self.copy(ins, c, &state)?),
            Instruction::Add(a) => Some(self.add(ins, a, &state)?),
            config_only => {
                config::apply(&mut state.config, config_only, entrypoint_resets_cmd);
                None
            }
        };
        self.push_history(&mut state, &ins.text, layer);
        Ok(state)
    }

    /// WORKDIR: the directory made (a layer) if the image lacks it, and the config's working
    /// directory set.
    fn workdir(&self, state: &mut State, w: &str) -> Result<Option<LayerRef>> {
        let dir = resolve_path(&config::workdir(&state.config), w);
        let mut layer = None;
        if !self.is_dir_in(state, &dir) {
            let tree = self.storage.scratch_path("build-tree");
            let target = tree.join(dir.trim_start_matches('/'));
            std::fs::create_dir_all(&tree).at(&tree)?;
            files::prepare_dirs(self, state, &tree, &dir)?;
            std::fs::create_dir_all(&target).at(&target)?;
            self.restore_dir_modes()?;
            layer = Some(self.commit_layer(&tree)?);
        }
        state.config.container_mut().working_dir.set(dir);
        Ok(layer)
    }

    /// When a step happens, for its history entry and the image's `created`: now, or the
    /// build's `SOURCE_DATE_EPOCH`.
    pub(super) fn created(&self) -> String {
        config::rfc3339(self.epoch.unwrap_or_else(config::now_secs))
    }

    /// Appends the history entry of a step that happened now (see [`Builder::created`]). A
    /// layer with no entries (a RUN that wrote only into its mounts, or nothing) is left out,
    /// the entry saying `empty_layer`, as BuildKit does: it would change nothing, and the same
    /// empty tree twice in one image is refused by overlayfs (a lower directory given twice
    /// is ELOOP), so `lade run` and later RUN steps could not stack it.
    pub(super) fn push_history(&self, state: &mut State, text: &str, layer: Option<LayerRef>) {
        let layer = layer.filter(|l| {
            self.storage
                .layers()
                .info(&l.tree)
                .map_or(true, |i| i.entries > 0)
        });
        config::push_history(state, text, layer, self.created());
    }

    /// A step's staging tree or upper directory made a layer, its times clamped to the
    /// build's `SOURCE_DATE_EPOCH` if it has one.
    pub(super) fn commit_layer(&self, tree: &std::path::Path) -> Result<LayerRef> {
        layer::commit_tree(&self.storage, tree, self.epoch)
    }

    /// What a step's cache key holds of `SOURCE_DATE_EPOCH`: nothing without one (so that
    /// the keys of ordinary builds do not change), else the epoch, since a step's layer and
    /// history hold it.
    pub(super) fn epoch_input(&self) -> String {
        self.epoch
            .map_or_else(String::new, |e| format!("\nsource-date-epoch:{e}"))
    }

    /// The file ADD downloads from `url`, fetched once per build.
    pub(super) fn fetch_url(&self, url: &str, checksum: Option<&Digest>) -> Result<fetch::Fetched> {
        if let Some(f) = self.fetched.borrow().get(url) {
            return Ok(f.clone());
        }
        let dir = self.storage.scratch_path("build-url");
        std::fs::create_dir_all(&dir).at(&dir)?;
        // A URL with no file name in it still downloads: its destination names the file.
        let name = fetch::file_name(url).unwrap_or_else(|_| "download".into());
        self.progress.info(&format!("downloading {url}"));
        let got = match fetch::fetch(url, &dir.join(name), checksum, &self.registry) {
            Ok(g) => g,
            Err(e) => {
                let _ = crate::fsutil::remove_all(&dir);
                return Err(e);
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            // Docker gives downloaded files mode 0600.
            std::fs::set_permissions(&got.path, std::fs::Permissions::from_mode(0o600))
                .at(&got.path)?;
        }
        self.fetched
            .borrow_mut()
            .insert(url.to_string(), got.clone());
        Ok(got)
    }
}

/// `path` made absolute against `base`, with `.` and `..` resolved lexically.
pub fn resolve_path(base: &str, path: &str) -> String {
    use std::path::{Component, Path};
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(base).join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The words `--force` matches a RUN step's commands against: exec-form arguments, or the
/// shell command or script split on whitespace (no shell parsing, as ch-image).
fn run_words(plan: &RunPlan) -> Vec<&str> {
    match plan {
        RunPlan::Exec(v) => v.iter().map(String::as_str).collect(),
        RunPlan::Shell(s) => s.split_whitespace().collect(),
        RunPlan::Script { content, .. } => content.split_whitespace().collect(),
    }
}

/// `e` with the instruction's place (`FILE:LINE`) in front of what it names.
pub(super) fn located(at: &str, e: Error) -> Error {
    match e {
        Error::Invalid { what, why } => Error::Invalid {
            what: format!("{at}: {what}"),
            why,
        },
        Error::Unsupported { what, why } => Error::Unsupported {
            what: format!("{at}: {what}"),
            why,
        },
        other => other,
    }
}
