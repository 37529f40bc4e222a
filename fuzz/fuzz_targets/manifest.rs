//! Manifests, indexes and image configs as a registry or a layout may serve them: parsed or
//! refused with an error, never a panic.
#![no_main]

use lade::manifest::{self, RawManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for hint in [None, Some(manifest::OCI_INDEX), Some(manifest::DOCKER_MANIFEST)] {
        if let Ok(m) = RawManifest::new(data.to_vec(), hint, None, "fuzz") {
            if let Ok(index) = m.index() {
                for d in index.manifests() {
                    let _ = manifest::expected(d);
                }
            }
            if let Ok(image) = m.image() {
                for d in image.layers() {
                    let _ = manifest::expected(d);
                }
                let _ = m.descriptor();
            }
        }
    }
    if let Ok(config) = manifest::parse_config(data, "fuzz") {
        if let Ok(ids) = manifest::diff_ids(&config, "fuzz") {
            let _ = manifest::chain_ids(&ids);
        }
        let _ = lade::platform::of_config(&config);
    }
});
