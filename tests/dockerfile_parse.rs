//! The Dockerfile parser and substitution engine against the Dockerfile reference, the ch-image
//! manual, and BuildKit's own parser/lexer test cases (frontend/dockerfile/parser, shell).

use lade::dockerfile::*;
use std::time::Duration;

fn parse_ok(text: &str) -> Dockerfile {
    match parse(text, "Dockerfile") {
        Ok(d) => d,
        Err(e) => panic!("parse failed: {e}\n--- input ---\n{text}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text, "Dockerfile") {
        Ok(d) => panic!("parse succeeded: {d:?}\n--- input ---\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The instructions of the single stage of `FROM x` + `body`.
fn body(text: &str) -> Vec<Instruction> {
    let d = parse_ok(&format!("FROM x\n{text}"));
    assert_eq!(d.stages.len(), 1);
    d.stages[0]
        .instructions
        .iter()
        .map(|l| l.value.clone())
        .collect()
}

fn one(text: &str) -> Instruction {
    let v = body(text);
    assert_eq!(v.len(), 1, "expected one instruction from {text:?}: {v:?}");
    v.into_iter().next().unwrap()
}

fn body_err(text: &str) -> String {
    parse_err(&format!("FROM x\n{text}"))
}

fn shell(s: &str) -> Instruction {
    Instruction::Run(Run {
        command: Command::Shell(s.into()),
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
    })
}

fn run_of(i: &Instruction) -> &Run {
    match i {
        Instruction::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

fn no_vars(_: &str) -> Option<String> {
    None
}

/// Expand with `vars` given as `NAME=VALUE` pairs.
fn expand(i: &Instruction, vars: &[(&str, &str)]) -> Instruction {
    let f = |n: &str| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    };
    i.expand_with('\\', &f).unwrap()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

// ---- Lines: continuation, comments, directives ---------------------------------------------

#[test]
fn continuation_joins_lines_and_keeps_leading_blanks_of_continued_lines() {
    // The reference: the escape character at the end of a line continues it; BuildKit keeps the
    // continuation line's own leading whitespace (only the first line is left-trimmed).
    assert_eq!(one("RUN echo a \\\n  b"), shell("echo a   b"));
    // Spaces and tabs after the backslash still make it a continuation.
    assert_eq!(one("RUN echo a \\ \t\n b"), shell("echo a  b"));
    // A continuation at the end of the file simply ends the instruction.
    assert_eq!(one("RUN echo a \\"), shell("echo a"));
    // A lone backslash line continues too.
    assert_eq!(one("RUN a \\\n\\\nb"), shell("a b"));
}

#[test]
fn escaped_escape_at_end_of_line_is_not_a_continuation() {
    // BuildKit's regexp `([^\\])\\[ \t]*$`: `\\` at the end is a literal backslash.
    assert_eq!(
        body("RUN echo a\\\\\nRUN b"),
        vec![shell("echo a\\\\"), shell("b")]
    );
}

#[test]
fn comment_lines_inside_a_continuation_are_dropped() {
    // The reference's example: comment lines are removed before the instruction is processed,
    // also in the middle of a continued line, even indented ones.
    assert_eq!(
        one("RUN echo hello \\\n# comment\nworld"),
        shell("echo hello world")
    );
    assert_eq!(one("RUN a \\\n   # indented comment\n b"), shell("a  b"));
    // A comment line ending in a backslash does not end the continuation either.
    assert_eq!(one("RUN a \\\n# c \\\n b"), shell("a  b"));
}

#[test]
fn empty_continuation_lines_are_dropped_with_a_warning() {
    let d = parse_ok("FROM x\nRUN a \\\n\n   \n b\n");
    assert_eq!(d.stages[0].instructions[0].value, shell("a  b"));
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].starts_with("Dockerfile:2:"));
    // BuildKit's TestParseWarnsOnEmptyContinutationLine: one warning per instruction with
    // empty lines, naming the joined line; comment lines (indented or not) do not count.
    let d = parse_ok(
        "FROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t",
    );
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("RUN something     following     more"));
    assert!(d.warnings[1].contains("RUN another     thing"));
    let runs: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|l| l.value.clone())
        .collect();
    assert_eq!(runs[3], shell("non-indented    after-comment"));
    assert_eq!(runs[4], shell("indented     comment"));
}

#[test]
fn tabs_separate_like_spaces() {
    // Old Dockerfiles separate with tabs, including the legacy ENV form across continuations.
    let d = parse_ok(
        "FROM\tubuntu:14.04\nLABEL\tmaintainer\tA B <a@b> (@c)\nENV\tLIST\t\\\n\tlinux/386 linux/arm \\\n\tdarwin/amd64\nRUN\tapt-get install -yq \\\n\tcurl \\\n\t--no-install-recommends\nCOPY\t.\t/go/src\n",
    );
    assert_eq!(d.stages[0].from.value.image, "ubuntu:14.04");
    let i: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|l| l.value.clone())
        .collect();
    assert_eq!(
        i[0],
        Instruction::Label(vec![kv("maintainer", "A B <a@b> (@c)")])
    );
    assert_eq!(
        i[1],
        Instruction::Env(vec![kv("LIST", "linux/386 linux/arm \tdarwin/amd64")])
    );
    assert_eq!(
        i[2],
        shell("apt-get install -yq \tcurl \t--no-install-recommends")
    );
    let Instruction::Copy(c) = &i[3] else {
        panic!()
    };
    assert_eq!(
        (c.files.sources.len(), c.files.dest.as_str()),
        (1, "/go/src")
    );
}

#[test]
fn hash_is_a_comment_only_at_line_start() {
    // "Docker treats lines that begin with # as a comment ... A # marker anywhere else in a
    // line is treated as an argument."
    assert_eq!(
        one("RUN echo hello # not a comment"),
        shell("echo hello # not a comment")
    );
    // Leading whitespace before # still makes a comment line.
    assert_eq!(body("   # comment\n\tRUN a"), vec![shell("a")]);
}

#[test]
fn crlf_and_bom() {
    let d = parse_ok("\u{feff}FROM x\r\nRUN a \\\r\n b\r\n");
    assert_eq!(d.stages[0].instructions[0].value, shell("a  b"));
}

#[test]
fn keywords_are_case_insensitive_and_lines_are_numbered() {
    let d = parse_ok("# c\n\nfrom x AS Build\n\nrun a \\\n  b\nRuN c\n");
    let s = &d.stages[0];
    assert_eq!(s.from.line, 3);
    assert_eq!(s.name.as_deref(), Some("build"));
    assert_eq!(s.instructions[0].line, 5);
    assert_eq!(s.instructions[0].end_line, 6);
    assert_eq!(s.instructions[0].text, "run a   b");
    assert_eq!(s.instructions[1].line, 7);
}

#[test]
fn escape_directive_changes_escape_and_continuation() {
    // The reference's Windows example: with `# escape=``, a trailing backslash is literal.
    let d = parse_ok("# escape=`\nFROM x\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN a `\n  b\n");
    assert_eq!(d.directives.escape, '`');
    let i: Vec<_> = d.stages[0].instructions.iter().map(|l| &l.value).collect();
    match i[0] {
        Instruction::Copy(c) => assert_eq!(c.files.dest, "c:\\"),
        o => panic!("{o:?}"),
    }
    assert_eq!(*i[1], shell("dir c:\\"));
    assert_eq!(*i[2], shell("a   b"));
    // Substitution uses the backtick as its escape too.
    let e = parse_ok("# escape=`\nFROM x\nWORKDIR `$HOME\\x\n");
    let w = e.stages[0].instructions[0].expand(&e, &no_vars).unwrap();
    assert_eq!(w, Instruction::Workdir("$HOME\\x".into()));
}

#[test]
fn directive_spelling() {
    // Case-insensitive name, blanks around `=` allowed.
    let d = parse_ok("#  ESCAPE = `\n# Syntax=docker/dockerfile:1\n#check=skip=all\nFROM x\n");
    assert_eq!(d.directives.escape, '`');
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
}

#[test]
fn directives_only_at_the_top() {
    // After a comment, a blank line, an unknown directive or an instruction, a directive is
    // just a comment: the backtick below is then an ordinary character.
    for prefix in ["# about\n", "\n", "# unknowndirective=1\n", "FROM y\n"] {
        let d = parse_ok(&format!("{prefix}# escape=`\nFROM x\nRUN a `\nRUN b\n"));
        assert_eq!(d.directives.escape, '\\', "prefix {prefix:?}");
        let last = d.stages.last().unwrap();
        assert_eq!(
            last.instructions
                .iter()
                .map(|l| l.value.clone())
                .collect::<Vec<_>>(),
            vec![shell("a `"), shell("b")],
            "prefix {prefix:?}"
        );
    }
    // A directive split with a continuation is not a directive (the reference's example).
    let d = parse_ok("# esc \\\n# ape=`\nFROM x\n");
    assert_eq!(d.directives.escape, '\\');
}

#[test]
fn directive_errors() {
    assert!(
        parse_err("# escape=\\\n# escape=`\nFROM x\n").contains("only one escape parser directive")
    );
    let e = parse_err("# escape=x\nFROM x\n");
    assert_eq!(
        e,
        "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
    );
}

// ---- Structure -----------------------------------------------------------------------------

#[test]
fn unknown_instruction_is_an_error_with_its_line() {
    assert_eq!(
        parse_err("FROM x\n\n# c\nFROB a b\n"),
        "Dockerfile:4: unknown instruction 'FROB'"
    );
    assert_eq!(
        parse_err("FROM x\nrun a\nfrob\n"),
        "Dockerfile:3: unknown instruction 'frob'"
    );
}

#[test]
fn only_arg_may_precede_from() {
    let d = parse_ok("ARG A=1 B\nARG C\nFROM x:$A\n");
    assert_eq!(d.pre_from_args.len(), 2);
    assert_eq!(
        d.pre_from_args[0].value,
        vec![
            ArgDecl {
                name: "A".into(),
                default: Some("1".into())
            },
            ArgDecl {
                name: "B".into(),
                default: None
            }
        ]
    );
    assert!(parse_err("RUN a\nFROM x\n").starts_with("Dockerfile:1: RUN before the first FROM"));
    assert_eq!(parse_err(""), "Dockerfile: file with no instructions");
    assert_eq!(
        parse_err("# only\n\n  \n"),
        "Dockerfile: file with no instructions"
    );
    assert_eq!(parse_err("ARG A\n"), "Dockerfile: no FROM instruction");
}

#[test]
fn stages() {
    let d = parse_ok("FROM a AS one\nRUN x\nFROM b as Two\nCOPY --from=one / /\nFROM c\n");
    assert_eq!(d.stages.len(), 3);
    assert_eq!(d.stages[1].name.as_deref(), Some("two"));
    assert_eq!(d.stage_index("ONE", 1), Some(0));
    assert_eq!(d.stage_index("two", 1), None, "only earlier stages");
    assert_eq!(d.stage_index("1", 2), Some(1));
    assert_eq!(d.stage_index("nope", 3), None);
}

// ---- FROM ----------------------------------------------------------------------------------

#[test]
fn from_forms() {
    let d =
        parse_ok("FROM --platform=$BUILDPLATFORM --arg=A=1 --arg=B=x=y alpine:3.19 AS Build-1.x\n");
    let f = &d.stages[0].from.value;
    assert_eq!(f.image, "alpine:3.19");
    assert_eq!(f.name.as_deref(), Some("build-1.x"));
    assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(
        f.args,
        vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    let e = f
        .expand_with('\\', &|n| {
            (n == "BUILDPLATFORM").then(|| "linux/amd64".into())
        })
        .unwrap();
    assert_eq!(e.platform.as_deref(), Some("linux/amd64"));
}

#[test]
fn from_errors() {
    assert!(parse_err("FROM\n").contains("FROM requires either one or three arguments"));
    assert!(parse_err("FROM a b\n").contains("FROM requires either one or three arguments"));
    assert!(parse_err("FROM a AS b c\n").contains("FROM requires either one or three arguments"));
    assert!(parse_err("FROM a AS 1b\n").contains("invalid name for build stage"));
    assert!(parse_err("FROM a AS b$c\n").contains("invalid name for build stage"));
    assert!(parse_err("FROM --arg=nope a\n").contains("--arg must be NAME=VALUE"));
    assert!(parse_err("FROM --platform a\n").contains("missing a value on flag: --platform"));
    assert!(parse_err("FROM --frob=1 a\n").contains("unknown flag: --frob"));
}

// ---- RUN, CMD, ENTRYPOINT, SHELL -----------------------------------------------------------

#[test]
fn run_shell_and_exec_forms() {
    assert_eq!(one("RUN echo \"$HOME\""), shell("echo \"$HOME\""));
    assert_eq!(
        run_of(&one("RUN [\"/bin/sh\", \"-c\", \"echo hi\"]")).command,
        Command::Exec(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    // JSON escapes are JSON's.
    assert_eq!(
        run_of(&one(r#"RUN ["a\\b", "\u00e9"]"#)).command,
        Command::Exec(vec!["a\\b".into(), "é".into()])
    );
    // Not valid JSON: the shell form, as written (Docker's fallback).
    assert_eq!(one("RUN [ \"a\", "), shell("[ \"a\","));
    assert_eq!(one("RUN ['a']"), shell("['a']"));
    // Valid JSON but not all strings: an error.
    assert!(body_err("RUN [\"a\", 1]").contains("arrays must be comprised of strings only"));
    assert!(body_err("RUN").contains("RUN requires at least one argument"));
}

#[test]
fn run_options() {
    let r = one(
        "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=bind,source=a,target=/b,rw \\\n    --network=none --security=insecure make",
    );
    let r = run_of(&r);
    assert_eq!(r.command, Command::Shell("make".into()));
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].kind, "cache");
    assert_eq!(r.mounts[0].target(), Some("/root/.cache"));
    assert!(!r.mounts[0].readonly());
    assert_eq!(r.mounts[1].kind, "bind");
    assert_eq!(r.mounts[1].source(), Some("a"));
    assert!(!r.mounts[1].readonly(), "rw given");
    // Bind mounts are read-only by default; `type` defaults to bind. Options lose one level of
    // quotes when the line is split (BuildKit's extractBuilderFlags), so a CSV-quoted field
    // needs protecting quotes around it.
    let r = one("RUN --mount='\"target=/a,b\"',from=build true");
    let m = &run_of(&r).mounts[0];
    assert_eq!(m.kind, "bind");
    assert_eq!(m.target(), Some("/a,b"));
    assert_eq!(m.from(), Some("build"));
    assert!(m.readonly());
    // Secrets need no target.
    assert_eq!(
        run_of(&one("RUN --mount=type=secret,id=tok cat /run/secrets/tok")).mounts[0].get(&["id"]),
        Some("tok")
    );
    // Mount values are substituted; the command is not.
    let e = expand(
        &one("RUN --mount=type=cache,target=$DIR echo $DIR"),
        &[("DIR", "/c")],
    );
    assert_eq!(run_of(&e).mounts[0].target(), Some("/c"));
    assert_eq!(run_of(&e).command, Command::Shell("echo $DIR".into()));
}

#[test]
fn run_option_errors() {
    assert!(body_err("RUN --mount=type=nfs,target=/a x").contains("unsupported mount type"));
    assert!(body_err("RUN --mount=type=cache x").contains("needs a target"));
    assert!(body_err("RUN --mount=target=/a,bogus=1 x").contains("unexpected key 'bogus'"));
    assert!(body_err("RUN --network=bridge x").contains("unsupported network mode"));
    assert!(body_err("RUN --frob x").contains("unknown flag: --frob"));
    assert!(body_err("RUN --network=none --network=host x").contains("duplicate flag"));
    // `--` ends the options.
    assert_eq!(one("RUN -- --not-an-option"), shell("--not-an-option"));
}

#[test]
fn cmd_entrypoint_shell() {
    assert_eq!(
        one("CMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        Instruction::Cmd(Command::Exec(vec![
            "nginx".into(),
            "-g".into(),
            "daemon off;".into()
        ]))
    );
    assert_eq!(
        one("CMD echo $HOME"),
        Instruction::Cmd(Command::Shell("echo $HOME".into()))
    );
    assert_eq!(one("CMD []"), Instruction::Cmd(Command::Exec(vec![])));
    assert_eq!(
        one("ENTRYPOINT exec top -b"),
        Instruction::Entrypoint(Command::Shell("exec top -b".into()))
    );
    assert_eq!(
        one("ENTRYPOINT [\"top\", \"-b\"]"),
        Instruction::Entrypoint(Command::Exec(vec!["top".into(), "-b".into()]))
    );
    // Neither is substituted (the shell or the program sees the variables).
    let c = one("CMD echo $X");
    assert_eq!(expand(&c, &[("X", "1")]), c);
    assert_eq!(
        one("SHELL [\"powershell\", \"-command\"]"),
        Instruction::Shell(vec!["powershell".into(), "-command".into()])
    );
    assert!(
        body_err("SHELL /bin/bash -c").contains("SHELL requires the arguments to be in JSON form")
    );
    assert!(body_err("SHELL []").contains("SHELL requires at least one argument"));
    assert!(body_err("CMD").contains("CMD requires at least one argument"));
}

// ---- Heredocs ------------------------------------------------------------------------------

fn heredoc(name: &str, content: &str) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        chomp: false,
        expand: true,
        fd: 0,
    }
}

