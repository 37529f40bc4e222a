//! The image configuration as lade reads and writes it: the OCI config (image-spec
//! `config.md`) with the Docker fields a Dockerfile sets (`Healthcheck`, `OnBuild`, `Shell`).
//!
//! Why not `oci_spec::image::ImageConfiguration` (which `lade run` and the store's commit use to
//! *read* configs): a build starts from a base image's config and writes it back with its own
//! changes, and oci-spec's type would lose on that round trip what it does not model: the
//! Docker-only fields above, everything else Docker writes (`container_config`,
//! `docker_version`, `ArgsEscaped`, `Hostname`, …) and the difference between a field set to
//! `null` (Docker's unset lists and maps) and a field absent. So this type names the fields lade
//! edits, keeps every other field in `other` (`#[serde(flatten)]`) at each level, and keeps
//! `null` apart from absent ([`Field`]): a base's config comes back byte for byte but for
//! what the build changed.
//!
//! Every config lade writes is serialised by [`to_canonical_json`]: keys sorted at every level,
//! as lade has always written them, so that rebuilding an image gives the same config bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A field as an image's config has it: absent, `null`, or set. Docker writes `null` for its
/// unset lists and maps (`"Entrypoint": null`); kept apart from absent so that a config read
/// and written back keeps it. Fields use `#[serde(default, skip_serializing_if =
/// "Field::is_absent")]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }

    pub fn set(&mut self, value: T) {
        *self = Field::Set(value);
    }

    /// Removes the field.
    pub fn clear(&mut self) {
        *self = Field::Absent;
    }

    /// The value, made the default one first if absent or `null` (editing an unset list starts
    /// from an empty one).
    pub fn get_or_default(&mut self) -> &mut T
    where
        T: Default,
    {
        if !matches!(self, Field::Set(_)) {
            *self = Field::Set(T::default());
        }
        match self {
            Field::Set(v) => v,
            _ => unreachable!("set just above"),
        }
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Field::Set(v) => v.serialize(s),
            // Absent fields are skipped by `skip_serializing_if`; `null` is `null`.
            Field::Absent | Field::Null => s.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    /// Only called for a field that is there (absent ones take `Default`): `null` or a value.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.map_or(Field::Null, Field::Set))
    }
}

/// The top level of an image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub architecture: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub os: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub variant: Field<String>,
    /// `MAINTAINER`.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub author: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub created: Field<String>,
    /// What a container of the image runs with.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub config: Field<ContainerConfig>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub rootfs: Field<RootFs>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub history: Field<Vec<History>>,
    /// Every other field, as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `config` of an image config: Docker's container configuration, which OCI took a subset of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub user: Field<String>,
    /// `port/proto` to an empty object (Go's `map[string]struct{}`); the object is kept as
    /// found, in case a foreign tool put something in it.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub exposed_ports: Field<BTreeMap<String, Map<String, Value>>>,
    /// `K=V`, in order.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub env: Field<Vec<String>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub entrypoint: Field<Vec<String>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub cmd: Field<Vec<String>>,
    /// Paths to empty objects, as `exposed_ports`.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub volumes: Field<BTreeMap<String, Map<String, Value>>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub working_dir: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub labels: Field<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub stop_signal: Field<String>,
    /// Docker: the shell of shell-form commands (`SHELL`).
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub shell: Field<Vec<String>>,
    /// Docker: `ONBUILD` triggers, as written after the keyword.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub on_build: Field<Vec<String>>,
    /// Docker: `HEALTHCHECK`.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub healthcheck: Field<Healthcheck>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Docker's `HealthConfig`. Durations are nanoseconds (Go's `time.Duration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", arg…]` or `["CMD-SHELL", command]`.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub test: Field<Vec<String>>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub interval: Field<i64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub timeout: Field<i64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub start_period: Field<i64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub start_interval: Field<i64>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub retries: Field<i64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `rootfs`: the layers' diff-IDs, bottom first. Strings, not digests: a config read is
/// written back as it was (the store checked the diff-IDs when it took the image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl RootFs {
    /// `{"type": "layers", "diff_ids": …}`, the only kind the spec has.
    pub fn layers(diff_ids: Vec<String>) -> RootFs {
        RootFs {
            kind: "layers".into(),
            diff_ids,
            other: Map::new(),
        }
    }
}

