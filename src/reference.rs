//! Docker image references (`alpine`, `quay.io/x/y:1`, `localhost:5000/a/b@sha256:…`), parsed
//! and normalised as Docker's `distribution/reference` `ParseNormalizedNamed` does.
//!
//! The grammar, from distribution/reference:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [":" port]
//! host             := domain-name | "[" [0-9a-fA-F:]+ "]"
//! domain-name      := domain-component ("." domain-component)*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! path             := path-component ("/" path-component)*
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! ```
//!
//! and Docker's normalisation on top of it: the first `/`-separated component is a registry only
//! if it contains `.` or `:`, is exactly `localhost`, or contains an upper-case letter (upper
//! case is never valid in a path, so Docker reads it as a host name); otherwise the registry is
//! `docker.io`. `index.docker.io` becomes `docker.io`, and a single-component repository on
//! `docker.io` gets `library/`. A bare 64-hex-digit string is refused because Docker would read
//! it as an image ID.
//!
//! This is a hand parser rather than a regex: the grammar is small, and walking it by hand lets
//! each error name the part that is wrong ("tag 'x y' has invalid characters") where the regex
//! can only say "invalid reference format".
//!
//! Where lade departs from Docker, on purpose:
//! - A first component that contains `.` but is not a valid host (`foo_bar.com/x`) is refused.
//!   Docker's regex instead falls back to reading the whole string as a path and returns a name
//!   with no registry at all, which it then cannot pull either.
//! - The whole name (`registry/repository`) is limited to 255 characters, as docker/distribution
//!   did before 2023; current distribution/reference limits only the repository path.
//! - Digests are limited to what [`Digest`] accepts (sha256 and sha512; Docker also knows sha384).
//! - [`Reference::familiar`] keeps `docker.io/` when dropping it would change the meaning (for
//!   `docker.io/a.b/c`, Docker prints `a.b/c`, which reads back as registry `a.b`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_REGISTRY: &str = "index.docker.io";
/// Docker Hub's name `docker.io` is not where its registry API lives.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;
const HEX_NAME_WHY: &str = "a bare 64-hex-digit name is refused as ambiguous with an image ID \
                            (prefix a registry, e.g. docker.io/<hex>, to mean a repository)";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with `:port` when given; `docker.io` when the reference named none.
    pub registry: String,
    /// Repository path within the registry, e.g. `library/alpine`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises: `alpine` → registry `docker.io`, repository `library/alpine`, tag
    /// `latest`. The default tag `latest` is added only when neither tag nor digest is given;
    /// when both are given both are kept.
    pub fn parse(s: &str) -> Result<Reference> {
        parse_normalized(s).map_err(|why| bad(s, why))
    }

    /// `registry/repository`, e.g. `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short form as `docker` prints it: `alpine:latest`, `user/img:1`,
    /// `quay.io/x/y@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The `host[:port]` to talk to for this reference's registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// A single path component naming this reference, in ch-image's style:
    /// `docker.io%library%alpine+latest` (`/` → `%`, `:` → `+`). It is reversible because `%`
    /// and `+` never occur in a valid reference, and it never starts with `.` because a registry
    /// starts with a letter, a digit or `[`. Note that a reference with a very long name, tag
    /// and digest can exceed the usual 255-byte file name limit.
    pub fn for_filename(&self) -> String {
        self.to_string().replace('/', "%").replace(':', "+")
    }

    /// The inverse of [`Reference::for_filename`]. Only the exact string `for_filename` produces
    /// is accepted, so each reference has exactly one file name.
    pub fn from_filename(s: &str) -> Result<Reference> {
        if s.contains(['/', ':']) {
            return Err(bad(s, "not a lade file name: it contains '/' or ':'"));
        }
        let r = parse_normalized(&s.replace('%', "/").replace('+', ":"))
            .map_err(|why| bad(s, format!("as a file name: {why}")))?;
        let canonical = r.for_filename();
        if canonical != s {
            return Err(bad(
                s,
                format!("file name is not in canonical form (expected '{canonical}')"),
            ));
        }
        Ok(r)
    }

    /// A multi-line report of how the reference was understood, for `lade pull --parse-only`.
    pub fn parse_report(&self) -> String {
        let (host, port) = split_host_port(&self.registry);
        let (path, name) = match self.repository.rsplit_once('/') {
            Some((path, name)) => (path.split('/').collect::<Vec<_>>(), name),
            None => (Vec::new(), self.repository.as_str()),
        };
        let quoted = |s: &str| format!("'{s}'");
        let path = path
            .iter()
            .map(|c| quoted(c))
            .collect::<Vec<_>>()
            .join(", ");
        let tag = self.tag.as_deref().map_or("None".to_string(), quoted);
        let digest = self
            .digest
            .as_ref()
            .map_or("None".to_string(), |d| quoted(&d.to_string()));
        format!(
            "as string:    {self}\n\
             for filename: {}\n\
             fields:\n  \
               host    {}\n  \
               port    {}\n  \
               path    [{path}]\n  \
               name    {}\n  \
               tag     {tag}\n  \
               digest  {digest}\n",
            self.for_filename(),
            quoted(host),
            port.unwrap_or("None"),
            quoted(name),
        )
    }

    /// The same repository (and digest, if any) with tag `tag`.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        check_tag(tag).map_err(|why| bad(&format!("{}:{tag}", self.name()), why))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// The same repository (and tag, if any) with digest `d`.
    pub fn with_digest(&self, d: Digest) -> Reference {
        Reference {
            digest: Some(d),
            ..self.clone()
        }
    }

    fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            if let Some(rest) = self.repository.strip_prefix(OFFICIAL_PREFIX)
                && !rest.contains('/')
            {
                return rest.to_string();
            }
            // Without the registry, the first path component must not read back as a host, and
            // a single component would read back with `library/` added.
            if let Some((first, _)) = self.repository.split_once('/')
                && !names_registry(first)
            {
                return self.repository.clone();
            }
        }
        self.name()
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The error for input `s`, quoted so that the CLI can still print it on one line.
fn bad(s: &str, why: impl Into<String>) -> Error {
    Error::BadReference {
        reference: show(s, 200),
        why: why.into(),
    }
}

