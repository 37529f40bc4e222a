//! A token service for Distribution's `auth: token:` set-up, written for the tests: it
//! answers `GET /token?service=S&scope=repository:NAME:ACTIONS` with a JWT signed RS256 by a
//! key made here with openssl (the certificate travels in the `x5c` header; the registry
//! trusts it through `rootcertbundle`). Anonymous clients may pull `public/*` (or nothing, with
//! `refuse_anonymous`); users that give the right password (HTTP basic) may pull and push
//! everything.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::http;
use crate::common::run_cmd;

pub const SERVICE: &str = "lade-test-registry";
pub const ISSUER: &str = "lade-test-token-issuer";

#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The user that authenticated, if any.
    pub user: Option<String>,
    /// Credentials were given but wrong.
    pub refused: bool,
    pub scopes: Vec<String>,
}

pub struct Config {
    pub users: Vec<(String, String)>,
    /// Seconds the tokens live (`expires_in`).
    pub expires_in: u64,
    /// Answer with `access_token` instead of `token` (as OAuth2 servers do).
    pub access_token_field: bool,
    /// Refuse (401) every request without credentials, as services with no anonymous access
    /// do, instead of granting anonymous clients `public/*`.
    pub refuse_anonymous: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            users: vec![("alice".into(), "s3cret-Pa55".into())],
            expires_in: 300,
            access_token_field: false,
            refuse_anonymous: false,
        }
    }
}

struct Shared {
    config: Config,
    key: PathBuf,
    x5c: String,
    requests: Mutex<Vec<TokenRequest>>,
    stop: AtomicBool,
}

pub struct TokenServer {
    pub port: u16,
    /// The certificate the registry must trust (`rootcertbundle`).
    pub cert: PathBuf,
    shared: Arc<Shared>,
}

impl TokenServer {
    pub fn start(dir: &Path, config: Config) -> TokenServer {
        super::registry::require("openssl", "openssl");
        fs::create_dir_all(dir).unwrap();
        let mut c = Command::new("openssl");
        c.args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lade test token signer",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
        ])
        .current_dir(dir);
        run_cmd(c).ok();
        let mut c = Command::new("openssl");
        c.args([
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ])
        .current_dir(dir);
        run_cmd(c).ok();
        let der = fs::read(dir.join("token.der")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            config,
            key: dir.join("token.key"),
            x5c: base64::engine::general_purpose::STANDARD.encode(der),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || serve(conn, &sh));
            }
        });
        TokenServer {
            port,
            cert: dir.join("token.pem"),
            shared,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The registry auth set-up that trusts this server.
    pub fn registry_auth(&self) -> super::registry::Auth {
        super::registry::Auth::Token {
            realm: self.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            cert: self.cert.clone(),
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, sh: &Shared) {
    http::set_timeouts(&conn);
    let Ok(Some((head, _))) = http::read_head(&mut conn) else {
        return;
    };
    if head.path() != "/token" {
        http::respond(&mut conn, 404, &[], b"no such thing");
        return;
    }
    let query = head.query();
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let service_ok = query.iter().any(|(k, v)| k == "service" && v == SERVICE);
    let (user, refused) = match head.header("authorization") {
        None => (None, false),
        Some(a) => match check_basic(a, &sh.config.users) {
            Some(u) => (Some(u), false),
            None => (None, true),
        },
    };
    sh.requests.lock().unwrap().push(TokenRequest {
        user: user.clone(),
        refused,
        scopes: scopes.clone(),
    });
    if refused || (user.is_none() && sh.config.refuse_anonymous) {
        http::respond(
            &mut conn,
            401,
            &[("Content-Type", "application/json".into())],
            br#"{"details":"wrong user name or password"}"#,
        );
        return;
    }
    if !service_ok {
        http::respond(&mut conn, 400, &[], b"unknown service");
        return;
    }
    let mut access = Vec::new();
    for s in &scopes {
        let mut parts = s.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| match &user {
                Some(_) => matches!(*a, "pull" | "push"),
                None => *a == "pull" && name.starts_with("public/"),
            })
            .collect();
        access.push(serde_json::json!({
            "type": "repository", "name": name, "actions": granted,
        }));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + sh.config.expires_in,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", rand_id()),
        "access": access,
    });
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [sh.x5c]});
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = sign(&sh.key, signing_input.as_bytes());
    let jwt = format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    );
    let field = if sh.config.access_token_field {
        "access_token"
    } else {
        "token"
    };
    let body = serde_json::json!({
        field: jwt,
        "expires_in": sh.config.expires_in,
        "issued_at": "2026-01-01T00:00:00Z",
    });
    http::respond(
        &mut conn,
        200,
        &[("Content-Type", "application/json".into())],
        body.to_string().as_bytes(),
    );
}

fn check_basic(header: &str, users: &[(String, String)]) -> Option<String> {
    let b64 = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    users
        .iter()
        .any(|(uu, pp)| uu == u && pp == p)
        .then(|| u.to_string())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(42);
    h.finish()
}

/// RS256: `openssl dgst -sha256 -sign` is exactly RSASSA-PKCS1-v1_5 with SHA-256.
fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst failed: {:?}", out);
    out.stdout
}