/// One step of the image's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub created: Field<String>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub created_by: Field<String>,
    /// Set (true) for steps that made no layer.
    #[serde(skip_serializing_if = "Field::is_absent")]
    pub empty_layer: Field<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ImageConfig {
    /// A new image's config for this host's platform (`linux` and the host's architecture;
    /// `with_variant` adds its variant, e.g. arm64's `v8`), with the given history entries.
    pub fn for_host(history: Vec<History>, with_variant: bool) -> ImageConfig {
        let arch = crate::platform::host_arch();
        let mut parts = arch.split('/');
        let mut config = ImageConfig {
            architecture: Field::Set(parts.next().unwrap_or("amd64").to_string()),
            os: Field::Set("linux".into()),
            config: Field::Set(ContainerConfig::default()),
            history: Field::Set(history),
            ..ImageConfig::default()
        };
        if let Some(v) = parts.next().filter(|_| with_variant) {
            config.variant.set(v.to_string());
        }
        config
    }

    /// Parses a config blob; `what` names it in the error.
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig> {
        serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))
    }

    /// The container configuration, created empty if the image has none.
    pub fn container_mut(&mut self) -> &mut ContainerConfig {
        self.config.get_or_default()
    }

    /// The container configuration, or `None` if the image has none.
    pub fn container(&self) -> Option<&ContainerConfig> {
        self.config.get()
    }
}

impl History {
    /// An entry saying what made a step, with `empty_layer` when it made no layer.
    pub fn step(created: Option<String>, created_by: &str, empty_layer: bool) -> History {
        History {
            created: created.map_or(Field::Absent, Field::Set),
            created_by: Field::Set(created_by.to_string()),
            empty_layer: if empty_layer {
                Field::Set(true)
            } else {
                Field::Absent
            },
            other: Map::new(),
        }
    }
}

/// `value` as JSON with the keys of every object sorted: through `serde_json::Value`, whose
/// maps are sorted (serde_json without its `preserve_order` feature, which nothing in lade's
/// dependency tree enables; the test below would catch it). Sorted keys are what lade has
/// always written, so configs and manifests of rebuilt images keep their digests.
pub fn to_canonical_json(value: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value).map_err(|e| Error::json(what, e))?;
    serde_json::to_vec(&v).map_err(|e| Error::json(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as Docker's classic builder writes it (Go's field order, nulls, fields lade
    /// does not name at every level).
    const DOCKER: &str = r#"{"architecture":"amd64","config":{"Hostname":"","AttachStdin":false,"Env":["PATH=/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Zeta":1},"Image":"sha256:abc","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"Shell":["/bin/sh","-c"]},"container":"deadbeef","container_config":{"Cmd":["/bin/sh"],"Labels":{}},"created":"2024-01-01T00:00:00.123Z","docker_version":"20.10.1","history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file","comment":"x"},{"created_by":"CMD","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:00"]},"zz":{"b":[1.5,null],"a":{}}}"#;

    #[test]
    fn a_foreign_config_round_trips_as_sorted_json() {
        let typed = ImageConfig::parse(DOCKER.as_bytes(), "test").unwrap();
        let c = typed.container().unwrap();
        assert_eq!(c.entrypoint, Field::Null);
        assert_eq!(c.cmd.get().unwrap(), &["sh"]);
        assert_eq!(c.working_dir, Field::Set(String::new()));
        assert_eq!(c.stop_signal, Field::Absent);
        assert!(c.other.contains_key("Hostname"));
        // What lade wrote before the config was typed: the document re-serialised through
        // serde_json::Value. The typed round trip must give exactly those bytes.
        let value: Value = serde_json::from_str(DOCKER).unwrap();
        let before = serde_json::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8(to_canonical_json(&typed, "test").unwrap()).unwrap(),
            String::from_utf8(before).unwrap()
        );
    }

    #[test]
    fn edits_start_from_unset_fields() {
        let mut typed = ImageConfig::parse(DOCKER.as_bytes(), "test").unwrap();
        let c = typed.container_mut();
        c.labels.get_or_default().insert("k".into(), "v".into());
        c.entrypoint.set(vec!["x".into()]);
        c.cmd.clear();
        let out = String::from_utf8(to_canonical_json(&typed, "test").unwrap()).unwrap();
        assert!(out.contains(r#""Entrypoint":["x"]"#), "{out}");
        assert!(out.contains(r#""Labels":{"k":"v"}"#), "{out}");
        assert!(!out.contains(r#""Cmd":["sh"]"#), "{out}");
        assert!(out.contains(r#""OnBuild":null"#), "{out}");
    }

    #[test]
    fn a_new_config_is_what_lade_always_wrote() {
        let mut c = ImageConfig {
            architecture: Field::Set("amd64".into()),
            os: Field::Set("linux".into()),
            config: Field::Set(ContainerConfig::default()),
            history: Field::Set(vec![History::step(None, "lade import x", false)]),
            ..ImageConfig::default()
        };
        c.rootfs.set(RootFs::layers(vec!["sha256:00".into()]));
        assert_eq!(
            String::from_utf8(to_canonical_json(&c, "test").unwrap()).unwrap(),
            r#"{"architecture":"amd64","config":{},"history":[{"created_by":"lade import x"}],"os":"linux","rootfs":{"diff_ids":["sha256:00"],"type":"layers"}}"#
        );
    }
}
