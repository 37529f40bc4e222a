//! One registry host over HTTP: the scheme (HTTPS, or plain HTTP only with `--tls-no-verify`),
//! bounded retries with backoff (network resets, 5xx, 429 with `Retry-After`), and
//! authentication answered as the challenges come (bearer tokens per scope, or basic; the
//! login state is `auth`'s), all in one request loop, [`Client::send`].
//!
//! There is no `GET /v2/` ping before the first real request: the challenge on a 401 tells
//! everything the ping would, and skipping it keeps a warm pull to a single manifest request.
//! [`Client::ping`] exists for diagnosis and `lade list`. Under `--tls-no-verify` the first
//! request settles the scheme while concurrent ones wait for it, so parallel blob requests of a
//! pull whose manifest was already stored cannot race each other to different schemes.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::Options;
use super::auth::{AuthOutcome, Login, Refusal, Sent};
use super::credentials::Secret;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Attempts per request for transient failures (network resets, 5xx, 429).
pub(super) const MAX_ATTEMPTS: u32 = 5;
/// First backoff; doubled each time (0.25, 0.5, 1, 2 s: under 4 s in all).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest `Retry-After` lade waits; a registry asking for more gets a clear error instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A read that gets no byte for this long fails (and a blob read is then resumed);
/// `$LADE_READ_TIMEOUT` (seconds) changes it, for slow links (and tests).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn read_timeout() -> Duration {
    std::env::var("LADE_READ_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(READ_TIMEOUT, Duration::from_secs)
}
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per request (blob storage is usually one hop away).
const MAX_REDIRECTS: usize = 10;
/// Bodies read into memory (tokens, error documents).
const MAX_SMALL_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
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

pub struct Client {
    /// `host[:port]` of the registry API (Docker Hub's is not `docker.io`).
    host: String,
    http: reqwest::blocking::Client,
    insecure: bool,
    scheme: Mutex<Option<Scheme>>,
    /// Held by the request that settles the scheme (`--tls-no-verify`: HTTPS, else plain
    /// HTTP), so that concurrent first requests wait for its answer instead of each probing
    /// on its own: one that fails on HTTPS after another settled on HTTP would not try HTTP.
    settling: Mutex<()>,
    login: Login,
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
            .timeout(read_timeout())
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
            http,
            insecure: opts.tls_no_verify,
            scheme: Mutex::new(if opts.tls_no_verify {
                None
            } else {
                Some(Scheme::Https)
            }),
            settling: Mutex::new(()),
            login: Login::new(registry, api_host, opts, progress.clone()),
            progress,
        })
    }

    /// The client of `reference`'s registry.
    pub fn for_reference(
        reference: &crate::reference::Reference,
        opts: &Options,
    ) -> Result<Client> {
        Client::new(
            &reference.registry,
            reference.api_host(),
            opts,
            opts.progress.clone(),
        )
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

    /// Sends a request of any method, retrying transient failures, and answering the login
    /// challenges of 401s (at most two rounds; see `auth::Login`): the one request loop of the
    /// client, so every request authenticates alike. `target` is a path (`/v2/…`) or a URL on this registry;
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
            let (auth, sent) = self.login.authorization(self, scope)?;
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
            match self
                .login
                .answer_challenge(self, resp.headers(), scope, sent, what)?
            {
                AuthOutcome::Retry => continue,
                AuthOutcome::GiveUp => return Ok(resp),
            }
        }
    }

    /// Sends a GET to the registry API (see [`send`](Self::send)) and returns the response
    /// whatever its status.
    pub fn get(&self, req: &Request) -> Result<Response> {
        self.send(
            reqwest::Method::GET,
            req.path,
            req.scope,
            req.what,
            &|mut b| {
                if let Some(a) = req.accept {
                    b = b.header(header::ACCEPT, a);
                }
                if let Some(from) = req.range_from {
                    b = b.header(header::RANGE, format!("bytes={from}-"));
                }
                b
            },
        )
    }

    /// Sends a request built by `build` for the current scheme, retrying transient failures
    /// with backoff; decides between HTTPS and HTTP on first contact when allowed.
    pub(super) fn send_retrying(
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
                        let hint = if refused(&e) {
                            "; is a registry running there? (nothing listens on that port)"
                        } else if probing_http {
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
        let hint = if self.login.authenticated() {
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
        refusal_error(what, status, &self.login.refusal())
    }

    /// The error for any other unexpected status, with the registry's own error code.
    pub fn status_error(&self, what: &str, resp: Response) -> Error {
        let status = resp.status();
        if is_refusal(status) {
            return self.not_authorized(what, status);
        }
        other_status_error(what, resp)
    }

    /// [`status_error`](Self::status_error) with what the requests carried given (by a token
    /// request, which holds the login state).
    pub(super) fn status_error_with(&self, what: &str, resp: Response, sent: &Refusal) -> Error {
        let status = resp.status();
        if is_refusal(status) {
            return refusal_error(what, status, sent);
        }
        other_status_error(what, resp)
    }
}

/// 400, 401 and 403: what registries answer for images that do not exist, too.
fn is_refusal(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403)
}

/// The error for a status other than a refusal, with the registry's own error code.
fn other_status_error(what: &str, resp: Response) -> Error {
    let status = resp.status();
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

/// The error for a 401, 403 or 400 on a read (registries answer these for images that do not
/// exist, to hide which private ones do), saying what the requests carried.
pub(super) fn refusal_error(what: &str, status: StatusCode, sent: &Refusal) -> Error {
    let who = sent.who.as_deref().unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED && sent.basic_sent {
        return Error::invalid(
            what,
            format!(
                "the registry refused the password of {who} (HTTP 401 to basic \
                 authentication); check the user name and password"
            ),
        );
    }
    let hint = if sent.stored_login {
        // Anonymous access was refused, then the stored login's too.
        format!(
            "; check the name and that {who} may read it (tried after anonymous access was \
             refused)"
        )
    } else if sent.authenticated {
        let who = sent
            .user
            .as_ref()
            .map(|u| format!(" as user '{u}'"))
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

pub(super) fn sensitive(s: &Secret) -> HeaderValue {
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

/// Whether nothing listened where the request went.
fn refused(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
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

/// Why reading a response body failed, for messages: "timed out" for a stalled transfer
/// (reqwest calls that an "error decoding response body"), else the error and its causes.
pub(super) fn read_failure(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<reqwest::Error>());
    let mut timed_out =
        e.kind() == std::io::ErrorKind::TimedOut || inner.is_some_and(|r| r.is_timeout());
    let mut src: Option<&(dyn std::error::Error + 'static)> =
        inner.and_then(|r| std::error::Error::source(r));
    while let Some(s) = src {
        timed_out |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || s.to_string().contains("timed out");
        src = s.source();
    }
    if timed_out {
        return format!("timed out (no data for {} s)", read_timeout().as_secs());
    }
    match inner {
        Some(r) => chain(r),
        None => show(&e.to_string()),
    }
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

/// What uploads need besides requests (used by `upload`): upload `Location`s
/// (absolute or relative) resolved against the registry, and the parts a one-shot streamed
/// upload uses to make its single request itself.
impl Client {
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
        Ok(self
            .login
            .authorization(self, scope)?
            .0
            .as_ref()
            .map(sensitive))
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
