//! Where registry credentials come from, in ch-image's authenticated mode (`--auth` or
//! `LADE_AUTH=yes`), in this order:
//!
//! 1. `LADE_USERNAME` and `LADE_PASSWORD` (only the user name set: the password is asked for);
//! 2. the login files users already have, as containers-auth.json(5) reads them:
//!    `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//!    `~/.config/containers/auth.json`, `~/.docker/config.json` (base64 `auth` fields; the most
//!    specific `registry/namespace` key wins; a file's credential helper, `credHelpers` or
//!    `credsStore`, is asked when it has no entry: see [`super::cred_helper`]);
//! 3. a prompt on the terminal, the password never echoed.
//!
//! Without `--auth`, reads that a registry refuses anonymously retry with the login files'
//! credentials only ([`find_stored`]); with `--no-auth` (`LADE_AUTH=no`) they never do.
//!
//! Secrets live only in memory, in [`Secret`], which never prints itself and is zeroed on drop;
//! nothing here writes them anywhere (`lade login` does, see [`super::login`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// A password or token: never shown by `Debug` or `Display`, zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for building a header; never format it into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a set of credentials came from, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    LoginFile(PathBuf),
    /// A credential helper, named in a login file.
    Helper(String, PathBuf),
    Prompt,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => f.write_str("$LADE_USERNAME/$LADE_PASSWORD"),
            Origin::LoginFile(p) => write!(f, "{}", p.display()),
            Origin::Helper(h, p) => write!(f, "docker-credential-{h} (named in {})", p.display()),
            Origin::Prompt => f.write_str("the prompt"),
        }
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub origin: Origin,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials({} from {}, ***)",
            self.username, self.origin
        )
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> Secret {
        let mut plain = format!("{}:{}", self.username, self.password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        plain.zeroize();
        Secret(format!("Basic {encoded}"))
    }
}

/// The environment credentials are looked up in; a struct so that tests need not change the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub username: Option<String>,
    pub password: Option<OsString>,
    pub registry_auth_file: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            username: std::env::var("LADE_USERNAME")
                .ok()
                .filter(|v| !v.is_empty()),
            password: std::env::var_os("LADE_PASSWORD"),
            registry_auth_file: path("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: path("XDG_RUNTIME_DIR"),
            home: path("HOME"),
        }
    }

    /// The login files, most important first.
    pub fn login_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(f) = &self.registry_auth_file {
            files.push(f.clone());
        }
        if let Some(d) = &self.xdg_runtime_dir {
            files.push(d.join("containers/auth.json"));
        }
        if let Some(h) = &self.home {
            files.push(h.join(".config/containers/auth.json"));
            files.push(h.join(".docker/config.json"));
        }
        files
    }
}

/// Finds credentials for `registry` (as written in the reference, e.g. `docker.io` or
/// `localhost:5000`) and `repository`, asking on the terminal as the last resort.
/// `notes` receives lines worth showing with `-v` (never secrets).
pub fn find(
    env: &Env,
    registry: &str,
    repository: &str,
    notes: &mut dyn FnMut(String),
) -> Result<Credentials> {
    if let Some(c) = from_environment(env, registry)? {
        return Ok(c);
    }
    if let Some(c) = find_stored(env, registry, repository, notes)? {
        notes(format!(
            "using credentials for {registry} from {}",
            c.origin
        ));
        return Ok(c);
    }
    prompt(registry, None)
}

/// The credentials a login (`lade login`, `podman login`, `docker login`) stored for
/// `registry` and `repository`: the login files' and the credential helpers they name, never
/// the environment's or a prompt's (those are authenticated mode's, as in ch-image). What
/// reads retry with when a registry refuses anonymous access.
pub fn find_stored(
    env: &Env,
    registry: &str,
    repository: &str,
    notes: &mut dyn FnMut(String),
) -> Result<Option<Credentials>> {
    for file in env.login_files() {
        if let Some(c) = from_login_file(&file, registry, repository, notes)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn from_environment(env: &Env, registry: &str) -> Result<Option<Credentials>> {
    let Some(username) = &env.username else {
        if env.password.is_some() {
            return Err(Error::invalid(
                "$LADE_PASSWORD",
                "set without $LADE_USERNAME; set both, or neither",
            ));
        }
        return Ok(None);
    };
    match &env.password {
        Some(p) => {
            let password = p
                .clone()
                .into_string()
                .map_err(|_| Error::invalid("$LADE_PASSWORD", "not valid UTF-8"))?;
            Ok(Some(Credentials {
                username: username.clone(),
                password: Secret(password),
                origin: Origin::Environment,
            }))
        }
        None => prompt(registry, Some(username)).map(Some),
    }
}

#[derive(serde::Deserialize)]
struct LoginFile {
    #[serde(default)]
    auths: BTreeMap<String, LoginEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize)]
struct LoginEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl Drop for LoginEntry {
    fn drop(&mut self) {
        for s in [&mut self.auth, &mut self.password, &mut self.identitytoken]
            .into_iter()
            .flatten()
        {
            s.zeroize();
        }
    }
}

/// The registry part of a login file key, normalised as containers/image does: a key with a
/// scheme (`https://index.docker.io/v1/`) names only its host; Docker Hub's many names are
/// one.
pub(super) fn normalise_key(key: &str) -> String {
    let key = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => key.trim_end_matches('/'),
    };
    let (host, rest) = match key.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (key, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    match rest {
        Some(r) => format!("{host}/{r}"),
        None => host.to_string(),
    }
}

/// Keys to try for `registry/repository`, most specific first: `r/a/b/c`, `r/a/b`, `r/a`, `r`.
pub(super) fn candidate_keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut path = repository;
    loop {
        keys.push(format!("{registry}/{path}"));
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent,
            None => break,
        }
    }
    keys.push(registry.to_string());
    keys
}

