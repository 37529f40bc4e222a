//! Logging in to one registry as it challenges (the client's one request loop asks here what
//! to send, and what to do about a 401): bearer tokens per scope from the realm a challenge
//! names, anonymous or with the user's credentials, renewed before they expire; or basic
//! authentication. Credentials are looked up only when a registry wants them.
//!
//! Which credentials, and when, is [`AuthMode`]'s: with `--auth` the user's are sent whenever
//! the registry asks; by default requests go anonymously first, and only when the registry
//! refuses that (a 401 or 403 to the anonymous token request, a 401 after an anonymous token,
//! a basic challenge) are they sent once more with a stored login's credentials, if a login
//! file holds any for the registry ([`Login::use_stored_login`]); with `--no-auth`, never.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use super::challenge::{self, Challenge};
use super::client::{self, Client};
use super::credentials::{self, Credentials, Secret};
use super::{AuthMode, Options};
use crate::error::{Error, Result};
use crate::progress::Progress;

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
    /// The login files were looked in for a stored login (once: they do not change).
    stored_looked_up: bool,
    /// Anonymous access was refused and `credentials` are a stored login's, sent from now on.
    stored_in_use: bool,
}

/// What a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Nothing,
    /// A token or credentials from earlier requests.
    Cached,
    /// A token got for this very request.
    Fresh,
}

/// What the requests to a registry carried, for the message when it refuses one.
#[derive(Default)]
pub(super) struct Refusal {
    /// `--auth`'s authenticated mode.
    pub authenticated: bool,
    /// A stored login's credentials went, anonymous access having been refused.
    pub stored_login: bool,
    /// The registry asked for basic authentication and has the credentials: a 401 then
    /// means it refused them (Distribution's htpasswd has no per-repository rights).
    pub basic_sent: bool,
    /// The user name of the credentials last used.
    pub user: Option<String>,
    /// `user 'NAME' (credentials from WHERE)` of the credentials last used.
    pub who: Option<String>,
}

/// What one authentication round concluded.
pub(super) enum AuthOutcome {
    /// Credentials or a token are in place: send the request again.
    Retry,
    /// Nothing more to try: the 401 stands.
    GiveUp,
}

/// The login state of one registry host, shared by every request to it.
pub(super) struct Login {
    /// `host[:port]` of the registry API, for messages.
    host: String,
    /// The registry as references name it, for login files.
    registry: String,
    insecure: bool,
    mode: AuthMode,
    password_many: bool,
    env: credentials::Env,
    state: Mutex<AuthState>,
    /// The user name and origin of the credentials last used, for messages (its own lock, so
    /// that errors can be made while `state` is held).
    last_user: Mutex<Option<(String, credentials::Origin)>>,
    progress: Progress,
}

impl Login {
    pub(super) fn new(registry: &str, api_host: &str, opts: &Options, progress: Progress) -> Login {
        Login {
            host: api_host.to_string(),
            registry: registry.to_string(),
            insecure: opts.tls_no_verify,
            mode: opts.auth,
            password_many: opts.password_many,
            env: opts
                .env
                .clone()
                .unwrap_or_else(credentials::Env::from_process),
            state: Mutex::new(AuthState::default()),
            last_user: Mutex::new(None),
            progress,
        }
    }

    /// Authenticated mode (`--auth`): credentials are sent when asked for.
    pub(super) fn authenticated(&self) -> bool {
        self.mode == AuthMode::Authenticated
    }

    /// Whether credentials go with requests: always in authenticated mode, else once a
    /// stored login is in use.
    fn sends_credentials(&self, st: &AuthState) -> bool {
        self.authenticated() || st.stored_in_use
    }

    /// What the requests carried, for the message of a refusal.
    pub(super) fn refusal(&self) -> Refusal {
        match self.lock() {
            Ok(st) => self.refusal_in(&st),
            Err(_) => Refusal::default(),
        }
    }

    /// [`refusal`](Self::refusal) while `st` is held (by a token request): the state's lock
    /// is not taken again, which would deadlock.
    fn refusal_in(&self, st: &AuthState) -> Refusal {
        let last = self.last_user.lock().ok().and_then(|u| u.clone());
        Refusal {
            authenticated: self.authenticated(),
            stored_login: st.stored_in_use,
            basic_sent: st.basic && st.credentials.is_some() && self.sends_credentials(st),
            user: last.as_ref().map(|(name, _)| name.clone()),
            who: last.map(|(name, origin)| format!("user '{name}' (credentials from {origin})")),
        }
    }

    fn remember_user(&self, c: &Credentials) {
        if let Ok(mut u) = self.last_user.lock() {
            *u = Some((c.username.clone(), c.origin.clone()));
        }
    }

