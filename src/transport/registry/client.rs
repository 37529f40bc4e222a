//! One registry host over HTTP: the scheme (HTTPS, or plain HTTP only with `--tls-no-verify`),
//! bounded retries with backoff (network resets, 5xx, 429 with `Retry-After`), and
//! authentication answered as the challenges come (bearer tokens per scope, or basic).
//!
//! There is no `GET /v2/` ping before the first real request: the challenge on a 401 tells
//! everything the ping would, and skipping it keeps a warm pull to a single manifest request.
//! [`Client::ping`] exists for diagnosis and `lade list`. Under `--tls-no-verify` the first
//! request settles the scheme while concurrent ones wait for it, so parallel blob requests of a
//! pull whose manifest was already stored cannot race each other to different schemes.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::Options;
use super::challenge::{self, Challenge};
use super::credentials::{self, Credentials, Secret};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Attempts per request for transient failures (network resets, 5xx, 429).
pub(super) const MAX_ATTEMPTS: u32 = 5;
/// First backoff; doubled each time (0.25, 0.5, 1, 2 s: under 4 s in all).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest `Retry-After` lade waits; a registry asking for more gets a clear error instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A read that gets no byte for this long fails (and a blob read is then resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per request (blob storage is usually one hop away).
const MAX_REDIRECTS: usize = 10;
/// Bodies read into memory (tokens, error documents).
const MAX_SMALL_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

struct Token {
    value: Secret,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    /// Learned from a bearer challenge: where tokens come from.
    realm: Option<String>,
    service: Option<String>,
    /// The registry asked for basic authentication.
    basic: bool,
    tokens: HashMap<String, Token>,
    credentials: Option<Credentials>,
}

/// What a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Nothing,
    /// A token or credentials from earlier requests.
    Cached,
    /// A token got for this very request.
    Fresh,
}

/// What one authentication round concluded.
enum AuthOutcome {
    /// Credentials or a token are in place: send the request again.
    Retry,
    /// Nothing more to try: the 401 stands.
    GiveUp,
}

pub struct Client {
    /// `host[:port]` of the registry API (Docker Hub's is not `docker.io`).
    host: String,
    /// The registry as references name it, for login files and messages.
    registry: String,
    http: reqwest::blocking::Client,
    insecure: bool,
    authenticated: bool,
    password_many: bool,
    env: credentials::Env,
    scheme: Mutex<Option<Scheme>>,
    /// Held by the request that settles the scheme (`--tls-no-verify`: HTTPS, else plain
    /// HTTP), so that concurrent first requests wait for its answer instead of each probing
    /// on its own: one that fails on HTTPS after another settled on HTTP would not try HTTP.
    settling: Mutex<()>,
    auth: Mutex<AuthState>,
    /// The user name of the credentials last used, for messages (its own lock, so that
    /// errors can be made while `auth` is held).
    last_user: Mutex<Option<String>>,
    progress: Progress,
}

/// A request to the registry's API. `scope` is the token scope it needs, e.g.
/// `repository:library/alpine:pull`.
pub struct Request<'a> {
    pub path: &'a str,
    pub accept: Option<&'a str>,
    pub range_from: Option<u64>,
    pub scope: &'a str,
    pub what: &'a str,
}