fn from_login_file(
    file: &Path,
    registry: &str,
    repository: &str,
    notes: &mut dyn FnMut(String),
) -> Result<Option<Credentials>> {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io_path(file, e)),
    };
    let what = format!("login file {}", file.display());
    // serde_json's errors name a line and column, never the text around it, so no secret
    // from a malformed file can reach the message.
    let parsed: LoginFile = serde_json::from_slice(&text).map_err(|e| Error::json(&what, e))?;
    let mut text = text;
    text.zeroize();
    let by_key: BTreeMap<String, &LoginEntry> = parsed
        .auths
        .iter()
        .map(|(k, v)| (normalise_key(k), v))
        .collect();
    for key in candidate_keys(registry, repository) {
        let Some(entry) = by_key.get(&key) else {
            continue;
        };
        if let Some(c) = entry_credentials(entry, &key, file, &what)? {
            return Ok(Some(c));
        }
        if entry.identitytoken.is_some() {
            notes(format!(
                "{what}: entry '{key}' holds an identity token, which lade cannot use; skipped"
            ));
        }
    }
    let Some(helper) = parsed.helper_for(registry, repository) else {
        return Ok(None);
    };
    let Some(found) = super::cred_helper::get(&helper, registry, notes)? else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        username: found.username,
        password: found.secret,
        origin: Origin::Helper(helper, file.to_path_buf()),
    }))
}

impl LoginFile {
    /// The credential helper this file names for `registry/repository`: the most specific
    /// `credHelpers` key, else `credsStore`.
    fn helper_for(&self, registry: &str, repository: &str) -> Option<String> {
        candidate_keys(registry, repository)
            .iter()
            .find_map(|k| {
                self.cred_helpers
                    .iter()
                    .find(|(hk, _)| normalise_key(hk) == *k)
                    .map(|(_, v)| v.clone())
            })
            .or_else(|| self.creds_store.clone())
            .filter(|h| !h.is_empty())
    }
}

/// The credential helper a login file's text names for `registry/repository`, if any.
pub(super) fn helper_named(text: &[u8], registry: &str, repository: &str) -> Option<String> {
    let parsed: LoginFile = serde_json::from_slice(text).ok()?;
    parsed.helper_for(registry, repository)
}

fn entry_credentials(
    entry: &LoginEntry,
    key: &str,
    file: &Path,
    what: &str,
) -> Result<Option<Credentials>> {
    let origin = Origin::LoginFile(file.to_path_buf());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = |why: &str| Error::invalid(what, format!("entry '{key}': {why}"));
        let mut decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("'auth' is not valid base64"))?;
        let text = String::from_utf8(std::mem::take(&mut decoded))
            .map_err(|_| bad("'auth' does not decode to UTF-8"))?;
        let secret = Secret(text);
        let Some((user, pass)) = secret.expose().split_once(':') else {
            return Err(bad("'auth' does not decode to 'user:password'"));
        };
        if user.is_empty() {
            return Err(bad("empty user name in 'auth'"));
        }
        return Ok(Some(Credentials {
            username: user.to_string(),
            password: Secret(pass.to_string()),
            origin,
        }));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password)
        && !u.is_empty()
    {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: Secret(p.clone()),
            origin,
        }));
    }
    Ok(None)
}

