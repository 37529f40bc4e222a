//! Platform (architecture) selection, with ch-image's `--arch` semantics: `host` (default,
//! from `uname -m` translated to registry names), `yolo` (take what the source gives by
//! default), or an explicit `ARCH[/VARIANT]` passed through untranslated.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchChoice {
    Host,
    Yolo,
    Named(String),
}

impl std::str::FromStr for ArchChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<ArchChoice> {
        match s {
            "host" => Ok(ArchChoice::Host),
            "yolo" => Ok(ArchChoice::Yolo),
            "" => Err(Error::invalid("--arch", "empty architecture")),
            other => Ok(ArchChoice::Named(other.to_string())),
        }
    }
}

/// Translates `uname -m` names to the names registries use (`arch[/variant]`).
pub fn registry_arch(uname_machine: &str) -> String {
    match uname_machine {
        "x86_64" => "amd64".into(),
        "i386" | "i486" | "i586" | "i686" => "386".into(),
        "aarch64" | "arm64" => "arm64/v8".into(),
        "armv7l" | "armv7" => "arm/v7".into(),
        "armv6l" => "arm/v6".into(),
        "armv5tel" | "armv5l" => "arm/v5".into(),
        "ppc64le" => "ppc64le".into(),
        "s390x" => "s390x".into(),
        "riscv64" => "riscv64".into(),
        "mips64" => "mips64le".into(),
        other => other.into(),
    }
}

pub fn host_arch() -> String {
    registry_arch(&rustix::system::uname().machine().to_string_lossy())
}

/// `arch[/variant]` of an index entry, as ch-image shows it.
pub fn describe(desc: &Descriptor) -> Option<String> {
    let p = desc.platform().as_ref()?;
    let arch = p.architecture().to_string();
    Some(match p.variant() {
        Some(v) if !v.is_empty() => format!("{arch}/{v}"),
        _ => arch,
    })
}

/// `os/arch[/variant]` as an image's config names it; `None` for an architecture-unaware
/// image, whose config names no architecture or no OS.
pub fn of_config(config: &ImageConfiguration) -> Option<String> {
    let arch = config.architecture().to_string();
    let os = config.os().to_string();
    if arch.is_empty() || os.is_empty() {
        return None;
    }
    Some(match config.variant() {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    })
}

/// The one-line warning for pulling an architecture-unaware image (ch-image pulls them too).
pub fn unaware_warning(what: &str, why: &str) -> String {
    format!(
        "{what}: architecture-unaware image ({why}); pulled as it is, it may not run on {}",
        host_arch()
    )
}

fn matches(desc: &Descriptor, want: &str) -> bool {
    let Some(p) = desc.platform().as_ref() else {
        return false;
    };
    if p.os().to_string() != "linux" {
        return false;
    }
    let arch = p.architecture().to_string();
    let variant = p.variant().as_deref().unwrap_or("");
    let (want_arch, want_variant) = want.split_once('/').unwrap_or((want, ""));
    // arm64 images often omit the (only) variant v8, and plain "arm64" asks for any arm64.
    arch == want_arch
        && (want_variant.is_empty()
            || variant == want_variant
            || (variant.is_empty() && want_arch == "arm64" && want_variant == "v8"))
}

/// Chooses the entry of `index` for `choice`; the error lists what is available.
pub fn select<'a>(
    index: &'a ImageIndex,
    choice: &ArchChoice,
    what: &str,
) -> Result<&'a Descriptor> {
    let images: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            // Attestation manifests (BuildKit) carry platform unknown/unknown; never images.
            d.platform()
                .as_ref()
                .is_none_or(|p| p.architecture().to_string() != "unknown")
        })
        .collect();
    let want = match choice {
        ArchChoice::Yolo => {
            return images
                .first()
                .copied()
                .ok_or_else(|| Error::invalid(what, "index lists no images"));
        }
        ArchChoice::Host => host_arch(),
        ArchChoice::Named(n) => n.clone(),
    };
    if let Some(found) = images.iter().find(|d| matches(d, &want)) {
        return Ok(found);
    }
    // An index whose single entry has no platform is architecture-unaware.
    if let [only] = images.as_slice()
        && only.platform().is_none()
    {
        return Ok(only);
    }
    let available: Vec<String> = images.iter().filter_map(|d| describe(d)).collect();
    Err(Error::invalid(
        what,
        format!(
            "no image for architecture {want}; available: {}",
            if available.is_empty() {
                "none named".to_string()
            } else {
                available.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_uname() {
        assert_eq!(registry_arch("x86_64"), "amd64");
        assert_eq!(registry_arch("aarch64"), "arm64/v8");
        assert_eq!(registry_arch("armv7l"), "arm/v7");
    }

    #[test]
    fn configs_without_architecture_are_unaware() {
        let what = "config";
        let aware = br#"{"architecture":"arm","os":"linux","variant":"v7","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = crate::manifest::parse_config(aware, what).unwrap();
        assert_eq!(of_config(&c).as_deref(), Some("linux/arm/v7"));
        let unaware = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = crate::manifest::parse_config(unaware, what).unwrap();
        assert_eq!(of_config(&c), None);
        assert!(crate::manifest::parse_config(br#"{"os":"linux"}"#, what).is_err());
        assert!(crate::manifest::parse_config(b"[]", what).is_err());
    }
}