/// `s` with control characters escaped and cut to `max` characters, for error messages.
fn show(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).flat_map(char::escape_debug).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

fn short(s: &str) -> String {
    show(s, 64)
}

/// Docker's rule (splitDockerDomain) for whether the component before the first `/` is a host.
fn names_registry(first: &str) -> bool {
    first == "localhost"
        || first == LEGACY_REGISTRY
        || first.contains(['.', ':'])
        || first.to_lowercase() != first
}

/// The body of [`Reference::parse`]; the error is the "why" part of the message.
fn parse_normalized(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("empty reference".into());
    }
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(HEX_NAME_WHY.into());
    }

    let (registry, remainder) = match s.split_once('/') {
        Some((first, rest)) if names_registry(first) => {
            if let Err(why) = check_host(first) {
                // Docker only took it for a host because of its upper case; had it been lower
                // case it would be a path component, so the upper case is the real fault.
                if first.contains(['.', ':']) || first.to_lowercase() == first {
                    return Err(why);
                }
                return Err(format!(
                    "repository name must be lowercase ('{}')",
                    short(first)
                ));
            }
            let registry = if first == LEGACY_REGISTRY {
                DEFAULT_REGISTRY
            } else {
                first
            };
            (registry, rest)
        }
        _ => (DEFAULT_REGISTRY, s),
    };

    // Neither path nor tag may contain '@', and neither path nor digest may contain ':' before
    // the digest's own, so the first '@' and then the first ':' are the separators.
    let (name_tag, digest) = match remainder.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (remainder, None),
    };
    let (path, tag) = match name_tag.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_tag, None),
    };

    if path.to_lowercase() != path {
        return Err(format!(
            "repository name must be lowercase ('{}')",
            short(path)
        ));
    }
    check_path(path)?;
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let digest = digest.map(parse_digest).transpose()?;

    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path.to_string()
    };
    let name_len = registry.len() + 1 + repository.len();
    if name_len > NAME_MAX {
        return Err(format!(
            "name longer than {NAME_MAX} characters ({name_len} in '{registry}/{}')",
            short(&repository)
        ));
    }

    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag.map(str::to_string),
    };
    Ok(Reference {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    })
}

