//! What scripts and shells expect of lade's command line: completion scripts that complete,
//! manual pages that `man` renders, and `--format json` output with the fields the README's
//! schema promises (parsed with serde_json here, fields checked, not just "it parses").

mod common;

use std::process::Command;

use common::*;

/// The bash script, sourced into a real bash, completes `lade pu<TAB>` to pull and push, and
/// the options of a subcommand.
#[test]
fn bash_completion_completes_subcommands_and_options() {
    let lade = Lade::new();
    let script = lade.path("lade.bash");
    std::fs::write(&script, lade.ok(["completion", "bash"])).unwrap();
    let complete = |words: &[&str]| -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let words = words.join(" ");
        let mut c = Command::new("bash");
        c.arg("--norc").arg("-c").arg(format!(
            r#"source "$1" || exit 9
COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_lade lade "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
        ));
        c.arg("bash").arg(&script);
        let out = run_cmd(c).ok().stdout;
        out.lines().map(str::to_string).collect()
    };
    let mut subs = complete(&["lade", "pu"]);
    subs.sort();
    assert_eq!(subs, ["pull", "push"]);
    let opts = complete(&["lade", "list", "--f"]);
    assert_eq!(opts, ["--format"], "{opts:?}");
    assert!(complete(&["lade", "list", "--format", ""]).contains(&"json".to_string()));
    // The other shells' scripts are generated too, and name the commands.
    for shell in ["zsh", "fish"] {
        let s = lade.ok(["completion", shell]);
        assert!(
            s.contains("build-cache") && s.contains("pull"),
            "{shell}: {s}"
        );
    }
    let err = lade.run(["completion", "tcsh"]).fails();
    assert!(
        err.contains("'tcsh'") && err.contains("bash, zsh, fish"),
        "{err}"
    );
}

/// `lade man --output DIR` writes one page per command, and `man -l` renders them.
#[test]
fn man_renders_the_generated_pages() {
    let lade = Lade::new();
    let dir = lade.path("man/man1");
    lade.run(["man", "--output", dir.to_str().unwrap()]).ok();
    for page in ["lade.1", "lade-pull.1", "lade-copy.1", "lade-build.1"] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    assert!(
        !dir.join("lade-build-run-step.1").exists(),
        "hidden command documented"
    );
    let render = |page: &str| {
        let mut c = Command::new("man");
        c.arg("-l").arg(dir.join(page));
        c.env("MANPAGER", "cat").env("MANWIDTH", "100");
        run_cmd(c).ok().stdout
    };
    let top = render("lade.1");
    assert!(top.contains("NAME") && top.contains("SYNOPSIS"), "{top}");
    assert!(top.contains("--storage"), "{top}");
    let pull = render("lade-pull.1");
    assert!(
        pull.contains("lade-pull") && pull.contains("--parse-only"),
        "{pull}"
    );
    // Without --output: the top page on standard output, the same as the file.
    let stdout = lade.ok(["man"]);
    assert_eq!(stdout, std::fs::read_to_string(dir.join("lade.1")).unwrap());
}
