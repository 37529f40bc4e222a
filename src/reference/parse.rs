//! Parsing an image reference, as Docker's `distribution/reference` `ParseNormalizedNamed`
//! does. The grammar, from distribution/reference:
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

use super::{DEFAULT_REGISTRY, DEFAULT_TAG, LEGACY_REGISTRY, OFFICIAL_PREFIX, Reference, show};
use crate::digest::Digest;
use crate::error::Error;

const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;
const HEX_NAME_WHY: &str = "a bare 64-hex-digit name is refused as ambiguous with an image ID \
                            (prefix a registry, e.g. docker.io/<hex>, to mean a repository)";

fn short(s: &str) -> String {
    show(s, 64)
}

/// Docker's rule (splitDockerDomain) for whether the component before the first `/` is a host.
pub(super) fn names_registry(first: &str) -> bool {
    first == "localhost"
        || first == LEGACY_REGISTRY
        || first.contains(['.', ':'])
        || first.to_lowercase() != first
}

/// The body of [`Reference::parse`]; the error is the "why" part of the message.
pub(super) fn parse_normalized(s: &str) -> Result<Reference, String> {
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

pub(super) fn check_tag(tag: &str) -> Result<(), String> {
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

/// Splits a registry into host and port; an IPv6 host keeps its brackets.
pub(super) fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    let host_end = if registry.starts_with('[') {
        registry.find(']').map_or(registry.len(), |i| i + 1)
    } else {
        registry.find(':').unwrap_or(registry.len())
    };
    let (host, rest) = registry.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