/// Splits a registry into host and port; an IPv6 host keeps its brackets.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    let host_end = if registry.starts_with('[') {
        registry.find(']').map_or(registry.len(), |i| i + 1)
    } else {
        registry.find(':').unwrap_or(registry.len())
    };
    let (host, rest) = registry.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

fn check_host(registry: &str) -> Result<(), String> {
    let r = short(registry);
    let (host, port) = if let Some(inner) = registry.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(format!("registry '{r}' has '[' without a closing ']'"));
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "IPv6 address in registry '{r}' may contain only hex digits and ':' \
                 (no zone index or embedded IPv4)"
            ));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected text after ']' in registry '{r}'")),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.contains(':') {
            return Err(format!(
                "registry '{r}' has more than one ':' (an IPv6 address must be in brackets)"
            ));
        }
        if port.is_empty() {
            return Err(format!("registry '{r}' has an empty port after ':'"));
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "port '{}' of registry '{r}' is not a number",
                short(port)
            ));
        }
    }
    let Some(host) = host else {
        return Ok(());
    };
    if host.is_empty() {
        return Err(format!("registry '{r}' has no host name before the port"));
    }
    for component in host.split('.') {
        if component.is_empty() {
            return Err(format!(
                "registry host '{}' has an empty component (leading, trailing or double '.')",
                short(host)
            ));
        }
        if let Some(c) = component
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Err(format!(
                "registry host '{}' has invalid character '{}' (allowed: letters, digits, \
                 '-', '.')",
                short(host),
                c.escape_debug()
            ));
        }
        if component.starts_with('-') || component.ends_with('-') {
            return Err(format!(
                "registry host component '{}' must not start or end with '-'",
                short(component)
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty repository name".into());
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository name '{}' has an empty component (leading, trailing or double '/')",
                short(path)
            ));
        }
        check_path_component(component)?;
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), String> {
    let c = short(component);
    if let Some(bad) = component
        .chars()
        .find(|ch| !matches!(ch, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(format!(
            "repository name component '{c}' has invalid character '{}' (allowed: a-z, 0-9, \
             '.', '_', '-')",
            bad.escape_debug()
        ));
    }
    if !component.starts_with(|ch: char| ch.is_ascii_alphanumeric()) {
        return Err(format!(
            "repository name component '{c}' must start with a letter or digit"
        ));
    }
    if !component.ends_with(|ch: char| ch.is_ascii_alphanumeric()) {
        return Err(format!(
            "repository name component '{c}' must end with a letter or digit"
        ));
    }
    if let Some(sep) = component
        .split(|ch: char| ch.is_ascii_alphanumeric())
        .find(|sep| {
            !(sep.is_empty() || matches!(*sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
        })
    {
        return Err(format!(
            "repository name component '{c}' has invalid separator '{sep}' (allowed between \
             letters and digits: one '.', one or two '_', or any number of '-')"
        ));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let t = short(tag);
    if tag.is_empty() {
        return Err("empty tag after ':'".into());
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "tag '{t}' has invalid characters (allowed: letters, digits, '_', '.', '-')"
        ));
    }
    if tag.starts_with(['.', '-']) {
        return Err(format!("tag '{t}' must start with a letter, digit or '_'"));
    }
    if tag.len() > TAG_MAX {
        return Err(format!(
            "tag '{t}' is longer than {TAG_MAX} characters ({})",
            tag.len()
        ));
    }
    Ok(())
}

fn parse_digest(digest: &str) -> Result<Digest, String> {
    if digest.is_empty() {
        return Err("empty digest after '@'".into());
    }
    if digest.contains('@') {
        return Err("more than one '@'".into());
    }
    digest.parse().map_err(|e| match e {
        Error::BadDigest { why, .. } => format!("digest '{}': {why}", short(digest)),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! hex256 {
        () => {
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        };
    }
    macro_rules! d256 {
        () => {
            concat!("sha256:", hex256!())
        };
    }
    macro_rules! d512 {
        () => {
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        };
    }

    /// input, registry, repository, tag, digest, Display.
    type Valid = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    #[rustfmt::skip]
    const VALID: &[Valid] = &[
        ("alpine", "docker.io", "library/alpine", Some("latest"), None, "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io", "library/alpine", Some("3.19"), None, "docker.io/library/alpine:3.19"),
        ("library/alpine", "docker.io", "library/alpine", Some("latest"), None, "docker.io/library/alpine:latest"),
        ("docker.io/alpine", "docker.io", "library/alpine", Some("latest"), None, "docker.io/library/alpine:latest"),
        ("docker.io/library/alpine:edge", "docker.io", "library/alpine", Some("edge"), None, "docker.io/library/alpine:edge"),
        ("index.docker.io/alpine", "docker.io", "library/alpine", Some("latest"), None, "docker.io/library/alpine:latest"),
        ("index.docker.io/user/img:1", "docker.io", "user/img", Some("1"), None, "docker.io/user/img:1"),
        ("user/img", "docker.io", "user/img", Some("latest"), None, "docker.io/user/img:latest"),
        ("user/img:1", "docker.io", "user/img", Some("1"), None, "docker.io/user/img:1"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", Some("latest"), None, "docker.io/library/foo/bar:latest"),
        ("a/b/c/d/e", "docker.io", "a/b/c/d/e", Some("latest"), None, "docker.io/a/b/c/d/e:latest"),
        ("localhost/foo", "localhost", "foo", Some("latest"), None, "localhost/foo:latest"),
        ("localhost:5000/foo/bar:t", "localhost:5000", "foo/bar", Some("t"), None, "localhost:5000/foo/bar:t"),
        // A bare name is never a host, not even `localhost` (Docker's own FIXME).
        ("localhost", "docker.io", "library/localhost", Some("latest"), None, "docker.io/library/localhost:latest"),
        ("localhost:5000", "docker.io", "library/localhost", Some("5000"), None, "docker.io/library/localhost:5000"),
        ("192.168.0.1:80", "docker.io", "library/192.168.0.1", Some("80"), None, "docker.io/library/192.168.0.1:80"),
        ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", Some("latest"), None, "127.0.0.1:5000/docker/docker:latest"),
        ("quay.io/x/y", "quay.io", "x/y", Some("latest"), None, "quay.io/x/y:latest"),
        ("[::1]:5000/foo", "[::1]:5000", "foo", Some("latest"), None, "[::1]:5000/foo:latest"),
        ("[::1]/foo:t", "[::1]", "foo", Some("t"), None, "[::1]/foo:t"),
        ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian", Some("latest"), None, "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest"),
        // Upper case cannot be a path, so Docker takes the component for a host.
        ("Docker/docker", "Docker", "docker", Some("latest"), None, "Docker/docker:latest"),
        ("Example.COM/foo", "Example.COM", "foo", Some("latest"), None, "Example.COM/foo:latest"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", Some("latest"), None, "xn--n3h.com:18080/foo:latest"),
        ("test-com:8080/foo", "test-com:8080", "foo", Some("latest"), None, "test-com:8080/foo:latest"),
        ("test_com/foo", "docker.io", "test_com/foo", Some("latest"), None, "docker.io/test_com/foo:latest"),
        ("docker---rules/do__ck.er", "docker.io", "docker---rules/do__ck.er", Some("latest"), None, "docker.io/docker---rules/do__ck.er:latest"),
        ("d/docker", "docker.io", "d/docker", Some("latest"), None, "docker.io/d/docker:latest"),
        ("foo:_Tag-1.0", "docker.io", "library/foo", Some("_Tag-1.0"), None, "docker.io/library/foo:_Tag-1.0"),
        ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io", "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", Some("latest"), None, "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
        // With a host the 64-hex name is no longer ambiguous; nor is it with a tag.
        (concat!("docker.io/", hex256!()), "docker.io", concat!("library/", hex256!()), Some("latest"), None, concat!("docker.io/library/", hex256!(), ":latest")),
        (concat!(hex256!(), ":1"), "docker.io", concat!("library/", hex256!()), Some("1"), None, concat!("docker.io/library/", hex256!(), ":1")),
        (concat!("quay.io/x/y@", d256!()), "quay.io", "x/y", None, Some(d256!()), concat!("quay.io/x/y@", d256!())),
        (concat!("alpine:3@", d256!()), "docker.io", "library/alpine", Some("3"), Some(d256!()), concat!("docker.io/library/alpine:3@", d256!())),
        (concat!("alpine@", d512!()), "docker.io", "library/alpine", None, Some(d512!()), concat!("docker.io/library/alpine@", d512!())),
        (concat!("localhost:5000/a/b:t@", d256!()), "localhost:5000", "a/b", Some("t"), Some(d256!()), concat!("localhost:5000/a/b:t@", d256!())),
    ];

    /// input, fragment of the error message.
    #[rustfmt::skip]
    const INVALID: &[(&str, &str)] = &[
        ("", "empty reference"),
        ("alpine:", "empty tag after ':'"),
        ("alpine@", "empty digest after '@'"),
        (":tag", "empty repository name"),
        (concat!("@", d256!()), "empty repository name"),
        ("localhost/", "empty repository name"),
        ("docker//alpine", "empty component (leading, trailing or double '/')"),
        ("docker/", "empty component"),
        ("/alpine", "empty component"),
        ("docker///docker", "empty component"),
        ("docker/dock..er", "invalid separator '..'"),
        ("docker/dock_.er", "invalid separator '_.'"),
        ("docker/dock-.er", "invalid separator '-.'"),
        ("a___b", "invalid separator '___'"),
        ("-docker/docker", "'-docker' must start with a letter or digit"),
        ("docker-/docker", "'docker-' must end with a letter or digit"),
        ("____/____", "must start with a letter or digit"),
        (hex256!(), "64-hex-digit"),
        ("Alpine", "repository name must be lowercase"),
        ("docker/Docker", "repository name must be lowercase"),
        ("docker.io/docker/Docker", "repository name must be lowercase"),
        ("Foo_Bar/x", "repository name must be lowercase"),
        ("ÄLPINE", "repository name must be lowercase"),
        ("alpine:x y", "tag 'x y' has invalid characters"),
        ("alpine:1:2", "tag '1:2' has invalid characters"),
        ("foo/bar:baz/qux", "tag 'baz/qux' has invalid characters"),
        ("alpine:-x", "tag '-x' must start with a letter, digit or '_'"),
        ("alpine:.x", "must start with a letter, digit or '_'"),
        ("alpine:latest\0", "tag 'latest\\0' has invalid characters"),
        ("alpine@sha256:abc", "sha256 needs 64 hex digits"),
        ("alpine@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm"),
        (concat!("alpine@", d256!(), "@x"), "more than one '@'"),
        (" alpine", "invalid character ' '"),
        ("alpine latest", "invalid character ' '"),
        ("alpine\n", "invalid character '\\n'"),
        ("https://github.com/docker/docker", "empty port after ':'"),
        ("[fc00::1]:5000", "invalid character '['"),
        ("fc00::1:5000/debian", "an IPv6 address must be in brackets"),
        ("[fe80::1%eth0]:5000/debian", "only hex digits and ':'"),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", "only hex digits and ':'"),
        ("[::1/foo", "without a closing ']'"),
        ("[::1]x/foo", "unexpected text after ']'"),
        ("localhost:abc/foo", "port 'abc' of registry 'localhost:abc' is not a number"),
        (":5000/foo", "no host name before the port"),
        // A first component with '.' is a host, so these fail as host names.
        ("dock..er/docker", "empty component (leading, trailing or double '.')"),
        (".example.com/foo", "empty component"),
        ("dock-.er/docker", "'dock-' must not start or end with '-'"),
        ("-a.com/foo", "'-a' must not start or end with '-'"),
        ("foo_bar.com/x", "invalid character '_'"),
        ("user@host.com/foo", "invalid character '@'"),
    ];

    fn check_valid(case: &Valid) {
        let (input, registry, repository, tag, digest, display) = *case;
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.registry, registry, "{input:?}");
        assert_eq!(r.repository, repository, "{input:?}");
        assert_eq!(r.tag.as_deref(), tag, "{input:?}");
        assert_eq!(
            r.digest.as_ref().map(|d| d.to_string()).as_deref(),
            digest,
            "{input:?}"
        );
        assert_eq!(r.to_string(), display, "{input:?}");
        assert_eq!(Reference::parse(display).unwrap(), r, "{input:?} reparsed");
        assert_eq!(input.parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn valid_table() {
        for case in VALID {
            check_valid(case);
        }
        // Cases built at run time: the longest tag, and names exactly at the length limit.
        let tag128 = format!("_{}", "a".repeat(127));
        let input = format!("alpine:{tag128}");
        let r = Reference::parse(&input).unwrap();
        assert_eq!(r.tag.as_deref(), Some(tag128.as_str()));
        let path = "a".repeat(NAME_MAX - "docker.io/library/".len());
        let r = Reference::parse(&path).unwrap();
        assert_eq!(r.name().len(), NAME_MAX);
        let path = format!("x/{}", "a".repeat(NAME_MAX - "example.com/x/".len()));
        assert_eq!(
            Reference::parse(&format!("example.com/{path}"))
                .unwrap()
                .name()
                .len(),
            NAME_MAX
        );
        assert!(VALID.len() + INVALID.len() >= 45);
    }

    #[test]
    fn invalid_table() {
        let mut cases: Vec<(String, &str)> =
            INVALID.iter().map(|(i, f)| (i.to_string(), *f)).collect();
        cases.push((
            format!("alpine:a{}", "b".repeat(128)),
            "longer than 128 characters (129)",
        ));
        cases.push(("a".repeat(NAME_MAX), "name longer than 255 characters (273"));
        cases.push((
            format!("example.com/{}", "a".repeat(NAME_MAX - "example.com".len())),
            "name longer than 255 characters (256",
        ));
        for (input, fragment) in &cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} accepted as {r}"),
                Err(Error::BadReference { why, .. }) => {
                    assert!(
                        why.contains(fragment),
                        "{input:?}: {why:?} lacks {fragment:?}"
                    )
                }
                Err(e) => panic!("{input:?}: wrong error kind: {e}"),
            }
        }
    }

    #[test]
    fn error_message_is_one_line() {
        let e = Reference::parse("a\nb").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("invalid image reference 'a\\nb': "), "{e}");
    }

    #[test]
    fn familiar_forms() {
        for (input, familiar) in [
            ("alpine", "alpine:latest"),
            ("docker.io/library/alpine:3", "alpine:3"),
            ("user/img:1", "user/img:1"),
            (
                concat!("quay.io/x/y@", d256!()),
                concat!("quay.io/x/y@", d256!()),
            ),
            (
                concat!("busybox:latest@", d256!()),
                concat!("busybox:latest@", d256!()),
            ),
            ("docker.io/library/foo/bar", "library/foo/bar:latest"),
            ("localhost:5000/foo", "localhost:5000/foo:latest"),
            ("Foo/bar", "Foo/bar:latest"),
            // Docker would print `a.b/c`, which names registry `a.b`.
            ("docker.io/a.b/c", "docker.io/a.b/c:latest"),
            ("docker.io/localhost/c", "docker.io/localhost/c:latest"),
            ("library/a.b", "a.b:latest"),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(Reference::parse(familiar).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn api_hosts() {
        assert_eq!(
            Reference::parse("alpine").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            Reference::parse("index.docker.io/a/b").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            Reference::parse("quay.io/a/b").unwrap().api_host(),
            "quay.io"
        );
        assert_eq!(
            Reference::parse("[::1]:5000/a").unwrap().api_host(),
            "[::1]:5000"
        );
    }

    #[test]
    fn filenames() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.for_filename(), "docker.io%library%alpine+latest");
        assert_eq!(
            Reference::from_filename("docker.io%library%alpine+latest").unwrap(),
            r
        );
        let r = Reference::parse(concat!("[::1]:5000/foo@", d256!())).unwrap();
        assert_eq!(
            r.for_filename(),
            concat!("[++1]+5000%foo@sha256+", hex256!())
        );
        assert_eq!(Reference::from_filename(&r.for_filename()).unwrap(), r);
        for (name, fragment) in [
            (
                "alpine",
                "not in canonical form (expected 'docker.io%library%alpine+latest')",
            ),
            ("docker.io%alpine+latest", "not in canonical form"),
            ("docker.io%library%alpine", "not in canonical form"),
            ("docker.io/library/alpine:latest", "contains '/' or ':'"),
            (
                "docker.io%library%Alpine+latest",
                "as a file name: repository name must be lowercase",
            ),
            ("", "empty reference"),
        ] {
            match Reference::from_filename(name) {
                Err(Error::BadReference { reference, why }) => {
                    assert_eq!(reference, name);
                    assert!(why.contains(fragment), "{name:?}: {why:?}");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn report() {
        let r = Reference::parse("example.com:8080/foo/bar/hello-world:latest").unwrap();
        assert_eq!(
            r.parse_report(),
            "as string:    example.com:8080/foo/bar/hello-world:latest\n\
             for filename: example.com+8080%foo%bar%hello-world+latest\n\
             fields:\n\
             \x20 host    'example.com'\n\
             \x20 port    8080\n\
             \x20 path    ['foo', 'bar']\n\
             \x20 name    'hello-world'\n\
             \x20 tag     'latest'\n\
             \x20 digest  None\n"
        );
        let r = Reference::parse(concat!("[::1]/x@", d256!())).unwrap();
        let report = r.parse_report();
        assert!(
            report.contains("\n  host    '[::1]'\n  port    None\n  path    []\n"),
            "{report}"
        );
        assert!(
            report.contains(concat!("\n  tag     None\n  digest  '", d256!(), "'\n")),
            "{report}"
        );
    }

    #[test]
    fn with_tag_and_digest() {
        let r = Reference::parse("alpine").unwrap();
        let t = r.with_tag("3.19").unwrap();
        assert_eq!(t.to_string(), "docker.io/library/alpine:3.19");
        match r.with_tag("x y") {
            Err(Error::BadReference { reference, why }) => {
                assert_eq!(reference, "docker.io/library/alpine:x y");
                assert!(why.contains("tag 'x y' has invalid characters"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.with_tag("").is_err());
        assert!(r.with_tag(&"a".repeat(129)).is_err());
        let d: Digest = d256!().parse().unwrap();
        let both = t.with_digest(d.clone());
        assert_eq!(
            both.to_string(),
            concat!("docker.io/library/alpine:3.19@", d256!())
        );
        let only = Reference::parse(concat!("alpine@", d256!())).unwrap();
        assert_eq!(only.with_tag("1").unwrap().tag.as_deref(), Some("1"));
        assert_eq!(only.with_tag("1").unwrap().digest, Some(d));
    }

    #[test]
    fn serde_as_string() {
        let r = Reference::parse("user/img:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/user/img:1\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Reference>("\"a b\"").is_err());
    }

    const FRAGMENTS: &[&str] = &[
        "a",
        "b0",
        "Foo",
        "x-y",
        ".",
        "_",
        "__",
        "-",
        "--",
        "/",
        ":",
        "@",
        "localhost",
        "docker.io",
        "index.docker.io",
        "library",
        "[::1]",
        "[",
        "]",
        "5000",
        "Latest",
        d256!(),
        "sha256:",
        hex256!(),
        " ",
    ];

    const DOMAIN_COMPONENT: &str = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?";

    fn registry() -> impl Strategy<Value = String> {
        let regex = |r: String| proptest::string::string_regex(&r).expect("test regex");
        let dotted = regex(format!(
            "{DOMAIN_COMPONENT}(\\.{DOMAIN_COMPONENT}){{1,3}}(:[0-9]{{1,5}})?"
        ));
        let ported = regex(format!("{DOMAIN_COMPONENT}:[0-9]{{1,5}}"));
        prop_oneof![
            Just("docker.io".to_string()),
            Just("localhost".to_string()),
            dotted,
            ported,
            "[A-Z][a-zA-Z0-9]{0,5}",
            "\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}\\](:[0-9]{1,5})?",
        ]
        .prop_filter("index.docker.io is normalised away", |r| {
            r != LEGACY_REGISTRY
        })
    }

    fn reference() -> impl Strategy<Value = Reference> {
        let component = "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}";
        let digest = prop_oneof![
            "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
            "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}"))
        ];
        (
            registry(),
            prop::collection::vec(component, 1..5),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            prop::option::of(digest),
        )
            .prop_map(|(registry, path, tag, digest)| {
                let mut repository = path.join("/");
                if registry == DEFAULT_REGISTRY && path.len() == 1 {
                    repository = format!("{OFFICIAL_PREFIX}{repository}");
                }
                let digest: Option<Digest> = digest.map(|d| d.parse().unwrap());
                let tag = if tag.is_none() && digest.is_none() {
                    Some(DEFAULT_TAG.to_string())
                } else {
                    tag
                };
                Reference {
                    registry,
                    repository,
                    tag,
                    digest,
                }
            })
    }

    fn round_trips(r: &Reference) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(&Reference::parse(&r.to_string()).unwrap(), r);
        prop_assert_eq!(&Reference::parse(&r.familiar()).unwrap(), r);
        let f = r.for_filename();
        prop_assert!(!f.contains('/') && !f.starts_with('.'), "{}", f);
        prop_assert_eq!(&Reference::from_filename(&f).unwrap(), r);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn valid_references_round_trip(r in reference()) {
            round_trips(&r)?;
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = Reference::parse(&s);
            let _ = Reference::from_filename(&s);
        }

        #[test]
        fn whatever_parses_round_trips(s in "[a-zA-Z0-9:/@._\\[\\]-]{0,40}") {
            if let Ok(r) = Reference::parse(&s) {
                round_trips(&r)?;
            }
        }

        // Random characters rarely form a valid reference; gluing grammar fragments together
        // reaches the near misses (a host without a path, a tag before a slash, ...).
        #[test]
        fn fragments_parse_or_fail_cleanly(
            parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..8)
        ) {
            let s = parts.concat();
            if let Ok(r) = Reference::parse(&s) {
                round_trips(&r)?;
            }
        }
    }
}
