//! `lade build --secret`: the secrets a build's `RUN --mount=type=secret` may mount, given as
//! Docker Buildx gives them: `id=ID,src=FILE` (or `source=`), `id=ID,env=VAR`, with an
//! optional `type=file|env`; `id=ID` alone takes the environment variable ID if it is set,
//! else the file ID, as Buildx does.
//!
//! Only where a secret comes from is kept; its value is read when a step mounts it, into a file
//! private to that step ([`super::mounts`]). No message names a value: errors name the id and
//! where it was to come from.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// The secret's value; `id` names it in errors.
    pub fn read(&self, id: &str) -> Result<Vec<u8>> {
        match self {
            SecretSource::File(p) => std::fs::read(p).ctx(|| format!("secret {id}: file")),
            SecretSource::Env(v) => std::env::var_os(v)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| Error::invalid(format!("secret {id}"), format!("${v} is not set"))),
        }
    }
}

/// Parses every `--secret` (a later one of the same id wins, as in Buildx) and checks that
/// each source is there now, so that a mistake is reported before the build starts.
pub fn parse_all(specs: &[String]) -> Result<HashMap<String, SecretSource>> {
    let mut out = HashMap::new();
    for spec in specs {
        let (id, source) = parse(spec)?;
        match &source {
            SecretSource::File(p) => {
                std::fs::metadata(p).ctx(|| format!("--secret {spec}: source"))?;
            }
            SecretSource::Env(v) => {
                if std::env::var_os(v).is_none() {
                    return Err(Error::invalid(
                        format!("--secret {spec}"),
                        format!("${v} is not set"),
                    ));
                }
            }
        }
        out.insert(id, source);
    }
    Ok(out)
}

/// One `--secret` value.
pub fn parse(spec: &str) -> Result<(String, SecretSource)> {
    let bad = |why: &str| Error::invalid(format!("--secret {spec}"), why.to_string());
    let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
    for field in spec.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad("expected id=ID,src=FILE or id=ID,env=VAR"))?;
        let slot = match k.trim().to_ascii_lowercase().as_str() {
            "id" => &mut id,
            "type" => &mut kind,
            "src" | "source" => &mut src,
            "env" => &mut env,
            other => {
                return Err(bad(&format!(
                    "unknown field '{other}' (expected id, type, src or env)"
                )));
            }
        };
        *slot = Some(v.to_string());
    }
    let id = id.filter(|i| !i.is_empty());
    if src.is_some() && env.is_some() {
        return Err(bad("give src or env, not both"));
    }
    // What names the source: `src` or `env` as given, else the id.
    let name = src
        .clone()
        .or_else(|| env.clone())
        .or_else(|| id.clone())
        .ok_or_else(|| bad("needs an id"))?;
    let is_env = match kind.as_deref() {
        Some("env") => true,
        Some("file") => false,
        None => env.is_some() || (src.is_none() && std::env::var_os(&name).is_some()),
        Some(t) => return Err(bad(&format!("unknown type '{t}' (file or env)"))),
    };
    let source = if is_env {
        SecretSource::Env(name)
    } else {
        SecretSource::File(PathBuf::from(name))
    };
    let id = match (id, &source) {
        (Some(i), _) => i,
        // Buildx names a secret given by its source alone after the file or variable.
        (None, SecretSource::File(p)) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| bad("needs an id"))?,
        (None, SecretSource::Env(v)) => v.clone(),
    };
    if id.contains('/') {
        return Err(bad("an id cannot contain '/'"));
    }
    Ok((id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_secret() {
        let file = |p: &str| SecretSource::File(p.into());
        let env = |v: &str| SecretSource::Env(v.into());
        for (spec, id, source) in [
            ("id=tok,src=/run/tok", "tok", file("/run/tok")),
            ("id=tok,source=f,type=file", "tok", file("f")),
            ("id=aws,env=AWS_KEY", "aws", env("AWS_KEY")),
            ("type=env,id=HOME", "HOME", env("HOME")),
            ("src=/x/y.txt", "y.txt", file("/x/y.txt")),
        ] {
            assert_eq!(parse(spec).unwrap(), (id.to_string(), source), "{spec}");
        }
        for bad in [
            "tok",
            "id=a,src=f,env=V",
            "id=a,type=ssh,src=f",
            "id=a,colour=red,src=f",
            "id=a/b,src=f",
            "type=file",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("--secret"), "{bad}: {e}");
        }
    }
}
