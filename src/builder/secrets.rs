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
    let source = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => return Err(bad("give src or env, not both")),
        (Some("file") | None, Some(f), None) => SecretSource::File(PathBuf::from(f)),
        (Some("env") | None, None, Some(v)) => SecretSource::Env(v),
        (Some("env"), Some(v), None) => SecretSource::Env(v),
        (Some("file"), None, Some(f)) => SecretSource::File(PathBuf::from(f)),
        (Some("env"), None, None) => {
            SecretSource::Env(id.clone().ok_or_else(|| bad("needs an id"))?)
        }
        (Some("file"), None, None) => {
            SecretSource::File(PathBuf::from(id.clone().ok_or_else(|| bad("needs an id"))?))
        }
        (None, None, None) => {
            let i = id.clone().ok_or_else(|| bad("needs an id"))?;
            if std::env::var_os(&i).is_some() {
                SecretSource::Env(i)
            } else {
                SecretSource::File(PathBuf::from(i))
            }
        }
        (Some(t), _, _) => return Err(bad(&format!("unknown type '{t}' (file or env)"))),
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
        assert_eq!(
            parse("id=tok,src=/run/tok").unwrap(),
            ("tok".into(), SecretSource::File("/run/tok".into()))
        );
        assert_eq!(
            parse("id=tok,source=f,type=file").unwrap(),
            ("tok".into(), SecretSource::File("f".into()))
        );
        assert_eq!(
            parse("id=aws,env=AWS_KEY").unwrap(),
            ("aws".into(), SecretSource::Env("AWS_KEY".into()))
        );
        assert_eq!(
            parse("type=env,id=HOME").unwrap(),
            ("HOME".into(), SecretSource::Env("HOME".into()))
        );
        assert_eq!(
            parse("src=/x/y.txt").unwrap(),
            ("y.txt".into(), SecretSource::File("/x/y.txt".into()))
        );
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
