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
            other => {
                let (arch, variant) = other.split_once('/').unwrap_or((other, "v"));
                let variant_ok = !variant.is_empty()
                    && variant
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.');
                if !KNOWN_ARCHES.contains(&arch) || !variant_ok {
                    return Err(Error::invalid(
                        format!("--arch {other}"),
                        format!(
                            "not an architecture registries use; give host, yolo, or ARCH[/VARIANT] \
                             with ARCH one of: {}",
                            KNOWN_ARCHES.join(", ")
                        ),
                    ));
                }
                Ok(ArchChoice::Named(other.to_string()))
            }
        }
    }
}

/// The architectures image platforms name: Go's `GOARCH` values (OCI image-spec: "values SHOULD
/// be ... listed in the Go Language document for GOARCH"), which is what registries use.
const KNOWN_ARCHES: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// The warning for an image that holds one platform only when it is not the one `choice` asks
/// for (`platform` is its config's `os/arch[/variant]`): it is pulled all the same, as podman
/// does, since nothing else is there to choose. `None` when it fits, or for `yolo`.
pub fn mismatch_warning(choice: &ArchChoice, platform: Option<&str>, what: &str) -> Option<String> {
    let want = match choice {
        ArchChoice::Yolo => return None,
        ArchChoice::Host => host_arch(),
        ArchChoice::Named(n) => n.clone(),
    };
    let platform = platform?;
    let mut parts = platform.splitn(3, '/');
    let (os, arch, variant) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    if os == "linux" && arch_fits(arch, variant, &want) {
        return None;
    }
    let asked = match choice {
        ArchChoice::Host => format!("this host's {want}"),
        _ => format!("{want}, as --arch asks"),
    };
    Some(format!(
        "{what}: the image is for {platform}, not {asked}; it has no other platform, so it is \
         pulled as it is and may not run here"
    ))
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
    arch_fits(&arch, p.variant().as_deref().unwrap_or(""), want)
}

/// Whether `arch` with `variant` is what `want` (`arch[/variant]`) asks for.
fn arch_fits(arch: &str, variant: &str, want: &str) -> bool {
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
    fn arch_names_are_checked() {
        assert!("arm64/v8".parse::<ArchChoice>().is_ok());
        assert!("ppc64le".parse::<ArchChoice>().is_ok());
        assert!("bogus".parse::<ArchChoice>().is_err());
        assert!("arm/".parse::<ArchChoice>().is_err());
        let arm = ArchChoice::Named("arm64".into());
        assert!(mismatch_warning(&arm, Some("linux/amd64"), "x").is_some());
        assert!(mismatch_warning(&arm, Some("linux/arm64/v8"), "x").is_none());
        assert!(mismatch_warning(&ArchChoice::Yolo, Some("linux/s390x"), "x").is_none());
        assert!(mismatch_warning(&arm, None, "x").is_none());
    }

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