#[test]
fn run_heredoc_forms() {
    // The body is verbatim: comments, backslashes and blank lines are data.
    let r = one("RUN <<EOF\n# not a comment\necho a \\\n\necho b\nEOF");
    let r = run_of(&r);
    assert_eq!(r.command, Command::Shell("<<EOF".into()));
    assert_eq!(
        r.heredocs,
        vec![heredoc("EOF", "# not a comment\necho a \\\n\necho b\n")]
    );
    assert_eq!(
        r.plan(),
        RunPlan::Shell("# not a comment\necho a \\\n\necho b\n".into())
    );
    // After the heredoc, parsing resumes.
    let v = body("RUN <<EOF\nx\nEOF\nRUN y\n");
    assert_eq!(v.len(), 2);
    assert_eq!(v[1], shell("y"));
}

#[test]
fn heredoc_delimiters_buildkit_cases() {
    // From BuildKit's TestParseExtractsHeredoc.
    let h = |line: &str, rest: &str| -> Vec<Heredoc> {
        run_or_copy_heredocs(&one(&format!("{line}\n{rest}")))
    };
    assert_eq!(h("RUN <<EMPTY", "EMPTY"), vec![heredoc("EMPTY", "")]);
    let fd = h("RUN 3<<EMPTY2", "EMPTY2");
    assert_eq!(fd[0].fd, 3);
    assert!(h("RUN \"<<NOHEREDOC\"", "").is_empty());
    assert!(h("RUN '<<NOHEREDOC'", "").is_empty());
    let indent = h("RUN <<INDENT", "\tfoo\n\tbar\nINDENT");
    assert_eq!(indent, vec![heredoc("INDENT", "\tfoo\n\tbar\n")]);
    // `<<-`: the delimiter may be tab-indented; the body keeps its tabs until body().
    let un = h("RUN <<-UNINDENT", "\tbaz\n\tquux\n\tUNINDENT");
    assert!(un[0].chomp);
    assert_eq!(un[0].content, "\tbaz\n\tquux\n");
    assert_eq!(un[0].body(), "baz\nquux\n");
    // Quoted (even partly) delimiters turn off expansion; the name loses its quotes.
    let q = h("RUN <<-'NOEXPAND'", "\tdon't expand $NAME\nNOEXPAND");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("NOEXPAND", false));
    let q = h("RUN <<eo'f'", "echo foo\neof");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("eof", false));
    let q = h("RUN <<eo\\'f", "echo foo\neo'f");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("eo'f", true));
    let q = h("RUN <<'e'o\\'f", "echo foo\neo'f");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("eo'f", false));
    let q = h("RUN <<'one two'", "echo bar\none two");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("one two", false));
    let q = h("RUN <<\"EOF\"", "x\nEOF");
    assert_eq!((q[0].name.as_str(), q[0].expand), ("EOF", false));
    // An unset-looking delimiter stays as written.
    assert_eq!(h("RUN <<$EOF", "$EOF")[0].name, "$EOF");
    // Blanks between << and the word are allowed.
    assert_eq!(h("RUN <<  EOF", "EOF")[0].name, "EOF");
    assert_eq!(h("RUN <<  EOF  > foo", "EOF")[0].name, "EOF");
    // Several heredocs are read in order; a delimiter only ends its own heredoc.
    let two = h("COPY <<X <<Y /dest", "Y\nX\nX\nY");
    assert_eq!(two, vec![heredoc("X", "Y\n"), heredoc("Y", "X\n")]);
    // A heredoc after the command: the shell gets the whole thing.
    let c = one("RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX");
    assert_eq!(
        run_of(&c).plan(),
        RunPlan::Shell("<<COMPLEX python3\nprint('hello world')\nCOMPLEX".into())
    );
    // JSON form never has heredocs.
    assert!(h("RUN [\"<<EOF\"]", "").is_empty());
    // Heredocs are only for RUN, COPY and ADD: USER <<X is a user name.
    assert_eq!(
        body("USER <<INVALID\nRUN x"),
        vec![Instruction::User("<<INVALID".into()), shell("x")]
    );
}