impl Client {
    pub fn new(
        registry: &str,
        api_host: &str,
        opts: &Options,
        progress: Progress,
    ) -> Result<Client> {
        let what = format!("registry {registry}");
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(concat!("lade/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // In the blocking client this bounds each read of a body, not the whole body.
            .timeout(READ_TIMEOUT)
            .redirect(redirect_policy(opts.tls_no_verify))
            .https_only(!opts.tls_no_verify);
        if opts.tls_no_verify {
            // No verification, so no trust anchors to load either.
            b = b
                .danger_accept_invalid_certs(true)
                .tls_built_in_root_certs(false);
        } else {
            // Trust anchors loaded only as far as needed (see `tls`): the system's bundle is
            // most of a warm pull's time otherwise.
            b = b.use_preconfigured_tls(super::tls::verifying_config(opts.ca_file.as_deref())?);
        }
        let http = b
            .build()
            .map_err(|e| Error::invalid(&what, format!("cannot set up HTTP: {}", chain(&e))))?;
        Ok(Client {
            host: api_host.to_string(),
            registry: registry.to_string(),
            http,
            insecure: opts.tls_no_verify,
            authenticated: opts.auth,
            password_many: opts.password_many,
            env: opts
                .env
                .clone()
                .unwrap_or_else(credentials::Env::from_process),
            scheme: Mutex::new(if opts.tls_no_verify {
                None
            } else {
                Some(Scheme::Https)
            }),
            settling: Mutex::new(()),
            auth: Mutex::new(AuthState::default()),
            last_user: Mutex::new(None),
            progress,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port` as ch-image shows it (`registry-1.docker.io:443`).
    pub fn host_with_port(&self) -> String {
        if self.host.starts_with('[') && self.host.ends_with(']') || !self.host.contains(':') {
            let port = match self.current_scheme() {
                Some(Scheme::Http) => 80,
                _ => 443,
            };
            format!("{}:{port}", self.host)
        } else {
            self.host.clone()
        }
    }

    fn current_scheme(&self) -> Option<Scheme> {
        self.scheme.lock().ok().and_then(|s| *s)
    }

    fn url(&self, scheme: Scheme, path: &str) -> String {
        format!("{}://{}{}", scheme.as_str(), self.host, path)
    }

    /// `GET /v2/`: whether this is a registry, and which authentication it wants.
    pub fn ping(&self) -> Result<StatusCode> {
        let resp = self.send_retrying(
            &|scheme| self.http.get(self.url(scheme, "/v2/")),
            &format!("registry {}", self.host),
        )?;
        Ok(resp.status())
    }

    /// Sends a GET to the registry API, authenticating as challenged (at most two rounds), and
    /// returns the response whatever its status; transient failures are retried first.
    pub fn get(&self, req: &Request) -> Result<Response> {
        let mut rounds = 0;
        loop {
            let (auth, sent) = self.authorization(req.scope)?;
            let build = |scheme: Scheme| {
                let mut b = self.http.get(self.url(scheme, req.path));
                if let Some(a) = req.accept {
                    b = b.header(header::ACCEPT, a);
                }
                if let Some(from) = req.range_from {
                    b = b.header(header::RANGE, format!("bytes={from}-"));
                }
                if let Some(a) = &auth {
                    b = b.header(header::AUTHORIZATION, sensitive(a));
                }
                b
            };
            let resp = self.send_retrying(&build, req.what)?;
            if resp.status() != StatusCode::UNAUTHORIZED || rounds >= 2 {
                return Ok(resp);
            }
            rounds += 1;
            let sent = if rounds > 1 && sent == Sent::Cached {
                Sent::Fresh
            } else {
                sent
            };
            match self.answer_challenge(resp.headers(), req.scope, sent, req.what)? {
                AuthOutcome::Retry => continue,
                AuthOutcome::GiveUp => return Ok(resp),
            }
        }
    }

    /// The `Authorization` value for a request needing `scope`, if one is known or can be got
    /// without asking the registry first.
    fn authorization(&self, scope: &str) -> Result<(Option<Secret>, Sent)> {
        let mut st = self.lock_auth()?;
        if st.basic {
            let basic = st.credentials.as_ref().map(Credentials::basic_header);
            let sent = if basic.is_some() {
                Sent::Cached
            } else {
                Sent::Nothing
            };
            return Ok((basic, sent));
        }
        if let Some(t) = st.tokens.get(scope)
            && t.expires > Instant::now()
        {
            let bearer = Secret::new(format!("Bearer {}", t.value.expose()));
            return Ok((Some(bearer), Sent::Cached));
        }
        if st.realm.is_some() {
            // A new scope or an expired token: get one before asking, saving a 401.
            let token = self.fetch_token(&mut st, &[scope], scope)?;
            let bearer = Secret::new(format!("Bearer {}", token.expose()));
            return Ok((Some(bearer), Sent::Fresh));
        }
        Ok((None, Sent::Nothing))
    }

    fn lock_auth(&self) -> Result<std::sync::MutexGuard<'_, AuthState>> {
        self.auth.lock().map_err(|_| {
            Error::invalid(format!("registry {}", self.host), "internal lock poisoned")
        })
    }

    fn answer_challenge(
        &self,
        headers: &HeaderMap,
        scope: &str,
        sent: Sent,
        what: &str,
    ) -> Result<AuthOutcome> {
        let values: Vec<&str> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let challenges = challenge::parse(&values);
        let mut st = self.lock_auth()?;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = bearer.param("realm") else {
                return Err(Error::invalid(
                    what,
                    "the registry asked for a bearer token but named no realm to get it from",
                ));
            };
            self.check_realm(realm, what)?;
            let changed = st.realm.as_deref() != Some(realm);
            st.realm = Some(realm.to_string());
            st.service = bearer.param("service").map(str::to_string);
            st.basic = false;
            let asked = bearer.param("scope").unwrap_or(scope);
            // A token got for this request was refused: try again only if the registry now
            // asks for another scope (or realm); otherwise the refusal stands. A token from
            // earlier requests may have expired early or been revoked: get a new one.
            st.tokens.remove(scope);
            if sent == Sent::Fresh && !changed && asked == scope {
                return Ok(AuthOutcome::GiveUp);
            }
            let mut scopes: Vec<&str> = vec![scope];
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            self.fetch_token(&mut st, &scopes, scope)?;
            return Ok(AuthOutcome::Retry);
        }
        if challenges.iter().any(is_basic) {
            if !self.authenticated {
                return Ok(AuthOutcome::GiveUp);
            }
            if sent != Sent::Nothing && st.basic {
                // The credentials were refused.
                if self.password_many {
                    st.credentials = None;
                }
                return Ok(AuthOutcome::GiveUp);
            }
            st.basic = true;
            if st.credentials.is_none() {
                let c = self.credentials(scope_repository(scope))?;
                st.credentials = Some(c);
            }
            return Ok(AuthOutcome::Retry);
        }
        Ok(AuthOutcome::GiveUp)
    }

    /// Realms get credentials: only HTTPS, unless `--tls-no-verify` allowed plain HTTP.
    fn check_realm(&self, realm: &str, what: &str) -> Result<()> {
        let url = reqwest::Url::parse(realm).map_err(|e| {
            Error::invalid(
                what,
                format!("token realm '{}' is not a URL: {e}", show(realm)),
            )
        })?;
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.insecure => Ok(()),
            "http" => Err(Error::invalid(
                what,
                format!(
                    "the registry sends clients for tokens to plain-HTTP {}; refused \
                     (--tls-no-verify allows it)",
                    strip_query(realm)
                ),
            )),
            s => Err(Error::invalid(
                what,
                format!("token realm has scheme '{s}'"),
            )),
        }
    }

    fn credentials(&self, repository: &str) -> Result<Credentials> {
        let progress = &self.progress;
        let c = credentials::find(&self.env, &self.registry, repository, &mut |n| {
            progress.note(&n)
        })?;
        if let Ok(mut u) = self.last_user.lock() {
            *u = Some(c.username.clone());
        }
        Ok(c)
    }

    /// Gets a token for `scopes` and files it under `key`. In authenticated mode the token
    /// request carries the user's credentials (asked for again each time with
    /// `--password-many`).
    fn fetch_token(&self, st: &mut AuthState, scopes: &[&str], key: &str) -> Result<Secret> {
        let realm = st.realm.clone().unwrap_or_default();
        let what = format!(
            "token for {} from {}",
            scopes.join(" "),
            strip_query(&realm)
        );
        let mut url = reqwest::Url::parse(&realm)
            .map_err(|e| Error::invalid(&what, format!("bad realm: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &st.service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let basic = if self.authenticated {
            if self.password_many || st.credentials.is_none() {
                st.credentials = Some(self.credentials(scope_repository(key))?);
            }
            st.credentials.as_ref().map(Credentials::basic_header)
        } else {
            None
        };
        self.progress.note(&format!(
            "getting {} token from {}",
            if basic.is_some() {
                "an authenticated"
            } else {
                "an anonymous"
            },
            strip_query(&realm)
        ));
        let build = |_: Scheme| {
            let mut b = self.http.get(url.clone());
            if let Some(a) = &basic {
                b = b.header(header::AUTHORIZATION, sensitive(a));
            }
            b
        };
        let resp = self.send_retrying(&build, &what)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if self.password_many {
                st.credentials = None;
            }
            return Err(match &st.credentials {
                Some(c) if self.authenticated => Error::invalid(
                    &what,
                    format!(
                        "authentication failed (HTTP {}) for user '{}' (credentials from {})",
                        status.as_u16(),
                        c.username,
                        c.origin
                    ),
                ),
                _ => self.not_authorized(&what, status),
            });
        }
        if !status.is_success() {
            return Err(self.status_error(&what, resp));
        }
        let body = read_small(resp, &what)?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::json(&what, e))?;
        let mut parsed = parsed;
        let value = parsed
            .token
            .take()
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.take().filter(|t| !t.is_empty()))
            .map(Secret::new)
            .ok_or_else(|| Error::invalid(&what, "the response has no token"))?;
        if !value.expose().bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(Error::invalid(
                &what,
                "the token has characters not allowed in a header",
            ));
        }
        // The spec's default and minimum lifetime is 60 s; renew a little early.
        let life = Duration::from_secs(parsed.expires_in.unwrap_or(60).clamp(1, 86_400 * 7));
        let margin = (life / 10).min(Duration::from_secs(10));
        st.tokens.insert(
            key.to_string(),
            Token {
                value: value.clone(),
                expires: Instant::now() + life - margin,
            },
        );
        Ok(value)
    }

    /// Sends a request built by `build` for the current scheme, retrying transient failures
    /// with backoff; decides between HTTPS and HTTP on first contact when allowed.
    fn send_retrying(
        &self,
        build: &dyn Fn(Scheme) -> RequestBuilder,
        what: &str,
    ) -> Result<Response> {
        // Until the scheme is known, one request at a time (the others wait here, then find
        // it settled). Once it is, no lock is taken.
        let _settling = match self.current_scheme() {
            Some(_) => None,
            None => Some(self.settling.lock().map_err(|_| {
                Error::invalid(format!("registry {}", self.host), "internal lock poisoned")
            })?),
        };
        let mut attempt = 0;
        let mut probing_http = false;
        loop {
            let scheme = self.current_scheme().unwrap_or(if probing_http {
                Scheme::Http
            } else {
                Scheme::Https
            });
            let req = build(scheme);
            let url = req
                .try_clone()
                .and_then(|r| r.build().ok())
                .map(|r| strip_query(r.url().as_str()))
                .unwrap_or_default();
            match req.send() {
                Ok(resp) => {
                    if let Ok(mut s) = self.scheme.lock() {
                        s.get_or_insert(scheme);
                    }
                    let status = resp.status();
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    if !retryable || attempt + 1 >= MAX_ATTEMPTS {
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            return Err(self.rate_limited(what, &resp, None));
                        }
                        return Ok(resp);
                    }
                    let wait = match retry_after(resp.headers()) {
                        Some(w) if w > MAX_RETRY_AFTER => {
                            return Err(self.rate_limited(what, &resp, Some(w)));
                        }
                        Some(w) => w,
                        None => backoff(attempt),
                    };
                    self.progress.note(&format!(
                        "{what}: HTTP {} from {url}; retrying in {:.1} s",
                        status.as_u16(),
                        wait.as_secs_f64()
                    ));
                    drop(resp);
                    std::thread::sleep(wait);
                }
                Err(e) => {
                    if self.current_scheme().is_none() && !probing_http && e.is_connect() {
                        // --tls-no-verify: no TLS here, perhaps plain HTTP (as skopeo does).
                        self.progress.note(&format!(
                            "{what}: HTTPS failed ({}); trying plain HTTP",
                            chain(&e)
                        ));
                        probing_http = true;
                        continue;
                    }
                    if !transient(&e) || attempt + 1 >= MAX_ATTEMPTS {
                        let cause = chain(&e);
                        let hint = if probing_http {
                            " (HTTPS failed too)"
                        } else {
                            tls_hint(&cause, self.insecure)
                        };
                        return Err(Error::invalid(what, format!("GET {url}: {cause}{hint}")));
                    }
                    let wait = backoff(attempt);
                    self.progress.note(&format!(
                        "{what}: {}; retrying in {:.1} s",
                        chain(&e),
                        wait.as_secs_f64()
                    ));
                    std::thread::sleep(wait);
                }
            }
            attempt += 1;
        }
    }

    fn rate_limited(&self, what: &str, resp: &Response, wait: Option<Duration>) -> Error {
        let after = match wait {
            Some(w) => format!(" and asks to wait {} s", w.as_secs()),
            None => String::new(),
        };
        let hint = if self.authenticated {
            ""
        } else {
            "; authenticated pulls (--auth) often have higher limits"
        };
        Error::invalid(
            what,
            format!(
                "rate limited by {} (HTTP {}){after}; try again later{hint}",
                self.host,
                resp.status().as_u16()
            ),
        )
    }

    /// The error for a 401, 403 or 400 on a read: registries answer these for images that
    /// do not exist, to hide which private ones do.
    pub fn not_authorized(&self, what: &str, status: StatusCode) -> Error {
        let hint = if self.authenticated {
            let who = self
                .last_user
                .lock()
                .ok()
                .and_then(|u| u.as_ref().map(|u| format!(" as user '{u}'")))
                .unwrap_or_default();
            format!("; check the name and that you may read it{who}")
        } else {
            "; check the name, or if the image is private, authenticate with --auth".to_string()
        };
        Error::invalid(
            what,
            format!(
                "not found or not authorized (HTTP {}: registries answer so for missing images \
                 too){hint}",
                status.as_u16()
            ),
        )
    }

    /// The error for any other unexpected status, with the registry's own error code.
    pub fn status_error(&self, what: &str, resp: Response) -> Error {
        let status = resp.status();
        if matches!(status.as_u16(), 400 | 401 | 403) {
            return self.not_authorized(what, status);
        }
        let detail = read_small(resp, what)
            .ok()
            .and_then(|b| registry_error(&b))
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            return Error::ImageNotFound(format!("{what} (HTTP 404{detail})"));
        }
        Error::invalid(
            what,
            format!(
                "HTTP {} {}{detail}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        )
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Drop for TokenResponse {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for t in [&mut self.token, &mut self.access_token]
            .into_iter()
            .flatten()
        {
            t.zeroize();
        }
    }
}

fn is_basic(c: &Challenge) -> bool {
    c.scheme == "basic"
}

/// `repository:a/b:pull` → `a/b`.
fn scope_repository(scope: &str) -> &str {
    scope
        .strip_prefix("repository:")
        .and_then(|s| s.rsplit_once(':').map(|(r, _)| r))
        .unwrap_or(scope)
}

fn sensitive(s: &Secret) -> HeaderValue {
    // Checked when the secret was made (tokens) or base64 (basic): always a valid value.
    let mut v = HeaderValue::from_str(s.expose()).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Redirects: bounded; never from HTTPS to HTTP unless `--tls-no-verify`. reqwest itself
/// drops `Authorization` when the host or port changes (blob storage elsewhere).
fn redirect_policy(insecure: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let downgrade = attempt.url().scheme() == "http"
            && attempt
                .previous()
                .last()
                .is_some_and(|p| p.scheme() == "https");
        if downgrade && !insecure {
            let to = strip_query(attempt.url().as_str());
            return attempt.error(format!("redirect from HTTPS to plain HTTP ({to}) refused"));
        }
        attempt.follow()
    })
}

/// Failures worth another try: resets, cut connections, timeouts. Not refused connections,
/// unknown hosts or certificate errors, which another try will not fix.
fn transient(e: &reqwest::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
            ) {
                return true;
            }
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
            || text.contains("end of file before message length reached")
        {
            return true;
        }
        src = s.source();
    }
    false
}

/// What to do about a TLS failure, judged from its text.
fn tls_hint(cause: &str, insecure: bool) -> &'static str {
    if insecure {
        ""
    } else if cause.contains("InvalidContentType") || cause.contains("corrupt message") {
        "; the server may speak plain HTTP, which only --tls-no-verify allows"
    } else if cause.contains("certificate") || cause.contains("UnknownIssuer") {
        "; to trust the registry's CA give --tls-ca-file FILE (or, at your own risk, \
         --tls-no-verify)"
    } else {
        ""
    }
}

fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE * 2u32.saturating_pow(attempt.min(8))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries; treated as absent).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Percent-encodes a repository name or tag for a query (`/` is allowed there, and the rest of
/// their characters are unreserved).
pub(super) fn percent_encode(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~/".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32 & 0xff)
            }
        })
        .collect()
}

/// Reads at most [`MAX_SMALL_BODY`] bytes.
pub(super) fn read_small(resp: Response, what: &str) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    resp.take(MAX_SMALL_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::invalid(what, format!("reading the response: {e}")))?;
    if body.len() as u64 > MAX_SMALL_BODY {
        return Err(Error::invalid(what, "response larger than 1 MiB"));
    }
    Ok(body)
}

/// The first error of a registry error document (`{"errors":[{"code":…,"message":…}]}`),
/// made safe to print on one line.
fn registry_error(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    let doc: Doc = serde_json::from_slice(body).ok()?;
    let e = doc.errors.into_iter().next()?;
    let text = match (e.code, e.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => return None,
    };
    Some(show(&text))
}

/// Text from the network, made printable and short.
pub(super) fn show(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A URL without its query (which may hold a signature) for messages.
pub(super) fn strip_query(url: &str) -> String {
    show(url.split(['?', '#']).next().unwrap_or(url))
}

/// An error and its causes on one line, without the URL reqwest puts in (ours is shown
/// separately, without its query).
pub(super) fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let top = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_redirect() {
        "redirect".to_string()
    } else if e.is_body() || e.is_decode() {
        "reading the response".to_string()
    } else {
        "request failed".to_string()
    };
    parts.push(top);
    while let Some(s) = src {
        let t = s.to_string();
        if !t.is_empty() && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    show(&parts.join(": "))
}

/// What pushes need besides GETs (used by [`super::destination`]): requests of any method,
/// upload `Location`s (absolute or relative) resolved against the registry, and the parts a
/// one-shot streamed upload uses to make its single request itself.
impl Client {
    /// Sends a request of any method, authenticating as challenged (at most two rounds) and
    /// retrying transient failures. `target` is a path (`/v2/…`) or a URL on this registry;
    /// `add` puts headers and a body on each attempt, so its body must be re-creatable.
    pub fn send(
        &self,
        method: reqwest::Method,
        target: &str,
        scope: &str,
        what: &str,
        add: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut rounds = 0;
        loop {
            let (auth, sent) = self.authorization(scope)?;
            let build = |scheme: Scheme| {
                let mut b = self
                    .http
                    .request(method.clone(), self.resolve_with(scheme, target));
                if let Some(a) = &auth {
                    b = b.header(header::AUTHORIZATION, sensitive(a));
                }
                add(b)
            };
            let resp = self.send_retrying(&build, what)?;
            if resp.status() != StatusCode::UNAUTHORIZED || rounds >= 2 {
                return Ok(resp);
            }
            rounds += 1;
            let sent = if rounds > 1 && sent == Sent::Cached {
                Sent::Fresh
            } else {
                sent
            };
            match self.answer_challenge(resp.headers(), scope, sent, what)? {
                AuthOutcome::Retry => continue,
                AuthOutcome::GiveUp => return Ok(resp),
            }
        }
    }

    /// `target` as a URL: a path (or other relative reference, as `Location` headers may
    /// be) is resolved against the registry's API root with the scheme in use.
    pub fn resolve(&self, target: &str) -> String {
        self.resolve_with(self.current_scheme().unwrap_or(Scheme::Https), target)
    }

    fn resolve_with(&self, scheme: Scheme, target: &str) -> String {
        let base = self.url(scheme, "/v2/");
        match reqwest::Url::parse(&base).and_then(|b| b.join(target)) {
            Ok(u) => u.to_string(),
            Err(_) => self.url(scheme, target),
        }
    }

    /// The HTTP client, for a request [`send`](Self::send) cannot repeat (a streamed body).
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// The `Authorization` header for `scope` as the last requests settled it, if any.
    pub fn auth_header(&self, scope: &str) -> Result<Option<HeaderValue>> {
        Ok(self.authorization(scope)?.0.as_ref().map(sensitive))
    }

    /// Whether a failed request is worth another try (resets, cut connections, timeouts).
    pub fn is_transient(e: &reqwest::Error) -> bool {
        transient(e)
    }

    /// The wait before try `attempt + 1`.
    pub fn backoff(attempt: u32) -> Duration {
        backoff(attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(scope_repository("repository:a/b:pull"), "a/b");
        assert_eq!(scope_repository("repository:a/b:pull,push"), "a/b");
        assert_eq!(scope_repository("registry:catalog:*"), "registry:catalog:*");
    }

    #[test]
    fn registry_errors_are_tamed() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\nunknown"}]}"#;
        assert_eq!(
            registry_error(b).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error(b"<html>"), None);
        assert_eq!(percent_encode("a/b c"), "a/b%20c");
        assert_eq!(
            strip_query("https://s3/x?X-Amz-Signature=abc"),
            "https://s3/x"
        );
    }

    #[test]
    fn backoff_is_bounded() {
        let total: Duration = (0..MAX_ATTEMPTS - 1).map(backoff).sum();
        assert!(total < Duration::from_secs(5), "{total:?}");
    }
}
