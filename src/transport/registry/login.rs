//! `lade login` and `lade logout`: credentials checked against the registry, then written to a
//! login file (Podman's `auth.json` by default, the one lade reads first), or to the
//! credential helper that file names, as `docker login` does. The file is written whole to a
//! temporary sibling of mode 0600 and renamed over the old one, so that it is never seen half
//! written, never readable by others, and keeps every entry and setting it had.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use zeroize::Zeroize;

use super::client::Client;
use super::cred_helper;
use super::credentials::{self, Credentials, Env, Secret};
use super::{AuthMode, Options};
use crate::error::{Error, IoContext, Result};

/// A `REGISTRY[/NAMESPACE]` argument as a login file key: no scheme, Docker Hub's names as
/// one (`docker.io`), and the registry host it names.
pub struct Target {
    pub key: String,
    pub registry: String,
}

impl Target {
    pub fn parse(arg: &str) -> Result<Target> {
        let key = credentials::normalise_key(arg.trim());
        let registry = key.split('/').next().unwrap_or_default().to_string();
        if registry.is_empty() || registry.contains(char::is_whitespace) {
            return Err(Error::invalid(
                format!("registry '{arg}'"),
                "not a registry host (HOST[:PORT][/NAMESPACE])",
            ));
        }
        Ok(Target { key, registry })
    }

    fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

/// The login file `lade login` writes: `--authfile`, else `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json` (Podman's), else
/// `~/.config/containers/auth.json`: the first of the files lade reads that is set.
pub fn file_to_write(authfile: Option<&Path>, env: &Env) -> Result<PathBuf> {
    if let Some(f) = authfile {
        return Ok(f.to_path_buf());
    }
    env.login_files().into_iter().next().ok_or_else(|| {
        Error::invalid(
            "login file",
            "none of $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR and $HOME is set; give --authfile",
        )
    })
}

/// Asks the registry's `/v2/` with `creds`, as `docker login` and `podman login` do before
/// saving anything: a token service or a basic-auth registry must accept them.
pub fn verify(target: &Target, creds: &Credentials, opts: &Options) -> Result<()> {
    let opts = Options {
        auth: AuthMode::Authenticated,
        password_many: false,
        env: Some(Env {
            username: Some(creds.username.clone()),
            password: Some(creds.password.expose().into()),
            ..Env::default()
        }),
        ..opts.clone()
    };
    let what = format!("login to {}", target.registry);
    let client = Client::new(
        &target.registry,
        target.api_host(),
        &opts,
        opts.progress.clone(),
    )?;
    let resp = client.send(Method::GET, "/v2/", "", &what, &|b| b)?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::invalid(
            &what,
            format!(
                "the registry refused user '{}' (HTTP {}): wrong user name or password",
                creds.username,
                resp.status().as_u16()
            ),
        )),
        _ => Err(client.status_error(&what, resp)),
    }
}

/// The login file's JSON, or an empty object if it does not exist yet.
fn read_file(file: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut text = match fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(Error::io_path(file, e)),
    };
    let what = format!("login file {}", file.display());
    let parsed: std::result::Result<serde_json::Value, _> = serde_json::from_slice(&text);
    text.zeroize();
    match parsed.map_err(|e| Error::json(&what, e))? {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(Error::invalid(&what, "not a JSON object")),
    }
}

/// Where the credentials go: a credential helper the file names for this key, else the file.
fn helper_of(map: &serde_json::Map<String, serde_json::Value>, target: &Target) -> Option<String> {
    let text = serde_json::to_vec(map).ok()?;
    let repository = target
        .key
        .split_once('/')
        .map(|(_, r)| r)
        .unwrap_or_default();
    credentials::helper_named(&text, &target.registry, repository)
}

