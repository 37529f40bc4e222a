//! `lade:NAME`: lade's own storage directory as a transport. As a destination it also
//! unpacks the layers, so an image is named only once it is ready to run.
//!
//! Layers are unpacked as they arrive: `put_blob` tees a layer's stream into its blob file and
//! into the unpacker at once (both cores busy, the blob read once, from the network), and the
//! tree waits in the work area. Only `commit`, with the config in hand, checks each tree's
//! diff-ID and publishes the trees bottom-up; a blob whose digest fails at its end takes its
//! half-made tree with it, and a crash leaves nothing but the work area to sweep.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use super::{CopiedImage, ImageDestination, ImageSource};
use crate::digest::{Digest, Expected};
use crate::error::{Error, Result};
use crate::layer_install::{self, LayerJob, Unpacked, install_layers};
use crate::manifest::{self, Kind, RawManifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::storage::{ImageRecord, OpenAt, Storage};

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
    /// None for an image installed without a name (for `squashfs:`, see [`Self::install`]).
    name: Option<Reference>,
    progress: Progress,
    last_layer: Option<usize>,
    always_download: bool,
    /// Positions of the layers of the image manifest being copied, by blob digest (the
    /// lowest, when a blob is listed twice).
    layers: Mutex<HashMap<Digest, usize>>,
    /// Layers unpacked on arrival, waiting for `commit`.
    staged: Mutex<HashMap<Digest, Unpacked>>,
}

impl StoreDestination {
    pub fn new(storage: Arc<Storage>, name: Reference) -> StoreDestination {
        StoreDestination::named(storage, Some(name))
    }

    fn named(storage: Arc<Storage>, name: Option<Reference>) -> StoreDestination {
        StoreDestination {
            storage,
            name,
            progress: Progress::silent(),
            last_layer: None,
            always_download: false,
            layers: Mutex::new(HashMap::new()),
            staged: Mutex::new(HashMap::new()),
        }
    }

    /// A destination that installs an image's blobs and layer trees but names nothing
    /// ([`Self::install`] instead of `commit`): what the store keeps unnamed, garbage
    /// collection may take.
    pub fn unnamed(storage: Arc<Storage>) -> StoreDestination {
        StoreDestination::named(storage, None)
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
        match &self.name {
            Some(name) => format!("lade:{}", name.familiar()),
            None => "the store".to_string(),
        }
    }

    fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(!self.always_download && self.storage.blobs().has(digest))
    }

    fn expect_image(&self, manifest: &RawManifest) -> Result<()> {
        let parsed = manifest.image()?;
        let mut layers = self.layers.lock().map_err(|_| poisoned(&self.describe()))?;
        for (i, d) in parsed.layers().iter().enumerate() {
            layers.entry(Digest::try_from(d.digest())?).or_insert(i);
        }
        Ok(())
    }

    fn put_blob(
        &self,
        expected: &Expected,
        data: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<()> {
        // The stream can be read once: skipped to where a kept partial download ends.
        let mut data = Some(data);
        let mut once = |offset: u64| -> Result<Box<dyn Read + Send + '_>> {
            let data = data
                .take()
                .ok_or_else(|| Error::invalid(what, "the stream cannot be read again"))?;
            io::copy(&mut (&mut *data).take(offset), &mut io::sink())
                .map_err(|e| Error::io(what, e))?;
            Ok(Box::new(data))
        };
        self.put_blob_resumable(expected, &mut once, what)
    }

    fn put_blob_resumable(
        &self,
        expected: &Expected,
        open: &mut OpenAt<'_>,
        what: &str,
    ) -> Result<()> {
        let position = self
            .layers
            .lock()
            .map_err(|_| poisoned(&self.describe()))?
            .get(&expected.digest)
            .copied();
        let wanted = position.is_some_and(|i| self.last_layer.is_none_or(|n| i < n));
        let blobs = self.storage.blobs();
        if !wanted {
            return blobs.put_resumable(expected, open, what, |_| Ok(()));
        }
        let source = self.describe();
        let unpacked = blobs.put_resumable(expected, open, what, |stream| {
            layer_install::unpack_arriving(
                &self.storage,
                stream,
                &expected.digest,
                what,
                &self.progress,
            )
        })?;
        self.progress.note(&format!(
            "layer {}: unpacked {} entries while downloading",
            expected.digest.short(),
            unpacked.entries()
        ));
        let mut staged = self.staged.lock().map_err(|_| poisoned(&source))?;
        if let Some(older) = staged.insert(expected.digest.clone(), unpacked) {
            older.discard();
        }
        Ok(())
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
        if self.name.is_none() {
            return Err(Error::invalid(
                self.describe(),
                "an image without a name cannot be named (use install)",
            ));
        }
        let record = self.install(image)?;
        self.storage.images().put(&record)
    }
}

impl StoreDestination {
    /// Checks and publishes the image's layer trees (unpacking any the store lacks) and
    /// returns the record that names it, without storing the record.
    pub fn install(&mut self, image: &CopiedImage) -> Result<ImageRecord> {
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
        let staged =
            std::mem::take(&mut *self.staged.lock().map_err(|_| poisoned(&self.describe()))?);
        let layers = install_layers(&self.storage, &jobs, staged, &image.source, &self.progress)?;
        let platform = image
            .platform
            .clone()
            .or_else(|| crate::platform::of_config(&config));
        if platform.is_none() && image.from_index.is_none() {
            self.progress.warn(&crate::platform::unaware_warning(
                &image.source,
                "a single manifest whose config names no architecture or OS",
            ));
        }
        Ok(ImageRecord {
            name: self
                .name
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            manifest: image.top.digest.clone(),
            index: image.from_index.clone(),
            config: config_digest,
            layers,
            platform,
            source: image.source.clone(),
        })
    }
}

impl Drop for StoreDestination {
    /// Layers unpacked for an image that was never committed (a failed copy).
    fn drop(&mut self) {
        if let Ok(staged) = self.staged.get_mut() {
            for (_, u) in staged.drain() {
                u.discard();
            }
        }
    }
}

fn poisoned(what: &str) -> Error {
    Error::invalid(what, "internal lock poisoned")
}
