//! Docker's credential helpers: `docker-credential-NAME get|store|erase`, named by
//! `credsStore` (every registry) or `credHelpers` (one registry) in a login file, spoken to
//! with their JSON protocol on standard input and output. Secrets pass through pipes only,
//! never through arguments, the environment or messages.

use std::io::Write;
use std::process::{Command, Stdio};

use zeroize::Zeroize;

use super::credentials::Secret;
use crate::error::{Error, Result};

/// What a helper answers to `get`.
pub struct Found {
    pub username: String,
    pub secret: Secret,
}

/// The server URL a helper files credentials under: Docker Hub's historical URL, else the
/// registry's `host[:port]`, as the docker CLI passes them.
pub fn server_url(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

fn program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// Runs `docker-credential-HELPER ACTION` with `input` on standard input; `Ok(None)` if the
/// program is not installed.
fn run(helper: &str, action: &str, input: &[u8]) -> Result<Option<(bool, Vec<u8>)>> {
    let prog = program(helper);
    let what = format!("credential helper {prog} {action}");
    let mut child = match Command::new(&prog)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&what, e)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| Error::io(&what, e))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::io(&what, e))?;
    let mut answer = out.stdout;
    if !out.status.success() {
        // Helpers say why on standard output (never a secret when they fail).
        let mut why = String::from_utf8_lossy(&answer).trim().to_string();
        if why.is_empty() {
            why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        answer.zeroize();
        return Ok(Some((false, why.into_bytes())));
    }
    Ok(Some((true, answer)))
}

/// `get`: the credentials `helper` holds for `registry`, `None` if it holds none, or if the
/// helper is not installed (`notes` says so).
pub fn get(helper: &str, registry: &str, notes: &mut dyn FnMut(String)) -> Result<Option<Found>> {
    let url = server_url(registry);
    let what = format!("credential helper {} get", program(helper));
    let Some((ok, mut answer)) = run(helper, "get", url.as_bytes())? else {
        notes(format!("{what}: not installed (not on PATH); skipped"));
        return Ok(None);
    };
    if !ok {
        let why = String::from_utf8_lossy(&answer).into_owned();
        if why.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::invalid(&what, format!("failed for {url}: {why}")));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    // serde_json's errors name a position, never the text, so no secret reaches a message.
    let parsed: std::result::Result<Answer, _> = serde_json::from_slice(&answer);
    answer.zeroize();
    let mut parsed = parsed.map_err(|e| Error::json(&what, e))?;
    let secret = Secret::new(std::mem::take(&mut parsed.secret));
    if parsed.username.is_empty() || parsed.username == "<token>" {
        notes(format!(
            "{what}: holds an identity token for {url}, which lade cannot use; skipped"
        ));
        return Ok(None);
    }
    Ok(Some(Found {
        username: parsed.username,
        secret,
    }))
}

/// `store`: files `username` and `secret` for `registry` with the helper.
pub fn store(helper: &str, registry: &str, username: &str, secret: &Secret) -> Result<()> {
    let what = format!("credential helper {} store", program(helper));
    let mut input = serde_json::to_vec(&serde_json::json!({
        "ServerURL": server_url(registry),
        "Username": username,
        "Secret": secret.expose(),
    }))
    .map_err(|e| Error::json(&what, e))?;
    let result = run(helper, "store", &input);
    input.zeroize();
    match result? {
        None => Err(not_installed(&what)),
        Some((true, _)) => Ok(()),
        Some((false, why)) => Err(Error::invalid(&what, String::from_utf8_lossy(&why))),
    }
}

/// `erase`: forgets what the helper holds for `registry`.
pub fn erase(helper: &str, registry: &str) -> Result<()> {
    let what = format!("credential helper {} erase", program(helper));
    match run(helper, "erase", server_url(registry).as_bytes())? {
        None => Err(not_installed(&what)),
        Some((true, _)) => Ok(()),
        Some((false, why)) => Err(Error::invalid(&what, String::from_utf8_lossy(&why))),
    }
}

fn not_installed(what: &str) -> Error {
    Error::invalid(what, "not installed (not on PATH)")
}