/// The `auths` object of a login file.
fn auths(
    map: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<&mut serde_json::Map<String, serde_json::Value>> {
    let entry = map
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    entry
        .as_object_mut()
        .ok_or_else(|| Error::invalid("login file", "'auths' is not an object"))
}

/// Saves `creds` for `target` in `file` (or the helper it names); says where.
pub fn save(file: &Path, target: &Target, creds: &Credentials) -> Result<String> {
    let mut map = read_file(file)?;
    let helper = helper_of(&map, target);
    let entry = match &helper {
        Some(h) => {
            cred_helper::store(h, &target.registry, &creds.username, &creds.password)?;
            // As docker login: the file lists the registry, the helper holds the secret.
            serde_json::json!({})
        }
        None => {
            let mut plain = format!("{}:{}", creds.username, creds.password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
            plain.zeroize();
            serde_json::json!({ "auth": encoded })
        }
    };
    let auths = auths(&mut map)?;
    auths.retain(|k, _| credentials::normalise_key(k) != target.key);
    auths.insert(target.key.clone(), entry);
    write_private(file, &map)?;
    Ok(match helper {
        Some(h) => format!("docker-credential-{h} (listed in {})", file.display()),
        None => file.display().to_string(),
    })
}

/// Forgets `target` in `file` (and in the helper it names); an error if it was not there.
pub fn forget(file: &Path, target: &Target) -> Result<()> {
    let mut map = read_file(file)?;
    let helper = helper_of(&map, target);
    let auths = auths(&mut map)?;
    let before = auths.len();
    auths.retain(|k, _| credentials::normalise_key(k) != target.key);
    let removed = auths.len() != before;
    let erased = match &helper {
        Some(h) => cred_helper::erase(h, &target.registry).is_ok(),
        None => false,
    };
    if !removed && !erased {
        return Err(Error::invalid(
            format!("logout from {}", target.key),
            format!("not logged in (no entry in {})", file.display()),
        ));
    }
    if removed {
        write_private(file, &map)?;
    }
    Ok(())
}

/// Writes the JSON to `file` through a 0600 temporary sibling renamed over it; the directory
/// is made (0700) if missing.
fn write_private(file: &Path, map: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        fs::create_dir_all(&dir).at(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).at(&dir)?;
    }
    let mut bytes = serde_json::to_vec_pretty(map)
        .map_err(|e| Error::json(format!("login file {}", file.display()), e))?;
    bytes.push(b'\n');
    let tmp = crate::fsutil::hidden_sibling(&dir, file, "lade-tmp");
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(&bytes).at(&tmp)?;
        f.sync_data().at(&tmp)?;
        fs::rename(&tmp, file).at(file)
    })();
    bytes.zeroize();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A secret read from standard input (`--password-stdin`): its first line, without the line
/// ending.
pub fn password_from_stdin() -> Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::io("the password on standard input", e))?;
    let trimmed = line.trim_end_matches(['\n', '\r']).to_string();
    line.zeroize();
    if trimmed.is_empty() {
        return Err(Error::invalid(
            "--password-stdin",
            "standard input holds no password",
        ));
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_normalise() {
        let t = Target::parse("https://index.docker.io/v1/").unwrap();
        assert_eq!(
            (t.key.as_str(), t.registry.as_str()),
            ("docker.io", "docker.io")
        );
        let t = Target::parse("localhost:5000/team").unwrap();
        assert_eq!(
            (t.key.as_str(), t.registry.as_str()),
            ("localhost:5000/team", "localhost:5000")
        );
        assert!(Target::parse("").is_err());
    }

    #[test]
    fn saving_keeps_other_entries_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/auth.json");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, r#"{"auths": {"other.io": {"auth": "eDp5"}}, "x": 1}"#).unwrap();
        let creds = Credentials {
            username: "u".into(),
            password: Secret::new("p:w".into()),
            origin: credentials::Origin::Prompt,
        };
        let t = Target::parse("quay.io").unwrap();
        save(&f, &t, &creds).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["x"], 1);
        assert_eq!(v["auths"]["other.io"]["auth"], "eDp5");
        assert_eq!(v["auths"]["quay.io"]["auth"], "dTpwOnc=");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        forget(&f, &t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert!(v["auths"].get("quay.io").is_none());
        assert!(forget(&f, &t).is_err());
    }
}
