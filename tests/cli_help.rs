//! Every command, argument and option of `lade` says what it is for: the test walks the
//! command tree as a user sees it (`lade --help`, then `lade CMD --help` for each command
//! listed, and so on down), so it covers whatever commands exist, and fails on any entry of
//! a `Commands:`, `Arguments:` or `Options:` section that has no text. Also: the top-level
//! description names what lade is mostly used for, run and build.

mod common;

use common::*;

/// One entry of a help section: its first line, and the text that describes it.
#[derive(Debug)]
struct Entry {
    spec: String,
    text: String,
}

impl Entry {
    /// Whether there is text besides what clap adds by itself (`[default: …]`,
    /// `[possible values: …]`, `[env: …]`, `[aliases: …]`).
    fn described(&self) -> bool {
        let mut words = String::new();
        let mut depth = 0;
        for c in self.text.chars() {
            match c {
                '[' => depth += 1,
                ']' if depth > 0 => depth -= 1,
                _ if depth == 0 => words.push(c),
                _ => {}
            }
        }
        !words.trim().is_empty()
    }
}

/// The entries of each section (`Commands:`, `Arguments:`, `Options:`) of clap's help text.
/// An entry starts after two spaces (six for an option with only a long form); its text
/// follows on the same line after a gap of two spaces or more, and on the lines below,
/// indented further, to the text's column (clap's two layouts: beside, or below at ten).
fn sections(help: &str) -> Vec<(String, Vec<Entry>)> {
    let mut out: Vec<(String, Vec<Entry>)> = Vec::new();
    let mut section: Option<usize> = None;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') && !line.contains("  ") {
            out.push((line.trim_end_matches(':').to_string(), Vec::new()));
            section = Some(out.len() - 1);
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some(s) = section else { continue };
        if !line.starts_with(' ') {
            section = None; // free text after the sections
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let entries = &mut out[s].1;
        if indent <= 6 {
            let rest = line.trim_start();
            let (spec, text) = match rest.find("  ") {
                Some(i) => (&rest[..i], rest[i..].trim()),
                None => (rest, ""),
            };
            entries.push(Entry {
                spec: spec.trim().to_string(),
                text: text.to_string(),
            });
        } else if let Some(last) = entries.last_mut() {
            last.text.push(' ');
            last.text.push_str(line.trim());
        }
    }
    out
}

fn help_of(path: &[String]) -> String {
    let mut args: Vec<String> = path.to_vec();
    args.push("--help".into());
    let r = run_cmd(lade_raw(&args)).ok();
    assert!(!r.stdout.trim().is_empty(), "no help for {path:?}");
    r.stdout
}

/// Walks the tree from `path`; returns every command path seen, and pushes a message for
/// each entry without text.
fn walk(path: Vec<String>, seen: &mut Vec<String>, missing: &mut Vec<String>) {
    let help = help_of(&path);
    seen.push(format!("lade {}", path.join(" ")).trim().to_string());
    let mut children = Vec::new();
    for (name, entries) in sections(&help) {
        if !matches!(name.as_str(), "Commands" | "Arguments" | "Options") {
            continue;
        }
        for e in &entries {
            if !e.described() {
                missing.push(format!(
                    "lade {} --help: {name}: {} has no help text",
                    path.join(" "),
                    e.spec
                ));
            }
            if name == "Commands" {
                let cmd = e.spec.split_whitespace().next().unwrap_or("").to_string();
                if cmd != "help" {
                    children.push(cmd);
                }
            }
        }
    }
    for c in children {
        let mut p = path.clone();
        p.push(c);
        walk(p, seen, missing);
    }
}

#[test]
fn every_command_argument_and_option_has_help_text() {
    let mut seen = Vec::new();
    let mut missing = Vec::new();
    walk(Vec::new(), &mut seen, &mut missing);
    // The walk reached the commands (and so would reach ones added later).
    for cmd in ["lade pull", "lade build", "lade run", "lade build-cache"] {
        assert!(seen.iter().any(|s| s == cmd), "{cmd} not reached: {seen:?}");
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_parser_of_this_test_finds_an_entry_without_text() {
    let help = [
        "About",
        "",
        "Usage: x",
        "",
        "Options:",
        "  -a, --all     Everything, said at such length",
        "                that it wraps --no-lock`)",
        "  -q, --quiet",
        "      --long <X>",
        "          Text on the next line",
        "      --format <F>  [default: text] [possible values: text, json]",
    ]
    .join("\n");
    let s = sections(&help);
    assert_eq!(s.len(), 1);
    let described: Vec<(&str, bool)> = s[0]
        .1
        .iter()
        .map(|e| (e.spec.as_str(), e.described()))
        .collect();
    assert_eq!(
        described,
        [
            ("-a, --all", true),
            ("-q, --quiet", false),
            ("--long <X>", true),
            ("--format <F>", false)
        ]
    );
}

#[test]
fn the_description_names_run_and_build() {
    let help = help_of(&[]);
    let about = help.lines().next().unwrap_or("").to_lowercase();
    assert!(about.contains("run") && about.contains("build"), "{about}");
}
