//! Docker image references (`alpine`, `quay.io/x/y:1`, `localhost:5000/a/b@sha256:…`): the
//! [`Reference`] type and its forms (full, familiar, as a file name, the `--parse-only`
//! report). Parsing and Docker's normalisation are in `parse`; where lade departs from
//! Docker is said there, but for one form:
//!
//! - [`Reference::familiar`] keeps `docker.io/` when dropping it would change the meaning (for
//!   `docker.io/a.b/c`, Docker prints `a.b/c`, which reads back as registry `a.b`).

/// Digests for the tests of this module and of `parse`.
#[cfg(test)]
macro_rules! hex256 {
    () => {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    };
}
#[cfg(test)]
macro_rules! d256 {
    () => {
        concat!("sha256:", hex256!())
    };
}
#[cfg(test)]
macro_rules! d512 {
    () => {
        "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
         47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
    };
}

mod parse;

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
        parse::parse_normalized(s).map_err(|why| bad(s, why))
    }

    /// `registry/repository`, e.g. `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short form as `docker` prints it: `alpine:latest`, `user/img:1`,
    /// `quay.io/x/y@sha256:…`.
    pub fn familiar(&self) -> String {
        self.familiar_name() + &self.suffix()
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
        let r = parse::parse_normalized(&s.replace('%', "/").replace('+', ":"))
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
        let (host, port) = parse::split_host_port(&self.registry);
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
        parse::check_tag(tag).map_err(|why| bad(&format!("{}:{tag}", self.name()), why))?;
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
                && !parse::names_registry(first)
            {
                return self.repository.clone();
            }
        }
        self.name()
    }

    /// What follows the name: `:tag`, `@digest`, both, or nothing.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.suffix())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