fn run_or_copy_heredocs(i: &Instruction) -> Vec<Heredoc> {
    match i {
        Instruction::Run(r) => r.heredocs.clone(),
        Instruction::Copy(c) => c
            .files
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Heredoc(h) => Some(h.clone()),
                _ => None,
            })
            .collect(),
        o => panic!("{o:?}"),
    }
}

#[test]
fn run_heredoc_plans() {
    let r = one("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF");
    assert_eq!(
        run_of(&r).plan(),
        RunPlan::Script {
            name: "EOF".into(),
            content: "#!/usr/bin/env python3\nprint(1)\n".into()
        }
    );
    let r = one("RUN <<A cat - /dev/fd/3 3<<B\na\nA\nb\nB");
    let r = run_of(&r);
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(r.heredocs[1].fd, 3);
    assert_eq!(
        r.plan(),
        RunPlan::Shell("<<A cat - /dev/fd/3 3<<B\na\nA\nb\nB".into())
    );
    // With a mount and a continuation before the heredoc.
    let r = one("RUN --mount=type=cache,target=/foo \\\n  <<MOUNT\necho hello\nMOUNT");
    assert_eq!(run_of(&r).heredocs, vec![heredoc("MOUNT", "echo hello\n")]);
}

#[test]
fn heredoc_errors_and_lines() {
    assert_eq!(
        parse_err("FROM x\nRUN <<EOF\nabc\n"),
        "Dockerfile:2: unterminated heredoc <<EOF"
    );
    // `<<-` is needed for an indented delimiter.
    assert!(parse_err("FROM x\nRUN <<EOF\n\tEOF\n").contains("unterminated heredoc"));
    assert!(
        body_err("COPY a <<EOF\nx\nEOF").contains("COPY cannot accept a heredoc as a destination")
    );
    let d = parse_ok("FROM x\nRUN <<EOF\na\nb\nEOF\nRUN c\n");
    let i = &d.stages[0].instructions;
    assert_eq!((i[0].line, i[0].end_line), (2, 5));
    assert_eq!(i[0].text, "RUN <<EOF");
    assert_eq!(i[1].line, 6);
}

