//! The Dockerfile parser, then substitution of every instruction with a few variables set:
//! never a panic, and bounded (the lexer caps a word at 1 MiB).
#![no_main]

use lade::dockerfile::{self, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(df) = dockerfile::parse(text, "Dockerfile") else {
        return;
    };
    let vars = |name: &str| match name {
        "A" => Some("a b".to_string()),
        "P" => Some("/usr/local/bin".to_string()),
        "E" => Some(String::new()),
        _ => None,
    };
    let mut scope = Scope::new([]);
    for a in &df.pre_from_args {
        let _ = a.text.len();
    }
    for stage in &df.stages {
        let _ = stage.from.expand(&df, &vars);
        scope.begin_stage(["PATH=/bin"]);
        for ins in &stage.instructions {
            if let Ok(x) = ins.expand(&df, &vars) {
                let _ = x.to_string();
            }
        }
    }
    let _ = dockerfile::substitute(text, &vars);
    let _ = dockerfile::split_words(text, &vars);
});
