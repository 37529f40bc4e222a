//! The `lade` command: argument parsing and output only; the work is in the library. Each
//! command is a small module under [`cli`].

mod cli;

use std::process::ExitCode;

use clap::{Args, Parser};

use cli::{Cli, Command, Global, one_line, run::RunArgs};
use lade::progress::Progress;

fn main() -> ExitCode {
    let cli = parse_run_quickly().unwrap_or_else(Cli::parse);
    let progress = Progress::new(if cli.global.quiet {
        -1
    } else {
        cli.global.verbose.min(3) as i8
    });
    match cli::run(cli, &progress) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lade: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `lade run` is a start-up path (a container's whole cost can be a few milliseconds), and
/// building clap's tree of every subcommand was a measurable share of it. So `run` is first
/// parsed with a command that knows only the global options and `run`; anything else, and any
/// error, help or version request, falls through to the full parser, which owns every message.
fn parse_run_quickly() -> Option<Cli> {
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Cheap pre-check: without a literal `run` argument this cannot be a run.
    if !args.iter().skip(1).any(|a| a == "run") {
        return None;
    }
    let run = RunArgs::augment_args(clap::Command::new("run"));
    let lade = Global::augment_args(clap::Command::new("lade"))
        .subcommand(run)
        .disable_help_flag(true)
        .disable_version_flag(true);
    let matches = lade.try_get_matches_from(&args).ok()?;
    let (name, sub) = matches.subcommand()?;
    if name != "run" {
        return None;
    }
    Some(Cli {
        global: Global::from_arg_matches(&matches).ok()?,
        command: Command::Run(RunArgs::from_arg_matches(sub).ok()?),
    })
}