#[test]
fn copy_heredoc_body_expansion() {
    // COPY heredocs become files; an unquoted delimiter expands $ and \ but keeps quotes.
    let c = one("COPY <<EOF /quotes\n\"foo\" 'bar' $A \\$A\nEOF");
    let e = expand(&c, &[("A", "1")]);
    match &e {
        Instruction::Copy(c) => {
            assert_eq!(c.files.dest, "/quotes");
            match &c.files.sources[0] {
                Source::Heredoc(h) => assert_eq!(h.content, "\"foo\" 'bar' 1 $A\n"),
                o => panic!("{o:?}"),
            }
        }
        o => panic!("{o:?}"),
    }
    let c = one("COPY <<-'EOF' /f\n\t$A\n\tEOF");
    match expand(&c, &[("A", "1")]) {
        Instruction::Copy(c) => match &c.files.sources[0] {
            Source::Heredoc(h) => assert_eq!(h.content, "$A\n"),
            o => panic!("{o:?}"),
        },
        o => panic!("{o:?}"),
    }
}

// ---- COPY and ADD --------------------------------------------------------------------------

#[test]
fn copy_forms_and_options() {
    let c = one(
        "COPY --from=build --chown=1000:1000 --chmod=0755 --link --parents --exclude=*.md --exclude=.git a b* /dst/",
    );
    let Instruction::Copy(c) = c else { panic!() };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.files.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.files.chmod.as_deref(), Some("0755"));
    assert!(c.files.link && c.files.parents);
    assert_eq!(c.files.exclude, vec!["*.md", ".git"]);
    assert_eq!(
        c.files.sources,
        vec![Source::Path("a".into()), Source::Path("b*".into())]
    );
    assert_eq!(c.files.dest, "/dst/");
    assert!(!c.files.json);
    // JSON form, for paths with spaces.
    let Instruction::Copy(c) = one("COPY [\"a b\", \"/c d/\"]") else {
        panic!()
    };
    assert!(c.files.json);
    assert_eq!(c.files.sources, vec![Source::Path("a b".into())]);
    assert_eq!(c.files.dest, "/c d/");
    // `--link=false` is a boolean value.
    let Instruction::Copy(c) = one("COPY --link=false a b") else {
        panic!()
    };
    assert!(!c.files.link);
    assert!(body_err("COPY --link=maybe a b").contains("expecting boolean value"));
    assert!(body_err("COPY a").contains("COPY requires at least two arguments"));
    assert!(body_err("COPY --checksum=sha256:x a b").contains("unknown flag: --checksum"));
    assert!(body_err("COPY https://example.com/a /b").contains("source can't be a URL for COPY"));
}

#[test]
fn copy_words_are_split_before_substitution() {
    // Docker splits COPY on blanks first and then processes each word: quotes do not group
    // words, and a quote left open is an error at substitution time.
    let c = one("COPY \"a b\" /d");
    let err = c.expand_with('\\', &no_vars).unwrap_err();
    assert!(err.contains("double-quote"), "{err}");
    let e = expand(&one("COPY $SRC '/q'/ /d/"), &[("SRC", "x y")]);
    let Instruction::Copy(c) = e else { panic!() };
    // A substituted value is one word here (no splitting for COPY); quotes inside a word work.
    assert_eq!(
        c.files.sources,
        vec![Source::Path("x y".into()), Source::Path("/q/".into())]
    );
    assert_eq!(c.files.dest, "/d/");
    // Flags are substituted too.
    let e = expand(
        &one("COPY --from=$S --chown=$U a b"),
        &[("S", "st"), ("U", "u")],
    );
    let Instruction::Copy(c) = e else { panic!() };
    assert_eq!(c.from.as_deref(), Some("st"));
    assert_eq!(c.files.chown.as_deref(), Some("u"));
}

#[test]
fn add_sources_and_options() {
    let a = one(
        "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir --unpack=false https://example.com/a.tar.gz git@github.com:moby/buildkit.git https://github.com/moby/buildkit.git#v0.10.1 local.tar /dst/",
    );
    let Instruction::Add(a) = a else { panic!() };
    assert!(a.checksum.as_deref().unwrap().starts_with("sha256:2445"));
    assert!(a.keep_git_dir);
    assert_eq!(a.unpack, Some(false));
    assert_eq!(
        a.files.sources,
        vec![
            Source::Url("https://example.com/a.tar.gz".into()),
            Source::Git("git@github.com:moby/buildkit.git".into()),
            Source::Git("https://github.com/moby/buildkit.git#v0.10.1".into()),
            Source::Path("local.tar".into()),
        ]
    );
    // A URL can come from a variable: classification happens again after substitution.
    let e = expand(&one("ADD $U /d"), &[("U", "http://h/x")]);
    let Instruction::Add(a) = e else { panic!() };
    assert_eq!(a.files.sources, vec![Source::Url("http://h/x".into())]);
    // ADD takes heredocs too.
    let a = one("ADD <<EOF /f\nx\nEOF");
    assert_eq!(run_or_copy_heredocs_add(&a), vec![heredoc("EOF", "x\n")]);
    assert!(body_err("ADD --from=x a b").contains("unknown flag: --from"));
}

