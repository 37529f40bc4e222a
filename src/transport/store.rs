//! `lade:NAME`: lade's own storage directory as a transport. As a destination it also
//! unpacks the layers, so an image is named only once it is ready to run.

use std::io::Read;
use std::sync::Arc;

use super::{CopiedImage, ImageDestination, ImageSource};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::layer_install::{LayerJob, install_layers};
use crate::manifest::{self, Kind, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::{ImageRecord, Storage};

pub struct StoreSource {
    storage: Arc<Storage>,
    what: String,
    top: RawManifest,
}

impl StoreSource {
    pub fn open(storage: Arc<Storage>, name: &Reference) -> Result<StoreSource> {
        let record = storage.images().require(name)?;
        let what = format!("lade:{}", name.familiar());
        let bytes = storage.blobs().read_to_vec(&record.manifest)?;
        let expected = Expected {
            digest: record.manifest.clone(),
            size: None,
        };
        let top = RawManifest::new(bytes, None, Some(&expected), &what)?;
        Ok(StoreSource { storage, what, top })
    }
}

impl ImageSource for StoreSource {
    fn describe(&self) -> String {
        self.what.clone()
    }
    fn top_manifest(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.storage.blobs().open(digest)?))
    }
}

pub struct StoreDestination {
    storage: Arc<Storage>,
    name: Reference,
    progress: Progress,
    last_layer: Option<usize>,
    always_download: bool,
}

impl StoreDestination {
    pub fn new(storage: Arc<Storage>, name: Reference) -> StoreDestination {
        StoreDestination {
            storage,
            name,
            progress: Progress::silent(),
            last_layer: None,
            always_download: false,
        }
    }

    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// `--always-download`: copy every blob even if the store has it (ch-image's option).
    pub fn always_download(mut self, yes: bool) -> Self {
        self.always_download = yes;
        self
    }

    /// `--last-layer N`: unpack only the first N layers (for debugging, as ch-image).
    pub fn with_last_layer(mut self, n: Option<usize>) -> Self {
        self.last_layer = n;
        self
    }
}

impl ImageDestination for StoreDestination {
    fn describe(&self) -> String {
        format!("lade:{}", self.name.familiar())
    }

    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(!self.always_download && self.storage.blobs().has(digest))
    }

    fn put_blob(&self, expected: &Expected, data: &mut dyn Read, what: &str) -> Result<()> {
        self.storage.blobs().put(expected, data, what).map(|_| ())
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        if !self.always_download && self.storage.blobs().has(&manifest.digest) {
            return Ok(());
        }
        let expected = Expected {
            digest: manifest.digest.clone(),
            size: Some(manifest.bytes.len() as u64),
        };
        let what = format!("manifest {}", manifest.digest);
        self.storage
            .blobs()
            .put(&expected, &mut &manifest.bytes[..], &what)
            .map(|_| ())
    }

    fn commit(&mut self, image: &CopiedImage) -> Result<()> {
        let what = self.describe();
        if image.top.kind != Kind::Image {
            return Err(Error::unsupported(
                &what,
                "the store names one platform's image; copy without --all",
            ));
        }
        let parsed = image.top.image()?;
        let config_digest = Digest::try_from(parsed.config().digest())?;
        let config_bytes = self.storage.blobs().read_to_vec(&config_digest)?;
        let config_what = format!("config {config_digest} of {}", image.source);
        let config = manifest::parse_config(&config_bytes, &config_what)?;
        let diff_ids = manifest::diff_ids(&config, &config_what)?;
        if diff_ids.len() != parsed.layers().len() {
            return Err(Error::invalid(
                &image.source,
                format!(
                    "manifest lists {} layers but the config lists {} diff-IDs",
                    parsed.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut jobs: Vec<LayerJob> = parsed
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| {
                Ok(LayerJob {
                    blob: Digest::try_from(d.digest())?,
                    diff_id,
                })
            })
            .collect::<Result<_>>()?;
        if let Some(n) = self.last_layer {
            jobs.truncate(n);
        }
        let layers = install_layers(&self.storage, &jobs, &image.source, &self.progress)?;
        let platform = image.platform.clone().or_else(|| {
            let arch = config.architecture().to_string();
            let os = config.os().to_string();
            Some(match config.variant() {
                Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
                _ => format!("{os}/{arch}"),
            })
        });
        self.storage.images().put(&ImageRecord {
            name: self.name.to_string(),
            manifest: image.top.digest.clone(),
            index: image.from_index.clone(),
            config: config_digest,
            layers,
            platform,
            source: image.source.clone(),
        })
    }
}