/// Asks on the controlling terminal (never standard input, which may carry data). The
/// password is read with echo off.
pub fn prompt(registry: &str, username: Option<&str>) -> Result<Credentials> {
    let no_tty = |e: std::io::Error| {
        Error::invalid(
            format!("credentials for {registry}"),
            format!(
                "needed, but there is no terminal to ask on ({e}); set LADE_USERNAME and \
                 LADE_PASSWORD, or log in with `lade login {registry}`"
            ),
        )
    };
    let username = match username {
        Some(u) => u.to_string(),
        None => {
            let tty = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .map_err(no_tty)?;
            let mut out = &tty;
            write!(out, "Username for {registry}: ")
                .and_then(|_| out.flush())
                .map_err(no_tty)?;
            let mut line = String::new();
            BufReader::new(&tty).take_line(&mut line).map_err(no_tty)?;
            let u = line.trim().to_string();
            if u.is_empty() {
                return Err(Error::invalid(
                    format!("credentials for {registry}"),
                    "no user name given",
                ));
            }
            u
        }
    };
    let password = rpassword::prompt_password(format!("Password for {username}@{registry}: "))
        .map_err(no_tty)?;
    Ok(Credentials {
        username,
        password: Secret(password),
        origin: Origin::Prompt,
    })
}

/// One bounded line from a reader.
trait TakeLine {
    fn take_line(self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(self, line: &mut String) -> std::io::Result<usize> {
        self.take(4096).read_line(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn secret_never_prints() {
        let c = Credentials {
            username: "u".into(),
            password: Secret("hunter2".into()),
            origin: Origin::Prompt,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", c.password).contains("hunter2"));
        assert_eq!(
            c.basic_header().expose(),
            format!("Basic {}", b64("u:hunter2"))
        );
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(normalise_key("quay.io/org/repo"), "quay.io/org/repo");
        assert_eq!(
            candidate_keys("quay.io", "a/b/c"),
            ["quay.io/a/b/c", "quay.io/a/b", "quay.io/a", "quay.io"]
        );
    }

    #[test]
    fn login_files_most_specific_first() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let json = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/org": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("general:p1"),
            b64("special:p:2"),
            b64("hub:p3")
        );
        std::fs::write(&f, json).unwrap();
        let mut notes = |_: String| {};
        let c = from_login_file(&f, "quay.io", "org/x", &mut notes)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.expose()),
            ("special", "p:2")
        );
        let c = from_login_file(&f, "quay.io", "other/x", &mut notes)
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "general");
        let c = from_login_file(&f, "docker.io", "library/alpine", &mut notes)
            .unwrap()
            .unwrap();
        assert_eq!(c.password.expose(), "p3");
        assert!(
            from_login_file(&f, "ghcr.io", "x", &mut notes)
                .unwrap()
                .is_none()
        );
        assert!(
            from_login_file(&dir.path().join("none"), "ghcr.io", "x", &mut notes)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_login_file_errors_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        std::fs::write(&f, r#"{"auths": {"h": {"auth": "sekrit-not-base64!"}}}"#).unwrap();
        let e = from_login_file(&f, "h", "x", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid base64") && !e.contains("sekrit"),
            "{e}"
        );
        std::fs::write(&f, r#"{"auths": {"h": {"auth": "sekrit"#).unwrap();
        let e = from_login_file(&f, "h", "x", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(!e.contains("sekrit"), "{e}");
        std::fs::write(
            &f,
            format!(r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#, b64("nocolon")),
        )
        .unwrap();
        let e = from_login_file(&f, "h", "x", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("user:password") && !e.contains("nocolon"), "{e}");
    }

    #[test]
    fn stored_logins_only_from_login_files() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join(".docker");
        std::fs::create_dir_all(&docker).unwrap();
        let mut env = Env {
            username: Some("from-env".into()),
            password: Some("pw".into()),
            home: Some(dir.path().to_path_buf()),
            ..Env::default()
        };
        let mut notes = |_: String| {};
        assert!(find_stored(&env, "r", "x", &mut notes).unwrap().is_none());
        let json = format!(r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#, b64("stored:p"));
        std::fs::write(docker.join("config.json"), json).unwrap();
        let c = find_stored(&env, "r", "x", &mut notes).unwrap().unwrap();
        assert_eq!(c.username, "stored");
        assert_eq!(c.origin, Origin::LoginFile(docker.join("config.json")));
        // $REGISTRY_AUTH_FILE comes first, as for --auth.
        let first = dir.path().join("first.json");
        let json = format!(r#"{{"auths": {{"r": {{"auth": "{}"}}}}}}"#, b64("first:p"));
        std::fs::write(&first, json).unwrap();
        env.registry_auth_file = Some(first);
        let c = find_stored(&env, "r", "x", &mut notes).unwrap().unwrap();
        assert_eq!(c.username, "first");
        assert!(
            find_stored(&env, "other", "x", &mut notes)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn environment_first() {
        let env = Env {
            username: Some("me".into()),
            password: Some("pw".into()),
            ..Env::default()
        };
        let c = find(&env, "r", "x", &mut |_| {}).unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("me", "pw"));
        assert_eq!(c.origin, Origin::Environment);
        let env = Env {
            password: Some("pw".into()),
            ..Env::default()
        };
        assert!(find(&env, "r", "x", &mut |_| {}).is_err());
    }
}
