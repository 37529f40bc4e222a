//! Where a stage starts and what `COPY --from` reads: `scratch`, an earlier stage, or an image
//! (from the store, pulled first if missing), with a base image's ONBUILD triggers.

use std::path::{Path, PathBuf};

use super::config;
use super::driver::Builder;
use crate::builder::cache::State;
use crate::dockerfile::{Instruction, Located};
use crate::error::{Error, Result};
use crate::image_config::ImageConfig;
use crate::reference::Reference;
use crate::storage::ImageRecord;
use crate::transport::ImageLocation;

impl Builder<'_> {
    /// The state a FROM starts from: its key, and whether it was already at hand.
    pub(super) fn base(&mut self, image: &str, si: usize) -> Result<(State, String, bool)> {
        if image.eq_ignore_ascii_case("scratch") {
            let state = State {
                layers: Vec::new(),
                config: config::scratch(),
            };
            return Ok((state, "scratch".into(), true));
        }
        if let Some(i) = self.df.stage_index(image, si) {
            let (s, k) = self.stages[i].clone();
            return Ok((s, k, true));
        }
        let (record, hit) = self.image(image)?;
        let bytes = self.storage.blobs().read_to_vec(&record.config)?;
        let config = ImageConfig::parse(&bytes, &format!("config of {image}"))?;
        let state = State {
            layers: record.layers.clone(),
            config,
        };
        Ok((state, format!("image:{}", record.manifest), hit))
    }

    /// An image from the store, pulled first if missing (as `lade pull`). A registry tag that
    /// the project's lock file governs goes through the pull path even when stored, so that it
    /// resolves (and is pinned) as `lade pull` would; the flag says the stored image was used.
    fn image(&self, image: &str) -> Result<(ImageRecord, bool)> {
        let name = Reference::parse(image)?;
        let loc = ImageLocation::parse_pull_source(image)?;
        let stored = self.storage.images().get(&name)?;
        if let Some(r) = &stored
            && !self.pins.govern(&loc)
        {
            return Ok((r.clone(), true));
        }
        let opts = crate::pull::PullOptions {
            arch: self.arch.clone(),
            last_layer: None,
            always_download: false,
        };
        crate::pull::pull(
            &self.storage,
            &loc,
            Some(name.clone()),
            &self.registry,
            &self.pins,
            &opts,
            self.progress,
        )?;
        let record = self.storage.images().require(&name)?;
        let same = stored.is_some_and(|s| s.manifest == record.manifest);
        Ok((record, same))
    }

    /// The base image's ONBUILD triggers as instructions at the FROM's line (`from_line`),
    /// taken out of the state's config: they run in this build and are not inherited.
    pub(super) fn onbuild_triggers(
        &self,
        state: &mut State,
        from_line: usize,
        image: &str,
    ) -> Result<Vec<Located<Instruction>>> {
        let triggers = state
            .config
            .container()
            .and_then(|c| c.on_build.get())
            .cloned()
            .unwrap_or_default();
        let file_name = &self.df.file_name;
        let mut steps = Vec::new();
        for t in &triggers {
            let text = format!("FROM scratch\n{t}\n");
            let parsed = crate::dockerfile::parse(&text, file_name).map_err(|e| {
                Error::invalid(
                    format!("{file_name}:{from_line}: ONBUILD trigger of {image}"),
                    e.to_string(),
                )
            })?;
            for mut ins in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                ins.line = from_line;
                ins.end_line = from_line;
                steps.push(ins);
            }
        }
        if !triggers.is_empty() {
            state.config.container_mut().on_build.clear();
        }
        Ok(steps)
    }

    /// The flattened root of a `--from` stage or image (`COPY --from`, `RUN --mount=from=`),
    /// made once per build, and its state key.
    pub(super) fn source_root(&mut self, from: &str) -> Result<(PathBuf, String)> {
        let (state, key) = match self.df.stage_index(from, self.stages.len()) {
            Some(i) => self.stages[i].clone(),
            None => {
                let (r, _) = self.image(from)?;
                let state = State {
                    layers: r.layers.clone(),
                    config: ImageConfig::default(),
                };
                (state, format!("image:{}", r.manifest))
            }
        };
        if let Some(p) = self.flat.get(&key) {
            return Ok((p.clone(), key));
        }
        // In build-tmp/, not the work area: `RUN --mount=from=…` binds it into a step, whose
        // container hides the store's tmp/ under its tmpfs.
        let dir = self.storage.build_tmp().create()?;
        let layers = self.storage.layers();
        let trees: Vec<PathBuf> = state.layers.iter().map(|l| layers.tree(&l.tree)).collect();
        let refs: Vec<&Path> = trees.iter().map(PathBuf::as_path).collect();
        crate::unpack::flatten_trees(&refs, &dir)?;
        self.flat.insert(key.clone(), dir.clone());
        Ok((dir, key))
    }
}
