//! Properties of the parsers lade feeds untrusted text to, checked on generated input in the
//! normal suite (the cargo-fuzz targets under fuzz/ explore the same entry points for longer):
//! image references, Dockerfiles and their substitution, `.dockerignore`, manifests and
//! configs. Each must return a value or an error, never panic, and stay bounded.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use lade::dockerfile::{self, ignore::Ignore};
use lade::manifest::{self, RawManifest};
use lade::reference::Reference;
use proptest::prelude::*;

fn vars(name: &str) -> Option<String> {
    match name {
        "A" => Some("a b".into()),
        "P" => Some("/usr/local/bin".into()),
        "E" => Some(String::new()),
        _ => None,
    }
}

/// Dockerfile-ish text: instructions, variables, quotes, escapes, heredocs, continuations.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM base\n".to_string()),
        Just("FROM $A AS s\n".to_string()),
        Just("ARG A=${P:-x}\n".to_string()),
        Just("ENV K=\"v $A\" L='w'\n".to_string()),
        Just("RUN <<EOF\necho $A\nEOF\n".to_string()),
        Just("COPY --chown=$A a* /d/\n".to_string()),
        Just("WORKDIR ${P%/*}\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("\\\n".to_string()),
        "[ -~\n]{0,12}",
        "(\\$\\{?[APE:#%/*?}-]{0,6}){1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn references_parse_or_fail_and_print_back(s in "[a-zA-Z0-9._/:@+-]{0,40}") {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string());
            prop_assert!(again.is_ok(), "{} printed as {}", s, r);
            prop_assert_eq!(again.unwrap().to_string(), r.to_string());
        }
    }

    #[test]
    fn dockerfiles_parse_and_expand_without_panics(text in dockerfile_text()) {
        if let Ok(df) = dockerfile::parse(&text, "Dockerfile") {
            for stage in &df.stages {
                let _ = stage.from.expand(&df, &vars);
                for ins in &stage.instructions {
                    if let Ok(x) = ins.expand(&df, &vars) {
                        let _ = x.to_string();
                    }
                }
            }
        }
    }

    #[test]
    fn substitution_is_total_and_bounded(w in "[$ {}:+#%/?*\\\\'\"aAPE-]{0,30}") {
        if let Ok(s) = dockerfile::substitute(&w, &vars) {
            // Nothing here can grow a word beyond its variables' values.
            prop_assert!(s.len() <= w.len() * 16 + 64, "{:?} -> {} bytes", w, s.len());
        }
        let _ = dockerfile::split_words(&w, &vars);
    }

    #[test]
    fn dockerignore_parses_or_refuses_and_matches_anything(
        lines in prop::collection::vec("[!*?\\[\\]^\\\\/a-c.{}-]{0,8}", 0..5),
        path in prop::collection::vec(any::<u8>().prop_filter("not NUL", |&b| b != 0), 1..12),
    ) {
        if let Ok(ig) = Ignore::parse(&lines.join("\n"), ".dockerignore") {
            let _ = ig.excluded(Path::new(std::ffi::OsStr::from_bytes(&path)));
        }
    }

    #[test]
    fn a_plain_dockerignore_pattern_matches_itself_and_what_is_under_it(
        name in "[a-z0-9_.-]{1,8}(/[a-z0-9_-]{1,8}){0,2}",
    ) {
        prop_assume!(!name.split('/').any(|c| c == "." || c == ".."));
        let ig = Ignore::parse(&name, ".dockerignore").unwrap();
        prop_assert!(ig.excluded(Path::new(&name)));
        let under = format!("{name}/x");
        prop_assert!(ig.excluded(Path::new(&under)));
        let other = format!("{name}x");
        prop_assert!(!ig.excluded(Path::new(&other)));
    }

    #[test]
    fn manifests_and_configs_parse_or_refuse(data in manifest_bytes()) {
        for hint in [None, Some(manifest::OCI_INDEX), Some(manifest::OCI_MANIFEST)] {
            if let Ok(m) = RawManifest::new(data.clone(), hint, None, "prop") {
                if let Ok(i) = m.index() {
                    for d in i.manifests() {
                        let _ = manifest::expected(d);
                    }
                }
                let _ = m.image();
            }
        }
        if let Ok(c) = manifest::parse_config(&data, "prop") {
            let _ = manifest::diff_ids(&c, "prop");
        }
    }
}

/// Valid-looking manifests, indexes and configs with fields dropped, doubled or given odd
/// values, and plain noise.
fn manifest_bytes() -> impl Strategy<Value = Vec<u8>> {
    let digest = format!("\"sha256:{}\"", "ab".repeat(32));
    let value = prop_oneof![
        Just("-1".to_string()),
        Just("1.5".to_string()),
        Just("9223372036854775808".to_string()),
        Just("18446744073709551616".to_string()),
        Just("null".to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
        Just("\"x\"".to_string()),
        Just("2".to_string()),
        Just(digest.clone()),
    ];
    let key = prop_oneof![
        Just("schemaVersion"),
        Just("mediaType"),
        Just("manifests"),
        Just("layers"),
        Just("config"),
        Just("digest"),
        Just("size"),
        Just("rootfs"),
        Just("diff_ids"),
        Just("architecture"),
        Just("os"),
        Just("platform"),
    ];
    let field = (key, value).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    let object = prop::collection::vec(field, 0..8).prop_map(|f| format!("{{{}}}", f.join(",")));
    let nested = (prop::collection::vec(object.clone(), 0..3), object.clone()).prop_map(move |(items, o)| {
        let inner = o.trim_start_matches('{').trim_end_matches('}').to_string();
        let sep = if inner.is_empty() { "" } else { "," };
        format!(
            "{{\"schemaVersion\":2,\"manifests\":[{}],\"layers\":[{}],\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{digest}]}}{sep}{inner}}}",
            items.join(","),
            items.join(",")
        )
    });
    prop_oneof![
        object.prop_map(String::into_bytes),
        nested.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}
