//! `squashfs:FILE`: an image written as one SquashFS file, a destination only (reading one
//! back as an OCI image would need the layers it no longer has; `lade run FILE` runs it).
//!
//! It is a staged destination (`staged.rs`) over the store's: blobs and layer trees go where a
//! pull puts them (a layer the store has is neither copied nor unpacked again, so from a `lade:`
//! source nothing is; a download left half done is continued), and `commit` writes the file
//! from the layer trees ([`crate::squashfs::export`]) instead of naming an image. The store
//! keeps the blobs and trees unnamed, for the next export or pull to reuse, or for gc to take.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CopiedImage;
use super::staged::Staged;
use super::store::StoreDestination;
use crate::error::{Error, Result};
use crate::manifest::{self, Kind};
use crate::progress::Progress;
use crate::squashfs::export::{self, Export};
use crate::storage::Storage;

pub struct SquashFsDestination {
    storage: Arc<Storage>,
    store: StoreDestination,
    file: PathBuf,
    progress: Progress,
}

impl SquashFsDestination {
    pub fn new(storage: Arc<Storage>, file: &Path) -> SquashFsDestination {
        SquashFsDestination {
            store: StoreDestination::unnamed(storage.clone()),
            storage,
            file: file.to_path_buf(),
            progress: Progress::silent(),
        }
    }

    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.store = self.store.with_progress(progress.clone());
        self.progress = progress;
        self
    }
}

impl Staged for SquashFsDestination {
    fn inner(&self) -> &dyn super::ImageDestination {
        &self.store
    }

    fn describe(&self) -> String {
        format!("squashfs:{}", self.file.display())
    }

    fn finish(&mut self, image: &CopiedImage) -> Result<()> {
        if image.top.kind != Kind::Image {
            return Err(Error::unsupported(
                self.describe(),
                "a SquashFS file holds one platform's image; copy without --all",
            ));
        }
        let record = self.store.install(image)?;
        let config_bytes = self.storage.blobs().read_to_vec(&record.config)?;
        let config_what = format!("config {} of {}", record.config, image.source);
        let config = manifest::parse_config(&config_bytes, &config_what)?;
        let env = config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        let trees: Vec<String> = record.layers.iter().map(|l| l.tree.clone()).collect();
        export::write_image(
            &self.storage,
            &Export {
                trees: &trees,
                config: &config_bytes,
                env: &env,
            },
            &self.file,
            &self.progress,
        )
    }
}