fn run_or_copy_heredocs_add(i: &Instruction) -> Vec<Heredoc> {
    let Instruction::Add(a) = i else { panic!() };
    a.files
        .sources
        .iter()
        .filter_map(|s| match s {
            Source::Heredoc(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

// ---- ENV, ARG, LABEL -----------------------------------------------------------------------

#[test]
fn env_forms() {
    // New form: several pairs, quotes and escapes kept raw until substitution.
    let e = one("ENV MY_NAME=\"John Doe\" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy");
    assert_eq!(
        e,
        Instruction::Env(vec![
            kv("MY_NAME", "\"John Doe\""),
            kv("MY_DOG", "Rex\\ The\\ Dog"),
            kv("MY_CAT", "fluffy"),
        ])
    );
    assert_eq!(
        expand(&e, &[]),
        Instruction::Env(vec![
            kv("MY_NAME", "John Doe"),
            kv("MY_DOG", "Rex The Dog"),
            kv("MY_CAT", "fluffy"),
        ])
    );
    // Legacy form: one pair, the value is the rest of the line.
    let e = one("ENV MY_VAR my-value with  spaces");
    assert_eq!(
        e,
        Instruction::Env(vec![kv("MY_VAR", "my-value with  spaces")])
    );
    assert_eq!(
        expand(&one("ENV A \"x y\" $B"), &[("B", "b")]),
        Instruction::Env(vec![kv("A", "x y b")])
    );
    // Empty values.
    assert_eq!(
        expand(&one("ENV A= B=\"\""), &[]),
        Instruction::Env(vec![kv("A", ""), kv("B", "")])
    );
    // The whole instruction is substituted with the values from before it (the reference's
    // `ENV abc=bye def=$abc` example gives def=hello).
    assert_eq!(
        expand(&one("ENV abc=bye def=$abc"), &[("abc", "hello")]),
        Instruction::Env(vec![kv("abc", "bye"), kv("def", "hello")])
    );
    assert!(body_err("ENV A").contains("ENV must have two arguments"));
    assert!(body_err("ENV A=1 B").contains("can't find = in \"B\""));
    assert!(body_err("ENV =1").contains("ENV names can not be blank"));
    assert!(body_err("ENV").contains("ENV requires at least one argument"));
}

#[test]
fn label_forms() {
    let l =
        one("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 description=\"multi \\\nline\"");
    assert_eq!(
        expand(&l, &[]),
        Instruction::Label(vec![
            kv("com.example.vendor", "ACME Inc"),
            kv("version", "1.0"),
            kv("description", "multi line"),
        ])
    );
    assert_eq!(
        expand(&one("LABEL maintainer me@x"), &[]),
        Instruction::Label(vec![kv("maintainer", "me@x")])
    );
}

#[test]
fn arg_forms() {
    assert_eq!(
        one("ARG a b=2 c=\"x y\" d="),
        Instruction::Arg(vec![
            ArgDecl {
                name: "a".into(),
                default: None
            },
            ArgDecl {
                name: "b".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "c".into(),
                default: Some("\"x y\"".into())
            },
            ArgDecl {
                name: "d".into(),
                default: Some("".into())
            },
        ])
    );
    assert!(body_err("ARG").contains("ARG requires at least one argument"));
    assert!(body_err("ARG =x").contains("ARG names can not be blank"));
}

// ---- The one-argument and list instructions ------------------------------------------------

#[test]
fn simple_instructions() {
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(
        expand(
            &one("WORKDIR $DIRPATH/$DIRNAME"),
            &[("DIRPATH", "/p"), ("DIRNAME", "n")]
        ),
        Instruction::Workdir("/p/n".into())
    );
    assert_eq!(one("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(
        expand(&one("USER ${U:-nobody}"), &[]),
        Instruction::User("nobody".into())
    );
    assert_eq!(
        one("STOPSIGNAL SIGKILL"),
        Instruction::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        one("MAINTAINER A <a@b>"),
        Instruction::Maintainer("A <a@b>".into())
    );
    // ch-image: MAINTAINER is substituted like everything else.
    assert_eq!(
        expand(&one("MAINTAINER $WHO"), &[("WHO", "me")]),
        Instruction::Maintainer("me".into())
    );
    for kw in ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"] {
        assert!(body_err(kw).contains(&format!("{kw} requires exactly one argument")));
    }
    assert!(body_err("WORKDIR --x=1 /a").contains("unknown flag: --x"));
}

#[test]
fn expose_and_volume() {
    assert_eq!(
        one("EXPOSE 80/tcp 80/udp\t8080"),
        Instruction::Expose(vec!["80/tcp".into(), "80/udp".into(), "8080".into()])
    );
    // EXPOSE words are split after substitution.
    assert_eq!(
        expand(&one("EXPOSE $PORTS 9"), &[("PORTS", "1 2")]),
        Instruction::Expose(vec!["1".into(), "2".into(), "9".into()])
    );
    assert!(body_err("EXPOSE").contains("EXPOSE requires at least one argument"));
    assert_eq!(
        one("VOLUME [\"/data\", \"/var/log\"]"),
        Instruction::Volume(vec!["/data".into(), "/var/log".into()])
    );
    assert_eq!(
        one("VOLUME /data /var/log"),
        Instruction::Volume(vec!["/data".into(), "/var/log".into()])
    );
    assert_eq!(
        expand(&one("VOLUME $V"), &[("V", "/v")]),
        Instruction::Volume(vec!["/v".into()])
    );
    assert!(body_err("VOLUME [\"\"]").contains("VOLUME specified can not be an empty string"));
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1"
        ),
        Instruction::Healthcheck(Healthcheck::Check {
            command: Command::Shell("curl -f http://localhost/ || exit 1".into()),
            interval: Some(Duration::from_secs(300)),
            timeout: Some(Duration::from_secs(3)),
            start_period: Some(Duration::from_secs(90)),
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
        })
    );
    assert_eq!(
        one("healthcheck cmd [\"/bin/check\", \"-q\"]"),
        Instruction::Healthcheck(Healthcheck::Check {
            command: Command::Exec(vec!["/bin/check".into(), "-q".into()]),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
    // 0 means "inherit": no value.
    let Instruction::Healthcheck(Healthcheck::Check { interval, .. }) =
        one("HEALTHCHECK --interval=0s CMD true")
    else {
        panic!()
    };
    assert_eq!(interval, None);
    assert!(body_err("HEALTHCHECK NONE x").contains("HEALTHCHECK NONE takes no arguments"));
    assert!(body_err("HEALTHCHECK --interval=1s NONE").contains("takes no options"));
    assert!(body_err("HEALTHCHECK CMD").contains("Missing command after HEALTHCHECK CMD"));
    assert!(body_err("HEALTHCHECK RUN x").contains("Unknown type \"RUN\" in HEALTHCHECK"));
    assert!(body_err("HEALTHCHECK --interval=1us CMD x").contains("cannot be less than 1ms"));
    assert!(body_err("HEALTHCHECK --interval=5 CMD x").contains("missing unit"));
    assert!(body_err("HEALTHCHECK --retries=-1 CMD x").contains("--retries cannot be negative"));
    assert!(body_err("HEALTHCHECK --retries=x CMD x").contains("invalid --retries"));
    assert!(body_err("HEALTHCHECK").contains("HEALTHCHECK requires at least one argument"));
}

#[test]
fn onbuild() {
    let o = one("ONBUILD RUN --mount=type=cache,target=/c make $X");
    let Instruction::Onbuild(o) = &o else {
        panic!()
    };
    assert_eq!(o.expression, "RUN --mount=type=cache,target=/c make $X");
    assert_eq!(run_of(&o.instruction).mounts[0].target(), Some("/c"));
    // Not substituted now: it runs in the child build.
    let i = Instruction::Onbuild(o.clone());
    assert_eq!(expand(&i, &[("X", "1")]), i);
    let o = one("onbuild copy <<EOF /f\nhi\nEOF");
    let Instruction::Onbuild(o) = &o else {
        panic!()
    };
    assert_eq!(o.expression, "copy <<EOF /f\nhi\nEOF");
    assert!(body_err("ONBUILD ONBUILD RUN x").contains("Chaining ONBUILD"));
    assert!(body_err("ONBUILD FROM x").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(body_err("ONBUILD MAINTAINER x").contains("isn't allowed as an ONBUILD trigger"));
    assert_eq!(
        body_err("ONBUILD FROB x"),
        "Dockerfile:2: unknown instruction 'FROB'"
    );
    assert!(body_err("ONBUILD").contains("ONBUILD requires at least one argument"));
}

// ---- Substitution --------------------------------------------------------------------------

/// BuildKit's shell/envVarTest table (environment PWD=/home, SHELL=bash, NULL=""), plus the
/// modifiers it gained later. `None` = error.
#[test]
fn substitution_table() {
    let env = |n: &str| match n {
        "PWD" => Some("/home".to_string()),
        "SHELL" => Some("bash".to_string()),
        "NULL" => Some(String::new()),
        "P" => Some("/usr/local/bin".to_string()),
        "F" => Some("file.tar.gz".to_string()),
        "RX" => Some("()[]{}^$.*?|\\x".to_string()),
        "STARS" => Some("xx**".to_string()),
        "XY" => Some("xxyy".to_string()),
        "X" => Some("x".to_string()),
        "Q" => Some("???y".to_string()),
        "A3" => Some("a***yy*".to_string()),
        "G" => Some("/foo*/*/*.txt".to_string()),
        "NEEDLE" => Some("\\*/".to_string()),
        "T" => Some("/tmp/tmp/bar.txt".to_string()),
        "TMP" => Some("/tmp".to_string()),
        "AB" => Some("/a/foo/b/c.txt".to_string()),
        "AN" => Some("/?/".to_string()),
        "SL" => Some("/".to_string()),
        "TF" => Some("/tmp/foo.txt".to_string()),
        "VERSION" => Some("v1.2.3".to_string()),
        "OS" => Some("linux".to_string()),
        "ARCH" => Some("arm".to_string()),
        "VARIANT" => Some("v7".to_string()),
        _ => None,
    };
    let cases: &[(&str, Option<&str>)] = &[
        ("hello", Some("hello")),
        ("he'll'o", Some("hello")),
        ("he'llo", None),
        ("he\\'llo", Some("he'llo")),
        ("he\\\\'llo", None),
        ("abc\\tdef", Some("abctdef")),
        ("\"abc\\tdef\"", Some("abc\\tdef")),
        ("\"abc\\\\tdef\"", Some("abc\\tdef")),
        ("'abc\\tdef'", Some("abc\\tdef")),
        ("hello\\", Some("hello")),
        ("hello\\\\", Some("hello\\")),
        ("\"hello", None),
        ("\"hello\\\"", None),
        ("\"hel'lo\"", Some("hel'lo")),
        ("'hello", None),
        ("'hello\\'", Some("hello\\")),
        ("'hello\\there'", Some("hello\\there")),
        ("'hello\\\\there'", Some("hello\\\\there")),
        ("\"''\"", Some("''")),
        ("$.", Some("$.")),
        ("he$1x", Some("hex")),
        ("he$.x", Some("he$.x")),
        ("he$pwd.", Some("he.")),
        ("he$PWD", Some("he/home")),
        ("he\\$PWD", Some("he$PWD")),
        ("he\\\\$PWD", Some("he\\/home")),
        ("\"he\\$PWD\"", Some("he$PWD")),
        ("\"he\\\\$PWD\"", Some("he\\/home")),
        ("\\${}", Some("${}")),
        ("\\${}aaa", Some("${}aaa")),
        ("he\\${}", Some("he${}")),
        ("he\\${}xx", Some("he${}xx")),
        ("${}", None),
        ("${}aaa", None),
        ("he${}", None),
        ("he${}xx", None),
        ("he${hi}", Some("he")),
        ("he${hi}xx", Some("hexx")),
        ("he${PWD}", Some("he/home")),
        ("he${.}", None),
        ("he${XXX:-000}xx", Some("he000xx")),
        ("he${PWD:-000}xx", Some("he/homexx")),
        ("he${XXX:-$PWD}xx", Some("he/homexx")),
        ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
        ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
        ("he${XXX:YYY}", None),
        ("he${XXX?}", None),
        ("he${XXX:?}", None),
        ("he${PWD?}", Some("he/home")),
        ("he${PWD:?}", Some("he/home")),
        ("he${NULL?}", Some("he")),
        ("he${NULL:?}", None),
        ("he${XXX:+${PWD}}xx", Some("hexx")),
        ("he${PWD:+${XXX}}xx", Some("hexx")),
        ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
        ("he${XXX:+000}xx", Some("hexx")),
        ("he${PWD:+000}xx", Some("he000xx")),
        ("'he${XX}'", Some("he${XX}")),
        ("\"he${PWD}\"", Some("he/home")),
        ("\"he'$PWD'\"", Some("he'/home'")),
        ("\"$PWD\"", Some("/home")),
        ("'$PWD'", Some("$PWD")),
        ("'\\$PWD'", Some("\\$PWD")),
        ("'\"hello\"'", Some("\"hello\"")),
        ("'he\\$PWD'", Some("he\\$PWD")),
        ("he${PWD", None),
        ("he${PWD:=000}xx", None),
        ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
        ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
        ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
        ("안녕하세요", Some("안녕하세요")),
        ("안'녕'하세요", Some("안녕하세요")),
        ("안'녕하세요", None),
        ("안녕\\'하세요", Some("안녕'하세요")),
        ("\"안녕'하세요\"", Some("안녕'하세요")),
        // The non-colon forms distinguish unset from empty.
        ("${NULL-x}", Some("")),
        ("${XXX-x}", Some("x")),
        ("${NULL:-x}", Some("x")),
        ("${NULL+x}", Some("x")),
        ("${NULL:+x}", Some("")),
        ("${XXX+x}", Some("")),
        ("${XXX?custom message}", None),
        // Special and positional parameters are always unset in a build.
        ("a$@b$*c$#d$?e$$f$!g$0h", Some("abcdefgh")),
        ("$12x", Some("x")),
        // Pattern removal and replacement.
        ("${P#*/}", Some("usr/local/bin")),
        ("${P##*/}", Some("bin")),
        ("${P%/*}", Some("/usr/local")),
        ("${P%%/*}", Some("")),
        ("${F%.*}", Some("file.tar")),
        ("${F%%.*}", Some("file")),
        ("${F#*.}", Some("tar.gz")),
        ("${F##*.}", Some("gz")),
        ("${F#f?le}", Some(".tar.gz")),
        ("${F#nomatch}", Some("file.tar.gz")),
        ("${P/local/x}", Some("/usr/x/bin")),
        ("${P//\\//_}", Some("_usr_local_bin")),
        ("${P/\\//}", Some("usr/local/bin")),
        ("${F/*./}", Some("gz")),
        ("${XXX#x}", Some("")),
        ("${F#\\q}", None),
        ("${P/x", None),
        // Patterns: regexp-special characters are literal; `\}` protects the brace; `\*`,
        // `\?`, `\\` are literal; any other escape is an error (BuildKit's pattern tests).
        ("${RX#()[]{\\}^$.\\*\\?|\\\\}", Some("x")),
        ("${STARS%%\\**}", Some("xx")),
        ("${XY#*x*y}", Some("y")),
        ("${XY#*}", Some("xxyy")),
        ("${XY#}", Some("xxyy")),
        ("${XY##}", Some("xxyy")),
        ("${XY##*x}", Some("yy")),
        ("${XY#$X}", Some("xyy")),
        ("${XY#$NULL}", Some("xxyy")),
        ("${XY%}", Some("xxyy")),
        ("${XY%%$NULL}", Some("xxyy")),
        ("${Q#?\\?}", Some("?y")),
        ("${ABC:-.}${XY%x}${ABC:-.}", Some(".xxyy.")),
        ("${A3%%\\**\\*}", Some("a")),
        ("${F#\\}", None),
        ("${F#\\\\\\}", None),
        // Replacement: leftmost match, all non-overlapping ones with `//`; `\/` in the pattern
        // is a slash, in the replacement it stays as written.
        (
            "${G/$NEEDLE/.} - ${G//$NEEDLE/.}",
            Some("/foo.*/*.txt - /foo..*.txt"),
        ),
        ("${T/$TMP/} - ${T//$TMP/}", Some("/tmp/bar.txt - /bar.txt")),
        (
            "${AB/$AN/$SL} - ${AB//$AN/$SL}",
            Some("/foo/b/c.txt - /foo/c.txt"),
        ),
        ("${TF//\\//\\/}", Some("\\/tmp\\/foo.txt")),
        ("${XY/$NULL/ww}", Some("wwxxyy")),
        ("${XY//ww}", None),
        ("${XY//}", None),
        ("${XY///}", Some("xxyy")),
        ("${XXX///}", Some("")),
        ("${XY=aaa}", None),
        ("${XY:?message here$X}", Some("xxyy")),
        ("${NULL:?message here$X}", None),
        ("${NULL?message here$X}", Some("")),
        (
            "something-${VERSION}.${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tar.gz",
            Some("something-v1.2.3.linux-arm-v7.tar.gz"),
        ),
        // `$` that starts nothing is literal; `<` is ordinary.
        ("a$ b", Some("a$ b")),
        ("a<b <<c", Some("a<b <<c")),
    ];
    for (input, want) in cases {
        let got = substitute(input, &env).ok();
        assert_eq!(got.as_deref(), *want, "input {input:?}");
    }
}

/// Word splitting after substitution (BuildKit's shell words tests).
#[test]
fn word_splitting_buildkit_cases() {
    let env = |n: &str| match n {
        "hi" => Some("hi".to_string()),
        "space" => Some("abc  def".to_string()),
        "leading" => Some("  ab c".to_string()),
        "trailing" => Some("ab c   ".to_string()),
        _ => None,
    };
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("hello", Some(&["hello"])),
        ("hello${hi}bye", Some(&["hellohibye"])),
        ("hello${nope}bye", Some(&["hellobye"])),
        ("hello${space}bye", Some(&["helloabc", "defbye"])),
        ("hello\"${space}\"bye", Some(&["helloabc  defbye"])),
        ("hello \"${space}\"bye", Some(&["hello", "abc  defbye"])),
        ("hello${leading}def", Some(&["hello", "ab", "cdef"])),
        ("hello\"${leading}\" def", Some(&["hello  ab c", "def"])),
        ("hello\"${leading}\"", Some(&["hello  ab c"])),
        ("hello${leading}", Some(&["hello", "ab", "c"])),
        ("hello${trailing}", Some(&["helloab", "c"])),
        ("hello${trailing}d", Some(&["helloab", "c", "d"])),
        ("hello\"${trailing}\"d", Some(&["helloab c   d"])),
        ("hel\"lo${trailing}\"", Some(&["helloab c   "])),
        ("hello\" there  \"", Some(&["hello there  "])),
        ("hello there     ", Some(&["hello", "there"])),
        ("hello\\ there", Some(&["hello there"])),
        ("hello\" there", None),
        ("hello\\\" there", Some(&["hello\"", "there"])),
        ("hello\"\\\\there\"", Some(&["hello\\there"])),
        ("hello\"\\there\"", Some(&["hello\\there"])),
        ("hello'\\\\there'", Some(&["hello\\\\there"])),
        ("hello'\\there'", Some(&["hello\\there"])),
        ("hello'$there'", Some(&["hello$there"])),
    ];
    for (input, want) in cases {
        let got = split_words(input, &env).ok();
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "input {input:?}");
    }
}

#[test]
fn word_splitting() {
    let env = |n: &str| (n == "S").then(|| " x  y ".to_string());
    let cases: &[(&str, &[&str])] = &[
        ("hello", &["hello"]),
        ("hello world", &["hello", "world"]),
        ("  a \t b  ", &["a", "b"]),
        ("\"hello world\"", &["hello world"]),
        ("'a b' c", &["a b", "c"]),
        ("a\\ b", &["a b"]),
        // A substituted value splits unless quoted.
        ("$S", &["x", "y"]),
        ("\"$S\"", &[" x  y "]),
        // The value's own leading blank ends the word before it.
        ("a$S", &["a", "x", "y"]),
        ("a${S# }", &["ax", "y"]),
        // BuildKit drops an empty quoted word.
        ("a \"\" b", &["a", "b"]),
        // `<<` keeps the blanks after it (heredoc detection).
        ("cat << EOF", &["cat", "<< EOF"]),
    ];
    for (input, want) in cases {
        assert_eq!(split_words(input, &env).unwrap(), *want, "input {input:?}");
    }
}

#[test]
fn substitution_errors_name_the_line() {
    let d = parse_ok("FROM x\n\nWORKDIR ${A\n");
    let e = d.stages[0].instructions[0]
        .expand(&d, &no_vars)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Dockerfile:3: failed to process \"${A\""),
        "{e}"
    );
    let d = parse_ok("FROM x\nUSER ${U:?must be set}\n");
    let e = d.stages[0].instructions[0]
        .expand(&d, &no_vars)
        .unwrap_err();
    assert!(e.to_string().contains("U: must be set"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "${A:-".repeat(10_000) + &"}".repeat(10_000);
    assert!(substitute(&deep, &no_vars).is_err());
}

// ---- Scope ---------------------------------------------------------------------------------

#[test]
fn arg_and_env_scoping() {
    let d = parse_ok(
        "ARG VERSION=1\nARG BASE=alpine:$VERSION\nFROM $BASE\nRUN echo\nARG VERSION\nARG OTHER=o\nENV OTHER=e\n",
    );
    let mut scope = Scope::new([("OTHER".to_string(), "cli".to_string())]);
    for a in &d.pre_from_args {
        let Instruction::Arg(decls) = a_expand(&d, &a.value, &scope) else {
            panic!()
        };
        scope.declare_args(&decls).unwrap();
    }
    let from = d.stages[0].from.expand(&d, &|n| scope.get(n)).unwrap();
    assert_eq!(from.image, "alpine:1");
    scope.begin_stage(["PATH=/bin", "VERSION=image"]);
    // The image's ENV is visible; the global VERSION is not (no ARG in the stage yet)...
    assert_eq!(scope.get("VERSION").as_deref(), Some("image"));
    assert_eq!(scope.get("BASE"), None);
    for ins in &d.stages[0].instructions[1..] {
        match ins.expand(&d, &|n| scope.get(n)).unwrap() {
            Instruction::Arg(decls) => scope.declare_args(&decls).unwrap(),
            Instruction::Env(kvs) => scope.set_env(&kvs).unwrap(),
            _ => {}
        }
    }
    // ...ENV wins over ARG; a --build-arg wins over the default.
    assert_eq!(scope.get("VERSION").as_deref(), Some("image"));
    assert_eq!(scope.get("OTHER").as_deref(), Some("e"));
    assert!(
        scope
            .args()
            .contains(&("OTHER".to_string(), "cli".to_string()))
    );
    // `ARG VERSION` without a default takes the global value.
    assert!(
        scope
            .args()
            .contains(&("VERSION".to_string(), "1".to_string()))
    );
    // A later FROM still sees only the global scope.
    assert_eq!(scope.get_global("BASE").as_deref(), Some("alpine:1"));
    assert_eq!(scope.get_global("OTHER"), None);
    scope.predefine("HTTP_PROXY", "http://p");
    assert_eq!(scope.get("HTTP_PROXY").as_deref(), Some("http://p"));
}

fn a_expand(d: &Dockerfile, decls: &[ArgDecl], scope: &Scope) -> Instruction {
    let i = Instruction::Arg(decls.to_vec());
    i.expand_with(d.directives.escape, &|n| scope.get(n))
        .unwrap()
}

// ---- --parse-only --------------------------------------------------------------------------

#[test]
fn parse_only_display() {
    let d = parse_ok(
        "# syntax=docker/dockerfile:1\nARG V=1\nFROM --platform=linux/amd64 a:$V AS b\nRUN --network=none echo \\\n hi\nCOPY --from=b [\"x y\", \"/z\"]\nENV A=1 B=\"2 3\"\nHEALTHCHECK --interval=30s CMD [\"true\"]\nONBUILD RUN make\nRUN <<EOF\nls\nEOF\n",
    );
    let out = d.to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "# syntax=docker/dockerfile:1",
            "2: ARG \"V\"=\"1\"",
            "3: FROM --platform=\"linux/amd64\" \"a:$V\" AS \"b\"  # stage 0",
            "4: RUN --network=\"none\" \"echo  hi\"",
            "6: COPY --from=\"b\" json:[\"x y\"] \"/z\"",
            "7: ENV \"A\"=\"1\" \"B\"=\"\\\"2 3\\\"\"",
            "8: HEALTHCHECK --interval=30s CMD [\"true\"]",
            "9: ONBUILD RUN \"make\"",
            "10: RUN \"<<EOF\" <<\"EOF\" \"ls\\n\"",
        ]
    );
}

// ---- Robustness ----------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Fragments that exercise every special path: keywords, options, quotes, escapes,
    /// continuations, heredocs, JSON, substitutions, directives, odd whitespace.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("FROM x".to_string()),
            Just("FROM a AS b".to_string()),
            Just("RUN ".to_string()),
            Just("COPY ".to_string()),
            Just("ADD ".to_string()),
            Just("ONBUILD ".to_string()),
            Just("ENV ".to_string()),
            Just("ARG ".to_string()),
            Just("LABEL ".to_string()),
            Just("HEALTHCHECK ".to_string()),
            Just("CMD ".to_string()),
            Just("EXPOSE ".to_string()),
            Just("VOLUME ".to_string()),
            Just("SHELL ".to_string()),
            Just("--mount=".to_string()),
            Just("--interval=".to_string()),
            Just("<<".to_string()),
            Just("<<-".to_string()),
            Just("EOF".to_string()),
            Just("\n".to_string()),
            Just("\\\n".to_string()),
            Just("\r\n".to_string()),
            Just("# escape=`\n".to_string()),
            Just("#".to_string()),
            Just("`".to_string()),
            Just("[\"".to_string()),
            Just("\"]".to_string()),
            Just("${".to_string()),
            Just("$".to_string()),
            Just(":-".to_string()),
            Just("}".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("=".to_string()),
            Just(",".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("é".to_string()),
            Just("\u{a0}".to_string()),
            "[a-z0-9/.*?#%]{1,4}",
        ]
    }

    proptest! {
        // 2000 cases by default; PROPTEST_CASES=… for a longer run.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
            .. ProptestConfig::default()
        })]

        #[test]
        fn parse_and_expand_never_panic(parts in proptest::collection::vec(fragment(), 0..40)) {
            let text: String = parts.concat();
            if let Ok(d) = parse(&text, "Dockerfile") {
                let _ = d.to_string();
                let vars = |n: &str| (n.len() % 2 == 0).then(|| "v a\\l".to_string());
                for s in &d.stages {
                    let _ = s.from.expand(&d, &vars);
                    for i in &s.instructions {
                        let _ = i.expand(&d, &vars);
                        if let Instruction::Run(r) = &i.value {
                            let _ = r.plan();
                        }
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse(&text, "Dockerfile");
            let _ = parse(&format!("FROM x\nRUN {text}\nCOPY {text}\nENV {text}"), "Dockerfile");
            let _ = substitute(&text, &|_| Some("x".into()));
            let _ = split_words(&text, &|_| None);
        }
    }
}