    /// The `Authorization` value for a request needing `scope`, if one is known or can be got
    /// without asking the registry first.
    pub(super) fn authorization(
        &self,
        client: &Client,
        scope: &str,
    ) -> Result<(Option<Secret>, Sent)> {
        let mut st = self.lock()?;
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
            let token = self.fetch_token(client, &mut st, &[scope], scope)?;
            let bearer = Secret::new(format!("Bearer {}", token.expose()));
            return Ok((Some(bearer), Sent::Fresh));
        }
        Ok((None, Sent::Nothing))
    }

    fn lock(&self) -> Result<MutexGuard<'_, AuthState>> {
        self.state.lock().map_err(|_| {
            Error::invalid(format!("registry {}", self.host), "internal lock poisoned")
        })
    }

    /// Answers a 401's challenges for a request needing `scope`: a token for the scopes asked,
    /// or basic credentials; or concludes that nothing more is worth trying.
    pub(super) fn answer_challenge(
        &self,
        client: &Client,
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
        let mut st = self.lock()?;
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
            let mut scopes: Vec<&str> = vec![scope];
            if sent == Sent::Fresh && !changed && asked == scope {
                // An anonymous token was refused: a stored login may do better, once.
                if !self.sends_credentials(&st) && self.use_stored_login(&mut st, scope)? {
                    self.fetch_token(client, &mut st, &scopes, scope)?;
                    return Ok(AuthOutcome::Retry);
                }
                return Ok(AuthOutcome::GiveUp);
            }
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            self.fetch_token(client, &mut st, &scopes, scope)?;
            return Ok(AuthOutcome::Retry);
        }
        if challenges.iter().any(is_basic) {
            if sent != Sent::Nothing && st.basic {
                // The credentials were refused.
                if self.password_many && self.authenticated() {
                    st.credentials = None;
                }
                return Ok(AuthOutcome::GiveUp);
            }
            match self.mode {
                AuthMode::Authenticated => {
                    if st.credentials.is_none() {
                        let c = self.credentials(scope_repository(scope))?;
                        st.credentials = Some(c);
                    }
                }
                AuthMode::AnonymousThenLogins if self.use_stored_login(&mut st, scope)? => {}
                _ => return Ok(AuthOutcome::GiveUp),
            }
            st.basic = true;
            return Ok(AuthOutcome::Retry);
        }
        Ok(AuthOutcome::GiveUp)
    }

    /// Realms get credentials: only HTTPS, unless `--tls-no-verify` allowed plain HTTP.
    fn check_realm(&self, realm: &str, what: &str) -> Result<()> {
        let url = reqwest::Url::parse(realm).map_err(|e| {
            Error::invalid(
                what,
                format!("token realm '{}' is not a URL: {e}", client::show(realm)),
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
                    client::strip_query(realm)
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
        self.remember_user(&c);
        Ok(c)
    }

    /// The registry refused anonymous access for `scope`: by default, the credentials a
    /// stored login holds for it are sent from now on. Looked up once per run (on the first
    /// refusal), so that a public image never reads a login file and stale credentials never
    /// reach a registry that did not ask. Whether there are any to try.
    fn use_stored_login(&self, st: &mut AuthState, scope: &str) -> Result<bool> {
        if self.mode != AuthMode::AnonymousThenLogins || st.stored_looked_up {
            return Ok(false);
        }
        st.stored_looked_up = true;
        let progress = &self.progress;
        let found = credentials::find_stored(
            &self.env,
            &self.registry,
            scope_repository(scope),
            &mut |n| progress.note(&n),
        )?;
        let Some(c) = found else {
            return Ok(false);
        };
        self.progress.note(&format!(
            "{} refused anonymous access; trying again as user '{}' with the credentials from {}",
            self.registry, c.username, c.origin
        ));
        self.remember_user(&c);
        st.credentials = Some(c);
        st.stored_in_use = true;
        Ok(true)
    }

    /// Gets a token for `scopes` and files it under `key`. In authenticated mode the token
    /// request carries the user's credentials (asked for again each time with
    /// `--password-many`); by default it goes anonymously, and if the token service refuses
    /// that, once more with a stored login's.
    fn fetch_token(
        &self,
        client: &Client,
        st: &mut AuthState,
        scopes: &[&str],
        key: &str,
    ) -> Result<Secret> {
        let realm = st.realm.clone().unwrap_or_default();
        let what = format!(
            "token for {} from {}",
            scopes.join(" "),
            client::strip_query(&realm)
        );
        let mut url = reqwest::Url::parse(&realm)
            .map_err(|e| Error::invalid(&what, format!("bad realm: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &st.service {
                q.append_pair("service", s);
            }
            // No scope at all for `lade login`'s check, as `docker login` asks.
            for s in scopes.iter().filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let basic = if self.authenticated() {
            if self.password_many || st.credentials.is_none() {
                st.credentials = Some(self.credentials(scope_repository(key))?);
            }
            st.credentials.as_ref().map(Credentials::basic_header)
        } else if st.stored_in_use {
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
            client::strip_query(&realm)
        ));
        let build = |_: client::Scheme| {
            let mut b = client.http().get(url.clone());
            if let Some(a) = &basic {
                b = b.header(header::AUTHORIZATION, client::sensitive(a));
            }
            b
        };
        let resp = client.send_retrying(&build, &what)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if basic.is_none() && self.use_stored_login(st, key)? {
                // Looked up once only, so this recurses at most once.
                drop(resp);
                return self.fetch_token(client, st, scopes, key);
            }
            if self.password_many && self.authenticated() {
                st.credentials = None;
            }
            return Err(match &st.credentials {
                Some(c) if self.sends_credentials(st) => Error::invalid(
                    &what,
                    format!(
                        "authentication failed (HTTP {}) for user '{}' (credentials from {})",
                        status.as_u16(),
                        c.username,
                        c.origin
                    ),
                ),
                _ => client::refusal_error(&what, status, &self.refusal_in(st)),
            });
        }
        if !status.is_success() {
            return Err(client.status_error_with(&what, resp, &self.refusal_in(st)));
        }
        let body = client::read_small(resp, &what)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(scope_repository("repository:a/b:pull"), "a/b");
        assert_eq!(scope_repository("repository:a/b:pull,push"), "a/b");
        assert_eq!(scope_repository("registry:catalog:*"), "registry:catalog:*");
    }
}
